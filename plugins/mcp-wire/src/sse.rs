//! Server-sent events, as MCP servers send them: events separated by a blank line, each with
//! optional `id:`/`event:`/`retry:` fields and `data:` lines (one JSON-RPC message per event).
//!
//! [`Parser`] cuts a byte stream that arrives in arbitrary chunks into whole events, so a
//! plugin can look at (and rewrite) each message without ever holding more than one event.

/// One event, with its fields in order as they arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// `(field, value)` for every line, `data` included, comments (`:`) dropped.
    pub fields: Vec<(String, String)>,
}

impl Event {
    /// The event's data: its `data` lines joined by `\n`, or `None` if it has none.
    pub fn data(&self) -> Option<String> {
        let lines: Vec<&str> = self
            .fields
            .iter()
            .filter(|(f, _)| f == "data")
            .map(|(_, v)| v.as_str())
            .collect();
        (!lines.is_empty()).then(|| lines.join("\n"))
    }

    /// Replaces the data with `data` (one line; JSON never needs more), keeping the other
    /// fields where they were.
    pub fn set_data(&mut self, data: &str) {
        let mut placed = false;
        self.fields.retain_mut(|(f, v)| {
            if f != "data" {
                return true;
            }
            if placed {
                return false;
            }
            placed = true;
            *v = data.to_string();
            true
        });
        if !placed {
            self.fields.push(("data".into(), data.to_string()));
        }
    }

    /// The event in wire form, ending with the blank line.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (f, v) in &self.fields {
            out.extend_from_slice(f.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(v.as_bytes());
            out.push(b'\n');
        }
        out.push(b'\n');
        out
    }
}

/// Cuts a stream of bytes into events.
#[derive(Debug, Default)]
pub struct Parser {
    /// Bytes of the event not yet complete.
    pending: Vec<u8>,
}

impl Parser {
    /// Adds a chunk and returns the events it completed.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<Event> {
        self.pending.extend_from_slice(chunk);
        let mut events = Vec::new();
        while let Some((end, sep)) = find_blank_line(&self.pending) {
            let raw: Vec<u8> = self.pending.drain(..end + sep).collect();
            if let Some(e) = parse_event(&raw[..end]) {
                events.push(e);
            }
        }
        events
    }

    /// The bytes of an unfinished event at the end of the stream.
    pub fn finish(&mut self) -> Option<Event> {
        let raw = std::mem::take(&mut self.pending);
        parse_event(&raw)
    }

    /// Bytes held back, waiting for the rest of an event.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }
}

/// Parses a whole SSE body into events.
pub fn parse_all(body: &[u8]) -> Vec<Event> {
    let mut p = Parser::default();
    let mut events = p.push(body);
    events.extend(p.finish());
    events
}

/// The end of the first event (where its blank line starts) and the length of the separator.
fn find_blank_line(buf: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while i < buf.len() {
        if buf[i] == b'\n' {
            if buf.get(i + 1) == Some(&b'\n') {
                return Some((i, 2));
            }
            if buf.get(i + 1) == Some(&b'\r') && buf.get(i + 2) == Some(&b'\n') {
                return Some((i, 3));
            }
        }
        i += 1;
    }
    None
}

fn parse_event(raw: &[u8]) -> Option<Event> {
    let text = String::from_utf8_lossy(raw);
    let mut fields = Vec::new();
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() || line.starts_with(':') {
            continue;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        fields.push((field.to_string(), value.to_string()));
    }
    (!fields.is_empty()).then_some(Event { fields })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_chunks_come_out_whole() {
        let stream =
            b"id: 1\ndata: \n\nevent: message\nid: 2\ndata: {\"a\":1}\n\n: ping\n\ndata: x\r\n\r\n";
        let mut all = Vec::new();
        let mut p = Parser::default();
        for chunk in stream.chunks(3) {
            all.extend(p.push(chunk));
        }
        assert_eq!(p.pending_len(), 0);
        assert_eq!(all.len(), 3);
        assert_eq!(all[0].data().as_deref(), Some(""));
        assert_eq!(all[1].data().as_deref(), Some("{\"a\":1}"));
        assert_eq!(all[2].data().as_deref(), Some("x"));
        let mut e = all[1].clone();
        e.set_data("{}");
        assert_eq!(e.encode(), b"event: message\nid: 2\ndata: {}\n\n");
    }
}
