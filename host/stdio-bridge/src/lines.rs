//! Newline-delimited output read with a bound: a child that writes a huge line (or never a
//! newline) must not make the gateway buffer without limit. An over-long line is skipped up to
//! its newline and reported by its length; reading goes on, so the child is never blocked on a
//! full pipe.

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

pub(super) enum Line<'a> {
    /// A line without its `\n` (and `\r`).
    Complete(&'a [u8]),
    /// A line longer than the bound was skipped; its length.
    TooLong(usize),
}

/// Calls `f` for every line until end of file (a last line without `\n` included).
pub(super) async fn for_each<R: AsyncRead + Unpin>(
    reader: R,
    max: usize,
    mut f: impl FnMut(Line<'_>),
) -> std::io::Result<()> {
    let mut reader = BufReader::with_capacity(64 * 1024, reader);
    let mut line = Vec::new();
    // Bytes of the line being skipped, once it passed `max`.
    let mut skipped: Option<usize> = None;
    loop {
        let buf = reader.fill_buf().await?;
        if buf.is_empty() {
            if skipped.is_none() && !line.is_empty() {
                f(Line::Complete(trim(&line)));
            }
            return Ok(());
        }
        let newline = buf.iter().position(|&b| b == b'\n');
        let chunk = &buf[..newline.unwrap_or(buf.len())];
        match &mut skipped {
            Some(n) => *n += chunk.len(),
            None if line.len() + chunk.len() > max => {
                skipped = Some(line.len() + chunk.len());
                line = Vec::new();
            }
            None => line.extend_from_slice(chunk),
        }
        let used = chunk.len() + usize::from(newline.is_some());
        reader.consume(used);
        if newline.is_some() {
            match skipped.take() {
                Some(n) => f(Line::TooLong(n)),
                None => f(Line::Complete(trim(&line))),
            }
            line.clear();
        }
    }
}

fn trim(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(input: &'static [u8], max: usize) -> Vec<String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let mut out = Vec::new();
        rt.block_on(for_each(input, max, |l| {
            out.push(match l {
                Line::Complete(b) => String::from_utf8_lossy(b).into_owned(),
                Line::TooLong(n) => format!("<{n}>"),
            })
        }))
        .expect("read");
        out
    }

    #[test]
    fn lines_are_split_and_bounded() {
        assert_eq!(collect(b"a\r\nbc\n\nd", 8), ["a", "bc", "", "d"]);
        assert_eq!(
            collect(b"short\n0123456789abc\nok\n", 8),
            ["short", "<13>", "ok"]
        );
        assert_eq!(collect(b"0123456789", 8), Vec::<String>::new());
    }
}
