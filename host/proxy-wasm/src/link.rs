//! The host calls (`env.proxy_*` imports), linked by name. Each reads its arguments from the
//! filter's memory, acts on the instance's [`State`], and answers a [`Status`]; bad pointers
//! or malformed data answer `BadArgument`, never a trap of the host.

use crate::abi::{self, MetricKind, Status};
use crate::state::{HttpCall, LocalResponse, MAX_FIELDS, MAX_PROPERTIES, State};
use std::time::Duration;
use wasmtime::{Caller, Extern, Linker, Module, Val, ValType};

type Ctx<'a, T> = Caller<'a, State<T>>;

const OK: u32 = Status::Ok as u32;
const BAD: u32 = Status::BadArgument as u32;
const NOT_FOUND: u32 = Status::NotFound as u32;
const FAILURE: u32 = Status::InternalFailure as u32;

/// Links every host call the crate serves, over an `Unimplemented` answer for every function
/// `module` imports.
pub(crate) fn linker<T: Send + 'static>(module: &Module) -> wasmtime::Result<Linker<State<T>>> {
    let mut linker = Linker::new(module.engine());
    unimplemented(&mut linker, module)?;
    linker.allow_shadowing(true);
    logging(&mut linker)?;
    headers(&mut linker)?;
    buffers(&mut linker)?;
    responses(&mut linker)?;
    shared_data(&mut linker)?;
    properties(&mut linker)?;
    http_calls(&mut linker)?;
    metrics(&mut linker)?;
    wasi(&mut linker)?;
    Ok(linker)
}

fn memory<T>(c: &mut Ctx<'_, T>) -> Option<wasmtime::Memory> {
    c.get_export("memory").and_then(Extern::into_memory)
}

fn read<T>(c: &mut Ctx<'_, T>, ptr: u32, len: u32) -> Option<Vec<u8>> {
    let mem = memory(c)?;
    let mut buf = vec![0u8; len as usize];
    mem.read(&*c, ptr as usize, &mut buf).ok()?;
    Some(buf)
}

fn read_str<T>(c: &mut Ctx<'_, T>, ptr: u32, len: u32) -> Option<String> {
    String::from_utf8(read(c, ptr, len)?).ok()
}

fn write<T>(c: &mut Ctx<'_, T>, at: u32, bytes: &[u8]) -> bool {
    memory(c).is_some_and(|m| m.write(&mut *c, at as usize, bytes).is_ok())
}

/// Hands `data` to the filter: memory from its allocator, filled, and the pointer and size
/// written where it asked.
async fn give<T: Send>(c: &mut Ctx<'_, T>, data: &[u8], ptr_out: u32, len_out: u32) -> u32 {
    let alloc = c
        .get_export("malloc")
        .or_else(|| c.get_export("proxy_on_memory_allocate"))
        .and_then(Extern::into_func);
    let Some(alloc) = alloc else {
        return FAILURE;
    };
    let mut out = [Val::I32(0)];
    let size = Val::I32(data.len() as i32);
    if alloc.call_async(&mut *c, &[size], &mut out).await.is_err() {
        return FAILURE;
    }
    // The allocator answers with a pointer; anything else is the filter's bug, not a trap.
    let Some(ptr) = out[0].i32() else {
        return FAILURE;
    };
    let ptr = ptr as u32;
    let ok = write(c, ptr, data)
        && write(c, ptr_out, &ptr.to_le_bytes())
        && write(c, len_out, &(data.len() as u32).to_le_bytes());
    if ok { OK } else { FAILURE }
}

