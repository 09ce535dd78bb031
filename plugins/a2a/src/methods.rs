//! Which A2A operation a request is, whatever the binding or version: v1.0 JSON-RPC
//! (`SendMessage`), v0.3 JSON-RPC (`message/send`), the REST binding (`POST /message:send`)
//! and gRPC (`/lf.a2a.v1.A2AService/SendMessage`) all name the same operation, by its v1.0
//! name. Only the operations below are ever returned: anything else is unclassified.

/// Every v1.0 operation, the only values an `operation` can take (and so the only metric labels
/// besides `other`).
pub const OPERATIONS: [&str; 11] = [
    "SendMessage",
    "SendStreamingMessage",
    "GetTask",
    "ListTasks",
    "CancelTask",
    "SubscribeToTask",
    "CreateTaskPushNotificationConfig",
    "GetTaskPushNotificationConfig",
    "ListTaskPushNotificationConfigs",
    "DeleteTaskPushNotificationConfig",
    "GetExtendedAgentCard",
];

/// The known operation named `name`, as a `'static` string. Names are compared ignoring ASCII
/// case, here and below: a router that ignores case then sees the same operation, and one that
/// does not answers "not found", so a spelling is never a *different* allowed operation.
pub fn known(name: &str) -> Option<&'static str> {
    OPERATIONS
        .iter()
        .copied()
        .find(|o| o.eq_ignore_ascii_case(name))
}

/// The metric label for an operation name: itself if known, else `other`, so nothing a client
/// sends can add series.
pub fn label(name: &str) -> &'static str {
    known(name).unwrap_or("other")
}

/// The v1.0 operation of a JSON-RPC method (v1.0 or v0.3 name); `None` if it is neither.
pub fn jsonrpc_operation(method: &str) -> Option<&'static str> {
    let lower = method.to_ascii_lowercase();
    let v1 = match lower.as_str() {
        "message/send" => "SendMessage",
        "message/stream" => "SendStreamingMessage",
        "tasks/get" => "GetTask",
        "tasks/list" => "ListTasks",
        "tasks/cancel" => "CancelTask",
        "tasks/resubscribe" => "SubscribeToTask",
        "tasks/pushnotificationconfig/set" => "CreateTaskPushNotificationConfig",
        "tasks/pushnotificationconfig/get" => "GetTaskPushNotificationConfig",
        "tasks/pushnotificationconfig/list" => "ListTaskPushNotificationConfigs",
        "tasks/pushnotificationconfig/delete" => "DeleteTaskPushNotificationConfig",
        "agent/getauthenticatedextendedcard" => "GetExtendedAgentCard",
        _ => method,
    };
    known(v1)
}

/// Which `.proto` a gRPC service name belongs to; the request layouts differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrpcEra {
    /// `lf.a2a.v1.A2AService`: the v1.0 `a2a.proto`.
    V10,
    /// `a2a.v1.A2AService`: the v0.3 `a2a.proto`. Some v1.0 drafts used this package with
    /// v1.0 method names, so both method sets are accepted and both layouts inspected.
    A2aV1,
}

/// The operation and era of a gRPC call, from its `:path` (`/<package>.A2AService/<Method>`,
/// possibly under a route prefix).
pub fn grpc_operation(path: &str) -> Option<(&'static str, GrpcEra)> {
    let path = path.split('?').next().unwrap_or_default();
    let mut rev = path.rsplit('/');
    let method = rev.next()?;
    let service = rev.next()?.to_ascii_lowercase();
    let era = match service.as_str() {
        "lf.a2a.v1.a2aservice" => GrpcEra::V10,
        "a2a.v1.a2aservice" => GrpcEra::A2aV1,
        _ => return None,
    };
    let op = match (era, method.to_ascii_lowercase().as_str()) {
        // v0.3 names of the same operations.
        (GrpcEra::A2aV1, "tasksubscription") => "SubscribeToTask",
        (GrpcEra::A2aV1, "listtaskpushnotificationconfig") => "ListTaskPushNotificationConfigs",
        // v0.3's card call; its v1.0 successor is the extended card.
        (GrpcEra::A2aV1, "getagentcard") => "GetExtendedAgentCard",
        _ => known(method)?,
    };
    Some((op, era))
}

