//! Components as systemd units whose main process is a container client in the foreground: `podman run`
//! (Fedora CoreOS), `docker run` or `ctr run` (Debian, by the node's runtime). Each unit removes a
//! container left over by a crash before it starts, restarts the component whenever it exits, and gives
//! the first start ten minutes for the image pull. A component without an image runs its program on the
//! host ([`HostProgram`]), in the same kind of unit.

use super::{ArgsFrom, Component, ComponentRuntime, Installed, Mount};
use crate::host::{FileSpec, Outcome};
use crate::paths::{CONTAINERD_HOSTS_DIR, SYSTEMD_UNITS};
use crate::step::Context;
use anyhow::Result;

pub const PODMAN: &str = "/usr/bin/podman";
pub const DOCKER: &str = "/usr/bin/docker";
pub const CTR: &str = "/usr/bin/ctr";
/// The containerd namespace of the components' images and containers.
pub const CTR_NAMESPACE: &str = "hearth";

/// One argument as systemd's command-line parser reads it back: `%` (specifiers) and `$` (variables)
/// doubled, and quoted when it holds blanks, quotes or backslashes.
pub fn systemd_word(arg: &str) -> String {
    let escaped = arg.replace('%', "%%").replace('$', "$$");
    if !escaped.is_empty() && !escaped.chars().any(|c| c.is_whitespace() || matches!(c, '"' | '\'' | '\\' | ';')) {
        return escaped;
    }
    crate::quote::double_quoted(&escaped)
}

/// `Key=argv`: the program and its subcommand on the first line, then each option, and the image with
/// what follows it, on its own continued line, so a long command line stays readable. `tail`, a
/// component's [`ArgsFrom`] variable, is appended unescaped for systemd to expand.
fn command_line(key: &str, argv: &[String], tail: Option<&ArgsFrom>) -> String {
    let words: Vec<String> = argv.iter().map(|a| systemd_word(a)).collect();
    let mut line = format!("{key}={}", words[0]);
    let (mut past_subcommand, mut previous_was_option) = (false, false);
    for word in &words[1..] {
        let option = word.starts_with('-');
        let break_before = past_subcommand && (option || previous_was_option);
        line.push_str(if break_before { " \\\n    " } else { " " });
        line.push_str(word);
        past_subcommand |= !option;
        previous_was_option = option;
    }
    if let Some(from) = tail {
        line.push_str(&format!(" ${}", from.var));
    }
    line.push('\n');
    line
}