fn logging<T: Send + 'static>(linker: &mut Linker<State<T>>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_log",
        |mut c: Ctx<'_, T>, level: u32, p: u32, n: u32| match read_str(&mut c, p, n) {
            Some(m) => {
                c.data_mut().log(level, m);
                OK
            }
            None => BAD,
        },
    )?;
    // Every level reaches the host, which filters by its own log settings.
    linker.func_wrap(
        "env",
        "proxy_get_log_level",
        |mut c: Ctx<'_, T>, out: u32| {
            if write(&mut c, out, &0u32.to_le_bytes()) {
                OK
            } else {
                BAD
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_tick_period_milliseconds",
        |mut c: Ctx<'_, T>, ms: u32| {
            c.data_mut().tick_ms = ms;
            OK
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_current_time_nanoseconds",
        |mut c: Ctx<'_, T>, out: u32| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            if write(&mut c, out, &now.to_le_bytes()) {
                OK
            } else {
                BAD
            }
        },
    )?;
    // One context runs at a time here, so there is nothing to switch.
    linker.func_wrap(
        "env",
        "proxy_set_effective_context",
        |_: Ctx<'_, T>, _: u32| OK,
    )?;
    Ok(())
}

fn headers<T: Send + 'static>(linker: &mut Linker<State<T>>) -> wasmtime::Result<()> {
    linker.func_wrap_async(
        "env",
        "proxy_get_header_map_pairs",
        |mut c: Ctx<'_, T>, (map, p, n): (u32, u32, u32)| {
            Box::new(async move {
                let Some(pairs) = c.data_mut().map(map).map(|m| abi::encode_pairs(m)) else {
                    return BAD;
                };
                give(&mut c, &pairs, p, n).await
            })
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_header_map_size",
        |mut c: Ctx<'_, T>, map: u32, out: u32| {
            let Some(size) = c.data_mut().map(map).map(|m| abi::encode_pairs(m).len()) else {
                return BAD;
            };
            if write(&mut c, out, &(size as u32).to_le_bytes()) {
                OK
            } else {
                BAD
            }
        },
    )?;
    linker.func_wrap_async(
        "env",
        "proxy_get_header_map_value",
        |mut c: Ctx<'_, T>, (map, kp, kn, p, n): (u32, u32, u32, u32, u32)| {
            Box::new(async move {
                let Some(key) = read_str(&mut c, kp, kn) else {
                    return BAD;
                };
                let value = c.data_mut().map(map).and_then(|m| {
                    m.iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case(&key))
                        .map(|(_, v)| v.clone())
                });
                match value {
                    Some(v) => give(&mut c, v.as_bytes(), p, n).await,
                    None => NOT_FOUND,
                }
            })
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_header_map_pairs",
        |mut c: Ctx<'_, T>, map: u32, p: u32, n: u32| {
            let Some(pairs) = read(&mut c, p, n).and_then(|b| abi::decode_pairs(&b)) else {
                return BAD;
            };
            if pairs.len() > MAX_FIELDS {
                return BAD;
            }
            match c.data_mut().map(map) {
                Some(m) => {
                    *m = pairs
                        .into_iter()
                        .map(|(k, v)| (k.to_ascii_lowercase(), v))
                        .collect();
                    OK
                }
                None => BAD,
            }
        },
    )?;
    header_edits(linker)
}

fn header_edits<T: Send + 'static>(linker: &mut Linker<State<T>>) -> wasmtime::Result<()> {
    for (name, replace) in [
        ("proxy_replace_header_map_value", true),
        ("proxy_add_header_map_value", false),
    ] {
        linker.func_wrap(
            "env",
            name,
            move |mut c: Ctx<'_, T>, map: u32, kp: u32, kn: u32, vp: u32, vn: u32| {
                let (Some(k), Some(v)) = (read_str(&mut c, kp, kn), read_str(&mut c, vp, vn))
                else {
                    return BAD;
                };
                let k = k.to_ascii_lowercase();
                let Some(m) = c.data_mut().map(map) else {
                    return BAD;
                };
                let full = m.len() >= MAX_FIELDS;
                match m.iter_mut().find(|(name, _)| *name == k) {
                    // Replacing keeps the field where it was (a pseudo-header stays first).
                    Some((_, value)) if replace => {
                        *value = v;
                        let mut seen = false;
                        m.retain(|(name, _)| *name != k || !std::mem::replace(&mut seen, true));
                    }
                    _ if full => return BAD,
                    _ => m.push((k, v)),
                }
                OK
            },
        )?;
    }
    linker.func_wrap(
        "env",
        "proxy_remove_header_map_value",
        |mut c: Ctx<'_, T>, map: u32, kp: u32, kn: u32| {
            let Some(k) = read_str(&mut c, kp, kn) else {
                return BAD;
            };
            let k = k.to_ascii_lowercase();
            match c.data_mut().map(map) {
                Some(m) => {
                    m.retain(|(name, _)| *name != k);
                    OK
                }
                None => BAD,
            }
        },
    )?;
    Ok(())
}

