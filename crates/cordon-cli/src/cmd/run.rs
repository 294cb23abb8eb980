//! `cordon run`: flags to a policy, the policy to a result.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use cordon::{
    Capture, CgroupProbe, EnvPattern, ErrorCode, KernelSupport, Limits, Mode, NetPattern, Policy, RunRequest,
    SystemSet, Tty, WriteXorExecute,
};

use crate::render;

#[derive(Args, Debug)]
#[command(
    after_help = "Exit status: the command's own; 128+N if signal N ended it (memory, CPU and pids kills included; 130 \
for a Ctrl-C); 124 at --timeout-ms; 125 if cordon failed before the command started; 126 not executable; 127 not found.",
    trailing_var_arg = true
)]
pub struct RunArgs {
    /// Start from this policy file: the [permissions] and [quotas] of a cordon.toml, paths relative to the file's folder. List flags add to it, quota flags replace its values, --no-system and --deny-wx tighten it.
    #[arg(long, value_name = "FILE.toml")]
    policy: Option<PathBuf>,
    /// Isolation tier. Default: container where this host supports it, else process (with a notice).
    #[arg(long, value_name = "container|process|dev")]
    mode: Option<String>,
    /// Grant read + execute on a file or directory tree (`dir` or `dir/**`). Repeatable.
    #[arg(long = "read", value_name = "PATH")]
    read: Vec<String>,
    /// Grant read + write + create + remove on a tree. Repeatable.
    #[arg(long = "write", value_name = "PATH")]
    write: Vec<String>,
    /// Carve a path out of the granted trees: no access. Repeatable.
    #[arg(long = "deny", value_name = "PATH")]
    deny: Vec<String>,
    /// Allow network access to a host pattern (`host`, `*.domain`, `*`, optional `:port`). Repeatable.
    #[arg(long = "net", value_name = "PATTERN")]
    net: Vec<String>,
    /// How allowed hosts are reached: `kernel` (default: every program, at full speed) or `proxy` (HTTP_PROXY only).
    #[arg(long = "net-via", value_name = "kernel|proxy")]
    net_via: Option<String>,
    /// Pass a variable (NAME or PREFIX*) from cordon's environment. Repeatable.
    #[arg(long = "env", value_name = "PATTERN")]
    env: Vec<String>,
    /// Set a variable in the command's environment. Repeatable.
    #[arg(long = "set-env", value_name = "K=V")]
    set_env: Vec<String>,
    /// Working directory; relative --read/--write/--deny paths resolve against it. Default: the current directory.
    #[arg(long, value_name = "DIR")]
    cwd: Option<PathBuf>,
    /// Do not grant the read-only system set (/usr, /lib, parts of /etc, ...).
    #[arg(long)]
    no_system: bool,
    /// Wall-clock limit in milliseconds.
    #[arg(long, value_name = "N")]
    timeout_ms: Option<u64>,
    /// Time between SIGTERM and SIGKILL at the timeout. Default 1000.
    #[arg(long, value_name = "N")]
    grace_ms: Option<u64>,
    /// Memory limit in MiB (memory actually used).
    #[arg(long, value_name = "N")]
    memory_mb: Option<u64>,
    /// CPU time limit of all processes together, in milliseconds.
    #[arg(long, value_name = "N")]
    cpu_ms: Option<u64>,
    /// Limit on processes and threads alive at once.
    #[arg(long, value_name = "N")]
    pids: Option<u64>,
    /// Largest file the command may write, in MiB.
    #[arg(long, value_name = "N")]
    file_size_mb: Option<u64>,
    /// Captured output limit with --json, in bytes. Default 1048576.
    #[arg(long, value_name = "N")]
    output_bytes: Option<u64>,
    /// Allow executing only this file (and the command itself); repeatable. Scripts need their interpreter listed too.
    #[arg(long = "exec", value_name = "PATH")]
    exec: Vec<String>,
    /// Refuse memory that is writable and executable at once (for runtimes without a JIT).
    #[arg(long)]
    deny_wx: bool,
    /// Capture output and print one ExecutionResult JSON object on stdout.
    #[arg(long)]
    json: bool,
    /// Give the command a terminal of its own (a pty relayed to cordon's stdin and stdout). Default: when stdin and stdout are terminals and --json is not given.
    #[arg(long, conflicts_with_all = ["no_tty", "json"])]
    tty: bool,
    /// Never give the command a terminal: it gets cordon's stdin, stdout and stderr, which it may read and write but not control.
    #[arg(long)]
    no_tty: bool,
    /// Follow a symbolic link on the way to a --read/--write/--deny/--exec path (or a policy file's) that lies in a folder a run may write; by default such a link refuses the run, since an earlier run may have made it. Each link followed is named on stderr and in the result's enforcement list.
    #[arg(long)]
    follow_links: bool,
    /// The audit log (default: $CORDON_AUDIT_LOG, else $XDG_STATE_HOME/cordon/audit.jsonl or ~/.local/state/cordon/audit.jsonl).
    #[arg(long, value_name = "PATH")]
    audit_log: Option<PathBuf>,
    /// The command and its arguments (after `--`).
    #[arg(required = true, value_name = "COMMAND")]
    command: Vec<String>,
}

