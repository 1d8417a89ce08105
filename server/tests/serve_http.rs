//! `hearth-server serve` as an HTTP server: the health endpoint, the connection bound and timeouts set
//! in its settings, graceful stop on SIGTERM, and its log lines' timestamps. The real binary on
//! loopback; where Keystone must answer, a loopback stand-in speaking its token API.

mod serve_support;

use hearth_tests::loopback::{Loopback, Reply};
use serde_json::json;
use serve_support::{is_timestamp, SERVER};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CLUSTER: &str = "5d12f6fd-a196-4bf0-ae4c-1f639a523a52";
/// Nothing listens here: tests that never reach Keystone name it.
const NO_KEYSTONE: &str = "http://127.0.0.1:9/v3";

/// A running `serve` child, its address and its stderr lines.
struct Serving {
    child: Child,
    addr: String,
    log: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

impl Serving {
    /// `serve` with `connections` as its settings' `connections:` section (YAML flow mapping).
    fn start(connections: &str, keystone: &str, env: &[(&str, &str)]) -> Serving {
        let dir = tempfile::tempdir().unwrap();
        register(dir.path());
        let settings = dir.path().join("serve.yaml");
        std::fs::write(
            &settings,
            format!(
                "listen: 127.0.0.1:0\nstate_dir: {}\nkeystone:\n  url: {keystone}\n  \
                 service_user: {{id: svc, password: service-pw, project_id: service}}\nconnections: {{{connections}}}\n",
                dir.path().join("state").display()
            ),
        )
        .unwrap();
        let mut command = Command::new(SERVER);
        command.args(["serve", "--settings"]).arg(&settings).env_remove("JOURNAL_STREAM");
        for (name, value) in env {
            command.env(name, value);
        }
        let (child, url, log) = serve_support::spawn_logged(&mut command);
        let addr = url.trim_start_matches("http://").to_string();
        Serving { child, addr, log, _dir: dir }
    }

    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Waits (a while) for a log line containing `text`.
    fn wait_for_line(&self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(line) = self.log().into_iter().find(|l| l.contains(text)) {
                return line;
            }
            assert!(Instant::now() < deadline, "no line with {text:?}: {:#?}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(&self.addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        stream
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `CLUSTER` registered with trustee `trustee`, as `ca init --trustee-user-id` does it.
fn register(state_parent: &Path) {
    let out = Command::new(SERVER)
        .args(["ca", "init", "--cluster", CLUSTER, "--trustee-user-id", "trustee", "--state"])
        .arg(state_parent.join("state"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// One HTTP/1.1 exchange on `stream`, kept alive: the status line and the body.
fn exchange(stream: &mut TcpStream, request: &str) -> (String, String) {
    stream.write_all(request.as_bytes()).unwrap();
    read_response(stream)
}

fn read_response(stream: &mut TcpStream) -> (String, String) {
    let mut reader = BufReader::new(stream);
    let mut status = String::new();
    reader.read_line(&mut status).unwrap();
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap();
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    assert!(reader.buffer().is_empty(), "nothing after the answer");
    (status.trim_end().to_string(), String::from_utf8(body).unwrap())
}

/// Whether the server has closed `stream` (end of file or reset) within the stream's read timeout.
fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => panic!("unexpected bytes from the server"),
        Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => false,
        Err(_) => true,
    }
}

const HEALTH: &str = "GET /healthz HTTP/1.1\r\nHost: serve\r\n\r\n";

#[test]
fn healthz_answers_200_without_a_token_and_log_lines_carry_their_time_off_journald() {
    let serve = Serving::start("", NO_KEYSTONE, &[]);
    let mut stream = serve.connect();
    let (status, body) = exchange(&mut stream, HEALTH);
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&body).unwrap(), json!({"status": "ok"}));
    // HEAD too (a load balancer's probe), on the same kept-alive connection.
    stream.write_all(b"HEAD /healthz HTTP/1.1\r\nHost: serve\r\n\r\n").unwrap();
    let mut head = String::new();
    let mut reader = BufReader::new(&mut stream);
    reader.read_line(&mut head).unwrap();
    assert_eq!(head.trim_end(), "HTTP/1.1 200 OK");
    // Only the certificate API needs a token.
    let (status, _) =
        exchange(&mut serve.connect(), &format!("GET /v1/certificates/{CLUSTER} HTTP/1.1\r\nHost: s\r\n\r\n"));
    assert_eq!(status, "HTTP/1.1 401 Unauthorized");
    serve.wait_for_line("refused request=");

    let log = serve.log();
    assert!(!log.is_empty());
    for line in &log {
        let time = line.split(' ').next().unwrap();
        assert!(is_timestamp(time), "a line without its time: {line:?}");
    }
    let first = log[0].split(' ').next().unwrap();
    let now = time_now_utc();
    assert_eq!(&first[..10], &now[..10], "the date is today's, in UTC: {first} vs {now}");

    // Under journald (which records the time itself) a line starts with its priority instead.
    let journald = Serving::start("", NO_KEYSTONE, &[("JOURNAL_STREAM", "8:12345")]);
    let line = journald.wait_for_line("listening on");
    assert!(line.starts_with("<6>hearth-server: listening on http://"), "{line}");
}

/// Today's date and time in UTC, `YYYY-MM-DDTHH:MM:SS`, from `date`.
fn time_now_utc() -> String {
    let out = Command::new("date").args(["-u", "+%Y-%m-%dT%H:%M:%S"]).output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn an_idle_connection_is_closed_after_the_idle_timeout_and_a_busy_one_is_kept() {
    let serve = Serving::start("idle_timeout_seconds: 2, header_timeout_seconds: 30", NO_KEYSTONE, &[]);

    // Kept alive while it is used: requests in a row, faster than the idle timeout, share one connection.
    let mut busy = serve.connect();
    let started = Instant::now();
    for _ in 0..8 {
        assert_eq!(exchange(&mut busy, HEALTH).0, "HTTP/1.1 200 OK");
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(started.elapsed() > Duration::from_secs(2), "the connection outlived one idle timeout while busy");
    // Then quiet: closed by the server (the read timeout is 15 s).
    assert!(closed_by_server(&mut busy), "a kept-alive connection left idle is closed");

    // A connection that never sends anything is idle from the start.
    let mut silent = serve.connect();
    let opened = Instant::now();
    assert!(closed_by_server(&mut silent), "a silent connection is closed");
    assert!(opened.elapsed() < Duration::from_secs(10), "closed by the idle timeout: {:?}", opened.elapsed());
}

#[test]
fn a_slow_header_is_cut_off_after_the_header_timeout_even_while_bytes_arrive() {
    let serve = Serving::start("idle_timeout_seconds: 60, header_timeout_seconds: 1", NO_KEYSTONE, &[]);
    let mut slow = serve.connect();
    slow.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\n").unwrap();
    let started = Instant::now();
    let mut cut = false;
    // A header line every 200 ms for up to 20 s: never idle, never complete.
    for n in 0..100 {
        if slow.write_all(format!("X-Slow-{n}: 1\r\n").as_bytes()).is_err() || closed_by_server(&mut slow) {
            cut = true;
            break;
        }
    }
    assert!(cut, "a header trickling for {:?} was not cut off", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(30), "cut by the header timeout, not the idle one");

    // A whole header is answered, of course.
    assert_eq!(exchange(&mut serve.connect(), HEALTH).0, "HTTP/1.1 200 OK");
}

#[test]
fn a_body_that_does_not_arrive_in_time_is_a_408_and_the_connection_closes() {
    let serve = Serving::start("body_timeout_seconds: 1", NO_KEYSTONE, &[]);
    let mut stream = serve.connect();
    stream
        .write_all(
            b"POST /v1/certificates HTTP/1.1\r\nHost: s\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n\
              {\"cluster_",
        )
        .unwrap();
    let (status, body) = read_response(&mut stream);
    assert_eq!(status, "HTTP/1.1 408 Request Timeout");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["errors"][0]["status"], 408, "{body}");
    assert!(body["errors"][0]["detail"].as_str().unwrap().contains("within 1 s"), "{body}");
    assert!(closed_by_server(&mut stream), "the rest of that body is not read as a request");
    assert!(serve.wait_for_line("status=408").contains("refused request="));

    // The body limit still holds: past 64 KiB is a 413.
    let big = "x".repeat(64 * 1024 + 1);
    let (status, _) = exchange(
        &mut serve.connect(),
        &format!("POST /v1/certificates HTTP/1.1\r\nHost: s\r\nContent-Length: {}\r\n\r\n{big}", big.len()),
    );
    assert_eq!(status, "HTTP/1.1 413 Payload Too Large");
}

#[test]
fn connections_over_the_bound_wait_until_one_closes() {
    let serve = Serving::start("max: 2, idle_timeout_seconds: 60", NO_KEYSTONE, &[]);
    let mut first = serve.connect();
    let mut second = serve.connect();
    assert_eq!(exchange(&mut first, HEALTH).0, "HTTP/1.1 200 OK");
    assert_eq!(exchange(&mut second, HEALTH).0, "HTTP/1.1 200 OK");

    // A third connection is made (the kernel queues it) but not served while two are open.
    let mut third = serve.connect();
    third.write_all(HEALTH.as_bytes()).unwrap();
    third.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let mut byte = [0u8; 1];
    let waited = third.read(&mut byte);
    assert!(
        matches!(&waited, Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)),
        "the third connection was served over the bound: {waited:?}"
    );
    // One closes: the waiting one is served.
    drop(first);
    third.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    assert_eq!(read_response(&mut third).0, "HTTP/1.1 200 OK");
    assert_eq!(exchange(&mut second, HEALTH).0, "HTTP/1.1 200 OK", "the open ones still work");
}

#[test]
fn max_connections_beyond_the_file_descriptor_limit_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("prlimit")
        .arg("--nofile=256:256")
        .arg(SERVER)
        .args(["serve", "--listen", "127.0.0.1:0", "--keystone-url", NO_KEYSTONE, "--service-user", "hearth"])
        .arg("--state")
        .arg(dir.path())
        .env("HEARTH_SERVICE_PASSWORD", "pw")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("connections.max 1024 needs 1088 file descriptors") && stderr.contains("256"), "{stderr}");
}

#[test]
fn bad_connection_settings_exit_2_naming_the_field_and_value() {
    let dir = tempfile::tempdir().unwrap();
    let settings = dir.path().join("serve.yaml");
    std::fs::write(
        &settings,
        "listen: 127.0.0.1:0\nkeystone: {url: http://127.0.0.1:9, service_user: {id: s, password: p}}\n\
         connections: {idle_timeout_seconds: 0}\n",
    )
    .unwrap();
    let out = Command::new(SERVER)
        .args(["serve", "--state"])
        .arg(dir.path())
        .arg("--settings")
        .arg(&settings)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("connections.idle_timeout_seconds must be from 1 to 86400 seconds, not 0"), "{stderr}");
}