fn buffers<T: Send + 'static>(linker: &mut Linker<State<T>>) -> wasmtime::Result<()> {
    linker.func_wrap_async(
        "env",
        "proxy_get_buffer_bytes",
        |mut c: Ctx<'_, T>, (kind, start, max, p, n): (u32, u32, u32, u32, u32)| {
            Box::new(async move {
                let Some(data) = c.data_mut().buffer(kind) else {
                    return NOT_FOUND;
                };
                let start = (start as usize).min(data.len());
                let end = start.saturating_add(max as usize).min(data.len());
                if start == end {
                    return NOT_FOUND;
                }
                let slice = data[start..end].to_vec();
                give(&mut c, &slice, p, n).await
            })
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_buffer_status",
        |mut c: Ctx<'_, T>, kind: u32, len_out: u32, flags_out: u32| {
            let Some(len) = c.data_mut().buffer(kind).map(|b| b.len() as u32) else {
                return NOT_FOUND;
            };
            if write(&mut c, len_out, &len.to_le_bytes())
                && write(&mut c, flags_out, &0u32.to_le_bytes())
            {
                OK
            } else {
                BAD
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_buffer_bytes",
        |mut c: Ctx<'_, T>, kind: u32, start: u32, size: u32, p: u32, n: u32| {
            let Some(data) = read(&mut c, p, n) else {
                return BAD;
            };
            // Only bodies may be changed; configuration and call responses are read-only.
            if kind != abi::BUFFER_REQUEST_BODY && kind != abi::BUFFER_RESPONSE_BODY {
                return BAD;
            }
            let Some(buffer) = c.data_mut().buffer(kind) else {
                return BAD;
            };
            let start = (start as usize).min(buffer.len());
            let end = start.saturating_add(size as usize).min(buffer.len());
            buffer.splice(start..end, data);
            OK
        },
    )?;
    Ok(())
}

fn responses<T: Send + 'static>(linker: &mut Linker<State<T>>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_send_local_response",
        |mut c: Ctx<'_, T>,
         status: u32,
         dp: u32,
         dn: u32,
         bp: u32,
         bn: u32,
         hp: u32,
         hn: u32,
         _grpc: i32| {
            let details = read_str(&mut c, dp, dn).unwrap_or_default();
            let body = read(&mut c, bp, bn).unwrap_or_default();
            let headers = match hn {
                0 => Some(Vec::new()),
                _ => read(&mut c, hp, hn).and_then(|b| abi::decode_pairs(&b)),
            };
            let (Some(headers), Ok(status)) = (headers, u16::try_from(status)) else {
                return BAD;
            };
            c.data_mut().local = Some(LocalResponse {
                status,
                details,
                headers,
                body,
            });
            OK
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_continue_stream",
        |mut c: Ctx<'_, T>, stream: u32| {
            let index = match stream {
                abi::STREAM_REQUEST => 0,
                abi::STREAM_RESPONSE => 1,
                _ => return BAD,
            };
            c.data_mut().resumed[index] = true;
            OK
        },
    )?;
    // ABI 0.2.0 spells them apart.
    for (name, index) in [
        ("proxy_continue_request", 0),
        ("proxy_continue_response", 1),
    ] {
        linker.func_wrap("env", name, move |mut c: Ctx<'_, T>| {
            c.data_mut().resumed[index] = true;
            OK
        })?;
    }
    Ok(())
}

