//! A real TCP load balancer at an Octavia VIP of a test network: Debian's haproxy, run in the hub
//! namespace with the VIP on the hub's bridge, relaying to the members' addresses with health checks,
//! as Octavia's amphorae do (they run haproxy too). The Octavia stand-in of Heat only hands out the VIP;
//! this is what answers there. `.ci/run` installs haproxy.

use crate::node::Network;
use anyhow::{bail, Context as _, Result};
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A running haproxy, stopped when dropped.
#[derive(Debug)]
pub struct LoadBalancer {
    child: Child,
    pub address: SocketAddr,
    pub members: Vec<SocketAddr>,
    dir: tempfile::TempDir,
}

impl LoadBalancer {
    /// Listens at `vip:port` in `network`'s hub and relays each connection to a healthy member
    /// (round robin; a member is out after two failed checks a second apart and back after one).
    pub fn start(network: &Arc<Network>, vip: Ipv4Addr, port: u16, members: &[SocketAddr]) -> Result<LoadBalancer> {
        network.add_hub_address(vip)?;
        let dir = tempfile::Builder::new().prefix("hearth-lb-").tempdir()?;
        let mut config = String::from(
            "global\n  maxconn 1024\n\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30m\n  \
             timeout server 30m\n\nfrontend vip\n",
        );
        let _ =
            writeln!(config, "  bind {vip}:{port}\n  default_backend members\n\nbackend members\n  balance roundrobin");
        for (i, member) in members.iter().enumerate() {
            let _ = writeln!(config, "  server m{i} {member} check inter 1s fall 2 rise 1");
        }
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, config)?;
        let log = std::fs::File::create(dir.path().join("haproxy.log"))?;
        let hub = format!("--net=/run/netns/{}", network.hub_name());
        let child = Command::new("nsenter")
            .args([hub.as_str(), "haproxy", "-db", "-f"])
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting haproxy (Debian package haproxy; .ci/run installs it)")?;
        let mut lb = LoadBalancer { child, address: SocketAddr::from((vip, port)), members: members.to_vec(), dir };
        lb.wait_listening(&hub)?;
        Ok(lb)
    }

    fn wait_listening(&mut self, hub: &str) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("haproxy exited ({status}):\n{}", self.log());
            }
            let out = Command::new("nsenter").args([hub, "ss", "-Hltn"]).output().context("running ss")?;
            if String::from_utf8_lossy(&out.stdout).contains(&self.address.to_string()) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("haproxy did not listen at {} within 20 s:\n{}", self.address, self.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// What haproxy printed.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("haproxy.log")).unwrap_or_default()
    }
}

impl Drop for LoadBalancer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
