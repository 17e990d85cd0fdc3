//! The accept loop: HTTP/1.1 connections served by hyper, with a cap on open connections, a
//! header-read timeout and an idle timeout, and graceful shutdown.
//!
//! - **Connection cap.** A connection takes one of [`HttpLimits::max_connections`] slots before it
//!   is accepted; at the cap the loop stops accepting, so new clients wait in the kernel's listen
//!   backlog until a connection closes. At the cap the node is *under pressure* (until an eighth
//!   of the slots is free again) and closes the connections that hold a slot without using it:
//!   one that has not sent a byte after [`PRESSURE_SILENT`], one idle between requests for
//!   [`PRESSURE_IDLE`], one whose request head is not complete after [`PRESSURE_HEAD`]. So
//!   sockets opened and left silent by one client cannot keep everyone else waiting for the idle
//!   timeout; a connection with a request in progress is never cut. An accept error (`EMFILE`, "Too many open files", say) is
//!   logged and retried after a short pause: it never stops the server.
//! - **Timeouts**, checked by a watchdog beside each connection: the request line and headers must
//!   arrive within [`HttpLimits::header_read_timeout`] of their first byte, else the connection is
//!   closed; a connection with no request in progress and nothing written for
//!   [`HttpLimits::idle_timeout`] (also one that never sent a byte) is closed. The request body has
//!   its own deadline ([`crate::deadline::DeadlineBody`]), answered 408 by the handler that reads it.
//!   hyper's own header timeout is not used: it starts when a kept-alive connection goes idle, so
//!   it would also be the idle timeout, and closes without telling anyone.
//! - **Shutdown.** When `shutdown` completes the listener is closed, idle connections are closed,
//!   and busy ones finish their request and then close; [`serve_with`] returns when all are gone.
//!
//! What hyper answers by itself, before any of our code sees the request, with an empty body
//! (there is nothing else to do short of parsing HTTP ourselves): 400 for a request it cannot parse
//! (a malformed request line or header, a `Content-Length` that is not a number or overflows 64
//! bits, conflicting lengths, a bad `Transfer-Encoding`); 431 for a request head over
//! [`HttpLimits::hyper_max_head_bytes`] or with more than 100 header fields; 414 for a URI of 65,535
//! bytes and more. Every smaller excess (URI over [`HttpLimits::max_uri_bytes`], headers over
//! [`HttpLimits::max_header_bytes`]) is answered by [`crate::limits::guard`] with an error body.

use crate::limits::{HttpLimits, LimitWarnings};
use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt;

/// Pause after an accept error that is not about one connection (out of file descriptors).
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);
/// How long a connection closed for idleness may take to finish writing before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// Under pressure: a connection that has sent nothing for this long since it opened is closed.
pub const PRESSURE_SILENT: Duration = Duration::from_millis(250);
/// Under pressure: a connection idle between requests for this long is closed.
pub const PRESSURE_IDLE: Duration = Duration::from_secs(1);
/// Under pressure: a request head not complete this long after its first byte ends its connection.
pub const PRESSURE_HEAD: Duration = Duration::from_secs(2);
/// How often the watchdogs look while the node is under pressure.
const PRESSURE_TICK: Duration = Duration::from_millis(100);
/// How often the accept loop looks whether the pressure is over while no connection arrives.
const PRESSURE_RECHECK: Duration = Duration::from_millis(250);

/// Serves `app` on `listener` with the default [`HttpLimits`] until `shutdown` completes, then
/// finishes in-flight requests.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    serve_with(listener, app, HttpLimits::default(), shutdown).await
}

/// Serves `app` on `listener` under `limits` until `shutdown` completes, then stops accepting,
/// closes idle connections, lets busy ones finish their request and returns when all are closed.
pub async fn serve_with(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    serve_tls_with(listener, app, limits, None, shutdown).await
}

