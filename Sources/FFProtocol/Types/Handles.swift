/// An object handle issued by the router: a per-session `u32`, never 0 for a live object.
///
/// Handles are names inside one client session only; the router answers EBADF for a handle it did not
/// issue to that session.
public protocol ObjectHandle: RawRepresentable, Hashable, Sendable, CustomStringConvertible where RawValue == UInt32 {
    /// Wraps a raw handle value.
    init(rawValue: UInt32)
}

extension ObjectHandle {
    /// Whether the handle can name an object (raw value not 0).
    public var isValid: Bool { rawValue != 0 }
    /// A short text form such as `QPHandle(7)`, for logs and error reasons.
    public var description: String { "\(Self.self)(\(rawValue))" }
}

extension WireReader {
    /// Reads a handle that must be valid (non-zero).
    public mutating func handle<H: ObjectHandle>(_: H.Type, _ field: String) throws(WireError) -> H {
        let at = offset
        let raw = try u32(field)
        guard raw != 0 else { throw WireError(.valueOutOfRange(0), field: field, offset: at) }
        return H(rawValue: raw)
    }

    /// Reads an optional handle: 0 means none.
    public mutating func optionalHandle<H: ObjectHandle>(_: H.Type, _ field: String) throws(WireError) -> H? {
        let raw = try u32(field)
        return raw == 0 ? nil : H(rawValue: raw)
    }
}

extension WireWriter {
    /// Appends a handle that must be valid (non-zero).
    public mutating func handle<H: ObjectHandle>(_ h: H, _ field: String) throws(WireError) {
        guard h.isValid else { throw WireError(.valueOutOfRange(0), field: field, offset: offset) }
        u32(h.rawValue)
    }

    /// Appends an optional handle as 0 when absent; a present handle must be valid.
    public mutating func optionalHandle<H: ObjectHandle>(_ h: H?, _ field: String) throws(WireError) {
        if let h { try handle(h, field) } else { u32(0) }
    }
}

/// A protection domain handle.
public struct PDHandle: ObjectHandle {
    /// The raw handle value.
    public var rawValue: UInt32
    /// Wraps a raw handle value.
    public init(rawValue: UInt32) { self.rawValue = rawValue }
}

/// A memory region handle.
public struct MRHandle: ObjectHandle {
    /// The raw handle value.
    public var rawValue: UInt32
    /// Wraps a raw handle value.
    public init(rawValue: UInt32) { self.rawValue = rawValue }
}

/// A completion queue handle.
public struct CQHandle: ObjectHandle {
    /// The raw handle value.
    public var rawValue: UInt32
    /// Wraps a raw handle value.
    public init(rawValue: UInt32) { self.rawValue = rawValue }
}

/// A completion channel handle.
public struct CompChannelHandle: ObjectHandle {
    /// The raw handle value.
    public var rawValue: UInt32
    /// Wraps a raw handle value.
    public init(rawValue: UInt32) { self.rawValue = rawValue }
}

/// A queue pair handle (distinct from the QP number peers address).
public struct QPHandle: ObjectHandle {
    /// The raw handle value.
    public var rawValue: UInt32
    /// Wraps a raw handle value.
    public init(rawValue: UInt32) { self.rawValue = rawValue }
}

/// A shared receive queue handle.
public struct SRQHandle: ObjectHandle {
    /// The raw handle value.
    public var rawValue: UInt32
    /// Wraps a raw handle value.
    public init(rawValue: UInt32) { self.rawValue = rawValue }
}

/// An address handle handle (UD destinations).
public struct AHHandle: ObjectHandle {
    /// The raw handle value.
    public var rawValue: UInt32
    /// Wraps a raw handle value.
    public init(rawValue: UInt32) { self.rawValue = rawValue }
}
