import FFRouter
import FFRouterAPI

/// The router status as `ffctl router status` fetches it.
enum AdminStatus {
    static func fetch(_ path: String) throws -> RouterStatus { try AdminServer.requestStatus(path: path) }
}
