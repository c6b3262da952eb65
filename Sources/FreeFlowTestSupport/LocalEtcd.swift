import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Why a local etcd could not be started.
public struct LocalEtcdError: Error, CustomStringConvertible {
    /// What went wrong.
    public var description: String
    /// Makes an error with a message.
    public init(description: String) { self.description = description }
}

/// A real etcd process on free loopback ports with a temporary data directory, for tests and
/// benchmarks. `etcd` must be on PATH (Debian package `etcd-server`); without it ``start(extraArguments:)``
/// throws, so a test fails loudly instead of passing without etcd.
public final class LocalEtcd: @unchecked Sendable {
    /// `http://127.0.0.1:<port>` of the client listener.
    public let clientURL: String
    /// The data directory (removed by ``stop()``).
    public let dataDirectory: URL
    let peerURL: String
    let executable: String
    let extraArguments: [String]
    let lock = NSLock()
    var process: Process?
    /// The member ID the first launch answered with; a relaunch must answer with the same one,
    /// or something else took the port while this etcd was halted.
    var memberID: String?

    /// Starts etcd and waits until it answers. `extraArguments` are passed to etcd
    /// (for example `--experimental-watch-progress-notify-interval=500ms`). With `tls`, etcd
    /// serves https and requires client certificates signed by the same CA.
    public static func start(extraArguments: [String] = [], tls: TestCertificates? = nil) async throws -> LocalEtcd {
        guard let executable = findExecutable("etcd") else {
            throw LocalEtcdError(description: "etcd not found on PATH: install the Debian package etcd-server (apt-get "
                                            + "install etcd-server)")
        }
        var arguments = extraArguments
        if let tls {
            arguments += ["--cert-file", tls.serverCert, "--key-file", tls.serverKey, "--client-cert-auth",
                          "--trusted-ca-file", tls.caCert]
        }
        let etcd = try LocalEtcd(executable: executable, extraArguments: arguments,
                                 scheme: tls == nil ? "http" : "https")
        try await etcd.launch()
        return etcd
    }

