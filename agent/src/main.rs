//! hearth-agent's command line. Exit codes: 0 done, 1 the run (or the signal) failed, 2 bad input.

// Product code fails with a message or an error, never a bare unwrap; tests may unwrap.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

use anyhow::{bail, Context as _, Result};
use clap::{Args, Parser, Subcommand};
use hearth_agent::input::{self, LoadError, Source};
use hearth_agent::runner::{self, RunOptions};
use hearth_agent::signal::SignalBody;
use hearth_agent::state::{RunState, StateDir};
use hearth_fragments::config::native;
use hearth_fragments::facts::OsFamily;
use hearth_fragments::host::Mode;
use hearth_fragments::steps;
use hearth_fragments::{NodeConfig, Role};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Turns a freshly booted OpenStack VM into a Kubernetes master or minion, step by step, and tells Heat
/// how it went.
#[derive(Debug, Parser)]
#[command(name = "hearth-agent", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Configure this node (or the tree under --root) and signal the wait condition.
    Run(RunArgs),
    /// Print every action each step would take; change nothing.
    Plan(InputArgs),
    /// Print the parsed config (secrets masked), or every error in it.
    Validate(InputArgs),
    /// The step catalogue of a role, with the cloud-init part numbers operators know.
    Steps {
        #[arg(long)]
        role: Option<Role>,
    },
    /// The last run: per-step result, timings and reason.
    Status {
        #[arg(long)]
        root: Option<PathBuf>,
        /// Print status.json as is.
        #[arg(long)]
        json: bool,
    },
    /// Send the last run's result to Heat again.
    Signal {
        #[arg(long, required = true)]
        resend: bool,
        #[command(flatten)]
        input: InputArgs,
    },
}

#[derive(Debug, Clone, Args)]
struct InputArgs {
    /// Native node config (JSON or YAML).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Magnum's heat-params file.
    #[arg(long, value_name = "FILE")]
    heat_params: Option<PathBuf>,
    /// The node's role, when the config does not say.
    #[arg(long)]
    role: Option<Role>,
    /// Act on the tree under DIR instead of /.
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    /// The OS family, instead of reading os-release (for a root that has none).
    #[arg(long)]
    os: Option<OsArg>,
}

#[derive(Debug, Args)]
struct RunArgs {
    #[command(flatten)]
    input: InputArgs,
    /// Change nothing; report what would change.
    #[arg(long)]
    dry_run: bool,
    /// Run this one step (name or part number); no signal is sent.
    #[arg(long, value_name = "STEP")]
    only: Option<String>,
    /// Start at this step.
    #[arg(long, value_name = "STEP")]
    from: Option<String>,
    /// Events as JSON lines on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum OsArg {
    FedoraAtomic,
    FedoraCoreos,
    Debian,
}

impl From<OsArg> for OsFamily {
    fn from(os: OsArg) -> Self {
        match os {
            OsArg::FedoraAtomic => OsFamily::FedoraAtomic,
            OsArg::FedoraCoreos => OsFamily::FedoraCoreos,
            OsArg::Debian => OsFamily::Debian,
        }
    }
}

/// Failures that are the input's fault (exit 2) rather than the run's (exit 1).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct BadInput(String);

