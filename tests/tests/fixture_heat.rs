//! Proves the standalone Heat fixture (`hearth_tests::heat`) with a small cluster-like template of its
//! own: a ResourceGroup of "node" stacks, each with a port, a stand-in server whose RAW user-data holds
//! its wait handle's endpoint and token, and a wait condition. Real Heat 27.0.1 runs every resource.
//!
//! Tests that run at the same time share one Heat (`Heat::shared`); each uses its own stack name. One
//! test starts a Heat of its own whose handle endpoints name the nodes' gateway, and boots a node (root,
//! systemd-nspawn: see `fixture_node`) that signals through it.

use hearth_tests::heat::{self, Heat, HeatError, HeatOptions, StackId, WaitHandle};
use hearth_tests::node::network::{STANDIN_GATEWAY, STANDIN_PREFIX_LEN};
use hearth_tests::node::{Network, Node, NodeOptions};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

/// A generous bound for a few nested stacks on a loaded 2-core machine (they take a few seconds).
const CREATE_TIMEOUT: Duration = Duration::from_secs(240);

/// Every character a shell, a YAML writer, a `%` formatter or a JSON encoder might mangle.
const HOSTILE: &str = "it's \"quoted\" $HOME ${PATH} `id` $(id) %s %(name)s 100% \\ back\\slash \\n \
                       tab\tline\nnext é ✓ 日本 🚀 {{x}} </end>";

/// The server's user-data, before Heat's `str_replace`.
const USER_DATA_TEMPLATE: &str = "#!/bin/sh\n\
    # node __INDEX__ of a Hearth fixture stack; a hostile value: __HOSTILE__\n\
    curl -X POST '__ENDPOINT__' -H 'X-Auth-Token: __TOKEN__' -d '{\"status\": \"SUCCESS\"}'\n";

const CLUSTER: &str = r#"heat_template_version: 2018-08-31
description: Hearth fixture proof - N nodes that each wait for a signal.
parameters:
  node_count: {type: number, default: 2}
  hostile: {type: string}
  wait_timeout: {type: number, default: 600}
resources:
  network:
    type: OS::Neutron::Net
    properties: {name: private}
  subnet:
    type: OS::Neutron::Subnet
    properties: {network: {get_resource: network}, cidr: 10.0.0.0/24, ip_version: 4}
  nodes:
    type: OS::Heat::ResourceGroup
    properties:
      count: {get_param: node_count}
      resource_def:
        type: node.yaml
        properties:
          index: '%index%'
          network: {get_resource: network}
          subnet: {get_resource: subnet}
          hostile: {get_param: hostile}
          wait_timeout: {get_param: wait_timeout}
outputs:
  node_addresses: {value: {get_attr: [nodes, address]}}
  node_names: {value: {get_attr: [nodes, name]}}
  signal_data: {value: {get_attr: [nodes, signal_data]}}
"#;

/// `node.yaml`; the user-data template (e.g. [`USER_DATA_TEMPLATE`]) goes in as a JSON string (a valid
/// YAML double-quoted scalar), so it reaches Heat exactly as spelt.
fn node_template(server_extra: &str, user_data_template: &str) -> String {
    format!(
        r#"heat_template_version: 2018-08-31
parameters:
  index: {{type: string}}
  network: {{type: string}}
  subnet: {{type: string}}
  hostile: {{type: string}}
  wait_timeout: {{type: number}}
resources:
  port:
    type: OS::Neutron::Port
    properties:
      network: {{get_param: network}}
      fixed_ips: [{{subnet: {{get_param: subnet}}}}]
  handle:
    type: OS::Heat::WaitConditionHandle
  server:
    type: OS::Nova::Server
    properties:
      name: {{list_join: ['-', ['node', {{get_param: index}}]]}}
      image: debian-12
      flavor: m1.small
      networks: [{{port: {{get_resource: port}}}}]
      metadata: {{role: worker}}{server_extra}
      user_data_format: RAW
      user_data:
        str_replace:
          template: {template}
          params:
            __INDEX__: {{get_param: index}}
            __HOSTILE__: {{get_param: hostile}}
            __ENDPOINT__: {{get_attr: [handle, endpoint]}}
            __TOKEN__: {{get_attr: [handle, token]}}
  wait:
    type: OS::Heat::WaitCondition
    depends_on: server
    properties:
      handle: {{get_resource: handle}}
      count: 1
      timeout: {{get_param: wait_timeout}}
outputs:
  address: {{value: {{get_attr: [port, fixed_ips, 0, ip_address]}}}}
  name: {{value: {{get_attr: [server, name]}}}}
  signal_data: {{value: {{get_attr: [wait, data]}}}}
"#,
        template = serde_json::to_string(user_data_template).unwrap()
    )
}

