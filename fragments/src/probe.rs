//! Waiting, within a budget, for a service of this node (etcd, the API server) to answer as healthy.
//!
//! One probe is one request through [`Host::http`] with the budget's remaining time as its retry
//! deadline, so connection errors, 5xx and 429 are retried by the run's one client and its backoff.
//! Answers the service gives while still starting (a 200 whose body says unhealthy, a 403 before the
//! API server's default roles exist) are judged by the caller and probed again after a short pause. When
//! the budget runs out the error holds the last probe's answer: its status and the end of its body.

use crate::host::Host;
use crate::http::{HttpError, Request, Response, RetryPolicy};
use anyhow::{anyhow, bail, Result};
use std::time::{Duration, Instant};

/// The time a wait may take, shared by the waits of one step.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    started: Instant,
    length: Duration,
}

impl Budget {
    pub fn new(length: Duration) -> Self {
        Budget { started: Instant::now(), length }
    }

    pub fn remaining(&self) -> Duration {
        self.length.saturating_sub(self.started.elapsed())
    }

    pub fn length(&self) -> Duration {
        self.length
    }
}

/// What a probe's answer says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Healthy,
    /// Not yet; why, as the failure reason would show it if the budget ran out now.
    NotYet(String),
    /// An answer waiting will not change.
    Broken(String),
}

impl Verdict {
    /// `NotYet` with the status and the end of the body of `response`.
    pub fn not_yet(response: &Response) -> Verdict {
        Verdict::NotYet(status_line(response))
    }
}

/// `HTTP 503: {"health":"false"}`: what a failure reason shows of an answer.
pub fn status_line(response: &Response) -> String {
    match response.text_tail(300) {
        tail if tail.is_empty() => format!("HTTP {} (empty body)", response.status),
        tail => format!("HTTP {}: {tail}", response.status),
    }
}

/// The pauses between probes that were answered but not healthy: doubling from half a second to five,
/// never past the budget.
fn pauses(budget: &Budget) -> RetryPolicy {
    RetryPolicy {
        initial_backoff: Duration::from_millis(500),
        max_backoff: Duration::from_secs(5),
        deadline: budget.length(),
        max_attempts: None,
    }
}

/// Probes with `request` until `judge` calls an answer healthy and returns it; `None` when the host sent
/// nothing (a dry run, or a rooted host, where the node's services do not run). `service` names what is
/// waited for in errors ("etcd at https://10.0.0.4:2379"), `what` the request in the journal.
pub fn wait_until(
    host: &Host,
    request: &Request,
    service: &str,
    what: &str,
    budget: &Budget,
    judge: impl Fn(&Response) -> Verdict,
) -> Result<Option<Response>> {
    let pauses = pauses(budget);
    let mut unhealthy = 0;
    let mut last = String::from("no probe finished");
    let probe = format!("{} {}", request.method, path_of(&request.url));
    loop {
        let remaining = budget.remaining();
        if remaining.is_zero() {
            bail!("{service} was not healthy within {}s; last probe {probe}: {last}", budget.length().as_secs());
        }
        let response = match host.http(&request.clone().retry_within(remaining), what) {
            Ok(None) => return Ok(None),
            Ok(Some(response)) => response,
            Err(HttpError::GaveUp { last, attempts, .. }) => bail!(
                "{service} was not healthy within {}s ({attempts} attempts); last probe {probe}: {last}",
                budget.length().as_secs()
            ),
            Err(e) => return Err(anyhow!(e).context(format!("probing {service}"))),
        };
        match judge(&response) {
            Verdict::Healthy => return Ok(Some(response)),
            Verdict::Broken(why) => bail!("{service} answered {probe} with {why}"),
            Verdict::NotYet(why) => last = why,
        }
        unhealthy += 1;
        // None once the budget is spent: the check at the top of the loop says so.
        if let Some(pause) = pauses.next_delay(unhealthy, budget.started.elapsed(), None) {
            std::thread::sleep(pause);
        }
    }
}

/// The path and query of a URL, for messages that already name the service.
fn path_of(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(url, |i| &url[i + 3..]);
    after_scheme.find('/').map_or("/", |i| &after_scheme[i..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::Mode;
    use crate::http::{Client, HttpSettings, RetryPolicy};
    use crate::test_server::TestServer;

    fn host() -> Host {
        let policy = RetryPolicy { initial_backoff: Duration::from_millis(20), ..RetryPolicy::default() };
        Host::new(Mode::System).with_http(Client::new(&HttpSettings::default(), policy))
    }

    fn ok_body(response: &Response) -> Verdict {
        match (response.status, response.body.as_slice()) {
            (200, b"ok") => Verdict::Healthy,
            (403, _) | (200, _) => Verdict::not_yet(response),
            _ => Verdict::Broken(status_line(response)),
        }
    }

    #[test]
    fn probes_until_healthy_through_retries_and_not_yet_answers() {
        let server = TestServer::script(&[(503, "starting"), (403, "forbidden"), (200, "not ok"), (200, "ok")]);
        let url = server.url("/healthz");
        let budget = Budget::new(Duration::from_secs(20));
        let answer = wait_until(&host(), &Request::get(&url), "the stand-in", "probing", &budget, ok_body).unwrap();
        assert_eq!(answer.unwrap().body, b"ok");
        assert_eq!(server.hits(), 4);
    }

    #[test]
    fn the_budget_bounds_the_wait_and_the_error_holds_the_last_answer() {
        for (answers, expected) in [
            (&[(500, "[-]etcd failed: reason withheld")][..], "HTTP 500: [-]etcd failed: reason withheld"),
            (&[(200, "almost")][..], "HTTP 200: almost"),
        ] {
            let server = TestServer::script(answers);
            let url = server.url("/healthz");
            let started = Instant::now();
            let budget = Budget::new(Duration::from_millis(1500));
            let err = wait_until(&host(), &Request::get(&url), "the stand-in", "probing", &budget, ok_body)
                .unwrap_err()
                .to_string();
            assert!(started.elapsed() < Duration::from_secs(4), "{:?}", started.elapsed());
            assert!(err.contains("the stand-in was not healthy within 1s"), "{err}");
            assert!(err.contains("last probe GET /healthz") && err.contains(expected), "{err}");
        }
    }

    #[test]
    fn a_broken_answer_ends_the_wait_at_once() {
        let server = TestServer::script(&[(401, "Unauthorized")]);
        let url = server.url("/healthz");
        let budget = Budget::new(Duration::from_secs(60));
        let err = wait_until(&host(), &Request::get(&url), "the stand-in", "probing", &budget, ok_body).unwrap_err();
        assert_eq!(err.to_string(), "the stand-in answered GET /healthz with HTTP 401: Unauthorized");
        assert_eq!(server.hits(), 1);
    }

    #[test]
    fn paths_leave_out_scheme_and_host() {
        assert_eq!(path_of("https://127.0.0.1:6443/readyz?verbose"), "/readyz?verbose");
        assert_eq!(path_of("http://127.0.0.1:2379"), "/");
    }
}
