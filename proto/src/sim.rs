//! Deterministic simulator: thousands to 100,000 virtual phones driven through the same
//! [`Phone`] state machine the engine drives, on a seeded virtual clock and network.
//!
//! Network model (stated, so the numbers can be judged):
//! - WAN: one FIFO link of `wan_mbit` from the origin to the site, `wan_rtt_ms` round trip.
//!   Opening an origin transfer costs one RTT (RRQ/OACK); then the origin streams the file from
//!   its first chunk (TFTP cannot seek, so a reopened transfer re-sends the verified prefix,
//!   as on real sockets) until the phone closes it. A transfer sends at most one TFTP window
//!   (`tftp_window_bytes`) per RTT (RFC 7440), and transfers take turns on the link chunk by
//!   chunk. Traditional phones fetch lock-step (one block per RTT), as a phone's own client.
//! - Origin admission: `origin_max_sessions` concurrent transfers, as `pfs origin
//!   --max-sessions` enforces (it answers "server busy"); 0 for a server without a limit
//!   (tftpd-hpa). The origin protects itself no further: the bound on fallbacks is the core's
//!   lease rule (a root grants at most `fallback_slots`), the same on real sockets.
//! - Manifests (`manifest_over_lan`, the signed configuration and the default): each model's
//!   manifest is one more hierarchy of one chunk (`manifest_bytes`), elected, fetched by its
//!   root over the WAN and relayed like any file; a phone adds its load's hierarchies when
//!   the manifest arrives, as the runtime does once it verified the signature. Its WAN bytes
//!   count in `wan_manifest_bytes`, inside the makespan. Without it (a keyless phone cannot
//!   verify a peer's manifest) every phone fetches its own before power-on, as `pfs lab
//!   --keyless` does while preparing phones; counted outside the makespan.
//! - LAN: each phone has a full-duplex link of `lan_mbit` (or `slow_mbit`): an egress and an
//!   ingress serializer plus `lan_latency_us`. A chunk occupies the sender's egress, then the
//!   receiver's ingress; per stream (sender, receiver), deliveries stay in order (TCP).
//! - Host: with `host_cores` > 0, every chunk delivered to a phone (from a peer or the
//!   origin) is also handled by one of the lab host's cores, at `host_cpu_s_per_gb`
//!   (see [`host`]); by default phones have CPUs of their own and this costs nothing.
//! - Loss `p`: each UDP datagram is dropped with probability `p`; a TCP or TFTP chunk of `k`
//!   packets is delayed by one retransmission round with probability `1-(1-p)^k`.
//! - Broadcasts reach every phone of the same model after the LAN latency (phones of other
//!   models drop them, as the XDP filter does).
//! - Crashes: `crash_fraction` of phones stop at uniform random times within the WAN limit;
//!   their TCP peers notice after `peer_timeout`.
//! - Corrupt peers: phones that relay chunks failing verification.
//! - Partition: `partition_fraction` of the phones are cut off from the rest, and from the site
//!   router (so from the origin), for `partition_for_s` from `partition_at_s`, as when a switch
//!   fails. Nothing crosses the cut; TCP connections across it break after `peer_timeout`;
//!   origin transfers from the cut side time out. `roots_max` counts roots outside the window
//!   (and `settle_s` after it); `roots_max_partitioned` inside it.

use std::{cmp::Reverse, collections::BinaryHeap};

use rand::{Rng, SeedableRng, seq::SliceRandom};
use rand_chacha::ChaCha8Rng;

use crate::ids::PeerId;
use crate::phone::{
    Action, Config, Event, FallbackReason, HierarchySpec, Mode, Msg, Phone, Role, Time, TimerKind,
};

/// Timer kinds, for the replace-semantics table.
mod check;
mod faults;
mod host;
mod manifest;
mod net;
mod setup;
pub use check::check;

const TIMER_KINDS: usize = 7;

