//! The ABI's numbers: statuses, map and buffer types, actions, and the header-map wire format.

/// What a host call returns to the filter (`proxy_status_t`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Status {
    Ok = 0,
    NotFound = 1,
    BadArgument = 2,
    ParseFailure = 4,
    Empty = 7,
    CasMismatch = 8,
    InternalFailure = 10,
    Unimplemented = 12,
}

/// `proxy_map_type_t`.
pub(crate) const MAP_REQUEST_HEADERS: u32 = 0;
pub(crate) const MAP_REQUEST_TRAILERS: u32 = 1;
pub(crate) const MAP_RESPONSE_HEADERS: u32 = 2;
pub(crate) const MAP_RESPONSE_TRAILERS: u32 = 3;
pub(crate) const MAP_HTTP_CALL_RESPONSE_HEADERS: u32 = 6;
pub(crate) const MAP_HTTP_CALL_RESPONSE_TRAILERS: u32 = 7;

/// `proxy_buffer_type_t`.
pub(crate) const BUFFER_REQUEST_BODY: u32 = 0;
pub(crate) const BUFFER_RESPONSE_BODY: u32 = 1;
pub(crate) const BUFFER_HTTP_CALL_RESPONSE_BODY: u32 = 4;
pub(crate) const BUFFER_VM_CONFIGURATION: u32 = 6;
pub(crate) const BUFFER_PLUGIN_CONFIGURATION: u32 = 7;

/// `proxy_stream_type_t` (`proxy_continue_stream`).
pub(crate) const STREAM_REQUEST: u32 = 0;
pub(crate) const STREAM_RESPONSE: u32 = 1;

/// `proxy_metric_type_t`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

impl MetricKind {
    pub(crate) fn from_abi(n: u32) -> Option<MetricKind> {
        match n {
            0 => Some(MetricKind::Counter),
            1 => Some(MetricKind::Gauge),
            2 => Some(MetricKind::Histogram),
            _ => None,
        }
    }
}

/// `proxy_log_level_t`: warnings the host itself adds to a filter's log.
pub(crate) const LOG_WARN: u32 = 3;

/// `proxy_action_t` from a header callback.
pub(crate) const ACTION_CONTINUE: u32 = 0;
pub(crate) const ACTION_PAUSE: u32 = 1;

/// Encodes header pairs as the ABI passes them: the count, each pair's key and value lengths
/// (little-endian u32s), then each key and value followed by a NUL.
pub(crate) fn encode_pairs(pairs: &[(String, String)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend((pairs.len() as u32).to_le_bytes());
    for (k, v) in pairs {
        out.extend((k.len() as u32).to_le_bytes());
        out.extend((v.len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend(k.as_bytes());
        out.push(0);
        out.extend(v.as_bytes());
        out.push(0);
    }
    out
}

/// Decodes the same format; `None` when it is malformed (a filter's bug, answered
/// `BadArgument`).
pub(crate) fn decode_pairs(bytes: &[u8]) -> Option<Vec<(String, String)>> {
    let u32_at = |i: usize| -> Option<usize> {
        Some(u32::from_le_bytes(bytes.get(i..i + 4)?.try_into().ok()?) as usize)
    };
    let n = u32_at(0)?;
    let mut lens = Vec::with_capacity(n.min(1024));
    for i in 0..n {
        lens.push((u32_at(4 + i * 8)?, u32_at(8 + i * 8)?));
    }
    let mut at = 4 + n * 8;
    let mut out = Vec::with_capacity(lens.len());
    for (kl, vl) in lens {
        let k = String::from_utf8(bytes.get(at..at + kl)?.to_vec()).ok()?;
        at += kl + 1;
        let v = String::from_utf8(bytes.get(at..at + vl)?.to_vec()).ok()?;
        at += vl + 1;
        out.push((k, v));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_pairs_round_trip_and_garbage_is_refused() {
        let pairs = vec![("a".to_string(), "1".to_string()), ("bb".into(), "".into())];
        assert_eq!(decode_pairs(&encode_pairs(&pairs)), Some(pairs));
        assert_eq!(decode_pairs(&[9, 0, 0, 0, 1]), None);
        assert_eq!(decode_pairs(&[]), None);
    }
}
