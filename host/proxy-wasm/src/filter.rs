//! One filter module, its instances, and the callbacks into them, in the order Envoy makes them.

use crate::abi;
use crate::state::{CallResponse, Env, Headers, HttpCall, LocalResponse, PropertySource, State};
use wasmtime::{Instance, InstancePre, Module, Store, Val};

/// What a stream callback decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `Action::Continue` (or the filter resumed the paused stream).
    Continue,
    /// `Action::Pause` without a local response: the filter waits for an HTTP call it
    /// dispatched (see [`FilterInstance::take_calls`]) or for more of the body.
    Pause,
    /// The filter answered (`proxy_send_local_response`).
    Respond(LocalResponse),
}

#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    #[error("not a proxy-wasm filter: {0}")]
    NotAFilter(String),
    /// `proxy_on_vm_start` or `proxy_on_configure` returned false; with the last warning or
    /// error the filter logged, which usually says why.
    #[error("the filter refused its {what}{}", said.as_ref().map(|s| format!(": {s}")).unwrap_or_default())]
    Refused {
        what: &'static str,
        said: Option<String>,
    },
    /// A trap, or an error the embedder raised from the store (a limit): kept whole so the
    /// embedder can tell which.
    #[error("{0:#}")]
    Failed(wasmtime::Error),
}

/// A compiled filter module that speaks the ABI, linked and ready to instantiate.
pub struct Filter<T: 'static> {
    pre: InstancePre<State<T>>,
    abi: &'static str,
}

/// The ABI versions understood, by their marker export.
const ABIS: &[(&str, &str)] = &[
    ("proxy_abi_version_0_2_1", "0.2.1"),
    ("proxy_abi_version_0_2_0", "0.2.0"),
];

/// Whether `bytes` look like a core module (as opposed to a component): the version field of
/// the header.
pub fn is_core_module(bytes: &[u8]) -> bool {
    bytes.starts_with(b"\0asm\x01\0\0\0")
}

impl<T: Send + 'static> Filter<T> {
    /// Checks that `module` is a proxy-wasm filter and links the host calls it imports.
    pub fn new(module: Module) -> Result<Filter<T>, FilterError> {
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
        let not_linkable = |e: wasmtime::Error| FilterError::NotAFilter(format!("{e:#}"));
        let linker = crate::link::linker::<T>(&module).map_err(not_linkable)?;
        let pre = linker.instantiate_pre(&module).map_err(not_linkable)?;
        Ok(Filter { pre, abi })
    }

    /// The ABI version the filter was built for.
    pub fn abi(&self) -> &'static str {
        self.abi
    }
}

/// The instance's configuration, handed to `proxy_on_vm_start` and `proxy_on_configure`.
pub struct Configuration {
    pub vm: Vec<u8>,
    pub plugin: Vec<u8>,
    /// The `plugin_root_id` property (selects the root context in some SDKs).
    pub root_id: String,
}

/// The two directions of an HTTP stream (`proxy_stream_type_t`'s numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Request = 0,
    Response = 1,
}

/// The root context's id; HTTP contexts count up from 2.
const ROOT: i32 = 1;

/// The most parameters a callback takes (`proxy_on_http_call_response`).
const MAX_ARGS: usize = 5;

/// An exported callback, looked up once: its function and how to pass its parameters.
#[derive(Clone, Copy)]
struct Callback {
    func: Option<wasmtime::Func>,
    /// Parameters that are i64 (sizes are `usize`: i32 on wasm32, i64 on wasm64).
    wide: [bool; MAX_ARGS],
    params: usize,
    results: usize,
}

