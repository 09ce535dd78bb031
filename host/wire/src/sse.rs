//! Server-sent events as the WHATWG HTML standard defines the `text/event-stream` format
//! (§ 9.2.6 "Parsing an event stream"), as MCP servers and LLM providers send them.
//!
//! [`Parser`] cuts a byte stream that arrives in arbitrary chunks into whole events, so a
//! plugin can look at (and rewrite) each message without ever holding more than one event:
//!
//! - a line ends with CRLF, LF or CR; a CR at the end of one chunk followed by an LF at the
//!   start of the next is one line ending, not two;
//! - an empty line ends an event; lines starting with `:` are comments;
//! - a line is split at its first `:` into field name and value, and one space after the colon
//!   is removed; a line without a colon is a field with an empty value;
//! - one leading byte order mark (U+FEFF) at the start of the stream is ignored.
//!
//! [`Event`] keeps every field line in the order it arrived, so re-encoding an event loses
//! nothing but comments; [`Event::data`], [`Event::event_type`], [`Event::id`] and
//! [`Event::retry`] interpret the fields as the standard does.
//!
//! Parsing is linear in the input: each byte is looked at a bounded number of times, however
//! the stream is cut into chunks. Only the current line's bytes and the current event's fields
//! are held between chunks.

/// The UTF-8 encoding of U+FEFF.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// One event, with its fields in order as they arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// `(field, value)` for every field line, `data` included, comments (`:`) dropped. Fields
    /// the standard ignores (unknown names, an `id` containing NUL, a non-numeric `retry`) are
    /// kept here so that [`Event::encode`] passes them through; the accessors skip them.
    pub fields: Vec<(String, String)>,
}

