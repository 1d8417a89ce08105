//! One scripted HTTP server for tests. It listens on a port of its own at 127.0.0.1 (or on a listener the
//! test hands it, e.g. one in a test network's hub), answers each request from a handler or a script of
//! canned replies (status, headers, body), keeps every request it got (method, URL, headers, body, peer)
//! for the test's assertions, and stops when dropped.
//!
//! ```no_run
//! use hearth_tests::loopback::{Loopback, Reply};
//! // Busy twice, then Heat's answer to a signal.
//! let heat = Loopback::script([Reply::text(503, "busy"), Reply::text(503, "busy"), Reply::text(200, "null")]);
//! let endpoint = heat.url("/v1/signal");
//! // … the code under test posts to `endpoint` …
//! let seen = heat.finish();
//! assert!(seen.iter().all(|request| request.method == "POST"));
//! ```

use anyhow::{anyhow, Context as _, Result};
use serde_json::Value;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One request as the server received it.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    /// Path and query, as sent.
    pub url: String,
    /// Every header as sent, in order.
    pub headers: Vec<(String, String)>,
    /// The body as text (bytes that are not UTF-8 replaced).
    pub body: String,
    /// Where it came from.
    pub from: Option<SocketAddr>,
}

impl Request {
    /// The first header named `name`, in any case.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The URL without its query.
    pub fn path(&self) -> &str {
        self.url.split('?').next().unwrap_or_default()
    }

    /// The body as JSON; `Null` when it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

/// What a request is answered with.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    /// Sent after the body's own `Content-Type` (which a `Content-Type` here replaces).
    pub headers: Vec<(String, String)>,
    pub body: Body,
}

/// A reply's body.
#[derive(Clone, Debug)]
pub enum Body {
    Bytes(Vec<u8>),
    /// Streamed from this file when the reply is sent; one that cannot be opened is answered `500` with
    /// the error.
    File(PathBuf),
}

impl Reply {
    /// `body` as `text/plain; charset=UTF-8`.
    pub fn text(status: u16, body: impl Into<String>) -> Reply {
        Reply::bytes(status, body.into()).header("Content-Type", "text/plain; charset=UTF-8")
    }

    /// `body` as `application/json`.
    pub fn json(status: u16, body: &Value) -> Reply {
        Reply::bytes(status, body.to_string()).header("Content-Type", "application/json")
    }

    /// `body` with no `Content-Type`.
    pub fn bytes(status: u16, body: impl Into<Vec<u8>>) -> Reply {
        Reply { status, headers: Vec::new(), body: Body::Bytes(body.into()) }
    }

    /// `200` with the contents of `path`, read when the reply is sent, with no `Content-Type`.
    pub fn file(path: impl Into<PathBuf>) -> Reply {
        Reply { status: 200, headers: Vec::new(), body: Body::File(path.into()) }
    }

    /// With one more header.
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Reply {
        self.headers.push((name.to_string(), value.into()));
        self
    }
}

type Handler = dyn Fn(&Request) -> Reply + Send + Sync;

/// The requests received, and how many [`Loopback::next_request`] handed out.
#[derive(Default)]
struct Log {
    requests: Vec<Request>,
    taken: usize,
}

#[derive(Default)]
struct Shared {
    log: Mutex<Log>,
    arrived: Condvar,
}

impl Shared {
    fn log(&self) -> MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// How a [`Loopback`] is to listen and answer.
#[derive(Debug)]
pub struct Builder {
    listener: Option<TcpListener>,
    workers: usize,
    name: String,
}

impl Builder {
    /// Serves on `listener` instead of a new port at 127.0.0.1.
    pub fn on(mut self, listener: TcpListener) -> Builder {
        self.listener = Some(listener);
        self
    }

    /// Answers with this many threads at once (at least one). With one, the default, requests are
    /// answered one after the other in the order they came.
    pub fn workers(mut self, workers: usize) -> Builder {
        self.workers = workers.max(1);
        self
    }

    /// Names the threads that answer (as panics and `/proc/self/task/*/comm` show them).
    pub fn name(mut self, name: &str) -> Builder {
        self.name = name.to_string();
        self
    }

