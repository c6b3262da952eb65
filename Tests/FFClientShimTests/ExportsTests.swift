import Foundation
import XCTest

/// The shim's exported symbols and version nodes against Debian's libibverbs.so.1 and librdmacm.so.1 (`objdump -T`,
/// `-p`): the same 180 + 68 symbols, each at the same version node (default or not) and of the same kind.
final class ExportsTests: XCTestCase {
    private static let debian = "/usr/lib/x86_64-linux-gnu/libibverbs.so.1"
    private static let debianRDMACM = "/usr/lib/x86_64-linux-gnu/librdmacm.so.1"
    private static let versionScript = ShimArtifacts.programs.deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Sources/CFFClientShim/libibverbs.map").path

    /// A defined, versioned symbol: "DF IBVERBS_1.1 ibv_open_device", or "DF (IBVERBS_1.0) ibv_open_device"
    /// for a non-default (compat) version; DO for data.
    private func exports(_ library: String, family: String = "IBVERBS") throws -> Set<String> {
        let result = try RunningProgram.run("/usr/bin/objdump", ["-T", library], directory: NSTemporaryDirectory())
        XCTAssertEqual(result.status, 0, result.errors)
        var symbols = Set<String>()
        for line in result.output.split(separator: "\n") where !line.contains("*UND*") && !line.contains("*ABS*") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 2 else { continue }
            let version = fields[fields.count - 2], name = fields[fields.count - 1]
            guard let kind = fields.first(where: { $0 == "DF" || $0 == "DO" }) else { continue }
            if version.hasPrefix(family) || version.hasPrefix("(\(family)") { symbols.insert("\(kind) \(version) \(name)") }
        }
        return symbols
    }

    /// The version nodes a library defines, in order (without the base entry, which names the file).
    private func versionNodes(_ library: String) throws -> [String] {
        let result = try RunningProgram.run("/usr/bin/objdump", ["-p", library], directory: NSTemporaryDirectory())
        var nodes: [String] = []
        var inDefinitions = false
        for line in result.output.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("Version definitions:") { inDefinitions = true; continue }
            if inDefinitions {
                if line.isEmpty || line.hasPrefix("Version References") { break }
                let fields = line.split(separator: " ")
                // "2 0x00 0x06365ab0 IBVERBS_1.0"; "1 0x01 ... name" is the base; indented lines name parents.
                if fields.count == 4, fields[1] == "0x00" { nodes.append(String(fields[3])) }
            }
        }
        return nodes
    }

    /// What libibverbs.map claims: "IBVERBS_1.1 ibv_open_device" for every name under a node's `global:`.
    private func claimed() throws -> Set<String> {
        let text = try String(contentsOfFile: Self.versionScript, encoding: .utf8)
        var node = "", claims = Set<String>()
        for raw in text.split(separator: "\n") {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.hasSuffix("{"), let name = line.split(separator: " ").first { node = String(name) }
            else if line.hasSuffix(";"), !line.contains(":"), !line.hasPrefix("}"), !line.hasPrefix("/*") {
                claims.insert("\(node) \(line.dropLast())")
            }
        }
        return claims
    }

    func testBothLibrariesExportExactlyDebiansSymbolsAtDebiansVersions() throws {
        let debian = try exports(Self.debian)
        XCTAssertEqual(debian.count, 180, "Debian 12's libibverbs.so.1 exports 180 versioned symbols")
        for library in [ShimArtifacts.preload, ShimArtifacts.dropInLibrary] {
            try ShimArtifacts.require(library)
            let shim = try exports(library)
            XCTAssertEqual(debian.subtracting(shim).sorted(), [], "\(library) lacks Debian's symbols")
            XCTAssertEqual(shim.subtracting(debian).sorted(), [], "\(library) exports symbols Debian does not have at those versions")
        }
    }

    func testBothLibrariesExportExactlyDebiansRDMACMSymbolsAtDebiansVersions() throws {
        let debian = try exports(Self.debianRDMACM, family: "RDMACM")
        XCTAssertEqual(debian.count, 68, "Debian 12's librdmacm.so.1 exports 68 versioned symbols")
        for library in [ShimArtifacts.preload, ShimArtifacts.dropInLibrary] {
            let shim = try exports(library, family: "RDMACM")
            XCTAssertEqual(debian.subtracting(shim).sorted(), [], "\(library) lacks Debian's librdmacm symbols")
            XCTAssertEqual(shim.subtracting(debian).sorted(), [], "\(library) exports librdmacm symbols Debian does not have at those versions")
        }
    }

    func testEverySymbolTheVersionScriptClaimsIsExported() throws {
        let claims = try claimed()
        XCTAssertGreaterThan(claims.count, 40, "the version script parsed")
        for library in [ShimArtifacts.preload, ShimArtifacts.dropInLibrary] {
            let exported = Set(try (exports(library).union(exports(library, family: "RDMACM"))).map { String($0.dropFirst(3)) })
            XCTAssertEqual(claims.subtracting(exported), [], "\(library) lacks symbols libibverbs.map claims")
        }
        // Only the libibverbs and librdmacm API leave the library: not the Swift runtime, not the bridge.
        let result = try RunningProgram.run("/usr/bin/objdump", ["-T", ShimArtifacts.dropInLibrary], directory: NSTemporaryDirectory())
        let globals = result.output.split(separator: "\n").filter { $0.contains(" g ") && !$0.contains("*UND*") && !$0.contains("*ABS*") }
        XCTAssertEqual(globals.filter { !$0.contains("IBVERBS") && !$0.contains("RDMACM") }, [],
                       "only versioned libibverbs and librdmacm symbols leave the library")
    }

    func testDropInDefinesDebiansVersionNodesAndSONAME() throws {
        // libibverbs' nodes, then librdmacm's (the drop-in is librdmacm.so.1 too, through a link).
        XCTAssertEqual(try versionNodes(ShimArtifacts.dropInLibrary), try versionNodes(Self.debian) + versionNodes(Self.debianRDMACM))
        let result = try RunningProgram.run("/usr/bin/objdump", ["-p", ShimArtifacts.dropInLibrary], directory: NSTemporaryDirectory())
        XCTAssertTrue(result.output.contains("SONAME               libibverbs.so.1"), result.output)
    }

    /// Stock programs and the libraries they link (providers, librdmacm) import nothing the drop-in lacks:
    /// they bind at load time.
    func testStockProgramsAndProvidersImportsAreAllDefined() throws {
        let shim = Set(try (exports(ShimArtifacts.dropInLibrary).union(exports(ShimArtifacts.dropInLibrary, family: "RDMACM"))).map { String($0.dropFirst(3)) })
        let binaries = ["ibv_devinfo", "ibv_rc_pingpong", "ibv_uc_pingpong", "ibv_ud_pingpong", "ibv_srq_pingpong",
                        "ib_write_bw", "ib_send_lat", "ib_atomic_bw"].map { "/usr/bin/\($0)" }
            + ["libmlx5.so.1", "libefa.so.1", "librdmacm.so.1"].map { "/usr/lib/x86_64-linux-gnu/\($0)" }
            + ["rping", "udaddy", "ucmatose", "rdma_server", "rdma_client", "rdma_xserver", "rdma_xclient", "cmtime", "riostream",
               "rstream"].map { "/usr/bin/\($0)" }
        for program in binaries {
            let result = try RunningProgram.run("/usr/bin/objdump", ["-T", program], directory: NSTemporaryDirectory())
            let imports = result.output.split(separator: "\n").filter { $0.contains("*UND*") && ($0.contains("IBVERBS") || $0.contains("RDMACM")) }.map { line in
                let f = line.split(separator: " ", omittingEmptySubsequences: true)
                return "\(f[f.count - 2].trimmingCharacters(in: CharacterSet(charactersIn: "()"))) \(f[f.count - 1])"
            }
            XCTAssertFalse(imports.isEmpty, program)
            for symbol in imports {
                XCTAssertTrue(shim.contains(symbol) || shim.contains("(\(symbol.split(separator: " ")[0])) \(symbol.split(separator: " ")[1])"),
                              "\(program) imports \(symbol), which the shim does not define")
            }
        }
    }
}
