//! What a guest writes to stdout/stderr (e.g. a Rust panic message) is kept, bounded, per
//! instance and written to the gateway's log after each hook, tagged with the plugin. Writes never
//! fail: past the bound the oldest bytes are dropped, so a chatty guest cannot trap itself.

use bytes::{Bytes, BytesMut};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// Bytes kept per instance between two drains.
const KEEP: usize = 8 * 1024;

#[derive(Clone, Default)]
pub(crate) struct GuestOutput {
    buffer: Arc<Mutex<BytesMut>>,
}

impl GuestOutput {
    fn push(&self, bytes: &[u8]) {
        if let Ok(mut buf) = self.buffer.lock() {
            buf.extend_from_slice(bytes);
            if buf.len() > KEEP {
                let excess = buf.len() - KEEP;
                let _ = buf.split_to(excess);
            }
        }
    }

    /// Takes what was written since the last call.
    pub(crate) fn take(&self) -> Option<String> {
        let mut buf = self.buffer.lock().ok()?;
        if buf.is_empty() {
            return None;
        }
        let bytes = buf.split();
        Some(String::from_utf8_lossy(&bytes).trim_end().to_string())
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestOutput {
    async fn ready(&mut self) {}
}

impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(KEEP)
    }
}

impl tokio::io::AsyncWrite for GuestOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_bytes_and_drains() {
        let out = GuestOutput::default();
        out.push(&vec![b'a'; KEEP]);
        out.push(b"tail\n");
        let text = out.take().expect("output");
        assert_eq!(text.len(), KEEP - 1);
        assert!(text.ends_with("tail"));
        assert_eq!(out.take(), None);
    }
}