    /// Answers every request with what `handler` makes of it; a handler that panics answers `500`.
    pub fn serve(self, handler: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> Result<Loopback> {
        let server = match self.listener {
            Some(listener) => tiny_http::Server::from_listener(listener, None),
            None => tiny_http::Server::http("127.0.0.1:0"),
        };
        let server = Arc::new(server.map_err(|e| anyhow!("{}: listening: {e}", self.name))?);
        let addr = server.server_addr().to_ip().with_context(|| format!("{}: not an IP listener", self.name))?;
        let shared = Arc::new(Shared::default());
        let handler: Arc<Handler> = Arc::new(handler);
        let mut loopback = Loopback { server, addr, shared, workers: Vec::new() };
        for _ in 0..self.workers {
            let (server, shared, handler) =
                (Arc::clone(&loopback.server), Arc::clone(&loopback.shared), Arc::clone(&handler));
            let worker = std::thread::Builder::new()
                .name(self.name.clone())
                .spawn(move || answer_all(&server, &shared, &*handler))
                .with_context(|| format!("{}: starting a thread", self.name))?;
            loopback.workers.push(worker);
        }
        Ok(loopback)
    }

    /// Answers with `replies` in turn, the last one again and again after them.
    pub fn script(self, replies: impl IntoIterator<Item = Reply>) -> Result<Loopback> {
        let replies: Vec<Reply> = replies.into_iter().collect();
        anyhow::ensure!(!replies.is_empty(), "{}: a script of no replies", self.name);
        let next = AtomicUsize::new(0);
        self.serve(move |_| replies[next.fetch_add(1, Ordering::SeqCst).min(replies.len() - 1)].clone())
    }
}

/// A running server; dropping it stops it (once the requests it holds are answered).
pub struct Loopback {
    server: Arc<tiny_http::Server>,
    addr: SocketAddr,
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Loopback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loopback").field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl Loopback {
    /// How it is to listen and answer, for more than [`Loopback::serve`] and [`Loopback::script`] do.
    pub fn builder() -> Builder {
        Builder { listener: None, workers: 1, name: "loopback http".to_string() }
    }

