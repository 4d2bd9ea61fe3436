//! The operator's HTTP listeners, built to face the Internet. Anyone who can
//! reach the webhook's Ingress can open connections to it, so every
//! connection ends whatever the client does:
//!
//! - `idle`: a connection with no request in flight and no byte of the next
//!   one (before its first request, and between keep-alive requests) is closed
//!   after `idle_timeout`.
//! - `header`: from the first byte of a request, its head (request line and
//!   headers) must be complete within `header_timeout`, or the connection is
//!   closed (slow-loris).
//! - `body`: from the head, the body must be complete within `body_timeout`;
//!   the handler then sees a [`BodyTimeout`] error, answers, and the
//!   connection closes after that answer.
//! - At most `max_connections` connections are open. At the cap, a new
//!   connection takes the slot of the oldest one that is not answering a
//!   request (idle, or still sending its head): such sockets are what an
//!   attacker holds cheaply, and closing one costs an honest client at most a
//!   reconnect. Only when every slot is answering a request is the new
//!   connection refused, closed at once.
//!
//! Each cut is counted, by listener: `tollgate_http_connection_timeouts_total`
//! (with the phase), `tollgate_http_connections_evicted_total` and
//! `tollgate_http_connections_refused_total`; `tollgate_http_connections` is
//! the number open. The metrics listener has limits of its own, so a flood on
//! the webhook port never reaches `/readyz` or `/metrics`.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use bytes::Bytes;
use http::{HeaderValue, Request, header};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, Sleep};
use tower::ServiceExt;

use super::throttle::Throttle;
use super::{Metrics, labels};

/// The most a request head may take in memory: hyper's read buffer, which
/// also bounds the headers (a larger head is answered 431). GitHub's are a
/// few kilobytes; hyper's default of about 400 KiB times the connection cap
/// would let a client hold hundreds of megabytes.
const READ_BUFFER_BYTES: usize = 32 * 1024;

/// How long the accept loop rests after an accept error (most often: out of
/// file descriptors), so that it does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// The limits of one listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Connections open at once.
    pub max_connections: usize,
    /// How long a connection may sit with no request in flight and no byte
    /// of the next one.
    pub idle_timeout: Duration,
    /// How long a request head may take from its first byte.
    pub header_timeout: Duration,
    /// How long a request body may take from the end of its head.
    pub body_timeout: Duration,
}

impl Limits {
    /// The webhook listener's defaults. GitHub sends a delivery in one short
    /// request and waits at most 10 s for the answer; the idle timeout is
    /// longer than the usual load balancers' keep-alive (60 s), so a proxy
    /// never reuses a connection the operator is closing.
    pub const WEBHOOK: Limits = Limits {
        max_connections: 1024,
        idle_timeout: Duration::from_secs(90),
        header_timeout: Duration::from_secs(10),
        body_timeout: Duration::from_secs(10),
    };

    /// The metrics listener's: probes and scrapers are a handful of clients.
    pub const METRICS: Limits = Limits {
        max_connections: 64,
        idle_timeout: Duration::from_secs(90),
        header_timeout: Duration::from_secs(10),
        body_timeout: Duration::from_secs(10),
    };
}

/// The error a request body gives when it did not arrive in time. The
/// webhook receiver finds it in a body rejection with [`is_body_timeout`].
#[derive(Debug, thiserror::Error)]
#[error(
    "the request body did not arrive within {0:?} of its headers; send the whole request at once"
)]
pub struct BodyTimeout(pub Duration);

/// True when `error`, or one of its sources, is a [`BodyTimeout`].
pub fn is_body_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut e = Some(error);
    while let Some(err) = e {
        if err.is::<BodyTimeout>() {
            return true;
        }
        e = err.source();
    }
    false
}