/// Builds the policy from the policy file (`--policy`, relative to `here`)
/// and the flags: list flags add to the file's lists, quota flags replace
/// its values, `--no-system` and `--deny-wx` tighten it. Errors name the
/// flag, or the file with line and column.
fn policy(a: &RunArgs, here: &Path, cwd: &Path) -> Result<Policy> {
    let mut p = match &a.policy {
        Some(file) => policy_file(&here.join(file))?,
        None => Policy::default(),
    };
    p.fs.read.extend(super::path_flags("read", &a.read, cwd)?);
    p.fs.write.extend(super::path_flags("write", &a.write, cwd)?);
    p.fs.deny.extend(super::path_flags("deny", &a.deny, cwd)?);
    if a.no_system {
        p.fs.system = SystemSet::Exclude;
    }
    for n in &a.net {
        p.net.allow.push(NetPattern::parse(n).with_context(|| format!("invalid --net {n}"))?);
    }
    if let Some(v) = &a.net_via {
        p.net.via = v.parse().with_context(|| format!("invalid --net-via {v}"))?;
    }
    for e in &a.env {
        p.env.allow.push(EnvPattern::parse(e).with_context(|| format!("invalid --env {e}"))?);
    }
    for kv in &a.set_env {
        p.env
            .set
            .push(cordon::policy::EnvPolicy::parse_assignment(kv).with_context(|| format!("invalid --set-env {kv}"))?);
    }
    let file = &p.limits;
    p.limits = Limits {
        timeout_ms: a.timeout_ms.or(file.timeout_ms),
        grace_ms: a.grace_ms.unwrap_or(file.grace_ms),
        memory_mb: a.memory_mb.or(file.memory_mb),
        cpu_ms: a.cpu_ms.or(file.cpu_ms),
        pids: a.pids.or(file.pids),
        output_bytes: a.output_bytes.unwrap_or(file.output_bytes),
        file_size_mb: a.file_size_mb.or(file.file_size_mb),
    };
    if a.deny_wx {
        p.wx = WriteXorExecute::Deny;
    }
    if !a.exec.is_empty() {
        let flags = super::path_flags("exec", &a.exec, cwd)?.into_iter().map(|r| r.path);
        p.exec.get_or_insert_with(Vec::new).extend(flags);
    }
    p.validate().context("invalid quota")?;
    Ok(p)
}

