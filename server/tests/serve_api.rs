//! `hearth-server serve` against a real Keystone 30.0.0: Magnum's certificate API shapes, what a
//! trustee may have signed and what it may not, and every error a node can meet. Certificates are
//! judged by openssl; CSRs are made by openssl as Magnum's make-cert.sh made them.

mod serve_support;

use hearth_tests::keystone::{Keystone, Scope};
use serde_json::json;
use serve_support::*;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

/// Magnum's kubelet request (make-cert-client.sh), with a P-256 key instead of RSA 4096.
fn kubelet_csr(dir: &std::path::Path, name: &str) -> KeyAndCsr {
    openssl_csr(
        dir,
        name,
        "ec",
        &format!("/CN=system:node:{name}/O=system:nodes/OU=OpenStack\\/Magnum/C=US/ST=TX/L=Austin"),
        &[
            &format!("subjectAltName=IP:10.0.0.5,DNS:{name},IP:fd00::5"),
            "keyUsage=critical,digitalSignature,keyEncipherment",
            "extendedKeyUsage=clientAuth,serverAuth",
        ],
    )
}

#[test]
fn a_trustee_gets_its_ca_and_node_certificates_that_openssl_accepts() {
    let world = World::new(Keystone::shared().unwrap(), 2);
    let serve = world.serve(&[]);
    let cluster = &world.clusters[0].uuid;
    let dir = tempfile::tempdir().unwrap();

    // The CA, with an unscoped token: Magnum's answer shape and version headers.
    let unscoped = world.unscoped_token(0);
    let ca = serve.get_ca(cluster, &unscoped);
    assert_eq!(ca.status, 200, "{:?}", ca.body);
    assert_eq!(ca.body["cluster_uuid"], cluster.as_str());
    assert_eq!(ca.body["bay_uuid"], cluster.as_str());
    assert_eq!(
        ca.body["links"],
        json!([{"href": format!("{}/v1/certificates/{cluster}", serve.url), "rel": "self"},
               {"href": format!("{}/certificates/{cluster}", serve.url), "rel": "bookmark"}])
    );
    assert_eq!(ca.header("OpenStack-API-Version"), Some("container-infra 1.7"));
    assert_eq!(ca.header("OpenStack-API-Minimum-Version"), Some("container-infra 1.1"));
    assert_eq!(ca.header("OpenStack-API-Maximum-Version"), Some("container-infra 1.7"));
    let ca_path = write(dir.path(), "ca.crt", ca.body["pem"].as_str().unwrap());
    let ca_text = x509_text(&ca_path);
    assert!(ca_text.contains(&format!("Issuer: CN = {cluster}")) && ca_text.contains("CA:TRUE"), "{ca_text}");
    assert!(ca_text.contains("ASN1 OID: prime256v1"), "the CA key is ECDSA P-256: {ca_text}");
    let cluster_dir = world.state.path().join("clusters").join(cluster);
    let mode = |name: &str| std::fs::metadata(cluster_dir.join(name)).unwrap().permissions().mode() & 0o777;
    assert_eq!((mode("ca.key"), mode("ca.crt")), (0o600, 0o644));
    assert_eq!(std::fs::metadata(&cluster_dir).unwrap().permissions().mode() & 0o777, 0o700);
    assert_eq!(ca.body["pem"], std::fs::read_to_string(cluster_dir.join("ca.crt")).unwrap().as_str());

    // The kubelet certificate, with a trust-scoped token (the DESIGN's departure from Magnum).
    let trust_token = world.trust_token(0);
    let kubelet = kubelet_csr(dir.path(), "k8s-minion-0");
    let signed = serve.sign(cluster, &kubelet.csr, &trust_token);
    assert_eq!(signed.status, 201, "{:?}", signed.body);
    assert_eq!(signed.body["csr"], kubelet.csr.as_str());
    assert_eq!(
        (signed.body["cluster_uuid"].as_str(), signed.body["bay_uuid"].as_str()),
        (Some(cluster.as_str()), Some(cluster.as_str()))
    );
    assert_eq!(signed.body["links"][0]["rel"], "self");
    let cert = write(dir.path(), "kubelet.crt", signed.body["pem"].as_str().unwrap());
    assert!(openssl_verifies(&ca_path, &cert));
    let text = x509_text(&cert);
    for expected in [
        "Subject: CN = system:node:k8s-minion-0, O = system:nodes, OU = OpenStack/Magnum, C = US, ST = TX, L = Austin",
        &format!("Issuer: CN = {cluster}"),
        "IP Address:10.0.0.5, DNS:k8s-minion-0, IP Address:FD00:0:0:0:0:0:0:5",
        "X509v3 Key Usage: critical\n                Digital Signature, Key Encipherment",
        "TLS Web Server Authentication, TLS Web Client Authentication",
        "X509v3 Basic Constraints: critical\n                CA:FALSE",
        "Signature Algorithm: ecdsa-with-SHA256",
    ] {
        assert!(text.contains(expected), "{expected:?} missing from\n{text}");
    }
    assert!(!text.contains("CA:TRUE") && !text.contains("Certificate Sign"), "{text}");
    // Five years (Magnum's term_of_validity), from a day ago.
    let dates =
        run(std::process::Command::new("openssl").args(["x509", "-noout", "-checkend", "157000000", "-in"]).arg(&cert));
    assert!(dates.contains("will not expire"), "{dates}");
    assert!(!std::process::Command::new("openssl")
        .args(["x509", "-noout", "-checkend", "158000000", "-in"])
        .arg(&cert)
        .status()
        .unwrap()
        .success());
    // The key in the certificate is the CSR's.
    let cert_key = run(std::process::Command::new("openssl").args(["x509", "-noout", "-pubkey", "-in"]).arg(&cert));
    let own_key = run(std::process::Command::new("openssl").args(["pkey", "-pubout", "-in"]).arg(&kubelet.key));
    assert_eq!(cert_key, own_key);

    // kube-proxy with an RSA 2048 key and no extensions: the identity's default usage applies.
    let proxy = openssl_csr(dir.path(), "proxy", "rsa:2048", "/CN=system:kube-proxy/O=system:node-proxier", &[]);
    let signed = serve.sign(cluster, &proxy.csr, &unscoped);
    assert_eq!(signed.status, 201, "{:?}", signed.body);
    let cert = write(dir.path(), "proxy.crt", signed.body["pem"].as_str().unwrap());
    assert!(openssl_verifies(&ca_path, &cert));
    let text = x509_text(&cert);
    assert!(text.contains("Subject: CN = system:kube-proxy, O = system:node-proxier"), "{text}");
    assert!(text.contains("TLS Web Client Authentication") && !text.contains("TLS Web Server"), "{text}");
    assert!(text.contains("Public-Key: (2048 bit)"), "{text}");

    // The API server (Magnum's server.conf: CN=kubernetes, SANs, no keyUsage), bay_uuid as Magnum's old name.
    let server = openssl_csr(
        dir.path(),
        "server",
        "ec",
        "/CN=kubernetes",
        &[
            "subjectAltName=IP:127.0.0.1,IP:10.254.0.1,DNS:kubernetes,DNS:kubernetes.default.svc.cluster.local",
            "extendedKeyUsage=clientAuth,serverAuth",
        ],
    );
    let signed =
        serve.send("POST", "/v1/certificates", Some(&unscoped), Some(&json!({"bay_uuid": cluster, "csr": server.csr})));
    assert_eq!(signed.status, 201, "{:?}", signed.body);
    let cert = write(dir.path(), "server.crt", signed.body["pem"].as_str().unwrap());
    assert!(openssl_verifies(&ca_path, &cert));
    assert!(x509_text(&cert).contains("IP Address:127.0.0.1, IP Address:10.254.0.1, DNS:kubernetes"));

    // Another cluster's CA does not vouch for this cluster's certificates.
    let other = serve.get_ca(&world.clusters[1].uuid, &world.unscoped_token(1));
    assert_eq!(other.status, 200);
    let other_ca = write(dir.path(), "other-ca.crt", other.body["pem"].as_str().unwrap());
    assert!(!openssl_verifies(&other_ca, &cert));

    // Each decision is one line naming cluster, caller, subject and SANs — and no token.
    let line = serve.decision(signed.header("X-OpenStack-Request-Id").unwrap());
    assert!(line.starts_with("issued ") && line.contains(&format!("cluster={cluster}")), "{line}");
    assert!(
        line.contains(&format!("user={}", world.clusters[0].trustee.id)) && line.contains("cn=\"kubernetes\""),
        "{line}"
    );
    assert!(line.contains("sans=\"IP:127.0.0.1,IP:10.254.0.1,DNS:kubernetes"), "{line}");
    let log = serve.log().join("\n");
    for secret in [unscoped.as_str(), trust_token.as_str(), "service-password", "trustee-password"] {
        assert!(!log.contains(secret), "the log holds a secret");
    }
    assert!(!log.contains("PRIVATE KEY"));
    // A trust id is a secret to the agent (with the trustee's password it is a token): masked here too.
    assert!(!log.contains(&world.clusters[0].trust), "the log holds the trust id");
    assert!(log.contains("trust=********"), "{log}");
}

