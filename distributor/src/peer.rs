//! `pfs peer`: one phone on a real interface. Drives the sans-IO [`Phone`] core on an engine
//! reactor: election datagrams on UDP 4051 (broadcast), chunk streams on TCP 4051, the origin
//! over TFTP, verified chunks into the store, relays straight from the mapped image.
//!
//! The manifest (small, signed) comes from the origin first; every hierarchy is then
//! (model, file, digest). A chunk is written to the store only after its digest matched, and
//! only chunks the core counts as verified are ever relayed.

use std::{
    cell::RefCell,
    collections::{BTreeMap, HashMap},
    io,
    net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, UdpSocket},
    path::{Path, PathBuf},
    rc::Rc,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use tracing::{debug, info, trace, warn};

use crate::{
    election::Claim,
    engine::{self, Backend, Completion, EngineStats, Limits, Payload, Reactor, Token},
    fetch::{self, FetchError},
    manifest::{FileEntry, MANIFEST_FILE, MAX_MANIFEST_BYTES, Manifest},
    phone::{
        Action, Config, Event, Excludes, FallbackReason, HierarchySpec, LeaseOp, Mode, Msg, Phone,
        Role, Time, TimerKind,
    },
    store::{Partial, Store},
    tftp::{
        self,
        client::{ClientAction, ClientConfig, ClientError, ClientSession},
    },
    tree::Exclusion,
    wire::{self, HierarchyKey, Message, Tier},
};

pub const PORT: u16 = pfs_common::PFS_PORT;

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("interface {0}: no IPv4 address with a broadcast address")]
    NoAddress(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("manifest: {0}")]
    Manifest(#[from] crate::manifest::ManifestError),
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("http: {0}")]
    Http(#[from] crate::http::HttpError),
    #[error("{0}")]
    Usage(String),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> PeerError {
    let what = what.into();
    move |source| PeerError::Io { what, source }
}

/// Where the load comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// `tftp://HOST[:PORT]/DIR` or `http://HOST[:PORT]/DIR`: manifest and (as root) files
    /// from the origin. Several URLs separated by commas are tried in order, as a phone tries
    /// HTTP first and TFTP when HTTP fails: a failed transfer moves that file to the next.
    Origin(String),
    /// A directory that already holds the load (manifest and files): a permanent root.
    Serve(PathBuf),
}

#[derive(Debug, Clone)]
pub struct PeerOptions {
    pub iface: String,
    pub model: String,
    pub source: Source,
    pub store: PathBuf,
    pub mode: Mode,
    pub fanout: u8,
    pub backend: Backend,
    pub public_key: Option<ed25519_dalek::VerifyingKey>,
    pub tftp: ClientConfig,
    /// Once installed, exit after this long without serving a child (None: run until a
    /// signal; a phone would reboot into the new load here).
    pub linger: Option<Duration>,
    /// Give up (exit non-zero) if not installed by then.
    pub deadline: Option<Duration>,
    pub seed: u64,
    pub port: u16,
}

/// Per file, what happened; part of the final report.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct FileReport {
    pub file: String,
    pub bytes: u64,
    pub role: String,
    pub became_root: bool,
    pub confirmed_root: bool,
    pub parent: Option<Ipv4Addr>,
    pub depth: u8,
    pub max_children: usize,
    pub children_served: usize,
    pub origin_bytes: u64,
    pub peer_bytes: u64,
    pub corrupt_chunks: u64,
    pub fallbacks: u32,
    /// Why, one entry per fallback.
    pub fallback_reasons: Vec<FallbackReason>,
    /// Times this phone, as a member, presumed its root dead (or corrupt) and re-elected.
    pub roots_lost: u32,
    /// Of those, roots that sent a chunk failing verification.
    pub roots_rejected_corrupt: u32,
    /// Of those, roots that were this phone's parent and fed it nothing, or a trickle, of
    /// what they claimed to hold (a liar).
    pub roots_rejected_stalled: u32,
    /// When this phone confirmed itself root (`@@@HROOT`), in seconds from its boot.
    pub confirmed_root_s: Option<f64>,
    /// Origin transfers the server refused with a TFTP error (busy, not found, ...).
    pub origin_refused: u32,
    /// Origin transfers abandoned after the retransmissions ran out.
    pub origin_timeouts: u32,
    /// Origin transfers that broke the protocol.
    pub origin_errors: u32,
    /// Failed HTTP origin transfers after which the phone moved on to another origin of its
    /// list, by reason: `http_to_tftp` (HTTP first, then TFTP, as a phone does) or
    /// `http_to_http`. Not counted in `origin_errors`.
    pub origin_switches: BTreeMap<String, u32>,
    pub installed_s: Option<f64>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct PeerReport {
    pub peer: Ipv4Addr,
    pub model: String,
    pub load: String,
    pub mode: Mode,
    pub installed: bool,
    pub seconds: f64,
    pub files: Vec<FileReport>,
    pub engine: EngineStats,
    /// Datagrams that reached the election socket, and how many of them were not valid
    /// election messages (what XDP would have dropped) or for other hierarchies.
    pub udp_received: u64,
    pub udp_undecodable: u64,
    pub udp_foreign: u64,
    /// XDP counters when the program is attached (filled by the CLI).
    pub xdp: Option<serde_json::Value>,
    /// pfs messages this phone sent, by type name (datagrams the kernel took; stream frames
    /// handed to the engine): what a capture of the LAN shows it sending.
    pub messages_sent: BTreeMap<String, u64>,
}

/// Set by SIGINT/SIGTERM; the loop ends at its next turn.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// Makes SIGINT and SIGTERM end `run` cleanly (report printed, XDP detached by the caller).
pub fn install_signal_handlers() {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
    let act = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only stores to an atomic.
        let _ = unsafe { sigaction(sig, &act) };
    }
}

pub fn stop_requested() -> bool {
    STOP.load(Ordering::Relaxed)
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

/// The origin URLs of a `Source::Origin`, in the order tried.
pub fn origin_urls(spec: &str) -> Vec<&str> {
    spec.split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .collect()
}

/// What an HTTP origin transfer's thread hands the loop.
enum HttpMsg {
    /// File bytes, in order, from where the transfer was asked to start.
    Data(Vec<u8>),
    Done(Result<(), String>),
    /// A TFTP transfer's end, with why (refusals and timeouts are counted apart).
    Failed(ClientError),
}

/// Reads an HTTP origin thread may hold queued for the loop (backpressure on the socket).
const HTTP_QUEUE: usize = 64;
/// TFTP blocks a root's origin thread may hold queued for the loop: seconds of the WAN, so a
/// turn of the loop that takes that long does not stop the transfer's acknowledgements.
const TFTP_QUEUE: usize = 4096;
/// Bytes the loop takes from one origin thread per turn (bounded: a fast origin cannot starve
/// the phone's other work; large: a slow turn must not cap the transfer's rate).
const ORIGIN_POLL_BYTES: usize = 4 << 20;
/// How often the loop looks for bytes from an HTTP origin thread.
const HTTP_POLL: Time = 2_000;

/// One origin transfer (TFTP, or HTTP on a thread of its own) for one file.
struct OriginXfer {
    /// HTTP: the thread's bytes (the TFTP fields are unused).
    http: Option<crossbeam_channel::Receiver<HttpMsg>>,
    token: Token,
    server: SocketAddr,
    tid: Option<SocketAddr>,
    session: ClientSession,
    deadline: Option<Time>,
    /// The chunk being assembled and its index.
    buf: Vec<u8>,
    index: u32,
}

struct FileState {
    key: HierarchyKey,
    id64: u64,
    entry: FileEntry,
    partial: Option<Partial>,
    map: Option<Arc<memmap2::Mmap>>,
    chunks: u32,
    installed: bool,
    origin: Option<OriginXfer>,
    /// Which of the origin URLs the next transfer uses (moves on after a failure).
    origin_pick: usize,
    report: FileReport,
    next_progress: u32,
}

/// Reassembles frames from one TCP stream.
struct Conn {
    peer: u32,
    buf: Vec<u8>,
    /// We connected (to a parent); otherwise a child connected to us.
    outgoing: bool,
}

const UDP_TOKEN: Token = 1;
const LISTEN_TOKEN: Token = 2;
/// A frame larger than this (a chunk plus header) closes the connection as hostile.
const MAX_FRAME: usize = wire::HEADER_LEN + wire::MAX_CHUNK_DATA + 24;

pub struct Peer {
    /// Tags every log line with the phone's address (many phones share one lab process).
    span: tracing::Span,
    opts: PeerOptions,
    cfg: Config,
    me: Ipv4Addr,
    bcast: Ipv4Addr,
    manifest: Manifest,
    store: Store,
    files: Vec<FileState>,
    phone: Phone,
    reactor: SharedReactor,
    /// This phone's token prefix on the shared reactor.
    base: Token,
    place: Place,
    conns: HashMap<Token, Conn>,
    /// Our stream to each parent.
    to_parent: HashMap<u32, Token>,
    /// Each child's stream to us (where its Request came from).
    from_child: HashMap<u32, Token>,
    /// Armed timers by deadline; at most one per (hierarchy, kind): arming again replaces
    /// (the driving contract, docs/ARCHITECTURE.md).
    timers: BTreeMap<(Time, u32, u8), TimerKind>,
    armed: HashMap<(u32, u8), Time>,
    /// Events the driver generated while applying actions, fed after them (never
    /// re-entrantly into the core).
    pending: std::collections::VecDeque<Event>,
    feeding: bool,
    /// The latest any timer fired after its deadline (µs): how late the phone acted.
    timer_late_max: Time,
    next_token: Token,
    start: Instant,
    actions: Vec<Action>,
    inbox: Inbox,
    last_child_activity: Instant,
    udp: [u64; 3],
    /// Messages sent by type name (the report's `messages_sent`).
    sent: BTreeMap<&'static str, u64>,
    activated: bool,
    installed_at: Option<Instant>,
    started: bool,
    /// An injected fault (`pfs lab`'s fault plan).
    fault: Fault,
}

/// A fault injected into a phone of the lab (see `crate::faults`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fault {
    #[default]
    None,
    /// Every socket closed by the kernel (FIN, or RST with unread data); the phone stopped.
    Crashed,
    /// Hung: sockets stay open, nothing is processed (peers see silence on live streams).
    Frozen,
    /// Its link is down in its namespace (half-open streams, no RST); it keeps running.
    Cut,
    /// A cut link came back up.
    Restored,
}

