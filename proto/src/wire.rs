//! Wire codecs for port 4051 (see `docs/protocol.md`). Pure functions over byte slices.
//!
//! Every decoder is total: any input yields a message or a typed [`DecodeError`], never a
//! panic, never a read past the declared length, and every length has a cap.

use pfs_common::msg_type;

pub use crate::ids::{HierarchyId, PeerId};
pub use crate::tree::Exclusion;

/// `PF` (shared with the XDP program, which validates the same header).
pub const MAGIC: [u8; 2] = pfs_common::WIRE_MAGIC;
pub const VERSION: u8 = pfs_common::WIRE_VERSION;
pub const HEADER_LEN: usize = pfs_common::WIRE_HEADER_LEN;
pub const MAX_UDP_BODY: usize = pfs_common::WIRE_MAX_UDP_BODY;
pub const MAX_CHUNK_DATA: usize = 1 << 20;
pub const MAX_CONTROL_BODY: usize = 512;
pub const MAX_MODEL: usize = pfs_common::WIRE_MAX_MODEL;
pub const MAX_FILE: usize = pfs_common::WIRE_MAX_FILE;
pub const MAX_EXCLUDE: usize = 8;
pub const MAX_ERROR_TEXT: usize = 256;
pub const DIGEST_LEN: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("truncated: need {need} bytes, have {have}")]
    Truncated { need: usize, have: usize },
    #[error("bad magic {0:02x?}")]
    BadMagic([u8; 2]),
    #[error("unsupported version {0}")]
    BadVersion(u8),
    #[error("unknown message type {0:#04x}")]
    UnknownType(u8),
    #[error("declared length {len} exceeds the cap {cap} for this type")]
    TooLong { len: usize, cap: usize },
    #[error("{0} bytes after the end of the message body")]
    TrailingBytes(usize),
    #[error("field {field}: {why}")]
    BadField {
        field: &'static str,
        why: &'static str,
    },
}

/// (model, file, file digest): one hierarchy.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HierarchyKey {
    pub model: String,
    pub file: String,
    pub digest: [u8; DIGEST_LEN],
}

impl HierarchyKey {
    /// The decoder's rules for a key (1..=32 byte model, 1..=64 byte file name, printable
    /// ASCII), so that every key `encode` writes can be read back unchanged.
    pub fn validate(&self) -> Result<(), DecodeError> {
        for (field, text, cap) in [
            ("model", &self.model, MAX_MODEL),
            ("file", &self.file, MAX_FILE),
        ] {
            if text.is_empty() || text.len() > cap {
                return Err(DecodeError::BadField {
                    field,
                    why: "length out of range",
                });
            }
            if !text.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
                return Err(DecodeError::BadField {
                    field,
                    why: "not printable ASCII",
                });
            }
        }
        Ok(())
    }

    /// The 8-byte id standing for the key on TCP.
    pub fn id(&self) -> HierarchyId {
        let mut w = Writer::default();
        w.key(self);
        let hash = blake3::hash(&w.buf);
        HierarchyId(u64::from_be_bytes(
            hash.as_bytes()[..8].try_into().expect("8 bytes"),
        ))
    }
}

