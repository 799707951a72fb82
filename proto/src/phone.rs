//! One phone's peer-sharing state machine: `(now, event) -> actions`, sans-IO.
//!
//! A phone takes part in one hierarchy per file of its model. Per hierarchy it elects (or
//! follows) a root, joins the tree the root places breadth-first, receives chunks from its
//! parent (or the origin when it is root or has fallen back), verifies them in order, relays
//! verified chunks to its children, and installs when every chunk is verified.
//!
//! No sockets, clocks or threads: the driver (simulator or engine) turns [`Action`]s into
//! datagrams, TCP sends, origin fetches and timers, and feeds back [`Event`]s. Randomness comes
//! from a seeded generator owned by the phone.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::{
    election::{Claim, claim_draw},
    tree::{Coordinator, Exclusion},
    wire::Tier,
};

pub use crate::time::Time;
/// A phone's address (IPv4 on a real LAN, an index in the simulator).
pub type PeerId = u32;

/// How files reach phones.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// A child gets each chunk as soon as its parent has verified it (pfs). The default.
    #[default]
    Pipelined,
    /// A parent relays a file only once it holds all of it (Cisco PFS).
    StoreAndForward,
    /// Every phone pulls every file from the origin (no peer sharing).
    Traditional,
}

impl Mode {
    /// Every mode, in the order the CLI lists them.
    pub const ALL: [Mode; 3] = [Mode::Pipelined, Mode::StoreAndForward, Mode::Traditional];

    /// The kebab-case name used on the command line and in JSON reports.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Pipelined => "pipelined",
            Mode::StoreAndForward => "store-and-forward",
            Mode::Traditional => "traditional",
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Mode {
    type Err = String;
    /// Parses a [`Mode::name`]; the error lists the valid names.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Mode::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Mode::ALL.iter().map(|m| m.name()).collect();
                format!("unknown mode {s:?} (one of: {})", names.join(", "))
            })
    }
}

/// Tunables; defaults follow Cisco where Cisco has one (see docs/protocol.md).
#[derive(Debug, Clone)]
pub struct Config {
    pub mode: Mode,
    pub fanout: u8,
    pub advert_interval: Time,
    pub confirm_adverts: u32,
    pub root_advert_interval: Time,
    pub claim_window: Time,
    pub claim_guard: Time,
    /// Upper bound on phones per broadcast domain, for the suppression timer.
    pub n_max: u64,
    pub join_spread: Time,
    pub join_timeout: Time,
    pub root_timeout: Time,
    pub fallback_after: Time,
    /// K: fallback leases a root grants at once. With one root per hierarchy the origin serves
    /// at most roots + K transfers, whatever the origin is (tftpd-hpa has no admission).
    pub fallback_slots: u32,
    /// How long a granted lease lasts without renewal; shorter than `root_timeout`, so the
    /// leases of a dead root have lapsed before a successor can grant new ones.
    pub lease_time: Time,
    /// A lease holder renews (and a requester retries) this often.
    pub lease_renew: Time,
    pub origin_retry: Time,
    pub slow_lag_chunks: u32,
    pub slow_window: Time,
    pub leaf_below_kbit: u32,
    pub watchdog: Time,
    /// A member with no chunk from its parent for this long asks again (and re-attaches if
    /// the parent refuses).
    pub stall_timeout: Time,
    /// An open origin transfer that delivers nothing for this long is reopened (TFTP timeout).
    pub origin_timeout: Time,
    /// A member starved this long although the root holds more than it does re-joins the
    /// root for a fresh placement (breaks any parent chain that no longer leads to data).
    pub starve_timeout: Time,
    /// The same for store-and-forward, where parents legitimately send nothing for a while.
    pub starve_timeout_store_and_forward: Time,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            mode: Mode::Pipelined,
            fanout: 2,
            advert_interval: 250_000,
            confirm_adverts: 4,
            root_advert_interval: 1_000_000,
            claim_window: 500_000,
            claim_guard: 30_000,
            n_max: 100_000,
            join_spread: 200_000,
            join_timeout: 500_000,
            root_timeout: 3_000_000,
            fallback_after: 10_000_000,
            fallback_slots: 4,
            lease_time: 2_000_000,
            lease_renew: 500_000,
            origin_retry: 1_000_000,
            slow_lag_chunks: 16,
            slow_window: 2_000_000,
            leaf_below_kbit: 10_000,
            watchdog: 500_000,
            stall_timeout: 2_000_000,
            origin_timeout: 10_000_000,
            starve_timeout: 3_000_000,
            starve_timeout_store_and_forward: 30_000_000,
        }
    }
}

/// Up to four exclusions carried by a `Join`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Excludes {
    len: u8,
    items: [(PeerId, u8); 4],
}

impl Excludes {
    pub fn iter(&self) -> impl Iterator<Item = (PeerId, Exclusion)> + '_ {
        self.items[..self.len as usize]
            .iter()
            .map(|&(p, r)| (p, exclusion_from_u8(r)))
    }
    /// Exclusions read off the wire, which carries peers only: all get the same reason.
    pub fn from_peers(peers: impl IntoIterator<Item = PeerId>, why: Exclusion) -> Self {
        let mut e = Excludes::default();
        for p in peers {
            e.push(p, why);
        }
        e
    }
    fn push(&mut self, peer: PeerId, why: Exclusion) {
        if self.len as usize == self.items.len() {
            self.items.rotate_left(1);
            self.len -= 1;
        }
        self.items[self.len as usize] = (peer, why as u8);
        self.len += 1;
    }
}

fn exclusion_from_u8(r: u8) -> Exclusion {
    match r {
        0 => Exclusion::Dead,
        1 => Exclusion::Corrupt,
        _ => Exclusion::Slow,
    }
}

/// Messages between phones. UDP: `Advert` (broadcast), `Join`, `Accept`, `Reject`;
/// TCP: `Request`, `Chunk`, `Leave`. `h` is the hierarchy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Msg {
    /// `depth` and `free_slots`: the sender's place in its tree (informational on the wire).
    Advert {
        h: u32,
        claim: Claim,
        seq: u32,
        verified: u32,
        depth: u8,
        free_slots: u8,
    },
    Join {
        h: u32,
        xid: u32,
        max_children: u8,
        verified: u32,
        exclude: Excludes,
    },
    Accept {
        h: u32,
        xid: u32,
        parent: PeerId,
        depth: u8,
    },
    Reject {
        h: u32,
        xid: u32,
    },
    /// Child to parent: stream from chunk `from`; `xid` names the tree the child joined.
    Request {
        h: u32,
        from: u32,
        xid: u32,
    },
    /// `ok == false`: the bytes do not match the manifest digest (the driver checked).
    Chunk {
        h: u32,
        index: u32,
        have: u32,
        ok: bool,
    },
    /// Child to parent: stop streaming to me in tree `xid` (0: unknown, any tree).
    Leave {
        h: u32,
        xid: u32,
    },
    /// A fallback lease between a member and the root of tree `xid` (UDP unicast).
    Lease {
        h: u32,
        xid: u32,
        op: LeaseOp,
    },
}

/// What a [`Msg::Lease`] says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseOp {
    /// Member to root: may I fetch from the origin (or keep fetching)?
    Request,
    /// Root to member: yes, for `lease_time` from your request.
    Grant,
    /// Root to member: K leases are out; ask again later.
    Refuse,
    /// Member to root: done with the origin.
    Release,
}

