//! Just enough gRPC and protobuf to govern A2A over gRPC without generated code: the one
//! length-prefixed message of a unary request, and the string fields at a few fixed paths
//! (webhook URLs, task ids). The walker accepts every well-formed encoding a protobuf parser
//! accepts (all wire types, groups, repeated occurrences of a singular field, which parsers
//! merge), so a value the agent would read is never one this walker skips.

use crate::methods::GrpcEra;

/// Whether a `content-type` is a gRPC one (`application/grpc`, `+proto`, `+json`, `-web`...).
pub fn is_grpc(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|c| {
        c.get(..16)
            .is_some_and(|p| p.eq_ignore_ascii_case("application/grpc"))
    })
}

/// The message of a unary request body: exactly one uncompressed length-prefixed message.
pub fn message(body: &[u8]) -> Result<&[u8], String> {
    let (head, rest) = body
        .split_at_checked(5)
        .ok_or("the gRPC request has no complete message")?;
    match head[0] {
        0 => {}
        1 => return Err("the gRPC message is compressed and cannot be inspected".into()),
        _ => return Err("the gRPC message has an invalid flag".into()),
    }
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if rest.len() != len {
        return Err("the gRPC request is not exactly one message".into());
    }
    Ok(rest)
}

fn varint(buf: &[u8], pos: &mut usize) -> Result<u64, ()> {
    let mut out = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos).ok_or(())?;
        *pos += 1;
        out |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(out);
        }
    }
    Err(())
}

/// One field of a message: its number and, for length-delimited ones, the bytes.
enum Field<'a> {
    Bytes(u32, &'a [u8]),
    Other,
}

/// The next field at `pos`, skipping groups whole.
fn field<'a>(buf: &'a [u8], pos: &mut usize) -> Result<Field<'a>, ()> {
    let key = varint(buf, pos)?;
    let number = u32::try_from(key >> 3).map_err(|_| ())?;
    if number == 0 {
        return Err(());
    }
    match key & 7 {
        0 => varint(buf, pos).map(|_| Field::Other),
        1 => skip(buf, pos, 8).map(|()| Field::Other),
        5 => skip(buf, pos, 4).map(|()| Field::Other),
        2 => {
            let len = usize::try_from(varint(buf, pos)?).map_err(|_| ())?;
            let end = pos.checked_add(len).ok_or(())?;
            let bytes = buf.get(*pos..end).ok_or(())?;
            *pos = end;
            Ok(Field::Bytes(number, bytes))
        }
        3 => {
            // A group: fields until the matching end-group tag.
            loop {
                let at = *pos;
                let key = varint(buf, pos)?;
                if key & 7 == 4 {
                    return if key >> 3 == u64::from(number) {
                        Ok(Field::Other)
                    } else {
                        Err(())
                    };
                }
                *pos = at;
                field(buf, pos)?;
            }
        }
        _ => Err(()),
    }
}

fn skip(buf: &[u8], pos: &mut usize, n: usize) -> Result<(), ()> {
    let end = pos.checked_add(n).ok_or(())?;
    if end > buf.len() {
        return Err(());
    }
    *pos = end;
    Ok(())
}

/// A protobuf message that is not well-formed.
#[derive(Debug)]
pub struct Malformed;

/// Every string at `path` (field numbers, outermost first) in `msg`, over every occurrence of
/// each field. `Err` if the message is not well-formed where the walk goes, as a parser would
/// reject it too.
pub fn strings_at(msg: &[u8], path: &[u32]) -> Result<Vec<String>, Malformed> {
    let mut out = Vec::new();
    walk(msg, path, &mut out, 0).map_err(|()| Malformed)?;
    Ok(out)
}

fn walk(msg: &[u8], path: &[u32], out: &mut Vec<String>, depth: usize) -> Result<(), ()> {
    let Some((&want, rest)) = path.split_first() else {
        return Ok(());
    };
    if depth > 16 {
        return Err(());
    }
    let mut pos = 0;
    while pos < msg.len() {
        // A field of the wanted number with another wire type is an unknown field to parsers.
        if let Field::Bytes(n, bytes) = field(msg, &mut pos)?
            && n == want
        {
            if rest.is_empty() {
                out.push(String::from_utf8_lossy(bytes).into_owned());
            } else {
                walk(bytes, rest, out, depth + 1)?;
            }
        }
    }
    Ok(())
}

