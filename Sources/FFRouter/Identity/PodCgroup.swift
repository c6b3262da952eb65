/// Finds the Kubernetes pod a process belongs to from its `/proc/PID/cgroup`: the kubelet puts every container of a pod
/// under one cgroup named for the pod's UID, whatever the cgroup version and driver:
///
/// - cgroupfs driver: `…/kubepods/burstable/pod<UID>/<container>` (`kubepods/pod<UID>` for Guaranteed pods);
/// - systemd driver: `…/kubepods-burstable-pod<UID with _ for ->.slice/cri-containerd-<id>.scope`
///   (`kubepods-pod<…>.slice` for Guaranteed pods).
///
/// cgroup v1 has one line per hierarchy (`ID:controllers:path`), v2 one line `0::path`; a hybrid system has both, and
/// its v2 line may not show the pod. A path may be relative to the reader's cgroup namespace (`/../../kubepods-…`), which
/// is what a router in a container with its own cgroup namespace reads. Every line that names a pod must name the same one.
enum PodCgroup {
    /// The pod UID that `text` (the content of a `/proc/PID/cgroup`) names, or why it names none.
    static func podUID(cgroupFile text: String) -> Result<String, PodCgroupError> {
        var found: [String] = []
        var paths: [String] = []
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard fields.count == 3 else { continue }
            let path = fields[2]
            if !paths.contains(String(path)) { paths.append(String(path)) }
            // The innermost pod component: the pod's own cgroup, below any QoS level.
            if let uid = path.split(separator: "/").reversed().lazy.compactMap(podUID(component:)).first, !found.contains(uid) {
                found.append(uid)
            }
        }
        switch found.count {
        case 1: return .success(found[0])
        case 0: return .failure(.noPod(paths: paths))
        default: return .failure(.severalPods(found))
        }
    }

    /// The UID a single path component names: `pod<UID>` (cgroupfs) or `kubepods[-QOS]-pod<UID_>.slice` (systemd).
    static func podUID(component: Substring) -> String? {
        if component.hasPrefix("pod") {
            let uid = component.dropFirst(3)
            return isUID(uid) ? String(uid) : nil
        }
        guard component.hasPrefix("kubepods"), component.hasSuffix(".slice"), let range = component.range(of: "-pod") else { return nil }
        let qos = component[component.index(component.startIndex, offsetBy: "kubepods".count)..<range.lowerBound]
        guard qos.isEmpty || qos == "-burstable" || qos == "-besteffort" else { return nil }
        let uid = String(component[range.upperBound...].dropLast(".slice".count).map { $0 == "_" ? "-" : $0 })
        return isUID(Substring(uid)) ? uid : nil
    }

    /// A Kubernetes UID as the kubelet names cgroups with it: a UUID (`8-4-4-4-12` lowercase hex) from the API server, or
    /// the 32 hex digits of a static pod's config hash.
    static func isUID(_ text: Substring) -> Bool {
        let bytes = Array(text.utf8)
        let hex: (UInt8) -> Bool = { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains($0) }
        if bytes.count == 32 { return bytes.allSatisfy(hex) }
        guard bytes.count == 36 else { return false }
        return bytes.enumerated().allSatisfy { index, byte in [8, 13, 18, 23].contains(index) ? byte == UInt8(ascii: "-") : hex(byte) }
    }
}

/// Why a cgroup file names no single pod.
enum PodCgroupError: Error, Equatable, CustomStringConvertible {
    /// No line names a pod: not a container of a Kubernetes pod (or one in the router's own pod, whose component the
    /// router's cgroup namespace hides).
    case noPod(paths: [String])
    /// Lines name different pods.
    case severalPods([String])

    var description: String {
        switch self {
        case .noPod(let paths): "its cgroup names no Kubernetes pod (\(paths.isEmpty ? "empty cgroup file" : paths.prefix(3).joined(separator: ", ")))"
        case .severalPods(let uids): "its cgroups name several pods (\(uids.joined(separator: ", ")))"
        }
    }
}