impl Msg {
    pub fn hierarchy(&self) -> u32 {
        match *self {
            Msg::Advert { h, .. }
            | Msg::Join { h, .. }
            | Msg::Accept { h, .. }
            | Msg::Reject { h, .. }
            | Msg::Request { h, .. }
            | Msg::Chunk { h, .. }
            | Msg::Leave { h, .. }
            | Msg::Lease { h, .. } => h,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimerKind {
    Claim,
    Guard,
    Advert,
    Join,
    OriginRetry,
    /// A member's lease request retry, or a lease holder's renewal.
    Lease,
    /// Phone-wide; `h` is ignored.
    Watchdog,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Power on (a bulk reset starts every phone at once). Once: a later `Boot` is ignored.
    Boot,
    Timer {
        h: u32,
        kind: TimerKind,
    },
    Recv {
        from: PeerId,
        msg: Msg,
    },
    /// The origin accepted a transfer session for `h`.
    OriginReady {
        h: u32,
    },
    /// The origin refused (it answered busy, or the transfer failed); try later.
    OriginBusy {
        h: u32,
    },
    /// A chunk from the origin; `ok` as for [`Msg::Chunk`].
    OriginChunk {
        h: u32,
        index: u32,
        ok: bool,
    },
    /// A TCP peer went away (reset, or timed out).
    PeerLost {
        peer: PeerId,
    },
}

/// Why a phone fell back to the origin. Every fallback is counted and logged (CSCus67416).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FallbackReason {
    /// No usable parent within `fallback_after`; the root granted a lease.
    NoPeer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Broadcast(Msg),
    Send {
        to: PeerId,
        msg: Msg,
    },
    /// Open an origin transfer for `h` (the driver answers OriginReady or OriginBusy). The
    /// transfer streams the file in order from its start (TFTP cannot seek; chunks below the
    /// verified prefix are skipped) as fast as the path allows, until `OriginClose`.
    OriginOpen {
        h: u32,
        fallback: bool,
    },
    OriginClose {
        h: u32,
    },
    Timer {
        h: u32,
        kind: TimerKind,
        at: Time,
    },
    /// Every chunk of `h` is verified: write, fsync, rename.
    Install {
        h: u32,
    },
    Fallback {
        h: u32,
        reason: FallbackReason,
    },
    /// Passed the guard: root of `h` in tree `xid`, fetching from the origin (or, `serving`,
    /// holding the whole file already).
    BecameRoot {
        h: u32,
        xid: u32,
        serving: bool,
    },
    /// Confirmed root of `h` in tree `xid` (Cisco's `@@@HROOT`).
    ConfirmedRoot {
        h: u32,
        xid: u32,
    },
    /// A member heard neither its root nor any data for `silent` µs, or (`corrupt`) its
    /// root sent a chunk that failed verification: re-electing without it.
    RootLost {
        h: u32,
        silent: Time,
        corrupt: bool,
        /// The root itself, our parent, fed us nothing (or a trickle far behind what it
        /// claims to hold) although its adverts go on: a liar, blacklisted like a corrupt root.
        stalled: bool,
    },
}

/// A hostile phone (fault injection, `--liar-peers`): it claims root of every hierarchy with
/// the strongest possible advert (confirmed tier, maximal strength, the whole file held),
/// accepts every joiner under itself, and then feeds its children nothing (`Silent`) or one
/// chunk per `trickle` interval (`Trickle`, fetching the real file from the origin as a root
/// does, so what it sends verifies).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Liar {
    Silent,
    Trickle,
}

/// A trickling liar sends each child one chunk this often: just under `stall_timeout`, so
/// the child's stall probe never fires.
pub const LIAR_TRICKLE: Time = 1_500_000;
/// A member whose parent is the root itself, which claims the whole file, and who stays more
/// than this many chunks behind for twice `slow_window` rejects the root (it trickles; an
/// honest root that holds the file streams it at LAN speed).
const ROOT_LAG_CHUNKS: u32 = 4;
/// A liar accepts at most this many children per hierarchy (its memory is bounded too).
const LIAR_MAX_CHILDREN: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// No root followed yet; a claim timer may be armed.
    Waiting,
    /// Sent a tentative claim, guard timer armed.
    Claimant,
    /// Fetching from the origin and placing joiners.
    Root,
    /// Following a root, in its tree.
    Member,
    /// Fetching from the origin alone (counted).
    Fallback,
    /// Traditional mode: fetching from the origin.
    Traditional,
}

#[derive(Debug, Clone, Copy)]
struct Child {
    peer: PeerId,
    /// The next chunk to send (a child's Request may move it past what we hold).
    next: u32,
    /// One past the highest chunk actually sent: never beyond `verified` (checked by
    /// [`Phone::invariants`]).
    relayed: u32,
    xid: u32,
}

/// One phone's state for one hierarchy.
#[derive(Debug)]
pub struct Hierarchy {
    pub id: u32,
    pub chunks: u32,
    pub verified: u32,
    pub role: Role,
    pub parent: Option<PeerId>,
    pub depth: u8,
    children: Vec<Child>,
    me: Claim,
    best: Option<Claim>,
    root_seen_at: Time,
    seq: u32,
    joined_xid: Option<u32>,
    join_pending: bool,
    orphan_since: Option<Time>,
    lag_since: Option<Time>,
    last_rx: Time,
    /// When the verified prefix last grew (data that reached us through the tree).
    last_progress: Time,
    /// Since when the stall probes have gone unanswered.
    starved_since: Option<Time>,
    /// The root's verified count when the starvation began: a member leaves its parent only
    /// if the root got data meanwhile (or holds the whole file), never when the origin itself
    /// stalls (under WAN loss everyone starves at once; leaving then wrecked the tree).
    starved_root_mark: u32,
    /// The root's verified chunk count, from its adverts.
    root_verified: u32,
    excludes: Excludes,
    blacklist: Vec<PeerId>,
    coordinator: Option<Box<Coordinator>>,
    origin_open: bool,
    last_origin_rx: Time,
    /// Root: fallback leases out, (holder, expiry); at most `fallback_slots`.
    leases: Vec<(PeerId, Time)>,
    /// Member: wants a lease (orphaned too long); holder: the lease lasts until then.
    wants_lease: bool,
    lease_until: Time,
    /// The first request not yet answered by a grant: a grant lasts from here, which is no
    /// later than when the root received any request it answers.
    lease_asked_at: Option<Time>,
    /// `Action::Install`s emitted: at most one per hierarchy.
    installs: u32,
    /// A liar's hierarchy: its adverts claim the whole file.
    lies: bool,
    /// A trickling liar's next chunk to its children.
    trickle_at: Time,
}

impl Hierarchy {
    /// Moves the silence clocks forward by `deaf` µs the phone was not run (never past `now`).
    fn skip_deaf(&mut self, now: Time, deaf: Time) {
        let skip = |t: &mut Time| *t = t.saturating_add(deaf).min(now);
        skip(&mut self.root_seen_at);
        skip(&mut self.last_rx);
        skip(&mut self.last_progress);
        skip(&mut self.last_origin_rx);
        if let Some(t) = &mut self.starved_since {
            skip(t);
        }
        if let Some(t) = &mut self.orphan_since {
            skip(t);
        }
    }
    /// A root's strength carries its verified progress at election in the high bits (a
    /// re-elected survivor with data beats a fresh claimant). It is then frozen: strengths that
    /// moved while two roots compared them would let the order flip and members flap.
    fn refresh_strength(&mut self) {
        self.me.strength = (u64::from(self.verified) << 32) | (self.me.strength & 0xffff_ffff);
    }
    /// This phone's current claim, as broadcast, with its place in the tree.
    fn advert(&self, fanout: u8) -> Msg {
        // A liar takes more children than `fanout` on purpose (fault injection).
        assert!(self.lies || self.children.len() <= usize::from(fanout));
        Msg::Advert {
            h: self.id,
            claim: self.me,
            seq: self.seq,
            verified: if self.lies {
                self.chunks
            } else {
                self.verified
            },
            depth: self.depth,
            free_slots: u8::try_from(usize::from(fanout).saturating_sub(self.children.len()))
                .unwrap_or(0),
        }
    }
    /// `Leave` to the parent of the tree this phone joined.
    fn leave(&self) -> Msg {
        Msg::Leave {
            h: self.id,
            xid: self.joined_xid.unwrap_or(0),
        }
    }
    fn fetching(&self) -> bool {
        matches!(self.role, Role::Root | Role::Fallback | Role::Traditional)
    }
    pub fn done(&self) -> bool {
        self.verified == self.chunks
    }

