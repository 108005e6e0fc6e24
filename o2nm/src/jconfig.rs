//! The stanza grammar of `cluster.conf` ("JConfig" in ocfs2-tools), below the
//! meaning of any key: reading stanzas and attributes exactly as ocfs2-tools'
//! scanner does, and printing them in exactly the order and layout it prints.
//!
//! Reading (facts from ocfs2-tools `o2cb_ctl/jconfig.c` and GLib's scanner):
//! * A NUL byte ends the text (the scanner takes NUL for the end), except
//!   right after the first character of an identifier, where it is swallowed
//!   into the identifier and cuts it short.
//! * Identifiers are runs of `[A-Za-z0-9_]`; whitespace is space and tab only.
//! * A line starting with an identifier is a stanza header `name:` followed by
//!   nothing but whitespace. A line starting with `#` is a comment; it does not
//!   end the current stanza. A blank (or whitespace-only) line ends the stanza.
//! * A line starting with whitespace then an identifier is an attribute
//!   `key = value`; the value starts at the first non-blank after `=` and runs
//!   to the end of the line. A backslash before the newline continues the
//!   value on the next line (keeping a newline in it); a backslash elsewhere is
//!   kept. A backslash at the very end of the file is dropped.
//! * A later attribute with the same key replaces the earlier one.
//! * Readers strip trailing whitespace from values (`g_strchomp`).
//!
//! Writing: stanza types, and keys within a stanza, come out in the order of a
//! GLib hash table (the tools iterate one), which is fixed for a given
//! sequence of insertions; [`glib_hash_order`] reproduces it.

use std::collections::HashMap;
use std::path::Path;

use crate::error::{Error, Result};

/// One `key = value` line (the last one for its key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawAttr {
    pub key: String,
    pub value: Vec<u8>,
    pub line: usize,
}

/// One stanza as read: its type (`cluster`, `node`, ...), header line and
/// attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawStanza {
    pub kind: String,
    pub line: usize,
    /// In the order first seen.
    pub attrs: Vec<RawAttr>,
    /// Position of each key in `attrs` (a stanza may hold any number of keys).
    index: HashMap<String, usize>,
}

impl RawStanza {
    fn new(kind: String, line: usize) -> Self {
        RawStanza {
            kind,
            line,
            attrs: Vec::new(),
            index: HashMap::new(),
        }
    }

    /// The value of `key` with trailing whitespace removed, as the tools read
    /// it, with the line it came from.
    pub fn get(&self, key: &str) -> Option<(&[u8], usize)> {
        self.index
            .get(key)
            .and_then(|&i| self.attrs.get(i))
            .map(|a| (chomp(&a.value), a.line))
    }

    fn set(&mut self, key: String, value: Vec<u8>, line: usize) {
        match self.index.get(&key).and_then(|&i| self.attrs.get_mut(i)) {
            Some(attr) => {
                attr.value = value;
                attr.line = line;
            }
            None => {
                self.index.insert(key.clone(), self.attrs.len());
                self.attrs.push(RawAttr { key, value, line });
            }
        }
    }
}

/// `g_strchomp`: drop trailing ASCII whitespace.
fn chomp(v: &[u8]) -> &[u8] {
    let end = v
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c))
        .map_or(0, |i| i + 1);
    &v[..end]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok<'a> {
    /// The end of the text, or a NUL byte (the scanner reads NUL as the end).
    Eof,
    /// A run of identifier characters: what it means, and how many bytes it
    /// takes in the text.
    Ident {
        value: &'a [u8],
        len: usize,
    },
    Char(u8),
}

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn show_byte(b: u8) -> String {
    if b.is_ascii_graphic() {
        format!("'{}'", b as char)
    } else {
        format!("byte 0x{b:02x}")
    }
}