/// [`serve_with`], over TLS when `tls` is given ([`crate::tls::server_config`]): each connection's
/// handshake must complete within the header-read timeout (under pressure, within
/// [`PRESSURE_HEAD`]), else the connection is closed; a connection that is not TLS fails its
/// handshake and is closed.
pub async fn serve_tls_with(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let (stop_tx, stop_rx) = watch::channel(false);
    // Under pressure from when no slot is free until an eighth of them are.
    let (pressure_tx, pressure_rx) = watch::channel(false);
    let relief = (limits.max_connections / 8).max(1);
    let update_pressure = |free: usize| {
        pressure_tx.send_if_modified(|p| {
            let now = if free == 0 {
                true
            } else if free >= relief {
                false
            } else {
                *p
            };
            std::mem::replace(p, now) != now
        });
    };
    let evicted = Arc::new(AtomicU64::new(0));
    // Every connection task holds a receiver; the sender sees them all dropped when the last ends.
    let (done_tx, done_rx) = watch::channel(());
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(None)
        .keep_alive(true)
        .max_header_size(limits.hyper_max_head_bytes());
    let warnings = LimitWarnings::default();
    tokio::pin!(shutdown);
    loop {
        update_pressure(slots.available_permits());
        if slots.available_permits() == 0
            && let Some(suppressed) = warnings.due("max_connections", "", Instant::now())
        {
            tracing::warn!(
                limit = limits.max_connections,
                suppressed,
                closed_unused = evicted.swap(0, Ordering::Relaxed),
                "the cap on open connections was reached: new connections wait until one closes, \
                 and connections not in use are closed early"
            );
        }
        let permit = tokio::select! {
            biased;
            _ = &mut shutdown => break,
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, remote) = tokio::select! {
            biased;
            _ = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    if !is_connection_error(&e) {
                        if let Some(suppressed) = warnings.due("accept", "", Instant::now()) {
                            tracing::warn!(error = %e, suppressed, "accept failed; retrying shortly");
                        }
                        tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    }
                    continue;
                }
            },
            // The slot taken is given back and taken again: the pressure is looked at meanwhile.
            _ = tokio::time::sleep(PRESSURE_RECHECK) => continue,
        };
        let _ = stream.set_nodelay(true);
        let conn = Conn {
            http: http.clone(),
            app: app.clone(),
            limits,
            stop: stop_rx.clone(),
            pressure: pressure_rx.clone(),
            evicted: evicted.clone(),
        };
        let done = done_rx.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            conn.start(stream, remote, acceptor).await;
            drop(permit);
            drop(done);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(done_rx);
    done_tx.closed().await;
    Ok(())
}

/// Errors about one connection (it went away before it was accepted): accept the next one at once.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    )
}

/// One accepted connection and what it needs.
struct Conn {
    http: hyper::server::conn::http1::Builder,
    app: Router,
    limits: HttpLimits,
    stop: watch::Receiver<bool>,
    /// Whether the node is at its connection cap.
    pressure: watch::Receiver<bool>,
    /// Connections closed early under pressure, for the accept loop's warning.
    evicted: Arc<AtomicU64>,
}

/// Why the watchdog acts.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Fine,
    /// A request head started arriving and is not complete in time.
    HeaderTimeout,
    /// Nothing in progress for the idle timeout (or, under pressure, for the shorter times).
    Idle,
}

/// What the watchdog knows of a connection, updated by its I/O and its requests. Times are
/// milliseconds since the connection opened.
struct Activity {
    opened: Instant,
    in_flight: AtomicU32,
    /// Whether a request has ever started on the connection.
    used: AtomicBool,
    /// When the first byte of a request head arrived, while no request is in progress; [`NONE`]
    /// otherwise.
    head_since: AtomicU64,
    /// The last response completed or bytes written (or the opening).
    last_active: AtomicU64,
}

const NONE: u64 = u64::MAX;

impl Activity {
    fn new() -> Activity {
        Activity {
            opened: Instant::now(),
            in_flight: AtomicU32::new(0),
            used: AtomicBool::new(false),
            head_since: AtomicU64::new(NONE),
            last_active: AtomicU64::new(0),
        }
    }

    fn now(&self) -> u64 {
        self.opened.elapsed().as_millis() as u64
    }

    fn read(&self) {
        if self.in_flight.load(Ordering::Acquire) == 0 && self.head_since.load(Ordering::Relaxed) == NONE {
            self.head_since.store(self.now(), Ordering::Relaxed);
        }
    }

