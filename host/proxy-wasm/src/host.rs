//! One filter module, its instances, and the host calls they make.

use crate::abi::{self, Status};
use anyhow::anyhow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use wasmtime::{Caller, Engine, Extern, Instance, Linker, Module, Store, Val, ValType};

/// Header fields, in order; names lower-case.
pub type Headers = Vec<(String, String)>;

/// What `proxy_send_local_response` asked to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalResponse {
    pub status: u16,
    pub details: String,
    pub headers: Headers,
    pub body: Vec<u8>,
}

/// What a header callback decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `Action::Continue`.
    Continue,
    /// `Action::Pause` without a local response (the filter waits for something).
    Pause,
    /// The filter answered.
    Respond(LocalResponse),
}

#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    #[error("not a proxy-wasm filter: {0}")]
    NotAFilter(String),
    #[error("the filter refused its {0} (it returned false)")]
    Refused(&'static str),
    #[error("the filter failed: {0:#}")]
    Failed(anyhow::Error),
}

/// Shared data (`proxy_get_shared_data` / `proxy_set_shared_data`): one store for every
/// instance given the same handle, each value with a CAS number that changes on every write.
#[derive(Clone, Default)]
pub struct SharedData(Arc<Mutex<HashMap<String, Versioned>>>);

/// A shared value and its CAS number.
type Versioned = (Vec<u8>, u32);

impl SharedData {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.0.lock().ok()?.get(key).cloned()
    }

    /// Sets `key` unless `cas` is non-zero and is not the value's current CAS.
    fn set(&self, key: String, value: Vec<u8>, cas: u32) -> Status {
        let Ok(mut map) = self.0.lock() else {
            return Status::InternalFailure;
        };
        let current = map.get(&key).map(|(_, c)| *c);
        if cas != 0 && current != Some(cas) {
            return Status::CasMismatch;
        }
        let next = current.unwrap_or(0).wrapping_add(1).max(1);
        map.insert(key, (value, next));
        Status::Ok
    }
}

/// A compiled filter module that speaks the ABI.
pub struct Filter {
    module: Module,
    abi: &'static str,
}

/// The ABI versions understood, by their marker export.
const ABIS: &[(&str, &str)] = &[
    ("proxy_abi_version_0_2_1", "0.2.1"),
    ("proxy_abi_version_0_2_0", "0.2.0"),
];

impl Filter {
    /// Compiles `bytes` and checks that they are a proxy-wasm filter.
    pub fn load(engine: &Engine, bytes: &[u8]) -> Result<Filter, FilterError> {
        let module = Module::new(engine, bytes)
            .map_err(|e| FilterError::NotAFilter(format!("not a core Wasm module: {e}")))?;
        let exports: Vec<&str> = module.exports().map(|e| e.name()).collect();
        let abi = ABIS
            .iter()
            .find(|(marker, _)| exports.contains(marker))
            .map(|(_, v)| *v)
            .ok_or_else(|| {
                FilterError::NotAFilter("it exports no proxy_abi_version_0_2_x marker".into())
            })?;
        if !exports.contains(&"malloc") && !exports.contains(&"proxy_on_memory_allocate") {
            return Err(FilterError::NotAFilter(
                "it exports no allocator (malloc or proxy_on_memory_allocate)".into(),
            ));
        }
        Ok(Filter { module, abi })
    }

    /// The ABI version the filter was built for.
    pub fn abi(&self) -> &'static str {
        self.abi
    }
}

/// What the host holds for an instance: configuration, the current HTTP context's header
/// maps, and what the filter asked for.
#[derive(Default)]
struct State {
    vm_config: Vec<u8>,
    plugin_config: Vec<u8>,
    request_headers: Headers,
    response_headers: Headers,
    local: Option<LocalResponse>,
    logs: Vec<(u32, String)>,
    tick_ms: u32,
    shared: SharedData,
    /// Properties by path, the parts joined with `.` (`request.path`).
    properties: HashMap<String, Vec<u8>>,
}

impl State {
    fn map(&mut self, map: u32) -> Option<&mut Headers> {
        match map {
            abi::MAP_REQUEST_HEADERS => Some(&mut self.request_headers),
            abi::MAP_RESPONSE_HEADERS => Some(&mut self.response_headers),
            _ => None,
        }
    }
}

fn memory(caller: &mut Caller<'_, State>) -> Option<wasmtime::Memory> {
    caller.get_export("memory").and_then(Extern::into_memory)
}

