//! serve's connections, on tokio and hyper: accepting them (at most `connections.max` open; the next
//! waits in the listen backlog until one closes), `TCP_NODELAY` on each, closing those that stay quiet
//! too long, and stopping gracefully.
//!
//! A connection is in one of three phases, watched by its task:
//! - **idle**: no request in flight. Closed once nothing has been read or written for `idle_timeout`
//!   (between kept-alive requests, before a first request, or while a client does not read its answer).
//! - **reading a head**: the first byte of a request has come, its headers are not complete. Closed
//!   `header_timeout` after that first byte, however slowly the bytes keep coming.
//! - **in flight**: the handler has the request; it bounds the body read itself (`body_timeout`, 408).
//!
//! hyper's own header timer is not used: it runs from the end of one request to the end of the next
//! one's headers, so it would be the idle timeout too, and the two could not differ.
//!
//! Stopping: the listener is closed first (new connections are refused), idle connections are closed,
//! and requests in flight are answered (their connections then close) for at most `shutdown_timeout`.

use super::settings::ConnectionSettings;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// Answers one request; the connection machinery needs nothing else of the service.
pub trait Handler: Send + Sync + 'static {
    fn respond(self: Arc<Self>, request: Request<Incoming>) -> impl Future<Output = Response<Full<Bytes>>> + Send;
}

/// After an accept fails for want of resources (out of file descriptors, say), wait this long before the
/// next accept, so the loop does not spin while nothing can be accepted.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Connections the kernel completes and queues for accept: those over `connections.max` and a burst
/// arriving faster than the accept loop. std's `TcpListener::bind` queues 128; past the queue the
/// kernel drops a SYN and the client retries it a second (then three) later. The kernel caps it at
/// `net.core.somaxconn` (4096 by default since Linux 5.4).
pub const LISTEN_BACKLOG: i32 = 4096;

/// A listening socket on `addr` (address reuse on, as std sets it, so a restart can bind at once),
/// queueing [`LISTEN_BACKLOG`] connections; non-blocking, for tokio.
pub fn listen(addr: std::net::SocketAddr) -> io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// File descriptors besides the connections: the listener, Keystone connections, state files, stdio.
const SPARE_FDS: u64 = 64;

/// Raises this process's file descriptor limit (`RLIMIT_NOFILE`, whose soft value is often 1024) to its
/// hard limit when `max` connections would not fit under the soft one; an error naming `connections.max`
/// when they do not fit under the hard limit either, rather than accept errors under load.
pub fn make_room_for(max: usize) -> anyhow::Result<()> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let needed = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(SPARE_FDS);
    let limit = getrlimit(Resource::Nofile);
    if limit.current.is_none_or(|soft| soft >= needed) {
        return Ok(());
    }
    let hard = limit.maximum.unwrap_or(u64::MAX);
    if hard < needed {
        anyhow::bail!(
            "connections.max {max} needs {needed} file descriptors, but this process may open at most {hard} \
             (RLIMIT_NOFILE): raise the limit (LimitNOFILE= in serve's unit) or lower connections.max"
        );
    }
    setrlimit(Resource::Nofile, Rlimit { current: limit.maximum, maximum: limit.maximum })
        .map_err(|e| anyhow::anyhow!("raising the file descriptor limit to {hard} for connections.max {max}: {e}"))
}

/// How [`serve`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// Every request in flight was answered.
    Gracefully,
    /// The graceful stop's bound passed with requests still in flight.
    Busy,
    /// A second stop request came during the graceful stop: requests still in flight were cut off.
    Now,
}

