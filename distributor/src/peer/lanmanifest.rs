//! The load's manifest over the LAN: a hierarchy of its own (index 0) whose one chunk is the
//! signed manifest, elected, fetched by its root and relayed like any file; every phone checks
//! the signature with its configured key before it uses or relays it, then adds the load's
//! files. A keyless phone (nothing to check a peer's manifest with) fetches its own from the
//! origin before power-on instead (docs/protocol.md, "The manifest over the LAN").

use super::*;

/// The largest manifest the LAN carries: one chunk frame. A larger one is refused from peers
/// and, fetched by a root, fails (the phones fall back to the origin through leases).
pub(super) const MAX_LAN_MANIFEST: usize = wire::MAX_CHUNK_DATA;

/// Whether this phone takes its manifest from (and shares it over) the LAN: it can verify a
/// peer's manifest (a public key) and shares files with peers at all.
pub(super) fn lan_manifest(opts: &PeerOptions) -> bool {
    opts.public_key.is_some() && opts.mode != Mode::Traditional
}

/// The manifest's hierarchy key: the phone's model, the manifest's file name, and in place of a
/// content digest (the content is what is being learnt) BLAKE3 of the load folder the
/// phone's configuration names (the origin URL's last segment; a served load: its folder's
/// name). Phones sent to the same load folder meet in one hierarchy.
pub(super) fn manifest_key(opts: &PeerOptions) -> Result<HierarchyKey, PeerError> {
    let folder = match &opts.source {
        Source::Origin(spec) => origin_urls(spec)
            .first()
            .map(|u| u.trim_end_matches('/').rsplit('/').next().unwrap_or(""))
            .unwrap_or("")
            .to_owned(),
        Source::Serve(dir) => dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    };
    let key = HierarchyKey {
        model: opts.model.clone(),
        file: MANIFEST_FILE.to_owned(),
        digest: *blake3::hash(format!("pfs-manifest:{folder}").as_bytes()).as_bytes(),
    };
    key.validate()
        .map_err(|e| PeerError::Usage(format!("manifest hierarchy of {folder}: {e}")))?;
    Ok(key)
}

/// The manifest's file state; `held`: its bytes when known already (verified).
pub(super) fn manifest_state(
    opts: &PeerOptions,
    held: Option<&[u8]>,
) -> Result<FileState, PeerError> {
    let key = manifest_key(opts)?;
    let mut f = FileState {
        id: key.id(),
        key,
        entry: FileEntry {
            name: MANIFEST_FILE.to_owned(),
            size: 0,
            digest: String::new(),
            chunks: Vec::new(),
        },
        partial: None,
        map: None,
        chunks: 1,
        installed: false,
        origin: None,
        origin_pick: 0,
        report: FileReport {
            file: MANIFEST_FILE.to_owned(),
            manifest: true,
            ..FileReport::default()
        },
        next_progress: 100,
        is_manifest: true,
        chunk_size: 1,
    };
    if let Some(bytes) = held {
        hold(&mut f, bytes)?;
        f.installed = true;
    }
    Ok(f)
}

/// Keeps verified manifest bytes for relaying (an anonymous read-only mapping, so the engine
/// sends it like a file's chunk).
fn hold(f: &mut FileState, bytes: &[u8]) -> Result<(), PeerError> {
    let mut m = memmap2::MmapMut::map_anon(bytes.len().max(1)).map_err(io_err("manifest map"))?;
    m[..bytes.len()].copy_from_slice(bytes);
    f.map = Some(Arc::new(
        m.make_read_only().map_err(io_err("manifest map"))?,
    ));
    f.entry.size = bytes.len() as u64;
    f.entry.digest = blake3::hash(bytes).to_hex().to_string();
    f.chunk_size = bytes.len().max(1) as u32;
    Ok(())
}

/// The load's files as hierarchies `files.len()..`: states (resumed from the store where it
/// holds verified data) and the core's hierarchies, preloaded (they start at `Boot`, or at
/// the `Event::Added` the caller queues).
pub(super) fn add_files(
    opts: &PeerOptions,
    store: &Store,
    manifest: &Manifest,
    files: &mut Vec<FileState>,
    phone: &mut Phone,
) -> Result<(), PeerError> {
    let done_already = store.current().as_deref() == Some(manifest.load.as_str());
    for entry in &manifest.files {
        let f = prepare::file_state(opts, store, manifest, entry, done_already)?;
        let have = if f.installed {
            f.chunks
        } else {
            f.partial.as_ref().map_or(0, Partial::verified_prefix)
        };
        let h = files.len() as u32;
        phone.add_hierarchies(&[HierarchySpec {
            id: h,
            chunks: f.chunks,
        }]);
        phone.preload(h, have);
        files.push(f);
    }
    Ok(())
}

/// A manifest from the LAN or the origin, checked: at most one chunk frame, signed with `key`
/// (no key: nothing to check it with, refused).
pub(super) fn check(
    bytes: &[u8],
    key: Option<&ed25519_dalek::VerifyingKey>,
) -> Result<Manifest, crate::manifest::ManifestError> {
    if bytes.len() > MAX_LAN_MANIFEST {
        return Err(crate::manifest::ManifestError::Invalid(
            "larger than one chunk frame".into(),
        ));
    }
    match key {
        None => Err(crate::manifest::ManifestError::Unsigned),
        Some(k) => Manifest::parse(bytes, Some(k)),
    }
}