/// Claim tier: orders claims before strength does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Tier {
    /// `ClaimRoot(tent)`.
    Tentative = 0,
    /// Passed the guard and fetching from the origin ("bumping strength").
    Fetching = 1,
    /// Confirmed root.
    Confirmed = 2,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Advert {
        key: HierarchyKey,
        xid: u32,
        strength: u64,
        tier: Tier,
        seq: u32,
        depth: u8,
        free_slots: u8,
        verified: u32,
    },
    Join {
        key: HierarchyKey,
        xid: u32,
        max_children: u8,
        link_kbit: u32,
        verified: u32,
        /// Each excluded peer with the joiner's reason: the root's placement treats them
        /// differently (`tree::Coordinator::exclude`).
        exclude: Vec<(PeerId, Exclusion)>,
    },
    Accept {
        key: HierarchyKey,
        xid: u32,
        parent: PeerId,
        port: u16,
        depth: u8,
    },
    Reject {
        key: HierarchyKey,
        xid: u32,
        reason: u8,
    },
    Leave {
        key: HierarchyKey,
        xid: u32,
        reason: u8,
    },
    Heartbeat {
        key: HierarchyKey,
        xid: u32,
        verified: u32,
    },
    /// A fallback lease (unicast, member <-> root of tree `xid`): `op` is [`LEASE_REQUEST`],
    /// [`LEASE_GRANT`], [`LEASE_REFUSE`] or [`LEASE_RELEASE`]. The root grants at most K at a
    /// time, so the origin never serves more than roots + K transfers (docs/protocol.md).
    Lease {
        key: HierarchyKey,
        xid: u32,
        op: u8,
    },
    /// `xid` names the tree the child joined, so a full parent can evict stale-tree children.
    Request {
        hierarchy: HierarchyId,
        offset: u64,
        xid: u32,
    },
    Chunk {
        hierarchy: HierarchyId,
        offset: u64,
        have: u64,
        data: Vec<u8>,
    },
    Have {
        hierarchy: HierarchyId,
        verified: u64,
    },
    Error {
        code: u16,
        message: String,
    },
}

/// The name docs/protocol.md gives a type code (`None` for an unknown code).
pub fn type_name(code: u8) -> Option<&'static str> {
    Some(match code {
        msg_type::ADVERT => "Advert",
        msg_type::JOIN => "Join",
        msg_type::ACCEPT => "Accept",
        msg_type::REJECT => "Reject",
        msg_type::LEAVE => "Leave",
        msg_type::HEARTBEAT => "Heartbeat",
        msg_type::LEASE => "Lease",
        msg_type::REQUEST => "Request",
        msg_type::CHUNK => "Chunk",
        msg_type::HAVE => "Have",
        msg_type::ERROR => "Error",
        _ => return None,
    })
}

/// [`Message::Lease`] operations.
pub const LEASE_REQUEST: u8 = 0;
pub const LEASE_GRANT: u8 = 1;
pub const LEASE_REFUSE: u8 = 2;
pub const LEASE_RELEASE: u8 = 3;

impl Message {
    /// The hierarchy key of the UDP messages.
    pub fn key(&self) -> Option<&HierarchyKey> {
        match self {
            Message::Advert { key, .. }
            | Message::Join { key, .. }
            | Message::Accept { key, .. }
            | Message::Reject { key, .. }
            | Message::Leave { key, .. }
            | Message::Heartbeat { key, .. }
            | Message::Lease { key, .. } => Some(key),
            _ => None,
        }
    }

