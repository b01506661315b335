//! Property tests: the framer, the escaper and the JSON records on arbitrary input.

use base64::Engine as _;
use hubcat::framing::{Framer, Line, Piece};
use hubcat::output::{Origin, Peer, Records, escape_into};
use hubcat::{Format, Style};
use proptest::prelude::*;

/// Bytes with plenty of line endings and escapes among them.
fn stream() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![4 => any::<u8>(), 2 => Just(b'\n'), 1 => Just(b'\r'), 2 => Just(b'a')],
        0..400,
    )
}

fn frame(reads: &[&[u8]], max_line: usize) -> Vec<(Vec<u8>, Piece)> {
    let mut framer = Framer::new();
    let mut out = Vec::new();
    for read in reads {
        framer.lines(read, max_line, |line| out.push((line.bytes.to_vec(), line.piece)));
    }
    framer.finish_lines(max_line, |line| out.push((line.bytes.to_vec(), line.piece)));
    out
}

/// Splits `data` at the given (unsorted, possibly repeated) cut points.
fn split<'a>(data: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
    cuts.sort_unstable();
    let mut reads = Vec::new();
    let mut start = 0;
    for cut in cuts {
        reads.push(&data[start..cut]);
        start = cut;
    }
    reads.push(&data[start..]);
    reads
}

proptest! {
    #[test]
    fn any_split_into_reads_gives_the_same_lines(
        data in stream(),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
        max_line in 1usize..24,
    ) {
        let whole = frame(&[&data], max_line);
        prop_assert_eq!(frame(&split(&data, &cuts), max_line), whole);
    }

    #[test]
    fn memory_between_reads_stays_within_the_line_limit(
        data in stream(),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
        max_line in 1usize..64,
    ) {
        let mut framer = Framer::new();
        for read in split(&data, &cuts) {
            framer.lines(read, max_line, |_| {});
            prop_assert!(framer.held_bytes() <= max_line + 1, "{} held", framer.held_bytes());
        }
    }

    #[test]
    fn pieces_are_bounded_and_rebuild_the_input(data in stream(), max_line in 1usize..24) {
        let mut rebuilt = Vec::new();
        for (line, piece) in frame(&[&data], max_line) {
            prop_assert!(line.len() <= max_line);
            rebuilt.extend_from_slice(&line);
            if piece == Piece::End {
                rebuilt.push(b'\n');
            }
        }
        // Only the "\r" of each "\r\n" ending is dropped...
        let mut expected = String::from_utf8_lossy(&data).replace("\r\n", "\n");
        if !expected.is_empty() && !expected.ends_with('\n') {
            expected.push('\n'); // ...and the unterminated last line is emitted as a line.
        }
        prop_assert_eq!(String::from_utf8_lossy(&rebuilt).into_owned(), expected);
    }

    #[test]
    fn raw_framing_passes_every_byte_once(data in stream(), cuts in prop::collection::vec(any::<usize>(), 0..12)) {
        let mut framer = Framer::new();
        let mut out = Vec::new();
        for read in split(&data, &cuts) {
            framer.raw(read, 16, |bytes| out.extend_from_slice(bytes));
        }
        framer.finish_raw(|bytes| out.extend_from_slice(bytes));
        prop_assert_eq!(out, data);
    }

    #[test]
    fn escaped_text_is_safe_and_reversible(data in prop::collection::vec(any::<u8>(), 0..300)) {
        let mut out = Vec::new();
        escape_into(&mut out, &data);
        let text = std::str::from_utf8(&out).expect("escaped output is UTF-8");
        prop_assert!(!text.chars().any(|c| c.is_control()), "no control character survives: {:?}", text);
        prop_assert_eq!(unescape(text), data);
    }

    #[test]
    fn json_records_always_parse_and_keep_the_bytes(line in prop::collection::vec(any::<u8>(), 0..200)) {
        let origin = Origin { conn: Some(1), peer: Peer::Ip("[::1]:9".parse().expect("valid address")) };
        let mut out = Vec::new();
        let mut records = Records::new(Style { format: Format::Json, timestamps: false }, origin, &mut out);
        records.line(Line { bytes: &line, piece: Piece::End, plain: false });
        records.finish();
        let record: serde_json::Value = serde_json::from_slice(&out).expect("a JSON record");
        let exact = match record.get("base64") {
            Some(b64) => base64::engine::general_purpose::STANDARD
                .decode(b64.as_str().expect("a string"))
                .expect("valid base64"),
            None => record["text"].as_str().expect("text").as_bytes().to_vec(),
        };
        prop_assert_eq!(exact, line);
    }
}

/// Reverses `escape_into`: `\\`, `\n`, `\r`, `\t`, `\xNN`, `\u{XXXX}`.
fn unescape(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            let mut buf = [0; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        match chars.next() {
            Some('\\') => out.push(b'\\'),
            Some('n') => out.push(b'\n'),
            Some('r') => out.push(b'\r'),
            Some('t') => out.push(b'\t'),
            Some('x') => {
                let hex: String = chars.by_ref().take(2).collect();
                out.push(u8::from_str_radix(&hex, 16).expect("two hex digits"));
            }
            Some('u') => {
                let code: String = chars.by_ref().skip(1).take_while(|&c| c != '}').collect();
                let c = char::from_u32(u32::from_str_radix(&code, 16).expect("hex")).expect("a char");
                let mut buf = [0; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
            other => panic!("unknown escape {other:?}"),
        }
    }
    out
}
