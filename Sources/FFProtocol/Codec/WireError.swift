/// A message that could not be decoded or encoded: what was wrong, in which field, at which byte offset.
///
/// The offset counts from the first byte of the datagram (header included) when decoding, and from the
/// first byte of the output when encoding, so a hex dump of the datagram points straight at the culprit.
public struct WireError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The kind of defect found.
    public enum Reason: Equatable, Sendable {
        /// The input ended before the field was complete.
        case truncated
        /// Bytes remain after the last field of the body.
        case trailingBytes(count: Int)
        /// The header does not start with `WireHeader.magic`.
        case badMagic(UInt32)
        /// The header's protocol version is not one this codec speaks for this kind.
        case unsupportedVersion(UInt16)
        /// The header names a message kind this codec does not know.
        case unknownKind(UInt16)
        /// The header's body length does not match the datagram size.
        case lengthMismatch(declared: UInt32, actual: Int)
        /// The message would exceed `WireLimits.maxMessageSize`.
        case messageTooLarge(size: Int)
        /// The header's descriptor count is not the one this kind carries.
        case wrongDescriptorCount(expected: UInt8, actual: UInt8)
        /// A numeric field holds a value outside its allowed range or enumeration.
        case valueOutOfRange(UInt64)
        /// A string field is longer than its bound.
        case stringTooLong(length: Int, max: Int)
        /// A string field is not valid UTF-8 or contains a NUL byte.
        case invalidString
        /// A count field exceeds its documented maximum.
        case countTooLarge(count: Int, max: Int)
        /// A reserved field or reserved bits are not zero.
        case nonZeroReserved
    }

    /// What was wrong.
    public var reason: Reason
    /// The field that was being read or written, e.g. `"CreateQPRequest.cap.maxSendWR"`.
    public var field: String
    /// Byte offset of the field in the datagram (decode) or output (encode).
    public var offset: Int

    /// Creates an error for `field` at `offset`.
    public init(_ reason: Reason, field: String, offset: Int) {
        self.reason = reason
        self.field = field
        self.offset = offset
    }

    /// A one-line description suitable for an error reply's reason or a log line.
    public var description: String {
        let what: String
        switch reason {
        case .truncated: what = "truncated"
        case .trailingBytes(let n): what = "\(n) trailing byte(s)"
        case .badMagic(let m): what = "bad magic 0x\(String(m, radix: 16))"
        case .unsupportedVersion(let v): what = "unsupported protocol version \(v)"
        case .unknownKind(let k): what = "unknown message kind 0x\(String(k, radix: 16))"
        case .lengthMismatch(let d, let a): what = "body length \(d) but \(a) byte(s) follow the header"
        case .messageTooLarge(let s): what = "message of \(s) bytes exceeds \(WireLimits.maxMessageSize)"
        case .wrongDescriptorCount(let e, let a): what = "carries \(a) descriptor(s), kind requires \(e)"
        case .valueOutOfRange(let v): what = "value \(v) out of range"
        case .stringTooLong(let l, let m): what = "string of \(l) bytes exceeds \(m)"
        case .invalidString: what = "string is not valid UTF-8 or contains NUL"
        case .countTooLarge(let c, let m): what = "count \(c) exceeds \(m)"
        case .nonZeroReserved: what = "reserved field is not zero"
        }
        return "\(field) at offset \(offset): \(what)"
    }
}