struct Scanner<'a> {
    text: &'a [u8],
    pos: usize,
    line: usize,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Tok<'a> {
        match self.text.get(self.pos) {
            None | Some(0) => Tok::Eof,
            Some(&b) if is_ident_byte(b) => {
                // GLib's scanner lets a NUL right after an identifier's first
                // character (and the identifier characters after it) into the
                // identifier, whose C string then stops at the NUL.
                let rest = &self.text[self.pos..];
                let mut len = 1;
                if matches!(rest.get(1), Some(0)) {
                    len = 2;
                }
                while rest.get(len).is_some_and(|&c| is_ident_byte(c)) {
                    len += 1;
                }
                let value_len = rest[..len].iter().position(|&c| c == 0).unwrap_or(len);
                Tok::Ident {
                    value: &rest[..value_len],
                    len,
                }
            }
            Some(&b) => Tok::Char(b),
        }
    }

    fn next(&mut self) -> Tok<'a> {
        let tok = self.peek();
        match tok {
            Tok::Eof => {}
            Tok::Ident { len, .. } => self.pos += len,
            Tok::Char(b) => {
                self.pos += 1;
                if b == b'\n' {
                    self.line += 1;
                }
            }
        }
        tok
    }

    fn skip_line(&mut self) {
        while let Tok::Ident { .. } | Tok::Char(_) = self.peek() {
            if self.next() == Tok::Char(b'\n') {
                break;
            }
        }
    }
}

struct Parser<'a, 'p> {
    sc: Scanner<'a>,
    file: &'p Path,
    stanzas: Vec<RawStanza>,
    /// Index of the stanza that attribute lines belong to, if any.
    current: Option<usize>,
    /// A blank line came since the last header or attribute (or nothing did).
    blank_before: bool,
    /// Departures from the documented layout that the tools accept.
    notes: Vec<(usize, String)>,
}

impl Parser<'_, '_> {
    fn fail<T>(&self, line: usize, what: impl Into<String>) -> Result<T> {
        Err(Error::Syntax {
            file: self.file.to_path_buf(),
            line,
            what: what.into(),
        })
    }

    fn run(&mut self) -> Result<()> {
        loop {
            match self.sc.peek() {
                Tok::Eof => return Ok(()),
                Tok::Ident { .. } => self.stanza_header()?,
                Tok::Char(b) if is_blank(b) => self.blank_start()?,
                Tok::Char(b'#') => self.sc.skip_line(),
                Tok::Char(b'\n') => {
                    self.sc.next();
                    self.current = None;
                    self.blank_before = true;
                }
                Tok::Char(b) => {
                    return self.fail(
                        self.sc.line,
                        format!(
                            "{} cannot start a line: expected a stanza header such as \
                             'node:', an indented 'key = value', a '#' comment or a blank line",
                            show_byte(b)
                        ),
                    )
                }
            }
        }
    }

    fn stanza_header(&mut self) -> Result<()> {
        let line = self.sc.line;
        let Tok::Ident { value: name, .. } = self.sc.next() else {
            return self.fail(line, "expected a stanza name");
        };
        let name = String::from_utf8_lossy(name).into_owned();
        self.current = None;
        match self.sc.next() {
            Tok::Char(b':') => {}
            Tok::Eof | Tok::Char(b'\n') => {
                return self.fail(line, format!("stanza header '{name}' is missing its ':'"))
            }
            Tok::Char(b) => {
                return self.fail(
                    line,
                    format!(
                        "stanza header '{name}' must be followed by ':', not {}",
                        show_byte(b)
                    ),
                )
            }
            Tok::Ident { .. } => return self.fail(line, "expected ':' after the stanza name"),
        }
        loop {
            match self.sc.next() {
                Tok::Eof | Tok::Char(b'\n') => break,
                Tok::Char(b) if is_blank(b) => {}
                _ => {
                    return self.fail(
                        line,
                        format!("unexpected text after '{name}:' (a stanza header stands alone on its line)"),
                    )
                }
            }
        }
        if !self.blank_before {
            self.notes.push((
                line,
                format!("no blank line before '{name}:' (stanzas must be separated by one)"),
            ));
        }
        self.blank_before = false;
        self.stanzas.push(RawStanza::new(name, line));
        self.current = Some(self.stanzas.len() - 1);
        Ok(())
    }