/// Keystone's token API, validating `tok-*` tokens as the trustee's after `delay`.
fn slow_keystone(delay: Duration) -> Loopback {
    Loopback::builder()
        .workers(4)
        .serve(move |request| {
            let expires = "2999-01-01T00:00:00.000000Z";
            if request.method == "POST" {
                return Reply::text(201, json!({"token": {"expires_at": expires}}).to_string())
                    .header("X-Subject-Token", "service-token");
            }
            std::thread::sleep(delay);
            match request.header("X-Subject-Token") {
                Some(token) if token.starts_with("tok-") => Reply::text(
                    200,
                    json!({"token": {"user": {"id": "trustee"}, "expires_at": expires, "roles": []}}).to_string(),
                ),
                _ => Reply::text(404, json!({"error": {"code": 404}}).to_string()),
            }
        })
        .unwrap()
}

#[test]
fn sigterm_lets_the_request_in_flight_finish_and_refuses_new_connections() {
    let keystone = slow_keystone(Duration::from_millis(1500));
    let serve = Serving::start("shutdown_timeout_seconds: 20", &keystone.url("/v3"), &[]);
    let mut stream = serve.connect();
    let request = format!(
        "GET /v1/certificates/{CLUSTER} HTTP/1.1\r\nHost: s\r\nX-Auth-Token: tok-1\r\n\
         OpenStack-API-Version: container-infra latest\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).unwrap();
    // In flight once serve is asking Keystone about the token.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !keystone.requests().iter().any(|r| r.method == "GET") {
        assert!(Instant::now() < deadline, "serve never validated the token");
        std::thread::sleep(Duration::from_millis(10));
    }
    let pid = rustix::process::Pid::from_child(&serve.child);
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    serve.wait_for_line("SIGTERM: no longer accepting connections");
    assert!(TcpStream::connect(&serve.addr).is_err(), "a new connection after SIGTERM is refused");

    let (status, body) = read_response(&mut stream);
    assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(body["pem"].as_str().unwrap().starts_with("-----BEGIN CERTIFICATE-----"), "{body}");
    assert!(closed_by_server(&mut stream), "the connection closes once its request is answered");

    let mut child = serve;
    let status = child.child.wait().unwrap();
    assert!(status.success(), "serve exits 0 after a graceful stop: {status}");
    let stopped = child.wait_for_line("hearth-server: stopped");
    assert!(!stopped.contains("still busy"), "{stopped}");
}

