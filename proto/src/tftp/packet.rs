//! TFTP packets. `decode` is total: every input gives a packet or a typed error.

use std::fmt;

pub const MAX_FILENAME: usize = 512;
/// Longest transfer mode name read ("netascii" is 8).
pub const MAX_MODE: usize = 64;
pub const MAX_ERROR_TEXT: usize = 512;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TftpError {
    #[error("packet shorter than its opcode needs ({0} bytes)")]
    Truncated(usize),
    #[error("unknown opcode {0}")]
    UnknownOpcode(u16),
    #[error("string field not NUL-terminated")]
    Unterminated,
    #[error("{field} longer than {cap} bytes")]
    TooLong { field: &'static str, cap: usize },
    #[error("transfer mode {0:?} is not octet or netascii")]
    BadMode(String),
    #[error("option {name}={value:?} out of range")]
    BadOption { name: &'static str, value: String },
    #[error("non-ASCII text in {0}")]
    NotAscii(&'static str),
}

/// RFC 1350 / 2347 error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum ErrorCode {
    NotDefined = 0,
    FileNotFound = 1,
    AccessViolation = 2,
    DiskFull = 3,
    IllegalOperation = 4,
    UnknownTransferId = 5,
    FileExists = 6,
    NoSuchUser = 7,
    OptionNegotiation = 8,
}

/// Negotiated options; unknown names are ignored (RFC 2347).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Options {
    pub blksize: Option<u16>,
    pub tsize: Option<u64>,
    pub timeout: Option<u8>,
    pub windowsize: Option<u16>,
}

impl Options {
    pub fn is_empty(&self) -> bool {
        *self == Options::default()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet<'a> {
    Rrq {
        filename: &'a str,
        mode: &'a str,
        options: Options,
    },
    Wrq {
        filename: &'a str,
        mode: &'a str,
        options: Options,
    },
    Data {
        block: u16,
        data: &'a [u8],
    },
    Ack {
        block: u16,
    },
    Error {
        code: u16,
        message: &'a str,
    },
    Oack {
        options: Options,
    },
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}

/// Decodes one datagram.
pub fn decode(buf: &[u8]) -> Result<Packet<'_>, TftpError> {
    if buf.len() < 2 {
        return Err(TftpError::Truncated(buf.len()));
    }
    let opcode = u16::from_be_bytes([buf[0], buf[1]]);
    let body = &buf[2..];
    match opcode {
        1 | 2 => {
            let mut fields = Fields(body);
            let filename = fields.text("filename", MAX_FILENAME)?;
            let mode = fields.text("mode", MAX_MODE)?;
            if !mode.eq_ignore_ascii_case("octet") && !mode.eq_ignore_ascii_case("netascii") {
                return Err(TftpError::BadMode(mode.to_owned()));
            }
            let options = fields.options()?;
            Ok(if opcode == 1 {
                Packet::Rrq {
                    filename,
                    mode,
                    options,
                }
            } else {
                Packet::Wrq {
                    filename,
                    mode,
                    options,
                }
            })
        }
        3 => {
            if body.len() < 2 {
                return Err(TftpError::Truncated(buf.len()));
            }
            if body.len() - 2 > usize::from(super::MAX_BLKSIZE) {
                return Err(TftpError::TooLong {
                    field: "data",
                    cap: usize::from(super::MAX_BLKSIZE),
                });
            }
            Ok(Packet::Data {
                block: u16::from_be_bytes([body[0], body[1]]),
                data: &body[2..],
            })
        }
        4 => {
            if body.len() < 2 {
                return Err(TftpError::Truncated(buf.len()));
            }
            Ok(Packet::Ack {
                block: u16::from_be_bytes([body[0], body[1]]),
            })
        }
        5 => {
            if body.len() < 2 {
                return Err(TftpError::Truncated(buf.len()));
            }
            let code = u16::from_be_bytes([body[0], body[1]]);
            let mut fields = Fields(&body[2..]);
            // Some servers omit the final NUL; accept the rest as the message then.
            let message = match fields.text("error message", MAX_ERROR_TEXT) {
                Ok(m) => m,
                Err(TftpError::Unterminated) => ascii(&body[2..], "error message")?,
                Err(e) => return Err(e),
            };
            Ok(Packet::Error { code, message })
        }
        6 => Ok(Packet::Oack {
            options: Fields(body).options()?,
        }),
        other => Err(TftpError::UnknownOpcode(other)),
    }
}

fn ascii<'a>(bytes: &'a [u8], field: &'static str) -> Result<&'a str, TftpError> {
    if bytes.is_ascii() {
        Ok(std::str::from_utf8(bytes).expect("ASCII is UTF-8"))
    } else {
        Err(TftpError::NotAscii(field))
    }
}

struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn text(&mut self, field: &'static str, cap: usize) -> Result<&'a str, TftpError> {
        let end = self
            .0
            .iter()
            .position(|&b| b == 0)
            .ok_or(TftpError::Unterminated)?;
        if end > cap {
            return Err(TftpError::TooLong { field, cap });
        }
        let text = ascii(&self.0[..end], field)?;
        self.0 = &self.0[end + 1..];
        Ok(text)
    }

    /// Bytes up to the next NUL (or the end), consumed.
    fn raw(&mut self) -> &'a [u8] {
        let end = self.0.iter().position(|&b| b == 0).unwrap_or(self.0.len());
        let field = &self.0[..end];
        self.0 = &self.0[(end + 1).min(self.0.len())..];
        field
    }

    /// Options as tftpd-hpa reads them: any number, any length (the datagram bounds them);
    /// a value that is not a decimal number, or is empty, leaves its option ignored; unknown
    /// names are ignored (RFC 2347). A known option with a value no server could accept is an
    /// option error (ERROR 8). Values above what we or RFC 2348 / 7440 allow are lowered: the
    /// server may answer a smaller value (a client that offers blksize 65536 gets 65464).
    fn options(&mut self) -> Result<Options, TftpError> {
        let mut options = Options::default();
        while !self.0.is_empty() {
            // A final name or value without its NUL (some ROMs) is taken as it is.
            let name = self.raw();
            let value = self.raw();
            let (Ok(name), Ok(value)) = (std::str::from_utf8(name), std::str::from_utf8(value))
            else {
                continue; // not text: not an option we know
            };
            let Some(v) = number(value) else { continue };
            let bad = |name: &'static str| TftpError::BadOption {
                name,
                value: value.chars().take(32).collect(),
            };
            if name.eq_ignore_ascii_case("blksize") {
                if v < u64::from(super::MIN_BLKSIZE) {
                    return Err(bad("blksize"));
                }
                options.blksize = Some(v.min(u64::from(super::MAX_BLKSIZE)) as u16);
            } else if name.eq_ignore_ascii_case("tsize") {
                options.tsize = Some(v);
            } else if name.eq_ignore_ascii_case("timeout") {
                if !(1..=255).contains(&v) {
                    return Err(bad("timeout"));
                }
                options.timeout = Some(v as u8);
            } else if name.eq_ignore_ascii_case("windowsize") {
                if v == 0 {
                    return Err(bad("windowsize"));
                }
                options.windowsize = Some(v.min(u64::from(u16::MAX)) as u16);
            }
        }
        Ok(options)
    }
}

