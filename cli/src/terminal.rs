//! Text for the operator's terminal. Everything a guest wrote (its log, result message,
//! commit, artifact names, error texts) can carry escape sequences that move the cursor,
//! clear the screen, set the window title or rewrite what is shown (ANSI CSI and OSC, CR,
//! bidirectional overrides): human-readable output shows them as visible escapes instead
//! (security review F7). `--json` output keeps the data exact, as JSON strings.

use std::borrow::Cow;

/// `text` with every control character but newline and tab, and every bidirectional
/// control, written as `\x1b` / `\u{202e}`.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if needs_escape(c) {
            if (c as u32) < 0x100 {
                out.push_str(&format!("\\x{:02x}", c as u32));
            } else {
                out.push_str(&format!("\\u{{{:x}}}", c as u32));
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

fn needs_escape(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t')
        || matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_sequences_are_shown_not_obeyed() {
        assert_eq!(escape("plain\ttext\n"), "plain\ttext\n");
        assert_eq!(escape("\x1b]0;pwned\x07\x1b[2J"), "\\x1b]0;pwned\\x07\\x1b[2J");
        assert_eq!(escape("ok\rFAKE"), "ok\\x0dFAKE");
        assert_eq!(escape("evil\u{202e}hs.txt"), "evil\\u{202e}hs.txt");
        assert_eq!(escape("\u{9b}31m"), "\\x9b31m", "the 8-bit CSI too");
    }
}
