//! The command line: `lint` (offline), `check` (one-shot), `run` (the operator), `crd`,
//! `explain` (the troubleshooting guide), `completion`. The same binary is the kubectl plugin
//! when invoked as `kubectl-irsa_doctor`.

use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

pub mod args;
pub mod audit;
pub mod check;
pub mod cluster_view;
pub mod explain;
pub mod inputs;
pub mod lint;
pub mod output;
pub mod sarif;
pub mod table;
pub mod trust_map;

/// Diagnoses IAM Roles for Service Accounts (IRSA) on Amazon EKS and says how to fix what is wrong.
#[derive(Debug, Parser)]
#[command(name = "irsa-doctor", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// The operator: watch IrsaChecks and ServiceAccounts, write conditions, Events and metrics.
    Run(Box<args::RunArgs>),
    /// One-shot diagnosis with the current kube context and AWS credentials.
    ///
    /// Exit status: 0 no error findings, 1 error findings, 2 could not run.
    Check(check::CheckArgs),
    /// Offline check of ServiceAccount manifests against trust policies, for CI pipelines.
    ///
    /// Exit status: 0 no error findings, 1 error findings, 2 unusable input.
    Lint(lint::LintArgs),
    /// Audits of the whole cluster and its AWS accounts: `audit trust`, who can assume what.
    Audit(audit::AuditArgs),
    /// A reason's troubleshooting entry (cause, how to confirm, fix); every reason when omitted.
    ///
    /// Exit status: 0 printed, 2 unknown reason.
    Explain(explain::ExplainArgs),
    /// A shell completion script, on standard output.
    Completion(CompletionArgs),
    /// Print the IrsaCheck CustomResourceDefinition.
    Crd,
}

/// Arguments of `irsa-doctor completion`.
#[derive(Debug, Args)]
pub struct CompletionArgs {
    /// The shell, e.g. bash (`source <(irsa-doctor completion bash)`), zsh or fish.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// How the binary was started: as itself, or by kubectl as the `irsa-doctor` plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invocation {
    /// `irsa-doctor ...`.
    Direct,
    /// `kubectl irsa-doctor ...`: kubectl runs `kubectl-irsa_doctor` from PATH.
    KubectlPlugin,
}

impl Invocation {
    /// The file name kubectl looks for on PATH for `kubectl irsa-doctor` (a dash in a plugin's
    /// command is an underscore in its file name).
    pub const PLUGIN_FILE_NAME: &'static str = "kubectl-irsa_doctor";

    /// The invocation `argv[0]` names: the plugin when its file name is the plugin's.
    pub fn from_argv0(argv0: Option<&OsString>) -> Invocation {
        let stem = argv0
            .map(Path::new)
            .and_then(Path::file_stem)
            .and_then(|s| s.to_str());
        if stem == Some(Self::PLUGIN_FILE_NAME) {
            Invocation::KubectlPlugin
        } else {
            Invocation::Direct
        }
    }

    /// The command as the user typed it, for usage lines and messages.
    pub fn display_name(self) -> &'static str {
        match self {
            Invocation::Direct => "irsa-doctor",
            Invocation::KubectlPlugin => "kubectl irsa-doctor",
        }
    }

    /// The executable's name, for completion scripts (a shell completes one word).
    pub fn executable_name(self) -> &'static str {
        match self {
            Invocation::Direct => "irsa-doctor",
            Invocation::KubectlPlugin => Self::PLUGIN_FILE_NAME,
        }
    }

    /// The clap command, its usage lines naming the command as typed.
    pub fn command(self) -> clap::Command {
        Cli::command().bin_name(self.display_name())
    }
}

/// Parses a command line (`argv[0]` first) as the invocation it names. Exits, as clap does, with
/// status 2 and a usage message on a bad command line, 0 after `--help` or `--version`.
pub fn parse_args(args: impl IntoIterator<Item = OsString>) -> (Invocation, Cli) {
    let args: Vec<OsString> = args.into_iter().collect();
    let invocation = Invocation::from_argv0(args.first());
    let cli = invocation
        .command()
        .try_get_matches_from(args)
        .and_then(|mut matches| Cli::from_arg_matches_mut(&mut matches))
        .unwrap_or_else(|e| e.exit());
    (invocation, cli)
}

/// Prints the completion script of the command as invoked.
fn completion(invocation: Invocation, args: &CompletionArgs) -> anyhow::Result<ExitCode> {
    let mut script = Vec::new();
    clap_complete::generate(
        args.shell,
        &mut invocation.command(),
        invocation.executable_name(),
        &mut script,
    );
    output::emit(&String::from_utf8_lossy(&script))?;
    Ok(ExitCode::SUCCESS)
}

/// Runs a parsed command line; errors are printed here, the only place `anyhow` meets the user.
pub async fn main(invocation: Invocation, cli: Cli) -> ExitCode {
    let (name, result) = match cli.command {
        Command::Lint(args) => ("lint", lint::run(&args)),
        Command::Check(args) => ("check", check::run(&args).await),
        Command::Audit(args) => ("audit", audit::run(&args).await),
        Command::Explain(args) => ("explain", explain::run(&args).map_err(anyhow::Error::from)),
        Command::Completion(args) => ("completion", completion(invocation, &args)),
        Command::Run(args) => (
            "run",
            crate::operator::run(args.config())
                .await
                .map(|stopped| ExitCode::from(stopped.exit_code()))
                .map_err(anyhow::Error::from),
        ),
        Command::Crd => {
            print!("{}", crate::api::crd_yaml());
            ("crd", Ok(ExitCode::SUCCESS))
        }
    };
    result.unwrap_or_else(|e| {
        eprintln!("{} {name}: error: {e:#}", invocation.display_name());
        ExitCode::from(2)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plugin_is_recognised_by_its_file_name() {
        let argv0 = |s: &str| Invocation::from_argv0(Some(&OsString::from(s)));
        assert_eq!(
            argv0("/home/u/.krew/bin/kubectl-irsa_doctor"),
            Invocation::KubectlPlugin
        );
        assert_eq!(argv0("kubectl-irsa_doctor.exe"), Invocation::KubectlPlugin);
        assert_eq!(argv0("/usr/bin/irsa-doctor"), Invocation::Direct);
        assert_eq!(argv0("kubectl-irsa-doctor"), Invocation::Direct);
        assert_eq!(Invocation::from_argv0(None), Invocation::Direct);
    }

    #[test]
    fn check_accepts_kubectl_flags_and_the_old_format_flag() {
        let parse = |args: &[&str]| {
            Invocation::KubectlPlugin
                .command()
                .try_get_matches_from(args)
                .and_then(|mut m| Cli::from_arg_matches_mut(&mut m))
        };
        let Command::Check(check) = parse(&[
            "kubectl-irsa_doctor",
            "check",
            "-A",
            "--context=prod",
            "--kubeconfig",
            "/k",
            "-o=wide",
        ])
        .unwrap()
        .command
        else {
            panic!("check");
        };
        assert_eq!(check.output(), check::OutputFormat::Wide);
        let Command::Check(check) = parse(&["x", "check", "--format", "json"]).unwrap().command
        else {
            panic!("check");
        };
        assert_eq!(check.output(), check::OutputFormat::Json);
        let both = parse(&["x", "check", "--format", "json", "-o", "yaml"]).unwrap_err();
        assert_eq!(both.kind(), clap::error::ErrorKind::ArgumentConflict);
        let usage = parse(&["x", "check", "--bogus"]).unwrap_err().to_string();
        assert!(usage.contains("kubectl irsa-doctor check"), "{usage}");
    }
}