impl Callback {
    fn find<T>(instance: &Instance, store: &mut Store<State<T>>, name: &str) -> Callback {
        let mut c = Callback {
            func: None,
            wide: [false; MAX_ARGS],
            params: 0,
            results: 0,
        };
        let Some(func) = instance.get_func(&mut *store, name) else {
            return c;
        };
        let ty = func.ty(&*store);
        // A callback with more parameters than the ABI has is not one this host can call.
        if ty.params().len() > MAX_ARGS {
            return c;
        }
        for (i, t) in ty.params().enumerate() {
            c.wide[i] = matches!(t, wasmtime::ValType::I64);
        }
        c.params = ty.params().len();
        c.results = ty.results().len();
        c.func = Some(func);
        c
    }
}

/// One instance of a filter: its root context and, while a request is in it, that request's
/// HTTP context.
pub struct FilterInstance<T: 'static> {
    store: Store<State<T>>,
    instance: Instance,
    next_context: i32,
    /// The open HTTP context, if a request is in it.
    current: Option<i32>,
    callbacks: std::collections::HashMap<&'static str, Callback>,
}

impl<T: Send + 'static> FilterInstance<T> {
    /// Instantiates `filter` and configures its root context as Envoy does. `setup` prepares
    /// the store (limits, deadlines) before anything runs.
    pub async fn new(
        filter: &Filter<T>,
        config: Configuration,
        env: Env,
        user: T,
        setup: impl FnOnce(&mut Store<State<T>>),
    ) -> Result<FilterInstance<T>, FilterError> {
        let (vm_len, plugin_len) = (config.vm.len() as i32, config.plugin.len() as i32);
        let mut state = State::new(user, env, config.vm, config.plugin);
        state.root_id = config.root_id.into_bytes();
        let mut store = Store::new(filter.pre.module().engine(), state);
        setup(&mut store);
        let instance = filter
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(FilterError::Failed)?;
        let mut me = FilterInstance {
            store,
            instance,
            next_context: ROOT + 1,
            current: None,
            callbacks: std::collections::HashMap::new(),
        };
        for init in ["_initialize", "_start"] {
            me.call(init, &[]).await?;
        }
        me.call("proxy_on_context_create", &[ROOT, 0]).await?;
        if me.call("proxy_on_vm_start", &[ROOT, vm_len]).await? == Some(0) {
            return Err(me.refused("VM configuration"));
        }
        if me.call("proxy_on_configure", &[ROOT, plugin_len]).await? == Some(0) {
            return Err(me.refused("plugin configuration"));
        }
        Ok(me)
    }

    fn refused(&self, what: &'static str) -> FilterError {
        let said = self
            .store
            .data()
            .logs
            .iter()
            .rev()
            .find(|(level, _)| *level >= 3);
        FilterError::Refused {
            what,
            said: said.map(|(_, message)| message.clone()),
        }
    }

    /// Calls an exported callback with i32 arguments; its i32 result, if it has one. A
    /// callback the filter does not export is skipped. Each callback is looked up once per
    /// instance.
    async fn call(&mut self, name: &'static str, args: &[i32]) -> Result<Option<i32>, FilterError> {
        let callback = match self.callbacks.get(name) {
            Some(c) => *c,
            None => {
                let c = Callback::find(&self.instance, &mut self.store, name);
                self.callbacks.insert(name, c);
                c
            }
        };
        let Some(func) = callback.func else {
            return Ok(None);
        };
        let mut params = [Val::I32(0); MAX_ARGS];
        for (i, a) in args.iter().enumerate().take(callback.params) {
            params[i] = match callback.wide[i] {
                true => Val::I64(i64::from(*a)),
                false => Val::I32(*a),
            };
        }
        let mut results = [Val::I32(0)];
        let results = &mut results[..callback.results.min(1)];
        func.call_async(&mut self.store, &params[..callback.params], results)
            .await
            .map_err(FilterError::Failed)?;
        Ok(results.first().and_then(Val::i32))
    }

    /// The store, for the embedder's own data and limits.
    pub fn store_mut(&mut self) -> &mut Store<State<T>> {
        &mut self.store
    }

    /// The embedder's data.
    pub fn user(&self) -> &T {
        &self.store.data().user
    }

    /// The embedder's data, to change.
    pub fn user_mut(&mut self) -> &mut T {
        &mut self.store.data_mut().user
    }

    /// Opens a new HTTP context for a request, closing the previous one if the embedder did
    /// not (its `proxy_on_done` and `proxy_on_log` then run late rather than never).
    /// `properties` answer what the filter reads with `get_property`.
    pub async fn begin(
        &mut self,
        properties: Option<Box<dyn PropertySource>>,
    ) -> Result<(), FilterError> {
        self.done().await?;
        let data = self.store.data_mut();
        data.properties.clear();
        data.source = properties;
        data.request_headers.clear();
        data.request_trailers.clear();
        data.response_headers.clear();
        data.response_trailers.clear();
        data.request_body.clear();
        data.response_body.clear();
        data.resumed = [false; 2];
        data.local = None;
        let context = self.next_context;
        self.next_context = self.next_context.checked_add(1).unwrap_or(ROOT + 1);
        self.current = Some(context);
        self.call("proxy_on_context_create", &[context, ROOT])
            .await?;
        Ok(())
    }

    /// Sets a property for the rest of the request (e.g. `response.code`).
    pub fn set_property(&mut self, path: &str, value: Vec<u8>) {
        self.store
            .data_mut()
            .properties
            .insert(path.to_string(), value);
    }

    /// The properties set for this request (by the filter, or [`Self::set_property`]) whose
    /// path starts with `prefix`.
    pub fn properties_under<'a>(
        &'a self,
        prefix: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a [u8])> + 'a {
        self.store
            .data()
            .properties
            .iter()
            .filter(move |(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.as_str(), v.as_slice()))
    }

    /// A property set for this request (by the filter, or [`Self::set_property`]).
    pub fn property(&self, path: &str) -> Option<&[u8]> {
        self.store.data().properties.get(path).map(Vec::as_slice)
    }

    async fn stream_callback(
        &mut self,
        callback: &'static str,
        size: usize,
        end_of_stream: bool,
        stream: usize,
    ) -> Result<Outcome, FilterError> {
        let Some(context) = self.current else {
            return Ok(Outcome::Continue);
        };
        self.store.data_mut().resumed[stream] = false;
        let action = self
            .call(callback, &[context, size as i32, i32::from(end_of_stream)])
            .await?;
        Ok(self.outcome(action, stream))
    }

    fn outcome(&mut self, action: Option<i32>, stream: usize) -> Outcome {
        let data = self.store.data_mut();
        if let Some(local) = data.local.take() {
            return Outcome::Respond(local);
        }
        match action {
            _ if data.resumed[stream] => Outcome::Continue,
            Some(a) if a as u32 != abi::ACTION_CONTINUE => Outcome::Pause,
            _ => Outcome::Continue,
        }
    }

    /// The headers of one side, through `proxy_on_request_headers` or
    /// `proxy_on_response_headers` (the response's in the same HTTP context as the request's).
    /// Read them as the filter left them with [`Self::header_map`], after any HTTP call it
    /// waits for; both sides stay readable until the request ends (the response callbacks may
    /// read the request's headers).
    pub async fn headers(
        &mut self,
        side: Side,
        headers: Headers,
        end_of_stream: bool,
    ) -> Result<Outcome, FilterError> {
        let map = self.store.data_mut().head(side);
        *map = headers;
        let count = map.len();
        let callback = match side {
            Side::Request => "proxy_on_request_headers",
            Side::Response => "proxy_on_response_headers",
        };
        self.stream_callback(callback, count, end_of_stream, side as usize)
            .await
    }

    /// Body bytes of one side, through `proxy_on_request_body` or `proxy_on_response_body`.
    /// The filter sees `body` as the buffered body so far and may change it; it comes back as
    /// the filter left it.
    pub async fn body(
        &mut self,
        side: Side,
        body: &mut Vec<u8>,
        end_of_stream: bool,
    ) -> Result<Outcome, FilterError> {
        let buffer = self.store.data_mut().body(side);
        *buffer = std::mem::take(body);
        let size = buffer.len();
        let callback = match side {
            Side::Request => "proxy_on_request_body",
            Side::Response => "proxy_on_response_body",
        };
        let out = self
            .stream_callback(callback, size, end_of_stream, side as usize)
            .await;
        *body = std::mem::take(self.store.data_mut().body(side));
        out
    }

    /// The trailers of one side, through `proxy_on_request_trailers` or
    /// `proxy_on_response_trailers`; they come back as the filter left them.
    pub async fn trailers(
        &mut self,
        side: Side,
        trailers: &mut Headers,
    ) -> Result<Outcome, FilterError> {
        let map = self.store.data_mut().trailers(side);
        *map = std::mem::take(trailers);
        let count = map.len();
        let callback = match side {
            Side::Request => "proxy_on_request_trailers",
            Side::Response => "proxy_on_response_trailers",
        };
        let out = self
            .stream_callback(callback, count, false, side as usize)
            .await;
        *trailers = std::mem::take(self.store.data_mut().trailers(side));
        out
    }

    /// The headers of one side as the filter has left them so far (an HTTP call's callback
    /// may still change them after the headers callback returned).
    pub fn header_map(&mut self, side: Side) -> &Headers {
        self.store.data_mut().head(side)
    }

    /// The HTTP calls dispatched since the last time, for the embedder to make.
    pub fn take_calls(&mut self) -> Vec<HttpCall> {
        std::mem::take(&mut self.store.data_mut().calls)
    }

    /// Delivers the response to the call `token` (`None`: it failed) through
    /// `proxy_on_http_call_response`; what the paused stream (`response`: the response's)
    /// should do now.
    pub async fn call_response(
        &mut self,
        token: u32,
        result: Option<CallResponse>,
        response: bool,
    ) -> Result<Outcome, FilterError> {
        let stream = usize::from(response);
        let reply = result.unwrap_or_default();
        let sizes = [
            reply.headers.len() as i32,
            reply.body.len() as i32,
            reply.trailers.len() as i32,
        ];
        let data = self.store.data_mut();
        data.call_response = reply;
        data.resumed[stream] = false;
        // Envoy calls back on the root context; SDKs find the HTTP context by the token (and the
        // AssemblyScript one traps on any other id).
        let args = [ROOT, token as i32, sizes[0], sizes[1], sizes[2]];
        self.call("proxy_on_http_call_response", &args).await?;
        self.store.data_mut().call_response = CallResponse::default();
        // Paused until the filter resumes: its callback's return value says nothing here.
        let paused = Some(abi::ACTION_PAUSE as i32);
        Ok(self.outcome(paused, stream))
    }

    /// The end of the current request: `proxy_on_done`, `proxy_on_log`, `proxy_on_delete`.
    pub async fn done(&mut self) -> Result<(), FilterError> {
        let Some(context) = self.current.take() else {
            return Ok(());
        };
        for callback in ["proxy_on_done", "proxy_on_log", "proxy_on_delete"] {
            self.call(callback, &[context]).await?;
        }
        Ok(())
    }

    /// The root context's timer (`proxy_on_tick`).
    pub async fn tick(&mut self) -> Result<(), FilterError> {
        self.call("proxy_on_tick", &[ROOT]).await.map(drop)
    }

    /// What the filter logged since the last call: (level 0 trace … 5 critical, message),
    /// and how many lines past the bound were dropped.
    pub fn take_logs(&mut self) -> (Vec<(u32, String)>, usize) {
        let data = self.store.data_mut();
        let dropped = std::mem::take(&mut data.logs_dropped);
        (std::mem::take(&mut data.logs), dropped)
    }

    /// The tick period the filter asked for, in milliseconds (0: none).
    pub fn tick_period_ms(&self) -> u32 {
        self.store.data().tick_ms
    }
}
