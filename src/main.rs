use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Tollgate decides GitHub deployment protection rules from Kubernetes.
#[derive(Parser)]
#[command(name = "tollgate", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the CustomResourceDefinitions as one multi-document YAML.
    Crd,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => match tollgate::api::crds_yaml() {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("tollgate crd: cannot render the CRDs: {e}");
                ExitCode::FAILURE
            }
        },
    }
}
