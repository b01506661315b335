//! Byte classes shared by framing and escaping: the run of bytes that can be shown as they are.
//!
//! A newline is not plain, so one scan of a line both proves it needs no escaping and finds its
//! end: the framer and the escaper share this pass instead of each reading the bytes.

/// True for bytes that are copied as they are: printable ASCII other than the backslash.
#[inline]
pub fn is_plain(b: u8) -> bool {
    (0x20..0x7f).contains(&b) && b != b'\\'
}

/// Length of the leading run of plain bytes.
#[inline]
pub fn plain_prefix_len(bytes: &[u8]) -> usize {
    let mut done = 0;
    for block in bytes.chunks_exact(BLOCK) {
        if !block_is_plain(block) {
            return done + first_offending(block);
        }
        done += BLOCK;
    }
    let rest = &bytes[done..];
    done + rest.iter().position(|&b| !is_plain(b)).unwrap_or(rest.len())
}

/// Bytes checked at once.
const BLOCK: usize = 16;

/// True when no byte of the block needs escaping. Written without branches or early exit so
/// the compiler turns it into a few SIMD instructions.
#[inline]
fn block_is_plain(block: &[u8]) -> bool {
    let mut offending = 0u8;
    for &b in block {
        // `b - 0x20 >= 0x5f` is `b < 0x20 || b >= 0x7f` in one unsigned comparison.
        offending |= u8::from(b.wrapping_sub(0x20) >= 0x5f) | u8::from(b == b'\\');
    }
    offending == 0
}

/// Index of the first byte needing escaping in a block known to have one.
#[inline]
fn first_offending(block: &[u8]) -> usize {
    block
        .chunks_exact(8)
        .enumerate()
        .find_map(|(i, word)| {
            let mut eight = [0; 8];
            eight.copy_from_slice(word);
            let flags = offending_high_bits(u64::from_le_bytes(eight));
            (flags != 0).then(|| i * 8 + flags.trailing_zeros() as usize / 8)
        })
        .unwrap_or(BLOCK)
}

/// The top bit of each byte of `word` that needs escaping (SWAR). A borrow can set the bit of a
/// plain byte only above a byte that really offends, so the lowest set bit is always exact.
#[inline]
fn offending_high_bits(word: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let is_zero = |v: u64| v.wrapping_sub(ONES) & !v;
    let below_space = word.wrapping_sub(ONES * 0x20) & !word;
    let delete = is_zero(word ^ (ONES * 0x7f));
    let backslash = is_zero(word ^ (ONES * u64::from(b'\\')));
    (below_space | delete | backslash | word) & HIGH
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_agree_with_bytes() {
        for b in 0..=255u8 {
            for pos in 0..16 {
                let mut block = *b"abcdefghijklmnop";
                block[pos] = b;
                assert_eq!(block_is_plain(&block), is_plain(b), "byte {b:#x} at {pos}");
                if !is_plain(b) {
                    assert_eq!(first_offending(&block), pos, "byte {b:#x} at {pos}");
                    block[15] = 0; // a later offender must not move the first one
                    assert_eq!(first_offending(&block), pos, "byte {b:#x} at {pos}, another at 15");
                }
            }
        }
    }

    #[test]
    fn plain_prefix_spans_blocks() {
        for len in [0, 1, 15, 16, 17, 63, 100] {
            let mut data = vec![b'a'; len];
            assert_eq!(plain_prefix_len(&data), len);
            for bad in 0..len {
                data[bad] = 0x1b;
                assert_eq!(plain_prefix_len(&data), bad, "len {len}, escape at {bad}");
                data[bad] = b'a';
            }
        }
    }
}
