//! Formats a fixed read many times: a deterministic workload for `valgrind --tool=callgrind`
//! (instruction counts do not depend on a noisy machine). Usage: format_loop [lines|json|hex|chunks|raw] [reps]

use hubcat::framing::Framer;
use hubcat::output::{Origin, Peer, Records};
use hubcat::{Format, Style};

fn main() {
    let mut args = std::env::args().skip(1);
    let format = match args.next().as_deref() {
        Some("json") => Format::Json,
        Some("hex") => Format::Hex,
        Some("chunks") => Format::Chunks,
        Some("raw") => Format::Raw,
        _ => Format::Lines,
    };
    let reps: usize = args.next().and_then(|r| r.parse().ok()).unwrap_or(1000);
    let mut data = Vec::new();
    let mut i = 0;
    while data.len() + 64 <= 16 * 1024 {
        let mut line = format!("ingest line {i:06} ").into_bytes();
        line.resize(63, b'x');
        line.push(b'\n');
        data.extend_from_slice(&line);
        i += 1;
    }
    let origin = Origin { conn: Some(1), peer: Peer::Ip("127.0.0.1:49346".parse().expect("valid address")) };
    let style = Style { format, timestamps: false };
    let mut framer = Framer::new();
    let mut total = 0;
    for _ in 0..reps {
        let mut out = Vec::with_capacity(data.len() + data.len() / 2 + 128);
        let mut records = Records::new(style, origin, &mut out);
        match format {
            Format::Lines | Format::Json => framer.lines(&data, 65536, |line| records.line(line)),
            Format::Chunks => data.chunks(512).for_each(|chunk| records.chunk(chunk)),
            Format::Hex => records.hex(&data, 0),
            Format::Raw => framer.raw(&data, 65536, |bytes| records.raw(bytes)),
        }
        records.finish();
        total += out.len();
    }
    println!("{total} bytes formatted");
}