#[test]
fn forbidden_and_malformed_requests_are_refused_with_the_reason() {
    let keystone = Keystone::shared().unwrap();
    let world = World::new(keystone, 2);
    let serve = world.serve(&[]);
    let cluster = &world.clusters[0].uuid;
    let token = world.unscoped_token(0);
    let dir = tempfile::tempdir().unwrap();

    let refused = |csr: &KeyAndCsr, status: u16, hint: &str| {
        let answer = serve.sign(cluster, &csr.csr, &token);
        assert_eq!(answer.status, status, "{hint}: {:?}", answer.body);
        let detail = answer.error_detail();
        assert!(detail.contains(hint), "{detail:?} lacks {hint:?}");
        let line = serve.decision(answer.header("X-OpenStack-Request-Id").unwrap());
        assert!(line.starts_with("refused ") && line.contains(&format!("status={status}")), "{line}");
        assert!(line.contains(&format!("user={}", world.clusters[0].trustee.id)), "{line}");
        line
    };
    // Cluster-admin, whatever the CN.
    let masters = openssl_csr(dir.path(), "admin", "ec", "/CN=admin/O=system:masters", &[]);
    let line = refused(&masters, 403, "O=system:masters");
    assert!(line.contains("cn=\"admin\" o=\"system:masters\""), "{line}");
    let sneaky = openssl_csr(dir.path(), "sneaky", "ec", "/CN=system:node:x/O=system:nodes/O=system:masters", &[]);
    refused(&sneaky, 403, "system:masters");
    // A CA, or a CA's key usage.
    let ca = openssl_csr(dir.path(), "ca", "ec", "/CN=kubernetes", &["basicConstraints=critical,CA:TRUE"]);
    refused(&ca, 403, "CA:TRUE");
    let noncritical_ca = openssl_csr(dir.path(), "ca2", "ec", "/CN=kubernetes", &["basicConstraints=CA:TRUE"]);
    refused(&noncritical_ca, 403, "CA:TRUE");
    let signer =
        openssl_csr(dir.path(), "signer", "ec", "/CN=kubernetes", &["keyUsage=critical,digitalSignature,keyCertSign"]);
    refused(&signer, 403, "keyCertSign");
    // Identities that are neither a node's nor a master client's; a master client with a group.
    let cloud_controller = openssl_csr(dir.path(), "ccm", "ec", "/CN=system:cloud-controller-manager", &[]);
    refused(&cloud_controller, 403, "not a node identity");
    let grouped = openssl_csr(dir.path(), "kcm", "ec", "/CN=system:kube-controller-manager/O=system:nodes", &[]);
    refused(&grouped, 403, "without any O");
    let groupless = openssl_csr(dir.path(), "groupless", "ec", "/CN=system:node:x", &[]);
    refused(&groupless, 403, "O=system:nodes");
    let weak = openssl_csr(dir.path(), "weak", "rsa:1024", "/CN=system:kube-proxy", &[]);
    refused(&weak, 403, "1024 bits");
    let mail = openssl_csr(dir.path(), "mail", "ec", "/CN=kubernetes", &["subjectAltName=email:node@localhost"]);
    refused(&mail, 403, "email:node@localhost");

    // Malformed CSRs and bodies: 400 with the parse error.
    let mut broken = kubelet_csr(dir.path(), "broken");
    broken.csr = broken.csr.replacen("MII", "MIJ", 1);
    refused(&broken, 400, "not a valid PKCS#10 request");
    let not_pem = KeyAndCsr { key: dir.path().into(), csr: "hello".into() };
    refused(&not_pem, 400, "not PEM");
    let bad_json = serve.send("POST", "/v1/certificates", Some(&token), Some(&json!(["not", "an", "object"])));
    assert_eq!(bad_json.status, 400);
    assert!(bad_json.error_detail().contains("not a certificate request"), "{:?}", bad_json.body);
    let no_csr = serve.send("POST", "/v1/certificates", Some(&token), Some(&json!({"cluster_uuid": cluster})));
    assert_eq!((no_csr.status, no_csr.error_detail().contains("no csr")), (400, true));

    // Another cluster's trustee: 403, for the CA and for signing, with either kind of token.
    let kubelet = kubelet_csr(dir.path(), "k8s-minion-1");
    for foreign in [world.unscoped_token(1), world.trust_token(1)] {
        let answer = serve.sign(cluster, &kubelet.csr, &foreign);
        assert_eq!(answer.status, 403, "{:?}", answer.body);
        assert!(answer.error_detail().contains("is not the trustee of cluster"), "{:?}", answer.body);
        assert_eq!(serve.get_ca(cluster, &foreign).status, 403);
    }
    // The cluster owner is not its trustee either (Magnum let the owner in; nodes do not need it).
    let owner = keystone.token(&world.owner.id, &world.owner.password, Scope::Project(&world.project)).unwrap();
    assert_eq!(serve.get_ca(cluster, &owner).status, 403);

    // Tokens: absent, garbage, revoked → 401 with Keystone's WWW-Authenticate.
    let revoked = world.unscoped_token(0);
    keystone.revoke(&revoked).unwrap();
    for bad in [None, Some("gAAAAABnot-a-token"), Some(revoked.as_str())] {
        let answer =
            serve.send("POST", "/v1/certificates", bad, Some(&json!({"cluster_uuid": cluster, "csr": kubelet.csr})));
        assert_eq!(answer.status, 401, "{bad:?}: {:?}", answer.body);
        answer.error_detail();
        let line = serve.decision(answer.header("X-OpenStack-Request-Id").unwrap());
        assert!(line.contains(&format!("cluster={cluster} user=- status=401")), "{line}");
        assert_eq!(answer.header("WWW-Authenticate"), Some(format!("Keystone uri=\"{}\"", keystone.url()).as_str()));
    }

    // Unknown clusters: 404 for the CA, 400 for signing (Magnum's codes); no CA is made for them.
    let unknown = new_uuid();
    assert_eq!(serve.get_ca(&unknown, &token).status, 404);
    assert_eq!(serve.sign(&unknown, &kubelet.csr, &token).status, 400);
    assert_eq!(serve.get_ca("../../etc", &token).status, 404);
    assert!(!world.state.path().join("clusters").join(&unknown).exists());

    // Magnum's version rules and routes.
    let answer = serve.send("GET", &format!("/v1/certificates/{cluster}"), Some(&token), None);
    assert_eq!(answer.status, 200);
    let path = format!("/v1/certificates/{cluster}");
    let with_version = |version: &str| {
        serve.send_with("GET", &path, &[("X-Auth-Token", &token), ("OpenStack-API-Version", version)], None)
    };
    let too_new = with_version("container-infra 1.8");
    assert_eq!(too_new.status, 406);
    assert!(too_new.error_detail().contains("[container-infra 1.1, container-infra 1.7]"), "{:?}", too_new.body);
    let answer = with_version("container-infra 1.4");
    assert_eq!((answer.status, answer.header("OpenStack-API-Version")), (200, Some("container-infra 1.4")));
    let unversioned = serve.send_with("GET", &path, &[("X-Auth-Token", &token)], None);
    assert_eq!(unversioned.header("OpenStack-API-Version"), Some("container-infra 1.1"), "Magnum's default");
    assert_eq!(serve.send("GET", "/v1/clusters", Some(&token), None).status, 404);
    assert_eq!(serve.send("PUT", "/v1/certificates", Some(&token), None).status, 405);

    // A damaged CA on disk: 500, the caller told nothing about the server's files, the log everything.
    let damaged = world.state.path().join("clusters").join(&world.clusters[1].uuid);
    std::fs::write(damaged.join("ca.crt"), "not a certificate").unwrap();
    std::fs::write(damaged.join("ca.key"), "not a key").unwrap();
    let answer = serve.get_ca(&world.clusters[1].uuid, &world.unscoped_token(1));
    assert_eq!(answer.status, 500, "{:?}", answer.body);
    let detail = answer.error_detail();
    assert!(!detail.contains(world.state.path().to_str().unwrap()), "{detail}");
    let line = serve.decision(answer.header("X-OpenStack-Request-Id").unwrap());
    assert!(line.starts_with("failed ") && line.contains("ca.key"), "{line}");
}

