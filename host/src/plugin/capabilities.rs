//! The host side of the capability interfaces (`kv`, `outbound`, `metrics`, `secrets`): adapts
//! the WIT types to `crate::capability`, enforces the plugin's grant on every call, and keeps
//! time spent waiting on the network out of the plugin's wall-clock backstop.

use super::bindings::weir::plugin::{kv, metrics, outbound, secrets};
use super::host::HostState;
use crate::capability::kv::{self as kvcap, KvError};
use crate::capability::metrics::MetricsRegistry;
use crate::capability::outbound::{
    CallSpec, IncomingCall, MAX_IN_FLIGHT, OutboundError, PendingCall,
};
use std::time::Instant;
use wasmtime::component::Resource;

fn kv_error(e: KvError) -> kv::KvError {
    match e {
        KvError::NotGranted => kv::KvError::NotGranted,
        KvError::Invalid(m) => kv::KvError::Invalid(m),
        KvError::NotANumber => kv::KvError::NotANumber,
        KvError::Backend(m) => kv::KvError::Backend(m),
    }
}

fn outbound_error(e: OutboundError) -> outbound::OutboundError {
    match e {
        OutboundError::NotGranted(u) => outbound::OutboundError::NotGranted(u),
        OutboundError::InvalidRequest(m) => outbound::OutboundError::InvalidRequest(m),
        OutboundError::Timeout => outbound::OutboundError::Timeout,
        OutboundError::Failed(m) => outbound::OutboundError::Failed(m),
        OutboundError::TooLarge(n) => outbound::OutboundError::TooLarge(n),
        OutboundError::AlreadyConsumed => outbound::OutboundError::AlreadyConsumed,
    }
}

impl HostState {
    /// The plugin's key-value handle, or `not-granted` (logged).
    fn kv(&self) -> Result<&kvcap::KvHandle, KvError> {
        self.caps.kv.as_ref().ok_or_else(|| {
            tracing::warn!(plugin = &*self.plugin, "kv call denied: no kv grant");
            KvError::NotGranted
        })
    }

    /// Moves the call's wall-clock backstop by the time spent waiting since `since`: waiting on
    /// the network is bounded by the capability call's own timeout instead.
    fn waited(&mut self, since: Instant) {
        self.call.waited(since);
    }

    /// Logs a failed backend call, which the plugin also sees as an error value.
    fn note_kv(&self, op: &'static str, result: &Result<impl Sized, KvError>) {
        if let Err(KvError::Backend(e)) = result {
            tracing::warn!(plugin = &*self.plugin, op, error = %e, "kv backend call failed");
        }
        self.caps.calls.capability_call(
            "kv",
            &self.plugin,
            op,
            if result.is_ok() { "ok" } else { "error" },
        );
    }

    fn note_outbound<T>(&self, result: &Result<T, OutboundError>) {
        let outcome = match result {
            Ok(_) => "ok",
            Err(OutboundError::Timeout) => "timeout",
            Err(OutboundError::NotGranted(_)) => "denied",
            Err(_) => "error",
        };
        self.caps
            .calls
            .capability_call("outbound", &self.plugin, "call", outcome);
    }

    fn start_call(&mut self, r: outbound::OutgoingRequest) -> Result<PendingCall, OutboundError> {
        if self.calls_in_flight >= MAX_IN_FLIGHT {
            return Err(OutboundError::InvalidRequest(format!(
                "more than {MAX_IN_FLIGHT} calls in flight"
            )));
        }
        let spec = CallSpec {
            upstream: r.upstream,
            method: r.method,
            path: r.path,
            headers: r.headers,
            body: r.body,
            timeout_ms: r.timeout_ms,
        };
        let started = self.caps.outbound.start(spec);
        match &started {
            Err(OutboundError::NotGranted(upstream)) => tracing::warn!(
                plugin = &*self.plugin,
                upstream = upstream.as_str(),
                "outbound call denied: upstream not in the plugin's grant"
            ),
            Err(e) => tracing::debug!(plugin = &*self.plugin, error = %e, "outbound call refused"),
            Ok(call) => {
                self.calls_in_flight += 1;
                tracing::debug!(
                    plugin = &*self.plugin,
                    upstream = call.upstream.as_str(),
                    "outbound call started"
                );
            }
        }
        started
    }
}