fn strings<const N: usize>(words: [&str; N]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

/// What differs between the clients.
trait Client {
    /// What the unit's header says runs the component.
    fn origin(&self, component: &Component) -> String;
    /// The runtime unit the client needs, if any.
    fn runtime_unit(&self) -> Option<&'static str>;
    /// Commands run (failures ignored) before the start.
    fn before_start(&self, component: &Component) -> Vec<Vec<String>>;
    /// The foreground command.
    fn run(&self, component: &Component) -> Vec<String>;
    /// What stops the container, when the client's own signal forwarding does not.
    fn stop(&self, component: &Component) -> Option<Vec<String>>;
}

fn render(client: &dyn Client, component: &Component) -> String {
    let mut after = vec!["network-online.target".to_string()];
    after.extend(client.runtime_unit().map(String::from));
    for unit in &component.after {
        if !after.contains(unit) {
            after.push(unit.clone());
        }
    }
    let mut unit = format!(
        "# Written by hearth-agent: {}.\n[Unit]\nDescription={}\nWants={}\nAfter={}\n\n[Service]\n",
        client.origin(component),
        component.description,
        after.join(" "),
        after.join(" "),
    );
    let tail = component.args_from.as_ref();
    if let Some(from) = tail {
        unit.push_str(&format!("EnvironmentFile={}\n", systemd_word(&from.file)));
    }
    for command in client.before_start(component) {
        let mut argv = command;
        argv[0] = format!("-{}", argv[0]);
        unit.push_str(&command_line("ExecStartPre", &argv, None));
    }
    unit.push_str(&command_line("ExecStart", &client.run(component), tail));
    if let Some(mut stop) = client.stop(component) {
        stop[0] = format!("-{}", stop[0]);
        unit.push_str(&command_line("ExecStop", &stop, None));
    }
    // The clients exit with the container's status, 128+15 when a stop's SIGTERM ended it: a clean stop.
    unit.push_str("SuccessExitStatus=143\n");
    unit.push_str("Restart=always\nRestartSec=10\nTimeoutStartSec=10min\n\n[Install]\nWantedBy=multi-user.target\n");
    unit
}

fn install(client: &dyn Client, ctx: &Context, component: &Component) -> Result<Installed> {
    let path = format!("{SYSTEMD_UNITS}/{}", component.unit());
    let written = ctx.host.write_file(&FileSpec::new(path, render(client, component), 0o644))?;
    let changed = written != Outcome::Unchanged;
    Ok(Installed { changed, unit_written: changed })
}

/// The component's image; the clients get only components that have one (see [`super::apply`]).
fn image(component: &Component) -> &str {
    component.image.as_deref().unwrap_or_default()
}

/// `<name> from <image> through <program>`.
fn from_image(component: &Component, program: &str) -> String {
    format!("{} from {} through {program}", component.name, image(component))
}

/// `-v`-style mount options shared by podman and docker.
fn volume(mount: &Mount) -> String {
    let mut options = vec![if mount.writable { "rw" } else { "ro" }];
    (mount.relabel).then(|| options.push("z"));
    format!("--volume={}:{}:{}", mount.host, mount.container, options.join(","))
}

/// `podman run` / `docker run` share their flags.
fn oci_run(program: &str, component: &Component, relabel: bool) -> Vec<String> {
    let mut argv = vec![program.to_string(), "run".into(), format!("--name={}", component.name), "--rm".into()];
    if component.host_network {
        argv.push("--net=host".into());
    }
    if component.host_pid {
        argv.push("--pid=host".into());
    }
    if component.privileged {
        argv.push("--privileged".into());
    }
    for mount in &component.mounts {
        let mount = Mount { relabel: relabel && mount.relabel, ..mount.clone() };
        argv.push(volume(&mount));
    }
    if let Some(env) = &component.env_file {
        argv.push(format!("--env-file={env}"));
    }
    argv.push(image(component).to_string());
    argv.extend(component.args.iter().cloned());
    argv
}

/// Fedora CoreOS: podman, with SELinux relabelling of the components' own directories.
#[derive(Debug)]
pub struct Podman;

impl Client for Podman {
    fn origin(&self, component: &Component) -> String {
        from_image(component, PODMAN)
    }
    fn runtime_unit(&self) -> Option<&'static str> {
        None
    }
    fn before_start(&self, component: &Component) -> Vec<Vec<String>> {
        vec![vec![PODMAN.into(), "rm".into(), "--force".into(), component.name.clone()]]
    }
    fn run(&self, component: &Component) -> Vec<String> {
        oci_run(PODMAN, component, true)
    }
    fn stop(&self, component: &Component) -> Option<Vec<String>> {
        Some(vec![PODMAN.into(), "stop".into(), component.name.clone()])
    }
}

impl ComponentRuntime for Podman {
    fn describe(&self) -> &'static str {
        "a podman unit"
    }
    fn install(&self, ctx: &Context, component: &Component) -> Result<Installed> {
        install(self, ctx, component)
    }
}

/// Debian with docker.
#[derive(Debug)]
pub struct Docker;