/// Serves `listener` until the first of `stops` arrives (its reason, for the log; a closed channel
/// too), then stops gracefully; a second one during the graceful stop ends it at once, as an operator
/// who presses Ctrl-C twice expects.
pub async fn serve<H: Handler>(
    listener: TcpListener,
    limits: ConnectionSettings,
    handler: Arc<H>,
    mut stops: mpsc::Receiver<&'static str>,
) -> Stopped {
    let permits = Arc::new(Semaphore::new(limits.max));
    let (closing, closing_seen) = watch::channel(false);
    let reason = {
        let stop = async { stops.recv().await.unwrap_or("stop requested") };
        tokio::pin!(stop);
        loop {
            // A permit first: past the bound, connections wait in the kernel's backlog, costing nothing here.
            let permit = tokio::select! {
                reason = &mut stop => break reason,
                permit = permits.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break "the connection bound was closed",
                },
            };
            let accepted = tokio::select! {
                reason = &mut stop => break reason,
                accepted = accept(&listener) => accepted,
            };
            match accepted {
                Ok(stream) => {
                    tokio::spawn(connection(stream, limits, handler.clone(), closing_seen.clone(), permit));
                }
                Err(e) => {
                    tracing::warn!("hearth-server: accepting a connection: {e}");
                    if out_of_resources(&e) {
                        tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    }
                }
            }
        }
    };
    drop(listener);
    let open = limits.max - permits.available_permits();
    tracing::info!(
        "hearth-server: {reason}: no longer accepting connections; finishing the requests of {open} open \
         connection(s) (at most {} s)",
        limits.shutdown_timeout.as_secs()
    );
    closing.send_replace(true);
    let all = u32::try_from(limits.max).unwrap_or(u32::MAX);
    let busy = || limits.max - permits.available_permits();
    tokio::select! {
        finished = tokio::time::timeout(limits.shutdown_timeout, permits.acquire_many(all)) => {
            if finished.is_ok() {
                tracing::info!("hearth-server: stopped");
                Stopped::Gracefully
            } else {
                tracing::warn!(
                    "hearth-server: stopped with {} connection(s) still busy after {} s",
                    busy(),
                    limits.shutdown_timeout.as_secs()
                );
                Stopped::Busy
            }
        }
        Some(again) = stops.recv() => {
            tracing::warn!("hearth-server: {again} again: stopped now, cutting off {} busy connection(s)", busy());
            Stopped::Now
        }
    }
}

/// Whether an accept failed for want of descriptors or memory (the next one would fail the same way
/// at once), rather than for a client that went away.
fn out_of_resources(error: &io::Error) -> bool {
    use rustix::io::Errno;
    [Errno::MFILE, Errno::NFILE, Errno::NOBUFS, Errno::NOMEM]
        .iter()
        .any(|errno| error.raw_os_error() == Some(errno.raw_os_error()))
}

/// The next connection, with `TCP_NODELAY` set: an answer leaves in one write, and without it Nagle's
/// algorithm would hold a kept-alive connection's next answer until the client's delayed ACK (~40 ms).
pub async fn accept(listener: &TcpListener) -> io::Result<TcpStream> {
    let (stream, _) = listener.accept().await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// One connection, from accept to close; `_permit` is its place under the bound.
async fn connection<H: Handler>(
    stream: TcpStream,
    limits: ConnectionSettings,
    handler: Arc<H>,
    mut closing: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
) {
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched { stream, activity: activity.clone() });
    let requests = activity.clone();
    let service = hyper::service::service_fn(move |request| {
        let (handler, in_flight) = (handler.clone(), requests.begin());
        async move {
            let response = handler.respond(request).await;
            drop(in_flight);
            Ok::<_, Infallible>(response)
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.header_read_timeout(None);
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let mut graceful = false;
    loop {
        let deadline = activity.deadline(&limits);
        // A connection with a request in flight has no deadline here; the far one only fills the slot.
        let sleep = tokio::time::sleep_until(deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400)));
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    // A client that goes away mid-request, or sends something that is not HTTP: hyper
                    // has answered what it could; nothing for the operator.
                    tracing::debug!("hearth-server: connection ended: {e}");
                }
                return;
            }
            () = sleep, if deadline.is_some() => {
                if activity.deadline(&limits).is_some_and(|at| at <= Instant::now()) {
                    // Dropping the connection closes the socket.
                    return;
                }
            }
            () = activity.changed.notified() => {}
            _ = closing.changed(), if !graceful => {
                conn.as_mut().graceful_shutdown();
                graceful = true;
            }
        }
    }
}

/// What a connection's task needs to know to apply the timeouts.
#[derive(Debug)]
struct Activity {
    state: Mutex<Phase>,
    /// Wakes the task when a deadline may have come closer (a head has started).
    changed: Notify,
}