impl kv::Host for HostState {
    async fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, kv::KvError> {
        let since = Instant::now();
        let result = match self.kv().and_then(|h| Ok((h.key(&key)?, h))) {
            Ok((key, h)) => h.store().get(&key).await,
            Err(e) => Err(e),
        };
        self.waited(since);
        self.note_kv("get", &result);
        result.map_err(kv_error)
    }

    async fn set(
        &mut self,
        key: String,
        value: Vec<u8>,
        ttl_ms: Option<u64>,
    ) -> Result<(), kv::KvError> {
        let since = Instant::now();
        let result = match self
            .kv()
            .and_then(|h| Ok((h.key(&key)?, kvcap::check(&value, ttl_ms)?, h)))
        {
            Ok((key, ttl, h)) => h.store().set(&key, &value, ttl).await,
            Err(e) => Err(e),
        };
        self.waited(since);
        self.note_kv("set", &result);
        result.map_err(kv_error)
    }

    async fn delete(&mut self, key: String) -> Result<bool, kv::KvError> {
        let since = Instant::now();
        let result = match self.kv().and_then(|h| Ok((h.key(&key)?, h))) {
            Ok((key, h)) => h.store().delete(&key).await,
            Err(e) => Err(e),
        };
        self.waited(since);
        self.note_kv("delete", &result);
        result.map_err(kv_error)
    }

    async fn increment(
        &mut self,
        key: String,
        delta: i64,
        ttl_ms: Option<u64>,
    ) -> Result<i64, kv::KvError> {
        let since = Instant::now();
        let result = match self
            .kv()
            .and_then(|h| Ok((h.key(&key)?, kvcap::check(&[], ttl_ms)?, h)))
        {
            Ok((key, ttl, h)) => h.store().increment(&key, delta, ttl).await,
            Err(e) => Err(e),
        };
        self.waited(since);
        self.note_kv("increment", &result);
        result.map_err(kv_error)
    }

    async fn compare_and_swap(
        &mut self,
        key: String,
        expected: Option<Vec<u8>>,
        new: Vec<u8>,
        ttl_ms: Option<u64>,
    ) -> Result<bool, kv::KvError> {
        let since = Instant::now();
        let result = match self
            .kv()
            .and_then(|h| Ok((h.key(&key)?, kvcap::check(&new, ttl_ms)?, h)))
        {
            Ok((key, ttl, h)) => {
                h.store()
                    .compare_and_swap(&key, expected.as_deref(), &new, ttl)
                    .await
            }
            Err(e) => Err(e),
        };
        self.waited(since);
        self.note_kv("compare-and-swap", &result);
        result.map_err(kv_error)
    }
}

impl outbound::HostPendingResponse for HostState {
    fn drop(&mut self, rep: Resource<PendingCall>) -> wasmtime::Result<()> {
        self.table.delete(rep)?;
        self.calls_in_flight = self.calls_in_flight.saturating_sub(1);
        Ok(())
    }
}

impl outbound::HostIncomingResponse for HostState {
    fn status(&mut self, this: Resource<IncomingCall>) -> u16 {
        self.table.get(&this).map_or(0, |r| r.status)
    }

    fn headers(&mut self, this: Resource<IncomingCall>) -> Vec<(String, String)> {
        self.table
            .get(&this)
            .map(|r| r.headers.clone())
            .unwrap_or_default()
    }

    async fn next_chunk(
        &mut self,
        this: Resource<IncomingCall>,
    ) -> Result<Option<Vec<u8>>, outbound::OutboundError> {
        let since = Instant::now();
        let result = match self.table.get_mut(&this) {
            Ok(r) => r.next_chunk().await.map(|c| c.map(|b| b.to_vec())),
            Err(e) => Err(OutboundError::Failed(e.to_string())),
        };
        self.waited(since);
        result.map_err(outbound_error)
    }

    async fn read_body(
        &mut self,
        this: Resource<IncomingCall>,
        limit: u32,
    ) -> Result<Vec<u8>, outbound::OutboundError> {
        let since = Instant::now();
        let result = match self.table.get_mut(&this) {
            Ok(r) => r.read_body(limit).await,
            Err(e) => Err(OutboundError::Failed(e.to_string())),
        };
        self.waited(since);
        result.map_err(outbound_error)
    }

    fn drop(&mut self, rep: Resource<IncomingCall>) -> wasmtime::Result<()> {
        self.table.delete(rep)?;
        Ok(())
    }
}

