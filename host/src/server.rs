//! Listeners: bind, accept, optional TLS (ALPN h2/http1.1), and serve each connection with hyper
//! (HTTP/1.1 with upgrades, HTTP/2 over TLS and h2c prior knowledge on the same port).

use crate::accept::{Backoff, Slots};
use crate::connection::{Activity, Step, Supervisor, Timeouts, Watched};
use crate::control::Control;
use crate::peer::PeerIdentity;
use crate::proxy::{self, ConnInfo};
use crate::request_metrics::RequestMetrics;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// A listener's sockets: one per worker, in one `SO_REUSEPORT` group, so the kernel spreads
/// new connections evenly across workers (a single shared socket lets whichever worker wakes
/// first take a whole burst). The port is the gateway's alone:
///
/// - before binding, a plain bind (no `SO_REUSEPORT`) checks that no socket holds the address,
///   so a second gateway started by mistake fails with "address in use";
/// - a classic BPF program on the group picks among the first `workers` sockets only, which are
///   ours (a group's sockets are numbered in the order they joined), so a socket another
///   process adds to the group later never receives a connection.
///
/// Bound before any worker starts, so a bind error stops startup before anything is served.
pub(crate) struct Listener {
    pub(crate) name: Arc<str>,
    pub(crate) addr: SocketAddr,
    sockets: Vec<std::net::TcpListener>,
    tls: Option<TlsAcceptor>,
}

fn reuseport_socket(addr: SocketAddr) -> std::io::Result<socket2::Socket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket)
}

/// Fails with "address in use" if any socket, of any process, is bound to `addr`.
fn check_free(addr: SocketAddr) -> std::io::Result<()> {
    use socket2::{Domain, Protocol, Socket, Type};
    let probe = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    probe.set_reuse_address(true)?;
    probe.bind(&addr.into())
}

