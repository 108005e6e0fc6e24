//! The control protocol's encoding (see [`super::proto`] for the protocol): request lines,
//! replies, percent-encoded words. Pure and self-contained (std and `o2nm::text` only), so
//! that the fuzz crate compiles this very file (`fuzz/fuzz_targets/control_proto.rs`).

use std::io::BufRead;

/// The protocol tag and version every line starts with.
pub const TAG: &str = "O2CB/1";
/// Longest request or status line accepted (bytes, end of line included).
pub const MAX_LINE: usize = 64 * 1024;

/// How the daemon answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    Err,
    /// A lock that could not be granted at once (trylock).
    Busy,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Err => "err",
            Status::Busy => "busy",
        }
    }
}

/// One answer: status, an optional word (an error message, a lock mode) and body text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: Status,
    pub word: String,
    pub body: String,
}

impl Reply {
    pub fn ok(body: impl Into<String>) -> Reply {
        Reply {
            status: Status::Ok,
            word: String::new(),
            body: body.into(),
        }
    }

    pub fn err(message: impl Into<String>) -> Reply {
        Reply {
            status: Status::Err,
            word: message.into(),
            body: String::new(),
        }
    }

    /// The status line, body and terminator, ready to write.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = format!("{TAG} {}", self.status.as_str()).into_bytes();
        if !self.word.is_empty() {
            out.push(b' ');
            out.extend_from_slice(encode_word(&self.word).as_bytes());
        }
        out.push(b'\n');
        let body = o2nm::text::encode(&self.body);
        for line in body.split_inclusive(|b| *b == b'\n') {
            if line.first() == Some(&b'.') {
                out.push(b'.');
            }
            out.extend_from_slice(line);
        }
        if !body.is_empty() && body.last() != Some(&b'\n') {
            out.push(b'\n');
        }
        out.extend_from_slice(b".\n");
        out
    }
}

