//! The accept loop: herald's own instead of `axum::serve`, which has no
//! timeouts and no cap, so a few hundred half-sent requests could hold every
//! file descriptor the process may open and starve everyone else.
//!
//! - **Header timeout** (`web.header_timeout_secs`): a request's head must
//!   arrive complete within it, counted from connecting for a connection's
//!   first request and from the first byte for the next ones.
//! - **Idle timeout** (`web.idle_timeout_secs`): a connection where no byte
//!   moves for this long (kept alive between requests, or stuck in one) is
//!   closed.
//! - **Cap** (`web.max_connections`): at the cap, a new connection first
//!   pushes out the connection that has waited longest without a request in
//!   progress (a slow or idle one: a reader whose request is being answered
//!   is never cut); when every connection is busy, it waits in the kernel's
//!   backlog until one ends. The process never holds more than the cap plus
//!   the one being accepted.
//! - **Shutdown**: no new connections; idle and half-sent ones close at
//!   once, requests in progress are answered, then their connection closes.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify, Semaphore};
use tokio::time::Instant;
use tower_service::Service;

/// Files the process needs besides its connections: the store and its
/// journal files per pooled connection, SMTP connections and outbox files
/// of the mailer, files of `public/` being read, templates, logs.
const RESERVED_FILES: u64 = 128;

/// The limits one listener enforces.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

impl Limits {
    pub fn from_config(web: &crate::config::Web) -> Self {
        Self {
            header_timeout: web.header_timeout,
            idle_timeout: web.idle_timeout,
            max_connections: web.max_connections.max(1),
        }
    }

    /// The cap, lowered to what the process may open (raising its soft
    /// limit on open files to the hard one first, if that is needed).
    pub fn fitted_to_open_files(mut self) -> Self {
        let wanted = self.max_connections as u64 + RESERVED_FILES;
        let allowed = raise_open_files(wanted);
        if allowed < wanted {
            let fit = allowed.saturating_sub(RESERVED_FILES).max(16);
            tracing::warn!(
                "web.max_connections is {} but herald may open only {allowed} files (ulimit -n, LimitNOFILE); serving at most {fit} connections at once",
                self.max_connections
            );
            self.max_connections = usize::try_from(fit).unwrap_or(16);
        }
        self
    }
}

/// Raises the soft limit on open files towards `wanted` (up to the hard
/// limit); returns the soft limit in force afterwards.
fn raise_open_files(wanted: u64) -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    let Some(current) = limit.current else { return u64::MAX };
    if current >= wanted {
        return current;
    }
    let raised = limit.maximum.map_or(wanted, |hard| hard.min(wanted));
    match setrlimit(Resource::Nofile, Rlimit { current: Some(raised), maximum: limit.maximum }) {
        Ok(()) => raised,
        Err(_) => current,
    }
}

// What a connection is doing, as the timeouts and the cap see it.
const FRESH: u8 = 0; // connected, no byte of a request yet
const HEAD: u8 = 1; // part of a request's head has arrived
const BUSY: u8 = 2; // a request is being answered
const IDLE: u8 = 3; // between requests (kept alive)

/// One connection's phase and clocks (milliseconds since the listener
/// started), shared by its socket, its service and the accept loop.
struct Watch {
    phase: AtomicU8,
    /// When the current request's head started (the connection's start for
    /// its first request).
    head_since: AtomicU64,
    /// When a byte last moved either way, or a request began or ended.
    active: AtomicU64,
    evict: Notify,
}

impl Watch {
    fn new(now: u64) -> Self {
        Self {
            phase: AtomicU8::new(FRESH),
            head_since: AtomicU64::new(now),
            active: AtomicU64::new(now),
            evict: Notify::new(),
        }
    }

