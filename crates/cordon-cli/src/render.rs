//! Rendering errors and summaries for people.
//!
//! Everything printed here goes through [`cordon::text::for_terminal`]: a
//! message may quote what a sandbox (or a plugin's author) chose, and a
//! terminal would act on control characters inside it. JSON printed for
//! programs goes through [`json`], which escapes them too.

use std::io::Write;

use cordon::text::{for_terminal, Layout, Newlines};

/// Prints an error with its cause chain and hint, once.
pub fn error(e: &anyhow::Error) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "cordon: error: {}", for_terminal(&e.to_string(), Newlines::Keep));
    for cause in e.chain().skip(1) {
        let _ = writeln!(err, "  caused by: {}", for_terminal(&cause.to_string(), Newlines::Keep));
    }
}

/// Prints a message that may carry a `hint:` line, indented like `error`.
pub fn message(kind: &str, text: &str) {
    let mut err = std::io::stderr().lock();
    for (i, line) in text.lines().enumerate() {
        let line = for_terminal(line, Newlines::Keep);
        if i == 0 {
            let _ = writeln!(err, "cordon: {kind}: {line}");
        } else {
            let _ = writeln!(err, "  {line}");
        }
    }
}

/// One line on stdout whose text a sandbox or a plugin may have chosen:
/// control characters, line breaks included, are escaped.
pub fn line(text: &str) {
    println!("{}", for_terminal(text, Newlines::Escape));
}

/// A handler's log line, as `cordon exec` re-prints it on stderr: escaped,
/// and kept on one line.
pub fn log_line(text: &str) {
    eprintln!("{}", for_terminal(text, Newlines::Escape));
}

/// `value` as one line of JSON whose strings hold nothing a terminal acts on.
pub fn json<T: serde::Serialize + ?Sized>(value: &T) -> anyhow::Result<String> {
    Ok(cordon::text::to_json(value, Layout::Compact)?)
}

/// Like [`json`], indented.
pub fn json_pretty<T: serde::Serialize + ?Sized>(value: &T) -> anyhow::Result<String> {
    Ok(cordon::text::to_json(value, Layout::Pretty)?)
}

/// Where a fix goes: `cordon run`'s flags (or its policy file), or the
/// plugin's manifest (`cordon exec`, whose flags only narrow).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FixIn {
    /// `cordon run --flag`.
    Flags,
    /// `cordon run --policy FILE`: a flag, or the file.
    PolicyFile,
    /// `cordon.toml`.
    Manifest,
}

/// The flag and manifest key that raise the limit a run hit.
pub fn limit_hint(code: cordon::ErrorCode, fix: FixIn) -> Option<String> {
    use cordon::ErrorCode;
    let (flag, key) = match code {
        ErrorCode::Timeout => ("--timeout-ms", "timeout_ms"),
        ErrorCode::MemoryLimit => ("--memory-mb", "memory_mb"),
        ErrorCode::CpuLimit => ("--cpu-ms", "cpu_ms"),
        ErrorCode::PidsLimit => ("--pids", "pids"),
        ErrorCode::OutputLimit => ("--output-bytes", "output_bytes"),
        _ => return None,
    };
    Some(match fix {
        FixIn::Flags => format!("raise it with {flag} N"),
        FixIn::PolicyFile => format!(
            "raise it with {flag} N (it replaces the policy file's value) or {key} under [quotas] in the policy file"
        ),
        FixIn::Manifest => {
            format!("raise {key} under [quotas] in cordon.toml ({flag} here can only lower it)")
        }
    })
}

/// The paths a failed run reported missing or refused that exist on the
/// host but are not granted, with the grant that would allow each.
pub fn not_granted(found: &[cordon::explain::NotGranted], fix: FixIn) {
    for n in found {
        let path = n.path.display();
        let (flag, key) = if n.access == "write" { ("--write", "fs.write") } else { ("--read", "fs.read") };
        let what = match n.reported {
            "No such file or directory" => "reported missing",
            "Read-only file system" => "reported read-only",
            _ => "refused",
        };
        let hint = match fix {
            FixIn::Flags => format!("add {flag} {path} (or a folder above it) if the command should {} it", n.access),
            FixIn::PolicyFile => format!(
                "add {flag} {path} (or a folder above it), or \"{path}\" to {key} in the policy file, if the command should {} it",
                n.access
            ),
            FixIn::Manifest => format!("add \"{path}\" to {key} in cordon.toml if the plugin should {} it", n.access),
        };
        message(
            "note",
            &format!(
                "{path} was {what} ({}): it exists on the host, but no grant lets the sandbox {} it\nhint: {hint}",
                n.reported, n.access
            ),
        );
    }
}

/// The network refusals of a finished run. Transparent egress announced
/// each one as it happened (the first [`cordon::MAX_NETWORK_NOTICES`],
/// then how many more); only the repeats of those announced are summed up
/// here, so the lines stay bounded too. The proxy's are listed.
pub fn network_refusals(records: &[cordon::ConnectionRecord]) {
    use cordon::Protocol;
    let mut announced = 0;
    for c in records.iter().filter(|c| !c.allowed) {
        match c.protocol {
            Protocol::Tcp | Protocol::Udp | Protocol::Unix | Protocol::Dns => {
                announced += 1;
                if c.count > 1 && announced <= cordon::MAX_NETWORK_NOTICES {
                    let what = match (c.protocol, c.host.as_str()) {
                        (Protocol::Dns, "") => "name lookups".to_owned(),
                        (Protocol::Dns, host) => format!("lookup of {host}"),
                        _ => format!("{}:{}", c.host, c.port),
                    };
                    message("network", &format!("refused {what} {} times in all", c.count));
                }
            }
            _ => {
                let why = c.error.as_deref().unwrap_or("not allowed by the network policy");
                message("network", &format!("refused {}:{}: {why}", c.host, c.port));
            }
        }
    }
}