fn cluster_body(name: &str, nodes: usize, wait_timeout: u64, server_extra: &str) -> Value {
    cluster_body_with(name, nodes, wait_timeout, server_extra, USER_DATA_TEMPLATE)
}

fn cluster_body_with(
    name: &str,
    nodes: usize,
    wait_timeout: u64,
    server_extra: &str,
    user_data_template: &str,
) -> Value {
    heat::with_standins(json!({
        "stack_name": name,
        "template": CLUSTER,
        "files": { "node.yaml": node_template(server_extra, user_data_template) },
        "environment": {},
        "parameters": { "node_count": nodes, "hostile": HOSTILE, "wait_timeout": wait_timeout },
        "timeout_mins": 10,
    }))
    .unwrap()
}

/// Waits until every node's server and handle exist (the stack then sits waiting for signals).
fn wait_for_nodes(heat: &Heat, stack: &StackId, nodes: usize) -> Vec<WaitHandle> {
    heat.wait_resources(stack, "OS::Nova::Server", nodes, CREATE_TIMEOUT).unwrap();
    let handles = heat.wait_handles(stack).unwrap();
    assert_eq!(handles.len(), nodes, "{handles:?}");
    handles
}

fn node_of(path: &str) -> &str {
    path.rsplit_once('/').map(|(node, _)| node).unwrap_or(path)
}

fn success(handle: &WaitHandle) {
    let node = node_of(&handle.path);
    handle
        .signal(&json!({ "status": "SUCCESS", "reason": "ready", "data": format!("data of {node}"), "id": node }))
        .unwrap();
}

