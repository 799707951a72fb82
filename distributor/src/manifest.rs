//! Load manifests: per file its size, per-chunk BLAKE3 digests and a whole-file digest, and an
//! optional ed25519 signature. Also the `.loads` component list and the synthetic 7961 load.
//!
//! BLAKE3 because it is several times faster than SHA-256 on these CPUs: a phone verifies
//! every chunk before relaying it, so hashing is on the critical path of every hop. Parsing is
//! total: a manifest from the wire is untrusted input.

use std::{
    fs,
    io::Read,
    path::{Path, PathBuf},
};

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

pub const MANIFEST_FILE: &str = "pfs-manifest.json";

/// The manifest of one load in a folder that holds many: `pfs-manifest.<LOAD>.json`.
pub fn manifest_file_for(load: &str) -> String {
    format!("pfs-manifest.{load}.json")
}

/// A manifest file name (`pfs-manifest.json` or `pfs-manifest.<LOAD>.json`).
pub fn is_manifest_file(name: &str) -> bool {
    name == MANIFEST_FILE || (name.starts_with("pfs-manifest.") && name.ends_with(".json"))
}
pub const FORMAT: u32 = 1;
pub const MAX_FILES: usize = 256;
pub const MAX_MANIFEST_BYTES: usize = 64 << 20;
pub const MIN_CHUNK: u32 = 1024;
pub const MAX_CHUNK: u32 = 1 << 20;
pub const DEFAULT_CHUNK: u32 = 64 * 1024;
/// The CP-7961G load SCCP41.9-4-2SR3-1S: its components in the order its `.loads` lists them
/// (jar, cnu, apps, dsp, cvm, as in every 79x1 `.loads` in `../shared/real/`), with the build
/// id the components carry (9-4-2ES26, not the load id, as in `SIP42.9-4-2SR3-1S.loads`), and
/// their real sizes in bytes.
pub const LOAD_7961: (&str, [(&str, u64); 5]) = (
    "SCCP41.9-4-2SR3-1S",
    [
        ("jar41sccp.9-4-2ES26.sbn", 2_219_477),
        ("cnu41.9-4-2ES26.sbn", 556_833),
        ("apps41.9-4-2ES26.sbn", 1_630_052),
        ("dsp41.9-4-2ES26.sbn", 562_693),
        ("cvm41sccp.9-4-2ES26.sbn", 3_157_527),
    ],
);
/// Build id in the component names of [`LOAD_7961`].
pub const LOAD_7961_BUILD: &str = "9-4-2ES26";

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("manifest is not valid JSON of the expected shape: {0}")]
    Parse(String),
    #[error("manifest invalid: {0}")]
    Invalid(String),
    #[error("manifest is not signed, and a public key is configured")]
    Unsigned,
    #[error("manifest signature does not verify with the configured key")]
    BadSignature,
    #[error("{file}: chunk {chunk} (bytes {offset}..{end}) does not match the manifest digest")]
    CorruptChunk {
        file: String,
        chunk: u32,
        offset: u64,
        end: u64,
    },
    #[error("{file}: size {actual} differs from the manifest's {expected}")]
    WrongSize {
        file: String,
        expected: u64,
        actual: u64,
    },
    #[error(".loads file invalid: {0}")]
    Loads(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    pub name: String,
    pub size: u64,
    /// BLAKE3 of the whole file, hex.
    pub digest: String,
    /// BLAKE3 of each chunk, hex.
    pub chunks: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: u32,
    pub load: String,
    pub chunk_size: u32,
    pub files: Vec<FileEntry>,
    /// ed25519 over [`Manifest::signing_bytes`], hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

fn hash_hex(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

use crate::loads::safe_name;

impl FileEntry {
    /// Hashes `path` chunk by chunk.
    pub fn build(path: &Path, chunk_size: u32) -> Result<FileEntry, ManifestError> {
        let io = |source| ManifestError::Io {
            path: path.to_owned(),
            source,
        };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut file = fs::File::open(path).map_err(io)?;
        let mut whole = blake3::Hasher::new();
        let mut chunks = Vec::new();
        let mut buf = vec![0u8; chunk_size as usize];
        let mut size = 0u64;
        loop {
            let mut filled = 0;
            while filled < buf.len() {
                let n = file.read(&mut buf[filled..]).map_err(io)?;
                if n == 0 {
                    break;
                }
                filled += n;
            }
            if filled == 0 {
                break;
            }
            whole.update(&buf[..filled]);
            chunks.push(hash_hex(&buf[..filled]));
            size += filled as u64;
            if filled < buf.len() {
                break;
            }
        }
        Ok(FileEntry {
            name,
            size,
            digest: whole.finalize().to_hex().to_string(),
            chunks,
        })
    }

    pub fn chunk_count(&self, chunk_size: u32) -> u32 {
        self.size.div_ceil(u64::from(chunk_size)) as u32
    }

    /// Byte range of chunk `i`.
    pub fn chunk_range(&self, chunk_size: u32, i: u32) -> (u64, u64) {
        let start = u64::from(i) * u64::from(chunk_size);
        (start, (start + u64::from(chunk_size)).min(self.size))
    }

    pub fn chunk_ok(&self, i: u32, bytes: &[u8]) -> bool {
        self.chunks
            .get(i as usize)
            .is_some_and(|d| *d == hash_hex(bytes))
    }
}

impl Manifest {
    /// Builds a manifest for `files` (paths) in that order.
    pub fn build(
        load: &str,
        files: &[PathBuf],
        chunk_size: u32,
    ) -> Result<Manifest, ManifestError> {
        let entries = files
            .iter()
            .map(|p| FileEntry::build(p, chunk_size))
            .collect::<Result<Vec<_>, _>>()?;
        let m = Manifest {
            format: FORMAT,
            load: load.to_owned(),
            chunk_size,
            files: entries,
            signature: None,
        };
        m.validate()?;
        Ok(m)
    }

    /// The bytes the signature covers: the manifest without its signature, as JSON.
    pub fn signing_bytes(&self) -> Vec<u8> {
        let unsigned = Manifest {
            signature: None,
            ..self.clone()
        };
        serde_json::to_vec(&unsigned).expect("manifest serialises")
    }

    pub fn sign(&mut self, key: &SigningKey) {
        let sig = key.sign(&self.signing_bytes());
        self.signature = Some(hex::encode(sig.to_bytes()));
    }

    /// With a key configured, an unsigned or badly signed manifest is rejected.
    pub fn check_signature(&self, key: Option<&VerifyingKey>) -> Result<(), ManifestError> {
        let Some(key) = key else { return Ok(()) };
        let sig = self.signature.as_deref().ok_or(ManifestError::Unsigned)?;
        let bytes: [u8; 64] = hex::decode(sig)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or(ManifestError::BadSignature)?;
        key.verify(&self.signing_bytes(), &Signature::from_bytes(&bytes))
            .map_err(|_| ManifestError::BadSignature)
    }

    /// Parses untrusted bytes; total.
    pub fn parse(bytes: &[u8], key: Option<&VerifyingKey>) -> Result<Manifest, ManifestError> {
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(ManifestError::Invalid("larger than 64 MiB".into()));
        }
        let m: Manifest =
            serde_json::from_slice(bytes).map_err(|e| ManifestError::Parse(e.to_string()))?;
        m.validate()?;
        m.check_signature(key)?;
        Ok(m)
    }

    fn validate(&self) -> Result<(), ManifestError> {
        let bad = |why: String| Err(ManifestError::Invalid(why));
        if self.format != FORMAT {
            return bad(format!("format {} (want {FORMAT})", self.format));
        }
        if !(MIN_CHUNK..=MAX_CHUNK).contains(&self.chunk_size) {
            return bad(format!(
                "chunk size {} outside {MIN_CHUNK}..={MAX_CHUNK}",
                self.chunk_size
            ));
        }
        if self.files.is_empty() || self.files.len() > MAX_FILES {
            return bad(format!(
                "{} files (1..={MAX_FILES} allowed)",
                self.files.len()
            ));
        }
        let is_digest = |d: &str| d.len() == 64 && d.bytes().all(|b| b.is_ascii_hexdigit());
        let mut names = std::collections::BTreeSet::new();
        for f in &self.files {
            if !safe_name(&f.name) || !names.insert(f.name.as_str()) {
                return bad(format!("file name {:?} unsafe or repeated", f.name));
            }
            if f.chunks.len() as u64 != f.size.div_ceil(u64::from(self.chunk_size)) {
                return bad(format!(
                    "{}: {} chunk digests for {} bytes",
                    f.name,
                    f.chunks.len(),
                    f.size
                ));
            }
            if !is_digest(&f.digest) || !f.chunks.iter().all(|c| is_digest(c)) {
                return bad(format!("{}: digests must be 64 hex digits", f.name));
            }
        }
        Ok(())
    }

    pub fn file(&self, name: &str) -> Option<&FileEntry> {
        self.files.iter().find(|f| f.name == name)
    }

    pub fn load_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    /// Verifies every file of this load in `dir`, naming the first bad file and chunk.
    pub fn verify_dir(&self, dir: &Path) -> Result<(), ManifestError> {
        for f in &self.files {
            verify_file(f, self.chunk_size, &dir.join(&f.name))?;
        }
        Ok(())
    }
}

/// Verifies one file on disk against its entry, chunk by chunk (through a read-only mapping).
pub fn verify_file(entry: &FileEntry, chunk_size: u32, path: &Path) -> Result<(), ManifestError> {
    let io = |source| ManifestError::Io {
        path: path.to_owned(),
        source,
    };
    let file = fs::File::open(path).map_err(io)?;
    let actual = file.metadata().map_err(io)?.len();
    if actual != entry.size {
        return Err(ManifestError::WrongSize {
            file: entry.name.clone(),
            expected: entry.size,
            actual,
        });
    }
    if actual == 0 {
        return Ok(());
    }
    // SAFETY: read-only mapping of a file we do not modify while it is mapped.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
    for i in 0..entry.chunk_count(chunk_size) {
        let (start, end) = entry.chunk_range(chunk_size, i);
        if !entry.chunk_ok(i, &map[start as usize..end as usize]) {
            return Err(ManifestError::CorruptChunk {
                file: entry.name.clone(),
                chunk: i,
                offset: start,
                end,
            });
        }
    }
    Ok(())
}

/// Component names (and sizes where given) from a `.loads` file: every distinct component
/// of every platform, in file order. See [`crate::loads`] for the formats.
pub fn parse_loads(bytes: &[u8]) -> Result<Vec<(String, Option<u64>)>, ManifestError> {
    let l =
        crate::loads::parse_loads_file(bytes).map_err(|e| ManifestError::Loads(e.to_string()))?;
    Ok(l.distinct_components()
        .into_iter()
        .map(|c| (c.name.clone(), c.size))
        .collect())
}

/// Deterministic pseudo-firmware bytes (xorshift64*), so every test run and every phone in a
/// lab sees the same synthetic load.
pub fn synth_bytes(seed: u64, len: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len as usize);
    while (out.len() as u64) < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        let v = x.wrapping_mul(0x2545_f491_4f6c_dd1d);
        for b in v.to_le_bytes() {
            if (out.len() as u64) < len {
                out.push(b);
            }
        }
    }
    out
}

