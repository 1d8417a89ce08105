//! A master in a temporary root, for tests of the steps that talk to the master's own services (etcd, the
//! Kubernetes API): the bundled master example moved onto loopback, with its certificates issued by the
//! agent's own certs step against a [`StandInCloud`], so etcd and the API stand-in serve with, and the
//! steps present, exactly what a master holds.
//!
//! The node's address is `127.0.0.2`, its etcd (when started) serves TLS there and plain HTTP on
//! `127.0.0.1`, as Magnum's etcd.conf lays it out; steps run in-process on a rooted host that is told the
//! node's services are served ([`Host::sending`]).

use crate::etcd::{free_ports, EtcdctlTls, RealEtcd};
use crate::StandInCloud;
use anyhow::{bail, Result};
use hearth_fragments::config::native;
use hearth_fragments::facts::{Facts, OsFamily};
use hearth_fragments::host::{Action, Host, Mode};
use hearth_fragments::http::{Client, Destination, HttpSettings, RetryPolicy};
use hearth_fragments::step::{Context, Done};
use hearth_fragments::steps::{self, Implementation};
use hearth_fragments::{NodeConfig, Role};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Duration;

/// The master's address in these tests.
pub const NODE_IP: &str = "127.0.0.2";

/// A master's tree with its certificates.
#[derive(Debug)]
pub struct MasterNode {
    pub root: tempfile::TempDir,
    pub config: NodeConfig,
    pub cloud: StandInCloud,
}

/// What one step run came to: its result and everything its host recorded.
#[derive(Debug)]
pub struct StepRun {
    pub result: Result<Done>,
    pub actions: Vec<Action>,
}

impl StepRun {
    /// The error chain, or a panic naming what the step did instead.
    pub fn error(&self) -> String {
        match &self.result {
            Err(e) => format!("{e:#}"),
            Ok(done) => panic!("the step did not fail: {done:?}"),
        }
    }
}

/// The repository's master example as JSON.
pub fn master_example() -> Value {
    crate::rooted::node_example(Role::Master)
}

impl MasterNode {
    /// The master example on loopback, changed by `edit`, with its certificates from the certs step.
    pub fn new(edit: impl FnOnce(&mut Value)) -> Result<MasterNode> {
        let mut example = master_example();
        example["node"]["ip"] = json!(NODE_IP);
        example["node"]["public_ip"] = Value::Null;
        example["api"]["public_address"] = Value::Null;
        example["api"]["private_address"] = json!(NODE_IP);
        example["proxy"] = json!({});
        example["openstack"]["api_deadline_secs"] = json!(20);
        edit(&mut example);
        let cloud = StandInCloud::for_config(&mut example);
        let config = native::parse(&example.to_string(), "the edited master example", Some(Role::Master))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let root = tempfile::tempdir()?;
        std::fs::create_dir_all(root.path().join("etc"))?;
        std::fs::write(root.path().join("etc/os-release"), "ID=debian\n")?;
        let node = MasterNode { root, config, cloud };
        let certs = node.run("certs");
        if let Err(e) = &certs.result {
            bail!("the certs step failed: {e:#}");
        }
        Ok(node)
    }

    /// Where a node path lives in the tree.
    pub fn path(&self, node_path: &str) -> PathBuf {
        self.root.path().join(node_path.trim_start_matches('/'))
    }

    pub fn read(&self, node_path: &str) -> String {
        std::fs::read_to_string(self.path(node_path)).unwrap_or_else(|e| panic!("{node_path}: {e}"))
    }

    /// A client with a quick backoff, as the agent builds its own from the config.
    fn client(&self) -> Client {
        let settings = HttpSettings { extra_ca_pem: self.config.openstack.ca_pem.clone(), ..HttpSettings::default() };
        let policy = RetryPolicy {
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(1),
            deadline: Duration::from_secs(self.config.openstack.api_deadline_secs),
            max_attempts: None,
        };
        Client::new(&settings, policy).expect("a client")
    }

