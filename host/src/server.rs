//! Listeners: bind, accept, optional TLS (ALPN h2/http1.1), and serve each connection with hyper
//! (HTTP/1.1 with upgrades, HTTP/2 over TLS and h2c prior knowledge on the same port).

use crate::control::Control;
use crate::peer::PeerIdentity;
use crate::proxy::{self, ConnInfo};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// A listener's sockets: one per worker, all bound to the same address with `SO_REUSEPORT` so
/// the kernel spreads connections across workers. Bound before any worker starts, so a bind
/// error stops startup before anything is served.
pub(crate) struct Listener {
    pub(crate) name: Arc<str>,
    pub(crate) addr: SocketAddr,
    sockets: Vec<std::net::TcpListener>,
    tls: Option<TlsAcceptor>,
}

fn reuseport_socket(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    #[cfg(unix)]
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

impl Listener {
    pub(crate) fn bind(
        name: &str,
        addr: SocketAddr,
        tls: Option<Arc<rustls::ServerConfig>>,
        workers: usize,
    ) -> std::io::Result<Listener> {
        let first = reuseport_socket(addr)?;
        // With port 0 the others must join the port the first one got.
        let addr = first.local_addr()?;
        let mut sockets = vec![first];
        for _ in 1..workers {
            sockets.push(reuseport_socket(addr)?);
        }
        Ok(Listener {
            name: name.into(),
            addr,
            sockets,
            tls: tls.map(TlsAcceptor::from),
        })
    }

    /// Splits into one part per worker.
    pub(crate) fn per_worker(self) -> Vec<WorkerListener> {
        let (name, tls) = (self.name, self.tls);
        self.sockets
            .into_iter()
            .map(|socket| WorkerListener {
                name: name.clone(),
                socket,
                tls: tls.clone(),
            })
            .collect()
    }
}

/// One worker's socket of a listener.
pub(crate) struct WorkerListener {
    name: Arc<str>,
    socket: std::net::TcpListener,
    tls: Option<TlsAcceptor>,
}

/// Runs one worker: serves its sockets until shutdown begins, then stops accepting (closing
/// the sockets, so new connections are refused), asks every connection to finish gracefully
/// (HTTP/1.1: after the request in flight; HTTP/2: GOAWAY) and waits for them, at most `drain`.
pub(crate) async fn serve_worker(
    listeners: Vec<WorkerListener>,
    gateway: Arc<Control>,
    drain: Duration,
) {
    let graceful = Arc::new(GracefulShutdown::new());
    let mut accept_loops = Vec::new();
    for l in listeners {
        accept_loops.push(tokio::spawn(l.serve(
            gateway.clone(),
            gateway.shutdown_signal(),
            graceful.clone(),
        )));
    }
    for a in accept_loops {
        let _ = a.await;
    }
    // The accept loops have ended, so this is the last reference.
    let Ok(graceful) = Arc::try_unwrap(graceful) else {
        return;
    };
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            worker = crate::worker::current(),
            "drain timeout: closing connections still busy"
        );
    }
}

/// hyper's connection builder with the gateway's header limits: hyper needs at least 8 KiB of
/// read buffer; smaller limits are enforced per request (`proxy::check_head`).
fn connection_builder(max_header: usize) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .max_buf_size(max_header.max(8192))
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30));
    builder
        .http2()
        .max_header_list_size(u32::try_from(max_header).unwrap_or(u32::MAX))
        .timer(TokioTimer::new());
    builder
}

impl WorkerListener {
    /// Accepts connections until shutdown begins. Must run inside the worker's runtime.
    pub(crate) async fn serve(
        self,
        gateway: Arc<Control>,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
        graceful: Arc<GracefulShutdown>,
    ) {
        let tcp = match TcpListener::from_std(self.socket) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(listener = &*self.name, error = %e, "cannot register listener");
                return;
            }
        };
        let max_header = gateway.current().limits.max_header_size.as_usize();
        let builder = Arc::new(connection_builder(max_header));
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        loop {
            let accepted = tokio::select! {
                a = tcp.accept() => a,
                _ = shutdown.wait_for(|stop| *stop) => break,
            };
            let (stream, client) = match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // E.g. EMFILE: back off instead of spinning.
                    tracing::warn!(listener = &*self.name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let conn = ConnInfo {
                listener: self.name.clone(),
                client,
                scheme,
                peer: None,
            };
            tokio::spawn(serve_connection(
                stream,
                conn,
                gateway.clone(),
                builder.clone(),
                self.tls.clone(),
                graceful.watcher(),
            ));
        }
        // Dropping `tcp` closes this worker's socket: new connections are refused.
    }
}

/// Serves one client connection (after its TLS handshake, if any) until it closes or the
/// worker drains. Each request gets the snapshot current when it arrives.
async fn serve_connection(
    stream: tokio::net::TcpStream,
    conn: ConnInfo,
    gateway: Arc<Control>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    tls: Option<TlsAcceptor>,
    watcher: hyper_util::server::graceful::Watcher,
) {
    let client = conn.client;
    // The connection's service, made once the peer (if any) is known.
    let service = |conn: ConnInfo| {
        service_fn(move |req| {
            let snap = gateway.current();
            let conn = conn.clone();
            async move { Ok::<_, std::convert::Infallible>(proxy::handle(snap, conn, req).await) }
        })
    };
    let result = match tls {
        None => {
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service(conn));
            watcher.watch(conn.into_owned()).await
        }
        Some(acceptor) => {
            let Some(tls_stream) = handshake(&acceptor, stream, client).await else {
                return;
            };
            // A certificate here has been verified against the listener's `client_ca` by the
            // handshake.
            let peer = tls_stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(|der| PeerIdentity::from_der(der.as_ref()))
                .map(Arc::new);
            let conn = ConnInfo { peer, ..conn };
            let conn =
                builder.serve_connection_with_upgrades(TokioIo::new(tls_stream), service(conn));
            watcher.watch(conn.into_owned()).await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%client, error = %e, "connection ended with error");
    }
}

/// The TLS handshake, at most 10 s; a failure is the client's problem and only logged.
async fn handshake(
    acceptor: &TlsAcceptor,
    stream: tokio::net::TcpStream,
    client: SocketAddr,
) -> Option<tokio_rustls::server::TlsStream<tokio::net::TcpStream>> {
    match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await {
        Ok(Ok(s)) => Some(s),
        Ok(Err(e)) => {
            tracing::debug!(%client, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(%client, "TLS handshake timed out");
            None
        }
    }
}