impl Peer {
    /// Checks manifest bytes from a peer or the origin: at most one chunk frame, signed with
    /// the configured key. `Ok(false)`: rejected (counted, logged); never used or relayed.
    pub(super) fn manifest_verify(&mut self, h: usize, bytes: &[u8], from: &str) -> bool {
        let checked = check(bytes, self.opts.public_key.as_ref());
        match checked {
            Ok(m) => {
                if let Err(e) = hold(&mut self.files[h], bytes) {
                    warn!("manifest from {from}: {e}");
                    return false;
                }
                self.manifest = Some(m);
                true
            }
            Err(e) => {
                self.files[h].report.corrupt_chunks += 1;
                warn!("manifest from {from} rejected: {e}");
                false
            }
        }
    }

    /// The manifest's one chunk from a parent: verified, then the core is told.
    pub(super) fn manifest_chunk_in(
        &mut self,
        now: Time,
        from: PeerId,
        h: usize,
        data: &[u8],
    ) -> Result<(), PeerError> {
        let fresh = self.phone.hierarchies[h].verified == 0 && !self.files[h].installed;
        let ok = !fresh || self.manifest_verify(h, data, &Ipv4Addr::from(from).to_string());
        if fresh && ok {
            self.files[h].report.peer_bytes += data.len() as u64;
        }
        let msg = Msg::Chunk {
            h: h as u32,
            index: 0,
            have: 1,
            ok,
        };
        self.feed(now, Event::Recv { from, msg })
    }

    /// Manifest bytes from the origin: gathered (bounded) until the transfer ends.
    pub(super) fn manifest_origin_bytes(&mut self, i: usize, data: &[u8]) {
        if let Some(o) = self.files[i].origin.as_mut()
            && o.buf.len() + data.len() <= MAX_LAN_MANIFEST + 1
        {
            o.buf.extend_from_slice(data);
        }
    }

    /// The origin transfer of file `i` ended: a file completes its empty last chunk; the
    /// manifest is checked whole. One that fails is a failed transfer (retried after the
    /// core's back-off, like a busy origin), never a loop of immediate reopens.
    pub(super) fn origin_end(&mut self, now: Time, i: usize) -> Result<(), PeerError> {
        if !self.files[i].is_manifest {
            return self.origin_bytes(now, i, &[]);
        }
        let Some(o) = self.files[i].origin.as_mut() else {
            return Ok(());
        };
        let bytes = std::mem::take(&mut o.buf);
        let fresh = self.phone.hierarchies[i].verified == 0;
        if fresh && !self.manifest_verify(i, &bytes, "the origin") {
            self.files[i].report.origin_errors += 1;
            self.origin_close(i as u32);
            return self.feed(now, Event::OriginBusy { h: i as u32 });
        }
        let ev = Event::OriginChunk {
            h: i as u32,
            index: 0,
            ok: true,
        };
        self.feed(now, ev)
    }

    /// The manifest's hierarchy installed (verified): the load's files join as hierarchies,
    /// started after the current actions.
    pub(super) fn manifest_installed(&mut self, h: usize) -> Result<(), PeerError> {
        let f = &mut self.files[h];
        f.installed = true;
        f.report.installed_s = Some(self.start.elapsed().as_secs_f64());
        let Some(m) = self.manifest.clone() else {
            return Ok(());
        };
        if self.files.len() > 1 {
            return Ok(()); // known before power-on
        }
        info!(load = %m.load, files = m.files.len(), "manifest verified: joining the load's hierarchies");
        add_files(
            &self.opts,
            &self.store,
            &m,
            &mut self.files,
            &mut self.phone,
        )?;
        self.pending.push_back(Event::Added);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed(key: &ed25519_dalek::SigningKey) -> Vec<u8> {
        let digest = blake3::hash(b"firmware").to_hex().to_string();
        let mut m = Manifest {
            format: crate::manifest::FORMAT,
            load: "L".into(),
            chunk_size: 1024,
            files: vec![FileEntry {
                name: "a.bin".into(),
                size: 8,
                digest: digest.clone(),
                chunks: vec![digest],
            }],
            signature: None,
        };
        m.sign(key);
        serde_json::to_vec(&m).unwrap()
    }

    #[test]
    fn only_a_manifest_signed_with_the_configured_key_is_taken_from_a_peer() {
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let other = ed25519_dalek::SigningKey::from_bytes(&[8; 32]);
        let pk = key.verifying_key();
        let good = signed(&key);
        assert_eq!(check(&good, Some(&pk)).unwrap().load, "L");
        // A peer that flips any byte (the lab's corrupt peers flip the first).
        for at in [0, good.len() / 2, good.len() - 2] {
            let mut bad = good.clone();
            bad[at] ^= 0x5a;
            assert!(
                check(&bad, Some(&pk)).is_err(),
                "byte {at} flipped was taken"
            );
        }
        assert!(check(&signed(&other), Some(&pk)).is_err(), "another signer");
        assert!(
            check(&good, None).is_err(),
            "keyless: nothing to check with"
        );
        let mut unsigned: Manifest = serde_json::from_slice(&good).unwrap();
        unsigned.signature = None;
        let unsigned = serde_json::to_vec(&unsigned).unwrap();
        assert!(check(&unsigned, Some(&pk)).is_err(), "unsigned");
        let mut huge = good.clone();
        huge.resize(MAX_LAN_MANIFEST + 1, b' ');
        assert!(check(&huge, Some(&pk)).is_err(), "over one chunk frame");
    }
}
