import ArgumentParser
import Etcd
import FFCommandLine
import Foundation

/// `ffctl watch`: every change to the map, as it happens.
struct WatchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "watch",
        abstract: "Stream every change to the map: revision, type, old → new, decoded.",
        discussion: """
            Keeps watching across etcd restarts: the stream resumes from the last revision seen + 1 \
            (so no change is lost or shown twice) and a line starting with '#' says so. Ends with \
            status 2 when etcd compacted the revision the watch needs (restart with a newer --from-revision).
            """
    )

    @OptionGroup var etcd: EtcdOptions

    @Option(help: "First revision to show (0: only changes from now on).")
    var fromRevision: Int64 = 0

    @Flag(help: "One JSON object per line instead of text.")
    var json = false

    @Flag(help: "Also ask etcd for progress notifications (shown as '# progress').")
    var progress = false

    func run() async throws {
        let schema = etcd.schema
        let formatter = WatchFormatter(schema: schema, json: json)
        let options = WatchOptions(startRevision: fromRevision, prevKV: true, progressNotify: progress)
        do {
            try await etcd.withClient { client in
                for try await update in client.watch(.prefix(schema.root), options: options) {
                    // Written unbuffered so a pipe (grep, a test) sees each change at once.
                    for line in formatter.lines(for: update) {
                        FileHandle.standardOutput.write(Data((line + "\n").utf8))
                    }
                }
            }
        } catch EtcdError.compacted(let requested, let compact) {
            FileHandle.standardError.write(Data(("ffctl: revision \(requested) has been compacted (etcd keeps history "
                                                 + "from \(compact) on); run `ffctl map` and watch again with "
                                                 + "--from-revision \(compact) or later\n").utf8))
            throw ExitCode(2)
        }
    }
}

/// Turns watch updates into the documented text or JSON lines (docs/ffctl.md).
struct WatchFormatter {
    let schema: MapSchema
    let json: Bool

    func lines(for update: WatchUpdate) -> [String] {
        switch update {
        case .created(let revision):
            return json ? [jsonLine(Notice(notice: "watching", revision: revision, prefix: schema.root))]
                        : ["# watching \(schema.root) (store at revision \(revision))"]
        case .reconnected(let resume, let endpoint, let cause):
            return json ? [jsonLine(Notice(notice: "resumed", revision: resume, prefix: schema.root, endpoint: endpoint,
                                           cause: cause))]
                        : ["# etcd stream broke (\(cause)); resumed from revision \(resume) at \(endpoint), no change "
                            + "lost"]
        case .silent(let endpoint, let cause):
            return json ? [jsonLine(Notice(notice: "silent", revision: nil, prefix: schema.root, endpoint: endpoint,
                                           cause: cause))]
                        : ["# etcd stream at \(endpoint) went silent (\(cause)); reconnecting"]
        case .progress(let revision):
            return json ? [jsonLine(Notice(notice: "progress", revision: revision, prefix: schema.root))]
                        : ["# progress: up to date at revision \(revision)"]
        case .events(let events):
            return events.map(line(for:))
        }
    }

    struct Notice: Encodable {
        var notice: String
        var revision: Int64?
        var prefix: String
        var endpoint: String?
        var cause: String?
    }

    struct Change: Encodable {
        var revision: Int64
        var type: String
        var key: String
        var kind: String
        var name: String
        var old: JSONValue?
        var new: JSONValue?
    }

    /// A decoded entry, or the raw string for values outside the schema.
    enum JSONValue: Encodable {
        case vip(VipEntry)
        case node(NodeEntry)
        case raw(String)
        func encode(to encoder: any Encoder) throws {
            var container = encoder.singleValueContainer()
            switch self {
            case .vip(let v): try container.encode(v)
            case .node(let n): try container.encode(n)
            case .raw(let s): try container.encode(s)
            }
        }
    }

    func decode(_ kv: KeyValue?) -> JSONValue? {
        guard let kv else { return nil }
        switch schema.classify(kv.key) {
        case .vip: return MapCodec.vip(kv.value).map(JSONValue.vip) ?? .raw(kv.valueString)
        case .node: return MapCodec.node(kv.value).map(JSONValue.node) ?? .raw(kv.valueString)
        case .leader, .other: return .raw(kv.valueString)
        }
    }

    func describe(_ value: JSONValue?) -> String {
        switch value {
        case nil: return "(none)"
        case .vip(let v)?: return "pip=\(v.pip) node=\(v.node) pod=\(v.namespace)/\(v.pod)"
        case .node(let n)?: return "pip=\(n.pip)"
        case .raw(let s)?: return "\"\(s)\""
        }
    }

    func line(for event: WatchEvent) -> String {
        let (kind, name): (String, String) = {
            switch schema.classify(event.kv.key) {
            case .vip(let vip): return ("vip", vip)
            case .node(let node): return ("node", node)
            case .leader: return ("leader", "iphunter")
            case .other: return ("key", event.kv.key)
            }
        }()
        let old = decode(event.previous)
        let new = event.kind == .delete ? nil : decode(event.kv)
        if json {
            return jsonLine(Change(revision: event.revision, type: event.kind.rawValue, key: event.kv.key, kind: kind,
                                   name: name, old: old, new: new))
        }
        let type = event.kind.rawValue.padding(toLength: 6, withPad: " ", startingAt: 0)
        return "\(event.revision)  \(type)  \(kind) \(name): \(describe(old)) → \(describe(new))"
    }
}
