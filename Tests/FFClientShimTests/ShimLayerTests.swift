import Foundation
import XCTest

/// The C layer's layering (docs/shim.md, "Layout of the C layer"), read from its sources: every file sits in a layer
/// folder `N-name` (include/, the Swift bridge, is layer 0), each layer has one header, a file includes its own and
/// lower layers' headers only, references no function defined in a higher layer, and no two files reference each
/// other's functions, directly or around a longer cycle.
final class ShimLayerTests: XCTestCase {
    /// Sources/CFFClientShim, from this file's place in the package.
    private static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Sources/CFFClientShim")

    /// One source file: its path under `root`, its layer, its text without comments.
    private struct Source {
        let path: String
        let layer: Int
        let text: String
    }

    /// The bytes the reader looks for.
    private enum Byte {
        static let slash = UInt8(ascii: "/"), star = UInt8(ascii: "*"), backslash = UInt8(ascii: "\\")
        static let quote = UInt8(ascii: "\""), apostrophe = UInt8(ascii: "'"), newline = UInt8(ascii: "\n")
        static let space = UInt8(ascii: " "), tab = UInt8(ascii: "\t"), dot = UInt8(ascii: ".")
        static let dash = UInt8(ascii: "-"), greater = UInt8(ascii: ">"), underscore = UInt8(ascii: "_")
        static let semicolon = UInt8(ascii: ";")
        static let open = UInt8(ascii: "("), close = UInt8(ascii: ")"), openBrace = UInt8(ascii: "{")
        static let closeBrace = UInt8(ascii: "}")
    }

    /// The layer of a path under `root`: the number before the dash of its folder, 0 for include/; nil elsewhere.
    private static func layer(of path: String) -> Int? {
        let parts = path.split(separator: "/")
        guard parts.count == 2 else { return nil }
        if parts[0] == "include" { return 0 }
        guard let dash = parts[0].firstIndex(of: "-"), let number = Int(parts[0][..<dash]), number > 0 else {
            return nil
        }
        return number
    }

    /// Every .c and .h file under `root`, relative paths in order.
    private static func sourcePaths() throws -> [String] {
        guard let walker = FileManager.default.enumerator(atPath: root.path) else {
            throw NSError(domain: "ShimLayerTests", code: 1, userInfo: [NSLocalizedDescriptionKey: "no \(root.path)"])
        }
        return walker.compactMap { $0 as? String }.filter { $0.hasSuffix(".c") || $0.hasSuffix(".h") }.sorted()
    }

    /// The files in layers, read.
    private static func sources() throws -> [Source] {
        try sourcePaths().compactMap { path in
            guard let layer = layer(of: path) else { return nil }
            let text = try String(contentsOf: root.appendingPathComponent(path), encoding: .utf8)
            return Source(path: path, layer: layer, text: withoutComments(text))
        }
    }