/// Completions the host routed to this phone, handled after the poll.
#[derive(Default)]
struct Inbox {
    accepted: Vec<(std::net::TcpStream, SocketAddr)>,
    closed: Vec<Token>,
    data: Vec<Token>,
    datagrams: Vec<(Token, SocketAddr, Vec<u8>)>,
    connected: Vec<(Token, bool)>,
}

impl Inbox {
    fn is_empty(&self) -> bool {
        self.accepted.is_empty()
            && self.closed.is_empty()
            && self.data.is_empty()
            && self.datagrams.is_empty()
            && self.connected.is_empty()
    }
}

fn kind_code(k: TimerKind) -> u8 {
    match k {
        TimerKind::Claim => 0,
        TimerKind::Guard => 1,
        TimerKind::Advert => 2,
        TimerKind::Join => 3,
        TimerKind::OriginRetry => 4,
        TimerKind::Watchdog => 5,
        TimerKind::Lease => 6,
    }
}

fn tier_name(t: Tier) -> &'static str {
    match t {
        Tier::Tentative => "ClaimRoot(tent)",
        Tier::Fetching => "ClaimRoot(fetch)",
        Tier::Confirmed => "HaveRoot",
    }
}

fn role_name(r: Role) -> &'static str {
    match r {
        Role::Waiting => "waiting",
        Role::Claimant => "claimant",
        Role::Root => "root",
        Role::Member => "member",
        Role::Fallback => "fallback",
        Role::Traditional => "traditional",
    }
}

