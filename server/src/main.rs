use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use hearth_server::bundle::{self, RenderError};
use hearth_server::model::{self, Cluster, ClusterTemplate};
use hearth_server::settings::Loaded;
use hearth_server::validate;
use std::path::PathBuf;
use std::process::ExitCode;

/// Validates Magnum cluster templates and clusters and renders the Heat stack whose nodes run hearth-agent.
#[derive(Debug, Parser)]
#[command(name = "hearth-server", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a cluster template and a cluster against Magnum's rules (and the settings, when given).
    /// Exit 0 when valid, 2 with every error otherwise.
    Validate {
        #[command(flatten)]
        inputs: Inputs,
        #[arg(long)]
        settings: Option<PathBuf>,
    },
    /// Render the cluster's Heat bundle into DIR: cluster.yaml, master.yaml, minion.yaml,
    /// environment.yaml and stack.json (the body of Heat's stack-create API).
    Render {
        #[command(flatten)]
        inputs: Inputs,
        #[arg(long)]
        settings: PathBuf,
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

#[derive(Debug, Args)]
struct Inputs {
    #[arg(long, value_name = "FILE")]
    cluster_template: PathBuf,
    #[arg(long, value_name = "FILE")]
    cluster: PathBuf,
}

impl Inputs {
    fn load(&self) -> Result<(ClusterTemplate, Cluster)> {
        Ok((model::load(&self.cluster_template)?, model::load(&self.cluster)?))
    }
}

/// Exit codes: 0 done, 1 failed (I/O, a file that does not parse), 2 invalid input.
fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("hearth-server: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(command: Command) -> Result<ExitCode> {
    match command {
        Command::Validate { inputs, settings } => {
            let (template, cluster) = inputs.load()?;
            let settings = settings.map(|path| Loaded::load(&path)).transpose()?;
            let report = validate::validate(&template, &cluster, settings.as_ref());
            if report.is_ok() {
                println!("valid");
                return Ok(ExitCode::SUCCESS);
            }
            eprintln!("{} invalid field(s):", report.errors.len());
            for error in &report.errors {
                eprintln!("  {error}");
            }
            Ok(ExitCode::from(2))
        }
        Command::Render { inputs, settings, out } => {
            let (template, cluster) = inputs.load()?;
            let settings = Loaded::load(&settings)?;
            match bundle::render(&template, &cluster, &settings) {
                Ok(bundle) => {
                    bundle.write(&out)?;
                    print!("{}", bundle.summary(&out));
                    Ok(ExitCode::SUCCESS)
                }
                Err(RenderError::Invalid(errors)) => {
                    eprintln!("{} invalid field(s):", errors.len());
                    for error in &errors {
                        eprintln!("  {error}");
                    }
                    Ok(ExitCode::from(2))
                }
                Err(RenderError::Other(e)) => Err(e),
            }
        }
    }
}
