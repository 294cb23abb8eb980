//! `cordon completions SHELL` and `cordon man`: shell completions and man
//! pages generated from the CLI definition itself (`clap_complete`,
//! `clap_mangen`), so they list exactly the commands and flags `--help`
//! shows.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Command};
use clap_complete::Shell;

#[derive(Args, Debug)]
#[command(after_help = "Install, for example:\n  cordon completions bash > /etc/bash_completion.d/cordon\n  \
cordon completions zsh > \"${fpath[1]}/_cordon\"\n  cordon completions fish > ~/.config/fish/completions/cordon.fish")]
pub struct CompletionsArgs {
    /// The shell to print a completion script for.
    #[arg(value_name = "SHELL", value_enum)]
    shell: Shell,
}

#[derive(Args, Debug)]
#[command(after_help = "Read one with `cordon man run | man -l -`; install them with \
`cordon man --out /usr/local/share/man/man1`.")]
pub struct ManArgs {
    /// The page of one command (`run`, `exec`, `plugin install`, ...). Default: cordon's own page.
    #[arg(value_name = "COMMAND", num_args = 0..)]
    command: Vec<String>,
    /// Write every page (cordon.1, cordon-run.1, cordon-plugin-install.1, ...) into DIR instead of printing one.
    #[arg(long, value_name = "DIR", conflicts_with = "command")]
    out: Option<PathBuf>,
}

/// Prints the completion script for `a.shell` on stdout.
pub fn completions(a: CompletionsArgs, mut cli: Command) -> Result<i32> {
    let name = cli.get_name().to_owned();
    // Into memory first: clap_complete panics on a failed write.
    let mut script = vec![];
    clap_complete::generate(a.shell, &mut cli, name, &mut script);
    print(&script).context("cannot write the completion script to stdout")
}

/// Writes `bytes` to stdout; a reader that went away (`| head`) is not an
/// error.
fn print(bytes: &[u8]) -> std::io::Result<i32> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e),
        _ => Ok(0),
    }
}

/// Prints one man page (roff) on stdout, or writes all of them to `--out`.
pub fn man(a: ManArgs, mut cli: Command) -> Result<i32> {
    cli.build();
    if let Some(dir) = &a.out {
        std::fs::create_dir_all(dir).with_context(|| format!("invalid --out {}: cannot create it", dir.display()))?;
        let written = write_pages(&cli, "", dir)?;
        eprintln!("cordon: wrote {written} man pages to {}", dir.display());
        return Ok(0);
    }
    let mut page = cli.clone();
    let mut path = vec![cli.get_name().to_owned()];
    for word in &a.command {
        let Some(sub) = page.find_subcommand(word).cloned() else {
            let known: Vec<&str> = page.get_subcommands().map(Command::get_name).filter(|n| *n != "help").collect();
            let asked = [&path[1..], std::slice::from_ref(word)].concat().join(" ");
            crate::render::message(
                "usage",
                &format!("no command `{asked}`\nhint: pages exist for: {}", known.join(", ")),
            );
            return Ok(2);
        };
        path.push(word.clone());
        page = sub;
    }
    let page = page.name(path.join("-"));
    let mut roff = vec![];
    clap_mangen::Man::new(page).render(&mut roff).context("cannot render the man page")?;
    print(&roff).context("cannot write the man page to stdout")
}

/// Writes `cmd`'s page as `<prefix><name>.1` and recurses into its
/// subcommands; returns how many pages were written.
fn write_pages(cmd: &Command, prefix: &str, dir: &std::path::Path) -> Result<usize> {
    let name = format!("{prefix}{}", cmd.get_name());
    let file = dir.join(format!("{name}.1"));
    let mut bytes = vec![];
    clap_mangen::Man::new(cmd.clone().name(name.clone())).render(&mut bytes).context("cannot render a man page")?;
    std::fs::write(&file, bytes).with_context(|| format!("cannot write {}", file.display()))?;
    let mut written = 1;
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        written += write_pages(sub, &format!("{name}-"), dir)?;
    }
    Ok(written)
}