/// Fetches and checks the manifest from the origin (or reads it from a served directory).
fn load_manifest(opts: &PeerOptions) -> Result<Manifest, PeerError> {
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
fn manifest_from(url: &str, opts: &PeerOptions, bytes: &mut Vec<u8>) -> Result<(), PeerError> {
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

    fn run<T>(&self, f: impl FnOnce() -> T) -> Result<T, PeerError> {
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

/// A reactor shared by the phones of one core.
pub type SharedReactor = Rc<RefCell<Box<dyn Reactor>>>;

/// Token bits that name the phone; the low bits name the socket within it.
const PHONE_SHIFT: u32 = 32;

impl Peer {
    /// One phone on this machine's interface with a reactor of its own (`pfs peer`).
    pub fn new(opts: PeerOptions) -> Result<Peer, PeerError> {
        let prepared = Prepared::new(&opts, &Place::Here)?;
        let reactor = engine::open(opts.backend, Limits::for_blksize(opts.tftp.blksize))
            .map_err(io_err(format!("engine {:?}", opts.backend)))?;
        Peer::start(
            opts,
            prepared,
            Rc::new(RefCell::new(reactor)),
            1,
            Place::Here,
        )
    }

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
        let mut files = Vec::with_capacity(manifest.files.len());
        for entry in &manifest.files {
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
                        && crate::manifest::verify_file(entry, manifest.chunk_size, &installed_path)
                            .is_ok()
                    {
                        (None, map_file(&installed_path)?, true)
                    } else {
                        let p = store.partial(&manifest, entry)?;
                        let map = p.map()?.map(Arc::new);
                        (Some(p), map, false)
                    }
                }
            };
            files.push(FileState {
                id64: key.id(),
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
            });
        }
        let specs: Vec<HierarchySpec> = files
            .iter()
            .enumerate()
            .map(|(i, f)| HierarchySpec {
                id: i as u32,
                chunks: f.chunks,
            })
            .collect();
        let mut phone = Phone::new(u32::from(me), 100_000, opts.seed, &specs);
        for (i, f) in files.iter().enumerate() {
            let have = if f.installed {
                f.chunks
            } else {
                f.partial.as_ref().map_or(0, Partial::verified_prefix)
            };
            phone.preload(i as u32, have);
        }
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

    fn now(&self) -> Time {
        self.start.elapsed().as_micros() as Time
    }

    pub fn fault(&self) -> Fault {
        self.fault
    }

    /// Crashed or frozen: the host neither processes nor ticks it.
    fn stopped(&self) -> bool {
        matches!(self.fault, Fault::Crashed | Fault::Frozen)
    }

    /// The protocol core's state (read-only).
    pub fn core(&self) -> &Phone {
        &self.phone
    }

    pub fn model(&self) -> &str {
        &self.opts.model
    }

    pub fn addr(&self) -> Ipv4Addr {
        self.me
    }

    /// The namespace the phone lives in, if any.
    pub fn netns(&self) -> Option<&str> {
        match &self.place {
            Place::Netns(h) => Some(h.name()),
            Place::Here => None,
        }
    }

    /// When this phone first confirmed itself root of any file (s after its boot).
    pub fn confirmed_root_s(&self) -> Option<f64> {
        self.files
            .iter()
            .filter_map(|f| f.report.confirmed_root_s)
            .min_by(f64::total_cmp)
    }

    /// The phone's link rate as it would read it from its port (a phone on a slow port of
    /// the lab is told, as a real one negotiates it): below `leaf_below_kbit` it only ever
    /// becomes a leaf.
    pub fn set_link_kbit(&mut self, kbit: u32) {
        self.phone.link_kbit = kbit;
    }

    /// Fault injection: relay chunks with flipped bytes (a broken or hostile peer).
    pub fn set_corrupt(&mut self) {
        self.phone.corrupt = true;
    }

    /// Fault injection: a hostile phone that claims root of every file with the strongest
    /// adverts, accepts every child and feeds it nothing or a trickle (before boot).
    pub fn set_liar(&mut self, kind: crate::phone::Liar) {
        self.phone.liar = Some(kind);
    }

    pub fn liar(&self) -> Option<crate::phone::Liar> {
        self.phone.liar
    }

    /// Fault injection: the phone dies. Its sockets are closed at once (the kernel sends FIN,
    /// or RST where unread data remains), without polling the shared reactor.
    pub fn crash(&mut self) {
        let mut tokens: Vec<Token> = self.conns.keys().copied().collect();
        tokens.extend(
            self.files
                .iter_mut()
                .filter_map(|f| f.origin.take().map(|o| o.token)),
        );
        tokens.extend([self.base | UDP_TOKEN, self.base | LISTEN_TOKEN]);
        let mut r = self.reactor.borrow_mut();
        for t in tokens {
            r.close(t);
        }
        self.conns.clear();
        self.to_parent.clear();
        self.from_child.clear();
        self.inbox = Inbox::default();
        self.fault = Fault::Crashed;
    }

    /// Fault injection: the phone hangs; its sockets stay open.
    pub fn freeze(&mut self) {
        self.inbox = Inbox::default();
        self.fault = Fault::Frozen;
    }

    /// Fault injection: the phone's link goes down in its namespace (no RST).
    pub fn cut(&mut self) {
        if let Some(ns) = self.netns() {
            crate::faults::link_down(ns);
        }
        self.fault = Fault::Cut;
    }

    /// The cut link is back (the caller brought it up).
    pub fn uncut(&mut self) {
        self.fault = Fault::Restored;
    }

    fn token(&mut self) -> Token {
        self.next_token += 1;
        self.base | self.next_token
    }

    fn installed(&self) -> bool {
        self.files.iter().all(|f| f.installed)
    }

    /// Installed a verified load (a liar's own install does not count: it is no phone).
    pub fn is_installed(&self) -> bool {
        self.installed() && self.phone.liar.is_none()
    }

    /// Runs alone until installed and idle for `linger`, a signal, or the deadline.
    pub fn run(self) -> Result<PeerReport, PeerError> {
        let mut host = Host::with_reactor(self.reactor.clone());
        host.peers.push(self);
        let mut published = None;
        host.run(|peers| {
            crate::metrics::observe(&mut published, peers, Peer::metrics_sample);
            peers[0].wants_exit()
        })?;
        if crate::metrics::enabled() {
            crate::metrics::publish(host.peers.iter().map(Peer::metrics_sample).collect());
        }
        let mut peer = host.peers.pop().expect("one peer");
        let report = peer.report();
        peer.close_all();
        Ok(report)
    }

    /// Boots the phone (at the host's first turn).
    fn boot(&mut self) -> Result<(), PeerError> {
        self.started = true;
        self.start = Instant::now();
        let now = self.now();
        // An empty file has no chunk to verify: it installs at once.
        for h in 0..self.files.len() {
            if self.files[h].chunks == 0 && !self.files[h].installed {
                self.install(h as u32)?;
            }
        }
        self.feed(now, Event::Boot)?;
        if self.installed() && !self.activated {
            self.activate()?;
        }
        Ok(())
    }

    /// Fires what is due; returns the next deadline (µs of this phone's clock).
    fn tick(&mut self) -> Result<Instant, PeerError> {
        if !self.started {
            self.boot()?;
        }
        let now = self.now();
        while let Some((&(at, h, code), &kind)) = self.timers.iter().next() {
            if at > now {
                break;
            }
            self.timers.remove(&(at, h, code));
            self.armed.remove(&(h, code));
            self.timer_late_max = self.timer_late_max.max(now - at);
            self.feed(now, Event::Timer { h, kind })?;
        }
        self.origin_timers(now)?;
        self.origin_http_poll(now)?;
        self.log_progress();
        let next = self
            .timers
            .keys()
            .next()
            .map(|k| k.0)
            .into_iter()
            .chain(
                self.files
                    .iter()
                    .filter_map(|f| f.origin.as_ref()?.deadline),
            )
            .chain(
                self.files
                    .iter()
                    .any(|f| f.origin.as_ref().is_some_and(|o| o.http.is_some()))
                    .then_some(now + HTTP_POLL),
            )
            .min()
            .unwrap_or(now + 200_000);
        Ok(self.start + Duration::from_micros(next))
    }

    /// Installed, and (with a `linger`) no child served for that long: a fleet of sharing
    /// phones stays up until every phone is, so phones of other hosts still find parents.
    pub fn lingered(&self) -> bool {
        let Some(at) = self.installed_at else {
            return false;
        };
        match self.opts.linger {
            None => true,
            Some(linger) => {
                !self.from_child.keys().any(|c| self.child_pending(*c))
                    && self.last_child_activity.max(at).elapsed() >= linger
            }
        }
    }

    /// `pfs peer`'s exit rule: a signal, the deadline, or installed and idle for `linger`.
    fn wants_exit(&self) -> bool {
        if stop_requested() {
            info!("signal: stopping");
            return true;
        }
        if let Some(limit) = self.opts.deadline
            && self.start.elapsed() > limit
            && !self.installed()
        {
            warn!("not installed within {:?}: giving up", limit);
            return true;
        }
        if let (Some(linger), Some(at)) = (self.opts.linger, self.installed_at) {
            let idle = self.last_child_activity.max(at).elapsed();
            let serving = self.from_child.keys().any(|c| self.child_pending(*c));
            if !serving && idle >= linger {
                info!("installed, no child served for {:?}: exiting", linger);
                return true;
            }
        }
        false
    }

    fn child_pending(&self, child: u32) -> bool {
        self.from_child
            .get(&child)
            .is_some_and(|t| self.reactor.borrow().queued(*t) > 0)
    }

    /// Handles what the host's poll routed here.
    fn process(&mut self) -> Result<(), PeerError> {
        if self.inbox.is_empty() {
            return Ok(());
        }
        let now = self.now();
        let inbox = std::mem::take(&mut self.inbox);
        for (stream, from) in inbox.accepted {
            let SocketAddr::V4(from) = from else { continue };
            let t = self.token();
            engine::tcp_liveness(&stream);
            if self.reactor.borrow_mut().register(t, stream).is_ok() {
                self.conns.insert(
                    t,
                    Conn {
                        peer: u32::from(*from.ip()),
                        buf: Vec::new(),
                        outgoing: false,
                    },
                );
            }
        }
        for (t, ok) in inbox.connected {
            if !ok {
                self.lost(now, t)?;
            }
        }
        for (sock, from, bytes) in inbox.datagrams {
            if sock == self.base | UDP_TOKEN {
                self.datagram(now, from, &bytes)?;
            } else {
                self.origin_datagram(now, sock, from, &bytes)?;
            }
        }
        let mut seen = Vec::new();
        for t in inbox.data {
            if !seen.contains(&t) {
                seen.push(t);
                self.frames(now, t)?;
            }
        }
        for t in inbox.closed {
            self.lost(now, t)?;
        }
        Ok(())
    }

    /// Routes one completion into this phone's inbox (called inside the reactor's poll).
    fn route(&mut self, c: Completion<'_>) {
        match c {
            Completion::Accepted { stream, from, .. } => self.inbox.accepted.push((stream, from)),
            Completion::Connected { conn, result } => {
                self.inbox.connected.push((conn, result.is_ok()))
            }
            Completion::Data { conn, bytes } => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    if c.buf.len() + bytes.len() > MAX_FRAME * 4 {
                        // A peer sending faster than we parse is bounded too.
                        c.buf.clear();
                        self.inbox.closed.push(conn);
                        return;
                    }
                    c.buf.extend_from_slice(bytes);
                }
                self.inbox.data.push(conn);
            }
            Completion::Closed { conn, error } => {
                if let Some(e) = error {
                    debug!("connection {conn} closed: {e}");
                }
                self.inbox.closed.push(conn)
            }
            Completion::Datagram { sock, from, bytes } => {
                self.inbox.datagrams.push((sock, from, bytes.to_vec()))
            }
            Completion::Sent { .. } => {}
        }
    }

    /// Closes every socket and lets the engine finish cancelling their operations, so the
    /// ports are free the moment the phone stops (a ring's teardown would otherwise hold them).
    pub fn close_all(&mut self) {
        let mut tokens: Vec<Token> = self.conns.keys().copied().collect();
        tokens.extend(
            self.files
                .iter()
                .filter_map(|f| f.origin.as_ref().map(|o| o.token)),
        );
        tokens.extend([self.base | UDP_TOKEN, self.base | LISTEN_TOKEN]);
        let mut r = self.reactor.borrow_mut();
        for t in tokens {
            r.close(t);
        }
        for _ in 0..10 {
            if r.poll(Some(Duration::from_millis(5)), &mut |_| {}).is_err() {
                break;
            }
        }
    }

    /// A stream ended: its peer is lost (as parent or child) for the core.
    fn lost(&mut self, now: Time, t: Token) -> Result<(), PeerError> {
        let Some(c) = self.conns.remove(&t) else {
            return Ok(());
        };
        self.reactor.borrow_mut().close(t);
        if c.outgoing {
            self.to_parent.retain(|_, v| *v != t);
            return self.feed(now, Event::PeerLost { peer: c.peer });
        }
        self.from_child.retain(|_, v| *v != t);
        // A child's stream ended: it is no longer our child in any hierarchy. The same peer
        // may be our parent in another hierarchy, over our own stream to it, which stays.
        for h in 0..self.files.len() as u32 {
            // The stream's end says nothing of a tree: xid 0 (any).
            let msg = Msg::Leave { h, xid: 0 };
            self.feed(now, Event::Recv { from: c.peer, msg })?;
        }
        Ok(())
    }

    /// Cuts complete frames off a stream and handles them. Chunk data is verified and written
    /// straight from the stream buffer (no copy per frame), and the buffer is compacted once.
    fn frames(&mut self, now: Time, t: Token) -> Result<(), PeerError> {
        let Some(c) = self.conns.get_mut(&t) else {
            return Ok(());
        };
        let (peer, outgoing) = (c.peer, c.outgoing);
        let buf = std::mem::take(&mut c.buf);
        let mut pos = 0;
        let result = loop {
            let rest = &buf[pos..];
            if rest.len() < wire::HEADER_LEN {
                break Ok(true);
            }
            let (kind, len) = match wire::decode_header(rest) {
                Ok((kind, len)) => (kind, wire::HEADER_LEN + len),
                Err(e) => {
                    warn!(peer = %Ipv4Addr::from(peer), "bad frame: {e}; closing");
                    break Ok(false);
                }
            };
            debug_assert!(len <= MAX_FRAME);
            if rest.len() < len {
                break Ok(true);
            }
            let frame = &rest[..len];
            pos += len;
            if kind == 0x11 && outgoing {
                match wire::chunk_view(frame) {
                    Ok((hierarchy, offset, have, data)) => {
                        if let Err(e) = self.chunk_in(now, peer, hierarchy, offset, have, data) {
                            break Err(e);
                        }
                    }
                    Err(e) => {
                        warn!(peer = %Ipv4Addr::from(peer), "bad frame: {e}; closing");
                        break Ok(false);
                    }
                }
                continue;
            }
            match wire::decode(frame) {
                Ok(Message::Request {
                    hierarchy,
                    offset,
                    xid,
                }) if !outgoing => {
                    let Some(h) = self.files.iter().position(|f| f.id64 == hierarchy) else {
                        continue;
                    };
                    let cs = u64::from(self.manifest.chunk_size);
                    if !offset.is_multiple_of(cs) {
                        warn!(peer = %Ipv4Addr::from(peer), "unaligned request; closing");
                        break Ok(false);
                    }
                    self.from_child.insert(peer, t);
                    self.last_child_activity = Instant::now();
                    let msg = Msg::Request {
                        h: h as u32,
                        from: (offset / cs).min(u64::from(u32::MAX)) as u32,
                        xid,
                    };
                    if let Err(e) = self.feed(now, Event::Recv { from: peer, msg }) {
                        break Err(e);
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    warn!(peer = %Ipv4Addr::from(peer), "bad frame: {e}; closing");
                    break Ok(false);
                }
            }
        };
        // Put the unparsed tail back, unless the connection went away meanwhile.
        let keep = matches!(result, Ok(true));
        if let Some(c) = self.conns.get_mut(&t) {
            let mut buf = buf;
            buf.drain(..pos);
            buf.extend_from_slice(&c.buf); // bytes routed while we parsed (none today)
            c.buf = buf;
        }
        match result {
            Ok(_) if keep => Ok(()),
            Ok(_) => self.lost(now, t),
            Err(e) => Err(e),
        }
    }

    fn chunk_in(
        &mut self,
        now: Time,
        from: u32,
        hierarchy: u64,
        offset: u64,
        have: u64,
        data: &[u8],
    ) -> Result<(), PeerError> {
        let Some(h) = self.files.iter().position(|f| f.id64 == hierarchy) else {
            return Ok(());
        };
        let cs = u64::from(self.manifest.chunk_size);
        let f = &mut self.files[h];
        if !offset.is_multiple_of(cs) || offset >= f.entry.size.max(1) {
            return Ok(());
        }
        let index = (offset / cs) as u32;
        let have = if have >= f.entry.size {
            f.chunks
        } else {
            (have / cs) as u32
        };
        let verified = self.phone.hierarchies[h].verified;
        let mut ok = true;
        if index == verified && !f.installed {
            ok = write_verified(f, index, data)?;
            if ok {
                f.report.peer_bytes += data.len() as u64;
            } else {
                f.report.corrupt_chunks += 1;
                warn!(file = %f.entry.name, chunk = index, from = %Ipv4Addr::from(from), "chunk failed verification: dropped");
            }
        }
        let msg = Msg::Chunk {
            h: h as u32,
            index,
            have,
            ok,
        };
        self.feed(now, Event::Recv { from, msg })
    }

    fn datagram(&mut self, now: Time, from: SocketAddr, bytes: &[u8]) -> Result<(), PeerError> {
        let SocketAddr::V4(from) = from else {
            return Ok(());
        };
        let peer = u32::from(*from.ip());
        if *from.ip() == self.me {
            return Ok(()); // our own broadcast
        }
        self.udp[0] += 1;
        let m = match wire::decode(bytes) {
            Ok(m) => m,
            Err(e) => {
                self.udp[1] += 1;
                debug!(%from, "undecodable datagram: {e}");
                return Ok(());
            }
        };
        let Some(key) = m.key() else { return Ok(()) };
        let Some(h) = self.files.iter().position(|f| &f.key == key) else {
            debug!(%from, model = %key.model, file = %key.file, "not one of our hierarchies");
            self.udp[2] += 1;
            return Ok(()); // another model or load
        };
        let h = h as u32;
        let msg = match m {
            Message::Advert {
                xid,
                strength,
                tier,
                seq,
                verified,
                depth,
                free_slots,
                ..
            } => Msg::Advert {
                h,
                claim: Claim {
                    tier,
                    strength,
                    peer,
                    xid,
                },
                seq,
                verified,
                depth,
                free_slots,
            },
            Message::Join {
                xid,
                max_children,
                verified,
                exclude,
                ..
            } => Msg::Join {
                h,
                xid,
                max_children,
                verified,
                // The wire carries peers only: never place the joiner under any of them.
                exclude: Excludes::from_peers(exclude, Exclusion::Slow),
            },
            Message::Accept {
                xid, parent, depth, ..
            } => Msg::Accept {
                h,
                xid,
                parent,
                depth,
            },
            Message::Reject { xid, .. } => Msg::Reject { h, xid },
            Message::Leave { xid, .. } => Msg::Leave { h, xid },
            Message::Lease { xid, op, .. } => {
                let op = match op {
                    wire::LEASE_REQUEST => LeaseOp::Request,
                    wire::LEASE_GRANT => LeaseOp::Grant,
                    wire::LEASE_REFUSE => LeaseOp::Refuse,
                    wire::LEASE_RELEASE => LeaseOp::Release,
                    _ => {
                        self.udp[1] += 1;
                        return Ok(());
                    }
                };
                Msg::Lease { h, xid, op }
            }
            _ => return Ok(()),
        };
        trace!(from = %from.ip(), file = %self.files[h as usize].entry.name, "rx {msg:?}");
        self.feed(now, Event::Recv { from: peer, msg })
    }

    /// Feeds one event to the core and carries out what it asks for. Events that carrying
    /// out an action produces (an origin that is ready or busy, a connect that failed) are
    /// queued and fed after the current actions, in order: the core is never re-entered.
    fn feed(&mut self, now: Time, ev: Event) -> Result<(), PeerError> {
        self.pending.push_back(ev);
        if self.feeding {
            return Ok(());
        }
        self.feeding = true;
        let result = self.drain_pending(now);
        self.feeding = false;
        result?;
        for (i, x) in self.phone.hierarchies.iter().enumerate() {
            let r = &mut self.files[i].report;
            // An honest phone never takes more children than the fanout; a liar takes all and
            // is left out of the count (the report's bound is about honest phones).
            if self.phone.liar.is_none() {
                r.max_children = r.max_children.max(x.children().count());
                assert!(x.children().count() <= usize::from(self.cfg.fanout));
            }
        }
        self.drop_idle_parents();
        Ok(())
    }

    fn drain_pending(&mut self, now: Time) -> Result<(), PeerError> {
        // Bounded: every event is a reaction to an action, and the core answers each with
        // finitely many actions; a runaway loop is a bug, so it is asserted.
        for _ in 0..100_000 {
            let Some(ev) = self.pending.pop_front() else {
                return Ok(());
            };
            let mut actions = std::mem::take(&mut self.actions);
            actions.clear();
            self.phone.handle(&self.cfg, now, ev, &mut actions);
            #[cfg(debug_assertions)]
            if let Err(broken) = self.phone.invariants(&self.cfg) {
                panic!("invariant broken after {ev:?}: {broken}");
            }
            for a in actions.drain(..) {
                self.apply(now, a)?;
            }
            self.actions = actions;
        }
        panic!("the core and the driver kept generating events for one another");
    }

    /// Closes streams to peers that are no longer our parent in any hierarchy still
    /// downloading (a finished file needs its parent no more: descriptors are bounded).
    fn drop_idle_parents(&mut self) {
        let parents: Vec<u32> = self
            .phone
            .hierarchies
            .iter()
            .filter(|x| !x.done())
            .filter_map(|x| x.parent)
            .collect();
        let idle: Vec<(u32, Token)> = self
            .to_parent
            .iter()
            .filter(|(p, _)| !parents.contains(p))
            .map(|(p, t)| (*p, *t))
            .collect();
        for (p, t) in idle {
            self.to_parent.remove(&p);
            self.conns.remove(&t);
            self.reactor.borrow_mut().close(t);
        }
    }

    fn apply(&mut self, now: Time, a: Action) -> Result<(), PeerError> {
        match a {
            Action::Broadcast(msg) => {
                if let Msg::Advert { h, claim, .. } = msg {
                    let f = &self.files[h as usize];
                    debug!(
                        "XID{:08X} TxBdcst {} {} strength {:#x}",
                        claim.xid,
                        tier_name(claim.tier),
                        f.entry.name,
                        claim.strength
                    );
                }
                self.send_udp(SocketAddrV4::new(self.bcast, self.opts.port), msg);
            }
            Action::Send { to, msg } => self.send(now, to, msg)?,
            Action::OriginOpen { h, fallback } => self.origin_open(now, h, fallback)?,
            Action::OriginClose { h } => self.origin_close(h),
            Action::Timer { h, kind, at } => {
                let code = kind_code(kind);
                if let Some(old) = self.armed.insert((h, code), at) {
                    self.timers.remove(&(old, h, code));
                }
                self.timers.insert((at, h, code), kind);
            }
            Action::Install { h } => self.install(h)?,
            Action::Fallback { h, reason } => {
                let f = &mut self.files[h as usize];
                f.report.fallbacks += 1;
                f.report.fallback_reasons.push(reason);
                warn!(file = %f.entry.name, "falling back to the origin: {}", match reason {
                    FallbackReason::NoPeer => "no usable parent; the root granted a lease",
                });
            }
            Action::BecameRoot { h, xid, serving } => {
                let f = &mut self.files[h as usize];
                f.report.became_root = true;
                info!(
                    "XID{xid:08X} root of {}: {}",
                    f.entry.name,
                    if serving {
                        "serving from the store"
                    } else {
                        "fetching from the origin"
                    }
                );
            }
            Action::RootLost {
                h,
                silent,
                corrupt,
                stalled,
            } => {
                let f = &mut self.files[h as usize];
                f.report.roots_lost += 1;
                if corrupt {
                    f.report.roots_rejected_corrupt += 1;
                    warn!(file = %f.entry.name, "the root sent a corrupt chunk: re-electing without it");
                } else if stalled {
                    f.report.roots_rejected_stalled += 1;
                    warn!(
                        file = %f.entry.name,
                        "the root, our parent, fed us nothing it claims to hold for {:.1} s: re-electing without it",
                        silent as f64 / 1e6
                    );
                } else {
                    info!(
                        file = %f.entry.name,
                        "root silent and no data for {:.1} s: re-electing",
                        silent as f64 / 1e6
                    );
                }
            }
            Action::ConfirmedRoot { h, xid } => {
                let f = &mut self.files[h as usize];
                f.report.confirmed_root = true;
                f.report.confirmed_root_s = Some(self.start.elapsed().as_secs_f64());
                info!(
                    "@@@HROOT: {} XID{xid:08X} model {} confirmed root",
                    f.entry.name, self.opts.model
                );
            }
        }
        Ok(())
    }

    fn send_udp(&mut self, to: SocketAddrV4, msg: Msg) {
        let h = msg.hierarchy() as usize;
        let key = self.files[h].key.clone();
        let m = match msg {
            Msg::Advert {
                claim,
                seq,
                verified,
                depth,
                free_slots,
                ..
            } => Message::Advert {
                key,
                xid: claim.xid,
                strength: claim.strength,
                tier: claim.tier,
                seq,
                depth,
                free_slots,
                verified,
            },
            Msg::Join {
                xid,
                max_children,
                verified,
                exclude,
                ..
            } => Message::Join {
                key,
                xid,
                max_children,
                link_kbit: self.phone.link_kbit,
                verified,
                exclude: exclude.iter().map(|(p, _)| p).collect(),
            },
            Msg::Accept {
                xid, parent, depth, ..
            } => Message::Accept {
                key,
                xid,
                parent,
                port: self.opts.port,
                depth,
            },
            Msg::Reject { xid, .. } => Message::Reject {
                key,
                xid,
                reason: 0,
            },
            Msg::Leave { xid, .. } => Message::Leave {
                key,
                xid,
                reason: 0,
            },
            Msg::Lease { xid, op, .. } => Message::Lease {
                key,
                xid,
                op: match op {
                    LeaseOp::Request => wire::LEASE_REQUEST,
                    LeaseOp::Grant => wire::LEASE_GRANT,
                    LeaseOp::Refuse => wire::LEASE_REFUSE,
                    LeaseOp::Release => wire::LEASE_RELEASE,
                },
            },
            Msg::Request { .. } | Msg::Chunk { .. } => unreachable!("stream messages"),
        };
        match m.encode() {
            Ok(bytes) => {
                if let Err(e) = self.reactor.borrow_mut().send_to(
                    self.base | UDP_TOKEN,
                    SocketAddr::V4(to),
                    &bytes,
                ) {
                    debug!("datagram to {to}: {e}");
                } else {
                    *self.sent.entry(m.name()).or_default() += 1;
                }
            }
            Err(e) => warn!("cannot encode {msg:?}: {e}"),
        }
    }

    fn send(&mut self, now: Time, to: u32, msg: Msg) -> Result<(), PeerError> {
        let peer = SocketAddrV4::new(Ipv4Addr::from(to), self.opts.port);
        match msg {
            Msg::Request { h, from, xid } => {
                let t = match self.to_parent.get(&to) {
                    Some(t) => *t,
                    None => {
                        let t = self.token();
                        let connected = self
                            .place
                            .run(engine::tcp_socket)
                            .map_err(|e| io::Error::other(e.to_string()))
                            .and_then(|r| r)
                            .and_then(|fd| self.reactor.borrow_mut().connect(t, fd, peer));
                        if let Err(e) = connected {
                            warn!("connect {peer}: {e}");
                            return self.feed(now, Event::PeerLost { peer: to });
                        }
                        self.conns.insert(
                            t,
                            Conn {
                                peer: to,
                                buf: Vec::new(),
                                outgoing: true,
                            },
                        );
                        self.to_parent.insert(to, t);
                        t
                    }
                };
                let x = &self.phone.hierarchies[h as usize];
                let f = &mut self.files[h as usize];
                f.report.parent = Some(Ipv4Addr::from(to));
                f.report.depth = x.depth;
                info!(
                    "XID{:08X} {} joined under {} depth {}, from chunk {}",
                    xid,
                    f.entry.name,
                    Ipv4Addr::from(to),
                    x.depth,
                    from
                );
                let offset = u64::from(from) * u64::from(self.manifest.chunk_size);
                let frame = Message::Request {
                    hierarchy: f.id64,
                    offset,
                    xid,
                }
                .encode()
                .expect("request encodes");
                if let Err(e) = self.reactor.borrow_mut().send(t, Payload::Owned(frame)) {
                    debug!("request to {peer}: {e}");
                } else {
                    *self.sent.entry("Request").or_default() += 1;
                }
            }
            Msg::Chunk { h, index, have, .. } => {
                let Some(&t) = self.from_child.get(&to) else {
                    return Ok(()); // the child's stream is gone; it will ask again
                };
                let f = &self.files[h as usize];
                debug_assert!(index < self.phone.hierarchies[h as usize].verified);
                let cs = u64::from(self.manifest.chunk_size);
                let (start, end) = f.entry.chunk_range(self.manifest.chunk_size, index);
                let have_bytes = (u64::from(have) * cs).min(f.entry.size);
                let head = wire::chunk_head(f.id64, start, have_bytes, (end - start) as usize);
                let frame = match &f.map {
                    // A corrupt peer (fault injection) relays the chunk with one byte flipped.
                    Some(map) if self.phone.corrupt => {
                        let mut v = head.to_vec();
                        v.extend_from_slice(&map[start as usize..end as usize]);
                        if let Some(b) = v.get_mut(wire::HEADER_LEN + 24) {
                            *b ^= 0x5a;
                        }
                        Payload::Owned(v)
                    }
                    Some(map) => Payload::Mapped {
                        head: head.to_vec(),
                        map: map.clone(),
                        off: start as usize,
                        len: (end - start) as usize,
                    },
                    None => Payload::Owned(head.to_vec()),
                };
                self.last_child_activity = Instant::now();
                let sent = self.reactor.borrow_mut().send(t, frame);
                if let Err(e) = sent {
                    // Over its bound: cut the child off; it re-attaches and resumes.
                    warn!(child = %Ipv4Addr::from(to), "{e}: cutting it off");
                    self.lost(now, t)?;
                } else {
                    *self.sent.entry("Chunk").or_default() += 1;
                    let r = &mut self.files[h as usize].report;
                    if index == 0 {
                        r.children_served += 1;
                    }
                }
            }
            other => self.send_udp(peer, other),
        }
        Ok(())
    }

    fn origin_open(&mut self, now: Time, h: u32, fallback: bool) -> Result<(), PeerError> {
        let Source::Origin(url) = &self.opts.source else {
            // A served load is complete; the core never asks, but answer sanely.
            self.pending.push_back(Event::OriginBusy { h });
            return Ok(());
        };
        let urls = origin_urls(url);
        if urls.is_empty() {
            return Err(PeerError::Usage("no origin URL".into()));
        }
        let url = urls[self.files[h as usize].origin_pick % urls.len()].to_owned();
        if url.starts_with("http://") {
            return self.origin_open_http(h, &url, fallback);
        }
        let (server, dir) = fetch::parse_base_url(&url)?;
        self.origin_close(h);
        let name = self.files[h as usize].entry.name.clone();
        let dir = dir.trim_end_matches('/');
        let path = if dir.is_empty() {
            name.clone()
        } else {
            format!("{dir}/{name}")
        };
        if self.cfg.mode != Mode::Traditional {
            return self.origin_open_tftp_thread(h, server, path, fallback);
        }
        let sock = self
            .place
            .run(|| {
                let s = UdpSocket::bind("0.0.0.0:0")?;
                fetch::grow_receive_buffer(&s);
                Ok::<_, io::Error>(s)
            })
            .map_err(|e| io::Error::other(e.to_string()))
            .and_then(|r| r);
        let token = self.token();
        let registered = sock.and_then(|s| self.reactor.borrow_mut().udp(token, s));
        if let Err(e) = registered {
            // Out of descriptors or buffers: a failed transfer, retried after the back-off
            // like a busy origin, not the end of the run.
            let f = &mut self.files[h as usize];
            f.report.origin_errors += 1;
            warn!(file = %f.entry.name, "cannot open an origin socket: {e}");
            self.pending.push_back(Event::OriginBusy { h });
            return Ok(());
        }
        let mut session = ClientSession::new(self.opts.tftp.clone(), &path);
        let mut out = Vec::new();
        session.start(now, &mut out);
        info!(
            file = %name,
            "{} tftp://{server}/{path}",
            if fallback { "fallback fetch from" } else { "fetching from" }
        );
        self.files[h as usize].origin = Some(OriginXfer {
            http: None,
            token,
            server,
            tid: None,
            session,
            deadline: None,
            buf: Vec::with_capacity(self.manifest.chunk_size as usize),
            index: 0,
        });
        self.origin_actions(now, h as usize, out)?;
        // The core streams once the transfer is open.
        self.pending.push_back(Event::OriginReady { h });
        Ok(())
    }

    /// An HTTP origin transfer: a thread per transfer (connected inside the phone's
    /// namespace) runs a blocking GET with `Range` from the verified prefix and hands the bytes
    /// to the loop through a bounded channel, which the loop drains every [`HTTP_POLL`]. Closing
    /// the transfer drops the receiver, and the thread ends at its next send.
    fn origin_open_http(&mut self, h: u32, url: &str, fallback: bool) -> Result<(), PeerError> {
        self.origin_close(h);
        let i = h as usize;
        let name = self.files[i].entry.name.clone();
        let at = crate::http::HttpUrl::parse(url)?.join(&name);
        let verified = self.phone.hierarchies[i].verified.min(self.files[i].chunks);
        let cs = self.manifest.chunk_size;
        let offset = if verified >= self.files[i].chunks {
            self.files[i].entry.size
        } else {
            self.files[i].entry.chunk_range(cs, verified).0
        };
        let (tx, rx) = crossbeam_channel::bounded(HTTP_QUEUE);
        let place = self.place.clone();
        let thread_url = at.clone();
        let spawned = std::thread::Builder::new()
            .name("pfs-http-origin".into())
            .spawn(move || http_origin_thread(place, thread_url, offset, tx));
        if let Err(e) = spawned {
            let f = &mut self.files[i];
            f.report.origin_errors += 1;
            warn!(file = %name, "cannot start an HTTP origin transfer: {e}");
            self.pending.push_back(Event::OriginBusy { h });
            return Ok(());
        }
        info!(
            file = %name,
            "{} {at} from byte {offset}",
            if fallback { "fallback fetch from" } else { "fetching from" }
        );
        let token = self.token();
        self.files[i].origin = Some(OriginXfer {
            http: Some(rx),
            token,
            server: at.addr,
            tid: None,
            session: ClientSession::new(self.opts.tftp.clone(), &name),
            deadline: None,
            buf: Vec::with_capacity(cs as usize),
            index: verified,
        });
        self.pending.push_back(Event::OriginReady { h });
        Ok(())
    }

    /// A root's (or lease holder's) TFTP origin transfer on a thread of its own, inside the
    /// phone's namespace, handing blocks to the loop as the HTTP thread does. The transfer's
    /// acknowledgements then never wait for the loop: with the transfer in the loop, a turn of
    /// a second (1000 phones on a loaded 2-core host) left the WAN idle for that second, and
    /// at 400 phones the WAN ran at ~60% of its rate for whole seconds. At most one thread per
    /// origin transfer, and the protocol bounds those per site (roots + leases); the
    /// traditional mode (every phone fetching) keeps its transfers in the loop.
    fn origin_open_tftp_thread(
        &mut self,
        h: u32,
        server: SocketAddr,
        path: String,
        fallback: bool,
    ) -> Result<(), PeerError> {
        let i = h as usize;
        let name = self.files[i].entry.name.clone();
        let (tx, rx) = crossbeam_channel::bounded(TFTP_QUEUE);
        let place = self.place.clone();
        let cfg = self.opts.tftp.clone();
        let thread_path = path.clone();
        let spawned = std::thread::Builder::new()
            .name("pfs-tftp-origin".into())
            .spawn(move || tftp_origin_thread(place, server, thread_path, cfg, tx));
        if let Err(e) = spawned {
            let f = &mut self.files[i];
            f.report.origin_errors += 1;
            warn!(file = %name, "cannot start an origin transfer: {e}");
            self.pending.push_back(Event::OriginBusy { h });
            return Ok(());
        }
        info!(
            file = %name,
            "{} tftp://{server}/{path}",
            if fallback { "fallback fetch from" } else { "fetching from" }
        );
        let token = self.token();
        self.files[i].origin = Some(OriginXfer {
            http: Some(rx),
            token,
            server,
            tid: None,
            session: ClientSession::new(self.opts.tftp.clone(), &name),
            deadline: None,
            buf: Vec::with_capacity(self.manifest.chunk_size as usize),
            // TFTP cannot seek: the file streams from its start, and the verified prefix is
            // skipped chunk by chunk.
            index: 0,
        });
        self.pending.push_back(Event::OriginReady { h });
        Ok(())
    }

    /// Bytes and ends of HTTP origin transfers, as their threads delivered them.
    fn origin_http_poll(&mut self, now: Time) -> Result<(), PeerError> {
        for i in 0..self.files.len() {
            let mut budget = ORIGIN_POLL_BYTES;
            while budget > 0 {
                let Some(rx) = self.files[i].origin.as_ref().and_then(|o| o.http.as_ref()) else {
                    break;
                };
                let msg = match rx.try_recv() {
                    Ok(m) => m,
                    Err(crossbeam_channel::TryRecvError::Empty) => break,
                    Err(crossbeam_channel::TryRecvError::Disconnected) => {
                        HttpMsg::Done(Err("transfer thread ended".into()))
                    }
                };
                match msg {
                    HttpMsg::Data(data) => {
                        budget = budget.saturating_sub(data.len().max(1));
                        self.files[i].report.origin_bytes += data.len() as u64;
                        self.origin_bytes(now, i, &data)?;
                    }
                    HttpMsg::Done(Ok(())) => {
                        self.origin_bytes(now, i, &[])?;
                        self.origin_close(i as u32);
                    }
                    HttpMsg::Done(Err(e)) => {
                        let next = self.next_origin_scheme(i);
                        let f = &mut self.files[i];
                        f.origin_pick += 1;
                        match next {
                            // The list names another origin: the phone's own fallback (HTTP
                            // first, then TFTP), counted under its reason.
                            Some(scheme) => {
                                *f.report
                                    .origin_switches
                                    .entry(format!("http_to_{scheme}"))
                                    .or_default() += 1;
                                warn!(
                                    file = %f.entry.name,
                                    "origin transfer failed: {e}; falling back to {scheme}"
                                );
                            }
                            None => {
                                f.report.origin_errors += 1;
                                warn!(file = %f.entry.name, "origin transfer failed: {e}");
                            }
                        }
                        self.origin_close(i as u32);
                        self.feed(now, Event::OriginBusy { h: i as u32 })?;
                        break;
                    }
                    HttpMsg::Failed(e) => {
                        let f = &mut self.files[i];
                        match e {
                            ClientError::Server { .. } => f.report.origin_refused += 1,
                            ClientError::Timeout(_) => f.report.origin_timeouts += 1,
                            ClientError::Protocol(_) => f.report.origin_errors += 1,
                        }
                        f.origin_pick += 1;
                        warn!(file = %f.entry.name, "origin transfer failed: {e}");
                        self.origin_close(i as u32);
                        self.feed(now, Event::OriginBusy { h: i as u32 })?;
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    /// The scheme (`tftp`, `http`) of the origin file `i` would move on to after a failure,
    /// when its origin list names another.
    fn next_origin_scheme(&self, i: usize) -> Option<&'static str> {
        let Source::Origin(spec) = &self.opts.source else {
            return None;
        };
        let urls = origin_urls(spec);
        if urls.len() < 2 {
            return None;
        }
        let next = urls[(self.files[i].origin_pick + 1) % urls.len()];
        Some(if next.starts_with("http://") {
            "http"
        } else {
            "tftp"
        })
    }

    fn origin_close(&mut self, h: u32) {
        if let Some(o) = self.files[h as usize].origin.take() {
            self.reactor.borrow_mut().close(o.token);
        }
    }

    fn origin_timers(&mut self, now: Time) -> Result<(), PeerError> {
        for i in 0..self.files.len() {
            let due = self.files[i]
                .origin
                .as_ref()
                .is_some_and(|o| o.deadline.is_some_and(|d| d <= now));
            if due {
                let mut out = Vec::new();
                let o = self.files[i].origin.as_mut().expect("checked");
                o.deadline = None;
                o.session.on_timer(now, &mut out);
                self.origin_actions(now, i, out)?;
            }
        }
        Ok(())
    }

    fn origin_datagram(
        &mut self,
        now: Time,
        sock: Token,
        from: SocketAddr,
        bytes: &[u8],
    ) -> Result<(), PeerError> {
        let Some(i) = self
            .files
            .iter()
            .position(|f| f.origin.as_ref().is_some_and(|o| o.token == sock))
        else {
            return Ok(());
        };
        let o = self.files[i].origin.as_mut().expect("found");
        // The server answers from a new port (its transfer id); lock onto it.
        if from.ip() != o.server.ip() {
            return Ok(());
        }
        let tid = *o.tid.get_or_insert(from);
        if from != tid {
            // A second transfer the server started for a retransmitted RRQ: stop it (RFC
            // 1350), or it sends the whole file again over the WAN.
            let token = o.token;
            let stop =
                tftp::packet::error(tftp::ErrorCode::UnknownTransferId, "unknown transfer id");
            let _ = self.reactor.borrow_mut().send_to(token, from, &stop);
            return Ok(());
        }
        let mut out = Vec::new();
        o.session.on_datagram(now, bytes, &mut out);
        self.origin_actions(now, i, out)
    }

    fn origin_actions(
        &mut self,
        now: Time,
        i: usize,
        mut out: Vec<ClientAction>,
    ) -> Result<(), PeerError> {
        // Datagrams first: the bytes of the last block complete the file, and the core then
        // closes the transfer, which would swallow the final ACK queued behind them and leave
        // the server retransmitting into a closed port.
        out.sort_by_key(|a| !matches!(a, ClientAction::Send(_)));
        for a in out {
            let Some(o) = self.files[i].origin.as_mut() else {
                return Ok(());
            };
            match a {
                ClientAction::Send(bytes) => {
                    let to = o.tid.unwrap_or(o.server);
                    let token = o.token;
                    let _ = self.reactor.borrow_mut().send_to(token, to, &bytes);
                }
                ClientAction::Timer(at) => o.deadline = Some(at),
                ClientAction::Size(n) => {
                    if n != self.files[i].entry.size {
                        warn!(file = %self.files[i].entry.name, "origin announces {n} bytes, the manifest {}", self.files[i].entry.size);
                    }
                }
                ClientAction::Write { data, .. } => {
                    self.files[i].report.origin_bytes += data.len() as u64;
                    self.origin_bytes(now, i, &data)?;
                }
                ClientAction::Done(Ok(_)) => {
                    // Completes an empty last chunk (an empty file), then ends the transfer.
                    self.origin_bytes(now, i, &[])?;
                    self.origin_close(i as u32);
                }
                ClientAction::Done(Err(e)) => {
                    let r = &mut self.files[i].report;
                    match e {
                        ClientError::Server { .. } => r.origin_refused += 1,
                        ClientError::Timeout(_) => r.origin_timeouts += 1,
                        ClientError::Protocol(_) => r.origin_errors += 1,
                    }
                    warn!(file = %self.files[i].entry.name, "origin transfer failed: {e}");
                    self.files[i].origin_pick += 1;
                    self.origin_close(i as u32);
                    self.feed(now, Event::OriginBusy { h: i as u32 })?;
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// File bytes from the origin, in order: cut into chunks, verify, store, tell the core.
    fn origin_bytes(&mut self, now: Time, i: usize, mut data: &[u8]) -> Result<(), PeerError> {
        let cs = self.manifest.chunk_size;
        loop {
            let f = &mut self.files[i];
            let Some(o) = f.origin.as_mut() else {
                return Ok(());
            };
            if o.index >= f.chunks {
                return Ok(()); // more bytes than the manifest says: ignored
            }
            let (start, end) = f.entry.chunk_range(cs, o.index);
            let want = (end - start) as usize;
            let take = (want - o.buf.len()).min(data.len());
            o.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if o.buf.len() < want {
                return Ok(()); // all bytes consumed, chunk incomplete
            }
            let index = o.index;
            o.index += 1;
            let mut chunk = std::mem::take(&mut o.buf);
            // A reopened transfer re-reads the verified prefix: skip it.
            if index >= self.phone.hierarchies[i].verified {
                let ok = f.installed || write_verified(f, index, &chunk)?;
                if !ok {
                    f.report.corrupt_chunks += 1;
                    warn!(file = %f.entry.name, chunk = index, "origin chunk failed verification");
                }
                let ev = Event::OriginChunk {
                    h: i as u32,
                    index,
                    ok,
                };
                self.feed(now, ev)?;
            }
            chunk.clear();
            if let Some(o) = self.files[i].origin.as_mut() {
                o.buf = chunk;
            }
        }
    }

    fn install(&mut self, h: u32) -> Result<(), PeerError> {
        let f = &mut self.files[h as usize];
        if let Some(p) = f.partial.take() {
            let path = p.install()?;
            debug!("installed {}", path.display());
        }
        f.installed = true;
        f.report.installed_s = Some(self.start.elapsed().as_secs_f64());
        info!(file = %f.entry.name, "100% {} KB, verified and installed", f.entry.size / 1024);
        if self.installed() && !self.activated {
            self.activate()?;
        }
        Ok(())
    }

    fn activate(&mut self) -> Result<(), PeerError> {
        if let Source::Origin(_) = self.opts.source {
            self.store.activate(&self.manifest)?;
            info!(load = %self.manifest.load, "load verified and activated");
        }
        self.activated = true;
        self.installed_at = Some(Instant::now());
        Ok(())
    }

    pub fn report(&self) -> PeerReport {
        let files = self
            .files
            .iter()
            .zip(&self.phone.hierarchies)
            .map(|(f, x)| {
                let mut r = f.report.clone();
                r.role = role_name(x.role).to_owned();
                r
            })
            .collect();
        PeerReport {
            peer: self.me,
            model: self.opts.model.clone(),
            load: self.manifest.load.clone(),
            mode: self.opts.mode,
            installed: self.installed(),
            seconds: self.start.elapsed().as_secs_f64(),
            files,
            engine: self.reactor.borrow().stats(),
            udp_received: self.udp[0],
            udp_undecodable: self.udp[1],
            udp_foreign: self.udp[2],
            xdp: None,
            messages_sent: self
                .sent
                .iter()
                .map(|(k, v)| ((*k).to_owned(), *v))
                .collect(),
        }
    }

    /// Logs progress every 10% per file.
    fn log_progress(&mut self) {
        for (f, x) in self.files.iter_mut().zip(&self.phone.hierarchies) {
            let pct = (x.verified * 100).checked_div(f.chunks).unwrap_or(100);
            if pct >= f.next_progress && pct < 100 {
                info!(file = %f.entry.name, "{pct}% {} KB", u64::from(x.verified) * u64::from(self.manifest.chunk_size) / 1024);
                f.next_progress = pct / 10 * 10 + 10;
            }
        }
    }
}

/// A phone's progress for a live display.
pub struct PeerProgress<'a> {
    pub model: &'a str,
    /// (file, verified bytes)
    pub files: Vec<(&'a str, u64)>,
    pub roots: u64,
    pub parents: u64,
    pub children: u64,
    pub fallbacks: u64,
}

impl Peer {
    pub fn progress(&self) -> PeerProgress<'_> {
        let cs = u64::from(self.manifest.chunk_size);
        let mut p = PeerProgress {
            model: &self.opts.model,
            files: Vec::with_capacity(self.files.len()),
            roots: 0,
            parents: 0,
            children: 0,
            fallbacks: 0,
        };
        for (f, x) in self.files.iter().zip(&self.phone.hierarchies) {
            p.files.push((
                &f.entry.name,
                (u64::from(x.verified) * cs).min(f.entry.size),
            ));
            p.roots += u64::from(x.role == Role::Root);
            p.parents += u64::from(x.children().next().is_some());
            p.children += u64::from(x.role == Role::Member && x.parent.is_some());
            p.fallbacks += u64::from(f.report.fallbacks);
        }
        p
    }
}

impl Peer {
    /// What `--metrics` shows of this phone now.
    pub fn metrics_sample(&self) -> crate::metrics::PhoneSample {
        let files = self
            .files
            .iter()
            .zip(&self.phone.hierarchies)
            .map(|(f, x)| {
                let name = |r: &crate::phone::FallbackReason| {
                    serde_json::to_value(r)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default()
                };
                // Every reason from the start (at 0), so the series exists before it moves.
                let mut fallbacks =
                    BTreeMap::from([(name(&crate::phone::FallbackReason::NoPeer), 0)]);
                for r in &f.report.fallback_reasons {
                    *fallbacks.entry(name(r)).or_default() += 1;
                }
                crate::metrics::FileSample {
                    file: f.entry.name.clone(),
                    role: role_name(x.role),
                    origin_bytes: f.report.origin_bytes,
                    peer_bytes: f.report.peer_bytes,
                    chunks_verified: u64::from(x.verified),
                    chunks_rejected: f.report.corrupt_chunks,
                    children: x.children().count() as u64,
                    fallbacks,
                }
            })
            .collect();
        crate::metrics::PhoneSample {
            model: self.opts.model.clone(),
            installed: self.installed(),
            files,
            engine: self.reactor.borrow().stats(),
            messages_sent: self
                .sent
                .iter()
                .map(|(k, v)| ((*k).to_owned(), *v))
                .collect(),
            udp: self.udp,
        }
    }
}

/// One core's reactor and the phones it drives (thread-per-core: a host never leaves its
/// thread, and phones never move between hosts).
pub struct Host {
    reactor: SharedReactor,
    pub peers: Vec<Peer>,
    /// The longest turn (timers, completions, processing) so far: how late a phone on this
    /// host can hear its network.
    pub max_turn: Duration,
    /// Turns run, and how many took longer than 10 ms (a phone on this host heard its
    /// network that late).
    pub turns: u64,
    pub long_turns: u64,
}

impl Host {
    pub fn new(backend: Backend, limits: Limits) -> Result<Host, PeerError> {
        let r = engine::open(backend, limits).map_err(io_err(format!("engine {backend:?}")))?;
        Ok(Host::with_reactor(Rc::new(RefCell::new(r))))
    }

    fn with_reactor(reactor: SharedReactor) -> Host {
        Host {
            reactor,
            peers: Vec::new(),
            max_turn: Duration::ZERO,
            turns: 0,
            long_turns: 0,
        }
    }

    /// Adds a prepared phone to this host.
    pub fn add(
        &mut self,
        opts: PeerOptions,
        prepared: Prepared,
        place: Place,
    ) -> Result<(), PeerError> {
        let slot = self.peers.len() as u64 + 1;
        let p = Peer::start(opts, prepared, self.reactor.clone(), slot, place)?;
        self.peers.push(p);
        Ok(())
    }

    /// Drives every phone until `done` says so (checked every turn) or a signal.
    ///
    /// A turn: completions first (polled without waiting, again while more keep arriving, up
    /// to a bound), then due timers, then a wait for the next completion or deadline. A timer
    /// due at `t` thus never fires before a datagram that arrived before `t` and is already
    /// queued: firing claim guards ahead of the adverts that would suppress them made hundreds
    /// of roots at 400 phones.
    pub fn run(&mut self, mut done: impl FnMut(&mut [Peer]) -> bool) -> Result<(), PeerError> {
        let mut waited = true;
        loop {
            let turn_start = Instant::now();
            // Completions already queued (after a wait, the wait's own batch is in the
            // inboxes): handle them before any timer.
            for _ in 0..8 {
                let got = self.poll_once(Duration::ZERO)?;
                self.process_all()?;
                if got == 0 && !waited {
                    break;
                }
                waited = false;
            }
            let mut next = Instant::now() + Duration::from_millis(200);
            let t_tick = Instant::now();
            for p in &mut self.peers {
                if p.stopped() {
                    continue;
                }
                let _in = p.span.clone().entered();
                next = next.min(p.tick()?);
            }
            let now = Instant::now();
            if now - turn_start > Duration::from_millis(100) {
                tracing::info!(
                    target: "pfs::turns",
                    "slow turn: {:?} (completions {:?}, timers {:?})",
                    now - turn_start,
                    t_tick - turn_start,
                    now - t_tick
                );
            }
            let turn = now - turn_start;
            self.max_turn = self.max_turn.max(turn);
            self.turns += 1;
            if turn > Duration::from_millis(10) {
                self.long_turns += 1;
            }
            if done(&mut self.peers) || stop_requested() {
                return Ok(());
            }
            let wait = next
                .saturating_duration_since(now)
                .clamp(Duration::from_micros(500), Duration::from_millis(200));
            self.poll_once(wait)?;
            waited = true;
        }
    }

    /// One poll of the reactor, routing completions into the phones' inboxes; how many.
    fn poll_once(&mut self, wait: Duration) -> Result<usize, PeerError> {
        let peers = &mut self.peers;
        let mut got = 0;
        self.reactor
            .borrow_mut()
            .poll(Some(wait), &mut |c| {
                got += 1;
                let token = match &c {
                    Completion::Accepted { listener, .. } => *listener,
                    Completion::Connected { conn, .. }
                    | Completion::Data { conn, .. }
                    | Completion::Closed { conn, .. }
                    | Completion::Sent { conn, .. } => *conn,
                    Completion::Datagram { sock, .. } => *sock,
                };
                let slot = (token >> PHONE_SHIFT) as usize;
                if let Some(p) = slot.checked_sub(1).and_then(|i| peers.get_mut(i))
                    && !p.stopped()
                {
                    let _in = p.span.clone().entered();
                    p.route(c);
                }
            })
            .map_err(io_err("engine poll"))?;
        Ok(got)
    }

    fn process_all(&mut self) -> Result<(), PeerError> {
        for p in &mut self.peers {
            if p.stopped() {
                continue;
            }
            let _in = p.span.clone().entered();
            p.process()?;
        }
        Ok(())
    }

    /// The latest any phone's timer fired after its deadline.
    pub fn timer_late_max(&self) -> Duration {
        Duration::from_micros(
            self.peers
                .iter()
                .map(|p| p.timer_late_max)
                .max()
                .unwrap_or(0),
        )
    }

    /// This core's engine counters.
    pub fn engine_stats(&self) -> EngineStats {
        self.reactor.borrow().stats()
    }

    pub fn reports(&self) -> Vec<PeerReport> {
        self.peers.iter().map(Peer::report).collect()
    }

    /// Closes every phone's sockets.
    pub fn close(&mut self) {
        for p in &mut self.peers {
            p.close_all();
        }
    }
}

/// Verifies chunk `index` and writes it to the partial file; `false` if it failed.
/// The body of one HTTP origin transfer: bytes from `offset` on, to the loop. A server that
/// ignores the range sends the file from its start; the bytes before `offset` are dropped here.
fn http_origin_thread(
    place: Place,
    url: crate::http::HttpUrl,
    offset: u64,
    tx: crossbeam_channel::Sender<HttpMsg>,
) {
    let timeout = Duration::from_secs(10);
    let result = (|| -> Result<(), String> {
        let stream = place
            .run(|| std::net::TcpStream::connect_timeout(&url.addr, timeout))
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("{url}: {e}"))?;
        let mut sink = |at: u64, data: &[u8]| -> Result<(), crate::http::HttpError> {
            let skip = offset.saturating_sub(at).min(data.len() as u64) as usize;
            if skip < data.len() {
                tx.send(HttpMsg::Data(data[skip..].to_vec()))
                    .map_err(|_| io::Error::other("transfer closed"))?;
            }
            Ok(())
        };
        crate::http::get_on(stream, &url, offset, timeout, &mut sink)
            .map_err(|e| format!("{url}: {e}"))?;
        Ok(())
    })();
    let _ = tx.send(HttpMsg::Done(result));
}

/// The body of one TFTP origin transfer on its own thread: the file's bytes, block by block,
/// to the loop. Closing the transfer drops the receiver; the next block then ends the thread,
/// and its socket closes with it (the server's next send is refused, as when the loop closed
/// the socket itself).
fn tftp_origin_thread(
    place: Place,
    server: SocketAddr,
    path: String,
    cfg: ClientConfig,
    tx: crossbeam_channel::Sender<HttpMsg>,
) {
    let closed = || FetchError::Loads {
        server,
        file: path.clone(),
        why: "transfer closed".into(),
    };
    let mut sink = |data: &[u8]| tx.send(HttpMsg::Data(data.to_vec())).map_err(|_| closed());
    let result = place.run(|| fetch::transfer(server, &path, cfg, &mut sink));
    let end = match result {
        Ok(Ok(_)) => HttpMsg::Done(Ok(())),
        Ok(Err(FetchError::Transfer { source, .. })) => HttpMsg::Failed(source),
        Ok(Err(e)) => HttpMsg::Done(Err(e.to_string())),
        Err(e) => HttpMsg::Done(Err(e.to_string())),
    };
    let _ = tx.send(end);
}

fn write_verified(f: &mut FileState, index: u32, data: &[u8]) -> Result<bool, PeerError> {
    let Some(p) = f.partial.as_mut() else {
        return Ok(true); // already installed
    };
    match p.write_chunk(index, data) {
        Ok(()) => Ok(true),
        Err(crate::store::StoreError::Rejected { .. }) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

fn map_file(path: &Path) -> Result<Option<Arc<memmap2::Mmap>>, PeerError> {
    let f = std::fs::File::open(path).map_err(io_err(path.display().to_string()))?;
    if f.metadata().map(|m| m.len()).unwrap_or(0) == 0 {
        return Ok(None);
    }
    // SAFETY: installed and served files are never modified in place.
    let m = unsafe { memmap2::Mmap::map(&f) }.map_err(io_err(path.display().to_string()))?;
    Ok(Some(Arc::new(m)))
}

fn hex_digest(s: &str) -> Result<[u8; 32], PeerError> {
    let v = hex::decode(s).map_err(|e| PeerError::Usage(format!("digest {s}: {e}")))?;
    v.try_into()
        .map_err(|_| PeerError::Usage(format!("digest {s}: not 32 bytes")))
}
