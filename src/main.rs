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
    /// Run the operator against the current kubeconfig or in-cluster config.
    Run(Box<tollgate::operator::RunArgs>),
    /// Print the CustomResourceDefinitions as one multi-document YAML.
    Crd,
    #[command(flatten)]
    Ops(tollgate::cli::commands::OpsCommand),
    /// Evaluate gates in manifest files offline and print one JSON verdict per gate.
    Evaluate(tollgate::cli::evaluate::EvaluateArgs),
    /// Check an installation: API server, permissions, CRDs, configuration, GitHub, webhook secret, Deployment, leader.
    Doctor(tollgate::cli::doctor::DoctorArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => {
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("tollgate run: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let result = runtime.block_on(tollgate::operator::run(*args));
            // Tasks still running (servers, a request to a server that is
            // gone) must not hold the exit.
            runtime.shutdown_timeout(std::time::Duration::from_secs(1));
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "tollgate stopped");
                    eprintln!("tollgate run: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Ops(command) => {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("tollgate: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(tollgate::cli::commands::execute(command)) {
                Ok(out) => {
                    print!("{out}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("tollgate: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Evaluate(args) => match tollgate::cli::evaluate::evaluate(&args) {
            Ok(lines) => {
                for line in lines {
                    println!("{line}");
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("tollgate evaluate: {e}");
                ExitCode::from(2)
            }
        },
        Command::Doctor(args) => {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("tollgate doctor: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let report = runtime.block_on(tollgate::cli::doctor::execute(&args));
            print!("{}", report.render(args.output));
            ExitCode::from(report.exit_code())
        }
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
