//! Which A2A operation a request is, whatever the binding or version: v1.0 JSON-RPC
//! (`SendMessage`), v0.3 JSON-RPC (`message/send`) and the REST binding (`POST
//! /message:send`) all name the same operation, by its v1.0 name.

/// The v1.0 name of a v0.3 JSON-RPC method (v1.0 names map to themselves).
pub fn normalise(method: &str) -> &str {
    match method {
        "message/send" => "SendMessage",
        "message/stream" => "SendStreamingMessage",
        "tasks/get" => "GetTask",
        "tasks/list" => "ListTasks",
        "tasks/cancel" => "CancelTask",
        "tasks/resubscribe" => "SubscribeToTask",
        "tasks/pushNotificationConfig/set" => "CreateTaskPushNotificationConfig",
        "tasks/pushNotificationConfig/get" => "GetTaskPushNotificationConfig",
        "tasks/pushNotificationConfig/list" => "ListTaskPushNotificationConfigs",
        "tasks/pushNotificationConfig/delete" => "DeleteTaskPushNotificationConfig",
        "agent/getAuthenticatedExtendedCard" => "GetExtendedAgentCard",
        other => other,
    }
}

/// The operation of a REST-binding request (`path` after any base such as `/rest`), if any.
pub fn rest_operation(method: &str, path: &str) -> Option<&'static str> {
    let path = path.split('?').next().unwrap_or_default();
    let seg: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    // The REST paths may sit under a base path and a tenant: look from the end.
    let last = *seg.last()?;
    let op = match (method, last) {
        ("POST", "message:send") => "SendMessage",
        ("POST", "message:stream") => "SendStreamingMessage",
        ("GET", "extendedAgentCard") => "GetExtendedAgentCard",
        ("GET", "tasks") => "ListTasks",
        ("POST", l) if l.ends_with(":cancel") => "CancelTask",
        ("POST" | "GET", l) if l.ends_with(":subscribe") => "SubscribeToTask",
        ("POST", "pushNotificationConfigs") => "CreateTaskPushNotificationConfig",
        ("GET", "pushNotificationConfigs") => "ListTaskPushNotificationConfigs",
        ("GET", _) if seg.len() >= 2 && seg[seg.len() - 2] == "pushNotificationConfigs" => {
            "GetTaskPushNotificationConfig"
        }
        ("DELETE", _) if seg.len() >= 2 && seg[seg.len() - 2] == "pushNotificationConfigs" => {
            "DeleteTaskPushNotificationConfig"
        }
        ("GET", _) if seg.len() >= 2 && seg[seg.len() - 2] == "tasks" => "GetTask",
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
        assert_eq!(normalise("message/send"), "SendMessage");
        assert_eq!(normalise("CancelTask"), "CancelTask");
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
        assert_eq!(rest_operation("GET", "/"), None);
    }
}
