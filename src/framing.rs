//! Pure line splitting with a maximum length: bytes in, lines out, no I/O.
//!
//! Shared by the server (per connection) and the client (line mode). The only state kept between
//! reads is the unfinished tail of a line, so an idle connection holds no buffer.

use memchr::{memchr, memrchr};

use crate::scan::plain_prefix_len;

/// One line (its `\n` or `\r\n` ending removed), or one piece of an over-long line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Line<'a> {
    /// The bytes of the line or piece.
    pub bytes: &'a [u8],
    /// Whether more of the same line follows.
    pub piece: Piece,
    /// True when every byte is known to need no escaping (false means not checked).
    pub plain: bool,
}

impl<'a> Line<'a> {
    fn new(bytes: &'a [u8], piece: Piece) -> Self {
        Line { bytes, piece, plain: false }
    }
}

/// How a piece of input relates to the line it belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Piece {
    /// A whole line (its `\n` or `\r\n` ending removed), or the last piece of a long one.
    End,
    /// A piece of a line longer than the maximum; more of the same line follows.
    Continued,
}

/// The unfinished tail of a byte stream, and the rules for cutting lines out of it.
///
/// The limit is passed to every call rather than stored: a framer lives in every connection
/// task, and a smaller task is what lets tens of thousands of idle clients fit in little memory.
/// Use one style per stream: either `lines`/`finish_lines` or `raw`/`finish_raw`.
#[derive(Debug, Default)]
pub struct Framer {
    /// The unfinished line carried over from earlier reads (at most `max_line` bytes, plus a
    /// trailing `\r` that may be the start of a `\r\n` ending).
    pending: Vec<u8>,
}

impl Framer {
    /// A framer with nothing pending.
    pub fn new() -> Self {
        Self::default()
    }

    /// True when part of a line is waiting for its end.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Bytes held for the unfinished line, allocated or not: the memory a connection keeps
    /// between reads (at most `max_line` plus one).
    pub fn held_bytes(&self) -> usize {
        self.pending.capacity()
    }