/// Serves `router` on `listener` with `limits`, forever (the task is dropped
/// at shutdown). `name` labels the metrics and log lines.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    name: &'static str,
    limits: Limits,
    metrics: Metrics,
) {
    let slots = Arc::new(Slots::new(limits.max_connections));
    let open = metrics
        .http_connections
        .get_or_create(&labels([("listener", name)]))
        .clone();
    let in_flight = metrics
        .http_requests_in_flight
        .get_or_create(&labels([("listener", name)]))
        .clone();
    let refused = metrics
        .http_connections_refused
        .get_or_create(&labels([("listener", name)]))
        .clone();
    let evicted = metrics
        .http_connections_evicted
        .get_or_create(&labels([("listener", name)]))
        .clone();
    let timeouts = |phase: &str| {
        metrics
            .http_connection_timeouts
            .get_or_create(&labels([("listener", name), ("phase", phase)]))
            .clone()
    };
    let timeouts = Timeouts {
        idle: timeouts("idle"),
        header: timeouts("header"),
        body: timeouts("body"),
    };
    let refusals = Throttle::per_minute();
    let accept_errors = Throttle::per_minute();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                if let Some(suppressed) = accept_errors.admit() {
                    tracing::warn!(listener = name, error = %e, suppressed, "cannot accept a connection; trying again shortly");
                }
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        let (id, conn) = match slots.admit() {
            Admission::Admitted {
                id,
                conn,
                evicted: e,
            } => {
                if e {
                    evicted.inc();
                }
                (id, conn)
            }
            Admission::Refused => {
                refused.inc();
                if let Some(suppressed) = refusals.admit() {
                    tracing::warn!(
                        listener = name,
                        max_connections = limits.max_connections,
                        suppressed,
                        "refused a connection: every connection slot is answering a request"
                    );
                }
                drop(stream);
                continue;
            }
        };
        open.inc();
        let slot = Slot {
            slots: slots.clone(),
            id,
            conn,
            open: open.clone(),
        };
        let router = router.clone();
        let timeouts = timeouts.clone();
        let in_flight = in_flight.clone();
        tokio::spawn(async move {
            serve_connection(stream, router, limits, slot, timeouts, in_flight, name).await;
        });
    }
}

#[derive(Clone)]
struct Timeouts {
    idle: Counter,
    header: Counter,
    body: Counter,
}

