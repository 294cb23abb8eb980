//! `cordon doctor`: what this host can enforce, per mode; what a run gets
//! without flags; what each flag adds, and with which mechanism. Every line
//! comes from the planner (`Plan::build`) on the probed kernel, so it says
//! what `cordon run` would do here, never a made-up default.

use std::path::Path;

use anyhow::{Context, Result};
use clap::Args;
use cordon::{Availability, KernelSupport, LedgerEntry, Mode, NetPattern, PathRule, Plan, Policy, WriteXorExecute};
use serde::Serialize;

#[derive(Args, Debug)]
#[command(after_help = "Exit status: 0.")]
pub struct DoctorArgs {
    /// Show defaults and flags for this tier. Default: the one `cordon run` picks here.
    #[arg(long, value_name = "container|process|dev")]
    mode: Option<String>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// One tier and whether this host runs it.
#[derive(Serialize)]
struct ModeReport {
    mode: &'static str,
    available: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hint: Option<&'static str>,
}

/// What one flag adds in the shown mode: its ledger line, or why this host
/// refuses it.
#[derive(Serialize)]
struct FlagReport {
    flag: &'static str,
    #[serde(flatten)]
    outcome: FlagOutcome,
}

#[derive(Serialize)]
#[serde(untagged)]
enum FlagOutcome {
    Adds { adds: Vec<LedgerEntry> },
    Refused { refused: String, hint: &'static str },
}

/// Each flag of `cordon run` that adds a policy entry, the ledger rule it
/// adds (its start), and a policy with it (example values, shown with the
/// flag's placeholder).
fn flag_policies() -> Vec<(&'static str, &'static str, Policy)> {
    let with = |f: &dyn Fn(&mut Policy)| {
        let mut p = Policy::default();
        f(&mut p);
        p
    };
    let path = |p: &str| PathRule::parse(p, Path::new("/")).expect("a valid example path");
    vec![
        ("--read PATH", "fs.read", with(&|p| p.fs.read.push(path("/PATH")))),
        ("--write PATH", "fs.write", with(&|p| p.fs.write.push(path("/PATH")))),
        (
            "--deny PATH",
            "fs.deny",
            with(&|p| {
                p.fs.read.push(path("/PATH"));
                p.fs.deny.push(path("/PATH/DENIED"));
            }),
        ),
        ("--net PATTERN", "net.allow", with(&|p| p.net.allow.push(NetPattern::parse("example.com").expect("valid")))),
        ("--exec PATH", "exec", with(&|p| p.exec = Some(vec!["/PATH".into()]))),
        ("--deny-wx", "memory W^X", with(&|p| p.wx = WriteXorExecute::Deny)),
        ("--timeout-ms N", "quota timeout_ms", with(&|p| p.limits.timeout_ms = Some(1))),
        ("--memory-mb N", "quota memory_mb", with(&|p| p.limits.memory_mb = Some(1))),
        ("--cpu-ms N", "quota cpu_ms", with(&|p| p.limits.cpu_ms = Some(1))),
        ("--pids N", "quota pids", with(&|p| p.limits.pids = Some(1))),
        ("--file-size-mb N", "quota file_size_mb", with(&|p| p.limits.file_size_mb = Some(1))),
    ]
}

/// `--env`: the supervisor copies variables; no mechanism of the kernel's.
fn env_flag() -> FlagReport {
    FlagReport {
        flag: "--env PATTERN",
        outcome: FlagOutcome::Adds {
            adds: vec![LedgerEntry {
                rule: "env.allow PATTERN".into(),
                mechanism: "supervisor copies the caller's variables it matches (NAME, or PREFIX*)".into(),
                enforcement: cordon::Enforcement::Full,
            }],
        },
    }
}

fn plan(policy: &Policy, mode: Mode, support: &KernelSupport) -> Result<Plan, cordon::PlanError> {
    Plan::build(policy, mode, support)
}

/// The ledger lines of `policy` whose rule starts with `rule`, with the
/// examples' values shown as placeholders.
fn added(rule: &str, policy: &Policy, mode: Mode, support: &KernelSupport) -> FlagOutcome {
    match plan(policy, mode, support) {
        Err(e) => FlagOutcome::Refused { refused: e.to_string().replace("example.com", "PATTERN"), hint: e.hint() },
        Ok(p) => FlagOutcome::Adds {
            adds: p
                .ledger
                .into_iter()
                .filter(|e| e.rule.starts_with(rule))
                .map(|mut e| {
                    e.rule = e.rule.replace("=1", "=N").replace("example.com", "PATTERN").replace("/PATH", "PATH");
                    e
                })
                .collect(),
        },
    }
}

fn enforcement(e: cordon::Enforcement) -> &'static str {
    match e {
        cordon::Enforcement::Full => "full",
        cordon::Enforcement::Partial => "partial",
        cordon::Enforcement::NotEnforced => "not enforced",
    }
}

fn availability(a: Availability) -> &'static str {
    if a.is_available() {
        "available"
    } else {
        "unavailable"
    }
}

