//! The `cordon` command line, shared by its two programs: `cordon` (every
//! subcommand but the service's) and `cordon-server` (the same command line,
//! the service's subcommands included). Glue only; every decision lives in
//! the `cordon` library.
//!
//! Why two programs: `cordon run` is started once per sandboxed command, and
//! every start pays the dynamic loader for the whole program: one relative
//! relocation (and, per page, a copy-on-write fault) for each pointer in its
//! read-only data. The service's subcommands (`serve`, `worker`,
//! `dead-letters`) bring the gateway, HTTP, JWT, Prometheus, NATS and TLS:
//! about three quarters of a program that has them (24.5k relocations, 15 MB,
//! against 5.8k and 5.8 MB without). So `cordon` parses its whole command
//! line as before (same `--help`, errors, completions and man pages), and
//! for those three subcommands replaces itself (`execve`, same process id,
//! arguments, environment and descriptors) with the `cordon-server` installed
//! next to it ([`exec_server`]). Nothing else changes for them.
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
//! hostile package, disabled plugin) and 2 on a usage error; `completions`
//! and `man` exit 0, or 2 on a usage error. `serve`, `worker` and
//! `dead-letters` exit 125 when `cordon-server` cannot be started.

#![deny(unsafe_code)]

mod cmd;
mod render;

use std::io::Write;

use clap::{CommandFactory, Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cordon", version, about = "Run a command under a kernel-enforced policy", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The subcommands. `defer`: a subcommand's arguments are built only when
/// it is the one chosen, so a run does not build the clap definition of the
/// twelve others on every start (~0.15 ms). Names and the one-line
/// summaries below stay eager: `cordon --help` lists them. A deferred
/// build applies the `Args` struct's own metadata last, so a flattened
/// struct must not carry a doc comment (it would replace the summary);
/// `completions` and `man` take [`full_command`].
#[derive(Subcommand)]
#[command(defer = true)]
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
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(cmd::docs::CompletionsArgs),
    /// Print a man page, or write them all with --out.
    Man(cmd::docs::ManArgs),
    /// Serve the HTTP API: authenticated, multi-tenant plugin executions.
    Serve(cmd::serve::ServeArgs),
    /// Run executions from the `cordon serve --queue` NATS JetStream queue on this host.
    Worker(cmd::queue::WorkerArgs),
    /// Record executions that used up their deliveries as LOST (the queue's dead-letter handler).
    DeadLetters(cmd::queue::DeadLettersArgs),
}

/// Subcommands that exit 2 on a usage error (the registry's, and those
/// that only print); `run`, `exec` and `check` exit 125, as DESIGN.md says.
const USAGE_EXIT_2_COMMANDS: &[&str] = &["plugin", "key", "trust", "completions", "man"];

/// The service's subcommands, parsed: what a [`ServerRunner`] runs.
pub enum ServerCommand {
    /// `cordon serve`.
    Serve(cmd::serve::ServeArgs),
    /// `cordon worker`.
    Worker(cmd::queue::WorkerArgs),
    /// `cordon dead-letters`.
    DeadLetters(cmd::queue::DeadLettersArgs),
}

/// How a program runs the service's subcommands: [`exec_server`] in
/// `cordon`, [`run_server_here`] in `cordon-server`. A function pointer, so
/// that `cordon` does not reference (and so does not link) the service.
pub type ServerRunner = fn(ServerCommand) -> anyhow::Result<i32>;

/// The name of the program [`exec_server`] starts, next to the running one.
pub const SERVER_PROGRAM: &str = "cordon-server";

/// The entry point of both programs, called from their `main`. With glibc
/// that is a C `main`, so Rust's runtime set-up is skipped (it reads
/// `/proc/self/maps` and maps a signal stack on every start, about 0.1 ms)
/// and [`cordon::runtime_init`] does what is kept of it; the arguments
/// reach `std::env::args` as usual (glibc passes them to Rust's
/// initialiser). With musl, which does not, it is Rust's `fn main` (after
/// the runtime's set-up). The exit status is the same as `ExitCode` would
/// give.
pub fn main(server: ServerRunner) -> std::ffi::c_int {
    cordon::trace::step("cli: start");
    // As the runtime's `lang_start`: a panic that unwinds (debug builds; the
    // release profile aborts) ends with status 101, not an abort at the C
    // boundary.
    let code = std::panic::catch_unwind(|| run(server)).unwrap_or(101);
    // What the runtime does on the way out: stdout is line-buffered, and a
    // last line without its newline must not be lost.
    let _ = std::io::stdout().flush();
    code
}