impl Client for Docker {
    fn origin(&self, component: &Component) -> String {
        from_image(component, DOCKER)
    }
    fn runtime_unit(&self) -> Option<&'static str> {
        Some("docker.service")
    }
    fn before_start(&self, component: &Component) -> Vec<Vec<String>> {
        vec![vec![DOCKER.into(), "rm".into(), "--force".into(), component.name.clone()]]
    }
    fn run(&self, component: &Component) -> Vec<String> {
        // No SELinux on Debian: docker would refuse nothing, but relabelling means nothing either.
        oci_run(DOCKER, component, false)
    }
    fn stop(&self, component: &Component) -> Option<Vec<String>> {
        Some(vec![DOCKER.into(), "stop".into(), component.name.clone()])
    }
}

impl ComponentRuntime for Docker {
    fn describe(&self) -> &'static str {
        "a docker unit"
    }
    fn install(&self, ctx: &Context, component: &Component) -> Result<Installed> {
        install(self, ctx, component)
    }
}

/// Debian with containerd: `ctr`, in the `hearth` namespace.
#[derive(Debug)]
pub struct Ctr;

fn ctr(words: &[&str]) -> Vec<String> {
    let mut argv = strings([CTR]);
    argv.push(format!("--namespace={CTR_NAMESPACE}"));
    argv.extend(words.iter().map(|w| w.to_string()));
    argv
}

impl Client for Ctr {
    fn origin(&self, component: &Component) -> String {
        from_image(component, CTR)
    }
    fn runtime_unit(&self) -> Option<&'static str> {
        Some("containerd.service")
    }
    fn before_start(&self, component: &Component) -> Vec<Vec<String>> {
        let name = component.name.as_str();
        // ctr run never pulls. A failed pull is ignored so that a node without its registry still starts
        // from the image it has; without one, `ctr run` fails and systemd tries again.
        let hosts = format!("--hosts-dir={CONTAINERD_HOSTS_DIR}");
        vec![
            ctr(&["images", "pull", &hosts, image(component)]),
            ctr(&["tasks", "delete", "--force", name]),
            ctr(&["containers", "delete", name]),
        ]
    }
    fn run(&self, component: &Component) -> Vec<String> {
        let mut argv = ctr(&["run", "--rm"]);
        if component.host_network {
            argv.push("--net-host".into());
        }
        if component.host_pid {
            argv.push("--with-ns=pid:/proc/1/ns/pid".into());
        }
        if component.privileged {
            argv.push("--privileged".into());
        }
        for mount in &component.mounts {
            let options = ["rbind", if mount.writable { "rw" } else { "ro" }];
            argv.push(format!(
                "--mount=type=bind,src={},dst={},options={}",
                mount.host,
                mount.container,
                options.join(":")
            ));
        }
        if let Some(env) = &component.env_file {
            argv.push(format!("--env-file={env}"));
        }
        argv.push(image(component).to_string());
        argv.push(component.name.clone());
        argv.extend(component.args.iter().cloned());
        argv
    }
    fn stop(&self, _component: &Component) -> Option<Vec<String>> {
        // `ctr run` passes systemd's SIGTERM on to the task and exits with its status. Killing the task
        // first (`ctr tasks kill`) left ctr to fail on the signal after it (exit 1, a failed unit).
        None
    }
}

impl ComponentRuntime for Ctr {
    fn describe(&self) -> &'static str {
        "a containerd (ctr) unit"
    }
    fn install(&self, ctx: &Context, component: &Component) -> Result<Installed> {
        install(self, ctx, component)
    }
}

/// A program of the host, as its unit's main process: `args` is the command line.
#[derive(Debug)]
pub struct HostProgram;

impl Client for HostProgram {
    fn origin(&self, component: &Component) -> String {
        let program = component.args.first().map_or("", String::as_str);
        format!("{}, {program} run on the host", component.name)
    }
    fn runtime_unit(&self) -> Option<&'static str> {
        None
    }
    fn before_start(&self, _component: &Component) -> Vec<Vec<String>> {
        Vec::new()
    }
    fn run(&self, component: &Component) -> Vec<String> {
        component.args.clone()
    }
    fn stop(&self, _component: &Component) -> Option<Vec<String>> {
        None
    }
}

