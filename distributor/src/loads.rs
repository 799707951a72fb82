//! Cisco `.loads` files and the signed-file headers in front of them (and in front of `.sbn`,
//! `.sgn`, `.sebn` components).
//!
//! Source: the real files in `../shared/real/` and `../shared/real/FORMATS.md` (sections 1-4).
//! Everything here is total over arbitrary bytes: no panics, allocation bounded by the input.
//!
//! A `.loads` file is `[signed header] body`:
//!
//! - **TLV header** (FORMATS.md 1; e.g. `SCCP41.9-4-2SR1-1S.loads`): fields `tag u8, len u16 BE,
//!   value`, starting `01 00 02 <version 2 bytes>`, then tag 2 = header length (u16 BE, bytes
//!   from the start of the file to the body). Tags 3, 7 and 9 are containers of nested TLVs,
//!   tag 13 (`0x0D`) is a one-byte pad with no length, tag 12 is the 256-byte RSA signature,
//!   tag 14 the NUL-terminated file name. The signature is RSA with Cisco's key: we report it,
//!   we cannot check it.
//! - **5th-generation header** (FORMATS.md 2; `sip78xx.11-0-1-11.loads`,
//!   `sip88xx.12-0-7MPP0201-66.loads`): `CD 34 12 AB`, LE u32 header length, LE u32 flags,
//!   LE u32 payload length (header + payload = file size), u32 0, the SHA-256 of the payload
//!   (32 bytes, checked), LE u32 name length, the name padded to 4, a 256-byte signature.
//! - **Body** (FORMATS.md 3), five layouts, see [`Layout`]. Sizes, where listed, are whole-file
//!   sizes in bytes, header included.

use std::fmt;

use serde::Serialize;
use sha2::{Digest, Sha256};

/// Largest `.loads` file we read (real ones are under 2 KiB).
pub const MAX_LOADS_BYTES: usize = 1 << 20;
/// Most components one `.loads` may list (all platforms together).
pub const MAX_COMPONENTS: usize = 256;
/// Magic of the 5th-generation header.
pub const GEN5_MAGIC: [u8; 4] = [0xCD, 0x34, 0x12, 0xAB];
/// Signature length of both header kinds (RSA-2048).
pub const SIGNATURE_LEN: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadsError {
    #[error("signed header: {0}")]
    Header(String),
    #[error(
        "5th-generation header: SHA-256 of the payload is {actual}, the header says {expected}"
    )]
    DigestMismatch { expected: String, actual: String },
    #[error(".loads body: {0}")]
    Body(String),
    #[error(".loads body line {line}: {why}")]
    Line { line: usize, why: String },
    #[error(".loads file larger than 1 MiB")]
    TooLarge,
}

/// The fields of a TLV signed header (FORMATS.md 1), containers flattened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TlvHeader {
    /// Tag 1: major, minor (firmware writes 1.1).
    pub version: [u8; 2],
    /// Tag 2: bytes from the start of the file to the body.
    pub header_len: u16,
    /// Tag 4, NUL removed.
    pub signer: Option<String>,
    /// Tag 5, hex.
    pub serial: Option<String>,
    /// Tag 6, NUL removed.
    pub ca: Option<String>,
    /// Tag 8: 1 = SHA-1.
    pub digest_algorithm: Option<u8>,
    /// Tag 10: 0 = RSA.
    pub signature_algorithm: Option<u8>,
    /// Tag 11: 2 = 2048 bit.
    pub modulus: Option<u8>,
    /// Tag 12 length in bytes.
    pub signature_len: usize,
    /// Tag 12 is the pfs test placeholder (see [`synth_tlv_header`]), not a real signature.
    pub test_placeholder: bool,
    /// Tag 14, NUL removed.
    pub file_name: Option<String>,
}

/// The `CD 34 12 AB` header of 78xx/88xx loads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Gen5Header {
    pub header_len: u32,
    pub flags: u32,
    pub payload_len: u32,
    /// SHA-256 of the payload as the header gives it, hex.
    pub sha256: String,
    /// Whether the payload hashes to it.
    pub sha256_ok: bool,
    pub file_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SignedHeader {
    Tlv(TlvHeader),
    Gen5(Gen5Header),
}

