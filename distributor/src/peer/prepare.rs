//! Before a phone runs: its manifest fetched and verified, its place (interface or namespace), its sockets.

use super::*;

/// Fetches and checks the manifest from the origin (or reads it from a served directory).
pub(super) fn load_manifest(opts: &PeerOptions) -> Result<Manifest, PeerError> {
    let key = opts.public_key.as_ref();
    match &opts.source {
        Source::Serve(dir) => {
            let bytes = std::fs::read(dir.join(MANIFEST_FILE))
                .map_err(io_err(dir.join(MANIFEST_FILE).display().to_string()))?;
            let m = Manifest::parse(&bytes, key)?;
            m.verify_dir(dir)?;
            Ok(m)
        }
        Source::Origin(spec) => {
            let urls = origin_urls(spec);
            if urls.is_empty() {
                return Err(PeerError::Usage("no origin URL".into()));
            }
            let mut bytes = Vec::new();
            let mut last = None;
            // The origin may not be reachable the instant the fleet boots: a few bounded tries,
            // each URL in turn.
            'tries: for attempt in 0..5u32 {
                for url in &urls {
                    bytes.clear();
                    match manifest_from(url, opts, &mut bytes) {
                        Ok(()) => {
                            last = None;
                            break 'tries;
                        }
                        Err(e) => {
                            warn!("manifest fetch attempt {} from {url}: {e}", attempt + 1);
                            last = Some(e);
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(500 << attempt.min(3)));
            }
            if let Some(e) = last {
                return Err(e);
            }
            Ok(Manifest::parse(&bytes, key)?)
        }
    }
}

/// The manifest at one origin URL (TFTP or HTTP), capped at [`MAX_MANIFEST_BYTES`].
pub(super) fn manifest_from(
    url: &str,
    opts: &PeerOptions,
    bytes: &mut Vec<u8>,
) -> Result<(), PeerError> {
    let too_large = || {
        PeerError::Manifest(crate::manifest::ManifestError::Invalid(
            "larger than the manifest cap".into(),
        ))
    };
    if url.starts_with("http://") {
        let at = crate::http::HttpUrl::parse(url)
            .map_err(|e| PeerError::Usage(e.to_string()))?
            .join(MANIFEST_FILE);
        let mut sink = |_: u64, d: &[u8]| -> Result<(), PeerError> {
            if bytes.len() + d.len() > MAX_MANIFEST_BYTES {
                return Err(too_large());
            }
            bytes.extend_from_slice(d);
            Ok(())
        };
        crate::http::get(&at, 0, Duration::from_secs(10), &mut sink)?;
        return Ok(());
    }
    let (server, dir) = fetch::parse_base_url(url)?;
    let dir = dir.trim_end_matches('/');
    let path = if dir.is_empty() {
        MANIFEST_FILE.to_owned()
    } else {
        format!("{dir}/{MANIFEST_FILE}")
    };
    fetch::transfer(server, &path, opts.tftp.clone(), &mut |d| {
        if bytes.len() + d.len() > MAX_MANIFEST_BYTES {
            return Err(FetchError::Manifest {
                server,
                file: path.clone(),
                source: crate::manifest::ManifestError::Invalid(
                    "larger than the manifest cap".into(),
                ),
            });
        }
        bytes.extend_from_slice(d);
        Ok(())
    })?;
    Ok(())
}

/// Where a phone's sockets are made: this thread's network namespace, or a named one (a
/// virtual phone of `pfs lab`), entered on the calling thread for the moment a socket is made
/// (no thread per socket). Sockets keep working from any thread once made.
#[derive(Debug, Clone)]
pub enum Place {
    Here,
    Netns(Arc<crate::netns::NsHandle>),
}

impl Place {
    /// Opens a handle on namespace `name` (one descriptor, held while the place lives).
    pub fn netns(name: &str) -> Result<Place, PeerError> {
        crate::netns::NsHandle::open(name)
            .map(|h| Place::Netns(Arc::new(h)))
            .map_err(|e| PeerError::Usage(format!("network namespace {name}: {e}")))
    }

    pub(super) fn run<T>(&self, f: impl FnOnce() -> T) -> Result<T, PeerError> {
        match self {
            Place::Here => Ok(f()),
            Place::Netns(ns) => ns
                .run_here(f)
                .map_err(|e| PeerError::Usage(format!("network namespace {}: {e}", ns.name()))),
        }
    }
}

/// What a phone learns and opens at power-on, inside its namespace: its address, the
/// manifest, and its election socket and chunk listener.
pub struct Prepared {
    me: Ipv4Addr,
    bcast: Ipv4Addr,
    manifest: Manifest,
    udp: UdpSocket,
    listener: TcpListener,
}

impl Prepared {
    pub fn new(opts: &PeerOptions, place: &Place) -> Result<Prepared, PeerError> {
        if opts.fanout == 0 {
            return Err(PeerError::Usage("--fanout must be at least 1".into()));
        }
        let opts = opts.clone();
        place.run(move || {
            let (me, bcast) = iface_addrs(&opts.iface)?;
            let manifest = load_manifest(&opts)?;
            let udp = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, opts.port))
                .map_err(io_err(format!("UDP port {}", opts.port)))?;
            udp.set_broadcast(true).map_err(io_err("SO_BROADCAST"))?;
            nix::sys::socket::setsockopt(
                &udp,
                nix::sys::socket::sockopt::BindToDevice,
                &std::ffi::OsString::from(&opts.iface),
            )
            .map_err(|e| io_err("SO_BINDTODEVICE")(e.into()))?;
            // DSCP CS6 (network control): where the LAN honours it, adverts are not the packets
            // dropped behind bulk chunk traffic.
            let _ = nix::sys::socket::setsockopt(&udp, nix::sys::socket::sockopt::Ipv4Tos, &0xc0);
            let listener = TcpListener::bind(SocketAddrV4::new(me, opts.port))
                .map_err(io_err(format!("TCP {me}:{}", opts.port)))?;
            Ok(Prepared {
                me,
                bcast,
                manifest,
                udp,
                listener,
            })
        })?
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }
}

