//! hearth-server's command line. Exit codes: 0 done, 1 failed, 2 bad input (clap's usage errors too).

// Product code fails with a message or an error, never a bare unwrap; tests may unwrap.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

use anyhow::{Context as _, Result};
use clap::{Args, Parser, Subcommand};
use hearth_server::bundle::{self, RenderError};
use hearth_server::model::{self, Cluster, ClusterTemplate, LoadError};
use hearth_server::output::{self, Reply};
use hearth_server::serve::deny::{self, Allowed, Denied, EditError};
use hearth_server::serve::{self, settings};
use hearth_server::settings::Loaded;
use hearth_server::validate::{self, FieldError};
use std::path::PathBuf;
use std::process::ExitCode;

/// Validates Magnum cluster templates and clusters, renders their Heat stacks, and serves certificates
/// and the agent binary to nodes.
#[derive(Debug, Parser)]
#[command(name = "hearth-server", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Print one JSON document on stdout instead of words, failures included (exit codes unchanged).
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a cluster template and a cluster against Magnum's rules (and the settings, when given).
    /// Exit 0 when valid, 2 with every error otherwise.
    Validate {
        #[command(flatten)]
        inputs: Inputs,
        #[arg(long, value_name = "FILE")]
        settings: Option<PathBuf>,
    },
    /// Render the cluster's Heat bundle into DIR: cluster.yaml and its nested templates,
    /// environment.yaml and stack.json (the body of Heat's stack-create API).
    Render {
        #[command(flatten)]
        inputs: Inputs,
        #[arg(long, value_name = "FILE")]
        settings: PathBuf,
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Also register the cluster (its UUID and trustee) in the state directory of
        /// `hearth-server serve`, so serve signs its nodes' certificates.
        #[arg(long = "state", value_name = "DIR")]
        state: Option<PathBuf>,
    },
    /// Serve Magnum's certificate API (GET /v1/certificates/{cluster}, POST /v1/certificates) to nodes,
    /// signing only node identities for each cluster's trustee.
    Serve(Box<ServeArgs>),
    /// Per-cluster certificate authorities.
    Ca {
        #[command(subcommand)]
        command: CaCommand,
    },
    /// The operator's per-cluster deny list: nodes serve no longer issues their node certificate
    /// (CN=system:node:NAME). Takes effect at once, without restarting serve.
    Node {
        #[command(subcommand)]
        command: NodeCommand,
    },
    /// A running cluster's life (Magnum's `coe cluster …`).
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
    },
}

#[derive(Debug, Subcommand)]
enum ClusterCommand {
    /// Write a kubeconfig for a person, signed by the cluster's CA: short-lived (no revocation exists for
    /// client certificates but expiry and a new CA), logged, and listed in clusters/<uuid>/kubeconfigs.jsonl.
    Config(ClusterConfigArgs),
    /// Prepare a cluster as Magnum's conductor did: its CA in the state directory (registered for serve
    /// when the trustee is given), its service-account key pair (key 0600) and a settings file (0600)
    /// for the operator to complete. Run again, it keeps what exists.
    Init(Box<ClusterInitArgs>),
}

#[derive(Debug, Args)]
struct ClusterInitArgs {
    /// The cluster's UUID (the `uuid` of cluster.yaml).
    #[arg(long, value_name = "UUID")]
    cluster: String,
    /// The state directory serve uses.
    #[arg(long = "state", value_name = "DIR")]
    state: PathBuf,
    /// The cluster's settings directory: settings.yaml, service-account.key and .pub.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// The cluster's name, recorded for operators.
    #[arg(long)]
    name: Option<String>,
    /// Validity of the CA if one is created.
    #[arg(long, value_name = "DAYS", default_value_t = settings::DEFAULT_CA_VALIDITY_DAYS)]
    ca_validity_days: u32,
    /// Keystone v3 URL the nodes use.
    #[arg(long, value_name = "URL")]
    auth_url: Option<String>,
    /// The certificate API the nodes use (serve's public URL ending in /v1).
    #[arg(long, value_name = "URL")]
    magnum_url: Option<String>,
    #[arg(long)]
    region: Option<String>,
    /// The trustee's Keystone user id; given, the cluster is registered for serve.
    #[arg(long, value_name = "ID")]
    trustee_user_id: Option<String>,
    #[arg(long, value_name = "NAME")]
    trustee_username: Option<String>,
    #[arg(long, value_name = "ID")]
    trustee_domain_id: Option<String>,
    /// A file whose first line is the trustee's password (never a flag: argv is visible to all).
    #[arg(long, value_name = "FILE")]
    trustee_password_file: Option<PathBuf>,
    #[arg(long, value_name = "ID")]
    trust_id: Option<String>,
    /// Where nodes download hearth-agent (with --agent-sha256).
    #[arg(long, value_name = "URL", requires = "agent_sha256", conflicts_with = "agent_path")]
    agent_url: Option<String>,
    #[arg(long, value_name = "HEX", requires = "agent_url")]
    agent_sha256: Option<String>,
    /// The agent's path on the image, instead of a download.
    #[arg(long, value_name = "PATH")]
    agent_path: Option<String>,
}

