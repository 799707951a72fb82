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

pub use crate::ids::PeerId;
pub use crate::time::Time;

mod config;
pub use config::{Config, Mode};

/// Up to four exclusions carried by a `Join`, each with its reason (as on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Excludes {
    len: u8,
    items: [(PeerId, Exclusion); 4],
}

impl Default for Excludes {
    fn default() -> Self {
        Excludes {
            len: 0,
            items: [(PeerId(0), Exclusion::Dead); 4],
        }
    }
}

impl Excludes {
    pub fn iter(&self) -> impl Iterator<Item = (PeerId, Exclusion)> + '_ {
        self.items[..self.len as usize].iter().copied()
    }
    /// Exclusions read off the wire, with their reasons; beyond four, the latest are kept.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (PeerId, Exclusion)>) -> Self {
        let mut e = Excludes::default();
        for (p, why) in pairs {
            e.push(p, why);
        }
        e
    }
    fn push(&mut self, peer: PeerId, why: Exclusion) {
        if self.len as usize == self.items.len() {
            self.items.rotate_left(1);
            self.len -= 1;
        }
        self.items[self.len as usize] = (peer, why);
        self.len += 1;
    }
}

/// The strength bit of a claim made without deferral (not slow, not already a busy root):
/// any such claim beats every deferred one with the same data held.
const PROMPT: u64 = 0x8000_0000;

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
    /// The driver added hierarchies with [`Phone::add_hierarchies`] (the load's files, once
    /// its manifest is verified): they start as every hierarchy does at `Boot`. Before `Boot`
    /// it is ignored (`Boot` starts them).
    Added,
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
    /// Joins sent in the current attempt to join (reset when a new one starts): the retry
    /// interval doubles with each (see `join_retry`).
    join_tries: u8,
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
    /// How long the current claim waits for a stronger one before fetching: `claim_guard`
    /// at boot, `busy_claim_guard` for any later election (see [`Config::busy_claim_guard`]).
    guard: Time,
    /// When the pending election timer (claim, then guard) is due, and how often this
    /// election waited again because one fired late (at most `elect::MAX_LATE_WAITS`).
    election_due: Time,
    late_waits: u8,
    /// The root's verified chunk count, from its adverts.
    root_verified: u32,
    /// Since when the root we follow has advertised a chunk we lack, without our verified
    /// prefix growing: how long a root that is our parent has owed us data. Its silence
    /// before it held anything for us is no lie (a slow root behind its fast child).
    owed_since: Option<Time>,
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
    /// Whether `parent` is the root we follow and placed us under itself in its current tree:
    /// only then is its silence or trickle its own doing. A parent from an older tree that
    /// has since become root itself (its children dropped) is not feeding us by that tree's
    /// rules, and calling it a liar before our Join reached it split the hierarchy for good.
    fn placed_under_root(&self, parent: PeerId) -> bool {
        self.best
            .is_some_and(|b| b.peer == parent && self.joined_xid == Some(b.xid))
    }
    /// Notes whether the root we follow holds a chunk we lack (see `owed_since`).
    fn note_owed(&mut self, now: Time) {
        if self.root_verified > self.verified {
            self.owed_since.get_or_insert(now);
        } else {
            self.owed_since = None;
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
    /// When `Boot` arrived: how late a phone learns the load's files is measured from it.
    booted_at: Time,
    /// When the watchdog is due: how late it fires is how long the driver did not run this
    /// phone (a loaded host's late turn).
    watchdog_due: Option<Time>,
    /// When a chunk of any hierarchy, from any parent or the origin, last arrived: on a slow
    /// port that is still receiving, one stream's silence is the port's backlog, not proof.
    last_chunk: Time,
    /// Hierarchies started (claim timers armed): the first `started`; later ones were added
    /// and wait for [`Event::Added`].
    started: usize,
}

impl Phone {
    pub fn new(id: PeerId, link_kbit: u32, seed: u64, specs: &[HierarchySpec]) -> Self {
        let hierarchies = specs.iter().map(|s| Hierarchy::new(id, s)).collect();
        Phone {
            id,
            link_kbit,
            corrupt: false,
            liar: None,
            rng: ChaCha8Rng::seed_from_u64(seed),
            hierarchies,
            booted: false,
            booted_at: 0,
            watchdog_due: None,
            last_chunk: 0,
            started: 0,
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
            Event::Added if self.booted => match self.liar {
                Some(kind) => self.liar_start(cfg, now, kind, out),
                None => self.start_added(cfg, now, true, out),
            },
            Event::Added => {}
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
        self.booted_at = now;
        if let Some(kind) = self.liar {
            self.liar_boot(cfg, now, kind, out);
            return;
        }
        self.start_added(cfg, now, false, out);
        if cfg.mode != Mode::Traditional {
            self.watchdog_due = Some(now + cfg.watchdog);
            out.push(Action::Timer {
                h: 0,
                kind: TimerKind::Watchdog,
                at: now + cfg.watchdog,
            });
        }
    }

    fn timer(&mut self, cfg: &Config, now: Time, i: usize, kind: TimerKind, out: &mut Vec<Action>) {
        if i >= self.started {
            // Added but not started: the core armed no timer for it, so this one is stale or
            // spurious. Acting on it (a claim, then a coordinator) would be undone by the
            // start (found by the phone_events fuzz target: "Waiting holds a coordinator").
            return;
        }
        let h = self.hierarchies[i].id;
        match kind {
            TimerKind::Claim => self.claim_timer(cfg, now, i, out),
            TimerKind::Guard => self.guard_timer(cfg, now, i, out),
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
                let jitter = self.rng.random_range(0.0..0.25);
                let x = &mut self.hierarchies[i];
                let Some(root) = x.best else { return };
                if x.role != Role::Member || !x.join_pending {
                    return;
                }
                let retry = join_retry(cfg, x.join_tries, jitter);
                x.join_tries = x.join_tries.saturating_add(1);
                if x.joined_xid != Some(root.xid) {
                    // Joining another tree: out of the old one first (see `leave_tree`).
                    Self::leave_tree(x, Some(root.xid), out);
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
                    at: now + retry,
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
}

/// How long a `Join` waits for its answer before it is sent again: `join_timeout` doubled
/// for each join already sent in this attempt, at most 8 x (4 s), plus `jitter` (a fraction
/// in [0, 0.25)). A fixed interval collapsed 1000 lab phones: roots whose loops ran 0.5 s
/// late answered after the retry was already sent, so every join was sent again, and again
/// (90,000 joins for 7,000 memberships; the roots' sockets held 5,000 of them, the adverts
/// of other roots stuck behind, so roots presumed each other dead and re-elected).
fn join_retry(cfg: &Config, tries: u8, jitter: f64) -> Time {
    let base = cfg.join_timeout << tries.min(3);
    base + (base as f64 * jitter) as Time
}

mod added;
mod check;
mod data;
mod elect;
mod lease;
mod liar;
mod recv;
mod watchdog;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_added;