/// Steers the group's connections to its first `n` sockets: `A = random % n; return A`.
fn steer_to_first(socket: &socket2::Socket, n: usize) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // Linux's uapi values (linux/filter.h, asm-generic/socket.h): BPF_LD|BPF_W|BPF_ABS,
    // BPF_ALU|BPF_MOD|BPF_K, BPF_RET|BPF_A, and the ancillary load SKF_AD_OFF + SKF_AD_RANDOM.
    const SO_ATTACH_REUSEPORT_CBPF: libc::c_int = 51;
    const BPF_LD_W_ABS: u16 = 0x20;
    const BPF_ALU_MOD_K: u16 = 0x94;
    const BPF_RET_A: u16 = 0x16;
    const SKF_AD_RANDOM: u32 = (-0x1000i32 + 56).cast_unsigned();
    let mut program = [
        libc::sock_filter {
            code: BPF_LD_W_ABS,
            jt: 0,
            jf: 0,
            k: SKF_AD_RANDOM,
        },
        libc::sock_filter {
            code: BPF_ALU_MOD_K,
            jt: 0,
            jf: 0,
            k: n as u32,
        },
        libc::sock_filter {
            code: BPF_RET_A,
            jt: 0,
            jf: 0,
            k: 0,
        },
    ];
    let prog = libc::sock_fprog {
        len: program.len() as u16,
        filter: program.as_mut_ptr(),
    };
    // SAFETY: `prog` points at `program`, which outlives the call; the kernel copies the
    // program and validates it.
    #[allow(unsafe_code)]
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_ATTACH_REUSEPORT_CBPF,
            std::ptr::from_ref(&prog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

impl Listener {
    pub(crate) fn bind(
        name: &str,
        addr: SocketAddr,
        tls: Option<Arc<rustls::ServerConfig>>,
        workers: usize,
    ) -> std::io::Result<Listener> {
        if addr.port() != 0 {
            check_free(addr)?;
        }
        let first = reuseport_socket(addr)?;
        // With port 0 the others must join the port the first one got.
        let addr = first.local_addr()?.as_socket().unwrap_or(addr);
        let mut group = vec![first];
        for _ in 1..workers {
            group.push(reuseport_socket(addr)?);
        }
        steer_to_first(&group[0], group.len())?;
        Ok(Listener {
            name: name.into(),
            addr,
            sockets: group.into_iter().map(Into::into).collect(),
            tls: tls.map(TlsAcceptor::from),
        })
    }

    /// Splits into one part per worker; the parts share one count of open connections.
    pub(crate) fn per_worker(self, metrics: Arc<RequestMetrics>) -> Vec<WorkerListener> {
        let (name, tls) = (self.name, self.tls);
        let slots = Slots::new(name.clone(), metrics);
        self.sockets
            .into_iter()
            .map(|socket| WorkerListener {
                name: name.clone(),
                socket,
                tls: tls.clone(),
                slots: slots.clone(),
            })
            .collect()
    }
}

/// One worker's socket of a listener.
pub(crate) struct WorkerListener {
    name: Arc<str>,
    socket: std::net::TcpListener,
    tls: Option<TlsAcceptor>,
    slots: Slots,
}

/// Runs one worker: serves its sockets until shutdown begins, then stops accepting (closing
/// the sockets, so new connections are refused), asks every connection to finish gracefully
/// (HTTP/1.1: after the request in flight; HTTP/2: GOAWAY) and waits for them, at most `drain`.
pub(crate) async fn serve_worker(
    listeners: Vec<WorkerListener>,
    gateway: Arc<Control>,
    drain: Duration,
) {
    // Each connection holds a sender; when the last is gone, `all_closed` yields `None`.
    let (open, mut all_closed) = tokio::sync::mpsc::channel::<()>(1);
    let in_flight = crate::overload::InFlight::default();
    let mut accept_loops = Vec::new();
    for l in listeners {
        accept_loops.push(tokio::spawn(l.serve(
            gateway.clone(),
            in_flight.clone(),
            open.clone(),
        )));
    }
    drop(open);
    for a in accept_loops {
        let _ = a.await;
    }
    if tokio::time::timeout(drain, all_closed.recv())
        .await
        .is_err()
    {
        tracing::warn!(
            worker = crate::worker::current(),
            "drain timeout: closing connections still busy"
        );
    }
}

/// hyper's connection builder with the gateway's header limits (hyper needs at least 8 KiB of
/// read buffer; smaller limits are enforced per request, `proxy::check_head`) and HTTP/2
/// keep-alive pings. hyper's own HTTP/1.1 header timer is off: it would start as soon as a
/// keep-alive connection waits, which `connection::Supervisor` tells apart from a slow head.
pub(crate) fn connection_builder(limits: &crate::config::Limits) -> auto::Builder<TokioExecutor> {
    let max_header = limits.max_header_size.as_usize();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .max_buf_size(max_header.max(8192))
        .timer(TokioTimer::new())
        .header_read_timeout(None);
    builder
        .http2()
        .max_header_list_size(u32::try_from(max_header).unwrap_or(u32::MAX))
        .timer(TokioTimer::new())
        .keep_alive_interval(limits.http2_keepalive_interval.0)
        .keep_alive_timeout(limits.http2_keepalive_timeout.0);
    builder
}

/// The connection timeouts of `limits`.
pub(crate) fn timeouts(limits: &crate::config::Limits) -> Timeouts {
    Timeouts {
        header_read: limits.header_read_timeout.0,
        idle: limits.idle_timeout.0,
    }
}

/// What every connection of one worker's listener shares.
struct Shared {
    gateway: Arc<Control>,
    builder: auto::Builder<TokioExecutor>,
    tls: Option<TlsAcceptor>,
    in_flight: crate::overload::InFlight,
    metrics: Arc<RequestMetrics>,
}

impl WorkerListener {
    /// Accepts connections until shutdown begins. Must run inside the worker's runtime.
    pub(crate) async fn serve(
        self,
        gateway: Arc<Control>,
        in_flight: crate::overload::InFlight,
        open: tokio::sync::mpsc::Sender<()>,
    ) {
        let tcp = match TcpListener::from_std(self.socket) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(listener = &*self.name, error = %e, "cannot register listener");
                return;
            }
        };
        let mut shutdown = gateway.shutdown_signal();
        let metrics = gateway.runtime.services.requests.clone();
        let mut backoff = Backoff::new(self.name.clone(), metrics.clone());
        let shared = Arc::new(Shared {
            builder: connection_builder(&gateway.current().limits),
            gateway,
            tls: self.tls,
            in_flight,
            metrics,
        });
        loop {
            let accepted = tokio::select! {
                a = tcp.accept() => a,
                _ = shutdown.wait_for(|stop| *stop) => break,
            };
            let (stream, client) = match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    let pause = backoff.failed(&e);
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => continue,
                        _ = shutdown.wait_for(|stop| *stop) => break,
                    }
                }
            };
            backoff.accepted();
            start_connection(&self.name, &self.slots, (stream, client), &shared, &open);
        }
        // Connections the kernel has completed but this loop not yet taken would be reset when
        // the socket closes, and a load balancer may already have sent a request on one: take
        // them now and serve their first request (the drain waits for it).
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        while let std::task::Poll::Ready(Ok((stream, client))) = tcp.poll_accept(&mut cx) {
            start_connection(&self.name, &self.slots, (stream, client), &shared, &open);
        }
        // Dropping `tcp` closes this worker's socket: new connections are refused.
    }
}