impl Peer {
    /// Starts phone number `slot` (>= 1) on a shared reactor.
    pub fn start(
        opts: PeerOptions,
        prepared: Prepared,
        reactor: SharedReactor,
        slot: u64,
        place: Place,
    ) -> Result<Peer, PeerError> {
        let Prepared {
            me,
            bcast,
            manifest,
            udp,
            listener,
        } = prepared;
        let base = slot << PHONE_SHIFT;
        let store = Store::new(&opts.store);
        let done_already = store.current().as_deref() == Some(manifest.load.as_str());
        let files = manifest
            .files
            .iter()
            .map(|entry| file_state(&opts, &store, &manifest, entry, done_already))
            .collect::<Result<Vec<_>, PeerError>>()?;
        let phone = phone_with(me, opts.seed, &files);
        let cfg = Config {
            mode: opts.mode,
            fanout: opts.fanout,
            ..Config::default()
        };
        {
            let mut r = reactor.borrow_mut();
            info!(
                peer = %me, broadcast = %bcast, iface = %opts.iface, load = %manifest.load, files = files.len(),
                backend = r.stats().backend, mode = ?opts.mode,
                "pfs peer starting"
            );
            r.udp(base | UDP_TOKEN, udp).map_err(io_err("UDP"))?;
            r.listen(base | LISTEN_TOKEN, listener)
                .map_err(io_err("listen"))?;
        }
        Ok(Peer {
            opts,
            cfg,
            me,
            bcast,
            manifest,
            store,
            files,
            phone,
            reactor,
            base,
            place,
            conns: HashMap::new(),
            to_parent: HashMap::new(),
            from_child: HashMap::new(),
            timers: BTreeMap::new(),
            armed: HashMap::new(),
            pending: std::collections::VecDeque::new(),
            feeding: false,
            timer_late_max: 0,
            next_token: 16,
            start: Instant::now(),
            actions: Vec::new(),
            inbox: Inbox::default(),
            last_child_activity: Instant::now(),
            udp: [0; 3],
            sent: BTreeMap::new(),
            activated: done_already,
            installed_at: None,
            started: false,
            fault: Fault::None,
            span: tracing::info_span!("phone", ip = %me),
        })
    }
}

/// One file of the load as the phone starts with it: its hierarchy key, and what it already
/// holds: the whole file (serving, installed, or verified on disk) or a partial download.
fn file_state(
    opts: &PeerOptions,
    store: &Store,
    manifest: &Manifest,
    entry: &FileEntry,
    done_already: bool,
) -> Result<FileState, PeerError> {
    let key = HierarchyKey {
        model: opts.model.clone(),
        file: entry.name.clone(),
        digest: hex_digest(&entry.digest)?,
    };
    key.validate()
        .map_err(|e| PeerError::Usage(format!("model/file {}: {e}", entry.name)))?;
    let chunks = entry.chunk_count(manifest.chunk_size);
    let (partial, map, installed) = match &opts.source {
        Source::Serve(dir) => (None, map_file(&dir.join(&entry.name))?, true),
        Source::Origin(_) if done_already => (
            None,
            map_file(&store.load_dir(&manifest.load).join(&entry.name))?,
            true,
        ),
        Source::Origin(_) => {
            let installed_path = store.load_dir(&manifest.load).join(&entry.name);
            if installed_path.is_file()
                && crate::manifest::verify_file(entry, manifest.chunk_size, &installed_path).is_ok()
            {
                (None, map_file(&installed_path)?, true)
            } else {
                let p = store.partial(manifest, entry)?;
                let map = p.map()?.map(Arc::new);
                (Some(p), map, false)
            }
        }
    };
    Ok(FileState {
        id: key.id(),
        key,
        entry: entry.clone(),
        partial,
        map,
        chunks,
        installed,
        origin: None,
        origin_pick: 0,
        report: FileReport {
            file: entry.name.clone(),
            bytes: entry.size,
            ..FileReport::default()
        },
        next_progress: 10,
    })
}

/// The core for phone `me`: one hierarchy per file, preloaded with what it holds.
fn phone_with(me: Ipv4Addr, seed: u64, files: &[FileState]) -> Phone {
    let specs: Vec<HierarchySpec> = files
        .iter()
        .enumerate()
        .map(|(i, f)| HierarchySpec {
            id: i as u32,
            chunks: f.chunks,
        })
        .collect();
    let mut phone = Phone::new(PeerId::from(me), 100_000, seed, &specs);
    for (i, f) in files.iter().enumerate() {
        let have = if f.installed {
            f.chunks
        } else {
            f.partial.as_ref().map_or(0, Partial::verified_prefix)
        };
        phone.preload(i as u32, have);
    }
    phone
}