    /// The message's name as docs/protocol.md spells it (`Advert`, ..., `Error`).
    pub fn name(&self) -> &'static str {
        type_name(self.type_code()).expect("every message has a known type")
    }

    fn type_code(&self) -> u8 {
        match self {
            Message::Advert { .. } => msg_type::ADVERT,
            Message::Join { .. } => msg_type::JOIN,
            Message::Accept { .. } => msg_type::ACCEPT,
            Message::Reject { .. } => msg_type::REJECT,
            Message::Leave { .. } => msg_type::LEAVE,
            Message::Heartbeat { .. } => msg_type::HEARTBEAT,
            Message::Lease { .. } => msg_type::LEASE,
            Message::Request { .. } => msg_type::REQUEST,
            Message::Chunk { .. } => msg_type::CHUNK,
            Message::Have { .. } => msg_type::HAVE,
            Message::Error { .. } => msg_type::ERROR,
        }
    }

    /// Encodes header and body. Fails only for values the decoder would reject (invalid keys,
    /// over-long lists or bodies), so what is sent can always be read back. A codec table:
    /// one arm per message type of docs/protocol.md.
    pub fn encode(&self) -> Result<Vec<u8>, DecodeError> {
        if let Some(key) = self.key() {
            key.validate()?;
        }
        let mut w = Writer::default();
        match self {
            Message::Advert {
                key,
                xid,
                strength,
                tier,
                seq,
                depth,
                free_slots,
                verified,
            } => {
                w.key(key);
                w.u32(*xid);
                w.u64(*strength);
                w.u8(*tier as u8);
                w.u32(*seq);
                w.u8(*depth);
                w.u8(*free_slots);
                w.u32(*verified);
            }
            Message::Join {
                key,
                xid,
                max_children,
                link_kbit,
                verified,
                exclude,
            } => {
                w.key(key);
                w.u32(*xid);
                w.u8(*max_children);
                w.u32(*link_kbit);
                w.u32(*verified);
                if exclude.len() > MAX_EXCLUDE {
                    return Err(DecodeError::BadField {
                        field: "exclude",
                        why: "more than 8 entries",
                    });
                }
                w.u8(exclude.len() as u8);
                for &(peer, why) in exclude {
                    w.u32(peer.0);
                    w.u8(why as u8);
                }
            }
            Message::Accept {
                key,
                xid,
                parent,
                port,
                depth,
            } => {
                w.key(key);
                w.u32(*xid);
                w.u32(parent.0);
                w.u16(*port);
                w.u8(*depth);
            }
            Message::Reject { key, xid, reason }
            | Message::Leave { key, xid, reason }
            | Message::Lease {
                key,
                xid,
                op: reason,
            } => {
                w.key(key);
                w.u32(*xid);
                w.u8(*reason);
            }
            Message::Heartbeat { key, xid, verified } => {
                w.key(key);
                w.u32(*xid);
                w.u32(*verified);
            }
            Message::Request {
                hierarchy,
                offset,
                xid,
            } => {
                w.u64(hierarchy.0);
                w.u64(*offset);
                w.u32(*xid);
            }
            Message::Chunk {
                hierarchy,
                offset,
                have,
                data,
            } => {
                w.u64(hierarchy.0);
                w.u64(*offset);
                w.u64(*have);
                w.buf.extend_from_slice(data);
            }
            Message::Have {
                hierarchy,
                verified,
            } => {
                w.u64(hierarchy.0);
                w.u64(*verified);
            }
            Message::Error { code, message } => {
                w.u16(*code);
                w.buf.extend_from_slice(message.as_bytes());
            }
        }
        let body = w.buf;
        let cap = body_cap(self.type_code()).expect("known type");
        if body.len() > cap {
            return Err(DecodeError::TooLong {
                len: body.len(),
                cap,
            });
        }
        let mut out = Vec::with_capacity(HEADER_LEN + body.len());
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.push(self.type_code());
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(&body);
        // Round-trip guarantee: never emit what we would refuse to read.
        debug_assert!(decode(&out).is_ok(), "encoded an undecodable message");
        Ok(out)
    }
}

/// The bytes `Message::Chunk { .. }.encode()` puts before the chunk data, so a relay can send
/// the data itself straight from a mapped image.
pub fn chunk_head(
    hierarchy: HierarchyId,
    offset: u64,
    have: u64,
    data_len: usize,
) -> [u8; HEADER_LEN + 24] {
    assert!(
        data_len <= MAX_CHUNK_DATA,
        "chunk larger than the wire allows"
    );
    let mut out = [0u8; HEADER_LEN + 24];
    out[..2].copy_from_slice(&MAGIC);
    out[2] = VERSION;
    out[3] = msg_type::CHUNK;
    out[4..8].copy_from_slice(&((data_len + 24) as u32).to_be_bytes());
    out[8..16].copy_from_slice(&hierarchy.0.to_be_bytes());
    out[16..24].copy_from_slice(&offset.to_be_bytes());
    out[24..32].copy_from_slice(&have.to_be_bytes());
    out
}

