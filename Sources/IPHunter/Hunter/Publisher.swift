import Etcd
import Logging

/// The IP hunter lost the leadership while writing: another replica owns the map now.
struct NotLeader: Error, CustomStringConvertible {
    var description: String { "no longer the leader" }
}

/// Writes the difference between the desired map and etcd, each write a transaction guarded by
/// the key's mod revision (and the leader key's create revision), so two hunters cannot undo each
/// other's writes. Keeps what it last saw in etcd to compare against.
actor Publisher {
    struct Seen {
        var value: [UInt8]
        var modRevision: Int64
    }

    let client: EtcdClient
    let schema: MapSchema
    /// What etcd holds under the map prefix, as of the last list plus our own writes.
    var seen: [String: Seen] = [:]
    /// Keys per transaction; etcd allows 128 operations per branch by default (--max-txn-ops).
    let batchSize = 100

    /// Counters since start.
    var writes = 0
    var transactions = 0
    var conflicts = 0

    init(client: EtcdClient, schema: MapSchema) {
        self.client = client
        self.schema = schema
    }

    /// Keys seen in etcd under the map prefix.
    var seenKeys: Set<String> { Set(seen.keys) }

    /// (writes, transactions, conflicts) so far.
    var counters: (Int, Int, Int) { (writes, transactions, conflicts) }

    /// Reads everything under the prefix (except the leader key) into ``seen``.
    func reload() async throws {
        let result = try await client.rangeAll(.prefix(schema.root))
        seen = [:]
        for kv in result.kvs {
            switch schema.classify(kv.key) {
            case .vip, .node: seen[kv.key] = Seen(value: kv.value, modRevision: kv.modRevision)
            case .leader, .other: break
            }
        }
    }

    /// Makes etcd hold `desired(key)` for every key in `keys` (nil: absent). Returns the number
    /// of keys written. A conflicting writer leads to a re-read of that key and another round.
    func reconcile(keys: Set<String>, leaderRevision: Int64?, desired: @Sendable (String) -> [UInt8]?) async throws
        -> Int {
        var pending = keys.sorted()
        var written = 0
        var rounds = 0
        while !pending.isEmpty {
            rounds += 1
            var retry: [String] = []
            var index = 0
            let work = pending.filter { desired($0) != seen[$0]?.value }
            while index < work.count {
                let batch = Array(work[index..<min(index + batchSize, work.count)])
                index += batch.count
                let (ok, failed) = try await write(batch, leaderRevision: leaderRevision, desired: desired)
                written += ok
                retry += failed
            }
            if retry.isEmpty { break }
            if rounds >= 5 {
                throw EtcdError.server(code: -1, httpStatus: 0,
                                       message: "\(retry.count) keys kept changing under us; giving up this round")
            }
            pending = retry
        }
        return written
    }

    /// One guarded transaction for `batch`; on failure the failure branch reads the keys back so
    /// ``seen`` is current, and the batch's keys are returned for another round.
    private func write(_ batch: [String], leaderRevision: Int64?, desired: @Sendable (String) -> [UInt8]?) async throws
        -> (Int, [String]) {
        var compares: [Compare] = []
        if let leaderRevision { compares.append(.createRevision(schema.leaderKey, .equal, leaderRevision)) }
        var success: [TxnOp] = []
        for key in batch {
            compares.append(.modRevision(key, .equal, seen[key]?.modRevision ?? 0))
            if let value = desired(key) {
                success.append(.put(key, value))
            } else {
                success.append(.delete(.key(key)))
            }
        }
        var failure: [TxnOp] = [.get(.key(schema.leaderKey))]
        failure += batch.map { TxnOp.get(.key($0)) }
        let result = try await client.txn(compare: compares, success: success, failure: failure)
        transactions += 1
        if result.succeeded {
            for key in batch {
                if let value = desired(key) {
                    seen[key] = Seen(value: value, modRevision: result.revision)
                } else {
                    seen[key] = nil
                }
            }
            writes += batch.count
            return (batch.count, [])
        }
        conflicts += 1
        var replies = result.responses.makeIterator()
        if case .range(let leader)? = replies.next(), let leaderRevision {
            if leader.kvs.first?.createRevision != leaderRevision { throw NotLeader() }
        }
        for key in batch {
            if case .range(let current)? = replies.next() {
                if let kv = current.kvs.first {
                    seen[key] = Seen(value: kv.value, modRevision: kv.modRevision)
                } else {
                    seen[key] = nil
                }
            }
        }
        return (0, batch)
    }
}
