//! Group ids and topic names as single filer path segments: a reversible percent-encoding, and
//! the second encoding the filer's HTTP URLs need. Pure functions; no I/O.
//!
//! A name is encoded byte by byte: `A-Z a-z 0-9 _ -` and `.` (except as the first byte) stay as
//! they are, every other byte becomes `%XX` (upper-case hex). So `/`, `%`, spaces, control bytes
//! and non-ASCII never reach the filer raw, and no segment is `.`, `..` or a hidden `.name`.
//! The empty name is encoded as a lone `%`, which no other name can produce.
//!
//! The filer decodes a URL path once and stores the decoded name, so a URL carries the encoded
//! name with its `%` written as `%25` ([`url_segment`]); listings return the encoded name.

use std::fmt::Write as _;

/// The filer refuses names longer than this (4.48 answers 414 above 255 bytes).
pub const MAX_SEGMENT_BYTES: usize = 255;

fn keep(b: u8, first: bool) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || (b == b'.' && !first)
}

/// Encodes a group id or topic as one path segment (see the module docs).
pub fn encode_name(name: &str) -> String {
    if name.is_empty() {
        return "%".to_string();
    }
    let mut out = String::with_capacity(name.len());
    for (i, &b) in name.as_bytes().iter().enumerate() {
        if keep(b, i == 0) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Decodes a segment made by [`encode_name`]. `None` when it is not one (a stray file in the
/// directory, a bad escape, bytes that are not UTF-8, or a non-canonical form such as `%61` for
/// `a`, so that one name has exactly one segment).
pub fn decode_name(segment: &str) -> Option<String> {
    if segment == "%" {
        return Some(String::new());
    }
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hi = hex(*bytes.get(i + 1)?)?;
            let lo = hex(*bytes.get(i + 2)?)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else if keep(b, i == 0) {
            out.push(b);
            i += 1;
        } else {
            return None;
        }
    }
    let name = String::from_utf8(out).ok()?;
    (encode_name(&name) == segment).then_some(name)
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

/// An encoded segment as it must appear in a URL path (its `%` as `%25`).
pub fn url_segment(encoded: &str) -> String {
    encoded.replace('%', "%25")
}

/// Percent-encodes arbitrary text for a URL path (keeping `/`) or, with `keep_slash` false, for
/// a query value. Used for names the gateway stores raw, and for `lastFileName`.
pub fn url_encode(raw: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(raw.len());
    for &b in raw.as_bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'_' | b'-' | b'.' | b'~')
            || (keep_slash && b == b'/')
        {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(name: &str) {
        let enc = encode_name(name);
        assert_eq!(
            decode_name(&enc).as_deref(),
            Some(name),
            "{name:?} encoded as {enc:?}"
        );
        assert!(!enc.is_empty() && !enc.contains('/') && enc != "." && enc != "..");
        assert!(!enc.starts_with('.'), "{enc:?} would be a hidden name");
        assert!(enc
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"%_-.".contains(&b)));
    }

    #[test]
    fn names_round_trip() {
        for name in [
            "",
            "g",
            "my-group_1",
            "topic.with.dots",
            ".",
            "..",
            ".hidden",
            "a/b",
            "../../etc",
            "%",
            "%41",
            "%%",
            "a b",
            "ü∑ 😀",
            "\0\u{1}\n\t",
            "~tilde",
            "a.",
            "CAPS",
            "x%2Fy",
        ] {
            round_trip(name);
        }
    }

    #[test]
    fn every_single_byte_char_round_trips() {
        for c in 0u32..0x800 {
            if let Some(ch) = char::from_u32(c) {
                round_trip(&ch.to_string());
                round_trip(&format!("a{ch}b"));
            }
        }
    }

    #[test]
    fn encoding_is_injective_on_random_names() {
        let mut seen = std::collections::HashMap::new();
        let mut x: u64 = 0x1234_5678_9abc_def0;
        for _ in 0..20_000 {
            let mut s = String::new();
            for _ in 0..(x % 6) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let pool = ['a', '.', '%', '/', '2', 'F', 'ü', ' ', '5'];
                s.push(pool[(x % pool.len() as u64) as usize]);
            }
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let enc = encode_name(&s);
            if let Some(prev) = seen.insert(enc.clone(), s.clone()) {
                assert_eq!(prev, s, "two names encode to {enc:?}");
            }
            round_trip(&s);
        }
    }

    #[test]
    fn decode_rejects_what_encode_never_makes() {
        for bad in [
            "%4", "%G0", "a/b", ".x", "a b", "%C3", "%%", "é", "%61", "%2e", "",
        ] {
            assert_eq!(decode_name(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn url_forms() {
        assert_eq!(url_segment("a%2Fb"), "a%252Fb");
        assert_eq!(url_encode("g/x %y", true), "g/x%20%25y");
        assert_eq!(url_encode("a%b/c", false), "a%25b%2Fc");
    }
}