/// A `Chunk` frame read in place: (hierarchy, offset, have, data), the data borrowed from
/// `frame` (the receive path verifies and writes it without copying it first).
///
/// Errors: as [`decode`] for a frame that is not exactly one well-formed `Chunk`.
pub fn chunk_view(frame: &[u8]) -> Result<(HierarchyId, u64, u64, &[u8]), DecodeError> {
    let (kind, len) = decode_header(frame)?;
    if kind != msg_type::CHUNK || len < 24 || frame.len() != HEADER_LEN + len {
        // Not a chunk, or not exactly one frame: the general decoder says what is wrong.
        return match decode(frame) {
            Ok(_) => Err(DecodeError::BadField {
                field: "type",
                why: "not a chunk frame",
            }),
            Err(e) => Err(e),
        };
    }
    let word = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&frame[at..at + 8]);
        u64::from_be_bytes(b)
    };
    Ok((
        HierarchyId(word(8)),
        word(16),
        word(24),
        &frame[HEADER_LEN + 24..],
    ))
}

fn body_cap(type_code: u8) -> Option<usize> {
    match type_code {
        t if msg_type::is_udp(t) => Some(MAX_UDP_BODY),
        msg_type::CHUNK => Some(MAX_CHUNK_DATA + 24),
        msg_type::REQUEST | msg_type::HAVE | msg_type::ERROR => Some(MAX_CONTROL_BODY),
        _ => None,
    }
}

/// Validates a header and returns (type, body length). For TCP: read 8 bytes, call this, then
/// read exactly the body length.
pub fn decode_header(bytes: &[u8]) -> Result<(u8, usize), DecodeError> {
    if bytes.len() < HEADER_LEN {
        return Err(DecodeError::Truncated {
            need: HEADER_LEN,
            have: bytes.len(),
        });
    }
    let magic = [bytes[0], bytes[1]];
    if magic != MAGIC {
        return Err(DecodeError::BadMagic(magic));
    }
    if bytes[2] != VERSION {
        return Err(DecodeError::BadVersion(bytes[2]));
    }
    let type_code = bytes[3];
    let cap = body_cap(type_code).ok_or(DecodeError::UnknownType(type_code))?;
    let len = u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) as usize;
    if len > cap {
        return Err(DecodeError::TooLong { len, cap });
    }
    Ok((type_code, len))
}