fn shared_data<T: Send + 'static>(linker: &mut Linker<State<T>>) -> wasmtime::Result<()> {
    linker.func_wrap_async(
        "env",
        "proxy_get_shared_data",
        |mut c: Ctx<'_, T>, (kp, kn, p, n, cas_out): (u32, u32, u32, u32, u32)| {
            Box::new(async move {
                let Some(key) = read_str(&mut c, kp, kn) else {
                    return BAD;
                };
                let store = c.data().env.shared.clone();
                let (value, cas) = match store.get(&key).await {
                    Ok(Some(found)) => found,
                    Ok(None) => return NOT_FOUND,
                    Err(status) => return status as u32,
                };
                if !write(&mut c, cas_out, &cas.to_le_bytes()) {
                    return BAD;
                }
                if value.is_empty() {
                    // Nothing to allocate: a null pointer and a zero size.
                    return if write(&mut c, p, &[0; 4]) && write(&mut c, n, &[0; 4]) {
                        OK
                    } else {
                        BAD
                    };
                }
                give(&mut c, &value, p, n).await
            })
        },
    )?;
    linker.func_wrap_async(
        "env",
        "proxy_set_shared_data",
        |mut c: Ctx<'_, T>, (kp, kn, vp, vn, cas): (u32, u32, u32, u32, u32)| {
            Box::new(async move {
                let (Some(key), Some(value)) = (read_str(&mut c, kp, kn), read(&mut c, vp, vn))
                else {
                    return BAD;
                };
                let store = c.data().env.shared.clone();
                store.set(key, value, cas).await as u32
            })
        },
    )?;
    Ok(())
}

/// A property path as the ABI passes it (parts separated by NUL), joined with `.`.
pub(crate) fn property_path(bytes: &[u8]) -> String {
    let bytes = bytes.strip_suffix(&[0]).unwrap_or(bytes);
    bytes
        .split(|b| *b == 0)
        .map(String::from_utf8_lossy)
        .collect::<Vec<_>>()
        .join(".")
}

fn properties<T: Send + 'static>(linker: &mut Linker<State<T>>) -> wasmtime::Result<()> {
    linker.func_wrap_async(
        "env",
        "proxy_get_property",
        |mut c: Ctx<'_, T>, (pp, pn, p, n): (u32, u32, u32, u32)| {
            Box::new(async move {
                let Some(path) = read(&mut c, pp, pn).map(|b| property_path(&b)) else {
                    return BAD;
                };
                match c.data().property(&path) {
                    Some(v) if v.is_empty() => {
                        if write(&mut c, p, &[0; 4]) && write(&mut c, n, &[0; 4]) {
                            OK
                        } else {
                            BAD
                        }
                    }
                    Some(v) => give(&mut c, &v, p, n).await,
                    None => NOT_FOUND,
                }
            })
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_property",
        |mut c: Ctx<'_, T>, pp: u32, pn: u32, vp: u32, vn: u32| {
            let (Some(path), Some(value)) = (read(&mut c, pp, pn), read(&mut c, vp, vn)) else {
                return BAD;
            };
            let path = property_path(&path);
            let properties = &mut c.data_mut().properties;
            if properties.len() >= MAX_PROPERTIES && !properties.contains_key(&path) {
                return BAD;
            }
            properties.insert(path, value);
            OK
        },
    )?;
    Ok(())
}