#[test]
fn a_two_node_stack_waits_for_every_handle_and_completes_with_byte_exact_user_data() {
    let heat = Heat::shared().unwrap();
    eprintln!("Heat start: {:?}", heat.start_times());
    let body = cluster_body("fixture-two-nodes", 2, 600, "");
    let started = Instant::now();
    let stack = heat.create_stack(&body).unwrap();
    let handles = wait_for_nodes(&heat, &stack, 2);
    let created = started.elapsed();

    // Every server exists and every handle has a token, yet nothing was signalled: Heat waits.
    std::thread::sleep(Duration::from_millis(1500));
    let state = heat.stack(&stack).unwrap();
    assert_eq!(state.status, "CREATE_IN_PROGRESS", "{}", state.status_reason);

    let servers = heat.servers(&stack).unwrap();
    assert_eq!(servers.len(), 2);
    for server in &servers {
        let node = node_of(&server.path);
        let index = node.rsplit('/').next().unwrap();
        let handle = handles.iter().find(|h| node_of(&h.path) == node).expect("a handle beside each server");
        assert!(handle.endpoint.starts_with(&format!("http://127.0.0.1:{}/v1/", heat.port())), "{handle:?}");
        let expected = USER_DATA_TEMPLATE
            .replace("__INDEX__", index)
            .replace("__HOSTILE__", HOSTILE)
            .replace("__ENDPOINT__", &handle.endpoint)
            .replace("__TOKEN__", &handle.token);
        assert_eq!(server.user_data.as_bytes(), expected.as_bytes(), "user-data of {}", server.path);
        assert_eq!(server.user_data_format, "RAW");
        assert_eq!(server.name, format!("node-{index}"));
        assert!(server.first_address.starts_with("10.0."), "{server:?}");
    }

    for handle in &handles {
        success(handle);
    }
    let done = heat.wait(&stack, &["CREATE_COMPLETE"], CREATE_TIMEOUT).unwrap();
    eprintln!(
        "2 nodes: all servers and handles after {:.1} s; CREATE_COMPLETE {:.1} s after the create request \
         (including a deliberate 1.5 s pause and the user-data checks before signalling)",
        created.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );

    assert_eq!(done.outputs["node_names"], json!(["node-0", "node-1"]));
    let addresses: BTreeSet<&str> =
        done.outputs["node_addresses"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    // Random per port (a pair collides once in 10,000 runs).
    assert_eq!(addresses.len(), 2, "{:?}", done.outputs["node_addresses"]);
    for address in &addresses {
        let ip: std::net::Ipv4Addr = address.parse().unwrap();
        assert_eq!(ip.octets()[..2], [10, 0], "{ip}");
    }
    // What each node sent arrived in its wait condition's data, keyed by the signal's id.
    let data = done.outputs["signal_data"].as_array().unwrap();
    for (index, node_data) in data.iter().enumerate() {
        let parsed: Value = serde_json::from_str(node_data.as_str().unwrap()).unwrap();
        assert_eq!(parsed, json!({ format!("nodes/{index}"): format!("data of nodes/{index}") }));
    }
    heat.delete(&stack, CREATE_TIMEOUT).unwrap();
}

/// A stack update as a resize makes it: 2 → 3 nodes (only the new one waits for its signal) → 1, the
/// servers that stay keeping their ids. Heat on SQLite reuses row ids, which broke this until the
/// launcher rebuilt Heat's tables with AUTOINCREMENT.
#[test]
fn a_stack_scales_up_and_down_by_update_keeping_its_servers() {
    let heat = Heat::shared().unwrap();
    let stack = heat.create_stack(&cluster_body("fixture-scaling", 2, 600, "")).unwrap();
    for handle in wait_for_nodes(&heat, &stack, 2) {
        success(&handle);
    }
    heat.wait(&stack, &["CREATE_COMPLETE"], CREATE_TIMEOUT).unwrap();
    let ids = |heat: &Heat| -> Vec<(String, String)> {
        let mut servers: Vec<_> =
            heat.servers(&stack).unwrap().into_iter().map(|s| (node_of(&s.path).to_string(), s.id)).collect();
        servers.sort();
        servers
    };
    let before = ids(&heat);

    let started = Instant::now();
    heat.update_stack(&stack, &json!({ "parameters": { "node_count": 3 } })).unwrap();
    let handles = wait_for_nodes(&heat, &stack, 3);
    let new: Vec<_> = handles.iter().filter(|h| !before.iter().any(|(node, _)| node == node_of(&h.path))).collect();
    assert_eq!(new.len(), 1, "{handles:?}");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(heat.stack(&stack).unwrap().status, "UPDATE_IN_PROGRESS", "the new node's signal is awaited");
    success(new[0]);
    let grown = heat.wait(&stack, &["UPDATE_COMPLETE"], CREATE_TIMEOUT).unwrap();
    eprintln!("2 → 3 nodes: UPDATE_COMPLETE {:.1} s after the update request", started.elapsed().as_secs_f64());
    assert_eq!(grown.outputs["node_names"], json!(["node-0", "node-1", "node-2"]));
    let after = ids(&heat);
    assert_eq!(after[..2], before[..], "the servers that were there keep their ids");

    let started = Instant::now();
    heat.update_stack(&stack, &json!({ "parameters": { "node_count": 1 } })).unwrap();
    let shrunk = heat.wait(&stack, &["UPDATE_COMPLETE"], CREATE_TIMEOUT).unwrap();
    eprintln!("3 → 1 nodes: UPDATE_COMPLETE {:.1} s after the update request", started.elapsed().as_secs_f64());
    assert_eq!(shrunk.outputs["node_names"], json!(["node-0"]));
    assert_eq!(ids(&heat), before[..1]);
    heat.delete(&stack, CREATE_TIMEOUT).unwrap();
}

#[test]
fn one_failure_signal_fails_the_stack_with_its_reason() {
    let heat = Heat::shared().unwrap();
    let stack = heat.create_stack(&cluster_body("fixture-one-failure", 2, 600, "")).unwrap();
    let handles = wait_for_nodes(&heat, &stack, 2);
    let reason = "part-006 certs: openssl req failed: 'bad' \"key\" $X 100%";
    let (failing, others) = handles.split_last().unwrap();
    for handle in others {
        success(handle);
    }
    failing.signal(&json!({ "status": "FAILURE", "reason": reason, "data": "", "id": "failing" })).unwrap();
    let failed = heat.wait(&stack, &["CREATE_FAILED"], CREATE_TIMEOUT).unwrap();
    assert!(failed.status_reason.contains("WaitConditionFailure"), "{}", failed.status_reason);
    assert!(failed.status_reason.contains(reason), "{}", failed.status_reason);
}

#[test]
fn a_wait_condition_nobody_signals_times_out_in_wall_clock_time() {
    let heat = Heat::shared().unwrap();
    let stack = heat.create_stack(&cluster_body("fixture-timeout", 1, 4, "")).unwrap();
    wait_for_nodes(&heat, &stack, 1);
    let waiting_since = Instant::now();
    let failed = heat.wait(&stack, &["CREATE_FAILED"], CREATE_TIMEOUT).unwrap();
    assert!(failed.status_reason.contains("WaitConditionTimeout"), "{}", failed.status_reason);
    assert!(failed.status_reason.contains("0 of 1 received"), "{}", failed.status_reason);
    // The scaled pacing sleeps must not shorten a timeout (4 s, counted from the wait condition's start,
    // which is after the server we waited for).
    assert!(waiting_since.elapsed() >= Duration::from_secs(2), "timed out after {:?}", waiting_since.elapsed());
}

#[test]
fn an_unknown_server_property_is_refused_as_the_real_type_would() {
    let heat = Heat::shared().unwrap();
    let (registry, files) = heat::standins().unwrap();
    let top_level = r#"heat_template_version: 2018-08-31
resources:
  server:
    type: OS::Nova::Server
    properties: {image: debian-12, flavor: m1.small, user_data_formatt: RAW}
"#;
    let body = json!({
        "stack_name": "fixture-unknown-property",
        "template": top_level,
        "files": files,
        "environment": { "resource_registry": registry },
    });
    let err = heat.create_stack(&body).unwrap_err();
    let message = err.rejection_message().unwrap_or_else(|| panic!("not a rejection: {err}"));
    assert!(message.contains("Unknown Property user_data_formatt"), "{message}");
    assert!(matches!(err, HeatError::Rejected { status: 400, .. }), "{err}");

    // A wrong value for a known property is refused too (allowed values come from the real schema).
    let bad_value = top_level.replace("user_data_formatt: RAW", "user_data_format: RAWR");
    let err = heat
        .create_stack(&json!({ "stack_name": "fixture-bad-value", "template": bad_value,
        "files": body["files"], "environment": body["environment"] }))
        .unwrap_err();
    assert!(err.rejection_message().unwrap_or_default().contains("\"RAWR\" is not an allowed value"), "{err}");

    // Inside a resource group's nested template, Heat finds it during the create at the latest.
    let nested = cluster_body("fixture-unknown-nested", 1, 600, "\n      no_such_property: 1");
    match heat.create_stack(&nested) {
        Err(e) => {
            assert!(e.rejection_message().unwrap_or_default().contains("Unknown Property no_such_property"), "{e}");
        }
        Ok(stack) => {
            let failed = heat.wait(&stack, &["CREATE_FAILED"], CREATE_TIMEOUT).unwrap();
            assert!(failed.status_reason.contains("Unknown Property no_such_property"), "{}", failed.status_reason);
        }
    }

    // The same stand-in accepts the real property names.
    let good = top_level.replace("user_data_formatt: RAW", "user_data_format: RAW");
    heat.validate(&good).unwrap();
}

/// Every type the stand-ins replace, with the properties a Magnum-like cluster uses.
const EVERY_STANDIN: &str = r##"heat_template_version: 2018-08-31
resources:
  net:
    type: OS::Neutron::Net
    properties: {name: private}
  subnet:
    type: OS::Neutron::Subnet
    properties: {network: {get_resource: net}, cidr: 10.0.0.0/24, dns_nameservers: [127.0.0.53]}
  router:
    type: OS::Neutron::Router
    properties: {external_gateway_info: {network: public}}
  router_interface:
    type: OS::Neutron::RouterInterface
    properties: {router: {get_resource: router}, subnet: {get_resource: subnet}}
  secgroup:
    type: OS::Neutron::SecurityGroup
    properties: {rules: [{protocol: tcp, port_range_min: 22, port_range_max: 22}]}
  secgroup_rule:
    type: OS::Neutron::SecurityGroupRule
    properties: {security_group: {get_resource: secgroup}, protocol: tcp, port_range_min: 6443, port_range_max: 6443}
  server_group:
    type: OS::Nova::ServerGroup
    properties: {policies: [anti-affinity]}
  port:
    type: OS::Neutron::Port
    properties:
      network: {get_resource: net}
      fixed_ips: [{subnet: {get_resource: subnet}}]
      security_groups: [{get_resource: secgroup}]
      allowed_address_pairs: [{ip_address: 10.100.0.0/16}]
  floating_ip:
    type: OS::Neutron::FloatingIP
    properties: {floating_network: public}
  floating_ip_association:
    type: OS::Neutron::FloatingIPAssociation
    properties: {floatingip_id: {get_resource: floating_ip}, port_id: {get_resource: port}}
  volume:
    type: OS::Cinder::Volume
    properties: {size: 10, volume_type: fast}
  server:
    type: OS::Nova::Server
    properties:
      image: debian-12
      flavor: m1.small
      key_name: ops
      networks: [{port: {get_resource: port}}]
      scheduler_hints: {group: {get_resource: server_group}}
      metadata: {role: master}
      config_drive: true
      user_data_format: RAW
      user_data: "#cloud-config\n{}\n"
  volume_attachment:
    type: OS::Cinder::VolumeAttachment
    properties: {instance_uuid: {get_resource: server}, volume_id: {get_resource: volume}, mountpoint: /dev/vdb}
  loadbalancer:
    type: OS::Octavia::LoadBalancer
    properties: {vip_subnet: {get_resource: subnet}}
  listener:
    type: OS::Octavia::Listener
    properties: {loadbalancer: {get_resource: loadbalancer}, protocol: TCP, protocol_port: 6443}
  pool:
    type: OS::Octavia::Pool
    properties: {listener: {get_resource: listener}, lb_algorithm: ROUND_ROBIN, protocol: TCP}
  pool_member:
    type: OS::Octavia::PoolMember
    properties:
      pool: {get_resource: pool}
      address: {get_attr: [port, fixed_ips, 0, ip_address]}
      protocol_port: 6443
      subnet: {get_resource: subnet}
  health_monitor:
    type: OS::Octavia::HealthMonitor
    properties: {pool: {get_resource: pool}, type: TCP, delay: 5, max_retries: 3, timeout: 5}
outputs:
  fixed_ips: {value: {get_attr: [port, fixed_ips]}}
  floating_ip_address: {value: {get_attr: [floating_ip, floating_ip_address]}}
  vip_address: {value: {get_attr: [loadbalancer, vip_address]}}
  vip_port_id: {value: {get_attr: [loadbalancer, vip_port_id]}}
  volume_id: {value: {get_resource: volume}}
  server_networks: {value: {get_attr: [server, networks]}}
  server_addresses: {value: {get_attr: [server, addresses]}}
  server_first_address: {value: {get_attr: [server, first_address]}}
  server_user_data: {value: {get_attr: [server, user_data]}}
"##;

#[test]
fn every_standin_type_creates_and_outputs_plausible_values() {
    let heat = Heat::shared().unwrap();
    let (registry, _) = heat.standins().unwrap();
    let types: BTreeSet<&str> = registry.keys().map(String::as_str).collect();
    assert_eq!(types, heat::standin_types().iter().copied().collect());

    let body =
        heat::with_standins(json!({ "stack_name": "fixture-every-standin", "template": EVERY_STANDIN })).unwrap();
    let stack = heat.create_stack(&body).unwrap();
    let done = heat.wait(&stack, &["CREATE_COMPLETE"], CREATE_TIMEOUT).unwrap();
    let out = &done.outputs;
    assert!(done.output_errors.is_empty(), "{:?}", done.output_errors);

    let fixed = &out["fixed_ips"][0];
    let address: std::net::Ipv4Addr = fixed["ip_address"].as_str().unwrap().parse().unwrap();
    assert_eq!(address.octets()[..2], [10, 0]);
    assert!(!fixed["subnet_id"].as_str().unwrap().is_empty());
    let floating: std::net::Ipv4Addr = out["floating_ip_address"].as_str().unwrap().parse().unwrap();
    assert_eq!(floating.octets()[..3], [172, 24, 4]);
    let vip: std::net::Ipv4Addr = out["vip_address"].as_str().unwrap().parse().unwrap();
    assert_eq!(vip.octets()[..2], [10, 0]);
    assert!(!out["vip_port_id"].as_str().unwrap().is_empty());
    // A stand-in's id is its nested stack's UUID, as a real volume's would be a UUID.
    assert_eq!(out["volume_id"].as_str().unwrap().len(), 36, "{}", out["volume_id"]);
    let first = out["server_first_address"].as_str().unwrap();
    assert_eq!(out["server_networks"], json!({ "private": [first] }));
    assert_eq!(out["server_addresses"]["private"][0]["addr"], json!(first));
    assert_eq!(out["server_user_data"], json!("#cloud-config\n{}\n"));
}

#[test]
fn eight_nodes_complete_once_all_eight_have_signalled() {
    let heat = Heat::shared().unwrap();
    let body = cluster_body("fixture-eight-nodes", 8, 600, "");
    let started = Instant::now();
    let stack = heat.create_stack(&body).unwrap();
    let handles = wait_for_nodes(&heat, &stack, 8);
    let created = started.elapsed();
    let (last, first_seven) = handles.split_last().unwrap();
    for handle in first_seven {
        success(handle);
    }
    // Seven of eight signalled: still waiting for the last one.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(heat.stack(&stack).unwrap().status, "CREATE_IN_PROGRESS");
    success(last);
    let done = heat.wait(&stack, &["CREATE_COMPLETE"], CREATE_TIMEOUT).unwrap();
    eprintln!(
        "8 nodes: all servers and handles after {:.1} s; CREATE_COMPLETE {:.1} s after the create request \
         (including a deliberate 1.5 s pause before the last signal)",
        created.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(done.outputs["node_names"].as_array().unwrap().len(), 8);
}

#[test]
fn a_private_heat_starts_answers_and_dies_with_its_fixture() {
    let heat = Heat::start().unwrap();
    let times = heat.start_times();
    eprintln!(
        "Heat start: venv {:.1} s ({}), launcher to first answer {:.1} s",
        times.venv.as_secs_f64(),
        if times.venv_built { "built now: cold cache" } else { "cached" },
        times.launch.as_secs_f64()
    );
    let validated = heat.validate(CLUSTER).unwrap();
    assert!(validated["Parameters"]["node_count"].is_object(), "{validated}");
    let err = heat.validate("heat_template_version: 2018-08-31\nresources: {x: {type: No::Such::Type}}\n").unwrap_err();
    assert!(matches!(err, HeatError::Rejected { .. }), "{err}");

    let port = heat.port();
    let state_dir = heat.state_dir().to_path_buf();
    assert!(std::fs::read_to_string(state_dir.join("heat.log")).unwrap().contains("heat.engine"));
    drop(heat);
    // Its process group is gone: the port no longer answers and the state directory is removed.
    let refused = ureq::AgentBuilder::new()
        .try_proxy_from_env(false)
        .timeout(Duration::from_secs(5))
        .build()
        .get(&format!("http://127.0.0.1:{port}/"))
        .call();
    assert!(matches!(refused, Err(ureq::Error::Transport(_))), "Heat still answers on {port}");
    assert!(!state_dir.exists());
}

/// A node's user-data that signals its own wait condition at the endpoint Heat gave it (cloud-init runs a
/// `#!` user-data as a script in its final stage).
const SIGNALLING_USER_DATA: &str = "#!/bin/sh\n\
    # Node __INDEX__ of a Hearth fixture stack signals its wait condition itself.\n\
    exec curl -fsS --max-time 60 --retry 5 --retry-connrefused -X POST '__ENDPOINT__' \\\n\
    \x20 -H 'X-Auth-Token: __TOKEN__' -H 'Content-Type: application/json' \\\n\
    \x20 -d '{\"status\": \"SUCCESS\", \"reason\": \"up\", \"data\": \"sent by node __INDEX__\", \"id\": \"node-__INDEX__\"}'\n";

#[test]
fn handle_endpoints_name_the_nodes_gateway_and_a_booted_node_signals_through_it() {
    let heat = Heat::start_with(HeatOptions { public_host: Some(STANDIN_GATEWAY) }).unwrap();
    assert_eq!(heat.public_host(), Some(STANDIN_GATEWAY));
    let started = Instant::now();
    let stack = heat.create_stack(&cluster_body_with("fixture-public-host", 2, 600, "", SIGNALLING_USER_DATA)).unwrap();
    let handles = wait_for_nodes(&heat, &stack, 2);

    // What nodes use names the gateway, at Heat's port; what this machine uses is the same Heat on loopback.
    let public = format!("http://{STANDIN_GATEWAY}:{}/v1/", heat.port());
    for handle in &handles {
        assert!(handle.endpoint.starts_with(&public), "{handle:?}");
        assert!(handle.endpoint.ends_with("/signal"), "{handle:?}");
        let loopback = handle.endpoint.replacen(&format!("http://{STANDIN_GATEWAY}:"), "http://127.0.0.1:", 1);
        assert_eq!(handle.loopback_endpoint, loopback);
    }
    // Nothing on this machine sends to the gateway (it exists only in the nodes' namespaces).
    let refused = heat::signal(&handles[0].endpoint, &handles[0].token, &json!({"status": "SUCCESS"})).unwrap_err();
    assert!(refused.to_string().contains("not on loopback"), "{refused}");
    let servers = heat.servers(&stack).unwrap();
    for server in &servers {
        let handle = handles.iter().find(|h| node_of(&h.path) == node_of(&server.path)).unwrap();
        assert!(server.user_data.contains(&format!("'{}'", handle.endpoint)), "{}", server.user_data);
    }

    // One node is signalled by the test, from this machine.
    let index = |handle: &WaitHandle| node_of(&handle.path).rsplit('/').next().unwrap().parse::<usize>().unwrap();
    let (by_test, by_node) = (&handles[0], &handles[1]);
    let id = format!("node-{}", index(by_test));
    by_test.signal(&json!({ "status": "SUCCESS", "reason": "up", "data": "sent by the test", "id": id })).unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(heat.stack(&stack).unwrap().status, "CREATE_IN_PROGRESS");

    // The other boots for real from the user-data Heat handed its server, at the address Heat reported for
    // it, on the stand-ins' segment with a forward to Heat's port at the gateway.
    let server = servers.iter().find(|s| node_of(&s.path) == node_of(&by_node.path)).unwrap();
    let address: Ipv4Addr = server.first_address.parse().unwrap();
    let network = Network::with_segment(STANDIN_GATEWAY, STANDIN_PREFIX_LEN).unwrap();
    let forwarded = network.forward(SocketAddr::from(([127, 0, 0, 1], heat.port()))).unwrap();
    assert_eq!(forwarded, SocketAddr::from((STANDIN_GATEWAY, heat.port())));
    let node = Node::boot(&server.user_data, NodeOptions::new(&server.name).on(&network).at(address)).unwrap();
    let done = heat.wait(&stack, &["CREATE_COMPLETE"], CREATE_TIMEOUT).unwrap_or_else(|e| {
        panic!("{e:#}\n--- node console ---\n{}", node.console());
    });
    eprintln!(
        "public-host stack: CREATE_COMPLETE {:.1} s after the create request (Heat start {:.1} s)",
        started.elapsed().as_secs_f64(),
        heat.start_times().launch.as_secs_f64()
    );
    let cloud_init = node.wait_for_cloud_init(CREATE_TIMEOUT).unwrap();
    assert!(cloud_init.errors.is_empty(), "{:?}\n{}", cloud_init.errors, node.console());
    let data = done.outputs["signal_data"].as_array().unwrap();
    let parsed = |i: usize| serde_json::from_str::<Value>(data[i].as_str().unwrap()).unwrap();
    assert_eq!(parsed(index(by_test)), json!({ id: "sent by the test" }));
    assert_eq!(
        parsed(index(by_node)),
        json!({ format!("node-{}", index(by_node)): format!("sent by node {}", index(by_node)) })
    );
    heat.delete(&stack, CREATE_TIMEOUT).unwrap();
}