    /// The text with its comments blanked (string literals kept, so a "/*" inside one is not a comment).
    private static func withoutComments(_ text: String) -> String {
        let bytes = Array(text.utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var i = 0
        func at(_ index: Int) -> UInt8 { index < bytes.count ? bytes[index] : 0 }
        while i < bytes.count {
            let c = bytes[i]
            if c == Byte.slash, at(i + 1) == Byte.star {
                i += 2
                while i < bytes.count, !(bytes[i] == Byte.star && at(i + 1) == Byte.slash) {
                    if bytes[i] == Byte.newline { out.append(bytes[i]) }
                    i += 1
                }
                i += 2
                out.append(Byte.space)
            } else if c == Byte.slash, at(i + 1) == Byte.slash {
                while i < bytes.count, bytes[i] != Byte.newline { i += 1 }
            } else if c == Byte.quote || c == Byte.apostrophe {
                out.append(c)
                i += 1
                while i < bytes.count, bytes[i] != c {
                    if bytes[i] == Byte.backslash { out.append(bytes[i]); i += 1 }
                    if i < bytes.count { out.append(bytes[i]) }
                    i += 1
                }
                if i < bytes.count { out.append(c) }
                i += 1
            } else {
                out.append(c)
                i += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The code a compiler sees of a comment-free text, for finding functions: preprocessor lines (with their
    /// continuations) and string and character literals blanked.
    private static func code(_ text: String) -> [UInt8] {
        var out: [UInt8] = []
        var inDirective = false
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            let trimmed = line.drop(while: { $0 == " " || $0 == "\t" })
            if inDirective || trimmed.hasPrefix("#") {
                inDirective = line.hasSuffix("\\")
                out.append(Byte.newline)
                continue
            }
            var quote: UInt8? = nil
            var escaped = false
            for c in line.utf8 {
                if let q = quote {
                    if escaped {
                        escaped = false
                    } else if c == Byte.backslash {
                        escaped = true
                    } else if c == q {
                        quote = nil
                    }
                    continue
                }
                if c == Byte.quote || c == Byte.apostrophe {
                    quote = c
                    out.append(Byte.space)
                    continue
                }
                out.append(c)
            }
            out.append(Byte.newline)
        }
        return out
    }

    /// The quoted includes of a file, as paths under `root` (relative to the file, or in include/).
    private static func includes(of source: Source) -> [String] {
        let directory = (source.path as NSString).deletingLastPathComponent
        var found: [String] = []
        for line in source.text.split(separator: "\n") {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            guard trimmed.hasPrefix("#"), trimmed.dropFirst().trimmingCharacters(in: .whitespaces).hasPrefix("include"),
                  let open = trimmed.firstIndex(of: "\""),
                  let close = trimmed[trimmed.index(after: open)...].firstIndex(of: "\"")
            else { continue }
            let name = String(trimmed[trimmed.index(after: open)..<close])
            let beside = root.appendingPathComponent(directory).appendingPathComponent(name).standardized.path
            let under = root.standardized.path + "/"
            if FileManager.default.fileExists(atPath: beside), beside.hasPrefix(under) {
                found.append(String(beside.dropFirst(under.count)))
            } else {
                found.append("include/" + name)
            }
        }
        return found
    }

    /// Whether `c` can be part of a C identifier (or of a number).
    private static func isIdentifier(_ c: UInt8) -> Bool {
        (c >= UInt8(ascii: "a") && c <= UInt8(ascii: "z")) || (c >= UInt8(ascii: "A") && c <= UInt8(ascii: "Z"))
            || isDigit(c) || c == Byte.underscore
    }

    /// Whether `c` is a decimal digit.
    private static func isDigit(_ c: UInt8) -> Bool { c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9") }

    /// The identifiers of a piece of code, each with whether it follows `.` or `->` (a member, not a function).
    private static func identifiers(_ code: ArraySlice<UInt8>) -> [(name: String, member: Bool)] {
        var result: [(String, Bool)] = []
        var i = code.startIndex
        while i < code.endIndex {
            guard isIdentifier(code[i]) else {
                i += 1
                continue
            }
            let start = i
            while i < code.endIndex, isIdentifier(code[i]) { i += 1 }
            if isDigit(code[start]) { continue } // a number
            var before = start - 1
            while before >= code.startIndex, [Byte.space, Byte.newline, Byte.tab].contains(code[before]) { before -= 1 }
            let member = before >= code.startIndex && (code[before] == Byte.dot
                || (code[before] == Byte.greater && before > code.startIndex && code[before - 1] == Byte.dash))
            result.append((String(decoding: code[start..<i], as: UTF8.self), member))
        }
        return result
    }

    /// The functions a .c file defines with external linkage: at brace depth 0, a `{` whose declaration ends in `)`
    /// and is not `static`; the name is the identifier before the parameter list that `)` closes.
    private static func definedFunctions(_ code: [UInt8]) -> [String] {
        var names: [String] = []
        var depth = 0
        var headStart = 0
        for (i, c) in code.enumerated() {
            if c == Byte.openBrace {
                if depth == 0, let close = code[headStart..<i].lastIndex(where: { $0 > Byte.space }),
                   code[close] == Byte.close {
                    var open = close, parens = 0
                    repeat {
                        if code[open] == Byte.close { parens += 1 } else if code[open] == Byte.open { parens -= 1 }
                        if parens > 0 { open -= 1 }
                    } while parens > 0 && open > headStart
                    let words = identifiers(code[headStart..<open]).map(\.name)
                    if let name = words.last, !words.contains("static") { names.append(name) }
                }
                depth += 1
            } else if c == Byte.closeBrace {
                depth -= 1
                if depth == 0 { headStart = i + 1 }
            } else if c == Byte.semicolon, depth == 0 {
                headStart = i + 1
            }
        }
        return names
    }

    /// The code inside braces (function bodies and initializers) with everything at file scope blanked: a name at file
    /// scope is a declaration or a macro's argument (inert.c's COMPAT_* name the compat ABI's symbols), not a call.
    private static func insideBraces(_ code: [UInt8]) -> [UInt8] {
        var depth = 0
        return code.map { c in
            if c == Byte.openBrace { depth += 1 } else if c == Byte.closeBrace { depth -= 1 }
            return depth > 0 || c == Byte.newline ? c : Byte.space
        }
    }

    /// Which file defines each externally visible function, and which files each file's code refers to.
    private static func references(_ sources: [Source]) -> (definer: [String: String], uses: [String: Set<String>]) {
        let cFiles = sources.filter { $0.path.hasSuffix(".c") }
        var definer: [String: String] = [:]
        for source in cFiles {
            for name in definedFunctions(code(source.text)) { definer[name] = source.path }
        }
        var uses: [String: Set<String>] = [:]
        for source in cFiles {
            for (name, member) in identifiers(insideBraces(code(source.text))[...]) where !member {
                if let other = definer[name], other != source.path { uses[source.path, default: []].insert(other) }
            }
        }
        return (definer, uses)
    }

    func testEveryFileIsInALayerFolderAndEachLayerHasOneHeader() throws {
        let paths = try Self.sourcePaths()
        XCTAssertEqual(paths.filter { Self.layer(of: $0) == nil }, [], "files outside include/ and the N-name folders")
        var headers: [Int: [String]] = [:]
        for path in paths where path.hasSuffix(".h") { headers[Self.layer(of: path) ?? -1, default: []].append(path) }
        let layers = Set(paths.compactMap { Self.layer(of: $0) }).subtracting([0]).sorted()
        XCTAssertEqual(layers, Array(1...5), "the layers base, device, resources, data path, rdma_cm")
        for layer in layers { XCTAssertEqual(headers[layer]?.count, 1, "layer \(layer): \(headers[layer] ?? [])") }
    }

    func testFilesIncludeOnlyTheirOwnAndLowerLayersHeaders() throws {
        let sources = try Self.sources()
        var checked = 0
        for source in sources {
            for include in Self.includes(of: source) {
                checked += 1
                guard let layer = Self.layer(of: include) else {
                    XCTFail("\(source.path) includes \(include), which is in no layer")
                    continue
                }
                XCTAssertLessThanOrEqual(layer, source.layer, "\(source.path) includes the higher layer's \(include)")
            }
        }
        XCTAssertGreaterThan(checked, 30, "every file includes its layer's header")
    }

    func testNoFileCallsAFunctionOfAHigherLayer() throws {
        let sources = try Self.sources()
        let layers = Dictionary(uniqueKeysWithValues: sources.map { ($0.path, $0.layer) })
        let (definer, uses) = Self.references(sources)
        // The reader itself: it must see the exported API and the calls across layers, or this test proves nothing.
        XCTAssertGreaterThan(definer.count, 150)
        XCTAssertEqual(definer["ibv_open_device"], "4-datapath/open_device.c")
        XCTAssertEqual(definer["ffs_context_open"], "2-device/device.c")
        XCTAssertTrue(uses["4-datapath/open_device.c"]?.contains("2-device/device.c") ?? false)
        XCTAssertTrue(uses["5-rdma_cm/cm.c"]?.contains("4-datapath/open_device.c") ?? false)
        for (file, targets) in uses {
            for target in targets {
                XCTAssertLessThanOrEqual(layers[target] ?? 0, layers[file] ?? 0,
                                         "\(file) calls into the higher \(target)")
            }
        }
    }

    func testNoTwoFilesCallEachOtherDirectlyOrAroundACycle() throws {
        let (_, uses) = Self.references(try Self.sources())
        var state: [String: Int] = [:] // 1: on the current path, 2: done
        var path: [String] = []
        func visit(_ file: String) {
            state[file] = 1
            path.append(file)
            for next in (uses[file] ?? []).sorted() {
                if state[next] == 1 {
                    let cycle = path[path.lastIndex(of: next)!...] + [next]
                    XCTFail("a cycle of calls: \(cycle.joined(separator: " -> "))")
                } else if state[next] == nil {
                    visit(next)
                }
            }
            path.removeLast()
            state[file] = 2
        }
        for file in uses.keys.sorted() where state[file] == nil { visit(file) }
        XCTAssertGreaterThan(uses.values.reduce(0) { $0 + $1.count }, 40, "the calls between files were found")
    }
}