impl outbound::Host for HostState {
    fn start(
        &mut self,
        request: outbound::OutgoingRequest,
    ) -> Result<Resource<PendingCall>, outbound::OutboundError> {
        let call = self.start_call(request);
        if call.is_err() {
            self.note_outbound(&call);
        }
        let call = call.map_err(outbound_error)?;
        self.table
            .push(call)
            .map_err(|e| outbound::OutboundError::Failed(e.to_string()))
    }

    async fn wait(
        &mut self,
        call: Resource<PendingCall>,
    ) -> Result<Resource<IncomingCall>, outbound::OutboundError> {
        let since = Instant::now();
        let result = match self.table.get_mut(&call) {
            Ok(c) => c.wait().await,
            Err(e) => Err(OutboundError::Failed(e.to_string())),
        };
        self.waited(since);
        self.note_outbound(&result);
        let response = result.map_err(outbound_error)?;
        self.table
            .push(response)
            .map_err(|e| outbound::OutboundError::Failed(e.to_string()))
    }

    fn answer_with_events(
        &mut self,
        calls: Vec<Resource<PendingCall>>,
    ) -> Result<(), outbound::OutboundError> {
        let in_request = self
            .exchange
            .as_ref()
            .is_some_and(|ex| ex.phase == crate::exchange::Phase::Request);
        if !in_request {
            return Err(outbound::OutboundError::InvalidRequest(
                "answer-with-events works only during on-request".into(),
            ));
        }
        let mut taken = Vec::with_capacity(calls.len());
        for call in calls {
            let call = self
                .table
                .delete(call)
                .map_err(|e| outbound::OutboundError::Failed(e.to_string()))?;
            self.calls_in_flight = self.calls_in_flight.saturating_sub(1);
            taken.push(call);
        }
        if let Some(ex) = self.exchange.as_mut() {
            ex.merged = Some(crate::capability::events::MergedEvents(taken));
        }
        Ok(())
    }

    async fn send(
        &mut self,
        request: outbound::OutgoingRequest,
    ) -> Result<Resource<IncomingCall>, outbound::OutboundError> {
        let call = self.start_call(request);
        if call.is_err() {
            self.note_outbound(&call);
        }
        let mut call = call.map_err(outbound_error)?;
        let since = Instant::now();
        let result = call.wait().await;
        self.waited(since);
        self.note_outbound(&result);
        self.calls_in_flight = self.calls_in_flight.saturating_sub(1);
        let response = result.map_err(outbound_error)?;
        self.table
            .push(response)
            .map_err(|e| outbound::OutboundError::Failed(e.to_string()))
    }
}

impl HostState {
    /// Records through the metrics registry if granted; a denial or a dropped recording is
    /// logged, never returned: metrics must not fail a request.
    fn record(
        &self,
        name: &str,
        f: impl FnOnce(&MetricsRegistry) -> Result<(), crate::capability::metrics::MetricError>,
    ) {
        let plugin = &*self.plugin;
        match &self.caps.metrics {
            None => tracing::warn!(
                plugin,
                metric = name,
                "metrics call denied: no metrics grant"
            ),
            Some(m) => {
                // Past the series limit every new label value is dropped: logged at the
                // first drop and then at 2, 4, 8, … so a flood cannot flood the log too.
                if let Err(e) = f(m)
                    && (e != crate::capability::metrics::MetricError::TooManySeries
                        || m.series_dropped(plugin).is_power_of_two())
                {
                    tracing::warn!(plugin, metric = name, error = %e, dropped = m.series_dropped(plugin), "metric dropped");
                }
            }
        }
    }
}

impl metrics::Host for HostState {
    fn counter_add(&mut self, name: String, value: u64, labels: Vec<(String, String)>) {
        self.record(&name, |m| m.counter_add(&self.plugin, &name, value, labels));
    }

    fn histogram_record(&mut self, name: String, value: f64, labels: Vec<(String, String)>) {
        self.record(&name, |m| {
            m.histogram_record(&self.plugin, &name, value, labels)
        });
    }
}

impl secrets::Host for HostState {
    fn get(&mut self, name: String) -> Result<String, secrets::SecretError> {
        match self.caps.secrets.get(&name) {
            Some(v) => Ok(v.to_string()),
            None => {
                tracing::warn!(
                    plugin = &*self.plugin,
                    secret = name.as_str(),
                    "secret read denied: not in the plugin's grant"
                );
                Err(secrets::SecretError::NotGranted(name))
            }
        }
    }
}
