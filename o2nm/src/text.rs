//! Byte-exact text. ocfs2-tools treats names as C strings of any bytes; we
//! hold them as Rust strings. Bytes that are not UTF-8 become the private-use
//! characters U+10FF00 + byte, and so do the bytes of any character already
//! in that range, so that [`encode`] gives back exactly the bytes [`decode`]
//! was given: a Latin-1 node name is read, listed and rewritten unchanged.

/// First of the 256 private-use characters that stand for single bytes.
const BASE: u32 = 0x10FF00;

fn byte_char(b: u8) -> char {
    // BASE + 255 is U+10FFFF, the last valid character.
    char::from_u32(BASE + u32::from(b)).unwrap_or(char::REPLACEMENT_CHARACTER)
}

/// Text for `bytes`, losing nothing.
pub fn decode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if u32::from(c) >= BASE {
                let mut buf = [0u8; 4];
                out.extend(c.encode_utf8(&mut buf).bytes().map(byte_char));
            } else {
                out.push(c);
            }
        }
        out.extend(chunk.invalid().iter().copied().map(byte_char));
    }
    out
}

/// The bytes `text` stands for (the inverse of [`decode`]).
pub fn encode(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        match u32::from(c)
            .checked_sub(BASE)
            .and_then(|b| u8::try_from(b).ok())
        {
            Some(b) => out.push(b),
            None => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn utf8_is_unchanged_and_other_bytes_survive() {
        assert_eq!(decode("café".as_bytes()), "café");
        let latin1 = b"caf\xe9 \xff\xfe";
        assert_eq!(encode(&decode(latin1)), latin1);
        let escaped_range = "\u{10FF41}x".as_bytes();
        assert_eq!(encode(&decode(escaped_range)), escaped_range);
    }

    proptest! {
        #[test]
        fn any_bytes_round_trip(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            prop_assert_eq!(encode(&decode(&bytes)), bytes);
        }
    }
}