#[test]
fn an_admin_may_act_for_any_cluster_but_still_gets_only_node_identities() {
    let keystone = Keystone::shared().unwrap();
    let world = World::new(keystone, 1);
    // Behind a TLS proxy: links name the proxy, not the Host header.
    let serve = world.serve(&["--token-cache-seconds", "0", "--public-url", "https://127.0.0.1:9511/"]);
    let cluster = &world.clusters[0].uuid;
    let dir = tempfile::tempdir().unwrap();
    let admin = keystone.admin_token();

    let ca = serve.get_ca(cluster, admin);
    assert_eq!(ca.status, 200);
    assert_eq!(ca.body["links"][0]["href"], format!("https://127.0.0.1:9511/v1/certificates/{cluster}"));
    let kubelet = kubelet_csr(dir.path(), "k8s-master-0");
    let signed = serve.sign(cluster, &kubelet.csr, admin);
    assert_eq!(signed.status, 201, "{:?}", signed.body);
    let line = serve.decision(signed.header("X-OpenStack-Request-Id").unwrap());
    assert!(line.contains("admin=true"), "{line}");
    let masters = openssl_csr(dir.path(), "admin", "ec", "/CN=admin/O=system:masters", &[]);
    assert_eq!(serve.sign(cluster, &masters.csr, admin).status, 403);

    // A member of the admin project without the admin role is nobody here.
    let project = keystone.create_project(&Keystone::unique("ops"), "default").unwrap();
    let member = keystone.create_user(&Keystone::unique("member"), "member-password", "default").unwrap();
    keystone.assign_role(&member.id, &project, "member").unwrap();
    let token = keystone.token(&member.id, &member.password, Scope::Project(&project)).unwrap();
    assert_eq!(serve.get_ca(cluster, &token).status, 403);
}

