//! The seeded data pattern written into memfds and verified after kexec. Position-dependent, so a
//! page landing at the wrong offset is caught, not just a page with wrong bytes.

/// The 8 bytes at 8-byte-aligned `offset` for `seed` (splitmix64 of seed ^ block index).
fn block(seed: u64, index: u64) -> [u8; 8] {
    let mut z = seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)).to_le_bytes()
}

/// Calls `f(index_in_buf, expected_bytes)` for each run of `buf.len()` bytes starting at file
/// `offset`, one 8-byte block (or the part of it inside the range) at a time: one splitmix per
/// block, not per byte (under TCG a 1 MiB fill went from ~40 ms to a fraction of that).
fn for_each_run(seed: u64, offset: u64, len: usize, mut f: impl FnMut(usize, &[u8]) -> bool) {
    let mut i = 0usize;
    while i < len {
        let pos = offset + i as u64;
        let block = block(seed, pos / 8);
        let start = (pos % 8) as usize;
        let n = (8 - start).min(len - i);
        if !f(i, &block[start..start + n]) {
            return;
        }
        i += n;
    }
}

/// Fills `buf`, which holds the file bytes starting at `offset`.
pub fn fill(seed: u64, offset: u64, buf: &mut [u8]) {
    for_each_run(seed, offset, buf.len(), |i, expect| {
        buf[i..i + expect.len()].copy_from_slice(expect);
        true
    });
}

/// The first offset in `buf` (holding bytes from `offset`) that differs from the pattern.
pub fn first_mismatch(seed: u64, offset: u64, buf: &[u8]) -> Option<u64> {
    let mut found = None;
    for_each_run(seed, offset, buf.len(), |i, expect| {
        let got = &buf[i..i + expect.len()];
        if got == expect {
            return true;
        }
        let k = got
            .iter()
            .zip(expect)
            .position(|(a, b)| a != b)
            .unwrap_or(0);
        found = Some(offset + (i + k) as u64);
        false
    });
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn pattern_is_position_dependent_and_split_invariant() {
        let mut whole = vec![0u8; 100];
        fill(42, 3, &mut whole);
        let mut a = vec![0u8; 40];
        let mut b = vec![0u8; 60];
        fill(42, 3, &mut a);
        fill(42, 43, &mut b);
        assert_eq!([a, b].concat(), whole);
        assert_eq!(first_mismatch(42, 3, &whole), None);
        let mut other = vec![0u8; 100];
        fill(43, 3, &mut other);
        assert!(first_mismatch(42, 3, &other).is_some());
    }

    #[test]
    fn mismatch_reports_the_exact_offset() {
        let mut buf = vec![0u8; 64];
        fill(7, 5, &mut buf);
        buf[21] ^= 1;
        assert_eq!(first_mismatch(7, 5, &buf), Some(5 + 21));
    }

    #[test]
    fn matches_the_per_byte_definition() {
        let mut buf = vec![0u8; 37];
        fill(9, 13, &mut buf);
        for (i, b) in buf.iter().enumerate() {
            let pos = 13 + i as u64;
            assert_eq!(*b, block(9, pos / 8)[(pos % 8) as usize]);
        }
    }
}