#[derive(Debug, Args)]
struct ClusterConfigArgs {
    /// The cluster's UUID.
    #[arg(long, value_name = "UUID")]
    cluster: String,
    /// The state directory serve and `ca init` use (it holds the cluster's CA).
    #[arg(long = "state", value_name = "DIR")]
    state: PathBuf,
    /// Where to write the kubeconfig (0600).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// The API's URL as you reach it, e.g. https://203.0.113.10:6443 (the stack's api_address output).
    #[arg(long, value_name = "URL")]
    server: String,
    /// The user Kubernetes sees and audits.
    #[arg(long, default_value = "admin")]
    user: String,
    /// The user's group (one); system:masters makes a cluster administrator.
    #[arg(long = "group", value_name = "GROUP", default_value = "system:masters")]
    groups: Vec<String>,
    /// How long the certificate is valid.
    #[arg(long, default_value_t = 24)]
    hours: u32,
}

#[derive(Debug, Subcommand)]
enum NodeCommand {
    /// Refuse the node its certificate from now on (403 with the reason). Certificates already issued
    /// stay valid (revoking them needs a new CA); kube-proxy and API server certificates are not per
    /// node and not affected. Denying a denied node updates its reason when --reason is given.
    Deny(NodeDenyArgs),
    /// Let a denied node obtain its certificate again (a node that is not denied: nothing to do).
    Allow(NodeArgs),
    /// The cluster's denied nodes, one per line: name, since when (UTC), reason; tab-separated.
    List(NodeClusterArgs),
}

#[derive(Debug, Args)]
struct NodeClusterArgs {
    /// The state directory of `serve`.
    #[arg(long = "state", value_name = "DIR")]
    state: PathBuf,
    /// The cluster's UUID (registered by `render --state` or `ca init --trustee-user-id`).
    #[arg(long, value_name = "UUID")]
    cluster: String,
}

#[derive(Debug, Args)]
struct NodeArgs {
    #[command(flatten)]
    cluster: NodeClusterArgs,
    /// The node's name: NAME of CN=system:node:NAME, the Kubernetes node name.
    #[arg(value_name = "NAME")]
    name: String,
}

#[derive(Debug, Args)]
struct NodeDenyArgs {
    #[command(flatten)]
    node: NodeArgs,
    /// Why, told to the node in the 403 (one line).
    #[arg(long, value_name = "TEXT")]
    reason: Option<String>,
}

#[derive(Debug, Subcommand)]
enum CaCommand {
    /// Register a cluster (with --trustee-user-id) and create its CA if it has none; prints the CA
    /// certificate (PEM) on stdout and its path on stderr.
    Init(CaInitArgs),
}