/// Runs a service subcommand in this process (`cordon-server`).
pub fn run_server_here(command: ServerCommand) -> anyhow::Result<i32> {
    match command {
        ServerCommand::Serve(args) => cmd::serve::run(args),
        ServerCommand::Worker(args) => cmd::queue::worker(args),
        ServerCommand::DeadLetters(args) => cmd::queue::dead_letters(args),
    }
}

/// Replaces this process with [`SERVER_PROGRAM`] from the folder of the
/// running program (`/proc/self/exe`, links resolved), given this process's
/// own arguments (`argv[0]` included, so messages name the program as
/// typed), environment and descriptors. Returns only on failure: the error
/// names the path and says what to install.
pub fn exec_server(_parsed: ServerCommand) -> anyhow::Result<i32> {
    use anyhow::Context;
    use std::os::unix::process::CommandExt;
    let exe =
        std::env::current_exe().context("cannot find the running program (/proc/self/exe) to start cordon-server")?;
    let server = exe.with_file_name(SERVER_PROGRAM);
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| "cordon".into());
    let err = std::process::Command::new(&server).arg0(arg0).args(args).exec();
    Err(anyhow::anyhow!(
        "cannot start {}: {err}\n  hint: cordon's service subcommands (serve, worker, dead-letters) run in the \
{SERVER_PROGRAM} program, installed in the same folder as cordon (cargo builds both, side by side in \
target/x86_64-unknown-linux-musl/release/)",
        server.display()
    ))
}

/// The whole clap definition, every subcommand's arguments built and not
/// yet the root: as an eager definition, so that building the root (as
/// `clap_complete` and `Command::build` do) copies the full tree of
/// subcommands under `help`. (A deferred root built at once makes that
/// copy before its subcommands are expanded: `cordon help plugin <TAB>`
/// would complete nothing.)
fn full_command() -> clap::Command {
    let mut built = Cli::command();
    built.build();
    built
        .get_subcommands()
        .filter(|s| s.get_name() != "help")
        .fold(Cli::command(), |cli, sub| cli.mut_subcommand(sub.get_name(), |_| sub.clone()))
}

/// `cordon run ...` in its everyday shape, parsed without clap (see
/// [`cmd::run::parse_fast`]); `None` leaves it to clap.
fn fast_run_args() -> Option<cmd::run::RunArgs> {
    let mut args = std::env::args_os().skip(1);
    if args.next()? != "run" {
        return None;
    }
    let rest: Vec<String> = args.map(|a| a.into_string().ok()).collect::<Option<_>>()?;
    cmd::run::parse_fast(&rest)
}