fn http_calls<T: Send + 'static>(linker: &mut Linker<State<T>>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_http_call",
        |mut c: Ctx<'_, T>,
         up: u32,
         un: u32,
         hp: u32,
         hn: u32,
         bp: u32,
         bn: u32,
         _tp: u32,
         _tn: u32,
         timeout_ms: u32,
         token_out: u32| {
            let cluster = read_str(&mut c, up, un);
            let headers = read(&mut c, hp, hn).and_then(|b| abi::decode_pairs(&b));
            let (Some(cluster), Some(headers), Some(body)) =
                (cluster, headers, read(&mut c, bp, bn))
            else {
                return BAD;
            };
            let call = HttpCall {
                token: 0,
                cluster,
                headers,
                body,
                timeout: Duration::from_millis(u64::from(timeout_ms)),
            };
            match c.data_mut().dispatch(call) {
                Ok(token) if write(&mut c, token_out, &token.to_le_bytes()) => OK,
                Ok(_) => BAD,
                Err(status) => status as u32,
            }
        },
    )?;
    Ok(())
}

fn metrics<T: Send + 'static>(linker: &mut Linker<State<T>>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_define_metric",
        |mut c: Ctx<'_, T>, kind: u32, p: u32, n: u32, id_out: u32| {
            let (Some(kind), Some(name)) = (MetricKind::from_abi(kind), read_str(&mut c, p, n))
            else {
                return BAD;
            };
            let Some(id) = c.data_mut().define_metric(kind, name) else {
                return BAD;
            };
            if write(&mut c, id_out, &id.to_le_bytes()) {
                OK
            } else {
                BAD
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_increment_metric",
        |mut c: Ctx<'_, T>, id: u32, delta: i64| c.data_mut().metric(id, delta, false) as u32,
    )?;
    linker.func_wrap(
        "env",
        "proxy_record_metric",
        |mut c: Ctx<'_, T>, id: u32, value: u64| {
            let value = i64::try_from(value).unwrap_or(i64::MAX);
            c.data_mut().metric(id, value, true) as u32
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_metric",
        |mut c: Ctx<'_, T>, id: u32, out: u32| match c.data().metric_value(id) {
            Some(v) if write(&mut c, out, &(v.max(0) as u64).to_le_bytes()) => OK,
            Some(_) => BAD,
            None => NOT_FOUND,
        },
    )?;
    Ok(())
}

/// WASI's preview 1 modules, as filters built for `wasm32-wasip1` (and TinyGo, C++ with
/// Emscripten) import them from a proxy-wasm host.
const WASI: [&str; 2] = ["wasi_snapshot_preview1", "wasi_unstable"];
/// WASI's `errno` values used here.
const ERRNO_SUCCESS: i32 = 0;
const ERRNO_BADF: i32 = 8;
const ERRNO_IO: i32 = 29;
const ERRNO_NOSYS: i32 = 52;

/// The subset of WASI preview 1 Envoy gives filters: no environment and no arguments, clocks,
/// random bytes, stdout and stderr into the filter's log, `sched_yield`, and `proc_exit` as a
/// trap (the filter ended itself, as AssemblyScript's abort does) rather than a return into
/// code that cannot go on. The rest answers `ENOSYS`.
fn wasi<T: Send + 'static>(linker: &mut Linker<State<T>>) -> wasmtime::Result<()> {
    for module in WASI {
        for name in ["environ_sizes_get", "args_sizes_get"] {
            linker.func_wrap(module, name, |mut c: Ctx<'_, T>, count: u32, size: u32| {
                let ok = write(&mut c, count, &[0; 4]) && write(&mut c, size, &[0; 4]);
                if ok { ERRNO_SUCCESS } else { ERRNO_IO }
            })?;
        }
        for name in ["environ_get", "args_get"] {
            linker.func_wrap(module, name, |_: Ctx<'_, T>, _: u32, _: u32| ERRNO_SUCCESS)?;
        }
        linker.func_wrap(module, "sched_yield", |_: Ctx<'_, T>| ERRNO_SUCCESS)?;
        linker.func_wrap(
            module,
            "proc_exit",
            |_: Ctx<'_, T>, code: i32| -> wasmtime::Result<()> {
                Err(wasmtime::Error::msg(format!(
                    "the filter exited (proc_exit {code})"
                )))
            },
        )?;
        linker.func_wrap(module, "clock_time_get", clock_time_get::<T>)?;
        linker.func_wrap(
            module,
            "random_get",
            |mut c: Ctx<'_, T>, buf: u32, len: u32| {
                let mut bytes = vec![0u8; len as usize];
                let filled = std::fs::File::open("/dev/urandom")
                    .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes));
                if filled.is_ok() && write(&mut c, buf, &bytes) {
                    ERRNO_SUCCESS
                } else {
                    ERRNO_IO
                }
            },
        )?;
        linker.func_wrap(module, "fd_write", fd_write::<T>)?;
    }
    Ok(())
}