    fn wrote(&self) {
        self.last_active.store(self.now(), Ordering::Relaxed);
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.used.store(true, Ordering::Relaxed);
        self.head_since.store(NONE, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// What to do with the connection; `pressure`: the node is at its connection cap.
    fn verdict(&self, limits: &HttpLimits, pressure: bool) -> Verdict {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return Verdict::Fine;
        }
        let now = self.now();
        let ms = |d: Duration| d.as_millis() as u64;
        let head = self.head_since.load(Ordering::Relaxed);
        if head != NONE {
            let mut limit = limits.header_read_timeout;
            if pressure {
                limit = limit.min(PRESSURE_HEAD);
            }
            return if now.saturating_sub(head) >= ms(limit) {
                Verdict::HeaderTimeout
            } else {
                Verdict::Fine
            };
        }
        let mut limit = limits.idle_timeout;
        if pressure {
            limit = limit.min(if self.used.load(Ordering::Relaxed) {
                PRESSURE_IDLE
            } else {
                PRESSURE_SILENT
            });
        }
        let last = self.last_active.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= ms(limit) {
            Verdict::Idle
        } else {
            Verdict::Fine
        }
    }
}

/// A request in progress on a connection.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.wrote();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The socket, reporting reads and writes to the connection's [`Activity`].
struct Watched<S> {
    stream: S,
    activity: Arc<Activity>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.read();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.stream).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.wrote();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.wrote();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// How often the watchdog looks: a quarter of the shorter timeout, within 10 ms to 1 s.
fn tick(limits: &HttpLimits) -> Duration {
    (limits.header_read_timeout.min(limits.idle_timeout) / 4).clamp(Duration::from_millis(10), Duration::from_secs(1))
}

impl Conn {
    /// Serves the connection: over TLS when `acceptor` is given, after its handshake.
    async fn start(
        mut self,
        stream: TcpStream,
        remote: std::net::SocketAddr,
        acceptor: Option<tokio_rustls::TlsAcceptor>,
    ) {
        let activity = Arc::new(Activity::new());
        let watched = Watched {
            stream,
            activity: activity.clone(),
        };
        match acceptor {
            None => self.run(watched, activity, remote).await,
            Some(acceptor) => {
                if let Some(tls) = self.handshake(acceptor, watched, remote).await {
                    self.run(tls, activity, remote).await;
                }
            }
        }
    }

    /// The TLS handshake, within the header-read timeout from the connection's opening (under
    /// pressure, within [`PRESSURE_HEAD`]); `None` when it failed, timed out, or the server stops.
    async fn handshake(
        &mut self,
        acceptor: tokio_rustls::TlsAcceptor,
        watched: Watched<TcpStream>,
        remote: std::net::SocketAddr,
    ) -> Option<tokio_rustls::server::TlsStream<Watched<TcpStream>>> {
        let opened = Instant::now();
        let accept = acceptor.accept(watched);
        tokio::pin!(accept);
        let mut ticker = tokio::time::interval(PRESSURE_TICK);
        loop {
            tokio::select! {
                biased;
                r = accept.as_mut() => {
                    return match r {
                        Ok(tls) => {
                            // The handshake's bytes are not a request head: from here the
                            // connection is idle until its first request starts arriving.
                            let activity = &tls.get_ref().0.activity;
                            activity.head_since.store(NONE, Ordering::Relaxed);
                            activity.wrote();
                            Some(tls)
                        }
                        Err(e) => {
                            tracing::debug!(%remote, error = %e, "TLS handshake failed");
                            None
                        }
                    };
                }
                changed = self.stop.changed() => {
                    let _ = changed;
                    return None;
                }
                _ = ticker.tick() => {
                    let mut limit = self.limits.header_read_timeout;
                    let pressure = *self.pressure.borrow();
                    if pressure {
                        limit = limit.min(PRESSURE_HEAD);
                    }
                    if opened.elapsed() >= limit {
                        if pressure {
                            self.evicted.fetch_add(1, Ordering::Relaxed);
                        }
                        tracing::debug!(%remote, pressure, "closing a connection: the TLS handshake did not complete in time");
                        return None;
                    }
                }
            }
        }
    }