/// One connection, from its slot to its end.
async fn serve_connection(
    stream: TcpStream,
    router: Router,
    limits: Limits,
    slot: Slot,
    timeouts: Timeouts,
    in_flight: Gauge,
    name: &'static str,
) {
    let _ = stream.set_nodelay(true);
    let conn = slot.conn.clone();
    let io = TokioIo::new(Watched {
        stream,
        conn: conn.clone(),
    });
    let body_timeouts = timeouts.body.clone();
    let service_conn = conn.clone();
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        // The head is complete: the request is being answered from here on.
        service_conn.set(Phase::Busy);
        let answering = InFlight::new(&in_flight);
        let conn = service_conn.clone();
        let req = req.map(|body| {
            Body::new(TimedBody {
                inner: body,
                timeout: limits.body_timeout,
                sleep: Box::pin(tokio::time::sleep(limits.body_timeout)),
                conn: conn.clone(),
                timeouts: body_timeouts.clone(),
                timed_out: false,
            })
        });
        let router = router.clone();
        async move {
            let mut res = match router.oneshot(req).await {
                Ok(res) => res,
                Err(never) => match never {},
            };
            if conn.close_after_reply.load(Ordering::Relaxed) {
                // A client that sends its body this slowly gets no second request.
                res.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            conn.set(Phase::Idle);
            drop(answering);
            Ok::<_, Infallible>(res)
        }
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    // Our own timeouts below replace hyper's header timer, which would also
    // count the idle wait before a keep-alive request.
    http.header_read_timeout(None)
        .keep_alive(true)
        .max_buf_size(READ_BUFFER_BYTES);
    let serving = http.serve_connection(io, service);
    tokio::pin!(serving);
    loop {
        let (phase, since) = conn.phase();
        let deadline = match phase {
            Phase::Idle => Some((since + limits.idle_timeout, &timeouts.idle)),
            Phase::Head => Some((since + limits.header_timeout, &timeouts.header)),
            Phase::Busy => None,
            Phase::Evicted => {
                tracing::debug!(listener = name, "closed an idle connection to make room");
                return;
            }
        };
        let expired = async {
            match deadline {
                Some((at, _)) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            done = serving.as_mut() => {
                if let Err(e) = done {
                    tracing::debug!(listener = name, error = %e, "connection ended with an error");
                }
                return;
            }
            _ = conn.changed.notified() => {}
            _ = expired => {
                if let Some((_, counter)) = deadline {
                    counter.inc();
                }
                tracing::debug!(listener = name, phase = ?phase, "closed a connection that timed out");
                return;
            }
        }
    }
}

/// Where a connection is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// No request in flight, no byte of the next one.
    Idle,
    /// Bytes of a request arrived; its head is not complete.
    Head,
    /// A request is being answered (its body read, the handler running).
    Busy,
    /// Closed to make room for a newer connection.
    Evicted,
}

struct Connection {
    state: Mutex<(Phase, Instant)>,
    /// Wakes the connection's task when its phase changed.
    changed: tokio::sync::Notify,
    /// Set when the body timed out: the answer closes the connection.
    close_after_reply: AtomicBool,
}

impl Connection {
    fn new() -> Connection {
        Connection {
            state: Mutex::new((Phase::Idle, Instant::now())),
            changed: tokio::sync::Notify::new(),
            close_after_reply: AtomicBool::new(false),
        }
    }

    fn phase(&self) -> (Phase, Instant) {
        *self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Moves to `phase`, unless the connection was evicted (which is final).
    fn set(&self, phase: Phase) {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if s.0 != Phase::Evicted && s.0 != phase {
            *s = (phase, Instant::now());
            drop(s);
            // notify_one keeps the wake-up if the task is not waiting yet.
            self.changed.notify_one();
        }
    }

    /// Bytes arrived: an idle connection starts a request head.
    fn bytes_arrived(&self) {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if s.0 == Phase::Idle {
            *s = (Phase::Head, Instant::now());
            drop(s);
            self.changed.notify_one();
        }
    }

    /// Evicts the connection if it is not answering a request.
    fn evict_if_not_busy(&self) -> bool {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if matches!(s.0, Phase::Idle | Phase::Head) {
            s.0 = Phase::Evicted;
            drop(s);
            self.changed.notify_one();
            true
        } else {
            false
        }
    }
}

/// The open connections of a listener, oldest first.
struct Slots {
    cap: usize,
    next_id: AtomicU64,
    open: Mutex<BTreeMap<u64, Arc<Connection>>>,
}

enum Admission {
    Admitted {
        id: u64,
        conn: Arc<Connection>,
        evicted: bool,
    },
    Refused,
}

impl Slots {
    fn new(cap: usize) -> Slots {
        Slots {
            cap: cap.max(1),
            next_id: AtomicU64::new(0),
            open: Mutex::default(),
        }
    }

    /// A slot for a new connection, evicting the oldest connection that is
    /// not answering a request when all are taken.
    fn admit(&self) -> Admission {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let mut evicted = false;
        if open.len() >= self.cap {
            let victim = open
                .iter()
                .find(|(_, c)| c.evict_if_not_busy())
                .map(|(id, _)| *id);
            match victim {
                Some(id) => {
                    open.remove(&id);
                    evicted = true;
                }
                None => return Admission::Refused,
            }
        }
        // Ids only grow, so the map's order is the connections' age.
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Connection::new());
        open.insert(id, conn.clone());
        Admission::Admitted { id, conn, evicted }
    }

    /// Gives the slot back (a no-op for an evicted connection, whose slot
    /// went to another).
    fn release(&self, id: u64) {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
    }
}

/// A connection's hold on its slot, given back when the connection's task
/// ends, however it ends.
struct Slot {
    slots: Arc<Slots>,
    id: u64,
    conn: Arc<Connection>,
    open: Gauge,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.release(self.id);
        self.open.dec();
    }
}

/// One request being answered, counted until its answer is given or the
/// connection drops it.
struct InFlight(Gauge);

impl InFlight {
    fn new(gauge: &Gauge) -> InFlight {
        gauge.inc();
        InFlight(gauge.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The socket, telling its connection when request bytes arrive.
struct Watched {
    stream: TcpStream,
    conn: Arc<Connection>,
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.stream).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.conn.bytes_arrived();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// A request body that must end within its timeout.
struct TimedBody {
    inner: Incoming,
    timeout: Duration,
    sleep: Pin<Box<Sleep>>,
    conn: Arc<Connection>,
    timeouts: Counter,
    timed_out: bool,
}

impl hyper::body::Body for TimedBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if !this.timed_out {
            // What has arrived is always taken; the clock only cuts a wait.
            if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
                return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
            }
            if this.sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.timed_out = true;
            this.timeouts.inc();
            this.conn.close_after_reply.store(true, Ordering::Relaxed);
        }
        Poll::Ready(Some(Err(Box::new(BodyTimeout(this.timeout)))))
    }

    fn is_end_stream(&self) -> bool {
        !self.timed_out && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