    fn blank_start(&mut self) -> Result<()> {
        let start = self.sc.pos;
        loop {
            match self.sc.peek() {
                Tok::Eof => return Ok(()),
                Tok::Ident { .. } => {
                    if self.sc.text.get(start..self.sc.pos) != Some(&b"\t"[..]) {
                        self.notes.push((
                            self.sc.line,
                            "attribute not indented by exactly one tab".to_string(),
                        ));
                    }
                    self.blank_before = false;
                    return self.attribute();
                }
                Tok::Char(b'\n') => {
                    self.sc.next();
                    self.current = None;
                    self.blank_before = true;
                    return Ok(());
                }
                Tok::Char(b) if is_blank(b) => {
                    self.sc.next();
                }
                Tok::Char(b) => {
                    let what = if b == b'#' {
                        "a '#' comment must start at the beginning of the line, not after whitespace"
                            .to_string()
                    } else {
                        format!("{} cannot start an attribute name", show_byte(b))
                    };
                    return self.fail(self.sc.line, what);
                }
            }
        }
    }

    fn attribute(&mut self) -> Result<()> {
        #[derive(PartialEq)]
        enum State {
            Key,
            Equal,
            Value,
        }
        let line = self.sc.line;
        let Tok::Ident { value: key, .. } = self.sc.next() else {
            return self.fail(line, "expected an attribute name");
        };
        let key = String::from_utf8_lossy(key).into_owned();
        let Some(current) = self.current else {
            return self.fail(
                line,
                format!(
                    "attribute '{key}' is not inside a stanza (a blank line ends a stanza; \
                     attributes must follow a header such as 'node:')"
                ),
            );
        };
        let missing_eq = |p: &Self| p.fail(line, format!("attribute '{key}' is missing '='"));
        let mut state = State::Key;
        let mut value = Vec::new();
        let mut continued = false;
        loop {
            match self.sc.next() {
                Tok::Eof => {
                    if state == State::Key {
                        return missing_eq(self);
                    }
                    break;
                }
                Tok::Char(b'\n') => {
                    if state == State::Key {
                        return missing_eq(self);
                    }
                    if !continued {
                        break;
                    }
                    value.push(b'\n');
                    continued = false;
                }
                Tok::Char(b) if continued => {
                    value.push(b'\\');
                    continued = b == b'\\';
                    if !continued {
                        value.push(b);
                    }
                }
                Tok::Char(b) => match state {
                    State::Key if b == b'=' => state = State::Equal,
                    State::Key if is_blank(b) => {}
                    State::Key => {
                        return self.fail(
                            line,
                            format!(
                                "attribute '{key}' must be followed by '=', not {}",
                                show_byte(b)
                            ),
                        )
                    }
                    State::Equal if is_blank(b) => {}
                    State::Equal | State::Value => {
                        state = State::Value;
                        if b == b'\\' {
                            continued = true;
                        } else {
                            value.push(b);
                        }
                    }
                },
                Tok::Ident { value: word, .. } => {
                    if state == State::Key {
                        return self.fail(
                            line,
                            format!("attribute '{key}' must be followed by '=' (names cannot contain spaces)"),
                        );
                    }
                    state = State::Value;
                    if continued {
                        value.push(b'\\');
                        continued = false;
                    }
                    value.extend_from_slice(word);
                }
            }
        }
        if chomp(&value).len() != value.len() {
            self.notes.push((
                line,
                format!("trailing whitespace after the value of '{key}' is ignored"),
            ));
        }
        if let Some(stanza) = self.stanzas.get_mut(current) {
            stanza.set(key, value, line);
        }
        Ok(())
    }
}

/// What [`parse`] found: the stanzas, and notes (line, text) on departures
/// from the documented layout (indentation, blank lines between stanzas,
/// trailing whitespace) that the tools accept.
pub(crate) type Parsed = (Vec<RawStanza>, Vec<(usize, String)>);

