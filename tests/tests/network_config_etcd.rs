//! The network-config step against a real etcd (Debian's etcd-server 3.4) on loopback, laid out as
//! Magnum's configure-etcd did it: TLS with client-certificate auth on the node's address (127.0.0.2),
//! plain HTTP on 127.0.0.1, serving with the certificates the agent's certs step issued. The step writes
//! flannel's network config; `etcdctl` reads it back through the API flannel would use; a second run
//! changes nothing (same etcd revision); etcd without the v2 API and a client from another CA fail with
//! reasons.

use hearth_fragments::host::{ActionKind, Outcome};
use hearth_fragments::manifests::flannel_network_config;
use hearth_fragments::step::Done;
use hearth_tests::master_node::{MasterNode, StepRun};
use serde_json::{json, Value};

const KEY: &str = "/atomic.io/network/config";

fn remote(run: &StepRun) -> Vec<(String, Outcome)> {
    run.actions.iter().filter(|a| a.kind == ActionKind::Remote).map(|a| (a.target.clone(), a.outcome)).collect()
}

fn requests(run: &StepRun) -> Vec<String> {
    run.actions.iter().filter(|a| a.kind == ActionKind::Http).map(|a| a.target.clone()).collect()
}

fn master(flannel_tag: &str) -> MasterNode {
    MasterNode::new(|c| {
        c["network"]["flannel_tag"] = json!(flannel_tag);
        c["network"]["flannel_cidr"] = json!("10.100.0.0/16");
        c["network"]["flannel_subnet_len"] = json!(26);
        c["network"]["flannel_backend"] = json!("host-gw");
        c["agent"]["health_deadline_secs"] = json!(20);
    })
    .unwrap()
}

#[test]
fn flannel_before_0_18_gets_a_v2_key_that_etcdctl_reads_back_and_a_second_run_keeps() {
    let node = master("v0.10.0-amd64");
    let etcd = node.start_etcd("ETCD_ENABLE_V2=true\n").unwrap();

    let first = node.run("network-config");
    assert_eq!(first.result.as_ref().unwrap(), &Done::Applied, "{:#?}", first.actions);
    assert_eq!(remote(&first), [(format!("etcd v2 key {KEY}"), Outcome::Changed)]);
    let url = &etcd.client_url;
    assert!(url.starts_with("https://127.0.0.2:"), "{url}");
    assert_eq!(
        requests(&first),
        [format!("GET {url}/health"), format!("GET {url}/v2/keys{KEY}"), format!("PUT {url}/v2/keys{KEY}")],
        "the TLS URL, though etcd.conf advertises the plain one first"
    );

    let stored = etcd.etcdctl(2, &["get", KEY]).unwrap();
    let expected = r#"{"Network": "10.100.0.0/16", "Subnetlen": 26, "Backend": {"Type": "host-gw"}}"#;
    assert_eq!(stored.trim(), expected);
    assert_eq!(expected, flannel_network_config(&node.config));
    assert_eq!(etcd.etcdctl(3, &["get", KEY]).unwrap(), "", "v2 and v3 are separate key spaces");

    let modified = |etcd: &hearth_tests::etcd::RealEtcd| -> u64 {
        let out = etcd.etcdctl(2, &["-o", "extended", "get", KEY]).unwrap();
        let line = out.lines().find(|l| l.starts_with("Modified-Index:")).unwrap_or_else(|| panic!("{out}"));
        line.split(':').nth(1).unwrap().trim().parse().unwrap()
    };
    let before = modified(&etcd);
    let second = node.run("network-config");
    assert_eq!(second.result.as_ref().unwrap(), &Done::Applied);
    assert_eq!(remote(&second), [(format!("etcd v2 key {KEY}"), Outcome::Unchanged)]);
    assert!(!requests(&second).iter().any(|r| r.starts_with("PUT")), "{:?}", requests(&second));
    assert_eq!(modified(&etcd), before, "the second run wrote the key again");
}

