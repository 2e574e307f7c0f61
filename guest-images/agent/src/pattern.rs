//! The seeded data pattern written into memfds and verified after kexec. Position-dependent, so a
//! page landing at the wrong offset is caught, not just a page with wrong bytes.

/// The 8 bytes at 8-byte-aligned `offset` for `seed` (splitmix64 of seed ^ block index).
fn block(seed: u64, index: u64) -> [u8; 8] {
    let mut z = seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)).to_le_bytes()
}

/// Fills `buf`, which holds the file bytes starting at `offset`.
pub fn fill(seed: u64, offset: u64, buf: &mut [u8]) {
    for (i, b) in buf.iter_mut().enumerate() {
        let pos = offset + i as u64;
        *b = block(seed, pos / 8)[(pos % 8) as usize];
    }
}

/// The first offset in `buf` (holding bytes from `offset`) that differs from the pattern.
pub fn first_mismatch(seed: u64, offset: u64, buf: &[u8]) -> Option<u64> {
    let mut expect = vec![0u8; buf.len()];
    fill(seed, offset, &mut expect);
    buf.iter()
        .zip(&expect)
        .position(|(a, b)| a != b)
        .map(|i| offset + i as u64)
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
}