fn kind_index(k: TimerKind) -> usize {
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

/// Sizes of the five files of a real CP-7961G load (SCCP41.9-4-2SR3-1S).
pub const LOAD_7961: [u64; 5] = [1_630_052, 556_833, 3_157_527, 562_693, 2_219_477];

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub phones: u32,
    pub seed: u64,
    pub mode: Mode,
    pub models: u32,
    pub wan_mbit: f64,
    pub wan_rtt_ms: f64,
    pub lan_mbit: f64,
    pub lan_latency_us: u64,
    pub loss: f64,
    pub crash_fraction: f64,
    pub corrupt_peers: u32,
    /// Hostile phones that claim root with the strongest adverts and feed their children
    /// nothing (even-numbered liars) or a trickle (odd), as `pfs lab --liar-peers` does.
    pub liar_peers: u32,
    pub slow_fraction: f64,
    pub slow_mbit: f64,
    pub chunk_size: u32,
    pub file_sizes: Vec<u64>,
    pub fanout: u8,
    /// K: fallback leases a root grants at once (the core's rule, `Config::fallback_slots`).
    pub fallback_slots: u32,
    /// The origin's own admission: concurrent transfers before it answers busy (0: none).
    pub origin_max_sessions: u32,
    /// TFTP bytes in flight per transfer (windowsize x blksize of the phones' client).
    pub tftp_window_bytes: u64,
    /// Bytes of one manifest fetch (pfs-manifest.json plus TFTP overhead).
    pub manifest_bytes: u64,
    /// The manifest is shared over the LAN as a hierarchy of its own (phones verify its
    /// signature); `false`: every phone fetches its own from the origin before power-on.
    pub manifest_over_lan: bool,
    pub peer_timeout_ms: u64,
    pub partition_fraction: f64,
    pub partition_at_s: f64,
    pub partition_for_s: f64,
    /// Hard stop for the virtual clock.
    pub max_sim_s: f64,
    /// The root of every hierarchy crashes when it holds this fraction of its file (0: off);
    /// each hierarchy loses its first root only.
    pub kill_root_at: f64,
    /// Phones that hang (as `pfs lab --freeze-fraction`): they stop handling anything, but
    /// their TCP connections stay open, so no peer is told (silence on a live stream); only a
    /// parent that fills one's receive buffer sees its stream break (`ZERO_WINDOW_ABORT`).
    pub freeze_fraction: f64,
    /// Phones whose link goes down (as `pfs lab --cut-fraction`): no FIN or RST; peers notice
    /// only through `TCP_USER_TIMEOUT` after an unacknowledged send (`cut_notice_ms`).
    pub cut_fraction: f64,
    /// When a half-open stream breaks, as measured in `pfs lab`: a child's next stall probe
    /// (the core's `stall_timeout`, 2 s) plus the engine's `PEER_TIMEOUT` (3 s).
    pub cut_notice_ms: u64,
    /// The phones' configured bound on phones per broadcast domain (`Config::n_max`,
    /// `pfs peer --max-site-phones`; `pfs lab` sets its phone count).
    pub max_site_phones: u64,
    /// Cores of the one host all phones share, as in `pfs lab` (0: every phone has its own
    /// CPU, as real phones do). See [`host`].
    pub host_cores: u32,
    /// With `host_cores`: the host's CPU seconds per GB delivered to phones, as `pfs lab`
    /// reports it (`cpu_s_per_gb`).
    pub host_cpu_s_per_gb: f64,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            phones: 1000,
            seed: 1,
            mode: Mode::Pipelined,
            models: 1,
            wan_mbit: 10.0,
            wan_rtt_ms: 50.0,
            lan_mbit: 100.0,
            lan_latency_us: 50,
            loss: 0.0,
            crash_fraction: 0.0,
            corrupt_peers: 0,
            liar_peers: 0,
            slow_fraction: 0.0,
            slow_mbit: 2.0,
            chunk_size: 64 * 1024,
            file_sizes: LOAD_7961.to_vec(),
            fanout: Config::default().fanout,
            fallback_slots: Config::default().fallback_slots,
            origin_max_sessions: 1024,
            tftp_window_bytes: {
                let c = crate::tftp::client::ClientConfig::default();
                u64::from(c.windowsize) * u64::from(c.blksize)
            },
            manifest_bytes: 10_592,
            manifest_over_lan: true,
            peer_timeout_ms: 1000,
            partition_fraction: 0.0,
            // Used only with `partition_fraction` > 0.
            partition_at_s: 2.0,
            partition_for_s: 5.0,
            max_sim_s: 36_000.0,
            kill_root_at: 0.0,
            freeze_fraction: 0.0,
            cut_fraction: 0.0,
            cut_notice_ms: 5_000,
            max_site_phones: Config::default().n_max,
            host_cores: 0,
            host_cpu_s_per_gb: 0.0,
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub phones: u32,
    pub completed: u32,
    pub crashed: u32,
    /// Phones frozen (hung with open sockets) and cut off (link down, half-open streams).
    pub frozen: u32,
    pub cut: u32,
    pub corrupt_installs: u32,
    pub origin_fallbacks: u32,
    pub fallbacks_no_peer: u32,
    /// Members that caught their root sending corrupt chunks and re-elected without it.
    pub roots_rejected_corrupt: u32,
    /// Liars in the run (they are neither completed nor stuck), and the times a member
    /// caught its root (its parent) feeding it nothing or a trickle and re-elected without it.
    pub liars: u32,
    pub roots_rejected_stalled: u32,
    /// The most distinct phones that confirmed themselves root (`ConfirmedRoot`) of one
    /// hierarchy over the whole run, counted from the events.
    pub roots_elected_max: u32,
    /// The most concurrent transfers the origin served at any moment.
    pub origin_peak_sessions: u32,
    /// Origin transfers refused with "busy" by the origin's admission.
    pub origin_busy: u32,
    pub wan_manifest_bytes: u64,
    /// Manifest transfers opened at the origin: once per phone without
    /// `manifest_over_lan`, else by manifest roots and lease holders.
    pub manifest_origin_fetches: u32,
    pub roots_max: u32,
    pub roots_max_partitioned: u32,
    /// The deepest phone in the trees as they stand at the end of the run (`max_depth` is the
    /// deepest at any sample; a parent cycle shows there as `DEPTH_WALK` + 1).
    pub final_max_depth: u32,
    /// The most roots of one hierarchy at the end of the run, among phones that work (not
    /// hung, corrupt or lying; `roots_max` is the most at any sample outside partitions).
    pub final_roots_max: u32,
    pub max_children: u32,
    pub max_depth: u32,
    /// Parent cycles formed: each time an Accept gave a phone a parent below itself, every
    /// phone on the loop still lacking chunks of the file. Any fails the run ([`check`]).
    pub parent_cycles: u32,
    pub wan_bytes: u64,
    pub load_bytes: u64,
    pub models: u32,
    pub makespan_s: f64,
    /// Last completion among phones the plan left alone (normal-speed link, not corrupt, not
    /// a liar).
    pub normal_makespan_s: f64,
    pub limit_s: f64,
    pub election_converged_s: f64,
    pub election_broadcasts: u64,
    pub unicast_control: u64,
    pub slow_phones_with_children: u32,
    pub events: u64,
    /// CPU seconds charged to the lab host (`host_cores` > 0; else 0).
    pub host_cpu_s: f64,
    pub timed_out: bool,
    /// Real time the run took, s; 0 here (the core reads no clock): set by the caller that timed it.
    pub wall_s: f64,
    pub seed: u64,
    pub mode: Mode,
}