/// A decimal option value; `None` when it is empty, not a number or too large for `u64`
/// (tftpd-hpa ignores such an option).
fn number(value: &str) -> Option<u64> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

fn put_options(out: &mut Vec<u8>, o: &Options) {
    let mut put = |name: &str, value: String| {
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        out.extend_from_slice(value.as_bytes());
        out.push(0);
    };
    if let Some(v) = o.blksize {
        put("blksize", v.to_string());
    }
    if let Some(v) = o.tsize {
        put("tsize", v.to_string());
    }
    if let Some(v) = o.timeout {
        put("timeout", v.to_string());
    }
    if let Some(v) = o.windowsize {
        put("windowsize", v.to_string());
    }
}

/// Encodes a request (RRQ when `read`, else WRQ) in octet mode.
pub fn request(read: bool, filename: &str, options: &Options) -> Vec<u8> {
    request_in_mode(read, filename, "octet", options)
}

/// Encodes a request in `mode` ("octet" or "netascii").
pub fn request_in_mode(read: bool, filename: &str, mode: &str, options: &Options) -> Vec<u8> {
    let mut out = vec![0, if read { 1 } else { 2 }];
    out.extend_from_slice(filename.as_bytes());
    out.push(0);
    out.extend_from_slice(mode.as_bytes());
    out.push(0);
    put_options(&mut out, options);
    out
}

pub fn oack(options: &Options) -> Vec<u8> {
    let mut out = vec![0, 6];
    put_options(&mut out, options);
    out
}

pub fn ack(block: u16) -> [u8; 4] {
    let b = block.to_be_bytes();
    [0, 4, b[0], b[1]]
}

/// DATA header; the caller appends the block's bytes.
pub fn data_header(block: u16) -> [u8; 4] {
    let b = block.to_be_bytes();
    [0, 3, b[0], b[1]]
}