impl SignedHeader {
    /// Bytes from the start of the file to the body.
    pub fn header_len(&self) -> usize {
        match self {
            SignedHeader::Tlv(h) => usize::from(h.header_len),
            SignedHeader::Gen5(h) => h.header_len as usize,
        }
    }

    pub fn file_name(&self) -> Option<&str> {
        match self {
            SignedHeader::Tlv(h) => h.file_name.as_deref(),
            SignedHeader::Gen5(h) => Some(&h.file_name),
        }
    }
}

/// Reads a big-endian u16 at `at`, if there.
fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn le32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

/// A NUL-terminated (or not) byte string as text, control bytes shown as `\xNN`.
fn cstr(v: &[u8]) -> String {
    let v = v.split(|&b| b == 0).next().unwrap_or(&[]);
    let mut s = String::with_capacity(v.len());
    for &b in v {
        if b.is_ascii_graphic() || b == b' ' {
            s.push(char::from(b));
        } else {
            s.push_str(&format!("\\x{b:02x}"));
        }
    }
    s
}

/// What the signature field of a synthetic load holds: plainly not a signature.
pub const TEST_PLACEHOLDER: &[u8] = b"PFS TEST PLACEHOLDER, NOT A SIGNATURE. ";

/// Parses the signed header at the start of `bytes`, if there is one.
///
/// `Ok(None)`: the file does not start with either header (a plain text `.loads`, or an 88xx
/// `.sbn`, which starts with ARM vectors). `Err`: it starts like one but is broken: a length
/// that runs past the header or the file, a missing header-length tag, bytes other than the
/// `0x0D` pad between the last field and the body, or (5th generation) a payload whose SHA-256
/// differs from the header's.
pub fn parse_signed_header(bytes: &[u8]) -> Result<Option<SignedHeader>, LoadsError> {
    if bytes.starts_with(&GEN5_MAGIC) {
        return parse_gen5(bytes).map(|h| Some(SignedHeader::Gen5(h)));
    }
    if bytes.len() >= 10 && bytes[0] == 1 && bytes[1..3] == [0, 2] && bytes[5..8] == [2, 0, 2] {
        return parse_tlv(bytes).map(|h| Some(SignedHeader::Tlv(h)));
    }
    Ok(None)
}

fn hdr(why: impl Into<String>) -> LoadsError {
    LoadsError::Header(why.into())
}

fn parse_gen5(b: &[u8]) -> Result<Gen5Header, LoadsError> {
    let short = || hdr("5th-generation header shorter than its fixed fields");
    let header_len = le32(b, 4).ok_or_else(short)?;
    let flags = le32(b, 8).ok_or_else(short)?;
    let payload_len = le32(b, 12).ok_or_else(short)?;
    let digest = b.get(20..52).ok_or_else(short)?;
    let name_len = le32(b, 52).ok_or_else(short)? as usize;
    let hl = header_len as usize;
    if hl > b.len() {
        return Err(hdr(format!(
            "header length {hl} runs past the end of the file ({} bytes)",
            b.len()
        )));
    }
    if u64::from(header_len) + u64::from(payload_len) != b.len() as u64 {
        return Err(hdr(format!(
            "header {header_len} + payload {payload_len} bytes differ from the file's {}",
            b.len()
        )));
    }
    let padded = name_len.div_ceil(4).saturating_mul(4);
    if 56usize.saturating_add(padded).saturating_add(SIGNATURE_LEN) != hl {
        return Err(hdr(format!(
            "name of {name_len} bytes and a {SIGNATURE_LEN}-byte signature do not fill the \
             {hl}-byte header"
        )));
    }
    let file_name = cstr(&b[56..56 + name_len]);
    let expected = hex::encode(digest);
    let actual = hex::encode(Sha256::digest(&b[hl..]));
    Ok(Gen5Header {
        header_len,
        flags,
        payload_len,
        sha256_ok: expected == actual,
        sha256: expected,
        file_name,
    })
}

