//! `cordon key gen`: a minisign key pair for signing plugins.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::registry_status;

#[derive(Args, Debug)]
pub struct KeyArgs {
    #[command(subcommand)]
    command: KeyCommand,
}

#[derive(Subcommand, Debug)]
enum KeyCommand {
    /// Generate an Ed25519 key pair in minisign format: FILE (secret, mode 0600, no password, like
    /// `minisign -G -W`) and FILE.pub. Prints the key id.
    #[command(after_help = "Exit status: 0 done; 1 refused (a file exists already, cannot write); 2 usage error.")]
    Gen {
        /// The secret key file to write; the public key goes to FILE.pub. Existing files are never replaced.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}

pub fn run(a: KeyArgs) -> i32 {
    match a.command {
        KeyCommand::Gen { out } => registry_status(cordon_registry::generate_key(&out).map(|(id, public)| {
            println!("{id}");
            eprintln!(
                "cordon: wrote secret key {} and public key {}\n  sign with `cordon plugin sign FILE --key {}`; \
                 publishers' users trust it with `cordon trust add {}`",
                out.display(),
                public.display(),
                out.display(),
                public.display()
            );
        })),
    }
}