/// The request layouts the agent may use for a service name.
fn layouts(era: GrpcEra) -> &'static [Layout] {
    match era {
        GrpcEra::V10 => &[V10],
        GrpcEra::A2aV1 => &[V03, V10],
    }
}

struct Layout {
    /// Webhook URL in `SendMessageRequest`.
    send_webhook: &'static [u32],
    /// Webhook URL in the create-push-config request.
    create_webhook: &'static [u32],
    /// Task id of Get/Cancel/Subscribe requests (v0.3: a `tasks/{id}` name).
    task_id: &'static [u32],
    /// Task and context ids of the message in `SendMessageRequest`.
    message_task: &'static [u32],
    message_context: &'static [u32],
}

/// `lf.a2a.v1`: `SendMessageRequest{tenant=1, message=2, configuration=3}`,
/// `SendMessageConfiguration{task_push_notification_config=2}`,
/// `TaskPushNotificationConfig{url=4}` (also the create request itself).
const V10: Layout = Layout {
    send_webhook: &[3, 2, 4],
    create_webhook: &[4],
    task_id: &[2],
    message_task: &[2, 3],
    message_context: &[2, 2],
};

/// `a2a.v1` (v0.3): `SendMessageRequest{request=1, configuration=2}`,
/// `SendMessageConfiguration{push_notification=2}`, `PushNotificationConfig{url=2}`,
/// `CreateTaskPushNotificationConfigRequest{config=3}`,
/// `TaskPushNotificationConfig{push_notification_config=2}`.
const V03: Layout = Layout {
    send_webhook: &[2, 2, 2],
    create_webhook: &[3, 2, 2],
    task_id: &[1],
    message_task: &[1, 3],
    message_context: &[1, 2],
};

/// What a gRPC request body says, for policy and audit.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Inspected {
    pub webhooks: Vec<String>,
    pub task_id: Option<String>,
    pub context_id: Option<String>,
}

/// Reads the webhook URLs and ids of `op`'s request. Under an ambiguous service name every
/// layout that parses is read, so whichever the agent uses is covered. `Err` if the body cannot
/// be read and the operation may carry a webhook (it cannot be checked).
pub fn inspect(op: &str, era: GrpcEra, body: &[u8]) -> Result<Inspected, String> {
    let webhook = crate::methods::carries_webhook(op);
    let msg = match message(body) {
        Ok(m) => m,
        Err(e) if webhook => return Err(e),
        Err(_) => return Ok(Inspected::default()),
    };
    let mut out = Inspected::default();
    let mut parsed = false;
    for layout in layouts(era) {
        let url_path = match op {
            "SendMessage" | "SendStreamingMessage" => Some(layout.send_webhook),
            "CreateTaskPushNotificationConfig" => Some(layout.create_webhook),
            _ => None,
        };
        if let Some(p) = url_path {
            let Ok(urls) = strings_at(msg, p) else {
                continue;
            };
            out.webhooks.extend(urls);
        }
        parsed = true;
        let first = |p: &[u32]| strings_at(msg, p).ok().and_then(|v| v.into_iter().last());
        let (task, ctx) = match op {
            "SendMessage" | "SendStreamingMessage" => {
                (first(layout.message_task), first(layout.message_context))
            }
            "GetTask" | "CancelTask" | "SubscribeToTask" => (first(layout.task_id), None),
            _ => (None, None),
        };
        let task = task.map(|t| t.strip_prefix("tasks/").map(str::to_owned).unwrap_or(t));
        out.task_id = out.task_id.or(task.filter(|t| !t.is_empty()));
        out.context_id = out.context_id.or(ctx.filter(|c| !c.is_empty()));
    }
    if webhook && !parsed {
        return Err("the gRPC message is malformed".into());
    }
    Ok(out)
}

