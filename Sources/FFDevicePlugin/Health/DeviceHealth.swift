import Foundation
import Synchronization

/// Whether the node's virtual RDMA devices can be used (the router answers and its device port is active), shared by
/// every `ListAndWatch` stream: each one receives the current state at once and every change after it.
public final class DeviceHealth: Sendable {
    /// One observed state.
    public struct State: Sendable, Equatable {
        /// The devices can be used.
        public var healthy: Bool
        /// Why, for logs.
        public var detail: String

        /// A state.
        public init(healthy: Bool, detail: String) {
            self.healthy = healthy
            self.detail = detail
        }
    }

    private struct Shared {
        var state: State
        var subscribers: [UUID: AsyncStream<State>.Continuation] = [:]
    }

    private let shared: Mutex<Shared>

    /// Starts in `initial`.
    public init(initial: State = State(healthy: false, detail: "not checked yet")) {
        shared = Mutex(Shared(state: initial))
    }

    /// The state now.
    public var current: State { shared.withLock { $0.state } }

    /// Records `state`; streams hear of it only when health changes (the detail alone is not news to the kubelet).
    public func update(_ state: State) {
        let notify = shared.withLock { s -> [AsyncStream<State>.Continuation] in
            let changed = s.state.healthy != state.healthy
            s.state = state
            return changed ? Array(s.subscribers.values) : []
        }
        for continuation in notify { continuation.yield(state) }
    }

    /// The current state, then every change, until the consumer stops.
    public func changes() -> AsyncStream<State> {
        let id = UUID()
        let (stream, continuation) = AsyncStream.makeStream(of: State.self, bufferingPolicy: .bufferingNewest(8))
        continuation.onTermination = { [weak self] _ in
            self?.shared.withLock { _ = $0.subscribers.removeValue(forKey: id) }
        }
        shared.withLock { s in
            s.subscribers[id] = continuation
            continuation.yield(s.state)
        }
        return stream
    }

    /// Checks `source` every `interval` until the task is cancelled, recording what it says; the first check comes
    /// one interval from now (the caller records the state it starts with).
    public func monitor(every interval: Duration, _ source: @Sendable () async -> State) async {
        while !Task.isCancelled {
            guard (try? await Task.sleep(for: interval)) != nil else { return }
            update(await source())
        }
    }
}