/// Reads the stanzas of a cluster.conf text. `file` only names the file in
/// errors.
pub(crate) fn parse(text: &[u8], file: &Path) -> Result<Parsed> {
    let mut parser = Parser {
        sc: Scanner {
            text,
            pos: 0,
            line: 1,
        },
        file,
        stanzas: Vec::new(),
        current: None,
        blank_before: true,
        notes: Vec::new(),
    };
    parser.run()?;
    Ok((parser.stanzas, parser.notes))
}

/// GLib's `g_str_hash` (djb2 over signed chars).
fn g_str_hash(key: &str) -> u32 {
    key.bytes().fold(5381u32, |h, b| {
        h.wrapping_mul(33).wrapping_add(b as i8 as u32)
    })
}

/// The order in which a fresh GLib hash table (8 slots, modulus 7, hash
/// multiplied by 11, triangular probing) iterates `keys` inserted in the given
/// order. Good for up to 7 distinct keys, which never makes the table grow;
/// the writer never inserts more than 5.
fn glib_hash_order<'a>(keys: &[&'a str]) -> Vec<&'a str> {
    const SIZE: usize = 8;
    let mut slots: [Option<&'a str>; SIZE] = [None; SIZE];
    for &key in keys.iter().take(SIZE - 1) {
        let mut hash = g_str_hash(key);
        if hash < 2 {
            hash = 2;
        }
        let mut index = (hash.wrapping_mul(11) % 7) as usize;
        let mut step = 0;
        while let Some(existing) = slots[index] {
            if existing == key {
                break;
            }
            step += 1;
            index = (index + step) & (SIZE - 1);
        }
        slots[index] = Some(key);
    }
    slots.iter().flatten().copied().collect()
}

/// A stanza to print: its type and its attributes in the order the tools set
/// them.
pub(crate) struct OutStanza {
    pub kind: &'static str,
    pub attrs: Vec<(&'static str, String)>,
}

/// Prints stanzas as ocfs2-tools does (`j_config_dump_memory`).
pub(crate) fn write(stanzas: &[OutStanza]) -> Vec<u8> {
    let mut kinds: Vec<&str> = Vec::new();
    for s in stanzas {
        if !kinds.contains(&s.kind) {
            kinds.push(s.kind);
        }
    }
    let mut out = String::new();
    for kind in glib_hash_order(&kinds) {
        for stanza in stanzas.iter().filter(|s| s.kind == kind) {
            out.push_str(kind);
            out.push_str(":\n");
            let keys: Vec<&str> = stanza.attrs.iter().map(|(k, _)| *k).collect();
            for key in glib_hash_order(&keys) {
                let value = stanza
                    .attrs
                    .iter()
                    .rev()
                    .find(|(k, _)| *k == key)
                    .map_or("", |(_, v)| v.as_str());
                if value.is_empty() {
                    out.push_str(&format!("\t{key} =\n"));
                } else {
                    out.push_str(&format!(
                        "\t{key} = {}\n",
                        value.split('\n').collect::<Vec<_>>().join("\\\n")
                    ));
                }
            }
            out.push('\n');
        }
    }
    crate::text::encode(&out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<Vec<RawStanza>> {
        parse(text.as_bytes(), Path::new("t.conf")).map(|(stanzas, _)| stanzas)
    }

    fn line_of(text: &str) -> usize {
        match p(text) {
            Err(Error::Syntax { line, .. }) => line,
            other => panic!("expected a syntax error, got {other:?}"),
        }
    }

    #[test]
    fn glib_order_matches_what_ocfs2_tools_writes() {
        assert_eq!(
            glib_hash_order(&["cluster", "heartbeat", "node"]),
            ["cluster", "heartbeat", "node"]
        );
        assert_eq!(
            glib_hash_order(&["cluster", "node", "heartbeat"]),
            ["cluster", "node", "heartbeat"]
        );
        assert_eq!(
            glib_hash_order(&["name", "heartbeat_mode", "node_count"]),
            ["name", "heartbeat_mode", "node_count"]
        );
        assert_eq!(
            glib_hash_order(&["cluster", "name", "ip_address", "ip_port", "number"]),
            ["cluster", "number", "ip_port", "ip_address", "name"]
        );
    }

    #[test]
    fn values_keep_inner_text_and_lose_trailing_blanks() {
        let s = p("node:\n\tname =   a b#c  \n\tip_port=1\n#x\n\tname = z\t\n").unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].get("name").map(|v| v.0), Some(&b"z"[..]));
        assert_eq!(s[0].get("ip_port").map(|v| v.0), Some(&b"1"[..]));
    }

