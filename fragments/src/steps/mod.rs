//! The step catalogue: what each role runs, in order, under Magnum's cloud-init part numbers so operators
//! recognise them. One module per step; a step is a function of the config, the facts and the host.

mod addons;
pub mod agent_service;
mod apiserver_kubelet_rbac;
pub mod certs;
mod docker_storage;
mod etcd;
mod health;
mod install_ca;
mod kube_master;
mod kube_minion;
mod kube_os_config;
mod network_config;
mod node_config;
mod proxy;
mod registry_config;
mod registry_service;
mod selinux;
mod services;

use crate::config::{ConfigError, NodeConfig, Role};
use crate::step::{CheckFn, StepFn};

/// How a catalogue entry is carried out.
#[derive(Clone, Copy, Debug)]
pub enum Implementation {
    Step(StepFn),
    /// The Heat signal: sent by the runner after every other step, whatever happened.
    Signal,
}

#[derive(Clone, Copy, Debug)]
pub struct Entry {
    /// Magnum's cloud-init part number.
    pub part: u8,
    pub name: &'static str,
    pub implementation: Implementation,
    /// What the step needs of the config alone, when it needs anything.
    pub check: Option<CheckFn>,
}

impl Entry {
    /// `part-006`, as operators know the parts from cloud-init.
    pub fn part_name(&self) -> String {
        format!("part-{:03}", self.part)
    }

    const fn checked(self, check: CheckFn) -> Entry {
        Entry { check: Some(check), ..self }
    }
}

const fn step(part: u8, name: &'static str, run: StepFn) -> Entry {
    Entry { part, name, implementation: Implementation::Step(run), check: None }
}

const fn signal(part: u8) -> Entry {
    Entry { part, name: "signal", implementation: Implementation::Signal, check: None }
}

const MINION: &[Entry] = &[
    step(1, "install-ca", install_ca::run),
    step(2, "selinux", selinux::run),
    step(3, "node-config", node_config::run),
    step(4, "agent-service", agent_service::run),
    step(5, "kube-os-config", kube_os_config::run),
    step(6, "certs", certs::run).checked(certs::check),
    step(7, "docker-storage", docker_storage::run).checked(docker_storage::check),
    step(8, "registry-config", registry_config::run),
    step(9, "kube-minion", kube_minion::run).checked(kube_minion::check),
    step(10, "proxy", proxy::run),
    step(11, "services", services::run),
    step(12, "registry-service", registry_service::run),
    signal(13),
];

const MASTER: &[Entry] = &[
    step(1, "install-ca", install_ca::run),
    step(2, "selinux", selinux::run),
    step(3, "node-config", node_config::run),
    step(4, "etcd", etcd::run).checked(etcd::check),
    step(5, "kube-os-config", kube_os_config::run),
    step(6, "docker-storage", docker_storage::run).checked(docker_storage::check),
    step(7, "kube-master", kube_master::run).checked(kube_master::check),
    step(8, "certs", certs::run).checked(certs::check),
    step(9, "proxy", proxy::run),
    step(10, "agent-service", agent_service::run),
    step(11, "services", services::run),
    step(12, "network-config", network_config::run),
    step(13, "apiserver-kubelet-rbac", apiserver_kubelet_rbac::run),
    step(14, "health", health::run),
    step(15, "addons", addons::run),
    signal(16),
];

/// The steps of `role`, in the order they run.
pub fn catalogue(role: Role) -> &'static [Entry] {
    match role {
        Role::Master => MASTER,
        Role::Minion => MINION,
    }
}

/// What `entries` (the role's catalogue, or the steps a run selected) would refuse of the config itself,
/// each under its step, all at once: found before the first step runs, not one failed step at a time.
pub fn check<'a>(config: &NodeConfig, entries: impl IntoIterator<Item = &'a Entry>) -> Vec<ConfigError> {
    entries
        .into_iter()
        .filter_map(|entry| {
            let refused = entry.check?(config).err()?;
            Some(ConfigError {
                key: format!("{} {}", entry.part_name(), entry.name),
                value: String::new(),
                reason: format!("{refused:#}"),
                line: None,
            })
        })
        .collect()
}

/// Finds a step of `role` by name (`certs`) or part (`part-006`, `6`).
pub fn find(role: Role, wanted: &str) -> Option<&'static Entry> {
    let part = wanted.strip_prefix("part-").unwrap_or(wanted).parse::<u8>().ok();
    catalogue(role).iter().find(|e| e.name == wanted || Some(e.part) == part)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_numbered_in_order_and_end_with_the_signal() {
        for role in [Role::Master, Role::Minion] {
            let entries = catalogue(role);
            for (i, e) in entries.iter().enumerate() {
                assert_eq!(usize::from(e.part), i + 1, "{role} {}", e.name);
            }
            assert!(matches!(entries.last().unwrap().implementation, Implementation::Signal));
        }
        assert_eq!(find(Role::Minion, "part-010").unwrap().name, "proxy");
        assert_eq!(find(Role::Master, "proxy").unwrap().part, 9);
        assert!(find(Role::Master, "registry-config").is_none());
    }
}
