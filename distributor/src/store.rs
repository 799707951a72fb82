//! A phone's image store: partial downloads verified chunk by chunk (an interrupted download
//! resumes from what verifies on disk), atomic install (temp file, fsync, rename, fsync of the
//! directory), and load activation that never removes the previous load until the new one has
//! fully verified.
//!
//! Layout under the store root: `loads/<load>/<file>` (installed files),
//! `loads/<load>/.<file>.partial` (in progress), `current` (name of the active load, replaced
//! atomically). No bitmap is kept: on resume every chunk of the partial file is verified
//! against the manifest again (BLAKE3 of a 8 MB load takes milliseconds), which also catches
//! torn writes, and a chunk costs one write instead of a write, two fsyncs and a rename (at 400
//! lab phones that bookkeeping was 300,000 syscalls per run).

use std::{
    fs::{self, File, OpenOptions},
    io::Write,
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
};

use crate::manifest::{FileEntry, Manifest, ManifestError};

/// Where scratch stores go: tmpfs (`/dev/shm`) when there is one, so stores stay in memory;
/// the temporary directory otherwise.
pub fn scratch_base() -> PathBuf {
    if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("{file}: chunk {chunk} failed verification; not written")]
    Rejected { file: String, chunk: u32 },
    #[error("{file}: chunk {chunk} is out of range (file has {chunks})")]
    OutOfRange {
        file: String,
        chunk: u32,
        chunks: u32,
    },
    #[error("{file}: {missing} chunk(s) still missing, cannot install")]
    Incomplete { file: String, missing: u32 },
    #[error("load {0} is not fully installed; the current load stays active")]
    LoadIncomplete(String),
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// One file being downloaded.
#[derive(Debug)]
pub struct Partial {
    entry: FileEntry,
    chunk_size: u32,
    dir: PathBuf,
    bitmap: Vec<u8>,
}

impl Partial {
    fn paths(dir: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
        (
            dir.join(name),
            dir.join(format!(".{name}.partial")),
            dir.join(format!(".{name}.bitmap")),
        )
    }

    /// Opens (or resumes) the download of `entry` into `dir`. On resume every chunk on disk is
    /// verified again, so a torn write before a crash is never trusted.
    pub fn open(dir: &Path, entry: &FileEntry, chunk_size: u32) -> Result<Partial, StoreError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let (_, part, bits) = Self::paths(dir, &entry.name);
        let resumed = part.is_file();
        // An older store's bitmap is no longer read.
        let _ = fs::remove_file(&bits);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&part)
            .map_err(io_err(&part))?;
        file.set_len(entry.size).map_err(io_err(&part))?;
        let chunks = entry.chunk_count(chunk_size) as usize;
        let bitmap = vec![0; chunks.div_ceil(8)];
        let mut p = Partial {
            entry: entry.clone(),
            chunk_size,
            dir: dir.to_owned(),
            bitmap,
        };
        if resumed {
            let mut buf = vec![0u8; chunk_size as usize];
            for i in 0..chunks as u32 {
                let (start, end) = entry.chunk_range(chunk_size, i);
                let b = &mut buf[..(end - start) as usize];
                if file.read_exact_at(b, start).is_ok() && entry.chunk_ok(i, b) {
                    p.set(i, true);
                }
            }
        }
        Ok(p)
    }

    /// A read-only mapping of the partial file, for relaying verified chunks while the rest
    /// is still arriving (the file has its final size from the start). `None` for an empty file.
    pub fn map(&self) -> Result<Option<memmap2::Mmap>, StoreError> {
        if self.entry.size == 0 {
            return Ok(None);
        }
        let file = self.open_part()?;
        let (_, part, _) = Self::paths(&self.dir, &self.entry.name);
        // SAFETY: the partial file is only written at chunks not yet verified, and only
        // verified chunks are ever read through this mapping (which outlives the descriptor).
        unsafe { memmap2::Mmap::map(&file) }
            .map(Some)
            .map_err(io_err(&part))
    }

    /// The partial file, opened for one write or mapping: no descriptor is held between
    /// chunks (a lab of 1000 phones x 6 files would hold 6000 for nothing).
    fn open_part(&self) -> Result<File, StoreError> {
        let (_, part, _) = Self::paths(&self.dir, &self.entry.name);
        OpenOptions::new()
            .read(true)
            .write(true)
            .open(&part)
            .map_err(io_err(&part))
    }

    pub fn has(&self, i: u32) -> bool {
        self.bitmap
            .get(i as usize / 8)
            .is_some_and(|b| b & (1 << (i % 8)) != 0)
    }

    fn set(&mut self, i: u32, on: bool) {
        let byte = &mut self.bitmap[i as usize / 8];
        if on {
            *byte |= 1 << (i % 8);
        } else {
            *byte &= !(1 << (i % 8));
        }
    }

    pub fn chunks(&self) -> u32 {
        self.entry.chunk_count(self.chunk_size)
    }

    /// Chunks verified from the start without a gap: where a resumed transfer continues.
    pub fn verified_prefix(&self) -> u32 {
        (0..self.chunks()).take_while(|&i| self.has(i)).count() as u32
    }

    pub fn missing(&self) -> u32 {
        (0..self.chunks()).filter(|&i| !self.has(i)).count() as u32
    }

    /// Verifies chunk `i` and writes it; a chunk that fails is rejected and never written.
    pub fn write_chunk(&mut self, i: u32, bytes: &[u8]) -> Result<(), StoreError> {
        if i >= self.chunks() {
            return Err(StoreError::OutOfRange {
                file: self.entry.name.clone(),
                chunk: i,
                chunks: self.chunks(),
            });
        }
        let (start, end) = self.entry.chunk_range(self.chunk_size, i);
        if bytes.len() as u64 != end - start || !self.entry.chunk_ok(i, bytes) {
            return Err(StoreError::Rejected {
                file: self.entry.name.clone(),
                chunk: i,
            });
        }
        let (_, part, _) = Self::paths(&self.dir, &self.entry.name);
        let file = self.open_part()?;
        file.write_all_at(bytes, start).map_err(io_err(&part))?;
        self.set(i, true);
        Ok(())
    }

    /// Makes the file durable and renames it into place, once every chunk is verified.
    ///
    /// The file is not hashed again: each chunk was checked against the manifest's digest
    /// before it was written ([`Partial::write_chunk`]), or read back and checked when the
    /// download resumed ([`Partial::open`]), and the chunk ranges tile the file. A second
    /// whole-file hash here read the same page-cache bytes again; with hundreds of phones on a
    /// core finishing at once it was most of the CPU at the end of a lab run (perf, issue 13).
    /// Errors: [`StoreError::Incomplete`] if any chunk is unverified; I/O errors with the path.
    pub fn install(self) -> Result<PathBuf, StoreError> {
        let missing = self.missing();
        if missing > 0 {
            return Err(StoreError::Incomplete {
                file: self.entry.name.clone(),
                missing,
            });
        }
        let (fin, part, bits) = Self::paths(&self.dir, &self.entry.name);
        self.open_part()?.sync_all().map_err(io_err(&part))?;
        fs::rename(&part, &fin).map_err(io_err(&fin))?;
        let _ = fs::remove_file(&bits);
        sync_dir(&self.dir)?;
        Ok(fin)
    }
}

