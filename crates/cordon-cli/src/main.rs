//! `cordon`: the command-line front end. Glue only; every decision lives in
//! the `cordon` library.
//!
//! Exit status (DESIGN.md): the command's own; 128+N when a signal ended it;
//! 124 at the wall-clock timeout; 125 when cordon failed before the command
//! started (bad flags included); 126/127 when the command could not be
//! executed / was not found. `cordon exec` adds 1 for a handler that
//! exited 0 without a valid result; `cordon check` exits 125 when the
//! plugin cannot run here; `cordon audit --verify` exits 1 when the log's
//! hash chain is broken. `cordon doctor` exits 0. `cordon` alone prints its
//! usage and exits 2. `cordon plugin`, `key`
//! and `trust` exit 0 when done, 1 when refused (verification, consent,
//! hostile package, disabled plugin) and 2 on a usage error.

mod cmd;
mod render;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cordon", version, about = "Run a command under a kernel-enforced policy", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one command in a sandbox.
    Run(cmd::run::RunArgs),
    /// Run a handler of a plugin folder under its manifest's policy.
    Exec(cmd::exec::ExecArgs),
    /// Validate a plugin and show how this host enforces each permission and quota.
    Check(cmd::check::CheckArgs),
    /// List or verify the audit log.
    Audit(cmd::audit::AuditArgs),
    /// Show what this host can enforce, per mode.
    Doctor(cmd::doctor::DoctorArgs),
    /// Package, sign, install and manage plugins.
    Plugin(cmd::plugin::PluginArgs),
    /// Generate a signing key.
    Key(cmd::key::KeyArgs),
    /// Manage the publisher keys this host trusts.
    Trust(cmd::trust::TrustArgs),
}

/// Subcommands with the registry's exit statuses: 2 for a usage error.
const REGISTRY_COMMANDS: &[&str] = &["plugin", "key", "trust"];

fn main() -> ExitCode {
    cordon::trace::step("cli: start");
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            let _ = e.print();
            return match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => ExitCode::SUCCESS,
                // `cordon` alone, or a command group without its command: usage.
                ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => ExitCode::from(2),
                _ if std::env::args().nth(1).is_some_and(|a| REGISTRY_COMMANDS.contains(&a.as_str())) => {
                    ExitCode::from(2)
                }
                _ => ExitCode::from(125),
            };
        }
    };
    cordon::trace::step("cli: arguments parsed");
    let status = match cli.command {
        Command::Run(args) => cmd::run::run(args),
        Command::Exec(args) => cmd::exec::run(args),
        Command::Check(args) => cmd::check::run(args),
        Command::Audit(args) => cmd::audit::run(args),
        Command::Doctor(args) => cmd::doctor::run(args),
        Command::Plugin(args) => Ok(cmd::plugin::run(args)),
        Command::Key(args) => Ok(cmd::key::run(args)),
        Command::Trust(args) => Ok(cmd::trust::run(args)),
    };
    cordon::trace::step("cli: done");
    match status {
        Ok(code) => ExitCode::from(u8::try_from(code.clamp(0, 255)).unwrap_or(125)),
        Err(e) => {
            render::error(&e);
            ExitCode::from(125)
        }
    }
}