impl Event {
    /// The event's data: its `data` lines joined by `\n`, or `None` if it has none (a client
    /// would not dispatch such an event, though its `id` and `retry` still apply).
    pub fn data(&self) -> Option<String> {
        let mut data: Option<String> = None;
        for v in self.values("data") {
            match &mut data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(v);
                }
                None => data = Some(v.to_string()),
            }
        }
        data
    }

    /// The event type: the last `event` field's value, or `None` (a client treats that as
    /// `message`).
    pub fn event_type(&self) -> Option<&str> {
        self.values("event").next_back()
    }

    /// The last event ID this event sets: the last `id` field without a NUL in its value (the
    /// standard ignores those). `Some("")` resets the client's last event ID.
    pub fn id(&self) -> Option<&str> {
        self.values("id").rev().find(|v| !v.contains('\0'))
    }

    /// The reconnection time in milliseconds: the last `retry` field whose value is ASCII digits
    /// only (others are ignored, as is a value too large for a `u64`).
    pub fn retry(&self) -> Option<u64> {
        self.values("retry")
            .rev()
            .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
            .find_map(|v| v.parse().ok())
    }

    /// Replaces the data with `data`, keeping the other fields where they were: the `data`
    /// lines go where the first one was (or at the end). A `data` containing line breaks
    /// becomes several `data` lines, so that [`Event::data`] gives it back with `\n`s.
    pub fn set_data(&mut self, data: &str) {
        let at = self.fields.iter().position(|(f, _)| f == "data");
        self.fields.retain(|(f, _)| f != "data");
        let lines = split_lines(data).map(|l| ("data".to_string(), l.to_string()));
        let at = at.unwrap_or(self.fields.len());
        self.fields.splice(at..at, lines);
    }

    /// The event in wire form (LF line endings), ending with the empty line.
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

    fn values<'a>(&'a self, name: &'a str) -> impl DoubleEndedIterator<Item = &'a str> + 'a {
        self.fields
            .iter()
            .filter(move |(f, _)| f == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `s` cut at CRLF, LF and CR.
fn split_lines(s: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(s);
    std::iter::from_fn(move || {
        let s = rest?;
        match s.find(['\r', '\n']) {
            Some(i) => {
                let skip = if s[i..].starts_with("\r\n") { 2 } else { 1 };
                rest = Some(&s[i + skip..]);
                Some(&s[..i])
            }
            None => {
                rest = None;
                Some(s)
            }
        }
    })
}

/// Cuts a stream of bytes into events.
#[derive(Debug, Default)]
pub struct Parser {
    /// The bytes of the current line, not yet ended.
    line: Vec<u8>,
    /// The fields of the current event, not yet ended.
    fields: Vec<(String, String)>,
    /// The last chunk ended with a CR: an LF starting the next one belongs to that line ending.
    after_cr: bool,
    /// A first line has been read (so a byte order mark is no longer skipped).
    started: bool,
    /// Bytes looked at so far (searched, copied or parsed), for the linearity test.
    #[cfg(test)]
    scanned: usize,
}

impl Parser {
    /// Adds a chunk and returns the events it completed.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<Event> {
        let mut events = Vec::new();
        let mut rest = chunk;
        if self.after_cr && !rest.is_empty() {
            self.after_cr = false;
            if rest[0] == b'\n' {
                self.count(1);
                rest = &rest[1..];
            }
        }
        while let Some(i) = rest.iter().position(|&b| b == b'\n' || b == b'\r') {
            self.count(i + 1);
            if self.line.is_empty() {
                self.end_line(&rest[..i], &mut events);
            } else {
                self.count(i);
                self.line.extend_from_slice(&rest[..i]);
                let line = std::mem::take(&mut self.line);
                self.end_line(&line, &mut events);
                self.line = line;
                self.line.clear();
            }
            let cr = rest[i] == b'\r';
            rest = &rest[i + 1..];
            if cr {
                match rest.first() {
                    Some(b'\n') => {
                        self.count(1);
                        rest = &rest[1..];
                    }
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
        }
        // The unfinished line: searched once above, copied once here.
        self.count(2 * rest.len());
        self.line.extend_from_slice(rest);
        events
    }

    /// Ends the stream: returns the unfinished event, if any (its last line need not have
    /// ended). A client would discard it; a relay may pass it on. The parser starts afresh.
    pub fn finish(&mut self) -> Option<Event> {
        let line = std::mem::take(&mut self.line);
        let mut events = Vec::new();
        if !line.is_empty() {
            self.end_line(&line, &mut events);
        }
        let fields = std::mem::take(&mut self.fields);
        *self = Parser {
            #[cfg(test)]
            scanned: self.scanned,
            ..Parser::default()
        };
        // An unended line is never empty, so it cannot have completed an event.
        debug_assert!(events.is_empty());
        (!fields.is_empty()).then_some(Event { fields })
    }

    /// Bytes held back, waiting for the rest of an event: the unended line and the values
    /// of the fields read so far.
    pub fn pending_len(&self) -> usize {
        self.line.len()
            + self
                .fields
                .iter()
                .map(|(f, v)| f.len() + v.len())
                .sum::<usize>()
    }

    /// One whole line, without its line ending.
    fn end_line(&mut self, line: &[u8], events: &mut Vec<Event>) {
        let line = if self.started {
            line
        } else {
            self.started = true;
            line.strip_prefix(BOM).unwrap_or(line)
        };
        if line.is_empty() {
            if !self.fields.is_empty() {
                events.push(Event {
                    fields: std::mem::take(&mut self.fields),
                });
            }
            return;
        }
        if line[0] == b':' {
            return;
        }
        // Searched for the colon, then decoded.
        self.count(2 * line.len());
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => {
                let value = &line[i + 1..];
                (&line[..i], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        self.fields.push((
            String::from_utf8_lossy(name).into_owned(),
            String::from_utf8_lossy(value).into_owned(),
        ));
    }

    #[cfg(test)]
    fn count(&mut self, n: usize) {
        self.scanned += n;
    }

    #[cfg(not(test))]
    #[inline(always)]
    fn count(&mut self, _n: usize) {}
}

/// Parses a whole SSE body into events (an unfinished last event included).
pub fn parse_all(body: &[u8]) -> Vec<Event> {
    let mut p = Parser::default();
    let mut events = p.push(body);
    events.extend(p.finish());
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `data` of each event, `None` for events without any.
    fn datas(events: &[Event]) -> Vec<Option<String>> {
        events.iter().map(Event::data).collect()
    }

    /// The events of `pieces` pushed in turn, the unfinished one included.
    fn pushed<'a>(pieces: impl IntoIterator<Item = &'a [u8]>) -> Vec<Event> {
        let mut p = Parser::default();
        let mut events = Vec::new();
        for piece in pieces {
            events.extend(p.push(piece));
        }
        events.extend(p.finish());
        events
    }

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

    /// The same two events with each of the three line endings.
    fn with_ending(eol: &str) -> Vec<u8> {
        [
            "event: a", "data: 1", "data: 2", "", ": c", "id: 7", "data: x", "", "",
        ]
        .join(eol)
        .into_bytes()
    }

    fn assert_two_events(events: &[Event]) {
        assert_eq!(datas(events), [Some("1\n2".into()), Some("x".into())]);
        assert_eq!(events[0].event_type(), Some("a"));
        assert_eq!(events[1].id(), Some("7"));
    }

    #[test]
    fn lf_line_endings() {
        let mut p = Parser::default();
        assert_two_events(&p.push(&with_ending("\n")));
        assert_eq!(p.pending_len(), 0);
    }

    #[test]
    fn crlf_line_endings() {
        let mut p = Parser::default();
        assert_two_events(&p.push(&with_ending("\r\n")));
        assert_eq!(p.pending_len(), 0);
    }

    #[test]
    fn cr_only_line_endings() {
        let mut p = Parser::default();
        assert_two_events(&p.push(&with_ending("\r")));
        assert_eq!(p.pending_len(), 0);
        assert_eq!(p.finish(), None);
    }

    #[test]
    fn crlf_split_across_two_pushes_is_one_line_ending() {
        let mut p = Parser::default();
        // The CR ends the line at once; the LF after it is not an empty line ending the event.
        assert!(p.push(b"data: a\r").is_empty());
        assert!(p.push(b"\ndata: b\r").is_empty());
        let events = p.push(b"\n\r");
        assert_eq!(datas(&events), [Some("a\nb".into())]);
        // The LF completing that last CRLF is not a second empty line either.
        assert!(p.push(b"\n").is_empty());
        assert!(p.push(b"").is_empty());
        assert_eq!(datas(&p.push(b"data: c\r\r")), [Some("c".into())]);
        assert_eq!(p.finish(), None);
    }

    #[test]
    fn every_split_point_gives_the_same_events() {
        let stream: &[u8] = b"\xEF\xBB\xBFevent: a\r\ndata: 1\rdata:2\n\r\n: c\r\rid: 7\r\n\
            retry: 10\ndata: \xC3\xA9\r\n\n\rdata: last";
        let whole = parse_all(stream);
        assert_eq!(
            datas(&whole),
            [Some("1\n2".into()), Some("é".into()), Some("last".into())]
        );
        assert_eq!(whole[0].event_type(), Some("a"));
        assert_eq!(whole[1].id(), Some("7"));
        assert_eq!(whole[1].retry(), Some(10));
        for i in 0..=stream.len() {
            assert_eq!(pushed([&stream[..i], &stream[i..]]), whole, "split at {i}");
            for j in i..=stream.len() {
                let three = [&stream[..i], &stream[i..j], &stream[j..]];
                assert_eq!(pushed(three), whole, "split at {i} and {j}");
            }
        }
        assert_eq!(pushed(stream.chunks(1)), whole, "byte by byte");
    }

    #[test]
    fn parsing_is_linear_in_the_input() {
        // One 1 MiB line pushed a byte at a time, then many short lines and events; after
        // every push, the bytes looked at must stay within a constant factor of the bytes
        // pushed (rescanning what is already consumed grows quadratically and fails early).
        let mut stream = b"data: ".to_vec();
        stream.resize(1 << 20, b'x');
        stream.extend_from_slice(b"\r\n\r\n");
        for i in 0..20_000 {
            stream.extend_from_slice(format!("id: {i}\rdata: {i}\r\rdata: y\n\n").as_bytes());
        }
        stream.extend_from_slice(b"\n");
        let mut p = Parser::default();
        let mut events = 0;
        for (n, chunk) in stream.chunks(1).enumerate() {
            events += p.push(chunk).len();
            assert!(
                p.scanned <= 4 * (n + 1) + 16,
                "{} bytes looked at for {} pushed",
                p.scanned,
                n + 1
            );
        }
        assert_eq!(events, 1 + 2 * 20_000);
        assert_eq!(p.pending_len(), 0);
        // Whole chunks are no different.
        let mut p = Parser::default();
        assert_eq!(p.push(&stream).len(), 1 + 2 * 20_000);
        assert!(p.scanned <= 4 * stream.len());
    }

    #[test]
    fn fields_as_the_standard_parses_them() {
        let events = parse_all(
            b"data:no space\ndata:  two spaces\ndata\nevent\n:comment\nfoo: kept\n\n\
              id: a\0b\nid: good\nid: bad\0\nretry: 1x\nretry: 250\nretry: 9z\nretry:\n\n\
              id\n\n: only a comment\n\n\n\n",
        );
        assert_eq!(events.len(), 3);
        assert_eq!(events[0].data().as_deref(), Some("no space\n two spaces\n"));
        assert_eq!(events[0].event_type(), Some(""));
        assert_eq!(events[0].fields[4], ("foo".into(), "kept".into()));
        // An id with NUL is ignored (the earlier one stands), as is a non-numeric retry.
        assert_eq!(events[1].id(), Some("good"));
        assert_eq!(events[1].retry(), Some(250));
        assert_eq!(events[1].data(), None);
        // An empty id resets the last event id; an event without data still comes out, so
        // that a relay passes its id on.
        assert_eq!(events[2].id(), Some(""));
        assert_eq!(parse_all(b"id: x\0\nretry: 1.5\n\n")[0].id(), None);
        assert_eq!(
            parse_all(b"retry: 99999999999999999999999\n\n")[0].retry(),
            None
        );
    }

    #[test]
    fn the_standards_examples() {
        let events = parse_all(b"data: YHOO\ndata: +2\ndata: 10\n\n");
        assert_eq!(datas(&events), [Some("YHOO\n+2\n10".into())]);
        let events = parse_all(b"data:test\n\ndata: test\n\n");
        assert_eq!(datas(&events), [Some("test".into()), Some("test".into())]);
        // The third block has no empty line after it: `finish` hands it back as unfinished.
        let mut p = Parser::default();
        let events = p.push(b"data\n\ndata\ndata\n\ndata:");
        assert_eq!(datas(&events), [Some("".into()), Some("\n".into())]);
        assert_eq!(p.finish().and_then(|e| e.data()).as_deref(), Some(""));
    }

    #[test]
    fn one_leading_byte_order_mark_is_skipped() {
        let events = pushed([&b"\xEF\xBB"[..], b"\xBFdata: a\n\n\xEF\xBB\xBFdata: b\n\n"]);
        assert_eq!(events[0].fields, [("data".into(), "a".into())]);
        assert_eq!(events[1].fields, [("\u{FEFF}data".into(), "b".into())]);
    }

    #[test]
    fn set_data_keeps_the_other_fields_and_splits_lines() {
        let mut e = parse_all(b"id: 1\ndata: a\nevent: e\ndata: b\nretry: 5\n\n").remove(0);
        e.set_data("x\ny\r\nz");
        assert_eq!(
            e.encode(),
            b"id: 1\ndata: x\ndata: y\ndata: z\nevent: e\nretry: 5\n\n"
        );
        assert_eq!(parse_all(&e.encode()), [e.clone()]);
        let mut e = parse_all(b"id: 2\n\n").remove(0);
        e.set_data("{}");
        assert_eq!(e.encode(), b"id: 2\ndata: {}\n\n");
    }
}