/// Percent-encodes a word: bytes outside a small safe set become `%XX`.
pub fn encode_word(word: &str) -> String {
    let mut out = String::new();
    for b in o2nm::text::encode(word) {
        if b.is_ascii_alphanumeric() || b"._-/:=+,@".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Reverses [`encode_word`].
pub fn decode_word(word: &[u8]) -> Result<String, String> {
    let mut out = Vec::with_capacity(word.len());
    let mut i = 0;
    while let Some(&b) = word.get(i) {
        if b == b'%' {
            let hex = word
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad percent escape at byte {i}"))?;
            out.push(hex);
            i += 3;
        } else if b.is_ascii_graphic() {
            out.push(b);
            i += 1;
        } else {
            return Err(format!("byte 0x{b:02x} at {i} must be percent-encoded"));
        }
    }
    Ok(o2nm::text::decode(&out))
}

/// A request line for `words` (operation first).
pub fn encode_request<S: AsRef<str>>(words: &[S]) -> Vec<u8> {
    let mut line = TAG.to_string();
    for w in words {
        line.push(' ');
        line.push_str(&encode_word(w.as_ref()));
    }
    line.push('\n');
    line.into_bytes()
}

/// The words of a request line (without its end of line), operation first.
pub fn decode_request(line: &[u8]) -> Result<Vec<String>, String> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let mut parts = line.split(|b| *b == b' ');
    match parts.next() {
        Some(tag) if tag == TAG.as_bytes() => {}
        Some(tag) if tag.starts_with(b"O2CB/") => {
            return Err(format!(
                "protocol {} is not spoken here (this daemon speaks {TAG})",
                String::from_utf8_lossy(tag)
            ))
        }
        _ => return Err(format!("a request starts with {TAG}")),
    }
    let words = parts.map(decode_word).collect::<Result<Vec<_>, _>>()?;
    if words.is_empty() {
        return Err("a request names an operation".into());
    }
    Ok(words)
}

/// Reads one reply from `r`.
pub fn read_reply<R: BufRead>(r: &mut R) -> Result<Reply, String> {
    let head = read_line(r)?.ok_or("the daemon closed the connection without answering")?;
    let mut parts = head.splitn(3, |b| *b == b' ');
    if parts.next() != Some(TAG.as_bytes()) {
        return Err(format!(
            "not an o2cb control reply: {}",
            String::from_utf8_lossy(&head)
        ));
    }
    let status = match parts.next() {
        Some(b"ok") => Status::Ok,
        Some(b"err") => Status::Err,
        Some(b"busy") => Status::Busy,
        _ => {
            return Err(format!(
                "bad reply status: {}",
                String::from_utf8_lossy(&head)
            ))
        }
    };
    let word = match parts.next() {
        Some(w) => decode_word(w)?,
        None => String::new(),
    };
    let mut body = Vec::new();
    loop {
        let line = read_line(r)?.ok_or("the reply ended before its final '.' line")?;
        if line == b"." {
            break;
        }
        body.extend_from_slice(line.strip_prefix(b".").unwrap_or(&line));
        body.push(b'\n');
    }
    Ok(Reply {
        status,
        word,
        body: o2nm::text::decode(&body),
    })
}

/// One line without its end of line; `None` at end of stream.
fn read_line<R: BufRead>(r: &mut R) -> Result<Option<Vec<u8>>, String> {
    let mut line = Vec::new();
    let n = std::io::Read::take(&mut *r, MAX_LINE as u64)
        .read_until(b'\n', &mut line)
        .map_err(|e| format!("reading the control socket: {e}"))?;
    if n == 0 {
        return Ok(None);
    }
    if line.pop() != Some(b'\n') {
        return Err("a control line is too long or cut short".into());
    }
    Ok(Some(line))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_request_is_one_line_of_encoded_words() {
        let line = encode_request(&["lock", "my dom", "a%b"]);
        assert_eq!(line, b"O2CB/1 lock my%20dom a%25b\n");
        assert_eq!(
            decode_request(&line).unwrap(),
            vec!["lock", "my dom", "a%b"]
        );
    }

    #[test]
    fn other_versions_and_garbage_get_a_clear_error() {
        assert!(decode_request(b"O2CB/2 status")
            .unwrap_err()
            .contains("O2CB/2 is not spoken"));
        assert!(decode_request(b"GET / HTTP/1.0").is_err());
        assert!(decode_request(b"O2CB/1").is_err());
        assert!(decode_request(b"O2CB/1 st%4").is_err());
        assert!(decode_request(b"O2CB/1 st\tx").is_err());
    }

    #[test]
    fn body_lines_starting_with_a_dot_survive() {
        let r = Reply::ok(".\n..x\nplain\n");
        let bytes = r.encode();
        assert_eq!(bytes, b"O2CB/1 ok\n..\n...x\nplain\n.\n");
        assert_eq!(read_reply(&mut &bytes[..]).unwrap(), r);
    }

    #[test]
    fn a_cut_reply_is_an_error() {
        assert!(read_reply(&mut &b"O2CB/1 ok\nsome body\n"[..]).is_err());
        assert!(read_reply(&mut &b""[..]).is_err());
    }

    fn text() -> impl Strategy<Value = String> {
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(|b| o2nm::text::decode(&b))
    }

    proptest! {
        #[test]
        fn requests_roundtrip(words in proptest::collection::vec(text(), 1..6)) {
            prop_assert_eq!(decode_request(&encode_request(&words)).unwrap(), words);
        }

        #[test]
        fn replies_roundtrip(word in text(), body in proptest::collection::vec(text(), 0..5), st in 0..3u8) {
            let body: String = body.iter().map(|l| format!("{}\n", l.replace('\n', " "))).collect();
            let status = [Status::Ok, Status::Err, Status::Busy][usize::from(st)];
            let r = Reply { status, word, body };
            prop_assert_eq!(read_reply(&mut &r.encode()[..]).unwrap(), r);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_request(&bytes);
            let _ = read_reply(&mut &bytes[..]);
        }
    }
}
