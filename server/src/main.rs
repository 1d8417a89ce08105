use clap::Parser;

/// Validates Magnum cluster templates and clusters, renders their Heat stacks, and serves certificates
/// and the agent binary to nodes. No subcommand is implemented yet: this release is the agent's.
#[derive(Debug, Parser)]
#[command(name = "hearth-server", version, about)]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
    eprintln!("hearth-server: no subcommand is implemented yet; see --help");
    std::process::exit(2);
}