/// The `.loads` file of the synthetic 7961 load, as a real one looks: a TLV signed header
/// (signature field a plain test placeholder, see [`crate::loads::synth_tlv_header`]) and the
/// CRLF name list of FORMATS.md layout (a).
pub fn synth_loads_file() -> Vec<u8> {
    let (load, files) = LOAD_7961;
    let mut out = crate::loads::synth_tlv_header(&format!("{load}.loads"));
    out.extend_from_slice(
        format!(
            "#\r\n# This file contains a list of archive image files that will be requested by the\r\n\
             # RELEASE load version {LOAD_7961_BUILD}\r\n#\r\n\r\n"
        )
        .as_bytes(),
    );
    for (name, _) in files {
        out.extend_from_slice(format!("{name}\r\n").as_bytes());
    }
    out
}

/// One synthetic component: a TLV signed header naming it, then pseudo-random bytes up to
/// `size` (whole-file size, header included, as in real loads).
pub fn synth_component(name: &str, seed: u64, size: u64) -> Vec<u8> {
    let mut out = crate::loads::synth_tlv_header(name);
    let rest = size.saturating_sub(out.len() as u64);
    out.extend_from_slice(&synth_bytes(seed, rest));
    out.truncate(size as usize);
    out
}

/// Writes the synthetic 7961 load into `dir`: `<load>.loads`, its five components, and the
/// manifest (signed when `key` is given), whose first file is the `.loads` (a phone fetches it
/// first, as a real phone does). Returns the manifest.
pub fn synth_load(
    dir: &Path,
    seed: u64,
    key: Option<&SigningKey>,
) -> Result<Manifest, ManifestError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| ManifestError::Io { path, source }
    };
    fs::create_dir_all(dir).map_err(io(dir))?;
    let (load, files) = LOAD_7961;
    let loads_path = dir.join(format!("{load}.loads"));
    fs::write(&loads_path, synth_loads_file()).map_err(io(&loads_path))?;
    let mut paths = vec![loads_path];
    for (i, (name, size)) in files.iter().enumerate() {
        let path = dir.join(name);
        fs::write(
            &path,
            synth_component(name, seed.wrapping_add(i as u64 * 0x9e37_79b9), *size),
        )
        .map_err(io(&path))?;
        paths.push(path);
    }
    let mut m = Manifest::build(load, &paths, DEFAULT_CHUNK)?;
    if let Some(k) = key {
        m.sign(k);
    }
    let mpath = dir.join(MANIFEST_FILE);
    fs::write(&mpath, serde_json::to_vec_pretty(&m).expect("serialises")).map_err(io(&mpath))?;
    Ok(m)
}

