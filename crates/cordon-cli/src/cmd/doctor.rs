//! `cordon doctor`: what this host can enforce, per mode.

use std::path::Path;

use anyhow::{Context, Result};
use clap::Args;
use cordon::{KernelSupport, Limits, Mode, Plan, Policy};

#[derive(Args, Debug)]
pub struct DoctorArgs {
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

fn mode_report(support: &KernelSupport, mode: Mode) -> serde_json::Value {
    let with_limits = Policy {
        limits: Limits { memory_mb: Some(256), pids: Some(64), cpu_ms: Some(1000), ..Limits::default() },
        ..Policy::default()
    };
    match Plan::build(&Policy::default(), mode, support, Path::new("/tmp")) {
        Err(e) => {
            serde_json::json!({"mode": mode.as_str(), "available": false, "reason": e.to_string(), "hint": e.hint()})
        }
        Ok(_) => {
            let limits = match Plan::build(&with_limits, mode, support, Path::new("/tmp")) {
                Ok(p) => p.ledger.iter().filter(|e| e.rule.starts_with("quota")).map(|e| serde_json::json!({"quota": e.rule, "mechanism": e.mechanism, "enforcement": e.enforcement})).collect(),
                Err(e) => vec![serde_json::json!({"error": e.to_string()})],
            };
            serde_json::json!({"mode": mode.as_str(), "available": true, "quotas": limits})
        }
    }
}

pub fn run(a: DoctorArgs) -> Result<i32> {
    let s = KernelSupport::detect().context("cannot probe the kernel")?;
    let modes: Vec<_> = [Mode::Container, Mode::Process, Mode::Dev].into_iter().map(|m| mode_report(&s, m)).collect();
    let default = if modes[0]["available"] == true { "container" } else { "process" };
    if a.json {
        let v = serde_json::json!({"kernel": s.kernel, "landlock_abi": s.landlock_abi.0, "seccomp": s.seccomp,
            "user_namespaces": s.user_namespaces, "root": s.root, "cgroups": s.cgroups, "modes": modes, "default_mode": default});
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(0);
    }
    println!("kernel            {}", s.kernel);
    println!("landlock ABI      {}", s.landlock_abi);
    println!("seccomp-bpf       {:?}", s.seccomp);
    println!("user namespaces   {:?}", s.user_namespaces);
    println!("running as root   {}", s.root);
    let cg = |name: &str, d: &Option<cordon::CgroupDir>| match d {
        Some(d) => println!("cgroup {name:<10} {:?} {}", d.version, d.path.display()),
        None => println!("cgroup {name:<10} not usable below this process's cgroup"),
    };
    cg("memory", &s.cgroups.memory);
    cg("pids", &s.cgroups.pids);
    cg("cpuacct", &s.cgroups.cpuacct);
    println!();
    for m in &modes {
        if m["available"] == true {
            println!("{:<10} available", m["mode"].as_str().unwrap_or(""));
            for q in m["quotas"].as_array().into_iter().flatten() {
                if let Some(quota) = q["quota"].as_str() {
                    println!(
                        "           {quota:<22} {} ({})",
                        q["mechanism"].as_str().unwrap_or(""),
                        q["enforcement"].as_str().unwrap_or("")
                    );
                } else {
                    println!("           {}", q["error"].as_str().unwrap_or(""));
                }
            }
        } else {
            println!("{:<10} unavailable: {}", m["mode"].as_str().unwrap_or(""), m["reason"].as_str().unwrap_or(""));
            println!("           hint: {}", m["hint"].as_str().unwrap_or(""));
        }
    }
    println!("\ndefault mode: {default}");
    Ok(0)
}
