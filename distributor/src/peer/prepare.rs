//! Before a phone runs: its manifest fetched and verified, its place (interface or namespace), its sockets.

use super::*;

/// Fetches and checks the manifest from the origin (or reads it from a served directory),
/// with its bytes as they came.
pub(super) fn load_manifest(opts: &PeerOptions) -> Result<(Manifest, Vec<u8>), PeerError> {
    let key = opts.public_key.as_ref();
    match &opts.source {
        Source::Serve(dir) => {
            let bytes = std::fs::read(dir.join(MANIFEST_FILE))
                .map_err(io_err(dir.join(MANIFEST_FILE).display().to_string()))?;
            let m = Manifest::parse(&bytes, key)?;
            m.verify_dir(dir)?;
            Ok((m, bytes))
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
            Ok((Manifest::parse(&bytes, key)?, bytes))
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
    /// None when the manifest comes over the LAN after power-on.
    manifest: Option<(Manifest, Vec<u8>)>,
    udp: UdpSocket,
    /// Bound to the broadcast address: adverts only (see [`election_sockets`]).
    adverts: UdpSocket,
    listener: TcpListener,
}

/// The election socket's receive buffer (bytes requested; the kernel doubles it): about 2000
/// datagrams at the ~1 KiB a small broadcast costs off a veth, so a turn of a second under a
/// 1000-phone election's broadcasts loses nothing. Memory is only charged while it is full.
const ELECTION_RCVBUF: usize = 2 << 20;

/// The election's two UDP sockets on `opts.port`: one bound to the phone's address (what is
/// sent to it alone: Join, Accept, Reject, Leave, Lease; and everything it sends), one bound
/// to the broadcast address (adverts, which only broadcasts carry).
///
/// One socket for both let unicast bury adverts: a new root takes a Join from every phone of
/// the site within a second, and with 1000 lab phones on 2 cores its receive queue overflowed
/// (`RcvbufErrors`), so the adverts of the other files' roots were dropped with the Joins.
/// Those roots then looked silent for `root_timeout` and were re-elected while alive (3-5
/// roots of one file, up to 4 x the WAN limit). With two queues a flood of Joins cannot cost
/// an advert. Errors: the bind or a socket option that must hold ([`PeerError::Io`]).
fn election_sockets(
    opts: &PeerOptions,
    me: Ipv4Addr,
    bcast: Ipv4Addr,
) -> Result<(UdpSocket, UdpSocket), PeerError> {
    use nix::sys::socket::{setsockopt, sockopt};
    let to_device = |s: &dyn std::os::fd::AsFd| {
        setsockopt(
            &s.as_fd(),
            sockopt::BindToDevice,
            &std::ffi::OsString::from(&opts.iface),
        )
        .map_err(|e| io_err("SO_BINDTODEVICE")(e.into()))
    };
    let unicast = UdpSocket::bind(SocketAddrV4::new(me, opts.port))
        .map_err(io_err(format!("UDP {me}:{}", opts.port)))?;
    unicast
        .set_broadcast(true)
        .map_err(io_err("SO_BROADCAST"))?;
    // Several phones of one host may share a broadcast address on different interfaces;
    // each gets every broadcast (SO_REUSEADDR), and SO_BINDTODEVICE keeps them apart.
    let adverts = {
        use nix::sys::socket::{AddressFamily, SockFlag, SockType, SockaddrIn, bind, socket};
        use std::os::fd::AsRawFd;
        let s = socket(
            AddressFamily::Inet,
            SockType::Datagram,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(|e| io_err("UDP socket")(e.into()))?;
        setsockopt(&s, sockopt::ReuseAddr, &true).map_err(|e| io_err("SO_REUSEADDR")(e.into()))?;
        // Before the bind, so the address is shared only among sockets of other interfaces.
        to_device(&s)?;
        bind(
            s.as_raw_fd(),
            &SockaddrIn::from(SocketAddrV4::new(bcast, opts.port)),
        )
        .map_err(|e| io_err(format!("UDP {bcast}:{}", opts.port))(e.into()))?;
        UdpSocket::from(s)
    };
    for s in [&unicast, &adverts] {
        // Election traffic lands in bursts while the loop is busy elsewhere: 1000 lab phones
        // on 2 cores lost 40 % of it at the default buffer (RcvbufErrors).
        let got = crate::fetch::receive_buffer(s, ELECTION_RCVBUF);
        tracing::debug!(?got, "election socket receive buffer");
    }
    to_device(&unicast)?;
    // DSCP CS6 (network control): where the LAN honours it, adverts are not the packets
    // dropped behind bulk chunk traffic.
    let _ = setsockopt(&unicast, sockopt::Ipv4Tos, &0xc0);
    Ok((unicast, adverts))
}

impl Prepared {
    pub fn new(opts: &PeerOptions, place: &Place) -> Result<Prepared, PeerError> {
        if opts.fanout == 0 {
            return Err(PeerError::Usage("--fanout must be at least 1".into()));
        }
        let opts = opts.clone();
        place.run(move || {
            let (me, bcast) = iface_addrs(&opts.iface)?;
            // A phone that can verify a peer's manifest (a key, peer sharing) takes it from the
            // LAN after power-on; a served load's is at hand.
            let from_lan = lan_manifest(&opts) && matches!(opts.source, Source::Origin(_));
            let manifest = if from_lan {
                None
            } else {
                Some(load_manifest(&opts)?)
            };
            let (udp, adverts) = election_sockets(&opts, me, bcast)?;
            let listener = TcpListener::bind(SocketAddrV4::new(me, opts.port))
                .map_err(io_err(format!("TCP {me}:{}", opts.port)))?;
            Ok(Prepared {
                me,
                bcast,
                manifest,
                udp,
                adverts,
                listener,
            })
        })?
    }

    /// The manifest, when known before power-on.
    pub fn manifest(&self) -> Option<&Manifest> {
        self.manifest.as_ref().map(|m| &m.0)
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
            adverts,
            listener,
        } = prepared;
        let base = slot << PHONE_SHIFT;
        let store = Store::new(&opts.store);
        let mut phone = Phone::new(PeerId::from(me), 100_000, opts.seed, &[]);
        let mut files = Vec::new();
        if lan_manifest(&opts) {
            let held = manifest.as_ref().map(|m| m.1.as_slice());
            files.push(manifest_state(&opts, held)?);
            phone.add_hierarchies(&[HierarchySpec { id: 0, chunks: 1 }]);
            phone.preload(0, u32::from(held.is_some()));
        }
        let done_already = manifest
            .as_ref()
            .is_some_and(|m| store.current().as_deref() == Some(m.0.load.as_str()));
        if let Some((m, _)) = &manifest {
            add_files(&opts, &store, m, &mut files, &mut phone)?;
        }
        let cfg = Config {
            mode: opts.mode,
            fanout: opts.fanout,
            n_max: opts.max_site_phones,
            ..Config::default()
        };
        {
            let mut r = reactor.borrow_mut();
            info!(
                peer = %me, broadcast = %bcast, iface = %opts.iface, files = files.len(),
                backend = r.stats().backend, mode = ?opts.mode,
                "pfs peer starting"
            );
            r.udp(base | UDP_TOKEN, udp).map_err(io_err("UDP"))?;
            r.udp(base | ADVERT_TOKEN, adverts)
                .map_err(io_err("UDP (broadcast)"))?;
            r.listen(base | LISTEN_TOKEN, listener)
                .map_err(io_err("listen"))?;
        }
        Ok(Peer {
            opts,
            cfg,
            me,
            bcast,
            manifest: manifest.map(|m| m.0),
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
            hung: Arc::new(AtomicBool::new(false)),
            span: tracing::info_span!("phone", ip = %me),
        })
    }
}

/// The IPv4 address and broadcast address of `iface` (computed from the netmask when the
/// address was added without one, as `ip addr add A/N` does).
pub fn iface_addrs(iface: &str) -> Result<(Ipv4Addr, Ipv4Addr), PeerError> {
    let addrs = nix::ifaddrs::getifaddrs().map_err(|e| io_err(iface)(e.into()))?;
    for a in addrs {
        if a.interface_name != iface {
            continue;
        }
        let Some(addr) = a
            .address
            .as_ref()
            .and_then(|x| x.as_sockaddr_in())
            .map(|x| x.ip())
        else {
            continue;
        };
        let given = a
            .broadcast
            .as_ref()
            .and_then(|x| x.as_sockaddr_in())
            .map(|x| x.ip())
            .filter(|b| !b.is_unspecified() && *b != addr);
        let mask = a
            .netmask
            .as_ref()
            .and_then(|x| x.as_sockaddr_in())
            .map_or(u32::MAX, |m| u32::from(m.ip()));
        if mask == u32::MAX {
            continue; // a point-to-point /32 has no broadcast domain
        }
        let bcast = given.unwrap_or(Ipv4Addr::from(u32::from(addr) | !mask));
        return Ok((addr, bcast));
    }
    Err(PeerError::NoAddress(iface.to_owned()))
}

/// One file of the load as the phone starts with it: its hierarchy key, and what it already
/// holds: the whole file (serving, installed, or verified on disk) or a partial download.
pub(super) fn file_state(
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
        is_manifest: false,
        chunk_size: manifest.chunk_size,
    })
}