/// How long the TFTP client retransmits before it gives up (µs): the default
/// `ClientConfig`'s timeout, doubled per retry (`tftp::backoff`), over its retries.
fn tftp_give_up() -> Time {
    let c = crate::tftp::client::ClientConfig::default();
    (0..=c.max_retries)
        .map(|r| crate::tftp::backoff(c.timeout, r))
        .sum()
}

#[derive(Debug, Clone, Copy)]
enum SimEvent {
    Phone {
        to: u32,
        ev: Event,
    },
    /// A core timer; stale unless `generation` is the latest arming of (phone, h, kind).
    Timer {
        to: u32,
        h: u32,
        kind: TimerKind,
        generation: u32,
    },
    /// The origin puts chunk `index` of an open transfer on the WAN (stale unless `generation`).
    OriginSend {
        to: u32,
        h: u32,
        index: u32,
        generation: u32,
    },
    /// The phone's TFTP client gives up on a transfer the partition cut off: its
    /// retransmissions (`ClientConfig` timeout and retries, doubling) went unanswered, and
    /// the runtime answers the client's `Timeout` with `OriginBusy` (stale unless `generation`).
    ClientGiveUp {
        to: u32,
        h: u32,
        generation: u32,
    },
    /// Chunk `index` of a transfer reaches the phone.
    OriginArrive {
        to: u32,
        h: u32,
        index: u32,
        generation: u32,
    },
    Broadcast {
        from: u32,
        msg: Msg,
    },
    Crash {
        phone: u32,
    },
    /// The phone hangs: no event reaches it, its streams stay open (no peer is told).
    Freeze {
        phone: u32,
    },
    /// The phone's link goes down: its streams break only when a peer's send times out.
    Cut {
        phone: u32,
    },
    PartitionStart,
    Sample,
    /// The origin gives up on transfer `t` of a hung or cut-off phone (no ACK, no ICMP): its
    /// retransmissions ran out (stale unless `generation`).
    OriginGiveUp {
        t: usize,
        generation: u32,
    },
}

