//! Micro-benchmarks, in bytes per second: the framer, the escaper, and each output format.
//! Run with `cargo bench`; compare before and after a change on the same machine.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hubcat::framing::Framer;
use hubcat::output::{Origin, Peer, Records, escape_into};
use hubcat::{Format, Style};

/// 16 KiB of 64-byte lines (the ingest benchmark's traffic), as one read.
fn plain_lines() -> Vec<u8> {
    let mut data = Vec::new();
    let mut i = 0;
    while data.len() + 64 <= 16 * 1024 {
        let mut line = format!("ingest line {i:06} ").into_bytes();
        line.resize(63, b'x');
        line.push(b'\n');
        data.extend_from_slice(&line);
        i += 1;
    }
    data
}

/// The same size of text with UTF-8, tabs and an escape sequence in every line.
fn mixed_lines() -> Vec<u8> {
    let line = "caf\u{e9} \u{65e5}\u{672c}\tcol\x1b[1mbold\x1b[0m and some more plain text here\n";
    line.as_bytes().iter().copied().cycle().take(16 * 1024).collect()
}

fn origin() -> Origin {
    Origin { conn: Some(1), peer: Peer::Ip("127.0.0.1:49346".parse().expect("valid address")) }
}

fn framing(c: &mut Criterion) {
    let data = plain_lines();
    let mut group = c.benchmark_group("framer");
    group.throughput(Throughput::Bytes(data.len() as u64));
    group.bench_function("lines_64B", |b| {
        let mut framer = Framer::new();
        b.iter(|| {
            let mut count = 0;
            framer.lines(black_box(&data), 65536, |line| count += line.bytes.len());
            count
        })
    });
    group.bench_function("lines_64B_split_reads", |b| {
        let mut framer = Framer::new();
        b.iter(|| {
            let mut count = 0;
            for read in black_box(&data).chunks(1000) {
                framer.lines(read, 65536, |line| count += line.bytes.len());
            }
            count
        })
    });
    group.finish();
}

fn escaping(c: &mut Criterion) {
    let mut group = c.benchmark_group("escaper");
    for (name, data) in [("plain", plain_lines()), ("mixed", mixed_lines())] {
        group.throughput(Throughput::Bytes(data.len() as u64));
        let mut out = Vec::with_capacity(data.len() * 4);
        group.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                for line in black_box(&data).split(|&b| b == b'\n') {
                    escape_into(&mut out, line);
                }
                out.len()
            })
        });
    }
    group.finish();
}

fn formats(c: &mut Criterion) {
    let data = plain_lines();
    let mut group = c.benchmark_group("format");
    group.throughput(Throughput::Bytes(data.len() as u64));
    for (name, format, timestamps) in [
        ("lines", Format::Lines, false),
        ("lines_timestamps", Format::Lines, true),
        ("json", Format::Json, false),
        ("chunks_512", Format::Chunks, false),
        ("hex", Format::Hex, false),
        ("raw", Format::Raw, false),
    ] {
        let style = Style { format, timestamps };
        group.bench_function(name, |b| {
            let mut framer = Framer::new();
            b.iter(|| {
                let mut out = Vec::with_capacity(data.len() * 2);
                let mut records = Records::new(style, origin(), &mut out);
                match format {
                    Format::Lines | Format::Json => {
                        framer.lines(black_box(&data), 65536, |line| records.line(line))
                    }
                    Format::Chunks => black_box(&data).chunks(512).for_each(|chunk| records.chunk(chunk)),
                    Format::Hex => records.hex(black_box(&data), 0),
                    Format::Raw => framer.raw(black_box(&data), 65536, |bytes| records.raw(bytes)),
                }
                records.finish();
                out
            })
        });
    }
    group.finish();
}

criterion_group!(benches, framing, escaping, formats);
criterion_main!(benches);