/// The `.loads` files in `dir` (extension matched case-insensitively), sorted.
pub fn loads_in_dir(dir: &Path) -> Result<Vec<PathBuf>, ManifestError> {
    let mut out: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(|source| ManifestError::Io {
            path: dir.to_owned(),
            source,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .is_some_and(|e| e.eq_ignore_ascii_case("loads"))
        })
        .collect();
    out.sort();
    Ok(out)
}

fn md5_file(path: &Path) -> Result<String, ManifestError> {
    use md5::Digest;
    let mut file = fs::File::open(path).map_err(|source| ManifestError::Io {
        path: path.to_owned(),
        source,
    })?;
    let mut h = md5::Md5::new();
    std::io::copy(&mut file, &mut h).map_err(|source| ManifestError::Io {
        path: path.to_owned(),
        source,
    })?;
    Ok(hex::encode(h.finalize()))
}

/// The files of the load `lp` names, `.loads` first, each found in `entries` and checked
/// against the size and MD5 the `.loads` lists.
fn files_of_load(lp: &Path, entries: &[PathBuf]) -> Result<Vec<PathBuf>, ManifestError> {
    let bytes = fs::read(lp).map_err(|source| ManifestError::Io {
        path: lp.to_owned(),
        source,
    })?;
    let parsed = crate::loads::parse_loads_file(&bytes)
        .map_err(|e| ManifestError::Loads(format!("{}: {e}", lp.display())))?;
    let mut files = vec![lp.to_owned()];
    for c in parsed.distinct_components() {
        let found = entries
            .iter()
            .find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().eq_ignore_ascii_case(&c.name))
            })
            .ok_or_else(|| {
                ManifestError::Loads(format!(
                    "{} is listed by {} but missing",
                    c.name,
                    lp.display()
                ))
            })?;
        if let Some(size) = c.size {
            let actual = found
                .metadata()
                .map_err(|source| ManifestError::Io {
                    path: found.clone(),
                    source,
                })?
                .len();
            if actual != size {
                return Err(ManifestError::WrongSize {
                    file: c.name.clone(),
                    expected: size,
                    actual,
                });
            }
        }
        if let Some(want) = &c.md5 {
            let got = md5_file(found)?;
            if got != *want {
                return Err(ManifestError::Loads(format!(
                    "{}: MD5 {got} differs from the {want} its .loads lists",
                    c.name
                )));
            }
        }
        files.push(found.clone());
    }
    Ok(files)
}

