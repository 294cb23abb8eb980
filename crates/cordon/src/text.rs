//! Text that came from a sandbox (or from a plugin's author), made safe to
//! show on a terminal.
//!
//! A handler's log lines, its result, artifact names, host names it tried,
//! a manifest's descriptions: when cordon prints them, a terminal would act
//! on the control characters inside (change the title, clear the screen,
//! move the cursor back with `\r` and print a fake `cordon: run ok`, or
//! reorder a line with bidirectional overrides). [`for_terminal`] writes
//! each such character as an escape instead, the way `journalctl` and
//! `git` show untrusted names; [`to_json`] does the same inside JSON
//! strings without changing their value. Printable text, tabs (and, where
//! asked, newlines) pass unchanged, and the result of escaping is escaped
//! text again, so applying it twice does no harm.
//!
//! What is escaped: C0 controls (`ESC`, `BEL`, `BS`, `\r`, …), `DEL`, the C1
//! controls U+0080–U+009F (`CSI` among them), and the invisible format
//! characters that reorder or hide text: U+061C, U+200B–U+200F,
//! U+2028–U+202E, U+2060–U+2069, U+FEFF. Backslashes are not escaped, so
//! the escapes can be told from a handler's own backslashes only by this
//! rule, as in `journalctl`.
//!
//! Not covered: output a command writes straight to the caller's terminal
//! (`cordon run` without `--json`): that is the command's own output.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Whether [`for_terminal`] keeps line breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Newlines {
    /// `\n` and `\t` pass (multi-line messages).
    Keep,
    /// `\n` and `\t` are escaped too: the text stays on one line (a log
    /// line, an audit listing's record).
    Escape,
}

fn hidden(c: char) -> bool {
    matches!(
        c,
        '\u{80}'..='\u{9f}'
            | '\u{7f}'
            | '\u{061c}'
            | '\u{200b}'..='\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{2069}'
            | '\u{feff}'
    )
}

fn needs_escape(c: char, newlines: Newlines) -> bool {
    match c {
        '\n' | '\t' => newlines == Newlines::Escape,
        c if c < ' ' => true,
        c => hidden(c),
    }
}

/// `text` with every character a terminal would act on written as an
/// escape: `\r`, `\n`, `\t` by name (the last two only with
/// [`Newlines::Escape`]), other C0 controls and `DEL` as `\xHH`, C1 controls
/// and format characters as `\u{HHHH}`. Borrows when nothing needs escaping.
///
/// ```
/// use cordon::text::{for_terminal, Newlines};
/// assert_eq!(for_terminal("\x1b]0;owned\x07done\rcordon: run ok", Newlines::Keep),
///            "\\x1b]0;owned\\x07done\\rcordon: run ok");
/// assert_eq!(for_terminal("a\u{202e}b\nc", Newlines::Escape), "a\\u{202e}b\\nc");
/// assert_eq!(for_terminal("plain\ttext\n", Newlines::Keep), "plain\ttext\n");
/// ```
pub fn for_terminal(text: &str, newlines: Newlines) -> Cow<'_, str> {
    if !text.chars().any(|c| needs_escape(c, newlines)) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if !needs_escape(c, newlines) {
            out.push(c);
            continue;
        }
        let _ = match c {
            '\r' => out.write_str("\\r"),
            '\n' => out.write_str("\\n"),
            '\t' => out.write_str("\\t"),
            c if u32::from(c) <= 0x7f => write!(out, "\\x{:02x}", u32::from(c)),
            c => write!(out, "\\u{{{:04x}}}", u32::from(c)),
        };
    }
    Cow::Owned(out)
}

/// A JSON formatter that also writes `DEL`, C1 controls and format
/// characters as `\uXXXX` (serde_json escapes C0 itself): same JSON value,
/// nothing a terminal acts on.
struct TerminalSafe<F>(F);

impl<F: serde_json::ser::Formatter> serde_json::ser::Formatter for TerminalSafe<F> {
    fn write_string_fragment<W: ?Sized + std::io::Write>(&mut self, w: &mut W, fragment: &str) -> std::io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            if hidden(c) {
                w.write_all(&fragment.as_bytes()[start..i])?;
                write!(w, "\\u{:04x}", u32::from(c))?;
                start = i + c.len_utf8();
            }
        }
        w.write_all(&fragment.as_bytes()[start..])
    }

    fn begin_array<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.begin_array(w)
    }
    fn end_array<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.end_array(w)
    }
    fn begin_array_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W, first: bool) -> std::io::Result<()> {
        self.0.begin_array_value(w, first)
    }
    fn end_array_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.end_array_value(w)
    }
    fn begin_object<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.begin_object(w)
    }
    fn end_object<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.end_object(w)
    }
    fn begin_object_key<W: ?Sized + std::io::Write>(&mut self, w: &mut W, first: bool) -> std::io::Result<()> {
        self.0.begin_object_key(w, first)
    }
    fn end_object_key<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.end_object_key(w)
    }
    fn begin_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.begin_object_value(w)
    }
    fn end_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.end_object_value(w)
    }
}

/// Whether [`to_json`] indents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// One line.
    Compact,
    /// Indented, for people.
    Pretty,
}

/// `value` as JSON with nothing a terminal acts on in its strings (see
/// [`TerminalSafe`]); parsing it gives the same value as `serde_json`'s own.
///
/// ```
/// let s = cordon::text::to_json(&"\u{9b}31m\u{202e}x\x1b", cordon::text::Layout::Compact).unwrap();
/// assert_eq!(s, r#""\u009b31m\u202ex\u001b""#);
/// assert_eq!(serde_json::from_str::<String>(&s).unwrap(), "\u{9b}31m\u{202e}x\x1b");
/// ```
pub fn to_json<T: serde::Serialize + ?Sized>(value: &T, layout: Layout) -> serde_json::Result<String> {
    let mut out = vec![];
    match layout {
        Layout::Compact => {
            let mut ser =
                serde_json::Serializer::with_formatter(&mut out, TerminalSafe(serde_json::ser::CompactFormatter));
            value.serialize(&mut ser)?;
        }
        Layout::Pretty => {
            let f = TerminalSafe(serde_json::ser::PrettyFormatter::new());
            let mut ser = serde_json::Serializer::with_formatter(&mut out, f);
            value.serialize(&mut ser)?;
        }
    }
    Ok(String::from_utf8(out).expect("serde_json writes UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_control_and_format_character_is_escaped_and_escaping_twice_changes_nothing() {
        for c in (0u32..0x20).chain([0x7f]).chain(0x80..0xa0).chain([0x61c, 0x200b, 0x200e, 0x202e, 0x2066, 0xfeff]) {
            let c = char::from_u32(c).unwrap();
            let once = for_terminal(&format!("a{c}b"), Newlines::Escape).into_owned();
            assert!(!once.chars().any(|x| needs_escape(x, Newlines::Escape)), "{c:?} -> {once:?}");
            assert_eq!(for_terminal(&once, Newlines::Escape), once);
        }
        assert!(matches!(for_terminal("naïve – ok ✓", Newlines::Keep), Cow::Borrowed(_)));
    }

    #[test]
    fn json_keeps_its_value() {
        let v = serde_json::json!({"k\u{202e}": ["\u{85}\u{7f}", 1, {"x": "\x1b[2J"}]});
        for layout in [Layout::Compact, Layout::Pretty] {
            let s = to_json(&v, layout).unwrap();
            assert!(!s.chars().any(|c| needs_escape(c, Newlines::Keep)), "{s}");
            assert_eq!(serde_json::from_str::<serde_json::Value>(&s).unwrap(), v);
        }
    }
}