fn read(caller: &mut Caller<'_, State>, ptr: u32, len: u32) -> Option<Vec<u8>> {
    let mem = memory(caller)?;
    let mut buf = vec![0u8; len as usize];
    mem.read(&*caller, ptr as usize, &mut buf).ok()?;
    Some(buf)
}

fn read_str(caller: &mut Caller<'_, State>, ptr: u32, len: u32) -> Option<String> {
    String::from_utf8(read(caller, ptr, len)?).ok()
}

/// Hands `data` to the filter: memory from its allocator, filled, and the pointer and size
/// written where it asked.
async fn give(caller: &mut Caller<'_, State>, data: &[u8], ptr_out: u32, len_out: u32) -> u32 {
    let alloc = caller
        .get_export("malloc")
        .or_else(|| caller.get_export("proxy_on_memory_allocate"))
        .and_then(Extern::into_func);
    let (Some(alloc), Some(mem)) = (alloc, memory(caller)) else {
        return Status::InternalFailure as u32;
    };
    let mut out = [Val::I32(0)];
    let size = Val::I32(data.len() as i32);
    if alloc
        .call_async(&mut *caller, &[size], &mut out)
        .await
        .is_err()
    {
        return Status::InternalFailure as u32;
    }
    // The filter's allocator answers with a pointer; anything else is its bug, not a trap.
    let Some(ptr) = out[0].i32() else {
        return Status::InternalFailure as u32;
    };
    let ptr = ptr as u32 as usize;
    let ok = mem.write(&mut *caller, ptr, data).is_ok()
        && mem
            .write(&mut *caller, ptr_out as usize, &(ptr as u32).to_le_bytes())
            .is_ok()
        && mem
            .write(
                &mut *caller,
                len_out as usize,
                &(data.len() as u32).to_le_bytes(),
            )
            .is_ok();
    if ok {
        Status::Ok as u32
    } else {
        Status::InternalFailure as u32
    }
}

fn link_logging(linker: &mut Linker<State>) -> anyhow::Result<()> {
    linker.func_wrap(
        "env",
        "proxy_log",
        |mut c: Caller<'_, State>, level: u32, p: u32, n: u32| match read_str(&mut c, p, n) {
            Some(m) => {
                c.data_mut().logs.push((level, m));
                Status::Ok as u32
            }
            None => Status::BadArgument as u32,
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_tick_period_milliseconds",
        |mut c: Caller<'_, State>, ms: u32| {
            c.data_mut().tick_ms = ms;
            Status::Ok as u32
        },
    )?;
    linker.func_wrap_async(
        "env",
        "proxy_get_current_time_nanoseconds",
        |mut c: Caller<'_, State>, (out,): (u32,)| {
            Box::new(async move {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as u64);
                match memory(&mut c) {
                    Some(mem) if mem.write(&mut c, out as usize, &now.to_le_bytes()).is_ok() => {
                        Status::Ok as u32
                    }
                    _ => Status::BadArgument as u32,
                }
            })
        },
    )?;
    Ok(())
}