/// Serves an accepted connection in its own task, unless the listener is at its cap (then
/// the stream is dropped here: accepted and closed at once).
fn start_connection(
    name: &Arc<str>,
    slots: &Slots,
    (stream, client): (tokio::net::TcpStream, SocketAddr),
    shared: &Arc<Shared>,
    open: &tokio::sync::mpsc::Sender<()>,
) {
    let limits = &shared.gateway.current().limits;
    let Some(slot) = slots.take(limits.max_connections) else {
        return;
    };
    let _ = stream.set_nodelay(true);
    let conn = ConnInfo {
        listener: name.clone(),
        client,
        client_address: crate::headers::client_address(client),
        scheme: if shared.tls.is_some() {
            "https"
        } else {
            "http"
        },
        peer: None,
        in_flight: shared.in_flight.clone(),
    };
    let held = (slot, open.clone());
    tokio::spawn(serve_connection(
        stream,
        conn,
        shared.clone(),
        timeouts(limits),
        held,
    ));
}

/// Serves one client connection (after its TLS handshake, if any) until it closes, times out
/// or the worker drains. Each request gets the snapshot current when it arrives. `held` (the
/// listener's connection slot, the worker's drain count) is released when it ends.
async fn serve_connection<H>(
    stream: tokio::net::TcpStream,
    conn: ConnInfo,
    shared: Arc<Shared>,
    timeouts: Timeouts,
    held: H,
) {
    let accepted = tokio::time::Instant::now();
    let client = conn.client;
    let activity = Activity::new(accepted);
    let supervisor = Supervisor::new(
        activity.clone(),
        timeouts,
        shared.gateway.shutdown_signal(),
        shared.metrics.clone(),
        conn.listener.clone(),
    );
    let result = match shared.tls.clone() {
        None => {
            serve_http(
                Watched::new(stream, activity.clone()),
                conn,
                &shared,
                activity,
                supervisor,
            )
            .await
        }
        Some(acceptor) => {
            // The handshake counts against the first head's deadline.
            let limit = timeouts.header_read.min(TLS_HANDSHAKE);
            let tls_stream = match handshake(&acceptor, stream, client, limit).await {
                Ok(s) => s,
                Err(Handshake::TimedOut) => {
                    shared
                        .metrics
                        .connection_timeout(&conn.listener, "header_read");
                    return;
                }
                Err(Handshake::Failed) => return,
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
            serve_http(
                Watched::new(tls_stream, activity.clone()),
                conn,
                &shared,
                activity,
                supervisor,
            )
            .await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%client, error = %e, "connection ended with error");
    }
    drop(held);
}

/// hyper on one (TLS or plain) stream, with the supervisor's deadlines and the drain.
async fn serve_http<T>(
    io: Watched<T>,
    conn: ConnInfo,
    shared: &Shared,
    activity: Arc<Activity>,
    mut supervisor: Supervisor,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let gateway = shared.gateway.clone();
    let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let in_flight = activity.begin(req.version());
        let snap = gateway.current();
        let conn = conn.clone();
        let version = req.version();
        let gateway = gateway.clone();
        async move {
            let mut resp = proxy::handle(snap, conn, req).await;
            if gateway.is_leaving() {
                close_after(version, &mut resp);
            }
            Ok::<_, std::convert::Infallible>(in_flight.until_sent(resp))
        }
    });
    // Owned: a connection borrowing the builder trips the compiler's `Send` inference.
    let http = shared
        .builder
        .serve_connection_with_upgrades(TokioIo::new(io), service)
        .into_owned();
    tokio::pin!(http);
    loop {
        let step = tokio::select! {
            result = http.as_mut() => return result,
            step = supervisor.next() => step,
        };
        match step {
            Step::Graceful => http.as_mut().graceful_shutdown(),
            Step::Close => return Ok(()),
        }
    }
}

/// While the gateway is leaving: an HTTP/1.x response ends its connection (`Connection: close`,
/// which hyper honours), so a load balancer's next request opens a new connection, refused once
/// the listeners close, instead of racing the close of an idle one. HTTP/2 has no such header
/// (its connections get GOAWAY when the drain starts), and a 101 keeps its upgraded connection.
fn close_after<B>(version: http::Version, resp: &mut http::Response<B>) {
    if version <= http::Version::HTTP_11 && resp.status() != http::StatusCode::SWITCHING_PROTOCOLS {
        resp.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
    }
}

/// The longest a TLS handshake may take (less when `header_read_timeout` is shorter).
const TLS_HANDSHAKE: Duration = Duration::from_secs(10);

/// Why a TLS handshake gave no stream.
enum Handshake {
    Failed,
    TimedOut,
}

/// The TLS handshake, at most `limit`; a failure is the client's problem and only logged.
async fn handshake(
    acceptor: &TlsAcceptor,
    stream: tokio::net::TcpStream,
    client: SocketAddr,
    limit: Duration,
) -> Result<tokio_rustls::server::TlsStream<tokio::net::TcpStream>, Handshake> {
    match tokio::time::timeout(limit, acceptor.accept(stream)).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => {
            tracing::debug!(%client, error = %e, "TLS handshake failed");
            Err(Handshake::Failed)
        }
        Err(_) => {
            tracing::debug!(%client, "TLS handshake timed out");
            Err(Handshake::TimedOut)
        }
    }
}
