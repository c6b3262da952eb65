import Foundation

/// Reads a kubeconfig file (the current context's cluster and user), as kubectl does. Accepts JSON
/// and the block-style YAML kubectl writes (mappings, `- ` sequences, plain or quoted scalars);
/// flow style (`{}`/`[]`) other than empty values and multi-line scalars are not supported.
public enum KubeConfigFile {
    /// Loads `path`, optionally with a context other than `current-context`.
    public static func load(path: String, context: String? = nil) throws -> KubeConfiguration {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw KubeError.configuration("cannot read kubeconfig \(path): \(error)")
        }
        let root: Any
        if text.trimmingCharacters(in: .whitespacesAndNewlines).hasPrefix("{") {
            root = try JSONSerialization.jsonObject(with: Data(text.utf8))
        } else {
            root = try MiniYAML.parse(text)
        }
        return try configuration(from: root, context: context,
                                 baseDirectory: URL(fileURLWithPath: path).deletingLastPathComponent().path)
    }

    static func named(_ list: Any?, _ name: String, _ field: String) -> [String: Any]? {
        (list as? [Any])?.compactMap {
            $0 as? [String: Any]
        }.first { $0["name"] as? String == name }?[field] as? [String: Any]
    }

    static func configuration(from root: Any, context requested: String?, baseDirectory: String) throws
        -> KubeConfiguration {
        guard let root = root as? [String: Any] else { throw KubeError.configuration("kubeconfig is not a mapping") }
        guard let contextName = requested ?? root["current-context"] as? String else {
            throw KubeError.configuration("kubeconfig has no current-context")
        }
        guard let context = named(root["contexts"], contextName, "context") else {
            throw KubeError.configuration("kubeconfig has no context \(contextName)")
        }
        guard let clusterName = context["cluster"] as? String,
              let cluster = named(root["clusters"], clusterName, "cluster"),
              let server = cluster["server"] as? String else {
            throw KubeError.configuration("kubeconfig context \(contextName) has no usable cluster")
        }
        func path(_ value: Any?) -> String? {
            guard let p = value as? String else { return nil }
            return p.hasPrefix("/") ? p : baseDirectory + "/" + p
        }
        func base64(_ value: Any?) throws -> String? {
            guard let text = value as? String else { return nil }
            guard let data = Data(base64Encoded: text), let decoded = String(data: data, encoding: .utf8) else {
                throw KubeError.configuration("kubeconfig holds invalid base64 data")
            }
            return decoded
        }
        func file(_ value: Any?) throws -> String? {
            guard let p = path(value) else { return nil }
            do { return try String(contentsOfFile: p, encoding: .utf8) } catch {
                throw KubeError.configuration("cannot read \(p): \(error)")
            }
        }
        var config = KubeConfiguration(server: server)
        config.caFile = path(cluster["certificate-authority"])
        config.caPEM = try base64(cluster["certificate-authority-data"])
        config.insecureSkipTLSVerify = (cluster["insecure-skip-tls-verify"] as? Bool)
            ?? ((cluster["insecure-skip-tls-verify"] as? String) == "true")
        if let userName = context["user"] as? String, let user = named(root["users"], userName, "user") {
            config.token = user["token"] as? String
            config.tokenFile = path(user["tokenFile"])
            config.clientCertPEM = try base64(user["client-certificate-data"]) ?? file(user["client-certificate"])
            config.clientKeyPEM = try base64(user["client-key-data"]) ?? file(user["client-key"])
            if user["exec"] != nil, config.token == nil, config.clientCertPEM == nil {
                throw KubeError.configuration("kubeconfig user \(userName) uses an exec credential plugin, which "
                                            + "iphunter does not run; use a token or client certificate")
            }
        }
        return config
    }
}

/// The block-style YAML subset kubeconfig files use.
enum MiniYAML {
    struct Line {
        var indent: Int
        var text: String
    }

    static func parse(_ text: String) throws -> Any {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).compactMap { raw -> Line? in
            let line = String(raw).replacingOccurrences(of: "\t", with: "  ")
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty || trimmed.hasPrefix("#") || trimmed == "---" { return nil }
            return Line(indent: line.prefix { $0 == " " }.count, text: trimmed)
        }
        var index = 0
        guard !lines.isEmpty else { return [String: Any]() }
        return try block(lines, &index, indent: lines[0].indent)
    }

    static func block(_ lines: [Line], _ index: inout Int, indent: Int) throws -> Any {
        if lines[index].text.hasPrefix("- ") || lines[index].text == "-" {
            return try sequence(lines, &index, indent: indent)
        }
        return try mapping(lines, &index, indent: indent)
    }

    static func sequence(_ lines: [Line], _ index: inout Int, indent: Int) throws -> [Any] {
        var items: [Any] = []
        while index < lines.count, lines[index].indent == indent, lines[index].text.hasPrefix("-") {
            let rest = String(lines[index].text.dropFirst(1)).trimmingCharacters(in: .whitespaces)
            if rest.isEmpty {
                index += 1
                items.append(index < lines.count && lines[index].indent > indent ? try block(lines, &index,
                    indent: lines[index].indent) : "")
            } else if splitKey(rest) != nil {
                // "- key: value" starts a mapping indented two past the dash.
                var mutable = lines
                mutable[index] = Line(indent: indent + 2, text: rest)
                items.append(try mapping(mutable, &index, indent: indent + 2))
            } else {
                items.append(scalar(rest))
                index += 1
            }
        }
        return items
    }

    static func mapping(_ lines: [Line], _ index: inout Int, indent: Int) throws -> [String: Any] {
        var map: [String: Any] = [:]
        while index < lines.count, lines[index].indent == indent {
            guard let (key, value) = splitKey(lines[index].text) else {
                throw KubeError.configuration("unsupported YAML line: \(lines[index].text)")
            }
            index += 1
            if !value.isEmpty {
                map[key] = scalar(value)
            } else if index < lines.count, lines[index].indent > indent {
                map[key] = try block(lines, &index, indent: lines[index].indent)
            } else if index < lines.count, lines[index].indent == indent, lines[index].text.hasPrefix("-") {
                map[key] = try sequence(lines, &index, indent: indent)
            } else {
                map[key] = ""
            }
        }
        return map
    }

    static func splitKey(_ text: String) -> (String, String)? {
        guard let colon = text.range(of: ": ")
            ?? (text.hasSuffix(":") ? text.range(of: ":", options: .backwards) : nil) else { return nil }
        let key = scalar(String(text[..<colon.lowerBound])) as? String ?? ""
        if key.isEmpty || key.hasPrefix("\"") == false && key.contains(" ") { return nil }
        return (key, String(text[colon.upperBound...]).trimmingCharacters(in: .whitespaces))
    }

    static func scalar(_ text: String) -> Any {
        if text.count >= 2,
           (text.hasPrefix("\"") && text.hasSuffix("\"")) || (text.hasPrefix("'") && text.hasSuffix("'")) {
            return String(text.dropFirst().dropLast())
        }
        if text == "true" { return true }
        if text == "false" { return false }
        if text == "{}" { return [String: Any]() }
        if text == "[]" { return [Any]() }
        return text
    }
}