fn link_headers(linker: &mut Linker<State>) -> anyhow::Result<()> {
    linker.func_wrap_async(
        "env",
        "proxy_get_header_map_pairs",
        |mut c: Caller<'_, State>, (map, p, n): (u32, u32, u32)| {
            Box::new(async move {
                let Some(pairs) = c.data_mut().map(map).map(|m| abi::encode_pairs(m)) else {
                    return Status::BadArgument as u32;
                };
                give(&mut c, &pairs, p, n).await
            })
        },
    )?;
    linker.func_wrap_async(
        "env",
        "proxy_get_header_map_value",
        |mut c: Caller<'_, State>, (map, kp, kn, p, n): (u32, u32, u32, u32, u32)| {
            Box::new(async move {
                let Some(key) = read_str(&mut c, kp, kn) else {
                    return Status::BadArgument as u32;
                };
                let value = c.data_mut().map(map).and_then(|m| {
                    m.iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case(&key))
                        .map(|(_, v)| v.clone())
                });
                match value {
                    Some(v) => give(&mut c, v.as_bytes(), p, n).await,
                    None => Status::NotFound as u32,
                }
            })
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_header_map_pairs",
        |mut c: Caller<'_, State>, map: u32, p: u32, n: u32| {
            let Some(pairs) = read(&mut c, p, n).and_then(|b| abi::decode_pairs(&b)) else {
                return Status::BadArgument as u32;
            };
            match c.data_mut().map(map) {
                Some(m) => {
                    *m = pairs
                        .into_iter()
                        .map(|(k, v)| (k.to_ascii_lowercase(), v))
                        .collect();
                    Status::Ok as u32
                }
                None => Status::BadArgument as u32,
            }
        },
    )?;
    for (name, replace) in [
        ("proxy_replace_header_map_value", true),
        ("proxy_add_header_map_value", false),
    ] {
        linker.func_wrap(
            "env",
            name,
            move |mut c: Caller<'_, State>, map: u32, kp: u32, kn: u32, vp: u32, vn: u32| {
                let (Some(k), Some(v)) = (read_str(&mut c, kp, kn), read_str(&mut c, vp, vn))
                else {
                    return Status::BadArgument as u32;
                };
                let k = k.to_ascii_lowercase();
                let Some(m) = c.data_mut().map(map) else {
                    return Status::BadArgument as u32;
                };
                if replace {
                    m.retain(|(name, _)| *name != k);
                }
                m.push((k, v));
                Status::Ok as u32
            },
        )?;
    }
    linker.func_wrap(
        "env",
        "proxy_remove_header_map_value",
        |mut c: Caller<'_, State>, map: u32, kp: u32, kn: u32| {
            let Some(k) = read_str(&mut c, kp, kn) else {
                return Status::BadArgument as u32;
            };
            let k = k.to_ascii_lowercase();
            match c.data_mut().map(map) {
                Some(m) => {
                    m.retain(|(name, _)| *name != k);
                    Status::Ok as u32
                }
                None => Status::BadArgument as u32,
            }
        },
    )?;
    Ok(())
}

/// A property path as the ABI passes it (parts separated by NUL), joined with `.`.
fn property_path(bytes: &[u8]) -> String {
    bytes
        .split(|b| *b == 0)
        .map(String::from_utf8_lossy)
        .collect::<Vec<_>>()
        .join(".")
}

fn link_state(linker: &mut Linker<State>) -> anyhow::Result<()> {
    linker.func_wrap_async(
        "env",
        "proxy_get_shared_data",
        |mut c: Caller<'_, State>, (kp, kn, p, n, cas_out): (u32, u32, u32, u32, u32)| {
            Box::new(async move {
                let Some(key) = read_str(&mut c, kp, kn) else {
                    return Status::BadArgument as u32;
                };
                let Some((value, cas)) = c.data().shared.get(&key) else {
                    return Status::NotFound as u32;
                };
                let Some(mem) = memory(&mut c) else {
                    return Status::InternalFailure as u32;
                };
                if mem
                    .write(&mut c, cas_out as usize, &cas.to_le_bytes())
                    .is_err()
                {
                    return Status::BadArgument as u32;
                }
                give(&mut c, &value, p, n).await
            })
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_shared_data",
        |mut c: Caller<'_, State>, kp: u32, kn: u32, vp: u32, vn: u32, cas: u32| {
            let (Some(key), Some(value)) = (read_str(&mut c, kp, kn), read(&mut c, vp, vn)) else {
                return Status::BadArgument as u32;
            };
            c.data().shared.set(key, value, cas) as u32
        },
    )?;
    linker.func_wrap_async(
        "env",
        "proxy_get_property",
        |mut c: Caller<'_, State>, (pp, pn, p, n): (u32, u32, u32, u32)| {
            Box::new(async move {
                let Some(path) = read(&mut c, pp, pn).map(|b| property_path(&b)) else {
                    return Status::BadArgument as u32;
                };
                match c.data().properties.get(&path).cloned() {
                    Some(v) => give(&mut c, &v, p, n).await,
                    None => Status::NotFound as u32,
                }
            })
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_property",
        |mut c: Caller<'_, State>, pp: u32, pn: u32, vp: u32, vn: u32| {
            let (Some(path), Some(value)) = (read(&mut c, pp, pn), read(&mut c, vp, vn)) else {
                return Status::BadArgument as u32;
            };
            c.data_mut().properties.insert(property_path(&path), value);
            Status::Ok as u32
        },
    )?;
    Ok(())
}

