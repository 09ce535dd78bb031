//! Structured logs beside the diagnostic log: an **access log** (one JSON object per request)
//! and an **audit log** (the audit records plugins write: log messages `audit {...}`,
//! `llm-audit {...}`, `a2a-audit {...}`), each to its own file, written by a background thread
//! so a slow disk never holds a request. A full queue drops lines and counts them
//! (`weir_log_lines_dropped_total`).
//!
//! The last [`RECENT`] audit records are also kept in memory, with or without an audit log,
//! for the admin API's `GET /audit` (and the console's audit view).

use serde_json::{Value, json};
use std::collections::VecDeque;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::sync::{Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

/// Lines queued per log before new ones are dropped.
const QUEUE: usize = 65_536;

struct Sink {
    tx: SyncSender<String>,
    /// Access-log fields to keep; empty keeps all.
    fields: Vec<String>,
}

static ACCESS: OnceLock<Sink> = OnceLock::new();
static AUDIT: OnceLock<Sink> = OnceLock::new();
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Audit records kept in memory for `GET /audit`.
pub const RECENT: usize = 1000;
static RECENT_AUDIT: Mutex<VecDeque<Value>> = Mutex::new(VecDeque::new());

/// The last audit records, newest first.
pub fn recent_audit(limit: usize) -> Vec<Value> {
    let recent = RECENT_AUDIT.lock().unwrap_or_else(|e| e.into_inner());
    recent.iter().rev().take(limit).cloned().collect()
}

/// Lines not written because a log's queue was full.
pub fn dropped() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

fn open(path: &Path, fields: Vec<String>) -> std::io::Result<Sink> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    let (tx, rx) = sync_channel::<String>(QUEUE);
    std::thread::Builder::new()
        .name("weir-log-writer".into())
        .spawn(move || {
            let mut out = std::io::BufWriter::new(file);
            while let Ok(line) = rx.recv() {
                let _ = writeln!(out, "{line}");
                // Flush whenever the queue is momentarily empty: lines reach the file promptly
                // without a syscall per line under load.
                while let Ok(more) = rx.try_recv() {
                    let _ = writeln!(out, "{more}");
                }
                let _ = out.flush();
            }
        })?;
    Ok(Sink { tx, fields })
}

/// Opens the access log (keeping `fields`, or every field if empty).
pub fn open_access(path: &Path, fields: Vec<String>) -> std::io::Result<()> {
    let sink = open(path, fields)?;
    let _ = ACCESS.set(sink);
    Ok(())
}

pub fn open_audit(path: &Path) -> std::io::Result<()> {
    let sink = open(path, Vec::new())?;
    let _ = AUDIT.set(sink);
    Ok(())
}

fn send(sink: &Sink, line: String) {
    if let Err(TrySendError::Full(_)) = sink.tx.try_send(line) {
        DROPPED.fetch_add(1, Ordering::Relaxed);
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

pub fn access_enabled() -> bool {
    ACCESS.get().is_some()
}

/// Writes one access-log line from `record` (an object), with `ts_ms` added.
pub fn access(mut record: Value) {
    let Some(sink) = ACCESS.get() else { return };
    if let Some(obj) = record.as_object_mut() {
        obj.insert("ts_ms".into(), json!(now_ms()));
        if !sink.fields.is_empty() {
            obj.retain(|k, _| sink.fields.iter().any(|f| f == k));
        }
    }
    send(sink, record.to_string());
}

/// The audit record in a plugin log message, if it is one (`audit {...}` and the like).
pub fn audit_record(message: &str) -> Option<Value> {
    let (prefix, rest) = message.split_once(' ')?;
    if !(prefix == "audit" || prefix.ends_with("-audit")) {
        return None;
    }
    serde_json::from_str(rest).ok()
}

/// Writes a plugin's audit record to the audit log.
pub fn audit(plugin: &str, route: &str, trace_id: Option<&str>, record: Value) {
    let line = json!({"ts_ms": now_ms(), "plugin": plugin, "route": route,
                      "trace_id": trace_id, "record": record});
    if let Some(sink) = AUDIT.get() {
        send(sink, line.to_string());
    }
    let mut recent = RECENT_AUDIT.lock().unwrap_or_else(|e| e.into_inner());
    if recent.len() == RECENT {
        recent.pop_front();
    }
    recent.push_back(line);
}
