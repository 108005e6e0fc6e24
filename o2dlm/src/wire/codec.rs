//! Shared pieces of the payload codecs: the decode error, a bounds-checked big-endian reader
//! that names the message and field of every failure, and the name-field writers.

use std::fmt;

use bytes::BufMut;

use super::{DomainName, LockMode, LockName, Lvb, LOCK_NAME_MAX, LVB_LEN};

/// A payload that cannot be decoded: which message, which field, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}: field {field}: {problem}")]
pub struct DecodeError {
    /// The kernel name of the message (e.g. `DLM_CREATE_LOCK_MSG`).
    pub message: &'static str,
    /// The kernel name of the field (e.g. `namelen`).
    pub field: &'static str,
    pub problem: Problem,
}

/// What is wrong with a field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The payload ends before the field does.
    Truncated { need: usize, have: usize },
    /// A name length beyond the field's limit (lock handlers answer `DLM_IVBUFLEN`).
    NameTooLong { len: usize, max: usize },
    /// A zero name length where a name is required.
    EmptyName,
    /// A domain name containing a NUL byte.
    NulInName { offset: usize },
    /// A mode byte that is not NL, PR, EX (or IV where allowed).
    BadMode(i8),
    /// A value outside the field's defined set.
    BadValue(u64),
    /// A count beyond the field's limit.
    TooMany { count: usize, max: usize },
    /// An o2net message type that is not a DLM one.
    UnknownType(u16),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Truncated { need, have } => {
                write!(f, "payload too short: need {need} bytes, have {have}")
            }
            Problem::NameTooLong { len, max } => {
                write!(f, "name length {len} exceeds the maximum {max}")
            }
            Problem::EmptyName => f.write_str("name length is 0"),
            Problem::NulInName { offset } => write!(f, "NUL byte in name at offset {offset}"),
            Problem::BadMode(m) => write!(f, "invalid lock mode {m}"),
            Problem::BadValue(v) => write!(f, "invalid value {v:#x}"),
            Problem::TooMany { count, max } => write!(f, "count {count} exceeds the maximum {max}"),
            Problem::UnknownType(t) => write!(f, "message type {t} is not a DLM message"),
        }
    }
}

/// A cursor over a payload that reports failures against the message being decoded.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    message: &'static str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(message: &'static str, buf: &'a [u8]) -> Reader<'a> {
        Reader {
            buf,
            pos: 0,
            message,
        }
    }

    pub(crate) fn error(&self, field: &'static str, problem: Problem) -> DecodeError {
        DecodeError {
            message: self.message,
            field,
            problem,
        }
    }

    /// Fails unless the payload holds at least `len` bytes in total.
    pub(crate) fn require(&self, field: &'static str, len: usize) -> Result<(), DecodeError> {
        if self.buf.len() < len {
            return Err(self.error(
                field,
                Problem::Truncated {
                    need: len,
                    have: self.buf.len(),
                },
            ));
        }
        Ok(())
    }

    pub(crate) fn bytes(&mut self, field: &'static str, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos + n;
        self.require(field, end)?;
        let out = self.buf.get(self.pos..end).ok_or_else(|| {
            self.error(
                field,
                Problem::Truncated {
                    need: end,
                    have: self.buf.len(),
                },
            )
        })?;
        self.pos = end;
        Ok(out)
    }

    pub(crate) fn array<const N: usize>(
        &mut self,
        field: &'static str,
    ) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(field, N)?);
        Ok(out)
    }

    pub(crate) fn skip(&mut self, field: &'static str, n: usize) -> Result<(), DecodeError> {
        self.bytes(field, n).map(|_| ())
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(field)?[0])
    }

    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }

    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    pub(crate) fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }

    /// A mode byte that must name a mode (NL, PR or EX).
    pub(crate) fn mode(&mut self, field: &'static str) -> Result<LockMode, DecodeError> {
        let v = self.u8(field)? as i8;
        match LockMode::from_wire(v) {
            Ok(Some(m)) => Ok(m),
            Ok(None) | Err(_) => Err(self.error(field, Problem::BadMode(v))),
        }
    }

    /// A mode byte that may be `LKM_IVMODE`.
    pub(crate) fn opt_mode(
        &mut self,
        field: &'static str,
    ) -> Result<Option<LockMode>, DecodeError> {
        let v = self.u8(field)? as i8;
        LockMode::from_wire(v).map_err(|bad| self.error(field, Problem::BadMode(bad)))
    }

    pub(crate) fn lvb(&mut self, field: &'static str) -> Result<Lvb, DecodeError> {
        self.array::<LVB_LEN>(field)
    }

    /// The LVB that follows a lock message's fixed part when its flags announce one.
    pub(crate) fn opt_lvb(
        &mut self,
        field: &'static str,
        present: bool,
    ) -> Result<Option<Lvb>, DecodeError> {
        present.then(|| self.lvb(field)).transpose()
    }

    /// `count`, read from `field`, unless it exceeds `max` (the slots the message has).
    pub(crate) fn at_most(
        &self,
        field: &'static str,
        count: usize,
        max: usize,
    ) -> Result<usize, DecodeError> {
        if count > max {
            return Err(self.error(field, Problem::TooMany { count, max }));
        }
        Ok(count)
    }

    /// A lock name in a `field_len`-byte field whose length was read earlier.
    pub(crate) fn lock_name(
        &mut self,
        len_field: &'static str,
        len: u8,
        field: &'static str,
        field_len: usize,
    ) -> Result<LockName, DecodeError> {
        let raw = self.bytes(field, field_len)?;
        let len = usize::from(len);
        if len == 0 {
            return Err(self.error(len_field, Problem::EmptyName));
        }
        if len > LOCK_NAME_MAX {
            return Err(self.error(
                len_field,
                Problem::NameTooLong {
                    len,
                    max: LOCK_NAME_MAX,
                },
            ));
        }
        let name = raw.get(..len).ok_or_else(|| {
            self.error(
                len_field,
                Problem::NameTooLong {
                    len,
                    max: field_len,
                },
            )
        })?;
        LockName::new(name).map_err(|_| self.error(len_field, Problem::EmptyName))
    }

    /// A domain name in a 64-byte field whose length was read earlier.
    pub(crate) fn domain_name(
        &mut self,
        len_field: &'static str,
        len: u8,
        field: &'static str,
    ) -> Result<DomainName, DecodeError> {
        let raw = self.bytes(field, super::NAME_FIELD_LEN)?;
        let len = usize::from(len);
        if len == 0 {
            return Err(self.error(len_field, Problem::EmptyName));
        }
        let name = raw
            .get(..len)
            .filter(|_| len <= super::DOMAIN_NAME_MAX)
            .ok_or_else(|| {
                self.error(
                    len_field,
                    Problem::NameTooLong {
                        len,
                        max: super::DOMAIN_NAME_MAX,
                    },
                )
            })?;
        DomainName::new(name).map_err(|e| match e {
            super::NameError::Nul { offset } => self.error(field, Problem::NulInName { offset }),
            _ => self.error(len_field, Problem::EmptyName),
        })
    }
}

/// Writes the LVB of a lock message when it carries one.
pub(crate) fn put_opt_lvb<B: BufMut>(buf: &mut B, lvb: &Option<Lvb>) {
    if let Some(lvb) = lvb {
        buf.put_slice(lvb);
    }
}

/// Writes `name` zero-padded into a `field_len`-byte field.
pub(crate) fn put_name<B: BufMut>(buf: &mut B, name: &[u8], field_len: usize) {
    buf.put_slice(name);
    buf.put_bytes(0, field_len.saturating_sub(name.len()));
}