impl ComponentRuntime for HostProgram {
    fn describe(&self) -> &'static str {
        "a unit of the host's program"
    }
    fn install(&self, ctx: &Context, component: &Component) -> Result<Installed> {
        if component.args.is_empty() {
            anyhow::bail!("{} has neither an image nor a program to run", component.name);
        }
        install(self, ctx, component)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn etcd() -> Component {
        Component {
            name: "etcd".into(),
            description: "etcd".into(),
            image: Some("docker.io/openstackmagnum/etcd:v3.4.6".into()),
            args: vec!["--debug=100%".into()],
            args_from: None,
            env_file: Some(crate::paths::ETCD_CONF.into()),
            mounts: vec![Mount::same("/etc/etcd", false).relabel(), Mount::same("/var/lib/kubelet", true)],
            privileged: true,
            host_network: true,
            host_pid: true,
            after: vec![],
            system_container_settings: vec![],
            system_container_user_files: vec![],
            files: vec![],
        }
    }

    #[test]
    fn systemd_words_survive_specifiers_variables_and_blanks() {
        assert_eq!(systemd_word("--flag=a,b"), "--flag=a,b");
        assert_eq!(systemd_word("100%"), "100%%");
        assert_eq!(systemd_word("$HOME"), "$$HOME");
        assert_eq!(systemd_word("a b"), "\"a b\"");
        assert_eq!(systemd_word("say \"hi\"\\"), "\"say \\\"hi\\\"\\\\\"");
    }

    #[test]
    fn each_client_gets_its_own_flags() {
        let podman = render(&Podman, &etcd());
        assert!(podman.contains("--volume=/etc/etcd:/etc/etcd:ro,z"), "{podman}");
        assert!(podman.contains("--volume=/var/lib/kubelet:/var/lib/kubelet:rw \\"), "{podman}");
        assert!(podman.contains("ExecStartPre=-/usr/bin/podman rm \\\n    --force \\\n    etcd\n"), "{podman}");
        assert!(podman.contains("--debug=100%%"), "{podman}");
        assert!(!podman.contains("docker.service"));

        let docker = render(&Docker, &etcd());
        assert!(docker.contains("--volume=/etc/etcd:/etc/etcd:ro \\"), "no SELinux label on Debian: {docker}");
        assert!(docker.contains("After=network-online.target docker.service"), "{docker}");

        let ctr = render(&Ctr, &etcd());
        assert!(
            ctr.contains("--mount=type=bind,src=/var/lib/kubelet,dst=/var/lib/kubelet,options=rbind:rw \\"),
            "{ctr}"
        );
        assert!(ctr.contains("--with-ns=pid:/proc/1/ns/pid"), "{ctr}");
        assert!(ctr.contains("\\\n    docker.io/openstackmagnum/etcd:v3.4.6 etcd \\\n    --debug=100%%"), "{ctr}");
        assert!(!ctr.contains("ExecStop"), "ctr passes the stop's signal on: {ctr}");
        assert!(ctr.contains("SuccessExitStatus=143\n"), "{ctr}");
    }

    #[test]
    fn arguments_from_a_file_are_expanded_by_systemd() {
        let mut apiserver = etcd();
        apiserver.args = vec!["/usr/local/bin/kube-apiserver".into()];
        apiserver.args_from = Some(ArgsFrom { file: "/etc/kubernetes/apiserver".into(), var: "KUBE_API_ARGS".into() });
        let ctr = render(&Ctr, &apiserver);
        assert!(ctr.contains("EnvironmentFile=/etc/kubernetes/apiserver\n"), "{ctr}");
        assert!(ctr.contains(" etcd /usr/local/bin/kube-apiserver $KUBE_API_ARGS\n"), "{ctr}");
        let podman = render(&Podman, &apiserver);
        assert!(podman.contains(" /usr/local/bin/kube-apiserver $KUBE_API_ARGS\nExecStop="), "{podman}");
    }
}