#[test]
fn concurrent_first_requests_share_one_new_ca() {
    let world = World::new(Keystone::shared().unwrap(), 2);
    let serve = world.serve(&[]);
    // Cluster 1 was registered by writing cluster.json (as render does): it has no CA yet.
    let cluster = world.clusters[1].uuid.clone();
    assert!(!world.state.path().join("clusters").join(&cluster).join("ca.crt").exists());
    let token = world.unscoped_token(1);
    let pems = std::thread::scope(|scope| {
        let handles = (0..24).map(|_| scope.spawn(|| serve.get_ca(&cluster, &token))).collect::<Vec<_>>();
        handles.into_iter().map(|h| h.join().unwrap()).collect::<Vec<_>>()
    });
    assert!(pems.iter().all(|a| a.status == 200), "{:?}", pems.iter().map(|a| a.status).collect::<Vec<_>>());
    assert!(pems.iter().all(|a| a.body["pem"] == pems[0].body["pem"]), "one CA for everyone");
    // serve's stderr reaches the test through a reader thread: wait for all 24 decision lines.
    let mut log = serve.log();
    for _ in 0..100 {
        if log.iter().filter(|l| l.contains(&format!("cluster={cluster}"))).count() >= 24 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        log = serve.log();
    }
    let created = log.iter().filter(|l| l.contains("reason=\"CA created and returned\"")).count();
    assert_eq!(created, 1, "{log:#?}");
}