#[test]
fn flannel_0_18_and_later_gets_a_v3_key_and_a_changed_config_is_rewritten() {
    let mut node = master("v0.26.7");
    let etcd = node.start_etcd("").unwrap();

    let first = node.run("network-config");
    assert_eq!(first.result.as_ref().unwrap(), &Done::Applied, "{:#?}", first.actions);
    assert_eq!(remote(&first), [(format!("etcd v3 key {KEY}"), Outcome::Changed)]);
    let url = &etcd.client_url;
    assert_eq!(
        requests(&first),
        [
            format!("GET {url}/health"),
            format!("GET {url}/version"),
            format!("POST {url}/v3/kv/range"),
            format!("POST {url}/v3/kv/put"),
        ]
    );
    let value = etcd.etcdctl(3, &["get", KEY, "--print-value-only"]).unwrap();
    let parsed: Value = serde_json::from_str(value.trim()).unwrap();
    assert_eq!(parsed, json!({"Network": "10.100.0.0/16", "Subnetlen": 26, "Backend": {"Type": "host-gw"}}));

    let revision = |etcd: &hearth_tests::etcd::RealEtcd| -> Value {
        let out = etcd.etcdctl(3, &["get", KEY, "-w", "json"]).unwrap();
        serde_json::from_str::<Value>(&out).unwrap()["kvs"][0]["mod_revision"].clone()
    };
    let before = revision(&etcd);
    let second = node.run("network-config");
    assert_eq!(remote(&second), [(format!("etcd v3 key {KEY}"), Outcome::Unchanged)]);
    assert_eq!(revision(&etcd), before, "the second run wrote the key again");

    // An operator's value in another formatting is the same config: left alone.
    etcd.etcdctl(3, &["put", KEY, r#"{"Backend":{"Type":"host-gw"},"Subnetlen":26,"Network":"10.100.0.0/16"}"#])
        .unwrap();
    assert_eq!(remote(&node.run("network-config")), [(format!("etcd v3 key {KEY}"), Outcome::Unchanged)]);

    node.config.network.flannel_backend = hearth_fragments::config::FlannelBackend::Vxlan;
    let changed = node.run("network-config");
    assert_eq!(remote(&changed), [(format!("etcd v3 key {KEY}"), Outcome::Changed)]);
    let value = etcd.etcdctl(3, &["get", KEY, "--print-value-only"]).unwrap();
    assert!(value.contains(r#""Backend": {"Type": "vxlan"}"#), "{value}");
}

#[test]
fn etcd_without_the_v2_api_is_named_as_the_reason() {
    let node = master("v0.11.0");
    let _etcd = node.start_etcd("").unwrap();
    let run = node.run("network-config");
    let err = run.error();
    assert!(err.contains("does not serve the v2 API") && err.contains("ETCD_ENABLE_V2=true"), "{err}");
    assert!(err.contains("HTTP 404"), "{err}");
}

#[test]
fn etcd_refuses_a_client_certificate_from_another_ca_and_the_step_says_so() {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let node = master("v0.26.7");
    let _etcd = node.start_etcd("").unwrap();
    // A CA of the same name, and a client certificate from it in place of the master's.
    let ca_key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, node.config.cluster.uuid.as_str());
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let issuer = Issuer::new(params, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(Vec::<String>::new()).unwrap();
    leaf.distinguished_name.push(DnType::CommonName, "kubernetes");
    std::fs::write(node.path("/etc/etcd/certs/server.crt"), leaf.signed_by(&key, &issuer).unwrap().pem()).unwrap();
    std::fs::write(node.path("/etc/etcd/certs/server.key"), key.serialize_pem()).unwrap();

    let started = std::time::Instant::now();
    let err = node.run("network-config").error();
    assert!(err.contains("TLS") && err.contains("BadCertificate"), "etcd refused the certificate: {err}");
    assert!(started.elapsed().as_secs() < 10, "a refused certificate is not retried for the whole budget");
}

#[test]
fn calico_clusters_write_nothing_into_etcd() {
    let node = MasterNode::new(|c| c["network"]["driver"] = json!("calico")).unwrap();
    let run = node.run("network-config");
    assert!(matches!(&run.result, Ok(Done::Skipped(why)) if why.contains("calico")), "{:?}", run.result);
    assert!(run.actions.is_empty(), "{:?}", run.actions);
}

#[test]
fn with_tls_disabled_the_step_talks_plain_http() {
    use hearth_tests::etcd::{free_port, RealEtcd};
    let node = MasterNode::new(|c| {
        c["cluster"]["tls_disabled"] = json!(true);
        c["network"]["flannel_tag"] = json!("v0.26.7");
    })
    .unwrap();
    assert!(!node.path("/etc/etcd/certs/server.key").exists(), "no certificates without TLS");
    let (client, peer) = (free_port(), free_port());
    let conf = node.path("/etc/etcd/etcd.conf");
    std::fs::create_dir_all(conf.parent().unwrap()).unwrap();
    std::fs::write(
        &conf,
        format!(
            "ETCD_NAME=\"127.0.0.2\"\nETCD_LISTEN_CLIENT_URLS=\"http://127.0.0.2:{client}\"\n\
             ETCD_ADVERTISE_CLIENT_URLS=\"http://127.0.0.2:{client}\"\nETCD_LISTEN_PEER_URLS=\"http://127.0.0.2:{peer}\"\n\
             ETCD_INITIAL_ADVERTISE_PEER_URLS=\"http://127.0.0.2:{peer}\"\n\
             ETCD_INITIAL_CLUSTER=\"127.0.0.2=http://127.0.0.2:{peer}\"\n"
        ),
    )
    .unwrap();
    let etcd = RealEtcd::start(&conf, None).unwrap();
    let run = node.run("network-config");
    assert_eq!(run.result.as_ref().unwrap(), &Done::Applied, "{:#?}", run.actions);
    assert!(requests(&run).iter().all(|r| r.contains(&format!(" http://127.0.0.2:{client}/"))), "{:?}", requests(&run));
    let value = etcd.etcdctl(3, &["get", KEY, "--print-value-only"]).unwrap();
    assert_eq!(value.trim(), flannel_network_config(&node.config));
}