/// The store of one phone.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    pub fn new(root: &Path) -> Store {
        Store {
            root: root.to_owned(),
        }
    }

    pub fn load_dir(&self, load: &str) -> PathBuf {
        self.root.join("loads").join(load)
    }

    pub fn partial(&self, m: &Manifest, file: &FileEntry) -> Result<Partial, StoreError> {
        Partial::open(&self.load_dir(&m.load), file, m.chunk_size)
    }

    /// The active load, if any.
    pub fn current(&self) -> Option<String> {
        fs::read_to_string(self.root.join("current"))
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    }

    /// A read-only mapping of an installed file, for relaying chunks to children without
    /// copying them into user space. Installed files are never modified in place (a new load
    /// goes to its own directory), so the mapping stays valid while it is held.
    pub fn map(&self, load: &str, file: &str) -> Result<memmap2::Mmap, StoreError> {
        let path = self.load_dir(load).join(file);
        let f = File::open(&path).map_err(io_err(&path))?;
        // SAFETY: installed files are only ever replaced by rename, never written in place.
        unsafe { memmap2::Mmap::map(&f) }.map_err(io_err(&path))
    }

    /// Makes `m` the active load after verifying every file of it; until then (and if that
    /// fails) the previous load stays active and untouched.
    pub fn activate(&self, m: &Manifest) -> Result<(), StoreError> {
        self.require_complete(m)?;
        m.verify_dir(&self.load_dir(&m.load))?;
        self.commit(m)
    }

    /// Makes `m` the active load when every file of it was verified by this process: installed
    /// through [`Partial::install`] (chunk by chunk) or checked with
    /// [`crate::manifest::verify_file`] when found on disk. Skips [`Store::activate`]'s
    /// whole-load hash, which a phone that has just verified every chunk does not need.
    /// Errors: [`StoreError::LoadIncomplete`] if a file is missing; I/O errors with the path.
    pub fn activate_verified(&self, m: &Manifest) -> Result<(), StoreError> {
        self.require_complete(m)?;
        self.commit(m)
    }

    fn require_complete(&self, m: &Manifest) -> Result<(), StoreError> {
        let dir = self.load_dir(&m.load);
        if m.files.iter().all(|f| dir.join(&f.name).is_file()) {
            Ok(())
        } else {
            Err(StoreError::LoadIncomplete(m.load.clone()))
        }
    }

    /// Writes the manifest beside the load and points `current` at it, atomically.
    fn commit(&self, m: &Manifest) -> Result<(), StoreError> {
        let dir = self.load_dir(&m.load);
        let manifest_path = dir.join(crate::manifest::MANIFEST_FILE);
        fs::write(
            &manifest_path,
            serde_json::to_vec_pretty(m).expect("serialises"),
        )
        .map_err(io_err(&manifest_path))?;
        let tmp = self.root.join(".current-new");
        let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(m.load.as_bytes()).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
        let cur = self.root.join("current");
        fs::rename(&tmp, &cur).map_err(io_err(&cur))?;
        sync_dir(&self.root)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::synth_load;

    fn tmp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("pfs-store-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    fn chunk(src: &Path, e: &FileEntry, cs: u32, i: u32) -> Vec<u8> {
        let data = fs::read(src.join(&e.name)).unwrap();
        let (a, b) = e.chunk_range(cs, i);
        data[a as usize..b as usize].to_vec()
    }

    #[test]
    fn interrupted_download_resumes_from_verified_chunks_and_installs_atomically() {
        let src = tmp("src");
        let m = synth_load(&src, 3, None).unwrap();
        let store = Store::new(&tmp("phone"));
        let e = m
            .files
            .iter()
            .find(|f| f.chunk_count(m.chunk_size) > 11)
            .unwrap();
        let cs = m.chunk_size;
        {
            let mut p = store.partial(&m, e).unwrap();
            for i in 0..10 {
                p.write_chunk(i, &chunk(&src, e, cs, i)).unwrap();
            }
            // A corrupt chunk is refused and leaves no trace.
            let mut bad = chunk(&src, e, cs, 10);
            bad[0] ^= 1;
            assert!(matches!(
                p.write_chunk(10, &bad),
                Err(StoreError::Rejected { chunk: 10, .. })
            ));
            assert_eq!(p.verified_prefix(), 10);
            // "Crash": drop without installing.
        }
        // Tear a verified chunk on disk: resume must notice and refetch it.
        let part = store.load_dir(&m.load).join(format!(".{}.partial", e.name));
        let f = OpenOptions::new().write(true).open(&part).unwrap();
        f.write_all_at(&[0xff; 16], u64::from(cs) * 4).unwrap();
        let p = store.partial(&m, e).unwrap();
        assert_eq!(p.verified_prefix(), 4, "chunk 4 was torn");
        assert!(matches!(
            p.install(),
            Err(StoreError::Incomplete { missing, .. }) if missing == e.chunk_count(cs) - 9
        ));
        let mut p = store.partial(&m, e).unwrap();
        for i in 0..p.chunks() {
            if !p.has(i) {
                p.write_chunk(i, &chunk(&src, e, cs, i)).unwrap();
            }
        }
        let installed = p.install().unwrap();
        assert_eq!(
            fs::read(installed).unwrap(),
            fs::read(src.join(&e.name)).unwrap()
        );
        let _ = fs::remove_dir_all(&src);
    }

    #[test]
    fn previous_load_stays_active_until_the_new_one_verifies() {
        let src_old = tmp("old");
        let mut old = synth_load(&src_old, 1, None).unwrap();
        old.load = "OLD".into();
        let root = tmp("activate");
        let store = Store::new(&root);
        let copy_all = |m: &Manifest, src: &Path| {
            for e in &m.files {
                let mut p = store.partial(m, e).unwrap();
                for i in 0..p.chunks() {
                    p.write_chunk(i, &chunk(src, e, m.chunk_size, i)).unwrap();
                }
                p.install().unwrap();
            }
        };
        copy_all(&old, &src_old);
        store.activate(&old).unwrap();
        assert_eq!(store.current().as_deref(), Some("OLD"));

        let src_new = tmp("new");
        let new = synth_load(&src_new, 2, None).unwrap();
        // Only part of the new load arrives: activation refuses, OLD stays.
        let e = &new.files[0];
        let mut p = store.partial(&new, e).unwrap();
        for i in 0..p.chunks() {
            p.write_chunk(i, &chunk(&src_new, e, new.chunk_size, i))
                .unwrap();
        }
        p.install().unwrap();
        assert!(matches!(
            store.activate(&new),
            Err(StoreError::LoadIncomplete(_))
        ));
        assert!(matches!(
            store.activate_verified(&new),
            Err(StoreError::LoadIncomplete(_))
        ));
        assert_eq!(store.current().as_deref(), Some("OLD"));
        old.verify_dir(&store.load_dir("OLD")).unwrap();
        copy_all(&new, &src_new);
        store.activate(&new).unwrap();
        assert_eq!(store.current().as_deref(), Some(new.load.as_str()));
        // Relays read installed images through a read-only mapping.
        let e = &new.files[1];
        let map = store.map(&new.load, &e.name).unwrap();
        let (a, b) = e.chunk_range(new.chunk_size, 3);
        assert!(e.chunk_ok(3, &map[a as usize..b as usize]));
        for d in [src_old, src_new, root] {
            let _ = fs::remove_dir_all(d);
        }
    }
}