#[test]
fn keystone_down_is_503_so_nodes_retry_and_recovery_needs_no_restart() {
    // A Keystone of its own: this test stops it.
    let mut keystone = Keystone::start().unwrap();
    let keystone_url = keystone.url().to_string();
    let service_project = Keystone::unique("service");
    let project_id = keystone.create_project(&service_project, "default").unwrap();
    let service = keystone.create_user(&Keystone::unique("hearth"), "service-password", "default").unwrap();
    keystone.assign_role(&service.id, &project_id, "service").unwrap();
    let domain = keystone.create_domain(&Keystone::unique("magnum")).unwrap();
    let trustee = keystone.create_user(&Keystone::unique("trustee"), "trustee-password", &domain).unwrap();
    let state = tempfile::tempdir().unwrap();
    let cluster = new_uuid();
    let out = std::process::Command::new(SERVER)
        .args(["ca", "init", "--cluster", &cluster, "--trustee-user-id", &trustee.id])
        .arg("--state")
        .arg(state.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let serve = Serve::start(&keystone_url, &service, &service_project, state.path(), &["--token-cache-seconds", "0"]);
    let token = keystone.token(&trustee.id, &trustee.password, Scope::Unscoped).unwrap();
    assert_eq!(serve.get_ca(&cluster, &token).status, 200);

    keystone.stop().unwrap();
    let started = Instant::now();
    let answer = serve.get_ca(&cluster, &token);
    assert_eq!(answer.status, 503, "{:?}", answer.body);
    assert!(started.elapsed() < Duration::from_secs(10), "answered in {:?}", started.elapsed());
    assert_eq!(answer.header("Retry-After"), Some("2"));
    let detail = answer.error_detail();
    assert!(detail.contains("cannot validate the token") && detail.contains("retry later"), "{detail}");
    let line = serve.decision(answer.header("X-OpenStack-Request-Id").unwrap());
    assert!(line.starts_with("failed ") && line.contains("status=503"), "{line}");
    assert!(line.contains("Connection refused") && !detail.contains("Connection refused"), "the log says why: {line}");
    assert!(line.contains(&format!("cluster={cluster} user=-")), "the log names the cluster even then: {line}");

    // Keystone back (same keys, same port): the same token works, serve was never restarted.
    keystone.restart().unwrap();
    assert_eq!(serve.get_ca(&cluster, &token).status, 200);
}

/// `hearth-server node …` on the world's first cluster, as an operator runs it next to serve.
fn node_command(world: &World, args: &[&str]) -> std::process::Output {
    let (subcommand, rest) = args.split_first().unwrap();
    std::process::Command::new(SERVER)
        .args(["node", subcommand, "--cluster", &world.clusters[0].uuid])
        .arg("--state")
        .arg(world.state.path())
        .args(rest)
        .output()
        .unwrap()
}

#[test]
fn a_node_denied_by_the_operator_is_refused_at_once_and_allowed_again() {
    let world = World::new(Keystone::shared().unwrap(), 1);
    let serve = world.serve(&[]);
    let cluster = &world.clusters[0].uuid;
    let token = world.trust_token(0);
    let dir = tempfile::tempdir().unwrap();
    let ca = serve.get_ca(cluster, &token);
    assert_eq!(ca.status, 200, "{:?}", ca.body);
    let ca_path = write(dir.path(), "ca.crt", ca.body["pem"].as_str().unwrap());
    let issued = |answer: &Answer, name: &str| {
        assert_eq!(answer.status, 201, "{name}: {:?}", answer.body);
        let cert = write(dir.path(), &format!("{name}.crt"), answer.body["pem"].as_str().unwrap());
        assert!(openssl_verifies(&ca_path, &cert), "{name}");
    };
    let ok = |out: std::process::Output| {
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };

    let suspect = kubelet_csr(dir.path(), "k8s-minion-1");
    issued(&serve.sign(cluster, &suspect.csr, &token), "before");

    let said = ok(node_command(&world, &["deny", "k8s-minion-1", "--reason", "suspected compromise, ticket OPS-42"]));
    assert!(said.contains("node k8s-minion-1 of cluster") && said.contains("is denied"), "{said}");
    // The same CSR to the same serve (never restarted): 403 in Magnum's error shape, with the reason.
    let refused = serve.sign(cluster, &suspect.csr, &token);
    assert_eq!(refused.status, 403, "{:?}", refused.body);
    assert_eq!(
        refused.error_detail(),
        "node k8s-minion-1 is denied certificates by the operator: suspected compromise, ticket OPS-42"
    );
    assert_eq!(refused.body["errors"][0]["title"], "Forbidden");
    let line = serve.decision(refused.header("X-OpenStack-Request-Id").unwrap());
    assert!(line.starts_with("refused ") && line.contains("cn=\"system:node:k8s-minion-1\""), "{line}");
    assert!(line.contains("status=403") && line.contains("ticket OPS-42") && !line.contains("serial="), "{line}");
    // An admin's token does not get past the operator either.
    assert_eq!(serve.sign(cluster, &suspect.csr, world.keystone.admin_token()).status, 403);

    // Other nodes, kube-proxy and the API server are not affected.
    let neighbour = kubelet_csr(dir.path(), "k8s-minion-0");
    issued(&serve.sign(cluster, &neighbour.csr, &token), "neighbour");
    let proxy = openssl_csr(dir.path(), "proxy", "ec", "/CN=system:kube-proxy/O=system:node-proxier", &[]);
    issued(&serve.sign(cluster, &proxy.csr, &token), "proxy");
    let server = openssl_csr(dir.path(), "server", "ec", "/CN=kubernetes", &["subjectAltName=DNS:kubernetes"]);
    issued(&serve.sign(cluster, &server.csr, &token), "server");

    // Denied without a reason: told only that.
    ok(node_command(&world, &["deny", "k8s-minion-2"]));
    let quiet = kubelet_csr(dir.path(), "k8s-minion-2");
    let silent = serve.sign(cluster, &quiet.csr, &token);
    assert_eq!(silent.status, 403, "{:?}", silent.body);
    assert_eq!(silent.error_detail(), "node k8s-minion-2 is denied certificates by the operator");

    // The list on disk is what the brief documents: 0600, name → reason and an RFC 3339 UTC time.
    let file = world.state.path().join("clusters").join(cluster).join("denied-nodes.json");
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    let list: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(list.as_object().unwrap().keys().collect::<Vec<_>>(), ["k8s-minion-1", "k8s-minion-2"]);
    assert_eq!(list["k8s-minion-1"]["reason"], "suspected compromise, ticket OPS-42");
    let at = list["k8s-minion-1"]["at"].as_str().unwrap();
    assert!(at.ends_with('Z'), "{at}");
    let at = time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).unwrap();
    assert!((time::OffsetDateTime::now_utc() - at).whole_minutes().abs() < 10, "{at}");
    let listed = ok(node_command(&world, &["list"]));
    assert_eq!(listed.lines().count(), 2, "{listed}");
    assert!(listed.starts_with("k8s-minion-1\t") && listed.contains("\tsuspected compromise, ticket OPS-42\n"));

    // Allowed again: the same CSR is signed at once; the other denial stands.
    let said = ok(node_command(&world, &["allow", "k8s-minion-1"]));
    assert!(said.contains("may obtain certificates again"), "{said}");
    issued(&serve.sign(cluster, &suspect.csr, &token), "after");
    assert_eq!(serve.sign(cluster, &quiet.csr, &token).status, 403);

    // A damaged list: nothing at all is signed for the cluster until it is repaired, and the log says
    // which file (the caller is told no path).
    std::fs::write(&file, "{\"k8s-minion-2\": ").unwrap();
    let issued_lines = || serve.log().iter().filter(|l| l.starts_with("issued ")).count();
    let issued_before = issued_lines();
    for csr in [&suspect.csr, &neighbour.csr, &proxy.csr, &server.csr] {
        let answer = serve.sign(cluster, csr, &token);
        assert_eq!(answer.status, 500, "{:?}", answer.body);
        assert!(answer.body.get("pem").is_none());
        let detail = answer.error_detail();
        assert!(detail.contains("deny list") && detail.contains("unreadable"), "{detail}");
        assert!(!detail.contains(world.state.path().to_str().unwrap()), "{detail}");
        let line = serve.decision(answer.header("X-OpenStack-Request-Id").unwrap());
        assert!(line.starts_with("failed ") && line.contains(&file.display().to_string()), "{line}");
    }
    // At error priority (a terminal's prefix, or journald's <3>).
    let error_line = |l: &String| l.starts_with("error: failed ") || l.starts_with("<3>failed ");
    assert!(serve.log().iter().any(|l| error_line(l) && l.contains("denied-nodes.json")), "{:#?}", serve.log());
    assert_eq!(issued_lines(), issued_before, "nothing was signed");
    // The CA is still served: it is not a signature.
    assert_eq!(serve.get_ca(cluster, &token).status, 200);
    // The CLI will not rewrite it either (that would drop its entries): exit 1, naming the file.
    let out = node_command(&world, &["deny", "k8s-minion-3"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&file.display().to_string()));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "{\"k8s-minion-2\": ");

    // Removed by the operator: everything is signed again, at once.
    std::fs::remove_file(&file).unwrap();
    issued(&serve.sign(cluster, &suspect.csr, &token), "repaired");
    issued(&serve.sign(cluster, &quiet.csr, &token), "list-removed");
}