fn parse_tlv(b: &[u8]) -> Result<TlvHeader, LoadsError> {
    let header_len = be16(b, 8).ok_or_else(|| hdr("no header length"))?;
    let hl = usize::from(header_len);
    if hl > b.len() {
        return Err(hdr(format!(
            "header length {hl} runs past the end of the file ({} bytes)",
            b.len()
        )));
    }
    let mut h = TlvHeader {
        version: [b[3], b[4]],
        header_len,
        signer: None,
        serial: None,
        ca: None,
        digest_algorithm: None,
        signature_algorithm: None,
        modulus: None,
        signature_len: 0,
        test_placeholder: false,
        file_name: None,
    };
    walk_tlv(&b[..hl], 0, hl, 0, &mut h)?;
    Ok(h)
}

/// Reads fields in `b[start..end]`; containers recurse (at most 4 deep).
fn walk_tlv(
    b: &[u8],
    start: usize,
    end: usize,
    depth: u8,
    h: &mut TlvHeader,
) -> Result<(), LoadsError> {
    if depth > 4 {
        return Err(hdr("containers nested deeper than 4"));
    }
    let mut at = start;
    let mut seen_name = false;
    while at < end {
        let tag = b[at];
        if tag == 13 {
            at += 1;
            continue;
        }
        if seen_name && depth == 0 {
            return Err(hdr(format!(
                "byte {tag:#04x} at {at} after the file name (only 0x0D pad may follow)"
            )));
        }
        let len = usize::from(be16(b, at + 1).ok_or_else(|| hdr("field cut off"))?);
        let v0 = at + 3;
        let v1 = v0 + len;
        if v1 > end {
            return Err(hdr(format!(
                "field tag {tag} at {at}: {len} bytes run past the {end}-byte header"
            )));
        }
        let v = &b[v0..v1];
        let byte = || v.first().copied();
        match tag {
            1 | 2 => {}
            3 | 7 | 9 => walk_tlv(b, v0, v1, depth + 1, h)?,
            4 => h.signer = Some(cstr(v)),
            5 => h.serial = Some(hex::encode(v)),
            6 => h.ca = Some(cstr(v)),
            8 => h.digest_algorithm = byte(),
            10 => h.signature_algorithm = byte(),
            11 => h.modulus = byte(),
            12 => {
                h.signature_len = len;
                h.test_placeholder = v.starts_with(TEST_PLACEHOLDER);
            }
            14 => {
                h.file_name = Some(cstr(v));
                seen_name = true;
            }
            _ => {}
        }
        at = v1;
    }
    Ok(())
}

/// Which of the five body layouts (FORMATS.md 3) a `.loads` body has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// (a) 79x1, 69xx, 7970: one name a line, CRLF, `#` comments.
    NameList,
    /// (b) 7940/7960: names, LF, and a `LA_VERSION=...` line that is not a file.
    NameListWithVersion,
    /// (c) 7921/7925: `NAME SIZE MD5` columns; `#+ NAME SIZE MD5` lines are components too.
    Columns,
    /// (d) 8961/78xx/88xx: INI with `[CISCO-ID]` and `[PLATFORM_n]` sections of
    /// `key=FILE size=N`, a file set per hardware platform.
    Ini,
    /// (e) 69xx: `.zz.sgn` names without a final newline.
    SgnList,
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Layout::NameList => "name list",
            Layout::NameListWithVersion => "name list with LA_VERSION",
            Layout::Columns => "NAME SIZE MD5 columns",
            Layout::Ini => "INI with [PLATFORM_n] sections",
            Layout::SgnList => ".zz.sgn name list",
        })
    }
}

/// One file a load consists of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Component {
    /// As written (phones match names case-insensitively).
    pub name: String,
    /// Whole-file size in bytes, header included, where the file lists it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// MD5 of the whole file, lowercase hex, where listed (layout c).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub md5: Option<String>,
    /// Hardware platform `n` of `[PLATFORM_n]` (layout d).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<u32>,
}

