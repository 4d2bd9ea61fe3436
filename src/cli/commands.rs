//! The operator commands (`pause`, `unpause`, `approve`, `reject`, `status`),
//! their flags, and the dispatch from parsed flags to the command functions.
//!
//! The binary also works as a kubectl plugin: link it as `kubectl-tollgate`
//! (`ln -s $(which tollgate) /usr/local/bin/kubectl-tollgate`) and run
//! `kubectl tollgate status`.

use jiff::Timestamp;
use kube::Client;

use super::decide::{DecideArgs, decide};
use super::error::CliError;
use super::pause::{PauseArgs, pause};
use super::status::{StatusArgs, status};
use super::unpause::{UnpauseArgs, unpause};
use crate::api::Verdict;

const PLUGIN_HELP: &str = "Also a kubectl plugin: ln -s $(which tollgate) /usr/local/bin/kubectl-tollgate, then `kubectl tollgate status`.";

/// The commands people use to operate Tollgate.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum OpsCommand {
    /// Hold releases: create a ReleasePause for repositories and environments.
    #[command(after_help = PLUGIN_HELP)]
    Pause(PauseArgs),
    /// Resume a ReleasePause for its current (sha, reason) and wait until the operator acknowledges it.
    #[command(after_help = PLUGIN_HELP)]
    Unpause(UnpauseArgs),
    /// Approve a waiting DeploymentGate (an override that records who and why).
    #[command(after_help = PLUGIN_HELP)]
    Approve(DecideArgs),
    /// Reject a waiting DeploymentGate (an override that records who and why).
    #[command(after_help = PLUGIN_HELP)]
    Reject(DecideArgs),
    /// Show gates (what each waits for, until when, what happens at the deadline) and pauses.
    #[command(after_help = PLUGIN_HELP)]
    Status(StatusArgs),
}

/// The operator commands on their own, for parsing in tests (`OpsCli::try_parse_from`).
#[derive(clap::Parser, Debug)]
#[command(name = "tollgate")]
pub struct OpsCli {
    #[command(subcommand)]
    pub command: OpsCommand,
}

/// Connects with the kubeconfig (or in-cluster config) and runs the command.
pub async fn execute(command: OpsCommand) -> Result<String, CliError> {
    let client = Client::try_default()
        .await
        .map_err(|e| CliError::NoCluster(e.to_string()))?;
    run(&client, command, Timestamp::now()).await
}

/// Runs one command against `client`; returns what to print.
pub async fn run(client: &Client, command: OpsCommand, now: Timestamp) -> Result<String, CliError> {
    match command {
        OpsCommand::Pause(args) => pause(client, &args, now).await,
        OpsCommand::Unpause(args) => unpause(client, &args, now).await,
        OpsCommand::Approve(args) => decide(client, &args, Verdict::Approve).await,
        OpsCommand::Reject(args) => decide(client, &args, Verdict::Reject).await,
        OpsCommand::Status(args) => status(client, &args).await,
    }
}