/// Builds the manifest for a directory.
///
/// With `load` (the name a configuration's `loadInformation` gives, without `.loads`; matched
/// case-insensitively) the manifest covers `<load>.loads` and every component it lists, for
/// every hardware platform; sizes and MD5s the `.loads` lists are checked. Without `load`, a
/// folder must hold exactly one `.loads` (a real TFTP folder holds many: then name one, pfs
/// never guesses), or none, in which case every regular file except the manifest is taken.
pub fn manifest_for_dir(
    dir: &Path,
    chunk_size: u32,
    load: Option<&str>,
) -> Result<Manifest, ManifestError> {
    let io = |source| ManifestError::Io {
        path: dir.to_owned(),
        source,
    };
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(io)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    entries.sort();
    let all_loads = loads_in_dir(dir)?;
    let stem = |p: &Path| {
        p.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let chosen = match load {
        Some(name) => {
            let name = name.strip_suffix(".loads").unwrap_or(name);
            Some(
                all_loads
                    .iter()
                    .find(|p| stem(p).eq_ignore_ascii_case(name))
                    .cloned()
                    .ok_or_else(|| {
                        ManifestError::Loads(format!(
                            "{name}.loads is not in {} (it holds {})",
                            dir.display(),
                            names_of(&all_loads)
                        ))
                    })?,
            )
        }
        None if all_loads.len() > 1 => {
            return Err(ManifestError::Loads(format!(
                "{} holds {} .loads files ({}): name one with --load NAME",
                dir.display(),
                all_loads.len(),
                names_of(&all_loads)
            )));
        }
        None => all_loads.first().cloned(),
    };
    let (load, files) = match chosen {
        Some(lp) => (stem(&lp), files_of_load(&lp, &entries)?),
        None => {
            let files: Vec<PathBuf> = entries
                .into_iter()
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| !is_manifest_file(&n.to_string_lossy()))
                })
                .collect();
            let name = dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            (name, files)
        }
    };
    Manifest::build(&load, &files, chunk_size)
}

