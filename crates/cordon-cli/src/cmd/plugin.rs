//! `cordon plugin ...`: package, sign, install and manage plugins. Glue
//! around `cordon_registry`.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use cordon_registry::{
    Approval, Cache, Downgrade, Enablement, InstallChange, InstallOptions, PluginStatus, Registry, State, Unsigned,
};

use super::{json_line, registry_status};
use crate::render;

#[derive(Args, Debug)]
pub struct PluginArgs {
    #[command(subcommand)]
    command: PluginCommand,
}

#[derive(Subcommand, Debug)]
#[command(after_help = "State lives under CORDON_HOME (default $XDG_DATA_HOME/cordon, i.e. ~/.local/share/cordon). \
Exit status: 0 done; 1 refused (verification, consent, hostile package, downgrade); 2 usage error.")]
enum PluginCommand {
    /// Write a reproducible .tar.gz of a plugin folder and print "sha256:<hex>  FILE".
    Pack {
        /// The plugin folder (holding cordon.toml).
        #[arg(value_name = "DIR")]
        dir: PathBuf,
        /// The package to write (default: <name>-<version>.tar.gz here).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Print the statement a signature covers: id, version, tree hash, permissions digest.
    Statement {
        /// The package.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Sign a package's statement: writes FILE.minisig.
    Sign {
        /// The package.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// The secret key (from `cordon key gen` or `minisign -G -W`).
        #[arg(long, value_name = "KEY")]
        key: PathBuf,
    },
    /// Verify and install a package (its signature is FILE.minisig).
    Install {
        /// The package.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Grant the wider permissions a new version asks for, and accept a
        /// version signed by another key than the last one installed.
        #[arg(long)]
        approve: bool,
        /// Accept a package without a signature (recorded, shown by `list`).
        #[arg(long)]
        allow_unsigned: bool,
        /// Accept a version below the highest installed here.
        #[arg(long)]
        allow_downgrade: bool,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// List installed plugins with their state now.
    List {
        /// Print one JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Show one installed plugin.
    Info {
        /// The plugin id.
        #[arg(value_name = "ID")]
        id: String,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Let a disabled plugin run again.
    Enable {
        /// The plugin id.
        #[arg(value_name = "ID")]
        id: String,
    },
    /// Stop a plugin from running, from its next execution on.
    Disable {
        /// The plugin id.
        #[arg(value_name = "ID")]
        id: String,
    },
    /// Remove an installed plugin.
    Uninstall {
        /// The plugin id.
        #[arg(value_name = "ID")]
        id: String,
    },
    /// Re-check installed plugins (signature and every file); exit 1 if any is invalid or modified.
    Verify {
        /// One plugin id (default: all).
        #[arg(value_name = "ID")]
        id: Option<String>,
        /// Print one JSON array.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(a: PluginArgs) -> i32 {
    let result = match a.command {
        PluginCommand::Pack { dir, out } => cordon_registry::pack(&dir, out.as_deref())
            .map(|p| println!("{}  {}", p.sha256, p.path.display()))
            .map_err(Into::into),
        PluginCommand::Statement { file } => cordon_registry::inspect(&file).map(|i| print!("{}", i.statement.text())),
        PluginCommand::Sign { file, key } => cordon_registry::sign(&file, &key).map(|s| {
            println!("{}", s.path.display());
            eprintln!("cordon: signed {} {} with key {}", s.statement.id, s.statement.version, s.key_id);
        }),
        PluginCommand::Install { file, approve, allow_unsigned, allow_downgrade, json } => {
            let opts = InstallOptions {
                approval: if approve { Approval::Given } else { Approval::NotGiven },
                unsigned: if allow_unsigned { Unsigned::Allow } else { Unsigned::Refuse },
                downgrade: if allow_downgrade { Downgrade::Allow } else { Downgrade::Refuse },
            };
            Registry::from_env().and_then(|r| r.install(&file, &opts)).map(|report| {
                if json {
                    json_line(&report);
                    return;
                }
                let p = &report.plugin;
                let by = match (&p.signer, &p.signer_key_id) {
                    (Some(n), Some(k)) => format!("signed by {n} ({k})"),
                    _ => "UNSIGNED (installed with --allow-unsigned)".into(),
                };
                match report.change {
                    InstallChange::Installed => println!("installed {} {}, {by}", p.id, p.version),
                    InstallChange::Updated => println!(
                        "updated {} from {} to {}, {by}",
                        p.id,
                        report.previous.as_deref().unwrap_or("?"),
                        p.version
                    ),
                    InstallChange::Unchanged => println!("{} {} is installed already", p.id, p.version),
                }
                if let Some(c) = &report.signer_change {
                    println!("{c} (approved)");
                }
                if let Some(d) = report.diff.as_ref().filter(|d| !d.widened.is_empty() || !d.narrowed.is_empty()) {
                    print!("permission changes:\n{}", d.render());
                } else if report.change == InstallChange::Installed {
                    println!("permissions:");
                    for l in &p.permissions {
                        render::line(&format!("  {l}"));
                    }
                }
            })
        }
        PluginCommand::List { json } => Registry::from_env().and_then(|r| r.list(Cache::On)).map(|all| {
            if json {
                json_line(&all);
            } else {
                for p in &all {
                    println!("{}", line(p));
                }
            }
        }),
        PluginCommand::Info { id, json } => Registry::from_env().and_then(|r| r.info(&id, Cache::On)).map(|p| {
            if json {
                json_line(&p);
            } else {
                print_info(&p);
            }
        }),
        PluginCommand::Enable { id } => Registry::from_env()
            .and_then(|r| r.set_enabled(&id, Enablement::Enabled))
            .map(|e| println!("enabled {} {}", e.id, e.version)),
        PluginCommand::Disable { id } => {
            Registry::from_env().and_then(|r| r.set_enabled(&id, Enablement::Disabled)).map(|e| {
                println!("disabled {} {}; it does not run until `cordon plugin enable {}`", e.id, e.version, e.id)
            })
        }
        PluginCommand::Uninstall { id } => {
            Registry::from_env().and_then(|r| r.uninstall(&id)).map(|e| println!("uninstalled {} {}", e.id, e.version))
        }
        PluginCommand::Verify { id, json } => {
            return match Registry::from_env().and_then(|r| r.verify(id.as_deref(), Cache::Off)) {
                Ok(all) => {
                    if json {
                        json_line(&all);
                    } else {
                        for p in &all {
                            println!("{}", line(p));
                        }
                    }
                    let bad: Vec<&PluginStatus> =
                        all.iter().filter(|p| matches!(p.state, State::Invalid | State::Modified)).collect();
                    for p in &bad {
                        let hint = p.hint.as_deref().map(|h| format!("\nhint: {h}")).unwrap_or_default();
                        render::message("refused", &format!("{}{hint}", p.error.as_deref().unwrap_or("")));
                    }
                    i32::from(!bad.is_empty())
                }
                Err(e) => registry_status::<()>(Err(e)),
            };
        }
    };
    registry_status(result)
}

fn line(p: &PluginStatus) -> String {
    let enabled = if p.enabled { "enabled" } else { "disabled" };
    let signer = match (&p.signer, &p.signer_key_id) {
        (Some(n), Some(k)) => format!("{n} ({k})"),
        _ if p.allow_unsigned => "--allow-unsigned".into(),
        _ => "-".into(),
    };
    format!("{:<32} {:<12} {:<9} {:<9} {signer}", p.id, p.version, p.state.as_str(), enabled)
}

fn print_info(p: &PluginStatus) {
    println!("plugin       {} {}", p.id, p.version);
    println!("state        {}{}", p.state.as_str(), p.error.as_deref().map(|e| format!(" ({e})")).unwrap_or_default());
    println!("enabled      {}", if p.enabled { "yes" } else { "no" });
    match (&p.signer, &p.signer_key_id) {
        (Some(n), Some(k)) => println!("signer       {n} ({k})"),
        _ => println!("signer       none (installed with --allow-unsigned)"),
    }
    println!("tree         {}", p.tree_hash);
    println!("package      {}", p.package_sha256);
    println!("folder       {}", p.path.display());
    println!("installed    {}", p.installed_at);
    println!("highest      {}", p.highest_version);
    println!("permissions  {}", p.approved_permissions);
    for l in &p.permissions {
        render::line(&format!("  {l}"));
    }
    if let Some(h) = &p.hint {
        println!("hint: {h}");
    }
}
