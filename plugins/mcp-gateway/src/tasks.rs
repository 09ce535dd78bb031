//! The tasks extension (2025-11-25 experimental; an extension in 2026-07-28): a server's task
//! ids reach the client as gateway-scoped ids naming the server ([`crate::ids::task`]), so
//! `tasks/get`, `tasks/result` and `tasks/cancel` are routed to the server running the task,
//! under its own id, and `tasks/list` merges every server's tasks.

use crate::ids::{self, Scoped};
use serde_json::Value;

const RELATED: &str = "io.modelcontextprotocol/related-task";

/// Gives every task id in a result or notification params from `server` its public form:
/// `task.taskId` (a task created), `taskId` (a task's state), `tasks[].taskId` (a list), and the
/// related task in `_meta`.
pub fn publish(obj: &mut Value, server: &str) {
    let mut ids: Vec<&mut Value> = Vec::new();
    let Some(o) = obj.as_object_mut() else {
        return;
    };
    for (key, v) in o.iter_mut() {
        match key.as_str() {
            "taskId" => ids.push(v),
            "task" => ids.extend(v.get_mut("taskId")),
            "tasks" => {
                if let Value::Array(list) = v {
                    ids.extend(list.iter_mut().filter_map(|t| t.get_mut("taskId")));
                }
            }
            "_meta" => ids.extend(v.get_mut(RELATED).and_then(|r| r.get_mut("taskId"))),
            _ => {}
        }
    }
    for id in ids {
        *id = ids::task(server, id);
    }
}

/// The server running the task a `tasks/*` request names, with the request's `taskId` (and
/// the related task in its `_meta`) put back to the server's own.
pub fn owner(params: &mut Value) -> Option<String> {
    let Some(Scoped::Task { server, id }) = params.get("taskId").and_then(ids::parse) else {
        return None;
    };
    params["taskId"] = id;
    if let Some(related) =
        params.pointer_mut(&format!("/_meta/{}/taskId", RELATED.replace('/', "~1")))
        && let Some(Scoped::Task { id, .. }) = ids::parse(related)
    {
        *related = id;
    }
    Some(server)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn task_ids_name_their_server_everywhere_and_map_back() {
        let mut created = json!({"task": {"taskId": "t1", "status": "working"}});
        publish(&mut created, "ev");
        let public = created["task"]["taskId"].clone();
        assert_ne!(public, json!("t1"));
        let mut state = json!({"taskId": "t1", "status": "completed"});
        publish(&mut state, "ev");
        assert_eq!(state["taskId"], public);
        let mut list = json!({"tasks": [{"taskId": "t1"}], "_meta": {RELATED: {"taskId": "t1"}}});
        publish(&mut list, "ev");
        assert_eq!(list["tasks"][0]["taskId"], public);
        assert_eq!(list["_meta"][RELATED]["taskId"], public);
        let mut get = json!({"taskId": public});
        assert_eq!(owner(&mut get).as_deref(), Some("ev"));
        assert_eq!(get["taskId"], "t1");
        assert_eq!(
            owner(&mut json!({"taskId": "t1"})),
            None,
            "ids the gateway never gave"
        );
    }
}