/// How long the embedded origin keeps retransmitting to a phone that answers nothing (hung,
/// or its link down: no ACK and no ICMP) before it ends the transfer: `max_retries` + 1
/// timeouts, doubling up to the cap (1 + 2 + 4 + 8 + 8 + 8 = 31 s by default). A crashed
/// phone's kernel answers ICMP port unreachable instead, which ends the transfer at once.
fn origin_give_up() -> Time {
    let c = crate::tftp::server::ServerConfig::default();
    (0..=c.max_retries)
        .map(|r| crate::tftp::backoff(c.timeout, r))
        .sum()
}

struct Entry {
    at: Time,
    seq: u64,
    ev: SimEvent,
}

impl PartialEq for Entry {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Entry {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

const SAMPLE_EVERY: Time = 1_000_000;
/// Bytes a hung (frozen) phone's stream takes before its receive window closes: nothing
/// reads the socket, so the kernel keeps what arrives until the receive buffer is full
/// (`pfs lab --freeze-fraction`, `ss -tin` in the frozen phone's namespace: Recv-Q stopped at
/// 0.68 to 1.38 MB per stream that had streamed for seconds at 10 Mbit/s; about 0.1 MB on a
/// fresh stream, whose buffer never grew). Chunks beyond it wait in the parent's buffers.
const FROZEN_RCV_WINDOW: u64 = 1 << 20;
/// How long after a frozen child's window closed its parent's stream breaks: the kernel
/// probes the zero window (first probe after an RTO, 0.2 s on a LAN), the probes go
/// unanswered by the hung phone's application, and `TCP_USER_TIMEOUT` (the engine's
/// `PEER_TIMEOUT`, 3 s) aborts the stream (Linux >= 5.1 counts zero-window probing against
/// it); the parent's engine then reports the stream closed (ETIMEDOUT). Measured on real
/// sockets (`engine` test `a_frozen_socket_is_not_read_and_its_parent_times_out`):
/// 3.25 s after the parent's last send progress, on all three backends.
const ZERO_WINDOW_ABORT: Time = 3_250_000;
/// After a partition heals, roots need a root timeout plus a few adverts to merge.
const SETTLE: Time = 5_000_000;
const PACKET: u64 = 1448;

/// The TCP streams between phones, as far as the model needs them.
#[derive(Default)]
struct Streams {
    /// (parent, frozen child): chunk bytes sent on their stream since the child hung, which
    /// sit unread in its receive buffer (up to [`FROZEN_RCV_WINDOW`]).
    unread: std::collections::HashMap<(u32, u32), u64>,
    /// (sender, receiver): when the last chunk sent on their stream arrives. A stream delivers
    /// in order (TCP), also when the receiver's link backlog is cut short by a stream it
    /// closed: without this, later chunks overtook earlier ones, the child dropped them as out
    /// of order and, since a parent never rewinds a live stream, it starved (and called an
    /// honest root a liar: two roots to the end, `pfs simulate --swarm`).
    tail: std::collections::HashMap<(u32, u32), Time>,
}

struct Sim {
    cfg: SimConfig,
    core: Config,
    rng: ChaCha8Rng,
    queue: BinaryHeap<Reverse<Entry>>,
    seq: u64,
    phones: Vec<Phone>,
    alive: Vec<bool>,
    /// Frozen phones accept connections (the kernel does) but never answer.
    frozen: Vec<bool>,
    streams: Streams,
    slow: Vec<bool>,
    /// Bytes per microsecond.
    rate: Vec<f64>,
    egress_free: Vec<Time>,
    ingress_free: Vec<Time>,
    /// The lab host's CPU (`host_cores` > 0), else free.
    host: host::Host,
    wan_free: Time,
    wan_rate: f64,
    rtt: Time,
    files: usize,
    /// Phones of each model, for broadcast delivery.
    by_model: Vec<Vec<u32>>,
    /// Ground truth, independent of the phones' own bookkeeping: valid chunks received in order.
    truth: Vec<u32>,
    installed: Vec<u8>,
    completion: Vec<Option<Time>>,
    /// TCP peers of each phone, to tell them when it crashes.
    tcp_peers: Vec<Vec<u32>>,
    /// Per (phone, file): the transfer's generation (bumped on open and close) and whether
    /// one is open.
    origin_gen: Vec<u32>,
    origin_open: Vec<bool>,
    /// Per (phone, file): when the transfer's latest chunk arrives. TFTP delivers in order,
    /// whatever a closed peer stream did to the phone's ingress queue meanwhile.
    origin_last: Vec<Time>,
    origin_sessions: u32,
    /// Per (phone, file, timer kind): the latest arming (replace semantics).
    timer_gen: Vec<u32>,
    /// Distinct phones that confirmed root, per hierarchy.
    confirmed: Vec<Vec<u32>>,
    roots_killed: Vec<bool>,
    /// Each phone's parents (over unfinished hierarchies): the streams it keeps open.
    parents_of: Vec<Vec<u32>>,
    report: Report,
    /// Phones on the cut side of the partition.
    cut: Vec<bool>,
    partition: (Time, Time),
    last_claim: Time,
    actions: Vec<Action>,
    /// Per file index: its size; with `manifest_over_lan` index 0 is the manifest.
    sizes: Vec<u64>,
    /// Per model, every hierarchy a phone of it takes part in (those after the manifest are
    /// added when it arrives).
    specs: Vec<Vec<HierarchySpec>>,
}

impl Sim {
    fn chunks_of(&self, file: usize) -> u32 {
        self.sizes[file].div_ceil(u64::from(self.cfg.chunk_size)) as u32
    }