    /// The xid of the tree this phone joined.
    pub fn joined_xid(&self) -> Option<u32> {
        self.joined_xid
    }
    pub fn children(&self) -> impl Iterator<Item = PeerId> + '_ {
        self.children.iter().map(|c| c.peer)
    }
}

/// Static description of a hierarchy a phone takes part in.
#[derive(Debug, Clone, Copy)]
pub struct HierarchySpec {
    pub id: u32,
    pub chunks: u32,
}

#[derive(Debug)]
pub struct Phone {
    pub id: PeerId,
    pub link_kbit: u32,
    /// Fault injection: relays chunks that fail verification (a broken or hostile peer).
    pub corrupt: bool,
    /// Fault injection: a hostile root (see [`Liar`]).
    pub liar: Option<Liar>,
    rng: ChaCha8Rng,
    pub hierarchies: Vec<Hierarchy>,
    /// `Event::Boot` was handled (a second one is ignored: found by the fuzz target
    /// `phone_events`, it left a root's coordinator on a waiting phone).
    booted: bool,
    /// When the watchdog is due: how late it fires is how long the driver did not run this
    /// phone (a loaded host's late turn).
    watchdog_due: Option<Time>,
}

impl Phone {
    pub fn new(id: PeerId, link_kbit: u32, seed: u64, specs: &[HierarchySpec]) -> Self {
        let hierarchies = specs
            .iter()
            .map(|s| Hierarchy {
                id: s.id,
                chunks: s.chunks,
                verified: 0,
                role: Role::Waiting,
                parent: None,
                depth: 0,
                children: Vec::new(),
                me: Claim {
                    tier: Tier::Tentative,
                    strength: 0,
                    peer: id,
                    xid: 0,
                },
                best: None,
                root_seen_at: 0,
                seq: 0,
                joined_xid: None,
                join_pending: false,
                orphan_since: None,
                lag_since: None,
                last_rx: 0,
                last_progress: 0,
                starved_since: None,
                starved_root_mark: 0,
                root_verified: 0,
                excludes: Excludes::default(),
                blacklist: Vec::new(),
                coordinator: None,
                origin_open: false,
                last_origin_rx: 0,
                leases: Vec::new(),
                wants_lease: false,
                lease_until: 0,
                lease_asked_at: None,
                installs: 0,
                lies: false,
                trickle_at: 0,
            })
            .collect();
        Phone {
            id,
            link_kbit,
            corrupt: false,
            liar: None,
            rng: ChaCha8Rng::seed_from_u64(seed),
            hierarchies,
            booted: false,
            watchdog_due: None,
        }
    }

    pub fn done(&self) -> bool {
        self.hierarchies.iter().all(Hierarchy::done)
    }

    /// Before `Boot`: the first `verified` chunks of `h` are already in the store (a resumed
    /// download, or a rig server holding the whole load).
    pub fn preload(&mut self, h: u32, verified: u32) {
        if let Some(i) = self.index(h) {
            let x = &mut self.hierarchies[i];
            x.verified = verified.min(x.chunks);
        }
    }

    /// The state machine's invariants, checked after every event by the simulator, by the
    /// engine's runtime in debug builds and by the fuzz target `phone_events`. `Err` names the
    /// first one broken (a bug in the core, never a property of the input).
    ///
    /// Per hierarchy: `verified <= chunks`; at most `fanout` children; a root has a
    /// coordinator and no parent, anything else no coordinator; a parent is never blacklisted
    /// and never this phone; nothing relayed beyond what is verified; at most one install,
    /// and only of a complete file; at most `fallback_slots` leases out.
    pub fn invariants(&self, cfg: &Config) -> Result<(), String> {
        if self.liar.is_some() {
            return Ok(()); // a hostile phone (fault injection) breaks the rules on purpose
        }
        for x in &self.hierarchies {
            let h = x.id;
            let fail = |what: String| Err(format!("phone {} hierarchy {h}: {what}", self.id));
            if x.verified > x.chunks {
                return fail(format!("verified {} > chunks {}", x.verified, x.chunks));
            }
            if x.children.len() > usize::from(cfg.fanout) {
                return fail(format!(
                    "{} children > fanout {}",
                    x.children.len(),
                    cfg.fanout
                ));
            }
            if x.role == Role::Root && (x.coordinator.is_none() || x.parent.is_some()) {
                return fail("a root without a coordinator, or with a parent".into());
            }
            if x.role != Role::Root && x.coordinator.is_some() {
                return fail(format!("{:?} holds a coordinator", x.role));
            }
            if let Some(p) = x.parent
                && (x.blacklist.contains(&p) || p == self.id)
            {
                return fail(format!("parent {p} is blacklisted or itself"));
            }
            if let Some(c) = x.children.iter().find(|c| c.relayed > x.verified) {
                return fail(format!(
                    "relayed {} to {} > verified {}",
                    c.relayed, c.peer, x.verified
                ));
            }
            if x.installs > 1 || (x.installs == 1 && !x.done()) {
                return fail(format!(
                    "{} installs, verified {}/{}",
                    x.installs, x.verified, x.chunks
                ));
            }
            if x.leases.len() > cfg.fallback_slots as usize {
                return fail(format!(
                    "{} leases > {}",
                    x.leases.len(),
                    cfg.fallback_slots
                ));
            }
        }
        Ok(())
    }

    fn index(&self, h: u32) -> Option<usize> {
        self.hierarchies.iter().position(|x| x.id == h)
    }

    /// Feeds one event; appends the resulting actions to `out`.
    pub fn handle(&mut self, cfg: &Config, now: Time, event: Event, out: &mut Vec<Action>) {
        match event {
            Event::Boot => self.boot(cfg, now, out),
            Event::Timer {
                kind: TimerKind::Watchdog,
                ..
            } => self.watchdog(cfg, now, out),
            Event::Timer { h, kind } => {
                if let Some(i) = self.index(h) {
                    self.timer(cfg, now, i, kind, out);
                }
            }
            Event::Recv { from, msg } => {
                if let Some(i) = self.index(msg.hierarchy()) {
                    if self.liar.is_some() {
                        self.liar_recv(i, from, msg, out);
                    } else {
                        self.recv(cfg, now, i, from, msg, out);
                    }
                }
            }
            Event::OriginReady { h } => {
                if let Some(i) = self.index(h) {
                    let x = &mut self.hierarchies[i];
                    if x.fetching() && !x.done() {
                        x.origin_open = true;
                        x.last_origin_rx = now;
                    } else {
                        out.push(Action::OriginClose { h });
                    }
                }
            }
            Event::OriginBusy { h } => {
                if let Some(i) = self.index(h) {
                    let jitter = self.rng.random_range(0..=cfg.origin_retry);
                    out.push(Action::Timer {
                        h,
                        kind: TimerKind::OriginRetry,
                        at: now + cfg.origin_retry / 2 + jitter,
                    });
                    self.hierarchies[i].origin_open = false;
                }
            }
            Event::OriginChunk { h, index, ok } => {
                if let Some(i) = self.index(h) {
                    self.origin_chunk(cfg, now, i, index, ok, out);
                }
            }
            Event::PeerLost { peer } => {
                for i in 0..self.hierarchies.len() {
                    let x = &mut self.hierarchies[i];
                    x.children.retain(|c| c.peer != peer);
                    if x.parent == Some(peer) {
                        x.parent = None;
                        Self::exclude(x, peer, Exclusion::Dead);
                        self.rejoin(now, i, out);
                    }
                }
            }
        }
    }