pub fn error(code: ErrorCode, message: &str) -> Vec<u8> {
    let mut out = vec![0, 5];
    out.extend_from_slice(&(code as u16).to_be_bytes());
    let text: String = message
        .chars()
        .filter(char::is_ascii)
        .take(MAX_ERROR_TEXT)
        .collect();
    out.extend_from_slice(text.as_bytes());
    out.push(0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn options() -> impl Strategy<Value = Options> {
        (
            proptest::option::of(8u16..=65464),
            proptest::option::of(any::<u64>()),
            proptest::option::of(1u8..=255),
            proptest::option::of(1u16..=65535),
        )
            .prop_map(|(blksize, tsize, timeout, windowsize)| Options {
                blksize,
                tsize,
                timeout,
                windowsize,
            })
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn requests_round_trip(name in "[a-zA-Z0-9./_-]{1,100}", read in any::<bool>(), o in options()) {
            let bytes = request(read, &name, &o);
            let expected = if read {
                Packet::Rrq { filename: &name, mode: "octet", options: o }
            } else {
                Packet::Wrq { filename: &name, mode: "octet", options: o }
            };
            prop_assert_eq!(decode(&bytes), Ok(expected));
        }

        #[test]
        fn oack_ack_data_error_round_trip(o in options(), block in any::<u16>(), data in proptest::collection::vec(any::<u8>(), 0..1500), msg in "[ -~]{0,100}") {
            let o_bytes = oack(&o);
            prop_assert_eq!(decode(&o_bytes), Ok(Packet::Oack { options: o }));
            let a_bytes = ack(block);
            prop_assert_eq!(decode(&a_bytes), Ok(Packet::Ack { block }));
            let mut d = data_header(block).to_vec();
            d.extend_from_slice(&data);
            prop_assert_eq!(decode(&d), Ok(Packet::Data { block, data: &data }));
            let e_bytes = error(ErrorCode::FileNotFound, &msg);
            prop_assert_eq!(decode(&e_bytes), Ok(Packet::Error { code: 1, message: &msg }));
        }
    }

    #[test]
    fn hostile_requests_are_typed_errors() {
        assert_eq!(decode(&[0]), Err(TftpError::Truncated(1)));
        assert_eq!(decode(&[0, 9, 1]), Err(TftpError::UnknownOpcode(9)));
        assert_eq!(decode(b"\x00\x01file"), Err(TftpError::Unterminated));
        assert_eq!(decode(b"\x00\x01file\0octet"), Err(TftpError::Unterminated));
        assert!(matches!(
            decode(b"\x00\x01f\0mail\0"),
            Err(TftpError::BadMode(_))
        ));
        let mut long = b"\x00\x01".to_vec();
        long.extend(std::iter::repeat_n(b'a', 600));
        long.extend_from_slice(b"\0octet\0");
        assert!(matches!(decode(&long), Err(TftpError::TooLong { .. })));
        assert!(matches!(
            decode(b"\x00\x01f\0octet\0blksize\x007\0"),
            Err(TftpError::BadOption {
                name: "blksize",
                ..
            })
        ));
        let mut big = vec![0, 3, 0, 1];
        big.extend(std::iter::repeat_n(0, 65465));
        assert!(matches!(decode(&big), Err(TftpError::TooLong { .. })));
        // Unknown options are ignored, not errors.
        assert!(matches!(
            decode(b"\x00\x01f\0octet\0multicast\0\0"),
            Ok(Packet::Rrq { .. })
        ));
    }

    fn rrq_options(opts: &[(&str, &str)]) -> Result<Options, TftpError> {
        let mut bytes = b"\x00\x01f.bin\0octet\0".to_vec();
        for (name, value) in opts {
            bytes.extend_from_slice(name.as_bytes());
            bytes.push(0);
            bytes.extend_from_slice(value.as_bytes());
            bytes.push(0);
        }
        match decode(&bytes)? {
            Packet::Rrq { options, .. } => Ok(options),
            other => panic!("{other:?}"),
        }
    }

    /// Options as tftpd-hpa reads them: too-large values are lowered (RFC 2348 lets the
    /// server answer less), unknown options ignored however many or long, unparsable values
    /// ignored, impossible values an option error.
    #[test]
    fn options_are_read_the_way_tftpd_hpa_reads_them() {
        for (offered, answered) in [("65535", 65464), ("65536", 65464), ("99999999999", 65464)] {
            assert_eq!(
                rrq_options(&[("blksize", offered)]).unwrap().blksize,
                Some(answered),
                "blksize {offered}"
            );
        }
        assert_eq!(
            rrq_options(&[("windowsize", "70000")]).unwrap().windowsize,
            Some(65535)
        );
        let long = "v".repeat(1000);
        let mut many: Vec<(String, String)> = (0..100)
            .map(|i| (format!("x-vendor-{i}"), long.clone()))
            .collect();
        many.push(("BLKSIZE".into(), "1428".into()));
        many.push(("tsize".into(), "0".into()));
        let many: Vec<(&str, &str)> = many.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        let o = rrq_options(&many).unwrap();
        assert_eq!((o.blksize, o.tsize), (Some(1428), Some(0)));
        for ignored in ["", "abc", "12x", "-5", "99999999999999999999999"] {
            assert_eq!(
                rrq_options(&[("blksize", ignored)]).unwrap(),
                Options::default(),
                "{ignored:?}"
            );
        }
        for (name, value) in [
            ("blksize", "7"),
            ("timeout", "0"),
            ("timeout", "256"),
            ("windowsize", "0"),
        ] {
            assert!(
                matches!(
                    rrq_options(&[(name, value)]),
                    Err(TftpError::BadOption { .. })
                ),
                "{name}={value}"
            );
        }
    }
}
