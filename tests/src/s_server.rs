//! `openssl s_server` as the mutual-TLS peer that client configs (kubeconfigs) are proven against: it
//! answers only a client whose certificate `ca` signed.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `openssl s_server -Verify 1 -verify_return_error -www` on 127.0.0.1; killed on drop.
#[derive(Debug)]
pub struct MutualTlsServer {
    child: Child,
    pub port: u16,
}

impl MutualTlsServer {
    /// Serves on `port` with `cert`/`key`, requiring client certificates from `ca`; its output goes to
    /// `log`. Returns once it accepts connections.
    pub fn start(port: u16, cert: &Path, key: &Path, ca: &Path, log: &Path) -> MutualTlsServer {
        let log = std::fs::File::create(log).unwrap();
        let child = Command::new("openssl")
            .args(["s_server", "-accept", &format!("127.0.0.1:{port}"), "-cert"])
            .arg(cert)
            .arg("-key")
            .arg(key)
            .arg("-CAfile")
            .arg(ca)
            .args(["-Verify", "1", "-verify_return_error", "-www"])
            .stdin(Stdio::piped())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let server = MutualTlsServer { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "openssl s_server did not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }
}

impl Drop for MutualTlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