/// Review s11 S4: a policy file inside one of its own write grants (a
/// project's `build.toml` beside `fs.write = ["."]`) is the run's to
/// rewrite, and the next run would get what it wrote (`fs.read = ["/"]`).
/// Landlock cannot take one file out of a writable folder without taking
/// the folder's own entries with it, so the run is refused instead.
fn refuse_policy_file_in_write_grant(file: &Path, policy: &Policy) -> Result<()> {
    let Ok(file) = std::fs::canonicalize(file) else { return Ok(()) };
    for grant in &policy.fs.write {
        let Ok(folder) = std::fs::canonicalize(&grant.path) else { continue };
        if file.starts_with(&folder) {
            bail!(
                "invalid --policy {}: the file lies inside its own write grant {}, so a run could rewrite the \
                 policy the next run gets\n  hint: keep the policy file outside the folders it makes writable \
                 (grant the subfolders the run writes, e.g. fs.write = [\"out\"])",
                file.display(),
                grant.path.display()
            );
        }
    }
    Ok(())
}

/// The policy of a `--policy` file, its errors as `cordon check` shows a
/// manifest's: the file, line and column, the line with a caret, a hint.
fn policy_file(path: &Path) -> Result<Policy> {
    let indent = |text: String| text.replace('\n', "\n  ");
    let file = cordon::plugin::PolicyFile::load(path).map_err(|e| anyhow::anyhow!(indent(e.render())))?;
    file.policy().map_err(|e| anyhow::anyhow!("invalid --policy {}: {e}\n  hint: {}", path.display(), e.hint()))
}

/// `--tty`, `--no-tty`, or a pty when stdin and stdout are terminals and
/// the output is not captured (as `ssh` decides).
fn tty(a: &RunArgs) -> Tty {
    use std::io::IsTerminal;
    let interactive = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    if a.tty || (interactive && !a.no_tty && !a.json) {
        Tty::Relay
    } else {
        Tty::Off
    }
}

/// A note when the working directory is not granted: the command starts
/// there, but sees nothing of it (container mode makes it an empty folder;
/// process mode cannot read it).
fn cwd_note(policy: &Policy, mode: Mode, cwd: &Path) -> Option<String> {
    // Container mode's `/` is the root it builds from the grants.
    let root = mode == Mode::Container && cwd == Path::new("/");
    if mode == Mode::Dev || root || cordon::check_fs(policy, cwd, cordon::Access::Read).is_ok() {
        return None;
    }
    let inside = if mode == Mode::Container { "inside it is empty" } else { "inside it cannot be read" };
    Some(format!("the working directory is not granted; {inside} — add --read . or --write ."))
}

/// Picks the mode without a `--mode`: container where it can run, else
/// process (with a notice).
fn choose_mode(policy: &Policy, support: &KernelSupport) -> (Mode, Option<String>) {
    match cordon::Plan::build(policy, Mode::Container, support) {
        Ok(_) => (Mode::Container, None),
        Err(e) => {
            let notice = format!("container mode is not available here ({e}); running in process mode");
            (Mode::Process, Some(notice))
        }
    }
}

/// Runs the command with its audit record; a bad flag is recorded too.
pub fn run(a: RunArgs) -> Result<i32> {
    let subject = cordon::audit::Subject { command: Some(a.command.clone()), ..Default::default() };
    let traceparent = std::env::var(cordon::audit::TRACEPARENT_ENV).ok();
    let session =
        crate::cmd::audit::Session::open(a.audit_log.as_deref(), a.mode.as_deref(), traceparent.as_deref(), subject)?;
    session.finish(execute(a, &session))
}

