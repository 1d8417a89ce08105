//! The heat-params loader against Magnum Stein's layouts and hostile values.

use hearth_fragments::config::fields::{STEIN_MASTER_KEYS, STEIN_MINION_KEYS};
use hearth_fragments::config::{heat_params, native, Role};

fn example(name: &str) -> String {
    let path = format!("{}/../examples/heat-params/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn keys_of(text: &str) -> Vec<&str> {
    text.lines().filter_map(|l| l.split_once('=')).map(|(k, _)| k).collect()
}

#[test]
fn stein_master_sample_loads_every_key() {
    let text = example("stein-master");
    assert_eq!(keys_of(&text), STEIN_MASTER_KEYS, "the sample keeps Magnum's 84 keys in Magnum's order");
    let loaded = heat_params::parse(&text, "stein-master", None).unwrap();
    let c = &loaded.config;
    assert_eq!(c.role, Role::Master, "KUBE_API_PRIVATE_ADDRESS marks a Stein master");
    assert_eq!(c.api.private_address, Some("10.0.0.4".parse().unwrap()));
    assert_eq!(c.api.port, 6443);
    assert_eq!(c.etcd.volume.size, 10);
    assert!(c.kubernetes.allow_privileged && c.kubernetes.keystone_auth_enabled && !c.cluster.tls_disabled);
    assert_eq!(c.runtime.enable_cinder, None, "the unsubstituted $ENABLE_CINDER counts as not given");
    assert!(loaded.warnings.iter().any(|w| w.contains("ENABLE_CINDER")));
    assert_eq!(c.openstack.trustee_password.expose(), "Tr'u$tee`Pa%ss\\word");
    let sa = c.kubernetes.service_account_key.as_str();
    assert!(sa.starts_with("-----BEGIN PUBLIC KEY-----\n") && sa.ends_with("\n-----END PUBLIC KEY-----"), "{sa}");
    assert!(c.kubernetes.service_account_private_key.expose().contains("\n-----END PRIVATE KEY-----"));
    assert_eq!(c.network.services_cidr.to_string(), "10.254.0.0/16");
    assert!(c.signal.endpoint.is_empty(), "Stein masters have no wait condition");
    assert!(c.magnum_extra.is_empty());
}

#[test]
fn stein_minion_sample_loads_every_key_and_the_wait_condition() {
    let text = example("stein-minion");
    assert_eq!(keys_of(&text), STEIN_MINION_KEYS);
    let c = heat_params::parse(&text, "stein-minion", None).unwrap().config;
    assert_eq!(c.role, Role::Minion, "KUBE_MASTER_IP marks a Stein minion");
    assert_eq!(c.api.master_ip, Some("10.0.0.4".parse().unwrap()));
    assert_eq!(c.node.public_ip, None, "an empty value is not given");
    assert_eq!(c.registry.chunksize, 5_242_880);
    assert!(c.signal.endpoint.starts_with("http://127.0.0.1:8004/v1/"));
    assert!(c.signal.endpoint.ends_with("/resources/minion_wait_handle/signal"));
    assert!(c.signal.token.expose().starts_with("gAAAAAB"));
}

#[test]
fn hostile_values_come_through_exactly() {
    let cases = [
        (r#"TRUSTEE_PASSWORD="a\"b'c""#, "a\"b'c"),
        (r#"TRUSTEE_PASSWORD="$HOME and ${X} stay""#, "$HOME and ${X} stay"),
        ("TRUSTEE_PASSWORD=\"`id` $(id)\"", "`id` $(id)"),
        (r#"TRUSTEE_PASSWORD="back\\slash \d""#, "back\\slash \\d"),
        (r#"TRUSTEE_PASSWORD="line1\nline2""#, "line1\nline2"),
        (r#"TRUSTEE_PASSWORD="k=v=w""#, "k=v=w"),
        (r#"TRUSTEE_PASSWORD="ünïcødé ✓ 密码""#, "ünïcødé ✓ 密码"),
        ("TRUSTEE_PASSWORD='single $quoted \\n'", "single $quoted \\n"),
        ("TRUSTEE_PASSWORD=bare%value", "bare%value"),
    ];
    for (line, expected) in cases {
        let c = heat_params::parse(line, "t", Some(Role::Minion)).unwrap_or_else(|e| panic!("{line}: {e}")).config;
        assert_eq!(c.openstack.trustee_password.expose(), expected, "{line}");
    }
}

#[test]
fn bad_lines_and_values_are_errors_naming_line_and_key() {
    let text = "KUBE_API_PORT=\"64x3\"\nnot a line\nTLS_DISABLED=\"maybe\"\nPORTAL_NETWORK_CIDR=\"10.254.0.1/16\"\n\
                TRUSTEE_PASSWORD=\"unterminated\nKUBE_TAG=\"a\"\nKUBE_TAG=\"b\"\nKUBE_NODE_IP=\"10.0.0\"\n";
    let errors = heat_params::parse(text, "bad", Some(Role::Minion)).unwrap_err();
    let shown = errors.to_string();
    let expect = [
        (1, "KUBE_API_PORT", "64x3"),
        (2, "not a line", ""),
        (3, "TLS_DISABLED", "maybe"),
        (4, "PORTAL_NETWORK_CIDR", "10.254.0.1/16"),
        (5, "TRUSTEE_PASSWORD", ""),
        (7, "KUBE_TAG", "b"),
        (8, "KUBE_NODE_IP", "10.0.0"),
    ];
    for (line, key, value) in expect {
        assert!(
            errors.errors.iter().any(|e| e.line == Some(line) && e.key == key && e.value == value),
            "no error for line {line} {key}={value:?} in:\n{shown}"
        );
    }
    assert!(shown.starts_with("bad: 7 errors"), "{shown}");
}

#[test]
fn secrets_in_bad_values_are_masked() {
    let errors = heat_params::parse("WAIT_CURL=\"curl -H 'X-Auth-Token: s3cr3t-token'\"\n", "t", Some(Role::Minion))
        .unwrap_err()
        .to_string();
    assert!(errors.contains("WAIT_CURL") && !errors.contains("s3cr3t"), "{errors}");
}

#[test]
fn role_comes_from_the_file_or_the_command_line_and_they_must_agree() {
    assert_eq!(heat_params::parse("NODEGROUP_ROLE=\"worker\"\n", "t", None).unwrap().config.role, Role::Minion);
    assert_eq!(heat_params::parse("KUBE_TAG=\"v1\"\n", "t", Some(Role::Master)).unwrap().config.role, Role::Master);
    let unknown = heat_params::parse("KUBE_TAG=\"v1\"\n", "t", None).unwrap_err().to_string();
    assert!(unknown.contains("--role"), "{unknown}");
    let clash = heat_params::parse("NODEGROUP_ROLE=\"master\"\n", "t", Some(Role::Minion)).unwrap_err().to_string();
    assert!(clash.contains("--role says minion"), "{clash}");
}

#[test]
fn written_heat_params_read_back_to_the_same_config_with_unknown_keys_kept() {
    for name in ["stein-master", "stein-minion"] {
        let mut text = example(name);
        text.push_str("NODEGROUP_NAME=\"default-worker\"\nFUTURE_KEY=\"a \\\"quoted\\\" $value\"\n");
        let first = heat_params::parse(&text, name, None).unwrap().config;
        assert_eq!(first.magnum_extra["FUTURE_KEY"], "a \"quoted\" $value");
        let again = heat_params::parse(&heat_params::render(&first), name, None).unwrap().config;
        assert_eq!(again, first, "{name}");
        // And the native form carries the same values.
        assert_eq!(native::parse(&native::render(&first), name, None).unwrap(), first);
    }
}