/// Percent-encodes a `grpc-message` value (the gRPC spec's encoding: printable ASCII but `%`
/// as is).
pub fn encode_message(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Protobuf encoding helpers for tests.
    pub fn len_field(number: u32, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        put_varint(&mut out, u64::from(number) << 3 | 2);
        put_varint(&mut out, bytes.len() as u64);
        out.extend_from_slice(bytes);
        out
    }

    fn put_varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    pub fn frame(msg: &[u8]) -> Vec<u8> {
        let mut out = vec![0];
        out.extend_from_slice(&(msg.len() as u32).to_be_bytes());
        out.extend_from_slice(msg);
        out
    }

    #[test]
    fn webhooks_are_found_in_both_layouts() {
        let url = b"http://127.0.0.1/hook";
        // v1.0 SendMessageRequest{message{message_id}, configuration{push{url}}}
        let v10 = [
            len_field(2, &len_field(1, b"m1")),
            len_field(3, &len_field(2, &len_field(4, url))),
        ]
        .concat();
        let got = inspect("SendMessage", GrpcEra::V10, &frame(&v10)).unwrap();
        assert_eq!(got.webhooks, vec!["http://127.0.0.1/hook"]);
        // v0.3 CreateTaskPushNotificationConfigRequest{parent, config{push{url}}}
        let v03 = [
            len_field(1, b"tasks/t1"),
            len_field(3, &len_field(2, &len_field(2, url))),
        ]
        .concat();
        let got = inspect(
            "CreateTaskPushNotificationConfig",
            GrpcEra::A2aV1,
            &frame(&v03),
        )
        .unwrap();
        assert!(got.webhooks.contains(&"http://127.0.0.1/hook".to_string()));
        // Two occurrences of the configuration (parsers merge them): both are seen.
        let twice = [
            len_field(3, &len_field(2, &len_field(4, b"https://ok.example/"))),
            len_field(3, &len_field(2, &len_field(4, url))),
        ]
        .concat();
        let got = inspect("SendMessage", GrpcEra::V10, &frame(&twice)).unwrap();
        assert_eq!(got.webhooks.len(), 2);
    }

    #[test]
    fn unreadable_bodies_are_errors_only_where_a_webhook_may_hide() {
        let mut compressed = frame(b"");
        compressed[0] = 1;
        assert!(inspect("SendMessage", GrpcEra::V10, &compressed).is_err());
        assert!(inspect("SendMessage", GrpcEra::V10, b"\0\0\0").is_err());
        assert!(inspect("SendMessage", GrpcEra::V10, &frame(&[0x1a, 0x05, 1])).is_err());
        assert!(inspect("GetTask", GrpcEra::V10, &compressed).is_ok());
        // Groups and other wire types are skipped like a parser does.
        let grouped = [
            vec![0x0b, 0x08, 0x01, 0x0c],
            len_field(4, b"https://x.example/"),
        ]
        .concat();
        let got = inspect(
            "CreateTaskPushNotificationConfig",
            GrpcEra::V10,
            &frame(&grouped),
        )
        .unwrap();
        assert_eq!(got.webhooks, vec!["https://x.example/"]);
    }

    #[test]
    fn ids_for_the_audit() {
        let get = len_field(2, b"task-7");
        let got = inspect("GetTask", GrpcEra::V10, &frame(&get)).unwrap();
        assert_eq!(got.task_id.as_deref(), Some("task-7"));
        let get03 = len_field(1, b"tasks/task-8");
        let got = inspect("GetTask", GrpcEra::A2aV1, &frame(&get03)).unwrap();
        assert_eq!(got.task_id.as_deref(), Some("task-8"));
    }

    #[test]
    fn grpc_message_encoding() {
        assert_eq!(encode_message("bob may not use X"), "bob may not use X");
        assert_eq!(encode_message("100% é"), "100%25 %C3%A9");
        assert!(is_grpc(Some("application/grpc+proto")));
        assert!(is_grpc(Some("Application/GRPC")));
        assert!(!is_grpc(Some("application/json")));
        assert!(!is_grpc(None));
    }
}