pub fn run(a: DoctorArgs) -> Result<i32> {
    let s = KernelSupport::detect().context("cannot probe the kernel")?;
    let modes: Vec<ModeReport> = [Mode::Container, Mode::Process, Mode::Dev]
        .into_iter()
        .map(|m| match plan(&Policy::default(), m, &s) {
            Ok(_) => ModeReport { mode: m.as_str(), available: true, reason: None, hint: None },
            Err(e) => {
                ModeReport { mode: m.as_str(), available: false, reason: Some(e.to_string()), hint: Some(e.hint()) }
            }
        })
        .collect();
    let default = if modes[0].available { Mode::Container } else { Mode::Process };
    let shown = match &a.mode {
        Some(m) => m.parse::<Mode>().with_context(|| format!("invalid --mode {m}"))?,
        None => default,
    };
    let defaults = plan(&Policy::default(), shown, &s).map(|p| p.ledger);
    let mut flags: Vec<FlagReport> = match &defaults {
        Ok(_) => flag_policies()
            .into_iter()
            .map(|(flag, rule, policy)| FlagReport { flag, outcome: added(rule, &policy, shown, &s) })
            .collect(),
        Err(_) => vec![],
    };
    if defaults.is_ok() && shown != Mode::Dev {
        flags.insert(4, env_flag());
    }
    if a.json {
        let v = serde_json::json!({
            "kernel": s.kernel,
            "landlock_abi": s.landlock_abi.0,
            "seccomp": s.seccomp,
            "user_namespaces": s.user_namespaces,
            "root": s.root,
            "transparent_egress": s.transparent_egress,
            "cgroups": s.cgroups,
            "modes": modes,
            "default_mode": default.as_str(),
            "shown_mode": shown.as_str(),
            "defaults": defaults.as_ref().ok(),
            "flags": flags,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(0);
    }
    println!("host");
    println!("  kernel            {}", s.kernel);
    println!(
        "  landlock          {}",
        if s.landlock_abi.0 == 0 { "unavailable".into() } else { format!("ABI {}", s.landlock_abi.0) }
    );
    println!("  seccomp-bpf       {}", availability(s.seccomp));
    println!("  user namespaces   {}", availability(s.user_namespaces));
    println!("  running as root   {}", if s.root { "yes" } else { "no" });
    match s.transparent_egress {
        Availability::Available => {
            println!("  network egress    transparent (seccomp user notification): --net works for every program")
        }
        Availability::Unavailable => println!(
            "  network egress    no transparent egress (needs seccomp user notification and PIDFD_THREAD, Linux 6.9): \
             --net is refused; --net-via proxy works for programs that honour HTTP_PROXY"
        ),
    }
    let cg = |name: &str, d: &Option<cordon::CgroupDir>| match d {
        Some(d) => {
            let version = serde_json::to_value(d.version).ok().and_then(|v| v.as_str().map(str::to_owned));
            println!("  cgroup {name:<10} {} at {}", version.unwrap_or_default(), d.path.display())
        }
        None => println!("  cgroup {name:<10} not usable below this process's cgroup"),
    };
    cg("memory", &s.cgroups.memory);
    cg("pids", &s.cgroups.pids);
    cg("cpu", &s.cgroups.cpuacct);
    println!("\nmodes");
    for m in &modes {
        let note = match (m.available, m.mode) {
            (true, _) if m.mode == default.as_str() => "available (the default)".to_owned(),
            (true, "dev") => "available: no isolation, for trusted code only".to_owned(),
            (true, _) => "available".to_owned(),
            (false, _) => format!("unavailable: {}", m.reason.as_deref().unwrap_or_default()),
        };
        println!("  {:<10} {note}", m.mode);
        if let Some(h) = m.hint {
            println!("             hint: {h}");
        }
    }
    let defaults = match defaults {
        Ok(d) => d,
        Err(e) => {
            println!("\n{} mode cannot run here: {e}\n  hint: {}", shown.as_str(), e.hint());
            return Ok(0);
        }
    };
    let width = 34;
    println!("\na run without flags gets ({} mode)", shown.as_str());
    for e in &defaults {
        println!("  {:<width$} {} ({})", e.rule, e.mechanism, enforcement(e.enforcement));
    }
    println!("  {:<width$} none until a flag sets one", "time, memory, CPU, process limits");
    println!("\neach flag adds ({} mode)", shown.as_str());
    for f in &flags {
        match &f.outcome {
            FlagOutcome::Adds { adds } if adds.is_empty() => {
                println!("  {:<16} nothing enforced in {} mode", f.flag, shown.as_str());
            }
            FlagOutcome::Adds { adds } => {
                for (i, e) in adds.iter().enumerate() {
                    let flag = if i == 0 { f.flag } else { "" };
                    println!("  {flag:<16} {:<width$} {} ({})", e.rule, e.mechanism, enforcement(e.enforcement));
                }
            }
            FlagOutcome::Refused { refused, hint } => {
                println!("  {:<16} refused here: {refused}", f.flag);
                println!("  {:<16} hint: {hint}", "");
            }
        }
    }
    Ok(0)
}