/// A parsed `.loads` file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LoadsFile {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header: Option<SignedHeader>,
    pub layout: Layout,
    /// `LA_VERSION`, `[CISCO-ID] version` or `# RELEASE load version X`, where given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// In file order; for layout (d) platform by platform.
    pub components: Vec<Component>,
}

impl LoadsFile {
    /// Hardware platforms listed (layout d), ascending; empty for other layouts.
    pub fn platforms(&self) -> Vec<u32> {
        let mut p: Vec<u32> = self.components.iter().filter_map(|c| c.platform).collect();
        p.sort_unstable();
        p.dedup();
        p
    }

    /// Every distinct component (first occurrence; names compared case-insensitively), which
    /// is what a TFTP folder serving every platform must hold.
    pub fn distinct_components(&self) -> Vec<&Component> {
        let mut out: Vec<&Component> = Vec::new();
        for c in &self.components {
            if !out.iter().any(|o| o.name.eq_ignore_ascii_case(&c.name)) {
                out.push(c);
            }
        }
        out
    }
}

/// A file name that stays inside its directory and fits the wire's hierarchy key.
pub fn safe_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= pfs_common::WIRE_MAX_FILE
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b'\\')
}

/// Parses a whole `.loads` file: signed header (if any, SHA-256 checked for the 5th
/// generation), then the body.
pub fn parse_loads_file(bytes: &[u8]) -> Result<LoadsFile, LoadsError> {
    if bytes.len() > MAX_LOADS_BYTES {
        return Err(LoadsError::TooLarge);
    }
    let header = parse_signed_header(bytes)?;
    if let Some(SignedHeader::Gen5(g)) = &header
        && !g.sha256_ok
    {
        return Err(LoadsError::DigestMismatch {
            expected: g.sha256.clone(),
            actual: hex::encode(Sha256::digest(&bytes[g.header_len as usize..])),
        });
    }
    let start = header.as_ref().map_or(0, SignedHeader::header_len);
    let (layout, version, components) = parse_body(&bytes[start..])?;
    Ok(LoadsFile {
        header,
        layout,
        version,
        components,
    })
}

type Body = (Layout, Option<String>, Vec<Component>);

/// Parses a body (the bytes after the header).
pub fn parse_body(body: &[u8]) -> Result<Body, LoadsError> {
    let text = std::str::from_utf8(body).map_err(|e| {
        LoadsError::Body(format!(
            "not text (UTF-8 error at byte {})",
            e.valid_up_to()
        ))
    })?;
    let ini = text.lines().any(|l| l.trim_start().starts_with('['));
    let (version, components, flags) = if ini {
        parse_ini(text)?
    } else {
        parse_list(text)?
    };
    if components.is_empty() {
        return Err(LoadsError::Body("no components".into()));
    }
    let layout = if ini {
        Layout::Ini
    } else if flags.columns {
        Layout::Columns
    } else if flags.la_version {
        Layout::NameListWithVersion
    } else if components
        .iter()
        .all(|c| c.name.to_ascii_lowercase().ends_with(".sgn"))
    {
        Layout::SgnList
    } else {
        Layout::NameList
    };
    Ok((layout, version, components))
}

#[derive(Default)]
struct Flags {
    columns: bool,
    la_version: bool,
}

fn line_err(line: usize, why: impl Into<String>) -> LoadsError {
    LoadsError::Line {
        line,
        why: why.into(),
    }
}

fn push(out: &mut Vec<Component>, c: Component, line: usize) -> Result<(), LoadsError> {
    if !safe_name(&c.name) {
        return Err(line_err(
            line,
            format!("component name {:?} unsafe", c.name),
        ));
    }
    if out.len() >= MAX_COMPONENTS {
        return Err(line_err(line, "too many components"));
    }
    out.push(c);
    Ok(())
}

/// `# RELEASE load version 9-4-2ES9` -> `9-4-2ES9`.
fn release_version(comment: &str) -> Option<String> {
    let rest = comment.split("RELEASE load version").nth(1)?;
    rest.split_whitespace().next().map(str::to_owned)
}