    init(executable: String, extraArguments: [String], scheme: String = "http", clientPort: Int? = nil) throws {
        self.executable = executable
        self.extraArguments = extraArguments
        clientURL = "\(scheme)://127.0.0.1:\(try clientPort ?? Self.freePort())"
        peerURL = "http://127.0.0.1:\(try Self.freePort())"
        dataDirectory = FileManager.default.temporaryDirectory.appendingPathComponent("ff-etcd-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dataDirectory, withIntermediateDirectories: true)
    }

    /// The etcd log (stdout and stderr), for diagnosing a failed test.
    public var logFile: URL { dataDirectory.appendingPathExtension("log") }

    static func findExecutable(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for directory in path.split(separator: ":") {
            let candidate = "\(directory)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }

    /// A free TCP port on 127.0.0.1 that this process has not handed out before.
    ///
    /// Ports come from below the kernel's ephemeral range (`net.ipv4.ip_local_port_range`), so that
    /// neither an outgoing connection nor a listener bound to port 0 can take the port of an etcd
    /// that a test halted and is about to resume; and never twice within a process, so that two
    /// tests running in parallel cannot end up sharing one etcd (a CI run once saw exactly that:
    /// one test's writes interleaved in another test's watch).
    static func freePort() throws -> Int {
        try PortAllocator.shared.next()
    }

    /// Whether nothing listens on or is bound to `port` on 127.0.0.1 right now.
    static func canBind(_ port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        return bound == 0
    }

    func launch() async throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = [
            "--name", "default",
            "--data-dir", dataDirectory.path,
            "--listen-client-urls", clientURL,
            "--advertise-client-urls", clientURL,
            "--listen-peer-urls", peerURL,
            "--initial-advertise-peer-urls", peerURL,
            "--initial-cluster", "default=\(peerURL)",
            "--logger", "zap",
            "--log-level", "warn",
        ] + extraArguments
        if !FileManager.default.fileExists(atPath: logFile.path) {
            _ = FileManager.default.createFile(atPath: logFile.path, contents: nil)
        }
        let log = try FileHandle(forWritingTo: logFile)
        log.seekToEndOfFile()
        process.standardOutput = log
        process.standardError = log
        process.standardInput = FileHandle.nullDevice
        try process.run()
        lock.withLock { self.process = process }
        try await waitUntilHealthy(timeout: .seconds(20))
    }

    /// Polls the client port until etcd serves a range request, and checks that the etcd answering
    /// is this one (same member ID as at the first launch), not another process on the same port.
    func waitUntilHealthy(timeout: Duration) async throws {
        let deadline = ContinuousClock.now + timeout
        let url = URL(string: clientURL + "/v3/kv/range")!
        while ContinuousClock.now < deadline {
            if lock.withLock({ process?.isRunning }) != true {
                throw LocalEtcdError(description: "etcd exited during start; see \(logFile.path): \(tail())")
            }
            if let member = Self.probe(url) {
                let expected = lock.withLock { () -> String? in
                    if memberID == nil { memberID = member }
                    return memberID
                }
                guard member == expected else {
                    throw LocalEtcdError(description: "\(clientURL) answers as etcd member \(member), not as this etcd "
                                                    + "(\(expected ?? "?")): another process took the port")
                }
                return
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw LocalEtcdError(description: "etcd did not become healthy within \(timeout); see \(logFile.path): "
                                        + "\(tail())")
    }

    /// One blocking HTTP probe over a raw socket, so this helper needs no HTTP client of its own.
    /// Returns the answering member's ID (`header.member_id`; empty for https, where the probe
    /// only checks that the listener accepts), or nil when etcd does not answer yet.
    static func probe(_ url: URL) -> String? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var timeout = timeval(tv_sec: 1, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(url.port!).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard connected == 0 else { return nil }
        // An https listener is ready once it accepts connections; the caller's TLS client retries.
        if url.scheme == "https" { return "" }
        let body = #"{"key":"AA=="}"#
        let request = "POST /v3/kv/range HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                    + "application/json\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)"
        _ = request.withCString { send(fd, $0, strlen($0), 0) }
        var reply: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1024)
        while reply.count < 8192 {
            let count = recv(fd, &chunk, chunk.count, 0)
            guard count > 0 else { break }
            reply += chunk[..<count]
        }
        let text = String(decoding: reply, as: UTF8.self)
        guard text.hasPrefix("HTTP/1.1 200") else { return nil }
        return memberID(inRangeReply: text)
    }

    /// The value of `"member_id":"…"` in a range reply's header.
    static func memberID(inRangeReply text: String) -> String? {
        guard let key = text.range(of: #""member_id":""#) else { return nil }
        let rest = text[key.upperBound...]
        guard let end = rest.firstIndex(of: "\"") else { return nil }
        return String(rest[..<end])
    }

    func tail() -> String {
        let text = (try? String(contentsOf: logFile, encoding: .utf8)) ?? ""
        return String(text.suffix(2000))
    }

    /// Pauses etcd with SIGSTOP: its connections stay open but nothing answers on them, which is what a
    /// hung member or a half-open connection looks like to a client. ``thaw()`` (or ``halt()``) ends it.
    public func freeze() {
        deliver(SIGSTOP)
    }

    /// Lets a frozen etcd run on (SIGCONT).
    public func thaw() {
        deliver(SIGCONT)
    }

    func deliver(_ number: Int32) {
        guard let process = lock.withLock({ self.process }), process.isRunning else { return }
        kill(process.processIdentifier, number)
    }

    /// Stops etcd gracefully (SIGTERM) and waits for it, keeping the data directory for a restart.
    public func halt() async {
        guard let process = lock.withLock({ self.process }) else { return }
        // A frozen etcd would not act on SIGTERM.
        if process.isRunning { kill(process.processIdentifier, SIGCONT) }
        if process.isRunning { process.terminate() }
        while process.isRunning {
            try? await Task.sleep(for: .milliseconds(20))
        }
        lock.withLock { self.process = nil }
    }

    /// Stops and starts etcd again on the same ports and data.
    public func restart() async throws {
        await halt()
        try await launch()
    }

    /// Starts a halted etcd again.
    public func resume() async throws {
        try await launch()
    }

    /// Stops etcd and removes its data directory and log.
    public func stop() async {
        await halt()
        try? FileManager.default.removeItem(at: dataDirectory)
        try? FileManager.default.removeItem(at: logFile)
    }
}

/// Hands out loopback ports below the ephemeral range, each at most once per process.
final class PortAllocator: @unchecked Sendable {
    static let shared = PortAllocator()
    let lock = NSLock()
    let range: Range<Int>
    var cursor: Int

    init() {
        // Default Linux range is 32768-60999; read it so a tuned machine is honoured too.
        var ephemeralLow = 32768
        if let text = try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8),
           let first = text.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).first,
           let low = Int(first) {
            ephemeralLow = low
        }
        let lower = max(1024, ephemeralLow - 16384)
        range = lower..<max(lower + 1024, ephemeralLow)
        // A random start keeps two test processes running side by side apart.
        cursor = Int.random(in: range)
    }

    func next() throws -> Int {
        try lock.withLock {
            for _ in 0..<range.count {
                let port = cursor
                cursor = cursor + 1 == range.upperBound ? range.lowerBound : cursor + 1
                if LocalEtcd.canBind(port) { return port }
            }
            throw LocalEtcdError(description: "no free loopback port in \(range)")
        }
    }
}

/// Free loopback ports for tests that need a port nothing listens on.
public enum LocalEtcdPort {
    /// A TCP port on 127.0.0.1 that was free a moment ago.
    public static func free() throws -> Int { try LocalEtcd.freePort() }
}

/// A throwaway CA with a server certificate for 127.0.0.1 and a client certificate, made with the
/// `openssl` command (Debian package openssl), for TLS tests.
public struct TestCertificates: Sendable {
    /// Directory holding the PEM files.
    public let directory: String
    /// CA certificate.
    public var caCert: String { directory + "/ca.crt" }
    /// Server certificate (SAN IP:127.0.0.1, server and client auth as etcd's gateway needs).
    public var serverCert: String { directory + "/server.crt" }
    /// Server key.
    public var serverKey: String { directory + "/server.key" }
    /// Client certificate.
    public var clientCert: String { directory + "/client.crt" }
    /// Client key.
    public var clientKey: String { directory + "/client.key" }

