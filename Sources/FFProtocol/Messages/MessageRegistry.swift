/// Every request of the protocol, listed once. From this list come the kinds the header may carry, each kind's
/// body codec and descriptor counts, the router's completeness check (a handler for every request) and the
/// refusal of anything else.
public enum MessageRegistry {
    /// The request types, in kind order.
    public static let requests: [any WireRequest.Type] = [
        Hello.self, QueryDeviceRequest.self, QueryPortRequest.self, QueryGIDRequest.self,
        AllocPDRequest.self, DeallocPDRequest.self, RegMRRequest.self, DeregMRRequest.self, RegMRSegmentsRequest.self,
        CreateCompChannelRequest.self, DestroyCompChannelRequest.self, CreateCQRequest.self, DestroyCQRequest.self,
        ReqNotifyCQRequest.self,
        CreateQPRequest.self, ModifyQPRequest.self, QueryQPRequest.self, DestroyQPRequest.self,
        CreateSRQRequest.self, ModifySRQRequest.self, DestroySRQRequest.self,
        CreateAHRequest.self, DestroyAHRequest.self,
        PostSendRequest.self, PostRecvRequest<QPHandle>.self, PostRecvRequest<SRQHandle>.self, PollCQRequest.self,
        MapRingRequest.self,
        CMCreateChannelRequest.self, CMRequest.self,
    ]

    /// What the codec knows of one kind.
    public struct Entry: Sendable {
        /// The kind.
        public let kind: MessageKind
        /// Descriptors that may travel with it.
        public let descriptors: ClosedRange<UInt8>
        /// Reads a body of this kind.
        let decode: @Sendable (inout WireReader) throws(WireError) -> Message
    }

    /// The entry for a header's kind number, nil for a number no message has.
    public static func entry(_ rawValue: UInt16) -> Entry? { table[rawValue] }

    /// Every kind: each request, its reply, and `error`, in number order.
    public static let kinds: [MessageKind] = table.values.map(\.kind).sorted { $0.rawValue < $1.rawValue }

    private static let table: [UInt16: Entry] = {
        var table: [UInt16: Entry] = [:]
        func add(_ entry: Entry) {
            precondition(table[entry.kind.rawValue] == nil, "kind \(entry.kind) registered twice")
            table[entry.kind.rawValue] = entry
        }
        func register<R: WireRequest>(_: R.Type) {
            precondition(R.kind.isRequest, "\(R.self) declares the reply number \(R.kind.rawValue)")
            add(Entry(kind: R.kind, descriptors: R.descriptors) { (r: inout WireReader) throws(WireError) in
                Message(try R(from: &r))
            })
            // Not R.replyKind: that looks the kind up in this table, which is being built.
            let reply = Entry(kind: R.kind.declaredReply, descriptors: R.replyDescriptors...R.replyDescriptors) {
                (r: inout WireReader) throws(WireError) in
                Message.reply(to: R.self, try R.Reply(from: &r))
            }
            add(reply)
        }
        for request in requests { register(request) }
        add(Entry(kind: .error, descriptors: 0...0) { (r: inout WireReader) throws(WireError) in
            Message.error(try ErrorReply(from: &r))
        })
        return table
    }()
}

extension WireRequest {
    /// This request's reply kind.
    public static var replyKind: MessageKind { MessageKind(rawValue: kind.rawValue | 0x8000) ?? kind.declaredReply }
}
