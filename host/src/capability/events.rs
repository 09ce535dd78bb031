//! `outbound.answer-with-events`: several outbound calls' event streams merged, event by event
//! as they arrive, into the answer of a plugin that responds itself (a handler federating
//! several servers' notification streams). Each event gets a first field `weir-source: N` so the
//! plugin's streamed body hook can tell the streams apart.

use super::outbound::PendingCall;
use crate::body::{self, Body};
use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::BodyExt;
use weir_wire::sse;

/// How many events may wait for the client before a stream's reader waits too.
const BACKLOG: usize = 16;

/// The calls whose streams follow a plugin's local answer.
pub struct MergedEvents(pub(crate) Vec<PendingCall>);

impl std::fmt::Debug for MergedEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MergedEvents({} calls)", self.0.len())
    }
}

impl MergedEvents {
    /// `head` (the plugin's own body), then the streams' events as they come. The body ends
    /// when every stream has; dropping it (the client went away) drops the calls.
    pub(crate) fn into_body(self, head: Bytes) -> Body {
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(BACKLOG);
        for (n, call) in self.0.into_iter().enumerate() {
            tokio::spawn(pump(n, call, tx.clone()));
        }
        drop(tx);
        let events =
            futures_util::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|b| (b, rx)) },
            );
        let all = futures_util::stream::iter([head])
            .chain(events)
            .filter(|b| std::future::ready(!b.is_empty()))
            .map(|b| Ok::<_, body::BoxError>(http_body::Frame::data(b)));
        body::boxed(http_body_util::StreamBody::new(all))
    }
}

/// Reads one call's event stream into `tx`, each event tagged with `n`, until it ends, fails
/// or the client is gone (noticed at once, not at the stream's next event: a quiet stream
/// would otherwise hold its upstream connection for as long as the server keeps it open).
async fn pump(n: usize, call: PendingCall, tx: tokio::sync::mpsc::Sender<Bytes>) {
    tokio::select! {
        () = relay(n, call, &tx) => {}
        () = tx.closed() => {}
    }
}

async fn relay(n: usize, mut call: PendingCall, tx: &tokio::sync::mpsc::Sender<Bytes>) {
    let Ok(incoming) = call.wait().await else {
        return;
    };
    let streaming = (200..300).contains(&incoming.status)
        && weir_wire::is_event_stream(
            incoming
                .headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
                .map(|(_, v)| v.as_str()),
        );
    let Some(mut stream) = incoming.into_body().filter(|_| streaming) else {
        return;
    };
    let mut parser = sse::Parser::default();
    let source = n.to_string();
    while let Some(Ok(frame)) = stream.frame().await {
        let Ok(data) = frame.into_data() else {
            continue;
        };
        for mut event in parser.push(&data) {
            event
                .fields
                .insert(0, ("weir-source".into(), source.clone()));
            if tx.send(Bytes::from(event.encode())).await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn no_calls_is_the_head_alone() {
        let body = MergedEvents(Vec::new()).into_body(Bytes::from_static(b": hello\n\n"));
        let all = body.collect().await.expect("body").to_bytes();
        assert_eq!(&all[..], b": hello\n\n");
    }
}