fn execute(a: RunArgs, session: &crate::cmd::audit::Session) -> Result<i32> {
    let here = std::env::current_dir().context("cannot read the current directory")?;
    // The command starts in the cwd's real folder, but relative flags are
    // joined to it as written, so that the pin sees the way there: a link a
    // run made on it inside its write grant then refuses the next run
    // instead of redirecting `--read .` (review s12 R12-13).
    let (written, cwd) = match &a.cwd {
        Some(c) => {
            let written = std::path::absolute(here.join(c))
                .with_context(|| format!("invalid --cwd {}: cannot make it absolute", c.display()))?;
            let real = std::fs::canonicalize(&written)
                .with_context(|| format!("invalid --cwd {}: the directory does not exist", c.display()))?;
            (written, real)
        }
        None => (here.clone(), here.clone()),
    };
    if !cwd.is_dir() {
        bail!("invalid --cwd {}: not a directory", cwd.display());
    }
    let policy = policy(&a, &here, &written)?;
    if let Some(file) = &a.policy {
        refuse_policy_file_in_write_grant(&here.join(file), &policy)?;
    }
    let probe = if policy.wants_cgroups() { CgroupProbe::Probe } else { CgroupProbe::Skip };
    let probe = || KernelSupport::detect_with(probe).context("cannot probe the kernel");
    let flag =
        a.mode.as_deref().map(|m| m.parse::<Mode>().with_context(|| format!("invalid --mode {m}"))).transpose()?;
    // Dev mode asks the kernel for nothing, so it is not probed.
    let (mode, notice, support) = match flag {
        Some(Mode::Dev) => (Mode::Dev, None, None),
        Some(m) => (m, None, Some(probe()?)),
        None => {
            let support = probe()?;
            let (m, notice) = choose_mode(&policy, &support);
            (m, notice, Some(support))
        }
    };
    cordon::trace::step("cli: policy built, kernel probed");
    if let Some(n) = &notice {
        render::message("notice", n);
    }
    let cwd_note = cwd_note(&policy, mode, &written);
    if let Some(n) = &cwd_note {
        eprintln!("cordon: note: {n}");
    }
    let mut req = RunRequest::new(policy, mode, a.command.clone());
    req.cwd = cwd;
    req.warnings.extend(cwd_note);
    req.capture = if a.json { Capture::Logs } else { Capture::PassThrough };
    req.tty = tty(&a);
    req.warnings.extend(notice);
    req.support = support;
    req.follow_links = a.follow_links;
    session.ready()?;
    let result = session.run(&mut req);
    // Recorded: a stalled terminal may hold cordon's own messages below,
    // but no longer against SIGTERM or Ctrl-C.
    cordon::release_signals();
    if a.json {
        println!("{}", render::json(&result).context("cannot serialise the result")?);
    }
    let fix = if a.policy.is_some() { render::FixIn::PolicyFile } else { render::FixIn::Flags };
    if let Some(err) = &result.error {
        let kind = match err.code {
            ErrorCode::SetupFailed | ErrorCode::NotFound | ErrorCode::NotExecutable => Some("error"),
            ErrorCode::NonzeroExit | ErrorCode::Interrupted => None,
            _ => Some("stopped"),
        };
        if let Some(kind) = kind {
            let hint = render::limit_hint(err.code, fix).map(|h| format!("\nhint: {h}"));
            render::message(kind, &format!("{}: {}{}", err.code.as_str(), err.message, hint.unwrap_or_default()));
        }
    }
    render::not_granted(&result.not_granted, fix);
    render::network_refusals(&result.network);
    Ok(result.exit_status())
}

