//! A loopback HTTP server for this crate's unit tests, which cannot use `hearth-tests` (that crate
//! depends on this one): it answers each request with what a function makes of its number and URL, keeps
//! every URL asked for, and stops when dropped.

use std::sync::{Arc, Mutex};

pub(crate) type Answer = tiny_http::Response<std::io::Cursor<Vec<u8>>>;

pub(crate) struct TestServer {
    server: Arc<tiny_http::Server>,
    asked: Arc<Mutex<Vec<String>>>,
}

impl TestServer {
    /// Answers the `n`th request (from 0), for `url`, with `answer(n, url)`.
    pub(crate) fn start(answer: impl Fn(usize, &str) -> Answer + Send + 'static) -> TestServer {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let asked = Arc::new(Mutex::new(Vec::new()));
        let (incoming, log) = (server.clone(), asked.clone());
        std::thread::spawn(move || {
            for request in incoming.incoming_requests() {
                let url = request.url().to_string();
                let n = {
                    let mut log = log.lock().unwrap();
                    log.push(url.clone());
                    log.len() - 1
                };
                let _ = request.respond(answer(n, &url));
            }
        });
        TestServer { server, asked }
    }

    /// Answers with `answers` (status, text) in turn, the last one again and again after them.
    pub(crate) fn script(answers: &[(u16, &str)]) -> TestServer {
        let answers: Vec<(u16, String)> = answers.iter().map(|(status, body)| (*status, body.to_string())).collect();
        TestServer::start(move |n, _| {
            let (status, body) = &answers[n.min(answers.len() - 1)];
            tiny_http::Response::from_string(body.clone()).with_status_code(*status)
        })
    }

    /// `http://127.0.0.1:PORT` followed by `path`.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.server.server_addr().to_ip().unwrap())
    }

    /// Every URL asked for so far, in order.
    pub(crate) fn asked(&self) -> Vec<String> {
        self.asked.lock().unwrap().clone()
    }

    /// How many requests it got.
    pub(crate) fn hits(&self) -> usize {
        self.asked.lock().unwrap().len()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.server.unblock();
    }
}
