//! `cordon check`: validate a plugin and show how this host enforces each
//! permission and quota it declares.

use anyhow::{Context, Result};
use clap::Args;
use cordon::plugin::{CheckEntry, PluginCheck};
use cordon::Enforcement;

use super::exec::{NarrowArgs, PluginArgs};
use crate::render;

#[derive(Args, Debug)]
#[command(
    after_help = "Exit status: 0 when `cordon exec` would run the plugin here; 125 when the manifest is invalid \
or an entry cannot be enforced or granted on this host (the ledger says which and why); 1 when the registry \
refuses an installed plugin (not installed, disabled, invalid or modified)."
)]
pub struct CheckArgs {
    /// An installed plugin (`@scope/name`, verified first) or a plugin folder (holding cordon.toml).
    #[arg(value_name = "ID|DIR")]
    plugin: String,
    /// Check for this tier. Default: the one `cordon exec` would choose.
    #[arg(long, value_name = "container|process|dev")]
    mode: Option<String>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    plugin_opts: PluginArgs,
    #[command(flatten)]
    narrow: NarrowArgs,
}

pub fn run(a: CheckArgs) -> Result<i32> {
    let (dir, manifest) = match super::exec::resolve(&a.plugin) {
        Ok(super::exec::Target::Folder(dir)) => (dir, None),
        Ok(super::exec::Target::Installed(loaded)) => match loaded.read_manifest() {
            Ok(bytes) => (loaded.dir, Some(bytes)),
            Err(e) => {
                render::message("refused", &format!("cannot check {}: {e}", a.plugin));
                return Ok(1);
            }
        },
        Err(e) => {
            let hint = e.hint().map(|h| format!("\nhint: {h}")).unwrap_or_default();
            render::message("refused", &format!("cannot check {}: {e}{hint}", a.plugin));
            return Ok(1);
        }
    };
    let mut req = super::exec::request(&dir, "", a.mode.as_deref(), &a.plugin_opts, &a.narrow)?;
    req.manifest = manifest;
    let check = match cordon::check_plugin(&req) {
        Ok(c) => c,
        Err(e) => {
            render::message("error", &e.render());
            return Ok(125);
        }
    };
    if a.json {
        println!("{}", render::json_pretty(&check).context("cannot serialise the check")?);
    } else {
        print_table(&check);
    }
    if !check.runnable {
        render::message(
            "error",
            &format!(
                "{} cannot run in {} mode on this host: {}",
                check.plugin,
                check.mode.as_str(),
                check.problems.join("; ")
            ),
        );
    }
    Ok(if check.runnable { 0 } else { 125 })
}

fn enforcement(e: &CheckEntry) -> &'static str {
    match (e.enforcement, &e.problem) {
        (_, Some(_)) => "REFUSED",
        (Some(Enforcement::Full), None) => "full",
        (Some(Enforcement::Partial), None) => "partial",
        (Some(Enforcement::NotEnforced), None) => "none",
        (None, None) => "-",
    }
}

/// The check for people. Names, commands, descriptions and paths come from
/// the plugin's manifest, so every line goes through `render::line`.
fn print_table(c: &PluginCheck) {
    let line = |s: String| render::line(&s);
    line(format!("plugin     {} {}", c.plugin, c.version));
    if let Some(d) = &c.description {
        line(format!("           {d}"));
    }
    line(format!("manifest   {}", c.manifest.display()));
    line(format!("mode       {}", c.mode.as_str()));
    line(format!("digest     {}", c.policy_digest));
    line("handlers".into());
    for h in &c.handlers {
        let desc = h.description.as_deref().map(|d| format!("  {d}")).unwrap_or_default();
        line(format!("  {:<16} {}{desc}", h.name, h.command.join(" ")));
    }
    println!();
    let width = c.entries.iter().map(|e| e.permission.chars().count()).max().unwrap_or(10).clamp(10, 60);
    line(format!("{:<width$}  {:<8}  {:<8}  mechanism", "permission", "source", "enforced"));
    for e in &c.entries {
        let source =
            serde_json::to_value(e.source).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
        let how = match (&e.problem, &e.mechanism) {
            (Some(p), _) => p.clone(),
            (None, Some(m)) => m.clone(),
            (None, None) => "-".into(),
        };
        line(format!("{:<width$}  {source:<8}  {:<8}  {how}", e.permission, enforcement(e)));
    }
    if !c.narrowed_by_host.is_empty() {
        println!();
        println!("narrowed or removed by the host's flags (the manifest declares them; a run here does not get them):");
        for r in &c.narrowed_by_host {
            line(format!("  {r}"));
        }
    }
    for w in &c.warnings {
        println!();
        line(format!("note: {w}"));
    }
    println!();
    if c.runnable {
        line(format!("ok: `cordon exec` runs this plugin in {} mode on this host", c.mode.as_str()));
    }
}