/// Decodes one whole message (a datagram, or a TCP frame already cut to header + length). A
/// codec table: one arm per message type of docs/protocol.md.
pub fn decode(bytes: &[u8]) -> Result<Message, DecodeError> {
    let (type_code, len) = decode_header(bytes)?;
    let have = bytes.len() - HEADER_LEN;
    if have < len {
        return Err(DecodeError::Truncated {
            need: HEADER_LEN + len,
            have: bytes.len(),
        });
    }
    if have > len {
        return Err(DecodeError::TrailingBytes(have - len));
    }
    let mut r = Reader {
        buf: &bytes[HEADER_LEN..],
        pos: 0,
    };
    let msg = match type_code {
        msg_type::ADVERT => Message::Advert {
            key: r.key()?,
            xid: r.u32()?,
            strength: r.u64()?,
            tier: match r.u8()? {
                0 => Tier::Tentative,
                1 => Tier::Fetching,
                2 => Tier::Confirmed,
                _ => {
                    return Err(DecodeError::BadField {
                        field: "tier",
                        why: "not 0, 1 or 2",
                    });
                }
            },
            seq: r.u32()?,
            depth: r.u8()?,
            free_slots: r.u8()?,
            verified: r.u32()?,
        },
        msg_type::JOIN => {
            let key = r.key()?;
            let xid = r.u32()?;
            let max_children = r.u8()?;
            let link_kbit = r.u32()?;
            let verified = r.u32()?;
            let n = r.u8()? as usize;
            if n > MAX_EXCLUDE {
                return Err(DecodeError::BadField {
                    field: "exclude",
                    why: "more than 8 entries",
                });
            }
            let mut exclude = Vec::with_capacity(n);
            for _ in 0..n {
                let peer = PeerId(r.u32()?);
                let why = Exclusion::from_code(r.u8()?).ok_or(DecodeError::BadField {
                    field: "exclude_reason",
                    why: "not 0 (dead), 1 (corrupt) or 2 (slow)",
                })?;
                exclude.push((peer, why));
            }
            Message::Join {
                key,
                xid,
                max_children,
                link_kbit,
                verified,
                exclude,
            }
        }
        msg_type::ACCEPT => Message::Accept {
            key: r.key()?,
            xid: r.u32()?,
            parent: PeerId(r.u32()?),
            port: r.u16()?,
            depth: r.u8()?,
        },
        msg_type::REJECT => Message::Reject {
            key: r.key()?,
            xid: r.u32()?,
            reason: r.u8()?,
        },
        msg_type::LEAVE => Message::Leave {
            key: r.key()?,
            xid: r.u32()?,
            reason: r.u8()?,
        },
        msg_type::HEARTBEAT => Message::Heartbeat {
            key: r.key()?,
            xid: r.u32()?,
            verified: r.u32()?,
        },
        msg_type::LEASE => Message::Lease {
            key: r.key()?,
            xid: r.u32()?,
            op: r.u8()?,
        },
        msg_type::REQUEST => Message::Request {
            hierarchy: HierarchyId(r.u64()?),
            offset: r.u64()?,
            xid: r.u32()?,
        },
        msg_type::CHUNK => Message::Chunk {
            hierarchy: HierarchyId(r.u64()?),
            offset: r.u64()?,
            have: r.u64()?,
            data: r.rest().to_vec(),
        },
        msg_type::HAVE => Message::Have {
            hierarchy: HierarchyId(r.u64()?),
            verified: r.u64()?,
        },
        msg_type::ERROR => {
            let code = r.u16()?;
            let text = r.rest();
            if text.len() > MAX_ERROR_TEXT {
                return Err(DecodeError::BadField {
                    field: "message",
                    why: "longer than 256 bytes",
                });
            }
            Message::Error {
                code,
                message: ascii(text, "message")?,
            }
        }
        other => return Err(DecodeError::UnknownType(other)),
    };
    if r.pos != r.buf.len() {
        return Err(DecodeError::TrailingBytes(r.buf.len() - r.pos));
    }
    Ok(msg)
}

fn ascii(bytes: &[u8], field: &'static str) -> Result<String, DecodeError> {
    if bytes.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
        Ok(String::from_utf8(bytes.to_vec()).expect("ASCII is UTF-8"))
    } else {
        Err(DecodeError::BadField {
            field,
            why: "not printable ASCII",
        })
    }
}

#[derive(Default)]
struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    /// Length-prefixed model and file, then the digest. `encode` validates the key first;
    /// `id` hashes whatever it is given.
    fn key(&mut self, key: &HierarchyKey) {
        for s in [&key.model, &key.file] {
            self.u8(s.len().min(usize::from(u8::MAX)) as u8);
            self.buf.extend_from_slice(s.as_bytes());
        }
        self.buf.extend_from_slice(&key.digest);
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        let Some(end) = end else {
            return Err(DecodeError::Truncated {
                need: HEADER_LEN + self.pos + n,
                have: HEADER_LEN + self.buf.len(),
            });
        };
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        Ok(self.take(N)?.try_into().expect("take returned N bytes"))
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }
    fn rest(&mut self) -> &'a [u8] {
        let out = &self.buf[self.pos..];
        self.pos = self.buf.len();
        out
    }
    fn string(&mut self, field: &'static str, cap: usize) -> Result<String, DecodeError> {
        let len = self.u8()? as usize;
        if len == 0 || len > cap {
            return Err(DecodeError::BadField {
                field,
                why: "length out of range",
            });
        }
        ascii(self.take(len)?, field)
    }
    fn key(&mut self) -> Result<HierarchyKey, DecodeError> {
        Ok(HierarchyKey {
            model: self.string("model", MAX_MODEL)?,
            file: self.string("file", MAX_FILE)?,
            digest: self.array()?,
        })
    }
}

#[cfg(test)]
mod tests;