/// Layouts a, b, c and e.
fn parse_list(text: &str) -> Result<(Option<String>, Vec<Component>, Flags), LoadsError> {
    let mut out = Vec::new();
    let mut flags = Flags::default();
    let mut version = None;
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let mut line = raw.trim();
        if let Some(rest) = line.strip_prefix("#+") {
            line = rest.trim();
        } else if let Some(comment) = line.strip_prefix('#') {
            if version.is_none() {
                version = release_version(comment);
            }
            continue;
        }
        if line.is_empty() {
            continue;
        }
        if let Some((key, value)) = line.split_once('=')
            && !key.is_empty()
            && key.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')
        {
            if key == "LA_VERSION" {
                version = Some(value.trim().to_owned());
            }
            flags.la_version = true;
            continue;
        }
        let mut words = line.split_whitespace();
        let name = words.next().unwrap_or_default().to_owned();
        let size = match words.next() {
            Some(s) => {
                flags.columns = true;
                Some(
                    s.parse::<u64>()
                        .map_err(|_| line_err(n, format!("size {s:?} is not a number of bytes")))?,
                )
            }
            None => None,
        };
        let md5 = match words.next() {
            Some(d) if d.len() == 32 && d.bytes().all(|b| b.is_ascii_hexdigit()) => {
                Some(d.to_ascii_lowercase())
            }
            Some(d) => return Err(line_err(n, format!("{d:?} is not an MD5 (32 hex digits)"))),
            None => None,
        };
        if let Some(extra) = words.next() {
            return Err(line_err(n, format!("unexpected {extra:?} after the MD5")));
        }
        push(
            &mut out,
            Component {
                name,
                size,
                md5,
                platform: None,
            },
            n,
        )?;
    }
    Ok((version, out, flags))
}

/// Layout d.
fn parse_ini(text: &str) -> Result<(Option<String>, Vec<Component>, Flags), LoadsError> {
    let mut out = Vec::new();
    let mut version = None;
    let mut section: Option<String> = None;
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(s) = line.strip_prefix('[') {
            let name = s
                .strip_suffix(']')
                .ok_or_else(|| line_err(n, "section header without ']'"))?;
            section = Some(name.trim().to_owned());
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| line_err(n, "neither a section nor key=value"))?;
        let (key, value) = (key.trim(), value.trim());
        let platform = section
            .as_deref()
            .and_then(|s| s.strip_prefix("PLATFORM_"))
            .map(|p| {
                p.parse::<u32>()
                    .map_err(|_| line_err(n, format!("platform {p:?} is not a number")))
            })
            .transpose()?;
        match (section.as_deref(), platform) {
            (Some("CISCO-ID"), _) if key == "version" => version = Some(value.to_owned()),
            (_, Some(platform)) if !key.starts_with("ebr_") => {
                let mut words = value.split_whitespace();
                let name = words.next().unwrap_or_default().to_owned();
                let mut size = None;
                for w in words {
                    match w.strip_prefix("size=") {
                        Some(s) => {
                            size = Some(s.parse::<u64>().map_err(|_| {
                                line_err(n, format!("size {s:?} is not a number of bytes"))
                            })?)
                        }
                        None => return Err(line_err(n, format!("unexpected {w:?}"))),
                    }
                }
                push(
                    &mut out,
                    Component {
                        name,
                        size,
                        md5: None,
                        platform: Some(platform),
                    },
                    n,
                )?;
            }
            _ => {}
        }
    }
    Ok((version, out, Flags::default()))
}