#[derive(Debug)]
struct Phase {
    in_flight: usize,
    /// The last byte read or written.
    last: Instant,
    /// When the first byte of a request head came, while no request is in flight.
    head_started: Option<Instant>,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            state: Mutex::new(Phase { in_flight: 0, last: Instant::now(), head_started: None }),
            changed: Notify::new(),
        }
    }

    fn phase(&self) -> std::sync::MutexGuard<'_, Phase> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// When the connection is to be closed, if nothing happens before; `None` while a request is in flight.
    fn deadline(&self, limits: &ConnectionSettings) -> Option<Instant> {
        let phase = self.phase();
        if phase.in_flight > 0 {
            return None;
        }
        let idle = phase.last + limits.idle_timeout;
        Some(phase.head_started.map_or(idle, |started| idle.min(started + limits.header_timeout)))
    }

    fn read(&self) {
        let mut phase = self.phase();
        phase.last = Instant::now();
        if phase.in_flight == 0 && phase.head_started.is_none() {
            phase.head_started = Some(phase.last);
            drop(phase);
            self.changed.notify_one();
        }
    }

    fn wrote(&self) {
        self.phase().last = Instant::now();
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        let mut phase = self.phase();
        phase.in_flight += 1;
        phase.head_started = None;
        InFlight(self.clone())
    }
}

/// A request being answered; dropped when the answer is handed to hyper (or the request is abandoned).
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut phase = self.0.phase();
        phase.in_flight -= 1;
        phase.last = Instant::now();
    }
}

/// The accepted socket, telling [`Activity`] about every byte that moves.
struct Watched {
    stream: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.read();
        }
        result
    }
}

impl AsyncWrite for Watched {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.stream).poll_write(cx, buf);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.wrote();
        }
        result
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.wrote();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        // hyper then sends an answer's head and body in one writev.
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
    }

    #[test]
    fn connections_beyond_std_s_backlog_of_128_are_queued_not_dropped() {
        let somaxconn: i32 = std::fs::read_to_string("/proc/sys/net/core/somaxconn").unwrap().trim().parse().unwrap();
        if somaxconn <= 300 {
            eprintln!("skipped: net.core.somaxconn is {somaxconn}, which caps any backlog below what this checks");
            return;
        }
        // Nothing accepts: every connection below must be completed and queued by the kernel alone.
        let listener = listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let connected = (0..300)
            .map(|_| std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)))
            .collect::<Vec<_>>();
        let failed = connected.iter().filter(|c| c.is_err()).count();
        assert_eq!(failed, 0, "{failed} of 300 connections were not queued");
    }

    #[test]
    fn accepted_sockets_have_tcp_nodelay() {
        runtime().block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
            assert!(!client.nodelay().unwrap(), "a socket starts with Nagle on: the check below means something");
            let accepted = accept(&listener).await.unwrap();
            assert!(accepted.nodelay().unwrap());
        });
    }

    #[test]
    fn only_a_want_of_resources_pauses_the_accept_loop() {
        assert!(out_of_resources(&io::Error::from_raw_os_error(rustix::io::Errno::MFILE.raw_os_error())));
        assert!(!out_of_resources(&io::Error::from_raw_os_error(rustix::io::Errno::CONNABORTED.raw_os_error())));
        assert!(!out_of_resources(&io::Error::other("nodelay")));
    }

    #[test]
    fn deadlines_follow_the_phase() {
        let limits = ConnectionSettings {
            idle_timeout: Duration::from_secs(60),
            header_timeout: Duration::from_secs(10),
            ..ConnectionSettings::default()
        };
        runtime().block_on(async {
            let activity = Arc::new(Activity::new());
            let opened = activity.phase().last;
            assert_eq!(activity.deadline(&limits), Some(opened + limits.idle_timeout), "idle from the start");
            activity.read();
            let started = activity.phase().head_started.unwrap();
            assert_eq!(activity.deadline(&limits), Some(started + limits.header_timeout), "a head has begun");
            activity.read();
            assert_eq!(activity.phase().head_started, Some(started), "more bytes do not extend the head's time");
            let request = activity.begin();
            assert_eq!(activity.deadline(&limits), None, "the handler bounds a request in flight");
            activity.read();
            assert_eq!(activity.phase().head_started, None, "body bytes are not a new head");
            drop(request);
            let answered = activity.phase().last;
            assert_eq!(activity.deadline(&limits), Some(answered + limits.idle_timeout), "idle again");
        });
    }
}