    /// Feeds one read; `emit` gets every complete line (ending removed) or over-long piece.
    pub fn lines(&mut self, mut data: &[u8], max_line: usize, mut emit: impl FnMut(Line<'_>)) {
        let max_line = max_line.max(1);
        if !self.pending.is_empty() {
            let Some(nl) = memchr(b'\n', data) else {
                self.fill_pending(data, max_line, &mut emit);
                return;
            };
            let head = &data[..nl];
            if head.is_empty() && self.pending.last() == Some(&b'\r') {
                // The "\r" of a "\r\n" ending arrived in the previous read.
                self.pending.pop();
            }
            self.fill_pending(strip_cr(head), max_line, &mut emit);
            self.emit_pending(max_line, &mut emit);
            data = &data[nl + 1..];
        }
        loop {
            // One pass over a line usually finds both its end and that it needs no escaping.
            let plain = plain_prefix_len(data);
            if data.get(plain) == Some(&b'\n') && plain <= max_line {
                emit(Line { bytes: &data[..plain], piece: Piece::End, plain: true });
                data = &data[plain + 1..];
                continue;
            }
            let Some(nl) = memchr(b'\n', &data[plain..]).map(|at| plain + at) else { break };
            let mut line = strip_cr(&data[..nl]);
            while line.len() > max_line {
                emit(Line::new(&line[..max_line], Piece::Continued));
                line = &line[max_line..];
            }
            emit(Line::new(line, Piece::End));
            data = &data[nl + 1..];
        }
        self.fill_pending(data, max_line, &mut emit);
    }

    /// Emits the unterminated last line, if any (the peer left without a final newline).
    pub fn finish_lines(&mut self, max_line: usize, mut emit: impl FnMut(Line<'_>)) {
        if !self.pending.is_empty() {
            self.emit_pending(max_line.max(1), &mut emit);
        }
    }

    /// Appends newline-free bytes to the unfinished line, emitting a piece whenever it is full.
    fn fill_pending(&mut self, mut data: &[u8], max_line: usize, emit: &mut impl FnMut(Line<'_>)) {
        while !data.is_empty() {
            if self.pending.len() >= max_line {
                if data == b"\r" && self.pending.len() == max_line {
                    // May be the start of a "\r\n" ending; the next read decides.
                    self.append(b"\r", max_line);
                    return;
                }
                emit(Line::new(&self.pending[..max_line], Piece::Continued));
                self.pending.drain(..max_line);
                continue;
            }
            let take = (max_line - self.pending.len()).min(data.len());
            self.append(&data[..take], max_line);
            data = &data[take..];
        }
    }

    /// Emits the unfinished line as a finished one and frees its memory, so an idle connection
    /// keeps no buffer (DESIGN invariant 6).
    fn emit_pending(&mut self, max_line: usize, emit: &mut impl FnMut(Line<'_>)) {
        if self.pending.len() > max_line {
            emit(Line::new(&self.pending[..max_line], Piece::Continued));
            emit(Line::new(&self.pending[max_line..], Piece::End));
        } else {
            emit(Line::new(&self.pending, Piece::End));
        }
        self.pending = Vec::new();
    }

    /// Feeds one read for the raw format: `emit` gets the bytes ready to be written verbatim,
    /// everything up to the last newline, while an unterminated tail is held (up to
    /// `max_line` bytes) so that lines of different clients never mix.
    pub fn raw(&mut self, data: &[u8], max_line: usize, mut emit: impl FnMut(&[u8])) {
        let Some(last_nl) = memrchr(b'\n', data) else {
            if self.pending.len() + data.len() > max_line {
                emit(&self.pending);
                emit(data);
                self.pending = Vec::new();
            } else {
                self.append(data, max_line);
            }
            return;
        };
        let (ready, tail) = data.split_at(last_nl + 1);
        if !self.pending.is_empty() {
            emit(&self.pending);
            self.pending = Vec::new();
        }
        emit(ready);
        if tail.len() > max_line {
            emit(tail);
        } else if !tail.is_empty() {
            self.append(tail, max_line);
        }
    }

    /// Appends to the unfinished line, growing its buffer by doubling (so a long line built from
    /// small reads is not copied over and over) but never past `max_line` plus one byte.
    fn append(&mut self, bytes: &[u8], max_line: usize) {
        let needed = self.pending.len() + bytes.len();
        if needed > self.pending.capacity() {
            let target = (self.pending.capacity() * 2).max(needed).min((max_line + 1).max(needed));
            self.pending.reserve_exact(target - self.pending.len());
        }
        self.pending.extend_from_slice(bytes);
    }

    /// Emits whatever the raw format still holds (the peer left mid-line).
    pub fn finish_raw(&mut self, mut emit: impl FnMut(&[u8])) {
        if !self.pending.is_empty() {
            emit(&self.pending);
            self.pending = Vec::new();
        }
    }
}

/// Removes the `\r` of a `\r\n` ending (the `\n` is already gone).
fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(max: usize, reads: &[&[u8]]) -> Vec<(String, Piece)> {
        let mut framer = Framer::new();
        let mut out = Vec::new();
        let mut push = |l: Line<'_>| out.push((String::from_utf8_lossy(l.bytes).into_owned(), l.piece));
        for read in reads {
            framer.lines(read, max, &mut push);
        }
        framer.finish_lines(max, &mut push);
        out
    }

    fn ends(items: &[&str]) -> Vec<(String, Piece)> {
        items.iter().map(|s| (s.to_string(), Piece::End)).collect()
    }

    #[test]
    fn splits_lines_and_strips_endings() {
        let cases: &[(&[&[u8]], &[&str])] = &[
            (&[b"a\nb\r\n"], &["a", "b"]),
            (&[b"he", b"llo\nwor", b"ld\n"], &["hello", "world"]),
            (&[b"\n\n"], &["", ""]),
            (&[b"no newline"], &["no newline"]),
            (&[b"x\r", b"\n"], &["x"]),
            (&[b"keep\rinner\n"], &["keep\rinner"]),
            (&[], &[]),
        ];
        for (reads, want) in cases {
            assert_eq!(lines(64, reads), ends(want), "reads {reads:?}");
        }
    }

    #[test]
    fn long_lines_come_in_marked_pieces() {
        let got = lines(4, &[b"abcdefghij\nxy\n"]);
        let want = vec![
            ("abcd".to_string(), Piece::Continued),
            ("efgh".to_string(), Piece::Continued),
            ("ij".to_string(), Piece::End),
            ("xy".to_string(), Piece::End),
        ];
        assert_eq!(got, want);
        let split = lines(4, &[b"ab", b"cdef", b"gh", b"\n"]);
        assert_eq!(split, vec![("abcd".to_string(), Piece::Continued), ("efgh".to_string(), Piece::End),]);
    }

    #[test]
    fn plain_lines_are_marked_so_only_they_skip_escaping() {
        let mut marks = Vec::new();
        Framer::new().lines(b"plain\nta\tb\n\n", 64, |l| marks.push((l.bytes.to_vec(), l.plain)));
        assert_eq!(marks, [(b"plain".to_vec(), true), (b"ta\tb".to_vec(), false), (b"".to_vec(), true)]);
    }

    #[test]
    fn pending_is_freed_after_a_line_completes() {
        let mut framer = Framer::new();
        framer.lines(b"partial", 64, |_| {});
        assert!(framer.has_pending());
        framer.lines(b" done\n", 64, |_| {});
        assert!(!framer.has_pending());
        assert_eq!(framer.pending.capacity(), 0);
    }

    #[test]
    fn raw_keeps_lines_whole() {
        let mut framer = Framer::new();
        let mut out: Vec<Vec<u8>> = Vec::new();
        framer.raw(b"one\ntw", 8, |b| out.push(b.to_vec()));
        framer.raw(b"o\nthr", 8, |b| out.push(b.to_vec()));
        framer.raw(b"ee-and-more-than-eight", 8, |b| out.push(b.to_vec()));
        framer.raw(b"end", 8, |b| out.push(b.to_vec()));
        framer.finish_raw(|b| out.push(b.to_vec()));
        assert_eq!(out.concat(), b"one\ntwo\nthree-and-more-than-eightend");
        assert_eq!(out[0], b"one\n");
        assert_eq!(out[1..3].concat(), b"two\n");
    }
}