/// `cordon run`'s arguments (those after `run`) parsed without clap, for
/// the everyday shape: long flags, each valued one with its value as the
/// next argument, then the command (after `--`, or from the first argument
/// that is not a flag, as clap's trailing arguments go). Building clap's
/// definition of `run` and parsing with it costs every run ~0.1 ms.
///
/// `None` for anything else, which clap then parses with its own messages:
/// a short flag, `--flag=value`, `--help`, an unknown or repeated flag, a
/// value that starts with `-` or is not a number where one is due, an
/// empty path, `--tty`
/// with `--no-tty` or `--json`, no command. Every shape it accepts parses
/// the same with clap (a unit test in `lib.rs` compares the two).
pub fn parse_fast<S: AsRef<str>>(args: &[S]) -> Option<RunArgs> {
    fn once<T>(slot: &mut Option<T>, value: T) -> Option<()> {
        slot.is_none().then(|| *slot = Some(value))
    }
    let mut a = RunArgs {
        policy: None,
        mode: None,
        read: vec![],
        write: vec![],
        deny: vec![],
        net: vec![],
        net_via: None,
        env: vec![],
        set_env: vec![],
        cwd: None,
        no_system: false,
        timeout_ms: None,
        grace_ms: None,
        memory_mb: None,
        cpu_ms: None,
        pids: None,
        file_size_mb: None,
        output_bytes: None,
        exec: vec![],
        deny_wx: false,
        json: false,
        tty: false,
        no_tty: false,
        follow_links: false,
        audit_log: None,
        command: vec![],
    };
    let mut rest = args.iter().map(AsRef::as_ref);
    while let Some(arg) = rest.next() {
        let Some(name) = arg.strip_prefix("--") else {
            if arg.starts_with('-') {
                return None;
            }
            a.command = std::iter::once(arg).chain(rest).map(str::to_owned).collect();
            break;
        };
        if name.is_empty() {
            a.command = rest.map(str::to_owned).collect();
            break;
        }
        let switch = match name {
            "no-system" => Some(&mut a.no_system),
            "deny-wx" => Some(&mut a.deny_wx),
            "json" => Some(&mut a.json),
            "tty" => Some(&mut a.tty),
            "no-tty" => Some(&mut a.no_tty),
            "follow-links" => Some(&mut a.follow_links),
            _ => None,
        };
        if let Some(on) = switch {
            if *on {
                return None;
            }
            *on = true;
            continue;
        }
        let value = rest.next().filter(|v| !v.starts_with('-'))?;
        let number = || value.parse::<u64>().ok();
        // clap refuses an empty path (its message, not ours).
        let path = || (!value.is_empty()).then(|| PathBuf::from(value));
        match name {
            "read" => a.read.push(value.to_owned()),
            "write" => a.write.push(value.to_owned()),
            "deny" => a.deny.push(value.to_owned()),
            "net" => a.net.push(value.to_owned()),
            "env" => a.env.push(value.to_owned()),
            "set-env" => a.set_env.push(value.to_owned()),
            "exec" => a.exec.push(value.to_owned()),
            "policy" => once(&mut a.policy, path()?)?,
            "mode" => once(&mut a.mode, value.to_owned())?,
            "net-via" => once(&mut a.net_via, value.to_owned())?,
            "cwd" => once(&mut a.cwd, path()?)?,
            "audit-log" => once(&mut a.audit_log, path()?)?,
            "timeout-ms" => once(&mut a.timeout_ms, number()?)?,
            "grace-ms" => once(&mut a.grace_ms, number()?)?,
            "memory-mb" => once(&mut a.memory_mb, number()?)?,
            "cpu-ms" => once(&mut a.cpu_ms, number()?)?,
            "pids" => once(&mut a.pids, number()?)?,
            "file-size-mb" => once(&mut a.file_size_mb, number()?)?,
            "output-bytes" => once(&mut a.output_bytes, number()?)?,
            _ => return None,
        }
    }
    let conflict = a.tty && (a.no_tty || a.json);
    (!a.command.is_empty() && !conflict).then_some(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_mode_cordon_prefers_container_and_falls_back_to_process_with_a_notice() {
        let full = KernelSupport::fixture_full();
        assert_eq!(choose_mode(&Policy::default(), &full), (Mode::Container, None));
        // No user namespaces (root may still run process mode): a notice, not an error.
        let mut no_userns = KernelSupport::fixture_full();
        no_userns.user_namespaces = cordon::Availability::Unavailable;
        let (mode, notice) = choose_mode(&Policy::default(), &no_userns);
        assert_eq!(mode, Mode::Process);
        assert!(notice.unwrap().contains("container mode is not available here"));
    }
}