    fn boot(&mut self, cfg: &Config, now: Time, out: &mut Vec<Action>) {
        if self.booted {
            return; // power-on happens once; a rebooted phone is a new `Phone`
        }
        self.booted = true;
        if let Some(kind) = self.liar {
            self.liar_boot(cfg, now, kind, out);
            return;
        }
        for i in 0..self.hierarchies.len() {
            if cfg.mode == Mode::Traditional {
                self.hierarchies[i].role = Role::Traditional;
            } else {
                self.hierarchies[i].orphan_since = Some(now);
                self.arm_claim(cfg, now, i, 0, out);
            }
        }
        if cfg.mode == Mode::Traditional {
            self.open_next_traditional(out);
        } else {
            self.watchdog_due = Some(now + cfg.watchdog);
            out.push(Action::Timer {
                h: 0,
                kind: TimerKind::Watchdog,
                at: now + cfg.watchdog,
            });
        }
    }

    /// Arms the claim timer; `listen` µs are added before the back-off (a member that lost
    /// its root first listens for one root advert interval, so a root that was only late, as
    /// on an overloaded host, is heard before anyone claims its place).
    fn arm_claim(
        &mut self,
        cfg: &Config,
        now: Time,
        i: usize,
        listen: Time,
        out: &mut Vec<Action>,
    ) {
        let x: f64 = self.rng.random_range(f64::EPSILON..=1.0);
        let xid: u32 = self.rng.random();
        let hier = &mut self.hierarchies[i];
        let (mut delay, mut strength) = claim_draw(x, cfg.claim_window, cfg.n_max, hier.verified);
        // A phone on a slow port would fetch the whole file through it and feed the tree at
        // its rate (a 2 Mbit/s root held a 100-phone site to 2.4 x the WAN limit in the
        // simulator): it claims one claim window later and weaker than any phone that is not
        // slow, so it becomes root only if no such phone claims (data held still counts first).
        let low = strength & 0xffff_ffff;
        strength &= !0xffff_ffff;
        if self.link_kbit < cfg.leaf_below_kbit {
            delay += cfg.claim_window;
            strength |= low >> 1;
        } else {
            strength |= 0x8000_0000 | (low >> 1);
        }
        hier.role = Role::Waiting;
        hier.me = Claim {
            tier: Tier::Tentative,
            strength,
            peer: self.id,
            xid,
        };
        out.push(Action::Timer {
            h: hier.id,
            kind: TimerKind::Claim,
            at: now + listen + delay,
        });
    }

    fn timer(&mut self, cfg: &Config, now: Time, i: usize, kind: TimerKind, out: &mut Vec<Action>) {
        let h = self.hierarchies[i].id;
        match kind {
            TimerKind::Claim => {
                let x = &mut self.hierarchies[i];
                if x.role != Role::Waiting || x.best.is_some_and(|b| b > x.me) {
                    return; // suppressed: a claim at least as strong was heard
                }
                x.role = Role::Claimant;
                x.seq = 1;
                out.push(Action::Broadcast(x.advert(cfg.fanout)));
                out.push(Action::Timer {
                    h,
                    kind: TimerKind::Guard,
                    at: now + cfg.claim_guard,
                });
            }
            TimerKind::Guard => {
                let x = &self.hierarchies[i];
                if x.role == Role::Claimant && x.best.is_none_or(|b| b <= x.me) {
                    self.become_root(cfg, now, i, out);
                }
            }
            TimerKind::Advert => {
                let x = &mut self.hierarchies[i];
                if x.role != Role::Root {
                    return;
                }
                x.seq += 1;
                if x.me.tier == Tier::Fetching && x.seq > cfg.confirm_adverts {
                    x.me.tier = Tier::Confirmed;
                    out.push(Action::ConfirmedRoot { h, xid: x.me.xid });
                }
                out.push(Action::Broadcast(x.advert(cfg.fanout)));
                let next = if x.me.tier == Tier::Confirmed {
                    cfg.root_advert_interval
                } else {
                    cfg.advert_interval
                };
                out.push(Action::Timer {
                    h,
                    kind: TimerKind::Advert,
                    at: now + next,
                });
            }
            TimerKind::Join => {
                // Honest phones below the threshold declare themselves leaves. (A corrupt peer
                // would not; it asks for children like anyone else, to test the defences.)
                let leaf = self.link_kbit < cfg.leaf_below_kbit && !self.corrupt;
                let max_children = if leaf { 0 } else { cfg.fanout };
                let x = &mut self.hierarchies[i];
                let Some(root) = x.best else { return };
                if x.role != Role::Member || !x.join_pending {
                    return;
                }
                out.push(Action::Send {
                    to: root.peer,
                    msg: Msg::Join {
                        h,
                        xid: root.xid,
                        max_children,
                        verified: x.verified,
                        exclude: x.excludes,
                    },
                });
                out.push(Action::Timer {
                    h,
                    kind: TimerKind::Join,
                    at: now + cfg.join_timeout,
                });
            }
            TimerKind::OriginRetry => {
                let x = &self.hierarchies[i];
                if x.fetching() && !x.origin_open && !x.done() {
                    out.push(Action::OriginOpen {
                        h,
                        fallback: x.role == Role::Fallback,
                    });
                }
            }
            TimerKind::Lease => self.lease_timer(cfg, now, i, out),
            TimerKind::Watchdog => unreachable!("handled phone-wide"),
        }
    }

    fn become_root(&mut self, cfg: &Config, now: Time, i: usize, out: &mut Vec<Action>) {
        let id = self.id;
        let x = &mut self.hierarchies[i];
        let h = x.id;
        if let Some(old) = x.parent.take() {
            out.push(Action::Send {
                to: old,
                msg: x.leave(),
            });
        }
        x.role = Role::Root;
        x.me.tier = Tier::Fetching;
        x.refresh_strength();
        x.best = Some(x.me);
        x.children.clear();
        x.coordinator = Some(Box::new(Coordinator::new(id, cfg.fanout)));
        x.orphan_since = None;
        x.join_pending = false;
        x.joined_xid = Some(x.me.xid);
        x.depth = 0;
        x.seq += 1;
        out.push(Action::BecameRoot {
            h,
            xid: x.me.xid,
            serving: x.done(),
        });
        out.push(Action::Broadcast(x.advert(cfg.fanout)));
        out.push(Action::Timer {
            h,
            kind: TimerKind::Advert,
            at: now + cfg.advert_interval,
        });
        if !x.done() {
            out.push(Action::OriginOpen { h, fallback: false });
        }
    }

