//! Terminal-safe escaping of untrusted bytes (DESIGN invariant 3).
//!
//! Printable ASCII and well-formed UTF-8 pass through; control bytes, DEL, invalid UTF-8,
//! C1 controls and bidirectional overrides become visible escapes (`\x1b`, `\xff`, `\u{202e}`),
//! and `\` itself is doubled so every escape is unambiguous.

use crate::scan::plain_prefix_len;

/// Appends `bytes` to `out`, escaping anything that could drive a terminal.
pub fn escape_into(out: &mut Vec<u8>, bytes: &[u8]) {
    escape(out, bytes, Backslash::Double);
}

/// What happens to a literal backslash.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Backslash {
    /// `\\`, so records can be read back unambiguously.
    Double,
    /// Left alone: text shown to a person only has to be safe, and a relayed chat line was
    /// already escaped by the server.
    Keep,
}

fn escape(out: &mut Vec<u8>, bytes: &[u8], backslash: Backslash) {
    let mut rest = bytes;
    loop {
        let plain = plain_prefix_len(rest);
        out.extend_from_slice(&rest[..plain]);
        rest = &rest[plain..];
        let Some(&b) = rest.first() else { return };
        let used = match b {
            b'\\' if backslash == Backslash::Keep => {
                out.push(b);
                1
            }
            0..0x80 => escape_ascii(out, b),
            _ => escape_non_ascii(out, rest),
        };
        rest = &rest[used..];
    }
}

/// Like [`escape_into`], for text shown to a person as it flows: line breaks are kept (`\n`
/// and `\r\n` become a newline) and backslashes are left alone.
pub(crate) fn escape_text_into(out: &mut Vec<u8>, bytes: &[u8]) {
    let mut lines = bytes.split(|&b| b == b'\n').peekable();
    while let Some(line) = lines.next() {
        if lines.peek().is_some() {
            escape(out, line.strip_suffix(b"\r").unwrap_or(line), Backslash::Keep);
            out.push(b'\n');
        } else {
            escape(out, line, Backslash::Keep);
        }
    }
}

/// Escapes one ASCII control byte, DEL or backslash; returns the bytes consumed (1).
fn escape_ascii(out: &mut Vec<u8>, b: u8) -> usize {
    match b {
        b'\\' => out.extend_from_slice(b"\\\\"),
        b'\n' => out.extend_from_slice(b"\\n"),
        b'\r' => out.extend_from_slice(b"\\r"),
        b'\t' => out.extend_from_slice(b"\\t"),
        _ => push_hex_escape(out, b),
    }
    1
}

/// Copies one well-formed UTF-8 character unless it is unsafe to show; escapes bytes that are
/// not UTF-8 one at a time. Returns the bytes consumed.
fn escape_non_ascii(out: &mut Vec<u8>, rest: &[u8]) -> usize {
    let width = match rest[0] {
        0xc2..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf4 => 4,
        _ => 0,
    };
    let decoded =
        rest.get(..width).and_then(|seq| std::str::from_utf8(seq).ok()).and_then(|s| s.chars().next());
    match decoded {
        Some(c) if is_unsafe_char(c) => {
            out.extend_from_slice(format!("\\u{{{:04x}}}", c as u32).as_bytes());
            width
        }
        Some(_) => {
            out.extend_from_slice(&rest[..width]);
            width
        }
        None => {
            push_hex_escape(out, rest[0]);
            1
        }
    }
}

/// Characters that are valid UTF-8 but can still move the cursor or reorder what is shown.
fn is_unsafe_char(c: char) -> bool {
    matches!(c,
        '\u{80}'..='\u{9f}'            // C1 controls: some terminals read U+009B as CSI
        | '\u{061c}' | '\u{200e}' | '\u{200f}'
        | '\u{202a}'..='\u{202e}'      // bidi embeddings and overrides ("Trojan Source")
        | '\u{2066}'..='\u{2069}'      // bidi isolates
        | '\u{2028}' | '\u{2029}'      // line and paragraph separators
    )
}

/// Appends `\xNN` for one byte.
fn push_hex_escape(out: &mut Vec<u8>, b: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.extend_from_slice(&[b'\\', b'x', HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn esc(bytes: &[u8]) -> String {
        let mut out = Vec::new();
        escape_into(&mut out, bytes);
        String::from_utf8(out).expect("escaped output is UTF-8")
    }

    #[test]
    fn table() {
        let cases: &[(&[u8], &str)] = &[
            (b"IVO says: Hi Server, what's up?", "IVO says: Hi Server, what's up?"),
            (b"\x1b[2J\x1b]0;pwned\x07", "\\x1b[2J\\x1b]0;pwned\\x07"),
            (b"tab\there\r\n", "tab\\there\\r\\n"),
            (b"back\\slash", "back\\\\slash"),
            (b"\xff\xfe", "\\xff\\xfe"),
            (b"\x7f\x00", "\\x7f\\x00"),
            ("caf\u{e9} \u{65e5}\u{672c} \u{1f600}".as_bytes(), "caf\u{e9} \u{65e5}\u{672c} \u{1f600}"),
            ("\u{9b}31m".as_bytes(), "\\u{009b}31m"),
            ("abc\u{202e}cba".as_bytes(), "abc\\u{202e}cba"),
            (b"\xe6\x97", "\\xe6\\x97"),          // truncated sequence
            (b"\xc0\xaf", "\\xc0\\xaf"),          // overlong encoding of '/'
            (b"\xed\xa0\x80", "\\xed\\xa0\\x80"), // UTF-16 surrogate
            (b"", ""),
        ];
        for (input, want) in cases {
            assert_eq!(esc(input), *want, "input {input:?}");
        }
    }

    #[test]
    fn text_keeps_line_breaks() {
        let mut out = Vec::new();
        escape_text_into(&mut out, b"HTTP/1.0 200 OK\r\nX: \x1b[1m C:\\dir\n\nbody");
        assert_eq!(out, b"HTTP/1.0 200 OK\nX: \\x1b[1m C:\\dir\n\nbody");
    }
}
