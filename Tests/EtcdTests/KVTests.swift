import Etcd
import FreeFlowTestSupport
import Foundation
import Testing

@Suite("etcd KV, txn and lease against a real etcd")
struct KVTests {
    @Test func putGetRangeAndDeleteRoundTripThroughTheGateway() async throws {
        try await withEtcd { _, client in
            let first = try await client.put("/t/a", "1")
            #expect(first.revision > 1)
            try await client.put("/t/b", [0, 255, 10])
            try await client.put("/u/c", "outside")
            let a = try #require(try await client.get("/t/a"))
            #expect(a.valueString == "1")
            #expect(a.version == 1)
            #expect(a.modRevision == first.revision)
            let b = try #require(try await client.get("/t/b"))
            #expect(b.value == [0, 255, 10])
            #expect(try await client.get("/t/missing") == nil)
            let prefix = try await client.range(.prefix("/t/"))
            #expect(prefix.kvs.map(\.key) == ["/t/a", "/t/b"])
            let deleted = try await client.delete(.prefix("/t/"), prevKV: true)
            #expect(deleted.deleted == 2)
            #expect(Set(deleted.previous.map(\.key)) == ["/t/a", "/t/b"])
            #expect(try await client.range(.prefix("/t/")).kvs.isEmpty)
            #expect(try await client.get("/u/c")?.valueString == "outside")
        }
    }

    @Test func rangeAllPagesThroughEveryKeyAtOneRevision() async throws {
        try await withEtcd { _, client in
            for i in 0..<23 { try await client.put(String(format: "/p/%03d", i), "\(i)") }
            let all = try await client.rangeAll(.prefix("/p/"), pageSize: 5)
            #expect(all.kvs.count == 23)
            #expect(all.kvs.map(\.key) == (0..<23).map { String(format: "/p/%03d", $0) })
            let limited = try await client.range(.prefix("/p/"), limit: 5)
            #expect(limited.more)
            #expect(limited.count == 23)
            // An older revision is still readable page by page.
            let old = try await client.rangeAll(.prefix("/p/"), revision: all.revision - 10, pageSize: 4)
            #expect(old.kvs.count == 13)
        }
    }

    @Test func txnCompareAndSwapFailsWhenAnotherWriterGotThereFirst() async throws {
        try await withEtcd { _, client in
            let created = try await client.txn(compare: [.absent("/cas")], success: [.put("/cas", Array("mine".utf8))])
            #expect(created.succeeded)
            let seen = try #require(try await client.get("/cas"))
            // Another writer changes the key after we read it.
            try await client.put("/cas", "theirs")
            let conflict = try await client.txn(
                compare: [.modRevision("/cas", .equal, seen.modRevision)],
                success: [.put("/cas", Array("mine-again".utf8))],
                failure: [.get(.key("/cas"))]
            )
            #expect(!conflict.succeeded)
            guard case .range(let current)? = conflict.responses.first else {
                Issue.record("failure branch did not return the range")
                return
            }
            #expect(current.kvs.first?.valueString == "theirs")
            #expect(try await client.get("/cas")?.valueString == "theirs")
            let secondCreate = try await client.txn(compare: [.absent("/cas")], success: [.put("/cas", Array("x".utf8))])
            #expect(!secondCreate.succeeded)
            // With the fresh revision the swap goes through.
            let retry = try await client.txn(
                compare: [.modRevision("/cas", .equal, current.kvs[0].modRevision)],
                success: [.put("/cas", Array("mine-again".utf8))]
            )
            #expect(retry.succeeded)
            #expect(try await client.get("/cas")?.valueString == "mine-again")
        }
    }