/// A TLV signed header like Cisco's (FORMATS.md 1), for synthetic files: version 1.1, the
/// certutils placeholder signer and CA, SHA-1/RSA-2048, and in the signature field
/// [`TEST_PLACEHOLDER`] repeated (plainly not a signature), the file name, `0x0D` pad to a
/// multiple of 4.
pub fn synth_tlv_header(file_name: &str) -> Vec<u8> {
    fn field(out: &mut Vec<u8>, tag: u8, v: &[u8]) {
        out.push(tag);
        out.extend_from_slice(&(v.len() as u16).to_be_bytes());
        out.extend_from_slice(v);
    }
    let mut signer = Vec::new();
    field(&mut signer, 4, b"CN=someSigner;OU=someOrgUnit;O=someOrg\0");
    field(
        &mut signer,
        5,
        &[0x12, 0x34, 0x56, 0x78, 0x90, 0xab, 0xcd, 0xef],
    );
    field(&mut signer, 6, b"CN=someCA;OU=someOrgUnit;O=someOrg\0");
    let mut alg = Vec::new();
    field(&mut alg, 10, &[0]);
    field(&mut alg, 11, &[2]);
    let mut sig_info = Vec::new();
    field(&mut sig_info, 8, &[1]);
    field(&mut sig_info, 9, &alg);
    let signature: Vec<u8> = TEST_PLACEHOLDER
        .iter()
        .copied()
        .cycle()
        .take(SIGNATURE_LEN)
        .collect();
    let mut name = file_name.as_bytes().to_vec();
    name.push(0);
    let mut rest = Vec::new();
    field(&mut rest, 3, &signer);
    field(&mut rest, 7, &sig_info);
    field(&mut rest, 12, &signature);
    field(&mut rest, 14, &name);
    // version (5 bytes) + header length (5 bytes) + rest, padded to 4.
    let len = (10 + rest.len()).div_ceil(4) * 4;
    let mut out = Vec::with_capacity(len);
    field(&mut out, 1, &[1, 1]);
    field(&mut out, 2, &(len as u16).to_be_bytes());
    out.extend_from_slice(&rest);
    out.resize(len, 0x0D);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn synthetic_tlv_header_reads_back() {
        let h = synth_tlv_header("SCCP41.9-4-2SR3-1S.loads");
        assert_eq!(h.len() % 4, 0);
        assert_eq!(&h[..5], &[1, 0, 2, 1, 1]);
        let mut file = h.clone();
        file.extend_from_slice(b"a.sbn\r\n");
        let Some(SignedHeader::Tlv(t)) = parse_signed_header(&file).unwrap() else {
            panic!("not a TLV header")
        };
        assert_eq!(usize::from(t.header_len), h.len());
        assert!(t.test_placeholder);
        assert_eq!(t.signature_len, 256);
        assert_eq!(t.file_name.as_deref(), Some("SCCP41.9-4-2SR3-1S.loads"));
        assert_eq!(
            t.signer.as_deref(),
            Some("CN=someSigner;OU=someOrgUnit;O=someOrg")
        );
        let l = parse_loads_file(&file).unwrap();
        assert_eq!(l.components.len(), 1);
        assert_eq!(l.layout, Layout::NameList);
    }

    #[test]
    fn bodies_of_every_layout() {
        let (l, v, c) = parse_body(b"a.sbn\nb.sb2\nLA_VERSION=X1\n").unwrap();
        assert_eq!(
            (l, v.as_deref(), c.len()),
            (Layout::NameListWithVersion, Some("X1"), 2)
        );
        let (l, _, c) = parse_body(
            b"#? HW_REV 0-4.*\nA.SBN 10 E247E40D9CF20472C6C397E6E427A517\n#+ B.SBN 20 0CDC9F3B4A2284EF14C1FCA1D3FBD2C7\n",
        )
        .unwrap();
        assert_eq!(l, Layout::Columns);
        assert_eq!(c[1].name, "B.SBN");
        assert_eq!(c[1].size, Some(20));
        assert_eq!(
            c[0].md5.as_deref(),
            Some("e247e40d9cf20472c6c397e6e427a517")
        );
        let (l, v, c) = parse_body(
            b"[CISCO-ID]\nversion = 1-2\n[PLATFORM_1]\nk=k.sbn size=5\nebr_k = (1,2)\nebr_diskver = 1\n[PLATFORM_2]\nk=k2.sbn size=6\n",
        )
        .unwrap();
        assert_eq!((l, v.as_deref()), (Layout::Ini, Some("1-2")));
        assert_eq!(c.len(), 2);
        assert_eq!((c[1].platform, c[1].size), (Some(2), Some(6)));
        let (l, _, c) = parse_body(b"A.zz.sgn\r\nB.zz.sgn").unwrap();
        assert_eq!((l, c.len()), (Layout::SgnList, 2));
        assert!(parse_body(b"# only a comment\n").is_err());
        assert!(parse_body(b"../x\n").is_err());
        assert!(parse_body(b"a.sbn ten\n").is_err());
    }

    #[test]
    fn gen5_digest_is_checked() {
        let payload = b"[PLATFORM_1]\nk=k.sbn size=1\n";
        let name = b"x.loads";
        let mut f = GEN5_MAGIC.to_vec();
        let hl = 56 + 8 + 256;
        f.extend_from_slice(&(hl as u32).to_le_bytes());
        f.extend_from_slice(&0u32.to_le_bytes());
        f.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        f.extend_from_slice(&0u32.to_le_bytes());
        f.extend_from_slice(&Sha256::digest(payload));
        f.extend_from_slice(&(name.len() as u32).to_le_bytes());
        f.extend_from_slice(name);
        f.resize(hl, 0);
        f.extend_from_slice(payload);
        let l = parse_loads_file(&f).unwrap();
        assert_eq!(l.components[0].name, "k.sbn");
        let last = f.len() - 2;
        f[last] ^= 1;
        assert!(matches!(
            parse_loads_file(&f),
            Err(LoadsError::DigestMismatch { .. })
        ));
    }

    proptest! {
        #[test]
        fn written_bodies_read_back(
            files in proptest::collection::vec(("[A-Za-z0-9][A-Za-z0-9.-]{0,30}", any::<u64>(), "[0-9a-f]{32}", 1u32..4), 1..20),
            crlf in any::<bool>(),
        ) {
            let nl = if crlf { "\r\n" } else { "\n" };
            let mut columns = String::from("#? HW_REV 0-4.*\n");
            let mut ini = String::from("[CISCO-ID]\nversion = 1\n");
            for (i, (name, size, md5, platform)) in files.iter().enumerate() {
                let hidden = if i % 3 == 2 { "#+ " } else { "" };
                columns.push_str(&format!("{hidden}{name} {size} {}{nl}", md5.to_uppercase()));
                ini.push_str(&format!("[PLATFORM_{platform}]{nl}k{i}={name} size={size}{nl}ebr_k{i} = (1,2){nl}"));
            }
            let (layout, _, got) = parse_body(columns.as_bytes()).unwrap();
            prop_assert_eq!(layout, Layout::Columns);
            prop_assert_eq!(got.len(), files.len());
            for (c, (name, size, md5, _)) in got.iter().zip(&files) {
                prop_assert_eq!(&c.name, name);
                prop_assert_eq!(c.size, Some(*size));
                prop_assert_eq!(c.md5.as_deref(), Some(md5.as_str()));
            }
            let (layout, _, got) = parse_body(ini.as_bytes()).unwrap();
            prop_assert_eq!(layout, Layout::Ini);
            for (c, (name, size, _, platform)) in got.iter().zip(&files) {
                prop_assert_eq!(&c.name, name);
                prop_assert_eq!(c.size, Some(*size));
                prop_assert_eq!(c.platform, Some(*platform));
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = parse_signed_header(&bytes);
            let _ = parse_loads_file(&bytes);
        }

        #[test]
        fn header_prefixes_never_panic(cut in 0usize..600, flip in 0usize..600, x in any::<u8>()) {
            let mut f = synth_tlv_header("a.loads");
            f.extend_from_slice(b"a.sbn\n");
            if flip < f.len() { f[flip] ^= x; }
            f.truncate(cut);
            let _ = parse_loads_file(&f);
            let mut g = GEN5_MAGIC.to_vec();
            g.extend_from_slice(&f);
            let _ = parse_loads_file(&g);
        }
    }
}
