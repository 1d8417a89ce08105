//! The Heat signal against a real HTTP server on loopback standing in for Heat.

use hearth_agent::signal::{self, SignalBody, SignalError, Status};
use hearth_fragments::http::{Client, HttpSettings, RetryPolicy};
use hearth_tests::loopback::{Loopback, Reply, Request};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TOKEN: &str = "gAAAAABk-wait-handle-token-0123456789";
const PATH: &str = "/v1/tenant-1/stacks/k8s-abc/0a1b/resources/kube_masters-0-wait_handle/signal";

/// A fake Heat answering `statuses` in turn (the last one repeats), recording every request.
fn fake_heat(statuses: &[u16]) -> Loopback {
    Loopback::script(statuses.iter().map(|&status| {
        let answer = match status {
            200 => "null".to_string(),
            401 => r#"{"explanation": "The request you have made requires authentication.", "code": 401, "title": "Unauthorized"}"#.to_string(),
            _ => format!("<html><body>{status} Service Unavailable</body></html>"),
        };
        Reply::text(status, answer).header("Content-Type", "application/json")
    }))
}

/// A signal's body, which must be a JSON object.
fn json(seen: &Request) -> serde_json::Map<String, serde_json::Value> {
    serde_json::from_str(&seen.body).expect("the signal body is a JSON object")
}

fn client(request_timeout: Duration, deadline: Duration) -> Client {
    let settings = HttpSettings { request_timeout, connect_timeout: Duration::from_secs(2), ..HttpSettings::default() };
    let policy = RetryPolicy { initial_backoff: Duration::from_millis(50), deadline, ..RetryPolicy::default() };
    Client::new(&settings, policy).unwrap()
}

fn quick_client() -> Client {
    client(Duration::from_secs(5), Duration::from_secs(10))
}

fn assert_is_heat_signal(seen: &Request) {
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.url, PATH);
    assert_eq!(seen.header("X-Auth-Token"), Some(TOKEN));
    assert_eq!(seen.header("Content-Type"), Some("application/json"));
    assert_eq!(seen.header("Accept"), Some("application/json"));
    let mut keys: Vec<_> = json(seen).keys().cloned().collect();
    keys.sort();
    assert_eq!(keys, ["data", "id", "reason", "status"]);
}

#[test]
fn success_is_posted_once_with_heats_body() {
    let heat = fake_heat(&[200]);
    let body = SignalBody::success("k8s-master-0", "node ready: 14 steps ok");
    let sent = signal::send(&quick_client(), &heat.url(PATH), TOKEN, &body).unwrap();
    assert_eq!((sent.http_status, sent.attempts, sent.status), (200, 1, Status::Success));
    assert_eq!(sent.id, "k8s-master-0");
    assert!(sent.at > 1_600_000_000);

    let seen = heat.finish();
    assert_eq!(seen.len(), 1);
    assert_is_heat_signal(&seen[0]);
    assert_eq!(
        serde_json::Value::Object(json(&seen[0])),
        serde_json::json!({"status": "SUCCESS", "reason": "node ready: 14 steps ok", "data": "", "id": "k8s-master-0"})
    );
}

#[test]
fn failure_keeps_the_reason_intact() {
    let heat = fake_heat(&[200]);
    let reason = r#"part-006 certs: writing "/etc/kubernetes/certs/ca.crt": échec ✗ (\ backslash, 'quote')"#;
    let sent = signal::send(&quick_client(), &heat.url(PATH), TOKEN, &SignalBody::failure("minion-3", reason)).unwrap();
    assert_eq!(sent.status, Status::Failure);

    let seen = heat.finish();
    assert_eq!(seen.len(), 1);
    assert_is_heat_signal(&seen[0]);
    let body = json(&seen[0]);
    assert_eq!(body["status"], "FAILURE");
    assert_eq!(body["reason"], reason);
    assert_eq!(body["id"], "minion-3");
}

#[test]
fn unavailable_heat_is_retried_until_it_answers() {
    let heat = fake_heat(&[503, 503, 503, 200]);
    let sent = signal::send(&quick_client(), &heat.url(PATH), TOKEN, &SignalBody::success("n", "ok")).unwrap();
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
    let heat = fake_heat(&[401]);
    let err = signal::send(&quick_client(), &heat.url(PATH), TOKEN, &SignalBody::success("n", "ok")).unwrap_err();
    let seen = heat.finish();
    assert_eq!(seen.len(), 1, "a 4xx is not retried");

    assert!(matches!(err, SignalError::Refused { status: 401, .. }), "{err:?}");
    let (shown, debug) = (err.to_string(), format!("{err:?}"));
    assert!(shown.contains("401") && shown.contains("refused") && shown.contains("requires authentication"), "{shown}");
    assert!(!shown.contains(TOKEN) && !debug.contains(TOKEN), "{shown} / {debug}");
}
