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
    wire::{self, HierarchyId, HierarchyKey, Message, PeerId, Tier},
};

mod actions;
mod faults;
mod host;
mod lanmanifest;
use lanmanifest::{add_files, lan_manifest, manifest_state};
mod origin;
mod prepare;
mod streams;
pub use faults::Fault;
pub use host::{Host, PeerProgress};
pub use prepare::{Place, Prepared, iface_addrs};

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
    /// The most phones on this broadcast domain: sizes the election back-off
    /// (`Config::n_max`), so the first claim comes sooner on a smaller site.
    pub max_site_phones: u64,
}

impl PeerOptions {
    /// The largest TFTP DATA the phone's reactor receives: only the traditional mode runs its
    /// origin transfers in the loop; a root's WAN fetch has a thread and a socket of its own,
    /// so its (possibly fragment-filling) blksize does not shrink the reactor's buffer pool.
    pub fn loop_blksize(&self) -> u16 {
        if self.mode == Mode::Traditional {
            self.tftp.blksize
        } else {
            self.tftp.blksize.min(crate::tftp::UNFRAGMENTED_BLKSIZE)
        }
    }
}

/// Per file, what happened; part of the final report.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct FileReport {
    pub file: String,
    /// The load's manifest, shared over the LAN as a hierarchy of its own (not firmware).
    pub manifest: bool,
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
    /// Origin transfers this phone opened for the file (each retry and reopen counts).
    pub origin_transfers: u32,
    /// Origin transfers the server refused with a TFTP error (busy, not found, ...).
    pub origin_refused: u32,
    /// Origin transfers abandoned after the retransmissions ran out.
    pub origin_timeouts: u32,
    /// Origin transfers that broke the protocol.
    pub origin_errors: u32,
    /// Failed HTTP origin transfers after which the phone moved on to another origin of its
    /// list, by reason: `http_to_tftp` (HTTP first, then TFTP, as a phone does) or
    /// `http_to_http`; and TFTP transfers that started over with the unfragmented blksize
    /// because their fragmented blocks never arrived (`tftp_fragmented_to_unfragmented`). Not counted in
    /// `origin_errors`.
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
    /// The TFTP transfer started over with the unfragmented blksize (logged by the thread).
    Restarted,
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
    id: HierarchyId,
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
    /// The manifest's hierarchy (its one chunk is the signed manifest, whatever its size).
    is_manifest: bool,
    /// Chunk size of this file: the manifest's for firmware; the manifest's own size for it.
    chunk_size: u32,
}

/// Reassembles frames from one TCP stream.
struct Conn {
    peer: PeerId,
    buf: Vec<u8>,
    /// We connected (to a parent); otherwise a child connected to us.
    outgoing: bool,
}

/// The election socket bound to the phone's address (sends, and unicast control).
const UDP_TOKEN: Token = 1;
const LISTEN_TOKEN: Token = 2;
/// The election socket bound to the broadcast address (adverts).
const ADVERT_TOKEN: Token = 3;
/// A frame larger than this (a chunk plus header) closes the connection as hostile.
const MAX_FRAME: usize = wire::HEADER_LEN + wire::MAX_CHUNK_DATA + 24;

pub struct Peer {
    /// Tags every log line with the phone's address (many phones share one lab process).
    span: tracing::Span,
    opts: PeerOptions,
    cfg: Config,
    me: Ipv4Addr,
    bcast: Ipv4Addr,
    /// Known before power-on (served, or fetched by a keyless phone), or once the manifest's
    /// hierarchy delivered it verified.
    manifest: Option<Manifest>,
    store: Store,
    files: Vec<FileState>,
    phone: Phone,
    reactor: SharedReactor,
    /// This phone's token prefix on the shared reactor.
    base: Token,
    place: Place,
    conns: HashMap<Token, Conn>,
    /// Our stream to each parent.
    to_parent: HashMap<PeerId, Token>,
    /// Each child's stream to us (where its Request came from).
    from_child: HashMap<PeerId, Token>,
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
    /// Set when the phone hangs (`freeze`): its origin transfer threads stop too.
    hung: Arc<AtomicBool>,
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

/// A reactor shared by the phones of one core.
pub type SharedReactor = Rc<RefCell<Box<dyn Reactor>>>;

/// Token bits that name the phone; the low bits name the socket within it.
const PHONE_SHIFT: u32 = 32;

impl Peer {
    /// One phone on this machine's interface with a reactor of its own (`pfs peer`).
    pub fn new(opts: PeerOptions) -> Result<Peer, PeerError> {
        let prepared = Prepared::new(&opts, &Place::Here)?;
        let reactor = engine::open(opts.backend, Limits::for_blksize(opts.loop_blksize()))
            .map_err(io_err(format!("engine {:?}", opts.backend)))?;
        Peer::start(
            opts,
            prepared,
            Rc::new(RefCell::new(reactor)),
            1,
            Place::Here,
        )
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

    fn token(&mut self) -> Token {
        self.next_token += 1;
        self.base | self.next_token
    }

    fn installed(&self) -> bool {
        self.manifest.is_some() && self.files.iter().all(|f| f.installed)
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

    fn child_pending(&self, child: PeerId) -> bool {
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
                        peer: PeerId::from(*from.ip()),
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
            if sock == self.base | UDP_TOKEN || sock == self.base | ADVERT_TOKEN {
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
        let tokens = self.socket_tokens();
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
        let parents: Vec<PeerId> = self
            .phone
            .hierarchies
            .iter()
            .filter(|x| !x.done())
            .filter_map(|x| x.parent)
            .collect();
        let idle: Vec<(PeerId, Token)> = self
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
