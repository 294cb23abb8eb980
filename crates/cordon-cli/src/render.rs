//! Rendering errors and summaries for people.

use std::io::Write;

/// Prints an error with its cause chain and hint, once.
pub fn error(e: &anyhow::Error) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "cordon: error: {e}");
    for cause in e.chain().skip(1) {
        let _ = writeln!(err, "  caused by: {cause}");
    }
}

/// Prints a message that may carry a `hint:` line, indented like `error`.
pub fn message(kind: &str, text: &str) {
    let mut err = std::io::stderr().lock();
    for (i, line) in text.lines().enumerate() {
        if i == 0 {
            let _ = writeln!(err, "cordon: {kind}: {line}");
        } else {
            let _ = writeln!(err, "  {line}");
        }
    }
}
