//! `cordon trust add|list|remove`: the publisher keys this host trusts.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use cordon_registry::Registry;

use super::{json_line, registry_status};

#[derive(Args, Debug)]
pub struct TrustArgs {
    #[command(subcommand)]
    command: TrustCommand,
}

#[derive(Subcommand, Debug)]
#[command(after_help = "State lives under CORDON_HOME (default $XDG_DATA_HOME/cordon). Exit status: 0 done; \
1 refused; 2 usage error.")]
enum TrustCommand {
    /// Trust a minisign public key (from `minisign -G` or `cordon key gen`).
    Add {
        /// The public key file.
        #[arg(value_name = "PUBFILE")]
        pubfile: PathBuf,
        /// The name `trust remove` takes (default: the key id).
        #[arg(long, value_name = "N")]
        name: Option<String>,
        /// A plugin id (`@acme/weather`) or every plugin of a scope (`@acme/*`) the key may sign. Repeatable;
        /// default: any plugin.
        #[arg(long, value_name = "ID|@scope/*")]
        scope: Vec<String>,
        /// The key is no longer trusted from 00:00 UTC of this day.
        #[arg(long, value_name = "YYYY-MM-DD")]
        expires: Option<String>,
    },
    /// List the trusted keys.
    List {
        /// Print one JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Stop trusting a key (by name or key id). Plugins it signed become invalid at once.
    Remove {
        /// The key's name or id.
        #[arg(value_name = "NAME")]
        name: String,
    },
}

pub fn run(a: TrustArgs) -> i32 {
    registry_status(Registry::from_env().and_then(|reg| match a.command {
        TrustCommand::Add { pubfile, name, scope, expires } => {
            let k = reg.trust_add(&pubfile, name.as_deref(), &scope, expires.as_deref())?;
            println!("trusted {} ({}){}", k.name, k.key_id, describe_scope(&k));
            Ok(())
        }
        TrustCommand::List { json } => {
            let keys = reg.trust_list()?;
            if json {
                json_line(&keys);
            } else {
                for k in &keys {
                    println!("{:<24} {}{}", k.name, k.key_id, describe_scope(k));
                }
            }
            Ok(())
        }
        TrustCommand::Remove { name } => {
            let k = reg.trust_remove(&name)?;
            println!("removed {} ({}); plugins it signed are now invalid", k.name, k.key_id);
            Ok(())
        }
    }))
}

fn describe_scope(k: &cordon_registry::TrustedKey) -> String {
    let scope = if k.scope.is_empty() { "any plugin".to_owned() } else { k.scope.join(", ") };
    let expires = k.expires.as_deref().map(|e| format!(", expires {e}")).unwrap_or_default();
    format!("  scope: {scope}{expires}")
}