fn names_of(paths: &[PathBuf]) -> String {
    if paths.is_empty() {
        return "none".into();
    }
    paths
        .iter()
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Reads 32 bytes stored as hex (a key file from `pfs key generate`).
fn read_hex32(path: &Path) -> Result<[u8; 32], ManifestError> {
    let text = fs::read_to_string(path).map_err(|source| ManifestError::Io {
        path: path.to_owned(),
        source,
    })?;
    hex::decode(text.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| ManifestError::Invalid(format!("{}: not 64 hex digits", path.display())))
}

/// Reads a 32-byte ed25519 seed stored as hex.
pub fn read_signing_key(path: &Path) -> Result<SigningKey, ManifestError> {
    Ok(SigningKey::from_bytes(&read_hex32(path)?))
}

pub fn read_verifying_key(path: &Path) -> Result<VerifyingKey, ManifestError> {
    VerifyingKey::from_bytes(&read_hex32(path)?)
        .map_err(|_| ManifestError::Invalid(format!("{}: not an ed25519 key", path.display())))
}

/// A fresh key pair from the kernel's random source: (secret seed, public key).
pub fn generate_key() -> std::io::Result<(SigningKey, VerifyingKey)> {
    let mut seed = [0u8; 32];
    fs::File::open("/dev/urandom")?.read_exact(&mut seed)?;
    let sk = SigningKey::from_bytes(&seed);
    let vk = sk.verifying_key();
    Ok((sk, vk))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tmp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("pfs-manifest-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn synthetic_load_round_trips_and_verifies() {
        let dir = tmp("synth");
        let m = synth_load(&dir, 7, None).unwrap();
        assert_eq!(m.files.len(), 6);
        assert_eq!(m.files[0].name, "SCCP41.9-4-2SR3-1S.loads");
        assert_eq!(m.load_bytes(), 8_126_582 + m.files[0].size);
        m.verify_dir(&dir).unwrap();
        // The .loads reads back as a real one: TLV header, placeholder signature, components
        // whose build id differs from the load id, in the real order.
        let l =
            crate::loads::parse_loads_file(&fs::read(dir.join(&m.files[0].name)).unwrap()).unwrap();
        let Some(crate::loads::SignedHeader::Tlv(h)) = &l.header else {
            panic!("no TLV header")
        };
        assert!(h.test_placeholder);
        assert_eq!(l.version.as_deref(), Some(LOAD_7961_BUILD));
        let names: Vec<&str> = l.components.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, LOAD_7961.1.map(|f| f.0));
        // Each component starts with its own signed header.
        let c = fs::read(dir.join(names[0])).unwrap();
        assert_eq!(
            crate::loads::parse_signed_header(&c)
                .unwrap()
                .unwrap()
                .file_name(),
            Some(names[0])
        );
        let again = manifest_for_dir(&dir, DEFAULT_CHUNK, None).unwrap();
        assert_eq!(
            again.files, m.files,
            "the .loads file lists the same components"
        );
        let parsed = Manifest::parse(&fs::read(dir.join(MANIFEST_FILE)).unwrap(), None).unwrap();
        assert_eq!(parsed, m);
        // Deterministic content.
        let other = tmp("synth2");
        assert_eq!(synth_load(&other, 7, None).unwrap(), m);
        let _ = fs::remove_dir_all(&dir);
        let _ = fs::remove_dir_all(&other);
    }

    #[test]
    fn a_folder_with_many_loads_needs_the_load_named() {
        let dir = tmp("many");
        let m = synth_load(&dir, 4, None).unwrap();
        // A second load whose .loads lists files this folder lacks, and one that matches.
        let mut other = crate::loads::synth_tlv_header("SIP41.9-4-2SR3-1S.loads");
        other.extend_from_slice(b"jar41sip.9-4-2ES26.sbn\r\n");
        fs::write(dir.join("SIP41.9-4-2SR3-1S.loads"), other).unwrap();
        let err = manifest_for_dir(&dir, DEFAULT_CHUNK, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("--load"), "{err}");
        let again = manifest_for_dir(&dir, DEFAULT_CHUNK, Some("sccp41.9-4-2SR3-1S")).unwrap();
        assert_eq!(again.files, m.files);
        let err = manifest_for_dir(&dir, DEFAULT_CHUNK, Some("SIP41.9-4-2SR3-1S"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("jar41sip.9-4-2ES26.sbn is listed"), "{err}");
        let err = manifest_for_dir(&dir, DEFAULT_CHUNK, Some("nope"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("nope.loads is not in"), "{err}");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn corruption_names_file_and_chunk() {
        let dir = tmp("corrupt");
        let m = synth_load(&dir, 1, None).unwrap();
        let victim = dir.join("cvm41sccp.9-4-2ES26.sbn");
        let mut bytes = fs::read(&victim).unwrap();
        bytes[3 * 65536 + 10] ^= 0xff;
        fs::write(&victim, bytes).unwrap();
        match m.verify_dir(&dir) {
            Err(ManifestError::CorruptChunk { file, chunk, .. }) => {
                assert_eq!(file, "cvm41sccp.9-4-2ES26.sbn");
                assert_eq!(chunk, 3);
            }
            other => panic!("{other:?}"),
        }
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn signatures_are_required_when_a_key_is_configured() {
        let dir = tmp("sign");
        let (sk, vk) = generate_key().unwrap();
        let m = synth_load(&dir, 2, Some(&sk)).unwrap();
        let bytes = fs::read(dir.join(MANIFEST_FILE)).unwrap();
        Manifest::parse(&bytes, Some(&vk)).expect("good signature");
        let (_, other) = generate_key().unwrap();
        assert!(matches!(
            Manifest::parse(&bytes, Some(&other)),
            Err(ManifestError::BadSignature)
        ));
        let mut tampered = m.clone();
        tampered.files[0].size += 0; // same
        tampered.load.push('X');
        let t = serde_json::to_vec(&tampered).unwrap();
        assert!(matches!(
            Manifest::parse(&t, Some(&vk)),
            Err(ManifestError::BadSignature)
        ));
        let mut unsigned = m;
        unsigned.signature = None;
        let u = serde_json::to_vec(&unsigned).unwrap();
        assert!(matches!(
            Manifest::parse(&u, Some(&vk)),
            Err(ManifestError::Unsigned)
        ));
        Manifest::parse(&u, None).expect("no key configured: unsigned accepted");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn loads_parsing_is_bounded() {
        let ok = parse_loads(b"# c\nA.sbn\nb.SBN\n").unwrap();
        assert_eq!(ok, vec![("A.sbn".into(), None), ("b.SBN".into(), None)]);
        let mut hdr = vec![1, 0, 2, 1, 1, 2, 0, 2, 0xff, 0xff];
        hdr.extend_from_slice(b"a.sbn\n");
        assert!(parse_loads(&hdr).is_err());
        assert!(parse_loads(b"../etc/passwd\n").is_err());
        assert!(parse_loads(b"").is_err());
        assert!(parse_loads(b"a.sbn notanumber\n").is_err());
    }

    proptest! {
        #[test]
        fn arbitrary_manifest_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Manifest::parse(&bytes, None);
            let _ = parse_loads(&bytes);
        }
    }
}
