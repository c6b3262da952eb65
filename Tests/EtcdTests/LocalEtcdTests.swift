@testable import FreeFlowTestSupport
import Foundation
import Testing

@Suite("local etcd test helper")
struct LocalEtcdTests {
    @Test func portsAreNeverHandedOutTwiceAndStayBelowTheEphemeralRange() throws {
        let text = try String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8)
        let ephemeralLow = Int(text.split(whereSeparator: \.isWhitespace)[0])!
        let ports = try (0..<300).map { _ in try LocalEtcdPort.free() }
        #expect(Set(ports).count == ports.count)
        #expect(ports.allSatisfy { $0 >= 1024 && $0 < ephemeralLow })
    }

    @Test func resumingFailsLoudlyWhenAnotherEtcdAnswersOnThePort() async throws {
        let first = try await LocalEtcd.start()
        await first.halt()
        // A second etcd on the first one's client port stands in for any process that took it.
        let port = URL(string: first.clientURL)!.port!
        let intruder = try LocalEtcd(executable: first.executable, extraArguments: [], clientPort: port)
        try await intruder.launch()
        var caught: LocalEtcdError?
        do { try await first.resume() } catch let error as LocalEtcdError { caught = error }
        await intruder.stop()
        await first.stop()
        // Either the probe meets the intruder first, or the relaunched etcd has already died on the
        // taken port; both fail the resume instead of letting a test talk to the wrong etcd.
        let message = caught?.description ?? "resume succeeded"
        #expect(message.contains("another process took the port") || message.contains("etcd exited during start"), "\(message)")
    }

    @Test func memberIDIsReadFromARangeReply() {
        let reply = "HTTP/1.1 200 OK\r\n\r\n{\"header\":{\"cluster_id\":\"1\",\"member_id\":\"10276657743932975437\",\"revision\":\"1\"}}"
        #expect(LocalEtcd.memberID(inRangeReply: reply) == "10276657743932975437")
        #expect(LocalEtcd.memberID(inRangeReply: "HTTP/1.1 200 OK\r\n\r\n{}") == nil)
    }
}