    /// Runs the master step `name` on a rooted host that reaches the node's services.
    pub fn run(&self, name: &str) -> StepRun {
        self.run_on(name, Host::new(Mode::Rooted(self.root.path().to_path_buf())).sending(Destination::NodeService))
    }

    /// Runs the master step `name` on `host` (given its HTTP client here).
    pub fn run_on(&self, name: &str, host: Host) -> StepRun {
        let host = host.with_http(Ok(self.client()));
        let entry = steps::find(Role::Master, name).unwrap_or_else(|| panic!("no master step {name}"));
        let Implementation::Step(step) = entry.implementation else { panic!("{name} is not implemented") };
        let facts = Facts { hostname: "k8s-demo-master-0".into(), os: OsFamily::Debian };
        let result = step(&Context { config: &self.config, facts: &facts, host: &host });
        StepRun { result, actions: host.take_actions() }
    }

    /// The certificates `etcdctl` shows: the master's own, as the steps do.
    pub fn etcdctl_tls(&self) -> EtcdctlTls {
        EtcdctlTls {
            ca: self.path("/etc/etcd/certs/ca.crt"),
            cert: self.path("/etc/etcd/certs/server.crt"),
            key: self.path("/etc/etcd/certs/server.key"),
        }
    }

    /// Writes `/etc/etcd/etcd.conf` as Magnum's configure-etcd did (TLS with client-certificate auth on
    /// the node's address, plain HTTP on 127.0.0.1, on free ports; the plain URL advertised first), plus
    /// `extra` lines, and starts a real etcd from it, serving with a copy of the master's certificate.
    pub fn start_etcd(&self, extra: &str) -> Result<RealEtcd> {
        let [tls_port, plain_port, peer_port] = free_ports();
        // etcd serves with copies (it rereads its files on every connection), so a test can change what
        // the steps present without changing what etcd serves.
        let certs = self.path("/srv/etcd-serving");
        std::fs::create_dir_all(&certs)?;
        for name in ["ca.crt", "server.crt", "server.key"] {
            std::fs::copy(self.path(&format!("/etc/etcd/certs/{name}")), certs.join(name))?;
        }
        let cert = |name: &str| certs.join(name).display().to_string();
        let conf = format!(
            "ETCD_NAME=\"{NODE_IP}\"\n\
             ETCD_DATA_DIR=\"/var/lib/etcd/default.etcd\"\n\
             ETCD_LISTEN_CLIENT_URLS=\"https://{NODE_IP}:{tls_port},http://127.0.0.1:{plain_port}\"\n\
             ETCD_LISTEN_PEER_URLS=\"https://{NODE_IP}:{peer_port}\"\n\
             ETCD_ADVERTISE_CLIENT_URLS=\"http://127.0.0.1:{plain_port},https://{NODE_IP}:{tls_port}\"\n\
             ETCD_INITIAL_ADVERTISE_PEER_URLS=\"https://{NODE_IP}:{peer_port}\"\n\
             ETCD_INITIAL_CLUSTER=\"{NODE_IP}=https://{NODE_IP}:{peer_port}\"\n\
             ETCD_TRUSTED_CA_FILE=\"{ca}\"\n\
             ETCD_CERT_FILE=\"{crt}\"\n\
             ETCD_KEY_FILE=\"{key}\"\n\
             ETCD_CLIENT_CERT_AUTH=true\n\
             ETCD_PEER_TRUSTED_CA_FILE=\"{ca}\"\n\
             ETCD_PEER_CERT_FILE=\"{crt}\"\n\
             ETCD_PEER_KEY_FILE=\"{key}\"\n\
             ETCD_PEER_CLIENT_CERT_AUTH=true\n\
             {extra}",
            ca = cert("ca.crt"),
            crt = cert("server.crt"),
            key = cert("server.key"),
        );
        let path = self.path("/etc/etcd/etcd.conf");
        std::fs::write(&path, conf)?;
        RealEtcd::start(&path, Some(self.etcdctl_tls()))
    }
}