    fn recv(
        &mut self,
        cfg: &Config,
        now: Time,
        i: usize,
        from: PeerId,
        msg: Msg,
        out: &mut Vec<Action>,
    ) {
        match msg {
            Msg::Advert {
                claim, verified, ..
            } => {
                let x = &mut self.hierarchies[i];
                if x.best.is_some_and(|b| b.peer == from) {
                    x.root_verified = verified;
                }
                self.advert(cfg, now, i, from, claim, out);
            }
            Msg::Join {
                h,
                xid,
                max_children,
                exclude,
                ..
            } => {
                let x = &mut self.hierarchies[i];
                let placed = match (&mut x.coordinator, x.role) {
                    (Some(c), Role::Root) if xid == x.me.xid => {
                        let ex: Vec<_> = exclude.iter().collect();
                        c.join(from, max_children, &ex)
                    }
                    _ => None,
                };
                let msg = match placed {
                    Some((parent, depth)) => Msg::Accept {
                        h,
                        xid,
                        parent,
                        depth,
                    },
                    None => Msg::Reject { h, xid },
                };
                out.push(Action::Send { to: from, msg });
            }
            Msg::Accept {
                h,
                xid,
                parent,
                depth,
            } => {
                let x = &mut self.hierarchies[i];
                let expected = x.best.is_some_and(|b| b.peer == from && b.xid == xid);
                if x.role != Role::Member || !x.join_pending || !expected {
                    return;
                }
                if parent == self.id || x.blacklist.contains(&parent) {
                    // A root that places us under ourselves or under a peer we caught sending
                    // corrupt data (found by the fuzz target `phone_events`): ignored as if
                    // lost; the Join timer asks again.
                    return;
                }
                x.join_pending = false;
                if let Some(old) = x.parent.filter(|&p| p != parent) {
                    out.push(Action::Send {
                        to: old,
                        msg: x.leave(),
                    });
                }
                x.joined_xid = Some(xid);
                x.last_rx = now;
                x.parent = Some(parent);
                x.depth = depth;
                x.orphan_since = None;
                x.lag_since = None;
                out.push(Action::Send {
                    to: parent,
                    msg: Msg::Request {
                        h,
                        from: x.verified,
                        xid,
                    },
                });
            }
            Msg::Reject { xid, .. } => {
                // From the root: the Join timer retries and adverts tell us if the root
                // changed. From our parent: it refused our Request, so re-attach elsewhere.
                let x = &mut self.hierarchies[i];
                if x.parent == Some(from) && x.role == Role::Member && x.joined_xid == Some(xid) {
                    x.parent = None;
                    Self::exclude(x, from, Exclusion::Slow);
                    self.rejoin(now, i, out);
                }
            }
            Msg::Request {
                h,
                from: start,
                xid,
            } => {
                let x = &mut self.hierarchies[i];
                if x.role == Role::Traditional {
                    return;
                }
                let current = x.joined_xid;
                if let Some(c) = x.children.iter_mut().find(|c| c.peer == from) {
                    // Already streaming to it: what is in the socket will arrive, so a repeat
                    // Request (a stall probe) never rewinds and never duplicates.
                    c.next = c.next.max(start);
                    c.xid = xid;
                } else if x.children.len() < usize::from(cfg.fanout) {
                    x.children.push(Child {
                        peer: from,
                        next: start,
                        relayed: 0,
                        xid,
                    });
                } else if let Some(stale) = x.children.iter_mut().find(|c| Some(c.xid) != current) {
                    // Full, but one child belongs to an older tree: it is rejoining anyway.
                    out.push(Action::Send {
                        to: stale.peer,
                        msg: Msg::Reject { h, xid: stale.xid },
                    });
                    *stale = Child {
                        peer: from,
                        next: start,
                        relayed: 0,
                        xid,
                    };
                } else {
                    // Full (the root's bookkeeping was stale). Answer in the child's tree, so
                    // it re-attaches elsewhere instead of waiting on us.
                    out.push(Action::Send {
                        to: from,
                        msg: Msg::Reject { h, xid },
                    });
                    return;
                }
                assert!(x.children.len() <= usize::from(cfg.fanout));
                self.pump(cfg, i, out);
            }
            Msg::Chunk {
                index, have, ok, ..
            } => self.chunk(cfg, now, i, from, index, have, ok, out),
            Msg::Lease { xid, op, .. } => self.lease(cfg, now, i, from, xid, op, out),
            Msg::Leave { .. } => {
                self.hierarchies[i].children.retain(|c| c.peer != from);
            }
        }
    }

    fn advert(
        &mut self,
        cfg: &Config,
        now: Time,
        i: usize,
        from: PeerId,
        claim: Claim,
        out: &mut Vec<Action>,
    ) {
        let x = &mut self.hierarchies[i];
        if x.blacklist.contains(&from) || claim.peer != from {
            return;
        }
        // A member stays with its live root: only roots compare themselves with other roots,
        // and the loser says so (a step-down advert) before its members move. Members judging
        // roots themselves would flap between two trees while the roots settle.
        let loyal = x.role == Role::Member
            && x.best.is_some_and(|b| {
                b.peer != from
                    && b.tier >= Tier::Fetching
                    && now.saturating_sub(x.root_seen_at) <= cfg.root_timeout
            });
        if loyal {
            return;
        }
        match x.best {
            Some(b) if b.peer == from => {
                x.best = Some(claim);
                x.root_seen_at = now;
            }
            Some(b) if b >= claim => return,
            _ => {
                x.best = Some(claim);
                x.root_seen_at = now;
            }
        }
        let best = x.best.expect("set above");
        match x.role {
            Role::Waiting => {
                if best.tier >= Tier::Fetching {
                    self.follow(cfg, now, i, out);
                }
            }
            Role::Claimant => {
                if best > x.me {
                    x.role = Role::Waiting;
                    if best.tier >= Tier::Fetching {
                        self.follow(cfg, now, i, out);
                    }
                }
            }
            Role::Root => {
                if best > x.me {
                    // A stronger root exists (only possible when two passed their guards at
                    // once): stop fetching, keep what is verified, join it.
                    let h = x.id;
                    x.me.tier = Tier::Tentative;
                    out.push(Action::Broadcast(x.advert(cfg.fanout)));
                    x.coordinator = None;
                    x.children.clear();
                    if x.origin_open {
                        x.origin_open = false;
                        out.push(Action::OriginClose { h });
                    }
                    self.follow(cfg, now, i, out);
                }
            }
            Role::Member => {
                if best.tier >= Tier::Fetching && x.joined_xid != Some(best.xid) && !x.join_pending
                {
                    self.follow(cfg, now, i, out);
                }
            }
            Role::Fallback | Role::Traditional => {}
        }
    }

    /// Starts joining the best root after a random spread (no join implosion at the root).
    fn follow(&mut self, cfg: &Config, now: Time, i: usize, out: &mut Vec<Action>) {
        let spread = self.rng.random_range(0..=cfg.join_spread);
        let x = &mut self.hierarchies[i];
        x.role = Role::Member;
        x.join_pending = true;
        x.orphan_since.get_or_insert(now);
        out.push(Action::Timer {
            h: x.id,
            kind: TimerKind::Join,
            at: now + spread,
        });
    }

    /// Lost or dropped the parent: ask the root again at once, keeping children and data.
    fn rejoin(&mut self, now: Time, i: usize, out: &mut Vec<Action>) {
        let x = &mut self.hierarchies[i];
        if x.role != Role::Member || x.done() {
            return;
        }
        x.orphan_since.get_or_insert(now);
        x.join_pending = true;
        let h = x.id;
        out.push(Action::Timer {
            h,
            kind: TimerKind::Join,
            at: now,
        });
    }

    /// Leaves a root that is our parent and feeds us nothing it claims to hold; blacklists it
    /// (its adverts are ignored from now on) and re-elects, as for a corrupt root. No fallback:
    /// that would bypass the bound on origin transfers.
    fn reject_stalled_root(
        &mut self,
        cfg: &Config,
        now: Time,
        i: usize,
        root: PeerId,
        silent: Time,
        out: &mut Vec<Action>,
    ) {
        let x = &mut self.hierarchies[i];
        let h = x.id;
        out.push(Action::Send {
            to: root,
            msg: x.leave(),
        });
        x.parent = None;
        x.starved_since = None;
        x.lag_since = None;
        Self::exclude(x, root, Exclusion::Dead);
        if !x.blacklist.contains(&root) && x.blacklist.len() < 64 {
            x.blacklist.push(root);
        }
        x.best = None;
        x.joined_xid = None;
        x.join_pending = false;
        x.wants_lease = false;
        x.lease_asked_at = None;
        x.orphan_since.get_or_insert(now);
        out.push(Action::RootLost {
            h,
            silent,
            corrupt: false,
            stalled: true,
        });
        self.arm_claim(cfg, now, i, 0, out);
    }