    async fn run<S>(mut self, stream: S, activity: Arc<Activity>, remote: std::net::SocketAddr)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let io = TokioIo::new(stream);
        let app = self.app;
        let service = hyper::service::service_fn({
            let activity = activity.clone();
            move |req: hyper::Request<Incoming>| {
                let busy = activity.begin();
                let call = app.clone().oneshot(req.map(Body::new));
                async move {
                    let resp = call.await;
                    drop(busy);
                    resp
                }
            }
        });
        let conn = self.http.serve_connection(io, service);
        tokio::pin!(conn);
        let limits = self.limits;
        let mut pressure = *self.pressure.borrow_and_update();
        // False once the accept loop is gone (shutdown, seen through `stop`).
        let mut pressure_open = true;
        let period = |pressure: bool| if pressure { PRESSURE_TICK } else { tick(&limits) };
        let watchdog = tokio::time::sleep(period(pressure));
        tokio::pin!(watchdog);
        let mut stopping = false;
        // When the connection was asked to close because it was idle.
        let mut closing: Option<Instant> = None;
        loop {
            // The connection first: bytes of a request that arrived as the watchdog fired are read
            // (and seen by it) before it judges the connection idle.
            tokio::select! {
                biased;
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(%remote, error = %e, "connection ended with an error");
                    }
                    return;
                }
                changed = self.stop.changed(), if !stopping => {
                    let _ = changed;
                    stopping = true;
                    conn.as_mut().graceful_shutdown();
                }
                changed = self.pressure.changed(), if pressure_open => {
                    if changed.is_err() {
                        pressure_open = false;
                        pressure = false;
                    } else {
                        pressure = *self.pressure.borrow_and_update();
                    }
                    watchdog.as_mut().reset(tokio::time::Instant::now() + period(pressure));
                }
                _ = watchdog.as_mut() => {
                    watchdog.as_mut().reset(tokio::time::Instant::now() + period(pressure));
                    match activity.verdict(&limits, pressure) {
                        Verdict::HeaderTimeout => {
                            if pressure {
                                self.evicted.fetch_add(1, Ordering::Relaxed);
                            }
                            tracing::debug!(%remote, pressure,
                                "closing a connection: the request head did not arrive in time");
                            return;
                        }
                        Verdict::Idle => match closing {
                            None => {
                                if pressure {
                                    self.evicted.fetch_add(1, Ordering::Relaxed);
                                }
                                tracing::debug!(%remote, pressure, "closing an idle connection");
                                closing = Some(Instant::now());
                                conn.as_mut().graceful_shutdown();
                            }
                            Some(at) if at.elapsed() >= CLOSE_GRACE => return,
                            Some(_) => {}
                        },
                        Verdict::Fine => {}
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(header_ms: u64, idle_ms: u64) -> HttpLimits {
        HttpLimits {
            header_read_timeout: Duration::from_millis(header_ms),
            idle_timeout: Duration::from_millis(idle_ms),
            ..HttpLimits::default()
        }
    }

    #[test]
    fn verdicts() {
        let a = Arc::new(Activity::new());
        let l = limits(10_000, 10_000);
        assert_eq!(a.verdict(&l, false), Verdict::Fine);
        // Opened long ago, nothing since: idle.
        assert_eq!(a.verdict(&limits(10_000, 0), false), Verdict::Idle);
        // A head started: the header timeout applies, not the idle one.
        a.read();
        assert_eq!(a.verdict(&limits(10_000, 0), false), Verdict::Fine);
        assert_eq!(a.verdict(&limits(0, 10_000), false), Verdict::HeaderTimeout);
        // A request in progress: neither.
        let busy = a.begin();
        assert_eq!(a.verdict(&limits(0, 0), false), Verdict::Fine);
        // Bytes of its body do not start a head.
        a.read();
        drop(busy);
        assert_eq!(a.head_since.load(Ordering::Relaxed), NONE);
        assert_eq!(a.verdict(&l, false), Verdict::Fine);
        assert_eq!(a.verdict(&limits(10_000, 0), false), Verdict::Idle);
    }

    /// Back-dates a connection's opening, as if it had been open for `ms`.
    fn opened_ago(ms: u64) -> Arc<Activity> {
        let mut a = Activity::new();
        a.opened = Instant::now() - Duration::from_millis(ms);
        Arc::new(a)
    }

    #[test]
    fn pressure_verdicts() {
        let l = limits(10_000, 30_000);
        // A silent socket: kept without pressure, closed under it once PRESSURE_SILENT has passed.
        let silent = opened_ago(300);
        assert_eq!(silent.verdict(&l, false), Verdict::Fine);
        assert_eq!(silent.verdict(&l, true), Verdict::Idle);
        assert_eq!(opened_ago(0).verdict(&l, true), Verdict::Fine);
        // A connection that served a request gets PRESSURE_IDLE from its last answer.
        let used = opened_ago(1500);
        drop(used.begin());
        assert_eq!(used.verdict(&l, true), Verdict::Fine, "just answered");
        used.last_active
            .store(used.now().saturating_sub(1100), Ordering::Relaxed);
        assert_eq!(used.verdict(&l, true), Verdict::Idle);
        assert_eq!(used.verdict(&l, false), Verdict::Fine);
        // A request in progress is never cut.
        let busy = used.begin();
        assert_eq!(used.verdict(&l, true), Verdict::Fine);
        drop(busy);
        // A head in progress gets PRESSURE_HEAD.
        let slow = opened_ago(5000);
        slow.head_since
            .store(slow.now().saturating_sub(2500), Ordering::Relaxed);
        assert_eq!(slow.verdict(&l, false), Verdict::Fine);
        assert_eq!(slow.verdict(&l, true), Verdict::HeaderTimeout);
    }

    #[test]
    fn ticks_follow_the_shorter_timeout() {
        assert_eq!(tick(&limits(400, 10_000)), Duration::from_millis(100));
        assert_eq!(tick(&limits(1, 1)), Duration::from_millis(10));
        assert_eq!(tick(&HttpLimits::default()), Duration::from_secs(1));
    }
}