/// A second SIGTERM during the graceful stop (an operator pressing Ctrl-C twice, or a supervisor that
/// will not wait) ends serve at once, naming how many connections it cut off.
#[test]
fn a_second_sigterm_stops_at_once() {
    let keystone = slow_keystone(Duration::from_secs(10));
    let serve = Serving::start("shutdown_timeout_seconds: 60", &keystone.url("/v3"), &[]);
    let mut stream = serve.connect();
    let request = format!(
        "GET /v1/certificates/{CLUSTER} HTTP/1.1\r\nHost: s\r\nX-Auth-Token: tok-1\r\n\
         OpenStack-API-Version: container-infra latest\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !keystone.requests().iter().any(|r| r.method == "GET") {
        assert!(Instant::now() < deadline, "serve never validated the token");
        std::thread::sleep(Duration::from_millis(10));
    }
    let pid = rustix::process::Pid::from_child(&serve.child);
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    serve.wait_for_line("SIGTERM: no longer accepting connections; finishing the requests of 1 open");
    let second = Instant::now();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let mut child = serve;
    let status = child.child.wait().unwrap();
    assert!(second.elapsed() < Duration::from_secs(5), "stopped {:?} after the second SIGTERM", second.elapsed());
    assert!(status.success(), "{status}");
    child.wait_for_line("SIGTERM again: stopped now, cutting off 1 busy connection(s)");
}