fn main() -> ExitCode {
    hearth_fragments::log::init();
    let cli = Cli::parse();
    match dispatch(cli.command) {
        Ok(code) => code,
        Err(e) => {
            tracing::error!("{e:#}");
            if e.downcast_ref::<BadInput>().is_some() || e.downcast_ref::<LoadError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn dispatch(command: Command) -> Result<ExitCode> {
    match command {
        Command::Run(args) => run(args),
        Command::Plan(input) => run(RunArgs { input, dry_run: true, only: None, from: None, json: false }),
        Command::Validate(input) => validate(&input),
        Command::Steps { role } => {
            print_steps(role);
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { root, json } => status(root.as_deref().unwrap_or(Path::new("/")), json),
        Command::Signal { resend: _, input } => resend(&input),
    }
}

fn root_of(input: &InputArgs) -> &Path {
    input.root.as_deref().unwrap_or(Path::new("/"))
}

fn source(input: &InputArgs) -> Result<Source> {
    Source::locate(input.config.as_deref(), input.heat_params.as_deref(), root_of(input))
        .map_err(|e| BadInput(format!("{e:#}")).into())
}

/// Loads the config; on failure still tells Heat why when the endpoint can be read.
fn load_for_run(input: &InputArgs, signal_on_failure: bool) -> Result<NodeConfig> {
    let source = source(input)?;
    match input::load(&source, input.role) {
        Ok(loaded) => {
            for warning in &loaded.warnings {
                tracing::warn!("{}", warning);
            }
            let mut config = loaded.config;
            // Magnum's part-001 left the OpenStack CA on the node: trust it from the first request on.
            config.openstack.find_ca(root_of(input));
            Ok(config)
        }
        Err(e) => {
            if signal_on_failure {
                if let Some((endpoint, token)) = input::recover_signal(&source) {
                    // Nothing else in a broken config can be trusted: signal with default HTTP settings,
                    // and scrub the token from the reason as a last guard (the loader masks secrets already).
                    let mut fallback = NodeConfig::new(input.role.unwrap_or(Role::Minion));
                    fallback.signal.token = token;
                    let reason = fallback.scrub(&format!("config: {e}"));
                    let id = hearth_agent::signal::node_signal_id(None, &hostname());
                    let body = SignalBody::failure(id, &reason);
                    hearth_agent::signal::deliver(&fallback, &endpoint, fallback.signal.token.expose(), body);
                }
            }
            Err(e.into())
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string(hearth_fragments::paths::KERNEL_HOSTNAME).unwrap_or_default().trim().to_string()
}

fn run(args: RunArgs) -> Result<ExitCode> {
    let config = load_for_run(&args.input, !args.dry_run)?;
    let root = root_of(&args.input).to_path_buf();
    let mode = match (args.dry_run, &args.input.root) {
        (true, _) => Mode::DryRun { root },
        (false, Some(_)) => Mode::Rooted(root),
        (false, None) => Mode::System,
    };
    let options =
        RunOptions { mode, only: args.only, from: args.from, os: args.input.os.map(Into::into), json: args.json };
    let entries = runner::select(&config, &options).map_err(|e| BadInput(format!("{e:#}")))?;
    // A panic outside a step (steps have their own guard) must still reach Heat as a FAILURE.
    let status = match std::panic::catch_unwind(|| runner::run(&config, &options, &entries)) {
        Ok(status) => status?,
        Err(_) if !args.dry_run && !config.signal.endpoint.is_empty() => {
            let id = hearth_agent::signal::node_signal_id(Some(&config), &hostname());
            let body = SignalBody::failure(id, "hearth-agent panicked; see the node's journal");
            hearth_agent::signal::deliver(&config, &config.signal.endpoint, config.signal.token.expose(), body);
            bail!("hearth-agent panicked");
        }
        Err(_) => bail!("hearth-agent panicked"),
    };
    Ok(if status.state == RunState::Succeeded { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn validate(input: &InputArgs) -> Result<ExitCode> {
    let source = source(input)?;
    match input::load(&source, input.role) {
        Ok(loaded) => {
            for warning in &loaded.warnings {
                tracing::warn!("{}", warning);
            }
            // What `run` would refuse before its first step, refused here too.
            let refused = steps::check(&loaded.config, steps::catalogue(loaded.config.role));
            if !refused.is_empty() {
                let name = source.path.display().to_string();
                eprintln!("{}", hearth_fragments::config::ConfigErrors { source_name: name, errors: refused });
                return Ok(ExitCode::from(2));
            }
            hearth_agent::say!("{}", native::render(&loaded.config.masked()).trim_end_matches('\n'));
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{e}");
            Ok(ExitCode::from(2))
        }
    }
}

fn print_steps(role: Option<Role>) {
    let roles = role.map(|r| vec![r]).unwrap_or_else(|| vec![Role::Master, Role::Minion]);
    for role in &roles {
        if roles.len() > 1 {
            hearth_agent::say!("# {role}");
        }
        for entry in steps::catalogue(*role) {
            hearth_agent::say!("{}  {}", entry.part_name(), entry.name);
        }
    }
}

fn status(root: &Path, json: bool) -> Result<ExitCode> {
    let state = StateDir::under(root);
    let status = state.read_status()?;
    if json {
        hearth_agent::say!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        for line in hearth_agent::report::status_lines(&status, &state.how_it_went(&status)) {
            hearth_agent::say!("{line}");
        }
        if let Some(partial) = state.later_partial(&status) {
            let steps: Vec<String> = partial.steps.iter().map(|s| format!("part-{:03} {}", s.part, s.name)).collect();
            hearth_agent::say!(
                "since then, a partial run (--only/--from) of {}: {} (partial.json)",
                steps.join(", "),
                state.how_it_went(&partial)
            );
        }
    }
    Ok(if status.state == RunState::Succeeded { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn resend(input: &InputArgs) -> Result<ExitCode> {
    let config = load_for_run(input, false)?;
    let state = StateDir::under(root_of(input));
    let mut status = state.read_status()?;
    let previous = status.signal.clone().context("the last run recorded no signal to resend")?;
    let token = config.signal.token.expose();
    if token.is_empty() {
        bail!(BadInput("the config has no wait-condition token".into()));
    }
    let record = hearth_agent::signal::deliver(&config, &previous.endpoint, token, previous.body);
    let sent = record.sent.is_some();
    status.signal = Some(record);
    state.write_status(&status)?;
    Ok(if sent { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