    /// A liar powers on already "root" of everything, with the strongest claim there is.
    fn liar_boot(&mut self, cfg: &Config, now: Time, kind: Liar, out: &mut Vec<Action>) {
        for i in 0..self.hierarchies.len() {
            let xid: u32 = self.rng.random();
            let x = &mut self.hierarchies[i];
            x.role = Role::Root;
            x.lies = true;
            x.me = Claim {
                tier: Tier::Confirmed,
                strength: u64::MAX,
                peer: self.id,
                xid,
            };
            x.best = Some(x.me);
            x.joined_xid = Some(xid);
            x.seq = 1;
            out.push(Action::Broadcast(x.advert(cfg.fanout)));
            out.push(Action::Timer {
                h: x.id,
                kind: TimerKind::Advert,
                at: now + cfg.advert_interval,
            });
            if kind == Liar::Trickle && !x.done() {
                out.push(Action::OriginOpen {
                    h: x.id,
                    fallback: false,
                });
            }
        }
        out.push(Action::Timer {
            h: 0,
            kind: TimerKind::Watchdog,
            at: now + cfg.watchdog,
        });
    }

    /// A liar answers every join with itself as the parent, takes every child, and ignores
    /// everything else (adverts, leases: it never steps down and never grants).
    fn liar_recv(&mut self, i: usize, from: PeerId, msg: Msg, out: &mut Vec<Action>) {
        let me = self.id;
        let x = &mut self.hierarchies[i];
        match msg {
            Msg::Join { h, xid, .. } if xid == x.me.xid => out.push(Action::Send {
                to: from,
                msg: Msg::Accept {
                    h,
                    xid,
                    parent: me,
                    depth: 1,
                },
            }),
            Msg::Request {
                from: start, xid, ..
            } => {
                if let Some(c) = x.children.iter_mut().find(|c| c.peer == from) {
                    c.next = c.next.max(start);
                } else if x.children.len() < LIAR_MAX_CHILDREN {
                    x.children.push(Child {
                        peer: from,
                        next: start,
                        relayed: 0,
                        xid,
                    });
                }
            }
            Msg::Leave { .. } => x.children.retain(|c| c.peer != from),
            _ => {}
        }
    }

    /// A trickling liar sends each child one verified chunk per [`LIAR_TRICKLE`], claiming
    /// to hold the whole file.
    fn liar_watchdog(&mut self, now: Time, out: &mut Vec<Action>) {
        if self.liar != Some(Liar::Trickle) {
            return;
        }
        for x in &mut self.hierarchies {
            if now < x.trickle_at {
                continue;
            }
            x.trickle_at = now + LIAR_TRICKLE;
            for c in &mut x.children {
                if c.next < x.verified {
                    out.push(Action::Send {
                        to: c.peer,
                        msg: Msg::Chunk {
                            h: x.id,
                            index: c.next,
                            have: x.chunks,
                            ok: true,
                        },
                    });
                    c.next += 1;
                    c.relayed = c.next;
                }
            }
        }
    }