/// The operation of a REST-binding request (`path` after any base such as `/rest`), if any.
/// A spelling the agent's router may decode differently (`%3A`) is not an operation here;
/// callers refuse paths with `%` before asking.
pub fn rest_operation(method: &str, path: &str) -> Option<&'static str> {
    let method = method.to_ascii_uppercase();
    let path = path
        .split('?')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let seg: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    // The REST paths may sit under a base path and a tenant: look from the end.
    let last = *seg.last()?;
    let before = if seg.len() >= 2 {
        seg[seg.len() - 2]
    } else {
        ""
    };
    let op = match (method.as_str(), last) {
        ("POST", "message:send") => "SendMessage",
        ("POST", "message:stream") => "SendStreamingMessage",
        ("GET", "extendedagentcard") => "GetExtendedAgentCard",
        // v0.3 REST: `GET /v1/card` is the authenticated extended card.
        ("GET", "card") if before == "v1" => "GetExtendedAgentCard",
        ("GET", "tasks") => "ListTasks",
        ("POST", l) if l.ends_with(":cancel") && before == "tasks" => "CancelTask",
        ("POST" | "GET", l) if l.ends_with(":subscribe") && before == "tasks" => "SubscribeToTask",
        ("POST", "pushnotificationconfigs") => "CreateTaskPushNotificationConfig",
        ("GET", "pushnotificationconfigs") => "ListTaskPushNotificationConfigs",
        ("GET", _) if before == "pushnotificationconfigs" => "GetTaskPushNotificationConfig",
        ("DELETE", _) if before == "pushnotificationconfigs" => "DeleteTaskPushNotificationConfig",
        ("GET", _) if before == "tasks" => "GetTask",
        _ => return None,
    };
    Some(op)
}

/// Operations that may carry a push-notification webhook URL.
pub fn carries_webhook(op: &str) -> bool {
    matches!(
        op,
        "SendMessage" | "SendStreamingMessage" | "CreateTaskPushNotificationConfig"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_binding_names_the_same_operation() {
        assert_eq!(jsonrpc_operation("message/send"), Some("SendMessage"));
        assert_eq!(jsonrpc_operation("CancelTask"), Some("CancelTask"));
        assert_eq!(jsonrpc_operation("cancelTask"), Some("CancelTask"));
        assert_eq!(jsonrpc_operation("tasks/frobnicate"), None);
        assert_eq!(
            rest_operation("POST", "/rest/message:send"),
            Some("SendMessage")
        );
        assert_eq!(
            rest_operation("GET", "/rest/tenant-a/tasks/t1"),
            Some("GetTask")
        );
        assert_eq!(
            rest_operation("POST", "/tasks/t1:cancel"),
            Some("CancelTask")
        );
        assert_eq!(
            rest_operation("GET", "/tasks/t1:subscribe"),
            Some("SubscribeToTask")
        );
        assert_eq!(
            rest_operation("POST", "/tasks/t1/pushNotificationConfigs"),
            Some("CreateTaskPushNotificationConfig")
        );
        assert_eq!(
            rest_operation("DELETE", "/tasks/t1/pushNotificationConfigs/c1"),
            Some("DeleteTaskPushNotificationConfig")
        );
        assert_eq!(
            rest_operation("GET", "/v1/card"),
            Some("GetExtendedAgentCard")
        );
        assert_eq!(rest_operation("GET", "/"), None);
        assert_eq!(
            rest_operation("POST", "/rest/Message:Send"),
            Some("SendMessage")
        );
        assert_eq!(rest_operation("POST", "/rest/message:sendx"), None);
    }

    #[test]
    fn grpc_paths_of_both_protos() {
        assert_eq!(
            grpc_operation("/lf.a2a.v1.A2AService/SendMessage"),
            Some(("SendMessage", GrpcEra::V10))
        );
        assert_eq!(
            grpc_operation("/a2a.v1.A2AService/TaskSubscription"),
            Some(("SubscribeToTask", GrpcEra::A2aV1))
        );
        assert_eq!(
            grpc_operation("/a2a.v1.A2AService/ListTaskPushNotificationConfig"),
            Some(("ListTaskPushNotificationConfigs", GrpcEra::A2aV1))
        );
        assert_eq!(
            grpc_operation("/a2a.v1.A2AService/GetAgentCard"),
            Some(("GetExtendedAgentCard", GrpcEra::A2aV1))
        );
        // v0.3-only names are not v1.0 methods.
        assert_eq!(
            grpc_operation("/lf.a2a.v1.A2AService/TaskSubscription"),
            None
        );
        assert_eq!(
            grpc_operation("/lf.a2a.v1.A2AService/sendmessage"),
            Some(("SendMessage", GrpcEra::V10))
        );
        assert_eq!(grpc_operation("/other.Service/SendMessage"), None);
        assert_eq!(grpc_operation("SendMessage"), None);
    }

    #[test]
    fn labels_are_bounded() {
        assert_eq!(label("GetTask"), "GetTask");
        assert_eq!(label("x-made-up-4711"), "other");
    }
}