/// `clock_time_get`: the realtime clock, or a monotonic one (also for the CPU-time clocks,
/// which mean nothing here).
fn clock_time_get<T>(mut c: Ctx<'_, T>, id: u32, _precision: u64, out: u32) -> i32 {
    static STARTED: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let ns = match id {
        1..=3 => STARTED
            .get_or_init(std::time::Instant::now)
            .elapsed()
            .as_nanos() as u64,
        _ => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    };
    if write(&mut c, out, &ns.to_le_bytes()) {
        ERRNO_SUCCESS
    } else {
        ERRNO_IO
    }
}

/// `fd_write` to stdout (info) or stderr (warning): into the filter's log, a line at a time.
fn fd_write<T>(mut c: Ctx<'_, T>, fd: u32, iovs: u32, count: u32, written: u32) -> i32 {
    if fd != 1 && fd != 2 {
        return ERRNO_BADF;
    }
    let mut text = Vec::new();
    for i in 0..count.min(64) {
        let Some(iov) = read(&mut c, iovs.wrapping_add(i * 8), 8) else {
            return ERRNO_IO;
        };
        let ptr = u32::from_le_bytes([iov[0], iov[1], iov[2], iov[3]]);
        let len = u32::from_le_bytes([iov[4], iov[5], iov[6], iov[7]]);
        let Some(bytes) = read(&mut c, ptr, len.min(64 << 10)) else {
            return ERRNO_IO;
        };
        text.extend_from_slice(&bytes);
    }
    let level = if fd == 1 { 2 } else { abi::LOG_WARN };
    for line in String::from_utf8_lossy(&text)
        .lines()
        .filter(|l| !l.is_empty())
    {
        c.data_mut().log(level, line.to_string());
    }
    if write(&mut c, written, &(text.len() as u32).to_le_bytes()) {
        ERRNO_SUCCESS
    } else {
        ERRNO_IO
    }
}

/// Every function `module` imports answers `Unimplemented` (or nothing, for a function with no
/// result) unless a real host call shadows it: the filter gets an error value, never a trap.
fn unimplemented<T: Send + 'static>(
    linker: &mut Linker<State<T>>,
    module: &Module,
) -> wasmtime::Result<()> {
    for import in module.imports() {
        let wasmtime::ExternType::Func(ty) = import.ty() else {
            continue;
        };
        let returns_status = ty
            .results()
            .next()
            .is_some_and(|r| matches!(r, ValType::I32));
        // WASI's errno for "not implemented" is not the ABI's status.
        let answer = match WASI.contains(&import.module()) {
            true => ERRNO_NOSYS,
            false => Status::Unimplemented as i32,
        };
        linker.func_new(import.module(), import.name(), ty, move |_, _, results| {
            if returns_status && let Some(r) = results.first_mut() {
                *r = Val::I32(answer);
            }
            Ok(())
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::property_path;

    #[test]
    fn property_paths_join_their_parts_with_dots() {
        assert_eq!(property_path(b"request\0path"), "request.path");
        assert_eq!(property_path(b"plugin_root_id"), "plugin_root_id");
        assert_eq!(property_path(b"source\0address\0"), "source.address");
    }
}