    fn exclude(x: &mut Hierarchy, peer: PeerId, why: Exclusion) {
        x.excludes.push(peer, why);
        // Only corrupt peers are ignored for good: a peer presumed dead may come back (a healed
        // partition, a reboot) and must be heard again.
        if why == Exclusion::Corrupt && !x.blacklist.contains(&peer) && x.blacklist.len() < 64 {
            x.blacklist.push(peer);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn chunk(
        &mut self,
        cfg: &Config,
        now: Time,
        i: usize,
        from: PeerId,
        index: u32,
        have: u32,
        ok: bool,
        out: &mut Vec<Action>,
    ) {
        let x = &mut self.hierarchies[i];
        if x.parent != Some(from) || x.role != Role::Member {
            return; // stale: from a parent we already left
        }
        let h = x.id;
        if !ok {
            // Verification failed: never relay or install it; drop and blacklist the parent.
            out.push(Action::Send {
                to: from,
                msg: x.leave(),
            });
            x.parent = None;
            Self::exclude(x, from, Exclusion::Corrupt);
            if x.best.is_some_and(|b| b.peer == from) {
                // The root itself is corrupt: it is blacklisted (its adverts are ignored from
                // now on) and the phones that caught it elect a new root among themselves. No
                // fallback: that would bypass the bound on origin transfers.
                x.best = None;
                x.joined_xid = None;
                x.join_pending = false;
                x.orphan_since.get_or_insert(now);
                out.push(Action::RootLost {
                    h,
                    silent: 0,
                    corrupt: true,
                    stalled: false,
                });
                self.arm_claim(cfg, now, i, 0, out);
            } else {
                self.rejoin(now, i, out);
            }
            return;
        }
        x.last_rx = now;
        x.starved_since = None;
        if index != x.verified || x.done() {
            // A duplicate after a re-attach, or past the file's end (found by the fuzz target
            // `phone_events`; a driver marks such a chunk !ok, the core need not rely on it).
            return;
        }
        x.last_progress = now;
        self.verified_one(cfg, i, out);
        // A phone whose own link is the bottleneck cannot blame its parent for the lag.
        let own_link_ok = self.link_kbit >= cfg.leaf_below_kbit;
        let x = &mut self.hierarchies[i];
        // A parent that falls far behind what it holds itself is slow: re-attach elsewhere.
        // The root as our parent streams each chunk as it verifies it, so it is held to a
        // small lag (a trickling liar on a short file never falls 16 chunks behind).
        // Only a root that claims the whole file is held to it: one still fetching may lag a
        // little behind its own verified count under loss, and is not a liar for it.
        let root_is_parent = x.best.is_some_and(|b| b.peer == from) && have == x.chunks;
        let lag = if root_is_parent {
            ROOT_LAG_CHUNKS
        } else {
            cfg.slow_lag_chunks
        };
        if own_link_ok && !x.done() && have > x.verified + lag {
            let since = *x.lag_since.get_or_insert(now);
            if now - since > 2 * cfg.slow_window && root_is_parent {
                // The root itself trickles far behind what it claims: as a silent root.
                self.reject_stalled_root(cfg, now, i, from, now - since, out);
            } else if now - since > cfg.slow_window && !root_is_parent {
                // (Leaving the root for a fresh place would land under it again.)
                out.push(Action::Send {
                    to: from,
                    msg: x.leave(),
                });
                x.parent = None;
                x.lag_since = None;
                Self::exclude(x, from, Exclusion::Slow);
                self.rejoin(now, i, out);
            }
        } else {
            x.lag_since = None;
        }
    }

    fn origin_chunk(
        &mut self,
        cfg: &Config,
        now: Time,
        i: usize,
        index: u32,
        ok: bool,
        out: &mut Vec<Action>,
    ) {
        let x = &mut self.hierarchies[i];
        if !x.fetching() || !x.origin_open {
            return; // a deposed root's last in-flight chunks
        }
        x.last_origin_rx = now;
        if !ok {
            // The transfer delivered bytes that fail verification: reopen it (it restarts
            // from the file's start; the verified prefix is skipped).
            x.origin_open = false;
            let h = x.id;
            out.push(Action::OriginClose { h });
            out.push(Action::OriginOpen {
                h,
                fallback: x.role == Role::Fallback,
            });
            return;
        }
        if index == x.verified && !x.done() {
            self.verified_one(cfg, i, out);
        }
        let x = &mut self.hierarchies[i];
        if x.done() {
            x.origin_open = false;
            let h = x.id;
            out.push(Action::OriginClose { h });
            if x.role == Role::Traditional {
                self.open_next_traditional(out);
                return;
            }
            if x.role == Role::Fallback {
                x.lease_until = 0;
                if let Some(root) = x.best {
                    out.push(Action::Send {
                        to: root.peer,
                        msg: Msg::Lease {
                            h,
                            xid: root.xid,
                            op: LeaseOp::Release,
                        },
                    });
                }
            }
        }
    }

    /// A phone on its own pulls its files one after another, as the Cisco technote describes
    /// ("one by one"): every file of every phone at once would put phones x files lock-step
    /// transfers into the WAN queue, which overflows it and turns losses into timeouts.
    fn open_next_traditional(&mut self, out: &mut Vec<Action>) {
        if let Some(x) = self
            .hierarchies
            .iter()
            .find(|x| x.role == Role::Traditional && !x.done())
        {
            out.push(Action::OriginOpen {
                h: x.id,
                fallback: false,
            });
        }
    }

    /// The next chunk in order passed verification: count it, relay it, maybe install.
    fn verified_one(&mut self, cfg: &Config, i: usize, out: &mut Vec<Action>) {
        let x = &mut self.hierarchies[i];
        debug_assert!(x.verified < x.chunks);
        x.verified += 1;
        if x.done() {
            x.installs += 1;
            out.push(Action::Install { h: x.id });
        }
        self.pump(cfg, i, out);
    }

    /// Sends every child the verified chunks it lacks (all of them once the file is complete in
    /// store-and-forward mode). Only verified chunks are ever relayed.
    fn pump(&mut self, cfg: &Config, i: usize, out: &mut Vec<Action>) {
        if self.liar.is_some() {
            return; // it feeds its children from the watchdog, if at all
        }
        let corrupt = self.corrupt;
        let x = &mut self.hierarchies[i];
        let limit = match cfg.mode {
            Mode::Pipelined => x.verified,
            Mode::StoreAndForward if x.done() => x.chunks,
            _ => 0,
        };
        for c in &mut x.children {
            while c.next < limit {
                debug_assert!(c.next < x.verified, "relaying an unverified chunk");
                out.push(Action::Send {
                    to: c.peer,
                    msg: Msg::Chunk {
                        h: x.id,
                        index: c.next,
                        have: x.verified,
                        ok: !corrupt,
                    },
                });
                c.next += 1;
                c.relayed = c.next;
            }
        }
    }

    /// Asks the live root for a fallback lease (retried by the lease timer). Without a live
    /// root nothing is sent: a dead root grants nothing, and the member re-elects instead.
    fn request_lease(&mut self, cfg: &Config, now: Time, i: usize, out: &mut Vec<Action>) {
        let me = self.id;
        let x = &mut self.hierarchies[i];
        let live = x.best.filter(|b| {
            b.tier >= Tier::Fetching
                && b.peer != me
                && now.saturating_sub(x.root_seen_at) <= cfg.root_timeout
        });
        let Some(root) = live else {
            x.wants_lease = false;
            return;
        };
        x.wants_lease = x.role != Role::Fallback;
        x.lease_asked_at.get_or_insert(now);
        let h = x.id;
        out.push(Action::Send {
            to: root.peer,
            msg: Msg::Lease {
                h,
                xid: root.xid,
                op: LeaseOp::Request,
            },
        });
        out.push(Action::Timer {
            h,
            kind: TimerKind::Lease,
            at: now + cfg.lease_renew,
        });
    }

    /// The lease timer: a requester asks again, a holder renews, an expired holder stops.
    fn lease_timer(&mut self, cfg: &Config, now: Time, i: usize, out: &mut Vec<Action>) {
        let x = &mut self.hierarchies[i];
        match x.role {
            Role::Fallback if !x.done() => {
                if now >= x.lease_until {
                    // Not renewed in time (the root died or moved on): stop fetching, so a
                    // successor root's leases never add to ours at the origin.
                    let h = x.id;
                    x.lease_until = 0;
                    x.lease_asked_at = None;
                    if x.origin_open {
                        x.origin_open = false;
                        out.push(Action::OriginClose { h });
                    }
                    x.role = Role::Member;
                    x.orphan_since = Some(now);
                    self.rejoin(now, i, out);
                } else {
                    let (h, until) = (x.id, x.lease_until);
                    self.request_lease(cfg, now, i, out);
                    out.push(Action::Timer {
                        h,
                        kind: TimerKind::Lease,
                        at: (now + cfg.lease_renew).min(until),
                    });
                }
            }
            Role::Member if x.wants_lease && x.parent.is_none() && !x.done() => {
                self.request_lease(cfg, now, i, out);
            }
            _ => {
                x.wants_lease = false;
                x.lease_asked_at = None;
            }
        }
    }

    /// A lease message: the root grants, refuses or takes back; a member starts or renews.
    #[allow(clippy::too_many_arguments)]
    fn lease(
        &mut self,
        cfg: &Config,
        now: Time,
        i: usize,
        from: PeerId,
        xid: u32,
        op: LeaseOp,
        out: &mut Vec<Action>,
    ) {
        let x = &mut self.hierarchies[i];
        let h = x.id;
        match op {
            LeaseOp::Request if x.role == Role::Root && xid == x.me.xid => {
                x.leases.retain(|&(_, until)| until > now);
                // The root's record outlasts the holder's own view by one renewal interval.
                let until = now + cfg.lease_time + cfg.lease_renew;
                let granted = if let Some(l) = x.leases.iter_mut().find(|l| l.0 == from) {
                    l.1 = until;
                    true
                } else if x.leases.len() < cfg.fallback_slots as usize {
                    x.leases.push((from, until));
                    true
                } else {
                    false
                };
                assert!(x.leases.len() <= cfg.fallback_slots as usize);
                let op = if granted {
                    LeaseOp::Grant
                } else {
                    LeaseOp::Refuse
                };
                out.push(Action::Send {
                    to: from,
                    msg: Msg::Lease { h, xid, op },
                });
            }
            LeaseOp::Release if x.role == Role::Root && xid == x.me.xid => {
                x.leases.retain(|l| l.0 != from);
            }
            LeaseOp::Grant if x.best.is_some_and(|b| b.peer == from && b.xid == xid) => {
                let Some(asked) = x.lease_asked_at.take() else {
                    return; // a duplicate grant: the first one counted
                };
                if asked + cfg.lease_time <= now {
                    // Answers a request so old that the lease has already run out (found by
                    // `pfs simulate --swarm`: taking it meant falling back and stopping at
                    // once, thousands of times, while the root held the slot): give it back
                    // and ask afresh.
                    out.push(Action::Send {
                        to: from,
                        msg: Msg::Lease {
                            h,
                            xid,
                            op: LeaseOp::Release,
                        },
                    });
                    return;
                }
                match x.role {
                    Role::Member if x.wants_lease && x.parent.is_none() && !x.done() => {
                        x.wants_lease = false;
                        x.lease_until = asked + cfg.lease_time;
                        self.fallback(i, FallbackReason::NoPeer, out);
                        out.push(Action::Timer {
                            h,
                            kind: TimerKind::Lease,
                            at: (now + cfg.lease_renew).min(asked + cfg.lease_time),
                        });
                    }
                    Role::Fallback => x.lease_until = x.lease_until.max(asked + cfg.lease_time),
                    _ => {
                        // Granted but no longer needed (a parent turned up): give it back.
                        x.wants_lease = false;
                        out.push(Action::Send {
                            to: from,
                            msg: Msg::Lease {
                                h,
                                xid,
                                op: LeaseOp::Release,
                            },
                        });
                    }
                }
            }
            LeaseOp::Refuse if x.best.is_some_and(|b| b.peer == from && b.xid == xid) => {
                // The requests so far are answered: a later grant lasts from a later request
                // (the timer asks again). Without this a grant after a long run of refusals
                // was dated from the first request and had expired on arrival.
                x.lease_asked_at = None;
            }
            _ => {} // not for us
        }
    }

    fn fallback(&mut self, i: usize, reason: FallbackReason, out: &mut Vec<Action>) {
        let x = &mut self.hierarchies[i];
        x.role = Role::Fallback;
        x.parent = None;
        x.join_pending = false;
        x.orphan_since = None;
        out.push(Action::Fallback { h: x.id, reason });
        if !x.done() {
            out.push(Action::OriginOpen {
                h: x.id,
                fallback: true,
            });
        }
    }

    fn watchdog(&mut self, cfg: &Config, now: Time, out: &mut Vec<Action>) {
        if self.liar.is_some() {
            self.liar_watchdog(now, out);
            out.push(Action::Timer {
                h: 0,
                kind: TimerKind::Watchdog,
                at: now + cfg.watchdog,
            });
            return;
        }
        // Time the driver did not run this phone is not silence: a phone that could not
        // listen (its host's turn took seconds) heard nothing because it did not look, not
        // because its root or parent died. Its silence clocks skip that time. At 1000 phones
        // on 2 cores turns of 1-7 s made every member presume its root dead at once, and the
        // re-election's broadcasts made the turns longer still (`pfs lab`).
        let deaf = self.watchdog_due.map_or(0, |due| now.saturating_sub(due));
        if deaf > 0 {
            for x in &mut self.hierarchies {
                x.skip_deaf(now, deaf);
            }
        }
        for i in 0..self.hierarchies.len() {
            let x = &mut self.hierarchies[i];
            match x.role {
                // A member still fed by its parent has a live tree: on a saturated link the
                // root's adverts are what gets dropped, not the data (seen in `pfs lab`).
                Role::Member
                    if now.saturating_sub(x.root_seen_at) > cfg.root_timeout
                        && now.saturating_sub(x.last_progress) > cfg.root_timeout =>
                {
                    // Root presumed dead: re-elect. Phones holding more data claim stronger.
                    out.push(Action::RootLost {
                        h: x.id,
                        silent: now.saturating_sub(x.root_seen_at.max(x.last_progress)),
                        corrupt: false,
                        stalled: false,
                    });
                    x.wants_lease = false;
                    x.lease_asked_at = None;
                    if let Some(dead) = x.best.take() {
                        Self::exclude(x, dead.peer, Exclusion::Dead);
                    }
                    x.orphan_since.get_or_insert(now);
                    x.join_pending = false;
                    self.arm_claim(
                        cfg,
                        now,
                        i,
                        cfg.root_advert_interval + cfg.advert_interval,
                        out,
                    );
                }
                // A claim heard but never followed by a root (its claimant died or was cut off
                // before passing its guard) suppresses nobody for ever: forget it and claim.
                Role::Waiting
                    if x.best.is_some_and(|b| b.tier == Tier::Tentative)
                        && now.saturating_sub(x.root_seen_at) > cfg.root_timeout =>
                {
                    x.best = None;
                    self.arm_claim(cfg, now, i, 0, out);
                }
                _ => {}
            }
            let x = &mut self.hierarchies[i];
            let probe_due = now.saturating_sub(x.last_rx) > cfg.stall_timeout;
            if x.role == Role::Member
                && !x.done()
                && let Some(parent) = x.parent
                && (probe_due || x.starved_since.is_some())
            {
                // Nothing from the parent for a while: ask again from our verified offset
                // (every `stall_timeout`), and judge the starvation on every watchdog turn, not
                // only when a probe is due (that added up to a probe interval to every rescue:
                // a depth-5 member under a hung parent waited 9.5 s in the simulator).
                if probe_due {
                    x.last_rx = now;
                }
                if x.starved_since.is_none() {
                    x.starved_since = Some(now);
                    x.starved_root_mark = x.root_verified;
                }
                let since = x.starved_since.unwrap_or(now);
                // Deeper members wait longer: when a parent dies, its own children (the
                // shallowest starving) move first and their subtrees are fed again before
                // they would blame their own, live, parents.
                let limit = if cfg.mode == Mode::StoreAndForward {
                    cfg.starve_timeout_store_and_forward
                } else {
                    cfg.starve_timeout
                } + Time::from(x.depth) * cfg.watchdog;
                let root_fed = x.root_verified > x.starved_root_mark || x.root_verified == x.chunks;
                // The root as our parent answers a stall probe at once with what it holds (it
                // pumps on every Request), so one unanswered probe is enough in pipelined mode.
                let root_limit = if cfg.mode == Mode::StoreAndForward {
                    limit
                } else {
                    cfg.stall_timeout
                };
                if x.root_verified > x.verified
                    && root_fed
                    && now.saturating_sub(since) > root_limit
                    && x.best.is_some_and(|b| b.peer == parent)
                {
                    // Our parent is the root itself: it adverts data it does not send us. No
                    // other placement can help (it places us under itself again), so it is
                    // blacklisted and the members it starves elect a root among themselves.
                    let silent = now.saturating_sub(x.last_progress.max(since));
                    self.reject_stalled_root(cfg, now, i, parent, silent, out);
                    continue;
                }
                if x.root_verified > x.verified && root_fed && now.saturating_sub(since) > limit {
                    // The chain above us leads to no data (a stale placement, possibly a
                    // cycle across two trees): leave it and get a fresh place from the root.
                    out.push(Action::Send {
                        to: parent,
                        msg: x.leave(),
                    });
                    x.parent = None;
                    x.starved_since = None;
                    // Tell the root not to place us under it again: without this the root,
                    // which still counts the silent parent as a member with a free slot, put
                    // the child straight back under a phone whose cable was pulled (30 s and
                    // more in `pfs lab`). Presumed dead, not blacklisted: heard again later.
                    Self::exclude(x, parent, Exclusion::Dead);
                    self.rejoin(now, i, out);
                    continue;
                }
                if probe_due {
                    out.push(Action::Send {
                        to: parent,
                        msg: Msg::Request {
                            h: x.id,
                            from: x.verified,
                            xid: x.joined_xid.unwrap_or(0),
                        },
                    });
                }
            }
            let x = &mut self.hierarchies[i];
            if x.fetching()
                && x.origin_open
                && !x.done()
                && now.saturating_sub(x.last_origin_rx) > cfg.origin_timeout
            {
                // The origin went quiet (unreachable, or replies lost): reopen from the
                // verified offset.
                x.origin_open = false;
                out.push(Action::OriginClose { h: x.id });
                out.push(Action::OriginOpen {
                    h: x.id,
                    fallback: x.role == Role::Fallback,
                });
            }
            let x = &self.hierarchies[i];
            let orphaned = matches!(x.role, Role::Member | Role::Waiting | Role::Claimant)
                && x.parent.is_none()
                && !x.done();
            if orphaned
                && !x.wants_lease
                && x.orphan_since
                    .is_some_and(|t| now.saturating_sub(t) > cfg.fallback_after)
            {
                // Only the root may let a member fetch from the origin (a lease); without a
                // live root the member re-elects instead (the root-silence rule above).
                self.request_lease(cfg, now, i, out);
            }
        }
        self.watchdog_due = Some(now + cfg.watchdog);
        out.push(Action::Timer {
            h: 0,
            kind: TimerKind::Watchdog,
            at: now + cfg.watchdog,
        });
    }
}

#[cfg(test)]
mod tests;
