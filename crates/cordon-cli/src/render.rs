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