fn run(server: ServerRunner) -> std::ffi::c_int {
    let cli = match fast_run_args().map(|args| Cli { command: Command::Run(args) }).map_or_else(Cli::try_parse, Ok) {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            let _ = e.print();
            return match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => 0,
                // `cordon` alone, or a command group without its command: usage.
                ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => 2,
                _ if std::env::args().nth(1).is_some_and(|a| USAGE_EXIT_2_COMMANDS.contains(&a.as_str())) => 2,
                _ => 125,
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
        Command::Completions(args) => cmd::docs::completions(args, full_command()),
        Command::Man(args) => cmd::docs::man(args, full_command()),
        Command::Serve(args) => server(ServerCommand::Serve(args)),
        Command::Worker(args) => server(ServerCommand::Worker(args)),
        Command::DeadLetters(args) => server(ServerCommand::DeadLetters(args)),
    };
    cordon::trace::step("cli: done");
    match status {
        Ok(code) => code.clamp(0, 255),
        Err(e) => {
            render::error(&e);
            125
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summaries(cli: &clap::Command) -> Vec<(String, Option<String>)> {
        cli.get_subcommands()
            .filter(|s| s.get_name() != "help")
            .map(|s| (s.get_name().to_owned(), s.get_about().map(ToString::to_string)))
            .collect()
    }

    /// Building a deferred subcommand keeps the summary its variant gives
    /// (`cordon exec --help`, the man pages): no flattened struct's doc
    /// comment replaces it.
    #[test]
    fn summaries_survive_building_the_subcommands() {
        let eager = summaries(&Cli::command());
        assert!(eager
            .contains(&("exec".into(), Some("Run a handler of a plugin folder under its manifest's policy".into()))));
        let mut built = full_command();
        built.build();
        assert_eq!(summaries(&built), eager);
        for (name, about) in &eager {
            let mut one = Cli::command();
            let parsed = one.try_get_matches_from_mut(["cordon", name, "--help"]);
            assert_eq!(parsed.map(|_| ()).map_err(|e| e.kind()), Err(clap::error::ErrorKind::DisplayHelp), "{name}");
            let sub = one.find_subcommand(name).unwrap();
            assert_eq!(sub.get_about().map(ToString::to_string), *about, "{name} --help");
        }
    }

    /// What clap makes of `cordon run ARGS`: the parsed arguments, or the
    /// kind of error.
    fn clap_run(argv: &[&str]) -> Result<String, clap::error::ErrorKind> {
        match Cli::try_parse_from(["cordon", "run"].iter().chain(argv)) {
            Ok(Cli { command: Command::Run(a) }) => Ok(format!("{a:?}")),
            Ok(_) => panic!("not a run: {argv:?}"),
            Err(e) => Err(e.kind()),
        }
    }

    /// The fast path of `cordon run` parses every shape it takes exactly as
    /// clap does, and leaves everything else to clap (whose messages the
    /// user then gets).
    #[test]
    fn the_fast_run_parser_agrees_with_clap() {
        let taken: &[&[&str]] = &[
            &["--", "true"],
            &["true"],
            &["true", "--json", "-x"],
            &["true", "--", "x"],
            &["--", "--json"],
            &["--", "-x", "--", "y"],
            &["--mode", "dev", "--", "/bin/true"],
            &["--read", "/a", "--read", "b", "--write", "c", "--deny", "d", "--net", "x.org:443", "--env", "HOME", "x"],
            &["--set-env", "K=V", "--exec", "/bin/sh", "--", "sh", "-c", "echo hi"],
            &[
                "--policy",
                "p.toml",
                "--mode",
                "process",
                "--net-via",
                "proxy",
                "--cwd",
                "/tmp",
                "--audit-log",
                "l",
                "x",
            ],
            &["--timeout-ms", "10", "--grace-ms", "0", "--memory-mb", "+5", "--cpu-ms", "18446744073709551615", "x"],
            &["--pids", "3", "--file-size-mb", "1", "--output-bytes", "7", "--", "x"],
            &["--no-system", "--deny-wx", "--json", "--no-tty", "--follow-links", "--", "x"],
            &["--tty", "--", "x"],
            &["--read", "", "--", "x"],
            &["--mode", "bogus", "--", "x"],
        ];
        for argv in taken {
            let fast = cmd::run::parse_fast(argv).map(|a| format!("{a:?}"));
            assert!(fast.is_some(), "the fast path should take {argv:?}");
            assert_eq!(fast.map(Ok), Some(clap_run(argv)), "{argv:?}");
        }
        let left: &[&[&str]] = &[
            &[],
            &["--"],
            &["--json"],
            &["-h", "x"],
            &["--help"],
            &["--bogus", "x"],
            &["--rea", "/a", "x"],
            &["--read=/a", "x"],
            &["--read", "--", "x"],
            &["--read"],
            &["-x"],
            &["--mode", "dev", "--mode", "process", "x"],
            &["--json", "--json", "x"],
            &["--tty", "--json", "x"],
            &["--tty", "--no-tty", "x"],
            &["--timeout-ms", "ten", "x"],
            &["--timeout-ms", "-1", "x"],
            &["--pids", "18446744073709551616", "x"],
            // Review finding: clap refuses an empty path; the fast path took it.
            &["--cwd", "", "x"],
            &["--policy", "", "x"],
            &["--audit-log", "", "x"],
        ];
        for argv in left {
            assert_eq!(cmd::run::parse_fast(argv).map(|a| format!("{a:?}")), None, "{argv:?}");
        }
        for flag in ["--cwd", "--policy", "--audit-log"] {
            assert!(clap_run(&[flag, "", "x"]).is_err(), "clap refuses an empty {flag}");
        }
    }

    /// `full_command` has the nested commands under `help` too (what
    /// `cordon completions` completes after `cordon help plugin`); the
    /// deferred definition built at once (the control) does not.
    #[test]
    fn the_full_command_has_the_whole_help_tree() {
        let nested = |mut cli: clap::Command| {
            cli.build();
            let help = cli.find_subcommand("help").unwrap();
            help.find_subcommand("plugin").unwrap().find_subcommand("install").is_some()
        };
        assert!(nested(full_command()));
        assert!(!nested(Cli::command()), "control: a deferred root built at once");
    }
}