    #[test]
    fn continuation_lines_keep_a_newline() {
        let s = p("c:\n\tk = a\\\n  b\\x\n").unwrap();
        assert_eq!(s[0].get("k").map(|v| v.0), Some(&b"a\n  b\\x"[..]));
    }

    #[test]
    fn nul_ends_the_text_except_after_an_identifier_start() {
        let s = parse(b"c:\n\tk = v\n\0garbage\n", Path::new("t"))
            .unwrap()
            .0;
        assert_eq!(s.len(), 1);
        let s = parse(b"c:\n\tk = v\0w\n\tj = 1\n", Path::new("t"))
            .unwrap()
            .0;
        assert_eq!(s[0].get("k").map(|v| v.0), Some(&b"v"[..]));
        assert_eq!(s[0].get("j").map(|v| v.0), Some(&b"1"[..]));
        let s = parse(b"c:\n\tk = \0v\n\tj = 1\n", Path::new("t"))
            .unwrap()
            .0;
        assert_eq!(s[0].get("k").map(|v| v.0), Some(&b""[..]));
        assert_eq!(s[0].get("j"), None);
        assert!(parse(b"cl\0uster:\n", Path::new("t")).is_err());
    }

    #[test]
    fn errors_carry_the_line() {
        assert_eq!(line_of("c:\n\tk = v\n\n\tk2 = v\n"), 4);
        assert_eq!(line_of("c:\n\t# comment\n"), 2);
        assert_eq!(line_of("c: x\n"), 1);
        assert_eq!(line_of("c:\n\tk v\n"), 2);
        assert_eq!(line_of("c:\n\tk\n"), 2);
        assert_eq!(line_of("\n\nc\n"), 3);
        assert_eq!(line_of("-c:\n"), 1);
    }

    #[test]
    fn a_stanza_may_hold_very_many_keys() {
        // Lookups by key must not scan: this file took a minute when they did.
        let mut text = String::from("node:\n");
        for i in 0..50_000 {
            text.push_str(&format!("\tk{i} = v{i}\n\tk0 = again\n"));
        }
        let s = p(&text).unwrap();
        assert_eq!(s[0].attrs.len(), 50_000);
        assert_eq!(s[0].get("k49999").map(|v| v.0), Some(&b"v49999"[..]));
        assert_eq!(s[0].get("k0").map(|v| v.0), Some(&b"again"[..]));
    }

    #[test]
    fn layout_notes() {
        let (_, notes) = parse(
            b"a:\n\tk = v \n  j = 1\nb:\n\tk = v\n\nc:\n",
            Path::new("t"),
        )
        .unwrap();
        let lines: Vec<usize> = notes.iter().map(|n| n.0).collect();
        assert_eq!(lines, [2, 3, 4], "{notes:?}");
    }

    #[test]
    fn writer_layout() {
        let out = write(&[OutStanza {
            kind: "heartbeat",
            attrs: vec![("cluster", "a".into()), ("region", String::new())],
        }]);
        assert_eq!(out, b"heartbeat:\n\tcluster = a\n\tregion =\n\n");
        let out = write(&[OutStanza {
            kind: "cluster",
            attrs: vec![("name", "a\nb".into())],
        }]);
        assert_eq!(out, b"cluster:\n\tname = a\\\nb\n\n");
    }
}