fn link_buffers_and_responses(linker: &mut Linker<State>) -> anyhow::Result<()> {
    linker.func_wrap_async(
        "env",
        "proxy_get_buffer_bytes",
        |mut c: Caller<'_, State>, (kind, start, max, p, n): (u32, u32, u32, u32, u32)| {
            Box::new(async move {
                let data = match kind {
                    abi::BUFFER_VM_CONFIGURATION => c.data().vm_config.clone(),
                    abi::BUFFER_PLUGIN_CONFIGURATION => c.data().plugin_config.clone(),
                    _ => return Status::NotFound as u32,
                };
                let start = (start as usize).min(data.len());
                let end = start.saturating_add(max as usize).min(data.len());
                if start == end {
                    return Status::NotFound as u32;
                }
                give(&mut c, &data[start..end], p, n).await
            })
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_send_local_response",
        |mut c: Caller<'_, State>,
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
            let Some(headers) = read(&mut c, hp, hn).and_then(|b| abi::decode_pairs(&b)) else {
                return Status::BadArgument as u32;
            };
            let Ok(status) = u16::try_from(status) else {
                return Status::BadArgument as u32;
            };
            c.data_mut().local = Some(LocalResponse {
                status,
                details,
                headers,
                body,
            });
            Status::Ok as u32
        },
    )?;
    Ok(())
}

/// Every import of `module` not linked yet answers `Unimplemented` (or nothing, for a
/// function with no result): the filter gets an error value, never a trap.
fn link_unimplemented(linker: &mut Linker<State>, module: &Module) -> anyhow::Result<()> {
    let mut probe = Store::new(module.engine(), State::default());
    for import in module.imports() {
        let wasmtime::ExternType::Func(ty) = import.ty() else {
            continue;
        };
        if linker.get_by_import(&mut probe, &import).is_some() {
            continue;
        }
        let returns_status = ty
            .results()
            .next()
            .is_some_and(|r| matches!(r, ValType::I32));
        linker.func_new(import.module(), import.name(), ty, move |_, _, results| {
            if returns_status && let Some(r) = results.first_mut() {
                *r = Val::I32(Status::Unimplemented as i32);
            }
            Ok(())
        })?;
    }
    Ok(())
}

/// One instance of a filter: its root context (id 1) and, while a request is in it, that
/// request's HTTP context.
pub struct FilterInstance {
    store: Store<State>,
    instance: Instance,
    next_context: u32,
    current: Option<u32>,
}

impl FilterInstance {
    /// Instantiates `filter` and configures its root context as Envoy does; `shared` is the
    /// shared data it sees (give every instance of one filter the same).
    pub async fn new(
        filter: &Filter,
        vm_config: &[u8],
        plugin_config: &[u8],
        shared: SharedData,
    ) -> Result<FilterInstance, FilterError> {
        let engine = filter.module.engine();
        let mut linker = Linker::new(engine);
        let linked = link_logging(&mut linker)
            .and_then(|()| link_headers(&mut linker))
            .and_then(|()| link_buffers_and_responses(&mut linker))
            .and_then(|()| link_state(&mut linker))
            .and_then(|()| link_unimplemented(&mut linker, &filter.module));
        linked.map_err(FilterError::Failed)?;
        let state = State {
            vm_config: vm_config.to_vec(),
            plugin_config: plugin_config.to_vec(),
            shared,
            ..State::default()
        };
        let mut store = Store::new(engine, state);
        let instance = linker
            .instantiate_async(&mut store, &filter.module)
            .await
            .map_err(|e| FilterError::Failed(anyhow!("instantiating: {e:#}")))?;
        let mut me = FilterInstance {
            store,
            instance,
            next_context: 2,
            current: None,
        };
        for init in ["_initialize", "_start"] {
            if me.instance.get_func(&mut me.store, init).is_some() {
                me.call(init, &[]).await?;
            }
        }
        me.call("proxy_on_context_create", &[1, 0]).await?;
        if me
            .call("proxy_on_vm_start", &[1, vm_config.len() as i32])
            .await?
            == Some(0)
        {
            return Err(FilterError::Refused("VM configuration"));
        }
        if me
            .call("proxy_on_configure", &[1, plugin_config.len() as i32])
            .await?
            == Some(0)
        {
            return Err(FilterError::Refused("plugin configuration"));
        }
        Ok(me)
    }

