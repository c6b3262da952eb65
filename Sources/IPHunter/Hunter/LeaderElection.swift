import Etcd
import Logging

/// Leader election on an etcd lease: the replica that creates the leader key (attached to its
/// lease) leads until the lease ends. A killed leader stops renewing, etcd deletes the key when
/// the lease TTL runs out, and a follower watching the key takes over. Resigning revokes the
/// lease so a follower takes over at once.
public actor LeaderElector {
    /// The client used to campaign.
    public let client: EtcdClient
    /// The key the leader holds.
    public let key: String
    /// This replica's name, stored as the key's value (shown by `ffctl watch`).
    public let identity: String
    /// Lease TTL in seconds: the longest a dead leader blocks the others.
    public let ttl: Int64
    let logger: Logger
    /// The lease we hold: while leading, and after stepping down until etcd confirms it revoked.
    var lease: Lease?
    /// The leader key's create revision while we lead; guards every write.
    public private(set) var leaderRevision: Int64?

    /// Makes an elector; nothing happens until ``run(_:)``.
    public init(client: EtcdClient, key: String, identity: String, ttl: Int64 = 10,
                logger: Logger = Logger(label: "iphunter.election")) {
        self.client = client
        self.key = key
        self.identity = identity
        self.ttl = ttl
        self.logger = logger
    }

    /// Campaigns, leads and campaigns again until cancelled; `changed(revision)` is called with the
    /// leader key's create revision on becoming leader and with nil on losing it. On cancellation
    /// the lease is revoked so the next leader need not wait for the TTL.
    public func run(_ changed: @Sendable (Int64?) async -> Void) async {
        var backoff = Duration.milliseconds(200)
        while !Task.isCancelled {
            do {
                // A lease left from the last round (lost race, step-down, failed call) goes first.
                try await revokeHeldLease()
                try await waitUntilVacant()
                let lease = try await client.leaseGrant(ttl: ttl)
                self.lease = lease
                let result = try await client.txn(
                    compare: [.absent(key)],
                    success: [.put(key, Array(identity.utf8), lease: lease.id)],
                    failure: [.get(.key(key))]
                )
                // Lost the race: the next round revokes the lease we were granted.
                guard result.succeeded else { continue }
                leaderRevision = result.revision
                logger.notice("became leader", metadata: ["identity": "\(identity)", "revision": "\(result.revision)",
                                                          "ttl": "\(lease.ttl)"])
                await changed(result.revision)
                backoff = .milliseconds(200)
                await keepAlive(lease)
                if Task.isCancelled { break }
                leaderRevision = nil
                await changed(nil)
                logger.warning("lost leadership", metadata: ["identity": "\(identity)"])
            } catch {
                if Task.isCancelled { break }
                logger.warning("election failed; retrying", metadata: ["error": "\(error)", "delay": "\(backoff)"])
                try? await Task.sleep(for: backoff)
                backoff = min(backoff * 2, .seconds(5))
            }
        }
        await resign()
        if leaderRevision != nil {
            leaderRevision = nil
            await changed(nil)
        }
    }

    /// Revokes our lease (if any) outside the cancelled task, so etcd deletes the leader key now.
    func resign() async {
        guard lease != nil else { return }
        await Task { try? await self.revokeHeldLease() }.value
        logger.notice("resigned leadership", metadata: ["identity": "\(identity)"])
    }

    /// Revokes the lease we still hold; one etcd no longer knows is already gone. Throws while etcd
    /// is unreachable and keeps the lease, so the next campaign tries again first: etcd extends
    /// every lease by its TTL when it restarts, and our stale leader key would otherwise keep
    /// everyone, us included, waiting a full TTL after etcd returns.
    func revokeHeldLease() async throws {
        guard let lease else { return }
        do {
            try await client.leaseRevoke(id: lease.id)
        } catch EtcdError.leaseNotFound {
        }
        self.lease = nil
    }

    /// Returns when nobody holds the key: at once if absent, else when a watch sees it deleted,
    /// or after one TTL to look again (in case the watch itself could not run).
    func waitUntilVacant() async throws {
        let current = try await client.range(.key(key))
        guard let holder = current.kvs.first else { return }
        logger.info("following", metadata: ["leader": "\(holder.valueString)"])
        let client = self.client, key = self.key, ttl = self.ttl
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                for try await update in client.watch(.key(key),
                    options: WatchOptions(startRevision: current.revision + 1, prevKV: false)) {
                    if case .events(let events) = update, events.contains(where: { $0.kind == .delete }) { return }
                }
            }
            group.addTask { try await Task.sleep(for: .seconds(ttl)) }
            _ = try await group.next()
            group.cancelAll()
        }
    }

    /// Renews the lease every TTL/3 until it is gone, or etcd has not confirmed it for a whole TTL
    /// (then it may have expired and someone else may lead: step down), or the task is cancelled.
    func keepAlive(_ lease: Lease) async {
        var lastRenewed = ContinuousClock.now
        let period = Duration.milliseconds(max(lease.ttl, 1) * 1000 / 3)
        while !Task.isCancelled {
            do {
                try await Task.sleep(for: period)
            } catch {
                return
            }
            do {
                try await client.leaseKeepAlive(id: lease.id)
                lastRenewed = .now
            } catch EtcdError.leaseNotFound {
                return
            } catch {
                if Task.isCancelled { return }
                logger.warning("lease renewal failed", metadata: ["error": "\(error)"])
                if ContinuousClock.now - lastRenewed >= .seconds(lease.ttl) { return }
            }
        }
    }
}