    /// Bytes arrived: the next request's head has begun, if none had.
    fn read(&self, now: u64) {
        self.active.store(now, Ordering::Relaxed);
        if self.phase.compare_exchange(IDLE, HEAD, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
            self.head_since.store(now, Ordering::Relaxed);
        } else {
            // A first request's head is timed from connecting.
            let _ = self.phase.compare_exchange(FRESH, HEAD, Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    fn wrote(&self, now: u64) {
        self.active.store(now, Ordering::Relaxed);
    }

    fn set(&self, phase: u8, now: u64) {
        self.phase.store(phase, Ordering::Relaxed);
        self.active.store(now, Ordering::Relaxed);
    }

    /// When this connection is to be closed, as things stand.
    fn deadline(&self, limits: &Limits) -> u64 {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let idle = self.active.load(Ordering::Relaxed).saturating_add(ms(limits.idle_timeout));
        match self.phase.load(Ordering::Relaxed) {
            FRESH | HEAD => {
                let head = self.head_since.load(Ordering::Relaxed);
                head.saturating_add(ms(limits.header_timeout)).min(idle)
            }
            _ => idle,
        }
    }

    /// The order in which waiting connections are pushed out at the cap
    /// (oldest first), or `None` while a request is being answered.
    fn waiting_since(&self) -> Option<u64> {
        match self.phase.load(Ordering::Relaxed) {
            FRESH | HEAD => Some(self.head_since.load(Ordering::Relaxed)),
            IDLE => Some(self.active.load(Ordering::Relaxed)),
            _ => None,
        }
    }
}

/// The socket, telling its `Watch` when bytes move.
struct Watched {
    stream: TcpStream,
    watch: Arc<Watch>,
    clock: Clock,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.watch.read(self.clock.now());
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.watch.wrote(self.clock.now());
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.watch.wrote(self.clock.now());
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Milliseconds since the listener started.
#[derive(Clone, Copy)]
struct Clock(Instant);

impl Clock {
    fn now(&self) -> u64 {
        u64::try_from(self.0.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn instant(&self, ms: u64) -> Instant {
        self.0 + Duration::from_millis(ms)
    }
}

/// The open connections, for choosing one to push out at the cap.
#[derive(Default)]
struct Registry {
    next: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Watch>>>,
}

impl Registry {
    fn add(self: &Arc<Self>, watch: Arc<Watch>) -> Registered {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.open.lock().unwrap_or_else(|e| e.into_inner()).insert(id, watch);
        Registered { registry: Arc::clone(self), id }
    }

    /// Tells the connection waiting longest without a request in progress
    /// to close; false when every connection is busy.
    fn push_out_oldest_waiting(&self) -> bool {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let oldest = open
            .values()
            .filter_map(|w| w.waiting_since().map(|since| (since, w)))
            .min_by_key(|(since, _)| *since);
        match oldest {
            Some((_, watch)) => {
                watch.evict.notify_one();
                true
            }
            None => false,
        }
    }
}

/// Removes a connection from the registry when its task ends.
struct Registered {
    registry: Arc<Registry>,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.registry.open.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.id);
    }
}

/// Serves `app` on `listener` within `limits` until `shutdown` completes,
/// then lets the requests in progress finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let clock = Clock(Instant::now());
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let registry = Arc::new(Registry::default());
    let (stopping, stop_watch) = watch::channel(false);
    let mut last_full_warning: Option<Instant> = None;
    let mut last_accept_error: Option<Instant> = None;
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                if !is_connection_error(&e) {
                    // Out of file descriptors, most likely: the pending
                    // connection stays in the backlog; try again shortly
                    // rather than spin, and say so once a minute.
                    if last_accept_error.is_none_or(|at| at.elapsed() > Duration::from_secs(60)) {
                        last_accept_error = Some(Instant::now());
                        tracing::error!("cannot accept a connection: {e}");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                continue;
            }
        };
        let permit = loop {
            if let Ok(permit) = Arc::clone(&permits).try_acquire_owned() {
                break Some(permit);
            }
            let pushed = registry.push_out_oldest_waiting();
            if last_full_warning.is_none_or(|at| at.elapsed() > Duration::from_secs(60)) {
                last_full_warning = Some(Instant::now());
                tracing::warn!(
                    "all {} connections are in use (web.max_connections); {}",
                    limits.max_connections,
                    if pushed {
                        "closing the one that waited longest without a request"
                    } else {
                        "new connections wait until one ends"
                    }
                );
            }
            // Look again shortly: the one pushed out may have started a
            // request meanwhile (it then stays), or a busy one may become
            // idle.
            let again = Duration::from_millis(if pushed { 50 } else { 250 });
            tokio::select! {
                permit = Arc::clone(&permits).acquire_owned() => break permit.ok(),
                () = tokio::time::sleep(again) => {}
                () = &mut shutdown => break None,
            }
        };
        let Some(permit) = permit else { break };
        let _ = stream.set_nodelay(true);
        let watch = Arc::new(Watch::new(clock.now()));
        let registered = registry.add(Arc::clone(&watch));
        let app = app.clone();
        let stop = stop_watch.clone();
        tokio::spawn(async move {
            connection(stream, peer, app, watch, clock, limits, stop).await;
            drop(registered);
            drop(permit);
        });
    }
    drop(listener);
    let _ = stopping.send(true);
    // Every permit back: every connection has ended.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _ = permits.acquire_many(all).await;
}

/// Serves one connection until it ends, times out, is pushed out at the
/// cap, or the server stops.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    watch: Arc<Watch>,
    clock: Clock,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) {
    let io = TokioIo::new(Watched { stream, watch: Arc::clone(&watch), clock });
    let service = {
        let watch = Arc::clone(&watch);
        hyper::service::service_fn(move |request: Request<Incoming>| {
            let mut app = app.clone();
            let watch = Arc::clone(&watch);
            async move {
                watch.set(BUSY, clock.now());
                let mut request = request.map(Body::new);
                request.extensions_mut().insert(ConnectInfo(peer));
                let response = match app.call(request).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                };
                // The body is still to be written: writing keeps it alive.
                watch.set(IDLE, clock.now());
                Ok::<_, Infallible>(response)
            }
        })
    };
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        // herald times heads itself (hyper's timer would also cut idle
        // connections at the header timeout).
        .header_read_timeout(None)
        .serve_connection(io, service);
    tokio::pin!(conn);
    let mut stopping = *stop.borrow();
    if stopping {
        return;
    }
    loop {
        let deadline = watch.deadline(&limits);
        tokio::select! {
            served = conn.as_mut() => {
                if let Err(e) = served {
                    tracing::debug!(%peer, "connection ended: {}", super::shown(&e.to_string()));
                }
                return;
            }
            () = tokio::time::sleep_until(clock.instant(deadline)) => {
                // The deadline may have moved while this slept.
                if clock.now() >= watch.deadline(&limits) {
                    let why = match watch.phase.load(Ordering::Relaxed) {
                        FRESH | HEAD => "no complete request head within web.header_timeout_secs",
                        _ => "nothing moved for web.idle_timeout_secs",
                    };
                    tracing::debug!(%peer, "closed a connection: {why}");
                    return;
                }
            }
            () = watch.evict.notified() => {
                // A request that began meanwhile is answered.
                if watch.phase.load(Ordering::Relaxed) != BUSY {
                    tracing::debug!(%peer, "closed a waiting connection to make room for a new one");
                    return;
                }
            }
            _ = stop.changed(), if !stopping => {
                stopping = true;
                // Nothing in progress (or only half a request): close now.
                if watch.phase.load(Ordering::Relaxed) != BUSY {
                    return;
                }
                // A request being answered is finished, then the
                // connection closes.
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Errors of one connection that has gone already, not of the listener.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), ConnectionRefused | ConnectionAborted | ConnectionReset)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;

    fn limits() -> Limits {
        Limits {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 4,
        }
    }

    #[test]
    fn heads_are_timed_from_their_start_and_quiet_connections_from_their_last_byte() {
        let watch = Watch::new(1_000);
        assert_eq!(watch.deadline(&limits()), 11_000, "a first request: from connecting");
        watch.read(5_000);
        assert_eq!(watch.deadline(&limits()), 11_000, "still from connecting");
        watch.set(BUSY, 6_000);
        assert_eq!(watch.waiting_since(), None, "a request in progress is never pushed out");
        assert_eq!(watch.deadline(&limits()), 66_000);
        watch.set(IDLE, 7_000);
        watch.wrote(8_000);
        assert_eq!(watch.deadline(&limits()), 68_000, "kept alive: from the last byte");
        assert_eq!(watch.waiting_since(), Some(8_000));
        watch.read(20_000);
        assert_eq!(watch.deadline(&limits()), 30_000, "the next head: from its first byte");
        assert_eq!(watch.waiting_since(), Some(20_000));
    }

    #[test]
    fn the_connection_waiting_longest_is_pushed_out_first() {
        let registry = Arc::new(Registry::default());
        let (old, young, busy) =
            (Arc::new(Watch::new(100)), Arc::new(Watch::new(200)), Arc::new(Watch::new(50)));
        busy.set(BUSY, 50);
        let _held: Vec<Registered> =
            [&old, &young, &busy].iter().map(|w| registry.add(Arc::clone(w))).collect();
        assert!(registry.push_out_oldest_waiting());
        // The old one was told (the permit is kept for its task).
        let told = old.evict.notified().now_or_never();
        assert!(told.is_some(), "the oldest waiting connection is told to close");
        assert!(young.evict.notified().now_or_never().is_none());
        let only_busy = Arc::new(Registry::default());
        let _held = only_busy.add(Arc::clone(&busy));
        assert!(!only_busy.push_out_oldest_waiting(), "a busy connection is never cut");
    }
}