    /// Calls an exported callback with i32 arguments; its i32 result, if it has one. A
    /// callback the filter does not export is skipped.
    async fn call(&mut self, name: &str, args: &[i32]) -> Result<Option<i32>, FilterError> {
        let Some(func) = self.instance.get_func(&mut self.store, name) else {
            return Ok(None);
        };
        let params: Vec<Val> = args.iter().map(|a| Val::I32(*a)).collect();
        let n = func.ty(&self.store).results().len();
        let mut results = vec![Val::I32(0); n];
        func.call_async(&mut self.store, &params, &mut results)
            .await
            .map_err(|e| FilterError::Failed(anyhow!("{name}: {e:#}")))?;
        Ok(results.first().and_then(Val::i32))
    }

    async fn headers(
        &mut self,
        callback: &str,
        end_of_stream: bool,
    ) -> Result<Outcome, FilterError> {
        let context = *self.current.get_or_insert_with(|| {
            let id = self.next_context;
            self.next_context += 1;
            id
        });
        if callback == "proxy_on_request_headers" {
            self.call("proxy_on_context_create", &[context as i32, 1])
                .await?;
        }
        let count = match callback {
            "proxy_on_request_headers" => self.store.data().request_headers.len(),
            _ => self.store.data().response_headers.len(),
        };
        let action = self
            .call(
                callback,
                &[context as i32, count as i32, i32::from(end_of_stream)],
            )
            .await?;
        if let Some(local) = self.store.data_mut().local.take() {
            return Ok(Outcome::Respond(local));
        }
        Ok(match action {
            Some(a) if a as u32 != abi::ACTION_CONTINUE => Outcome::Pause,
            _ => Outcome::Continue,
        })
    }

    /// A new request's headers, through `proxy_on_request_headers` of a new HTTP context;
    /// `headers` comes back as the filter left it. `properties` are what the filter reads with
    /// `get_property` (paths joined with `.`, e.g. `request.path`, `source.address`).
    pub async fn request_headers(
        &mut self,
        headers: &mut Headers,
        properties: Vec<(String, Vec<u8>)>,
        end_of_stream: bool,
    ) -> Result<Outcome, FilterError> {
        self.current = None;
        self.store.data_mut().properties = properties.into_iter().collect();
        self.store.data_mut().request_headers = std::mem::take(headers);
        let out = self
            .headers("proxy_on_request_headers", end_of_stream)
            .await;
        // Kept: the response callbacks may read the request's headers too.
        headers.clone_from(&self.store.data().request_headers);
        out
    }

    /// The response's headers, in the same HTTP context as the request's.
    pub async fn response_headers(
        &mut self,
        headers: &mut Headers,
        end_of_stream: bool,
    ) -> Result<Outcome, FilterError> {
        self.store.data_mut().response_headers = std::mem::take(headers);
        let out = self
            .headers("proxy_on_response_headers", end_of_stream)
            .await;
        *headers = std::mem::take(&mut self.store.data_mut().response_headers);
        out
    }

    /// The end of the current request: `proxy_on_done`, `proxy_on_log`, `proxy_on_delete`.
    pub async fn done(&mut self) -> Result<(), FilterError> {
        let Some(context) = self.current.take() else {
            return Ok(());
        };
        for callback in ["proxy_on_done", "proxy_on_log", "proxy_on_delete"] {
            self.call(callback, &[context as i32]).await?;
        }
        Ok(())
    }

    /// What the filter logged since the last call: (level 0 trace … 5 critical, message).
    pub fn take_logs(&mut self) -> Vec<(u32, String)> {
        std::mem::take(&mut self.store.data_mut().logs)
    }

    /// The tick period the filter asked for, in milliseconds (0: none).
    pub fn tick_period_ms(&self) -> u32 {
        self.store.data().tick_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_data_refuses_a_write_with_a_stale_cas() {
        let d = SharedData::default();
        assert_eq!(
            d.set("k".into(), b"1".to_vec(), 7),
            Status::CasMismatch,
            "absent key, cas 7"
        );
        assert_eq!(d.set("k".into(), b"1".to_vec(), 0), Status::Ok);
        let (v, cas) = d.get("k").expect("set");
        assert_eq!((v.as_slice(), cas), (&b"1"[..], 1));
        assert_eq!(d.set("k".into(), b"2".to_vec(), cas), Status::Ok);
        assert_eq!(
            d.set("k".into(), b"3".to_vec(), cas),
            Status::CasMismatch,
            "stale"
        );
        assert_eq!(d.get("k"), Some((b"2".to_vec(), 2)));
        assert_eq!(property_path(b"request\0path"), "request.path");
    }
}