    fn chunk_bytes(&self, h: u32, index: u32) -> u64 {
        let size = self.sizes[h as usize % self.files];
        let start = u64::from(index) * u64::from(self.cfg.chunk_size);
        (size - start.min(size)).min(u64::from(self.cfg.chunk_size))
    }

    fn push(&mut self, at: Time, ev: SimEvent) {
        self.seq += 1;
        self.queue.push(Reverse(Entry {
            at,
            seq: self.seq,
            ev,
        }));
    }

    fn truth_index(&self, phone: u32, h: u32) -> usize {
        phone as usize * self.files + h as usize % self.files
    }

    /// `kill_root_at`: the first root of `h` crashes once it holds that fraction of the file.
    fn maybe_kill_root(&mut self, now: Time, p: u32, h: u32) {
        // The manifest's root is not aimed at (the lab's plan skips hierarchies a root holds
        // whole, and a one-chunk manifest is whole the moment it holds any of it).
        if self.cfg.kill_root_at <= 0.0 || self.roots_killed[h as usize] || self.is_manifest(h) {
            return;
        }
        let Some(x) = self.phones[p as usize]
            .hierarchies
            .iter()
            .find(|x| x.id == h)
        else {
            return;
        };
        let held = f64::from(x.verified) >= self.cfg.kill_root_at * f64::from(x.chunks);
        if x.role == Role::Root && held {
            self.roots_killed[h as usize] = true;
            self.push(now, SimEvent::Crash { phone: p });
        }
    }