    /// A server on 127.0.0.1 answering every request with what `handler` makes of it.
    pub fn serve(handler: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> Loopback {
        Loopback::builder().serve(handler).expect("starting a loopback HTTP server")
    }

    /// A server on 127.0.0.1 answering with `replies` in turn, the last one again and again after them.
    pub fn script(replies: impl IntoIterator<Item = Reply>) -> Loopback {
        Loopback::builder().script(replies).expect("starting a loopback HTTP server")
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://ADDRESS:PORT` followed by `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Every request received so far, in the order they came.
    pub fn requests(&self) -> Vec<Request> {
        self.shared.log().requests.clone()
    }

    /// The first request this has not handed out yet, waiting up to `timeout` for one to come.
    pub fn next_request(&self, timeout: Duration) -> Option<Request> {
        let deadline = Instant::now() + timeout;
        let mut log = self.shared.log();
        while log.taken == log.requests.len() {
            let left = deadline.checked_duration_since(Instant::now()).filter(|left| !left.is_zero())?;
            log = self.shared.arrived.wait_timeout(log, left).unwrap_or_else(|poisoned| poisoned.into_inner()).0;
        }
        log.taken += 1;
        Some(log.requests[log.taken - 1].clone())
    }

    /// Stops the server, once the requests it holds are answered, and hands back every request it got.
    pub fn finish(mut self) -> Vec<Request> {
        self.stop();
        std::mem::take(&mut self.shared.log().requests)
    }

    fn stop(&mut self) {
        // Each unblock ends one thread's wait, after the requests already queued.
        for _ in &self.workers {
            self.server.unblock();
        }
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

impl Drop for Loopback {
    fn drop(&mut self) {
        self.stop();
    }
}

fn answer_all(server: &tiny_http::Server, shared: &Shared, handler: &Handler) {
    while let Ok(mut request) = server.recv() {
        let received = receive(&mut request);
        {
            shared.log().requests.push(received.clone());
            shared.arrived.notify_all();
        }
        let response = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| response(handler(&received))))
            .unwrap_or_else(|_| {
                tiny_http::Response::from_string("the test's handler panicked").with_status_code(500).boxed()
            });
        let _ = request.respond(response);
    }
}

fn receive(request: &mut tiny_http::Request) -> Request {
    let mut body = Vec::new();
    let _ = request.as_reader().read_to_end(&mut body);
    Request {
        method: request.method().to_string(),
        url: request.url().to_string(),
        headers: request.headers().iter().map(|h| (h.field.to_string(), h.value.to_string())).collect(),
        body: String::from_utf8_lossy(&body).into_owned(),
        from: request.remote_addr().copied(),
    }
}

fn response(reply: Reply) -> tiny_http::ResponseBox {
    let mut response = match &reply.body {
        Body::Bytes(bytes) => tiny_http::Response::from_data(bytes.clone()).boxed(),
        Body::File(path) => match std::fs::File::open(path) {
            Ok(file) => tiny_http::Response::from_file(file).boxed(),
            Err(e) => return tiny_http::Response::from_string(e.to_string()).with_status_code(500).boxed(),
        },
    }
    .with_status_code(reply.status);
    for (name, value) in &reply.headers {
        let header = tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes())
            .unwrap_or_else(|()| panic!("not an HTTP header: {name}: {value}"));
        response.add_header(header);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(url: &str) -> (u16, Option<String>, String) {
        match ureq::get(url).call() {
            Ok(r) | Err(ureq::Error::Status(_, r)) => {
                (r.status(), r.header("Content-Type").map(str::to_string), r.into_string().unwrap())
            }
            Err(e) => panic!("{url}: {e}"),
        }
    }

    #[test]
    fn a_script_is_answered_in_turn_then_its_last_reply_again() {
        let server = Loopback::script([
            Reply::text(503, "busy"),
            Reply::json(200, &serde_json::json!({"ok": true})).header("X-Subject-Token", "t"),
        ]);
        assert_eq!(get(&server.url("/a")), (503, Some("text/plain; charset=UTF-8".into()), "busy".into()));
        for path in ["/b?x=1", "/c"] {
            assert_eq!(get(&server.url(path)), (200, Some("application/json".into()), r#"{"ok":true}"#.into()));
        }
        let response = ureq::post(&server.url("/d")).set("X-Auth-Token", "tok").send_string("hello").unwrap();
        assert_eq!(response.header("X-Subject-Token"), Some("t"));

        let seen = server.finish();
        let urls: Vec<&str> = seen.iter().map(|r| r.url.as_str()).collect();
        assert_eq!(urls, ["/a", "/b?x=1", "/c", "/d"]);
        assert_eq!((seen[1].path(), seen[3].method.as_str(), seen[3].body.as_str()), ("/b", "POST", "hello"));
        assert_eq!(seen[3].header("x-auth-token"), Some("tok"));
        assert_eq!(seen[3].from.map(|a| a.ip()), Some(std::net::Ipv4Addr::LOCALHOST.into()));
    }

    #[test]
    fn a_handler_sees_each_request_and_files_are_streamed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), "file contents").unwrap();
        let (file, missing) = (dir.path().join("f"), dir.path().join("missing"));
        let server = Loopback::serve(move |request| match request.path() {
            "/f" => Reply::file(&file),
            "/missing" => Reply::file(&missing),
            "/panic" => panic!("a handler that panics"),
            other => Reply::bytes(404, format!("no {other}")),
        });
        assert_eq!(get(&server.url("/f")), (200, None, "file contents".into()));
        assert_eq!(get(&server.url("/x")), (404, None, "no /x".into()));
        assert_eq!(get(&server.url("/missing")).0, 500);
        assert_eq!(get(&server.url("/panic")).0, 500);
        assert_eq!(get(&server.url("/f")).0, 200, "a panic does not stop the server");
    }

    #[test]
    fn next_request_waits_for_each_request_once() {
        let server = Loopback::script([Reply::text(200, "null")]);
        assert!(server.next_request(Duration::from_millis(100)).is_none());
        let url = server.url("/late");
        let client = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            get(&url)
        });
        assert_eq!(server.next_request(Duration::from_secs(10)).expect("the request").url, "/late");
        assert_eq!(client.join().unwrap().0, 200);
        assert!(server.next_request(Duration::from_millis(100)).is_none(), "handed out once");
        assert_eq!(server.requests().len(), 1);
    }

    #[test]
    fn dropping_it_stops_it() {
        let server = Loopback::builder().workers(3).script([Reply::text(200, "ok")]).unwrap();
        let addr = server.addr();
        assert_eq!(get(&server.url("/")).0, 200);
        drop(server);
        // The listener goes with tiny_http's accept thread, which the drop wakes.
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::net::TcpStream::connect(addr).is_ok() {
            assert!(Instant::now() < deadline, "still listening on {addr}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