/// Flags override the settings file (see `--settings`).
#[derive(Debug, Args)]
struct ServeArgs {
    /// Address to listen on, e.g. 127.0.0.1:9511 (port 0 picks a free port; the log says which).
    #[arg(long)]
    listen: Option<String>,
    /// State directory: clusters/<uuid>/{cluster.json, ca.crt, ca.key, denied-nodes.json}.
    #[arg(long = "state", value_name = "DIR")]
    state: Option<PathBuf>,
    /// Settings file (YAML or JSON) with the same settings as these flags, and more.
    #[arg(long, value_name = "FILE")]
    settings: Option<PathBuf>,
    /// Keystone's identity endpoint (with or without /v3).
    #[arg(long, value_name = "URL")]
    keystone_url: Option<String>,
    /// Extra CA certificate(s) (PEM) to trust for Keystone.
    #[arg(long, value_name = "FILE")]
    keystone_ca_file: Option<PathBuf>,
    /// Do not verify Keystone's TLS certificate.
    #[arg(long)]
    keystone_insecure: bool,
    /// The service user's name (validates callers' tokens; needs Keystone's `service` role).
    #[arg(long, value_name = "NAME", conflicts_with = "service_user_id")]
    service_user: Option<String>,
    #[arg(long, value_name = "ID")]
    service_user_id: Option<String>,
    /// Domain of --service-user (default: Default).
    #[arg(long, value_name = "DOMAIN")]
    service_user_domain: Option<String>,
    /// Project the service token is scoped to (without one: system scope).
    #[arg(long, value_name = "NAME")]
    service_project: Option<String>,
    #[arg(long, value_name = "DOMAIN")]
    service_project_domain: Option<String>,
    /// File holding the service user's password (else the settings file, else $HEARTH_SERVICE_PASSWORD).
    #[arg(long, value_name = "FILE")]
    service_password_file: Option<PathBuf>,
    /// Keystone role that may act for any cluster (default: admin).
    #[arg(long, value_name = "ROLE")]
    admin_role: Option<String>,
    /// How long a validated token is reused without asking Keystone (default: 60).
    #[arg(long, value_name = "SECONDS")]
    token_cache_seconds: Option<u64>,
    /// Validity of issued certificates (default: 1825, Magnum's).
    #[arg(long, value_name = "DAYS")]
    validity_days: Option<u32>,
    /// Validity of new cluster CAs (default: 3650).
    #[arg(long, value_name = "DAYS")]
    ca_validity_days: Option<u32>,
    /// Base URL of response links (default: http://<Host header>).
    #[arg(long, value_name = "URL")]
    public_url: Option<String>,
    /// Request worker threads (default: 32).
    #[arg(long)]
    workers: Option<usize>,
    /// Serve this hearth-agent binary at /agent/hearth-agent (the bootstrap's `agent.url`).
    #[arg(long, value_name = "FILE")]
    agent: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct CaInitArgs {
    /// The cluster's UUID.
    #[arg(long, value_name = "UUID")]
    cluster: String,
    #[arg(long = "state", value_name = "DIR")]
    state: PathBuf,
    /// Register the cluster with this Keystone user as its trustee (the user its nodes authenticate as).
    #[arg(long, value_name = "ID")]
    trustee_user_id: Option<String>,
    /// The cluster's name, recorded for operators.
    #[arg(long, requires = "trustee_user_id")]
    name: Option<String>,
    /// Validity of the CA if one is created (default: 3650).
    #[arg(long, value_name = "DAYS", default_value_t = settings::DEFAULT_CA_VALIDITY_DAYS)]
    ca_validity_days: u32,
}

#[derive(Debug, Args)]
struct Inputs {
    #[arg(long, value_name = "FILE")]
    cluster_template: PathBuf,
    #[arg(long, value_name = "FILE")]
    cluster: PathBuf,
}

impl Inputs {
    /// The template, the cluster, and the notes about what reading them dropped. The notes go to stderr
    /// at once, so they are seen even when the command then fails, and to `--json`'s `notes` on success.
    fn load(&self) -> Result<(ClusterTemplate, Cluster, Vec<String>), Failure> {
        // Both files' wrong fields at once: one run shows everything to fix.
        let template = model::load_export::<ClusterTemplate>(&self.cluster_template);
        let cluster = model::load_export::<Cluster>(&self.cluster);
        let ((template, template_note), (cluster, cluster_note)) = match (template, cluster) {
            (Ok(template), Ok(cluster)) => (template, cluster),
            // A missing or unparsable input file is an input error like a wrong field: exit 2.
            (Err(LoadError::File(e)), _) | (_, Err(LoadError::File(e))) => return Err(Failure::Input(e)),
            (template, cluster) => {
                let errors = [template.err(), cluster.err()].into_iter().flatten();
                let errors = errors.flat_map(|e| match e {
                    LoadError::Fields(errors) => errors,
                    LoadError::File(_) => Vec::new(),
                });
                return Err(Failure::Invalid(errors.collect()));
            }
        };
        let notes: Vec<String> = [template_note, cluster_note].into_iter().flatten().collect();
        for note in &notes {
            eprintln!("note: {note}");
        }
        Ok((template, cluster, notes))
    }
}

/// The command line, or exit 2 on a usage error: in JSON on stdout when `--json` was asked for (clap's
/// words still go to stderr), as every other input error. Help and version print as ever.
fn parse_cli() -> Cli {
    Cli::try_parse().unwrap_or_else(|error| {
        let json = std::env::args_os().skip(1).take_while(|a| a != "--").any(|a| a == "--json");
        if !json || !error.use_stderr() {
            error.exit()
        }
        let words = error.render().to_string();
        eprint!("{words}");
        println!("{}", output::usage_error(&words));
        std::process::exit(2)
    })
}

fn main() -> ExitCode {
    let cli = parse_cli();
    // serve runs for days: its lines carry their time (unless journald records it).
    match cli.command {
        Command::Serve(_) => hearth_fragments::log::init_service(),
        _ => hearth_fragments::log::init(),
    }
    let result = match cli.command {
        Command::Validate { inputs, settings } => validate_command(&inputs, settings),
        Command::Render { inputs, settings, out, state } => render_command(&inputs, &settings, &out, state.as_deref()),
        Command::Serve(args) => serve_command(*args),
        Command::Ca { command: CaCommand::Init(args) } => ca_init(&args),
        Command::Node { command } => node_command(&command),
        Command::Cluster { command: ClusterCommand::Config(args) } => cluster_config(&args),
        Command::Cluster { command: ClusterCommand::Init(args) } => cluster_init(&args),
    };
    if cli.json {
        print_json(result)
    } else {
        print_words(result)
    }
}

fn print_words(result: Result<Reply, Failure>) -> ExitCode {
    match result {
        Ok(reply) => {
            print!("{}", reply.text);
            ExitCode::SUCCESS
        }
        Err(Failure::Input(e)) => {
            tracing::error!("{e:#}");
            ExitCode::from(2)
        }
        Err(Failure::Run(e)) => {
            tracing::error!("{e:#}");
            ExitCode::from(1)
        }
        Err(Failure::Invalid(errors)) => {
            eprintln!("{} invalid field(s):", errors.len());
            for error in &errors {
                eprintln!("  {error}");
            }
            ExitCode::from(2)
        }
    }
}

/// One document on stdout whatever happened, so a program reads one place; the exit code still says
/// which kind of failure it was.
fn print_json(result: Result<Reply, Failure>) -> ExitCode {
    let (document, code) = match result {
        Ok(reply) => (reply.document(), ExitCode::SUCCESS),
        Err(Failure::Input(e)) => (output::failure(&e), ExitCode::from(2)),
        Err(Failure::Run(e)) => (output::failure(&e), ExitCode::from(1)),
        Err(Failure::Invalid(errors)) => (output::field_errors(&errors), ExitCode::from(2)),
    };
    println!("{document}");
    code
}

enum Failure {
    /// Bad settings or flags: exit 2.
    Input(anyhow::Error),
    Run(anyhow::Error),
    /// A cluster definition that breaks rules: exit 2, every error listed.
    Invalid(Vec<FieldError>),
}

impl From<RenderError> for Failure {
    fn from(e: RenderError) -> Failure {
        match e {
            RenderError::Invalid(errors) => Failure::Invalid(errors),
            RenderError::Other(e) => Failure::Run(e),
        }
    }
}

fn validate_command(inputs: &Inputs, settings: Option<PathBuf>) -> Result<Reply, Failure> {
    let (template, cluster, notes) = inputs.load()?;
    let with_settings = settings.is_some();
    match settings.map(|path| Loaded::load(&path)).transpose().map_err(Failure::Run)? {
        // With settings, valid means renders: render applies every rule validate does, then checks the
        // node configs, what the nodes would refuse of them and the user-data sizes (nothing is written).
        Some(settings) => {
            bundle::render(&template, &cluster, &settings)?;
        }
        None => {
            let report = validate::validate(&template, &cluster, None);
            if !report.is_ok() {
                return Err(Failure::Invalid(report.errors));
            }
        }
    }
    let reply = Reply::new("valid\n").with("valid", true).with("settings_checked", with_settings);
    Ok(Reply { notes, ..reply })
}

fn render_command(
    inputs: &Inputs,
    settings: &std::path::Path,
    out: &std::path::Path,
    state: Option<&std::path::Path>,
) -> Result<Reply, Failure> {
    let (template, cluster, notes) = inputs.load()?;
    let settings = Loaded::load(settings).map_err(Failure::Run)?;
    let bundle = bundle::render(&template, &cluster, &settings)?;
    bundle.write(out).map_err(Failure::Run)?;
    let mut reply = Reply { notes, ..render_reply(&bundle, out) };
    if let Some(state) = state {
        let record = serve::cluster::ClusterRecord {
            cluster_uuid: cluster.uuid.clone().unwrap_or_default(),
            trustee_user_id: settings.settings.trustee.user_id.clone(),
            name: cluster.name.clone(),
        };
        let path = serve::cluster::StateDir::new(state).register(&record).map_err(Failure::Run)?;
        reply.text.push_str(&format!("registered the cluster for serve: {}\n", path.display()));
        reply = reply.with("registered", path.display().to_string());
    }
    Ok(reply)
}

/// What render wrote, in words (the bundle's summary) and as fields.
fn render_reply(bundle: &bundle::Bundle, out: &std::path::Path) -> Reply {
    let p = &bundle.parts;
    let user_data = |data: &hearth_server::user_data::UserData| serde_json::json!({"bytes": data.filled_bytes, "base64_bytes": data.filled_base64});
    Reply::new(bundle.summary(out))
        .with("out", out.display().to_string())
        .with("stack_name", bundle.stack_name.clone())
        .with("timeout_minutes", bundle.timeout_mins)
        .with("masters", bundle.masters)
        .with("minions", bundle.minions)
        .with(
            "user_data_format",
            match bundle.format {
                hearth_server::user_data::Format::CloudInit => "cloud-init",
                hearth_server::user_data::Format::Ignition => "ignition",
            },
        )
        .with(
            "parts",
            serde_json::json!({
                "private_network": p.private_network, "master_lb": p.master_lb,
                "lb_floating_ip": p.lb_floating_ip, "floating_ip": p.floating_ip,
                "etcd_volume": p.etcd_volume, "docker_volume": p.docker_volume,
            }),
        )
        .with(
            "user_data",
            serde_json::json!({"master": user_data(&bundle.master), "minion": user_data(&bundle.minion)}),
        )
        // The files `Bundle::write` writes, as the summary names them.
        .with(
            "files",
            ["cluster.yaml", "master.yaml", "master_port.yaml", "minion.yaml", "environment.yaml", "stack.json"]
                .map(|f| out.join(f).display().to_string())
                .to_vec(),
        )
}

fn serve_command(args: ServeArgs) -> Result<Reply, Failure> {
    let settings = serve_settings(args).map_err(Failure::Input)?;
    let server = serve::Server::bind(&settings).map_err(Failure::Run)?;
    tracing::info!(
        "hearth-server: listening on http://{} (state {}, Keystone {})",
        server.local_addr(),
        settings.state_dir.display(),
        settings.keystone.url
    );
    server.run().map_err(Failure::Run)?;
    Ok(Reply::new("").with("stopped", true))
}

fn serve_settings(args: ServeArgs) -> Result<settings::Settings> {
    let mut file = match &args.settings {
        Some(path) => settings::SettingsFile::load(path)?,
        None => settings::SettingsFile::default(),
    };
    fn set<T>(slot: &mut Option<T>, flag: Option<T>) {
        if flag.is_some() {
            *slot = flag;
        }
    }
    set(&mut file.listen, args.listen);
    set(&mut file.state_dir, args.state);
    set(&mut file.public_url, args.public_url);
    set(&mut file.workers, args.workers);
    set(&mut file.agent_file, args.agent);
    set(&mut file.signing.validity_days, args.validity_days);
    set(&mut file.signing.ca_validity_days, args.ca_validity_days);
    let keystone = &mut file.keystone;
    set(&mut keystone.url, args.keystone_url);
    set(&mut keystone.ca_file, args.keystone_ca_file);
    if args.keystone_insecure {
        keystone.verify_tls = Some(false);
    }
    set(&mut keystone.admin_role, args.admin_role);
    set(&mut keystone.token_cache_seconds, args.token_cache_seconds);
    let user = &mut keystone.service_user;
    // A flag naming the user replaces however the file named it.
    if args.service_user.is_some() {
        user.id = None;
        user.name = args.service_user;
    }
    if args.service_user_id.is_some() {
        user.name = None;
        user.id = args.service_user_id;
    }
    set(&mut user.domain, args.service_user_domain);
    if args.service_project.is_some() {
        user.project_id = None;
        user.project = args.service_project;
    }
    set(&mut user.project_domain, args.service_project_domain);
    if args.service_password_file.is_some() {
        user.password = None;
        user.password_file = args.service_password_file;
    }
    let password_env = std::env::var(settings::PASSWORD_ENV).ok().filter(|v| !v.is_empty());
    file.resolve(password_env).context("serve settings")
}

fn ca_init(args: &CaInitArgs) -> Result<Reply, Failure> {
    serve::cluster::ClusterUuid::parse(&args.cluster).map_err(|e| Failure::Input(e.into()))?;
    if args.trustee_user_id.as_deref().is_some_and(|id| id.trim().is_empty()) {
        return Err(Failure::Input(anyhow::anyhow!("--trustee-user-id is empty")));
    }
    let (path, pem) = serve::ca_init(
        &args.state,
        &args.cluster,
        args.trustee_user_id.as_deref(),
        args.name.as_deref(),
        args.ca_validity_days,
    )
    .map_err(Failure::Run)?;
    tracing::info!("hearth-server: CA of cluster {}: {}", args.cluster, path.display());
    Ok(Reply::new(pem.clone())
        .with("cluster", args.cluster.clone())
        .with("ca_path", path.display().to_string())
        .with("ca_pem", pem))
}

fn node_command(command: &NodeCommand) -> Result<Reply, Failure> {
    let (NodeCommand::Deny(NodeDenyArgs { node: NodeArgs { cluster: args, .. }, .. })
    | NodeCommand::Allow(NodeArgs { cluster: args, .. })
    | NodeCommand::List(args)) = command;
    let uuid = serve::cluster::ClusterUuid::parse(&args.cluster).map_err(|e| Failure::Input(e.into()))?;
    let state = serve::cluster::StateDir::new(&args.state);
    let failure = |e: EditError| match e {
        EditError::Failed(e) => Failure::Run(e),
        e => Failure::Input(e.into()),
    };
    let reply = match command {
        NodeCommand::Deny(NodeDenyArgs { node: NodeArgs { name, .. }, reason }) => {
            let (change, denial) = deny::deny(&state, &uuid, name, reason.as_deref()).map_err(failure)?;
            let reason =
                if denial.reason.is_empty() { "no reason given".to_string() } else { format!("{:?}", denial.reason) };
            let (words, change) = match change {
                Denied::Now => (format!("node {name} of cluster {uuid} is denied certificates ({reason})"), "denied"),
                Denied::ReasonUpdated => (
                    format!(
                        "node {name} of cluster {uuid} was already denied (since {}); reason now {reason}",
                        denial.at
                    ),
                    "reason_updated",
                ),
                Denied::Already => (
                    format!(
                        "node {name} of cluster {uuid} was already denied (since {}, {reason}); unchanged",
                        denial.at
                    ),
                    "unchanged",
                ),
            };
            Reply::new(words + "\n")
                .with("change", change)
                .with("denied_since", denial.at.clone())
                .with("reason", denial.reason.clone())
                .with("node", name.clone())
        }
        NodeCommand::Allow(NodeArgs { name, .. }) => {
            let (words, change) = match deny::allow(&state, &uuid, name).map_err(failure)? {
                Allowed::Again => (format!("node {name} of cluster {uuid} may obtain certificates again"), "allowed"),
                Allowed::NotDenied => {
                    (format!("node {name} of cluster {uuid} was not denied; nothing to do"), "unchanged")
                }
            };
            Reply::new(words + "\n").with("change", change).with("node", name.clone())
        }
        NodeCommand::List(_) => {
            let list = deny::list(&state, &uuid).map_err(failure)?;
            if list.is_empty() {
                tracing::info!("no node of cluster {uuid} is denied");
            }
            let mut text = String::new();
            let mut denied = Vec::new();
            for (name, denial) in list.iter() {
                // One line per node even for a reason edited in by hand.
                text.push_str(&format!("{name}\t{}\t{}\n", denial.at, denial.reason.replace(char::is_control, " ")));
                denied.push(serde_json::json!({"node": name, "since": denial.at, "reason": denial.reason}));
            }
            Reply::new(text).with("denied", denied)
        }
    };
    Ok(reply.with("cluster", uuid.to_string()))
}

fn cluster_config(args: &ClusterConfigArgs) -> Result<Reply, Failure> {
    let request = hearth_server::kubeconfig::Request {
        user: args.user.clone(),
        groups: args.groups.clone(),
        validity: time::Duration::hours(i64::from(args.hours)),
        server: args.server.clone(),
    };
    let written =
        hearth_server::kubeconfig::write(&args.state, &args.cluster, &request, &args.out).map_err(Failure::Input)?;
    let words = format!(
        "wrote {} for {} ({}), certificate {} valid until {}\n",
        args.out.display(),
        args.user,
        args.groups.join(","),
        written.serial,
        written.not_after
    );
    let not_after = written.not_after.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
    Ok(Reply::new(words)
        .with("out", args.out.display().to_string())
        .with("cluster", args.cluster.clone())
        .with("user", args.user.clone())
        .with("groups", args.groups.clone())
        .with("serial", written.serial)
        .with("not_after", not_after))
}

fn cluster_init(args: &ClusterInitArgs) -> Result<Reply, Failure> {
    serve::cluster::ClusterUuid::parse(&args.cluster).map_err(|e| Failure::Input(e.into()))?;
    let flag = |value: &Option<String>| value.clone().unwrap_or_default();
    let trustee_password = match &args.trustee_password_file {
        Some(path) => hearth_server::init::read_password(path).map_err(Failure::Input)?,
        None => String::new(),
    };
    let request = hearth_server::init::Request {
        cluster: args.cluster.clone(),
        name: args.name.clone(),
        out: args.out.clone(),
        state: args.state.clone(),
        ca_validity_days: args.ca_validity_days,
        auth_url: flag(&args.auth_url),
        magnum_url: flag(&args.magnum_url),
        region: flag(&args.region),
        trustee_domain_id: flag(&args.trustee_domain_id),
        trustee_user_id: flag(&args.trustee_user_id),
        trustee_username: flag(&args.trustee_username),
        trustee_password,
        trust_id: flag(&args.trust_id),
        agent_url: flag(&args.agent_url),
        agent_sha256: flag(&args.agent_sha256),
        agent_path: flag(&args.agent_path),
    };
    let done = hearth_server::init::prepare(&request).map_err(Failure::Run)?;
    let made = |written: bool| if written { "wrote" } else { "kept (already there)" };
    let mut words = format!("CA of cluster {}: {}\n", args.cluster, done.ca_path.display());
    words += &if done.registered {
        "registered the cluster for serve\n".to_string()
    } else {
        "not registered for serve yet: give --trustee-user-id, or render with --state\n".to_string()
    };
    words += &format!(
        "service-account key pair: {} {} and {}\n",
        made(done.keys_written),
        done.private_key.display(),
        done.public_key.display()
    );
    words += &format!("settings: {} {}\n", made(done.settings_written), done.settings.display());
    words += &format!(
        "next: fill in its empty fields, then hearth-server validate --cluster-template T --cluster C --settings {}\n",
        done.settings.display()
    );
    let path = |p: &std::path::Path| p.display().to_string();
    Ok(Reply::new(words)
        .with("cluster", args.cluster.to_ascii_lowercase())
        .with("ca_path", path(&done.ca_path))
        .with("registered", done.registered)
        .with("settings", path(&done.settings))
        .with("settings_written", done.settings_written)
        .with("service_account_private_key", path(&done.private_key))
        .with("service_account_public_key", path(&done.public_key))
        .with("keys_written", done.keys_written))
}