    @Test func leaseExpiryDeletesAttachedKeysAndKeepAliveReportsIt() async throws {
        try await withEtcd { _, client in
            // 4 s leaves room for a loaded CI machine between grant, put and renewal.
            let lease = try await client.leaseGrant(ttl: 4)
            #expect(lease.ttl >= 4)
            try await client.put("/lease/key", "v", lease: lease.id)
            #expect(try await client.get("/lease/key")?.lease == lease.id)
            let renewed = try await client.leaseKeepAlive(id: lease.id)
            #expect(renewed >= 4)
            try await eventually("leased key disappears after the TTL", timeout: .seconds(20)) {
                try await client.get("/lease/key") == nil
            }
            await #expect(throws: EtcdError.leaseNotFound(id: lease.id)) {
                try await client.leaseKeepAlive(id: lease.id)
            }
            await #expect(throws: EtcdError.leaseNotFound(id: lease.id)) {
                try await client.put("/lease/key", "v", lease: lease.id)
            }
        }
    }

    @Test func leaseRevokeDeletesAttachedKeysAtOnce() async throws {
        try await withEtcd { _, client in
            let lease = try await client.leaseGrant(ttl: 60)
            try await client.put("/lease/a", "v", lease: lease.id)
            try await client.leaseRevoke(id: lease.id)
            #expect(try await client.get("/lease/a") == nil)
            await #expect(throws: EtcdError.leaseNotFound(id: lease.id)) {
                try await client.leaseRevoke(id: lease.id)
            }
        }
    }

    @Test func rangeAtACompactedRevisionThrowsCompacted() async throws {
        try await withEtcd { _, client in
            let first = try await client.put("/c", "1")
            let second = try await client.put("/c", "2")
            try await client.compact(revision: second.revision)
            await #expect(throws: EtcdError.self) {
                try await client.range(.key("/c"), revision: first.revision)
            }
            do {
                _ = try await client.range(.key("/c"), revision: first.revision)
            } catch EtcdError.compacted(let requested, _) {
                #expect(requested == first.revision)
            }
        }
    }

    @Test func unreachableEtcdGivesAClearErrorAndASecondEndpointIsUsed() async throws {
        let etcd = try await LocalEtcd.start()
        let deadPort = try LocalEtcdPort.free()
        let dead = "http://127.0.0.1:\(deadPort)"
        let onlyDead = try EtcdClient(EtcdConfiguration(endpoints: [dead], requestTimeout: .seconds(2), connectTimeout: .milliseconds(500)))
        let both = try EtcdClient(EtcdConfiguration(endpoints: [dead, etcd.clientURL], requestTimeout: .seconds(2), connectTimeout: .milliseconds(500)))
        do {
            do {
                _ = try await onlyDead.get("/x")
                Issue.record("a dead endpoint answered")
            } catch EtcdError.unavailable(let endpoints, let underlying) {
                #expect(endpoints == [dead])
                #expect(underlying.contains("127.0.0.1:\(deadPort)"))
            }
            try await both.put("/x", "y")
            #expect(try await both.get("/x")?.valueString == "y")
        } catch {
            Issue.record("unexpected error \(error)")
        }
        try await onlyDead.shutdown()
        try await both.shutdown()
        await etcd.stop()
    }

    @Test func endpointsWithoutSchemeMeanHTTP() throws {
        let config = EtcdConfiguration(endpointList: "127.0.0.1:2379, https://etcd-0:2379/")
        #expect(config.endpoints == ["http://127.0.0.1:2379", "https://etcd-0:2379"])
    }

    @Test func incompleteClientCertificateIsRejected() {
        #expect(throws: EtcdError.self) {
            _ = try EtcdClient(EtcdConfiguration(endpoints: ["https://127.0.0.1:1"], tls: EtcdTLS(certFile: "/tmp/c.pem")))
        }
    }

    @Test func tlsFlagsMeanPlainHTTPOnlyWhenNoFileIsGiven() throws {
        #expect(EtcdTLS.fromFlags(caFile: nil, certFile: nil, keyFile: nil) == nil)
        #expect(EtcdTLS.fromFlags(caFile: "/ca.pem", certFile: nil, keyFile: nil) == EtcdTLS(caFile: "/ca.pem"))
        // A key without its certificate is not silently dropped: the client refuses it.
        let keyOnly = try #require(EtcdTLS.fromFlags(caFile: nil, certFile: nil, keyFile: "/k.pem"))
        #expect(throws: EtcdError.self) {
            _ = try EtcdClient(EtcdConfiguration(endpoints: ["https://127.0.0.1:1"], tls: keyOnly))
        }
    }
}

@Suite("etcd over TLS with client certificates")
struct TLSTests {
    @Test func clientCertificateAuthWorksForKVAndWatchAndIsRequired() async throws {
        let certs = try TestCertificates.make()
        defer { certs.remove() }
        let etcd = try await LocalEtcd.start(tls: certs)
        let good = try EtcdClient(EtcdConfiguration(endpoints: [etcd.clientURL], requestTimeout: .seconds(3), connectTimeout: .seconds(1),
                                                    tls: EtcdTLS(caFile: certs.caCert, certFile: certs.clientCert, keyFile: certs.clientKey)))
        let anonymous = try EtcdClient(EtcdConfiguration(endpoints: [etcd.clientURL], requestTimeout: .seconds(3), connectTimeout: .seconds(1),
                                                         tls: EtcdTLS(caFile: certs.caCert)))
        do {
            #expect(etcd.clientURL.hasPrefix("https://"))
            var attempts = 0
            while true {
                attempts += 1
                do { try await good.put("/tls/a", "1"); break } catch where attempts < 50 { try await Task.sleep(for: .milliseconds(100)) }
            }
            #expect(try await good.get("/tls/a")?.valueString == "1")
            let collector = Collector()
            let task = collector.start(good.watch(.prefix("/tls/"), options: WatchOptions(startRevision: 1)))
            try await good.put("/tls/b", "2")
            try await eventually("watch over TLS sees both puts") { collector.snapshot.events.count >= 2 }
            task.cancel()
            _ = await task.value
            do {
                _ = try await anonymous.get("/tls/a")
                Issue.record("etcd with --client-cert-auth answered a client without a certificate")
            } catch EtcdError.unavailable {
                // The handshake is refused: expected.
            }
        } catch {
            Issue.record("unexpected error \(error); etcd log: \(etcd.logFile.path)")
        }
        try await good.shutdown()
        try await anonymous.shutdown()
        await etcd.stop()
    }
}
