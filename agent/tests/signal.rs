//! The Heat signal against a real HTTP server on loopback standing in for Heat.

use hearth_agent::signal::{self, SignalBody, SignalError, Status};
use hearth_fragments::http::{Client, HttpSettings, RetryPolicy};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const TOKEN: &str = "gAAAAABk-wait-handle-token-0123456789";
const PATH: &str = "/v1/tenant-1/stacks/k8s-abc/0a1b/resources/kube_masters-0-wait_handle/signal";

/// One request as the fake Heat saw it.
#[derive(Debug)]
struct Seen {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn json(&self) -> serde_json::Map<String, serde_json::Value> {
        serde_json::from_str(&self.body).expect("the signal body is a JSON object")
    }
}

/// A fake Heat answering `statuses` in turn (the last one repeats), recording every request.
struct FakeHeat {
    endpoint: String,
    server: Arc<tiny_http::Server>,
    seen: Arc<Mutex<Vec<Seen>>>,
    thread: JoinHandle<()>,
}

impl FakeHeat {
    fn start(statuses: &'static [u16]) -> FakeHeat {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let endpoint = format!("http://{}{PATH}", server.server_addr().to_ip().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (srv, log) = (server.clone(), seen.clone());
        let thread = std::thread::spawn(move || {
            for mut req in srv.incoming_requests() {
                let mut body = String::new();
                req.as_reader().read_to_string(&mut body).unwrap();
                let mut log = log.lock().unwrap();
                log.push(Seen {
                    method: req.method().to_string(),
                    path: req.url().to_string(),
                    headers: req.headers().iter().map(|h| (h.field.to_string(), h.value.to_string())).collect(),
                    body,
                });
                let status = statuses[(log.len() - 1).min(statuses.len() - 1)];
                let answer = match status {
                    200 => "null".to_string(),
                    401 => r#"{"explanation": "The request you have made requires authentication.", "code": 401, "title": "Unauthorized"}"#.to_string(),
                    _ => format!("<html><body>{status} Service Unavailable</body></html>"),
                };
                let json = tiny_http::Header::from_bytes("Content-Type", "application/json").unwrap();
                let _ =
                    req.respond(tiny_http::Response::from_string(answer).with_status_code(status).with_header(json));
            }
        });
        FakeHeat { endpoint, server, seen, thread }
    }

    /// Stops the server and hands back what it saw.
    fn finish(self) -> Vec<Seen> {
        self.server.unblock();
        self.thread.join().unwrap();
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

fn client(request_timeout: Duration, deadline: Duration) -> Client {
    let settings = HttpSettings { request_timeout, connect_timeout: Duration::from_secs(2), ..HttpSettings::default() };
    let policy = RetryPolicy { initial_backoff: Duration::from_millis(50), deadline, ..RetryPolicy::default() };
    Client::new(&settings, policy).unwrap()
}

fn quick_client() -> Client {
    client(Duration::from_secs(5), Duration::from_secs(10))
}

fn assert_is_heat_signal(seen: &Seen) {
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.path, PATH);
    assert_eq!(seen.header("X-Auth-Token"), Some(TOKEN));
    assert_eq!(seen.header("Content-Type"), Some("application/json"));
    assert_eq!(seen.header("Accept"), Some("application/json"));
    let mut keys: Vec<_> = seen.json().keys().cloned().collect();
    keys.sort();
    assert_eq!(keys, ["data", "id", "reason", "status"]);
}

#[test]
fn success_is_posted_once_with_heats_body() {
    let heat = FakeHeat::start(&[200]);
    let body = SignalBody::success("k8s-master-0", "node ready: 14 steps ok");
    let sent = signal::send(&quick_client(), &heat.endpoint, TOKEN, &body).unwrap();
    assert_eq!((sent.http_status, sent.attempts, sent.status), (200, 1, Status::Success));
    assert_eq!(sent.id, "k8s-master-0");
    assert!(sent.at > 1_600_000_000);

    let seen = heat.finish();
    assert_eq!(seen.len(), 1);
    assert_is_heat_signal(&seen[0]);
    assert_eq!(
        serde_json::Value::Object(seen[0].json()),
        serde_json::json!({"status": "SUCCESS", "reason": "node ready: 14 steps ok", "data": "", "id": "k8s-master-0"})
    );
}

#[test]
fn failure_keeps_the_reason_intact() {
    let heat = FakeHeat::start(&[200]);
    let reason = r#"part-006 certs: writing "/etc/kubernetes/certs/ca.crt": échec ✗ (\ backslash, 'quote')"#;
    let sent = signal::send(&quick_client(), &heat.endpoint, TOKEN, &SignalBody::failure("minion-3", reason)).unwrap();
    assert_eq!(sent.status, Status::Failure);

    let seen = heat.finish();
    assert_eq!(seen.len(), 1);
    assert_is_heat_signal(&seen[0]);
    let json = seen[0].json();
    assert_eq!(json["status"], "FAILURE");
    assert_eq!(json["reason"], reason);
    assert_eq!(json["id"], "minion-3");
}

#[test]
fn unavailable_heat_is_retried_until_it_answers() {
    let heat = FakeHeat::start(&[503, 503, 503, 200]);
    let sent = signal::send(&quick_client(), &heat.endpoint, TOKEN, &SignalBody::success("n", "ok")).unwrap();
    assert_eq!((sent.http_status, sent.attempts), (200, 4));

    let seen = heat.finish();
    assert_eq!(seen.len(), 4);
    seen.iter().for_each(assert_is_heat_signal);
    assert!(seen.windows(2).all(|w| w[0].body == w[1].body), "every retry sends the same signal");
}

#[test]
fn a_silent_heat_is_given_up_on_at_the_deadline() {
    // Accepts connections and never answers; connections are kept open so each attempt times out.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}{PATH}", listener.local_addr().unwrap());
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    std::thread::spawn(move || {
        let mut open = Vec::new();
        for stream in listener.incoming() {
            counted.fetch_add(1, Ordering::SeqCst);
            open.push(stream);
        }
    });

    let deadline = Duration::from_secs(2);
    let started = Instant::now();
    let client = client(Duration::from_millis(300), deadline);
    let err = signal::send(&client, &endpoint, TOKEN, &SignalBody::success("n", "ok")).unwrap_err();
    let elapsed = started.elapsed();

    assert!(elapsed >= deadline && elapsed <= deadline + Duration::from_secs(2), "{elapsed:?}");
    let SignalError::GaveUp { attempts, .. } = err else { panic!("expected GaveUp, got {err:?}") };
    assert!(attempts >= 2);
    assert_eq!(attempts as usize, connections.load(Ordering::SeqCst));
    let shown = err.to_string();
    assert!(shown.contains(&endpoint) && shown.contains(&format!("after {attempts} attempt")), "{shown}");
    assert!(!shown.contains(TOKEN) && !format!("{err:?}").contains(TOKEN));
}

#[test]
fn a_refused_signal_fails_at_once_without_showing_the_token() {
    let heat = FakeHeat::start(&[401]);
    let err = signal::send(&quick_client(), &heat.endpoint, TOKEN, &SignalBody::success("n", "ok")).unwrap_err();
    let seen = heat.finish();
    assert_eq!(seen.len(), 1, "a 4xx is not retried");

    assert!(matches!(err, SignalError::Refused { status: 401, .. }), "{err:?}");
    let (shown, debug) = (err.to_string(), format!("{err:?}"));
    assert!(shown.contains("401") && shown.contains("refused") && shown.contains("requires authentication"), "{shown}");
    assert!(!shown.contains(TOKEN) && !debug.contains(TOKEN), "{shown} / {debug}");
}