    /// One event off the queue, at `now`.
    fn handle(&mut self, now: Time, ev: SimEvent) {
        match ev {
            SimEvent::Phone { to, ev } => self.deliver(now, to, ev),
            SimEvent::Timer {
                to,
                h,
                kind,
                generation,
            } => {
                let slot = if kind == TimerKind::Watchdog {
                    self.timer_slot(to, 0, kind)
                } else {
                    self.timer_slot(to, h, kind)
                };
                if self.timer_gen[slot] == generation {
                    self.deliver(now, to, Event::Timer { h, kind });
                }
            }
            SimEvent::OriginSend {
                to,
                h,
                index,
                generation,
            } => {
                if self.alive[to as usize] && !self.origin_blocked(now, to) {
                    self.origin_send(now, to, h, index, generation);
                } else if self.alive[to as usize] {
                    // Cut off mid-transfer: nothing more arrives; the client gives up after
                    // its retransmission budget (traditional phones have no watchdog to
                    // reopen it: 30 of 60 stuck for good after a 5 s partition).
                    let give_up = SimEvent::ClientGiveUp { to, h, generation };
                    self.push(now + tftp_give_up(), give_up);
                }
            }
            SimEvent::ClientGiveUp { to, h, generation } => {
                let t = self.truth_index(to, h);
                if self.origin_open[t] && self.origin_gen[t] == generation {
                    self.close_origin(t);
                    self.deliver(now, to, Event::OriginBusy { h });
                }
            }
            SimEvent::OriginArrive {
                to,
                h,
                index,
                generation,
            } => {
                let t = self.truth_index(to, h);
                if self.origin_open[t] && self.origin_gen[t] == generation {
                    self.deliver(now, to, Event::OriginChunk { h, index, ok: true });
                    self.maybe_kill_root(now, to, h);
                }
            }
            SimEvent::Broadcast { from, msg } => {
                let model = (from % self.cfg.models) as usize;
                let members = std::mem::take(&mut self.by_model[model]);
                for &to in &members {
                    if to != from && !self.blocked(now, from, to) && !self.lossy(1) {
                        let from = PeerId(from);
                        self.deliver(now, to, Event::Recv { from, msg });
                    }
                }
                self.by_model[model] = members;
            }
            SimEvent::Crash { phone } => self.crash(now, phone),
            SimEvent::Freeze { phone } => self.hang(now, phone, true),
            SimEvent::Cut { phone } => self.hang(now, phone, false),
            SimEvent::PartitionStart => self.partition_start(now),
            SimEvent::OriginGiveUp { t, generation } => {
                if self.origin_gen[t] == generation {
                    self.close_origin(t);
                }
            }
            SimEvent::Sample => {
                self.sample(now, false);
                self.push(now + SAMPLE_EVERY, SimEvent::Sample);
            }
        }
    }

    fn timer_slot(&self, p: u32, h: u32, kind: TimerKind) -> usize {
        self.truth_index(p, h) * TIMER_KINDS + kind_index(kind)
    }
}

pub fn run(cfg: &SimConfig) -> Report {
    let (mut sim, crash_at) = Sim::build(cfg);
    sim.schedule(&crash_at);
    let max_t = (cfg.max_sim_s * 1e6) as Time;
    let mut now = 0;
    while let Some(Reverse(Entry { at, ev, .. })) = sim.queue.pop() {
        if at > max_t {
            sim.report.timed_out = true;
            break;
        }
        now = at;
        sim.report.events += 1;
        sim.handle(now, ev);
        if sim.report.completed
            + sim.report.crashed
            + sim.report.frozen
            + sim.report.cut
            + sim.report.liars
            == cfg.phones
        {
            break;
        }
    }
    // The last sample always counts: when everything is done there must be one root.
    sim.sample(now, true);
    sim.log_end_state();
    sim.report.host_cpu_s = sim.host.busy_us / 1e6;
    sim.finish()
}