    /// Generates the files in a new temporary directory.
    public static func make() throws -> TestCertificates {
        guard let openssl = LocalEtcd.findExecutable("openssl") else {
            throw LocalEtcdError(description: "openssl not found on PATH: install the Debian package openssl")
        }
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("ff-certs-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let script = """
            set -e
            cd '\(directory)'
            K="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
            \(openssl) req -x509 $K -keyout ca.key -out ca.crt -days 2 -subj /CN=freeflow-test-ca
            \(openssl) req $K -keyout server.key -out server.csr -subj /CN=etcd
            printf 'subjectAltName=IP:127.0.0.1\\nextendedKeyUsage=serverAuth,clientAuth\\n' > server.ext
            \(openssl) x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days 2 \
            -extfile server.ext
            \(openssl) req $K -keyout client.key -out client.csr -subj /CN=freeflow-client
            printf 'extendedKeyUsage=clientAuth\\n' > client.ext
            \(openssl) x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out client.crt -days 2 \
            -extfile client.ext
            """
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", script]
        let log = Pipe()
        process.standardOutput = log
        process.standardError = log
        try process.run()
        let output = log.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw LocalEtcdError(description: "openssl failed: \(String(decoding: output, as: UTF8.self))")
        }
        return TestCertificates(directory: directory)
    }

    /// Removes the files.
    public func remove() {
        try? FileManager.default.removeItem(atPath: directory)
    }
}
