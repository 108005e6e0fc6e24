//! C number parsing as ocfs2-tools does it: `strtol`/`strtoul` followed by
//! the tools' "nothing left over" check. Shared by the cluster.conf reader
//! (node numbers, ports, node_count: `strtoul(s, &end, 10)`) and the `o2cb`
//! compatibility commands (`--number`, `--port`: `strtol(s, &end, 0)`), so
//! that both read odd numbers ("+7", " 7", "-2", "0x10", "99999999999")
//! exactly as the C library would.

/// What C's `strtol` family saw in a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Scan {
    negative: bool,
    /// The digits' value, saturated just above `u64::MAX` (enough to tell
    /// overflow for both `long` and `unsigned long`).
    magnitude: u128,
    /// Whether any digit was converted.
    converted: bool,
    /// Whether the whole string was consumed.
    whole: bool,
}

/// C `isspace` in the C locale.
pub fn c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

/// `base` is 10 or 0 (0: `0x` prefix for hex, leading `0` for octal).
fn scan(s: &[u8], base: u32) -> Scan {
    let mut i = s.iter().position(|&b| !c_space(b)).unwrap_or(s.len());
    let negative = match s.get(i) {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let (radix, start) = if base == 0 {
        // "0x" counts as a prefix only when a hex digit follows; otherwise
        // the "0" is an octal number and the "x" is left over.
        let hex_digit_follows = s.get(i + 2).is_some_and(|c| c.is_ascii_hexdigit());
        match (s.get(i), s.get(i + 1)) {
            (Some(b'0'), Some(b'x' | b'X')) if hex_digit_follows => (16, i + 2),
            (Some(b'0'), _) => (8, i),
            _ => (10, i),
        }
    } else {
        (base, i)
    };
    let rest = s.get(start..).unwrap_or_default();
    let digits = rest
        .iter()
        .take_while(|c| (**c as char).is_digit(radix))
        .count();
    let magnitude = rest.iter().take(digits).fold(0u128, |acc, c| {
        let d = (*c as char).to_digit(radix).map_or(0, u128::from);
        (acc * u128::from(radix) + d).min(u128::from(u64::MAX) + 1)
    });
    Scan {
        negative,
        magnitude,
        converted: digits > 0,
        // With nothing converted, the end pointer is the start of the string.
        whole: if digits > 0 {
            start + digits == s.len()
        } else {
            s.is_empty()
        },
    }
}

/// C `strtoul(s, &end, 10)` followed by the tools' "whole string" check:
/// `Ok(Some(v))` when all of `s` is a number (leading whitespace and a sign
/// allowed, a minus wrapping around), `Ok(None)` on overflow (ULONG_MAX),
/// `Err(())` when text is left over or nothing was converted.
#[allow(clippy::result_unit_err)]
pub fn strtoul10_whole(s: &[u8]) -> Result<Option<u64>, ()> {
    let scan = scan(s, 10);
    if !scan.converted || !scan.whole {
        return Err(());
    }
    let Ok(v) = u64::try_from(scan.magnitude) else {
        return Ok(None);
    };
    let v = if scan.negative { v.wrapping_neg() } else { v };
    // ULONG_MAX is what strtoul returns on overflow; the tools treat it so.
    Ok(Some(v).filter(|v| *v != u64::MAX))
}

/// C `strtol(s, &end, 0)` followed by the tools' `if (*end)` check and the
/// assignment to an `int`: `None` when text is left over. An empty string
/// reads as 0, as it does in C.
pub fn strtol0_int(s: &str) -> Option<i32> {
    let scan = scan(s.as_bytes(), 0);
    if !scan.whole {
        return None;
    }
    let magnitude = i128::try_from(scan.magnitude).unwrap_or(i128::MAX);
    let value = if scan.negative { -magnitude } else { magnitude };
    let long = value.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64;
    // C's conversion of a long to an int keeps the low 32 bits.
    Some(long as i32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn strtoul_rules() {
        assert_eq!(strtoul10_whole(b"42"), Ok(Some(42)));
        assert_eq!(strtoul10_whole(b"+7"), Ok(Some(7)));
        assert_eq!(strtoul10_whole(b"\n 7"), Ok(Some(7)));
        assert_eq!(strtoul10_whole(b"-0"), Ok(Some(0)));
        assert_eq!(strtoul10_whole(b"-1"), Ok(None));
        assert_eq!(strtoul10_whole(b"-2"), Ok(Some(u64::MAX - 1)));
        assert_eq!(strtoul10_whole(b"99999999999999999999999"), Ok(None));
        assert_eq!(strtoul10_whole(b"18446744073709551615"), Ok(None));
        assert_eq!(
            strtoul10_whole(b"18446744073709551614"),
            Ok(Some(u64::MAX - 1))
        );
        assert_eq!(strtoul10_whole(b"0x10"), Err(()));
        assert_eq!(strtoul10_whole(b"010"), Ok(Some(10)));
        assert_eq!(strtoul10_whole(b""), Err(()));
        assert_eq!(strtoul10_whole(b"  "), Err(()));
        assert_eq!(strtoul10_whole(b"5 "), Err(()));
        assert_eq!(strtoul10_whole(b"-"), Err(()));
    }

    #[test]
    fn strtol_like_glibc() {
        assert_eq!(strtol0_int("0x10"), Some(16));
        assert_eq!(strtol0_int("0X1f"), Some(31));
        assert_eq!(strtol0_int("010"), Some(8));
        assert_eq!(strtol0_int("-5"), Some(-5));
        assert_eq!(strtol0_int(" 7"), Some(7));
        assert_eq!(strtol0_int(""), Some(0));
        assert_eq!(strtol0_int(" "), None);
        assert_eq!(strtol0_int("x"), None);
        assert_eq!(strtol0_int("0x"), None);
        assert_eq!(strtol0_int("08"), None);
        assert_eq!(strtol0_int("1x"), None);
        assert_eq!(strtol0_int("99999999999"), Some(99999999999i64 as i32));
        assert_eq!(strtol0_int("4294967295"), Some(-1));
        assert_eq!(
            strtol0_int("99999999999999999999999"),
            Some(i64::MAX as i32)
        );
        assert_eq!(
            strtol0_int("-99999999999999999999999"),
            Some(i64::MIN as i32)
        );
    }

    proptest! {
        #[test]
        fn decimal_numbers_read_back(n in any::<u32>()) {
            prop_assert_eq!(strtoul10_whole(n.to_string().as_bytes()), Ok(Some(u64::from(n))));
            prop_assert_eq!(strtol0_int(&format!("{:#x}", n)), Some(n as i32));
        }

        #[test]
        fn arbitrary_text_never_panics(s in ".{0,40}") {
            let _ = strtoul10_whole(s.as_bytes());
            let _ = strtol0_int(&s);
        }
    }
}
