//! Payload masking (RFC 6455 5.3): byte `i` is XORed with `key[i % 4]`.
//! Masking and unmasking are the same operation.
//!
//! The fast version works on 8-byte words. It stays in safe code: reading a
//! chunk with `from_ne_bytes` compiles to one unaligned load, so memory
//! alignment needs no special casing and LLVM is free to vectorize the loop.
//! The plain byte loop stays beside it as the reference the test compares
//! against.

/// XORs `buf` with the masking key, in place, word at a time.
pub fn apply_mask(buf: &mut [u8], key: [u8; 4]) {
    // 8 is a multiple of 4, so every word starts at key phase 0.
    let word_key = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let mut words = buf.chunks_exact_mut(8);
    for word in &mut words {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(word);
        word.copy_from_slice(&(u64::from_ne_bytes(bytes) ^ word_key).to_ne_bytes());
    }
    apply_mask_plain(words.into_remainder(), key);
}

/// XORs `buf` with the masking key one byte at a time: the reference.
pub fn apply_mask_plain(buf: &mut [u8], key: [u8; 4]) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b ^= key[i & 3];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_mask_matches_plain_at_every_length_and_alignment() {
        let key = [0x6d, 0xb6, 0xb2, 0x80];
        let source: Vec<u8> = (0..100u8).map(|i| i.wrapping_mul(37) ^ 0x5a).collect();
        for align in 0..8 {
            for len in 0..=80 {
                let mut fast = source.clone();
                let mut plain = source.clone();
                apply_mask(&mut fast[align..align + len], key);
                apply_mask_plain(&mut plain[align..align + len], key);
                assert_eq!(fast, plain, "align {align} len {len}");
                // Masking twice is the identity.
                apply_mask(&mut fast[align..align + len], key);
                assert_eq!(fast, source, "align {align} len {len}");
            }
        }
    }

    #[test]
    fn rfc_example_masks_hello() {
        // RFC 6455 5.7: "A single-frame masked text message".
        let mut payload = *b"Hello";
        apply_mask(&mut payload, [0x37, 0xfa, 0x21, 0x3d]);
        assert_eq!(payload, [0x7f, 0x9f, 0x4d, 0x51, 0x58]);
    }
}
