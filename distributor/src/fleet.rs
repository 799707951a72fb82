//! A fleet of virtual phones in one process: powered on together, spread over the cores (one
//! engine reactor per core, pinned), run until every phone installed or a deadline.
//!
//! `pfs lab` runs a fleet on the site it builds; `pfs fleet` runs one on an interface or
//! namespace that already exists, as a load generator: N phones pulling a load from a real
//! TFTP server, to measure its throughput and its failures.

use std::{
    collections::BTreeMap,
    net::Ipv4Addr,
    path::PathBuf,
    sync::{
        Arc, Barrier,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use crate::{
    engine::{self, Backend, Limits},
    peer::{Host, Peer, PeerError, PeerOptions, PeerReport, Place, Prepared, Source},
    phone::Mode,
};

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error(transparent)]
    Peer(#[from] PeerError),
    #[error("{0}")]
    Setup(String),
}

/// How many phones fetch their manifests and open their sockets at once at power-on.
const PREPARE_WORKERS: usize = 64;

/// Live counters the phones' cores update and a progress display reads.
pub struct Progress {
    /// (model, file, bytes over all phones, verified bytes so far summed over phones).
    pub files: Vec<(String, String, u64, AtomicU64)>,
    pub installed: AtomicU64,
    pub roots: AtomicU64,
    pub parents: AtomicU64,
    pub children: AtomicU64,
    pub fallbacks: AtomicU64,
}

impl Progress {
    pub fn new(files: Vec<(String, String, u64)>) -> Arc<Progress> {
        Arc::new(Progress {
            files: files
                .into_iter()
                .map(|(m, f, total)| (m, f, total, AtomicU64::new(0)))
                .collect(),
            installed: AtomicU64::new(0),
            roots: AtomicU64::new(0),
            parents: AtomicU64::new(0),
            children: AtomicU64::new(0),
            fallbacks: AtomicU64::new(0),
        })
    }
}

/// A phone ready to boot: options, sockets opened in its place, manifest fetched.
pub struct Ready {
    pub index: usize,
    pub opts: PeerOptions,
    pub prepared: Prepared,
    pub place: Place,
}

/// Powers every phone on at once, as a bulk reset does: each fetches its manifest and opens
/// its sockets in its place, `PREPARE_WORKERS` at a time. Fails on the first phone that
/// cannot start (an unreachable origin, a missing load, a busy port).
pub fn prepare_all(phones: Vec<(PeerOptions, Place)>) -> Result<Vec<Ready>, FleetError> {
    let n = phones.len();
    let (tx, rx) = crossbeam_channel::bounded::<(usize, PeerOptions, Place)>(PREPARE_WORKERS);
    let (done_tx, done_rx) = crossbeam_channel::bounded(n.max(1));
    let workers: Vec<_> = (0..PREPARE_WORKERS.min(n))
        .map(|_| {
            let (rx, done_tx) = (rx.clone(), done_tx.clone());
            std::thread::spawn(move || {
                for (index, opts, place) in rx {
                    let p = Prepared::new(&opts, &place);
                    let _ = done_tx.send((index, opts, p, place));
                }
            })
        })
        .collect();
    drop((rx, done_tx));
    for (i, (opts, place)) in phones.into_iter().enumerate() {
        tx.send((i, opts, place))
            .map_err(|_| FleetError::Setup("preparing phones: workers gone".into()))?;
    }
    drop(tx);
    let mut out = Vec::with_capacity(n);
    let mut first_err = None;
    for (index, opts, p, place) in done_rx {
        match p {
            Ok(prepared) => out.push(Ready {
                index,
                opts,
                prepared,
                place,
            }),
            Err(e) => {
                first_err.get_or_insert((index, e));
            }
        }
    }
    for w in workers {
        let _ = w.join();
    }
    if let Some((i, e)) = first_err {
        return Err(FleetError::Setup(format!(
            "phone {i}: {}",
            crate::error_chain(&e)
        )));
    }
    out.sort_by_key(|r| r.index);
    Ok(out)
}

/// What one phone did: its index, its report, when it installed.
pub type PhoneResult = (usize, PeerReport, Option<Instant>);

/// A finished fleet run.
pub struct FleetRun {
    pub phones: Vec<PhoneResult>,
    /// The common boot instant (completion times count from here).
    pub start: Instant,
    /// The longest event-loop turn on any core: how late a phone could hear its network.
    pub max_turn: Duration,
    /// Turns run on all cores, and those longer than 10 ms.
    pub turns: u64,
    pub long_turns: u64,
    /// Descriptors the process held when the run ended, before the phones closed theirs.
    pub fds_at_end: usize,
    /// The most descriptors the process held at once during the run (sampled every
    /// [`FDS_SAMPLE`] by the first core; the boot and the end are sampled too).
    pub fds_peak: usize,
    /// The latest any phone's timer fired after its deadline.
    pub timer_late_max: Duration,
    /// Each core's engine counters.
    pub engines: Vec<crate::engine::EngineStats>,
}

/// How often the first core counts the process's descriptors during a run (a count reads
/// /proc/self/fd: about 5 ms at 20,000 descriptors).
pub const FDS_SAMPLE: Duration = Duration::from_millis(500);

/// Open descriptors of this process (entries of /proc/self/fd).
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// Boots every prepared phone at one instant across the cores and runs until all installed,
/// the deadline, or a signal.
pub fn run(
    ready: Vec<Ready>,
    backend: Backend,
    deadline: Duration,
    progress: Option<Arc<Progress>>,
) -> Result<FleetRun, FleetError> {
    run_with(ready, backend, deadline, progress, None)
}

/// [`run`] with a fault plan carried out on the phones (`pfs lab`'s fault flags).
pub fn run_with(
    ready: Vec<Ready>,
    backend: Backend,
    deadline: Duration,
    progress: Option<Arc<Progress>>,
    faults: Option<Arc<crate::faults::FaultRuntime>>,
) -> Result<FleetRun, FleetError> {
    let cores = engine::cores().min(ready.len()).max(1);
    let mut shares: Vec<Vec<Ready>> = (0..cores).map(|_| Vec::new()).collect();
    for (k, r) in ready.into_iter().enumerate() {
        shares[k % cores].push(r);
    }
    // Every core boots its phones at the same instant (a barrier), the makespan's zero.
    let barrier = Arc::new(Barrier::new(cores + 1));
    // Which cores have finished their own phones: a core keeps running its phones until all
    // have, since phones on other cores may still need its roots and parents.
    let finished: Arc<Vec<AtomicBool>> =
        Arc::new((0..cores).map(|_| AtomicBool::new(false)).collect());
    let threads: Vec<_> = shares
        .into_iter()
        .enumerate()
        .map(|(core, share)| {
            let (progress, barrier) = (progress.clone(), barrier.clone());
            let (faults, finished) = (faults.clone(), finished.clone());
            std::thread::spawn(move || {
                engine::pin_to_core(core);
                let run = run_core(
                    backend,
                    deadline,
                    share,
                    barrier,
                    progress,
                    faults,
                    (&finished, core),
                );
                // A core that failed must not hold the others up.
                finished[core].store(true, Ordering::Relaxed);
                run
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    let mut phones = Vec::new();
    let (mut max_turn, mut turns, mut long_turns, mut fds_at_end) = (Duration::ZERO, 0, 0, 0);
    let mut fds_peak = 0;
    let (mut timer_late_max, mut engines) = (Duration::ZERO, Vec::new());
    for t in threads {
        let core = t
            .join()
            .map_err(|_| FleetError::Setup("a core thread panicked".into()))??;
        phones.extend(core.phones);
        max_turn = max_turn.max(core.max_turn);
        turns += core.turns;
        long_turns += core.long_turns;
        fds_at_end = fds_at_end.max(core.fds_at_end);
        fds_peak = fds_peak.max(core.fds_peak).max(core.fds_at_end);
        timer_late_max = timer_late_max.max(core.timer_late_max);
        engines.push(core.engine);
    }
    phones.sort_by_key(|p| p.0);
    Ok(FleetRun {
        phones,
        start,
        max_turn,
        turns,
        long_turns,
        fds_at_end,
        fds_peak,
        timer_late_max,
        engines,
    })
}

/// One core: its share of the phones on one reactor, until all are installed or the deadline.
fn run_core(
    backend: Backend,
    deadline: Duration,
    share: Vec<Ready>,
    barrier: Arc<Barrier>,
    progress: Option<Arc<Progress>>,
    faults: Option<Arc<crate::faults::FaultRuntime>>,
    (finished, me): (&[AtomicBool], usize),
) -> Result<CoreRun, FleetError> {
    let blksize = share
        .iter()
        .map(|r| r.opts.loop_blksize())
        .max()
        .unwrap_or(1428);
    let mut host = Host::new(backend, Limits::for_blksize(blksize));
    let mut index = Vec::new();
    let mut added = Ok(());
    if let Ok(h) = &mut host {
        for r in share {
            if let Err(e) = h.add(r.opts, r.prepared, r.place) {
                added = Err(e);
                break;
            }
            index.push(r.index);
        }
    }
    if let (Ok(h), Some(f)) = (&mut host, &faults) {
        f.assign_to(h, &index);
    }
    // Never leave the other cores waiting at the barrier, whatever failed here.
    barrier.wait();
    let start = Instant::now();
    let mut host = host?;
    added?;
    let deadline = Instant::now() + deadline;
    let mut done_at: Vec<Option<Instant>> = vec![None; index.len()];
    let mut last_publish = Instant::now();
    let mut published = Vec::new();
    let mut metrics_at = None;
    // Descriptors are the process's: one core counts them.
    let (mut fds_peak, mut fds_at) = (if me == 0 { open_fds() } else { 0 }, Instant::now());
    host.run(|peers| {
        crate::metrics::observe(&mut metrics_at, peers, Peer::metrics_sample);
        if let Some(f) = &faults {
            f.tick(start, peers, &index);
        }
        let now = Instant::now();
        if me == 0 && now.duration_since(fds_at) >= FDS_SAMPLE {
            fds_at = now;
            fds_peak = fds_peak.max(open_fds());
        }
        note_installs(peers, &mut done_at, now, progress.as_deref());
        if let Some(pr) = &progress
            && now.duration_since(last_publish) >= Duration::from_millis(100)
        {
            last_publish = now;
            publish(pr, peers, &mut published);
        }
        // A crashed, frozen or cut phone never installs: the run waits for the others (and,
        // sharing with other hosts, until every phone has lingered).
        let gone = |p: &Peer| faults.as_ref().is_some_and(|f| f.gone(p));
        let lingered = || peers.iter().all(|p| p.lingered() || gone(p));
        let mine = done_at
            .iter()
            .zip(peers.iter())
            .all(|(d, p)| d.is_some() || gone(p))
            && lingered();
        // Every core stops together: a core that stopped alone took its roots with it, and
        // the other core's members (most already installed) all re-elected at once (1961
        // re-elections in the last second of a 1000-phone run).
        finished[me].store(mine, Ordering::Relaxed);
        (mine && finished.iter().all(|f| f.load(Ordering::Relaxed))) || now >= deadline
    })?;
    if let Some(pr) = &progress {
        publish(pr, &host.peers, &mut published);
    }
    if let Some(f) = &faults {
        let unread: u64 = host
            .peers
            .iter()
            .filter(|p| p.fault() == crate::peer::Fault::Frozen)
            .map(Peer::unread_sockets)
            .sum();
        f.frozen_unread_sockets.fetch_add(unread, Ordering::Relaxed);
    }
    Ok(finish_core(host, index, done_at, fds_peak))
}

/// Notes the phones that installed since the last turn (at `now`) and counts them in
/// `progress`.
fn note_installs(
    peers: &[Peer],
    done_at: &mut [Option<Instant>],
    now: Instant,
    progress: Option<&Progress>,
) {
    for (k, p) in peers.iter().enumerate() {
        if done_at[k].is_none() && p.is_installed() {
            done_at[k] = Some(now);
            if let Some(pr) = progress {
                pr.installed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Closes the core's host once its run is over: last metrics, and what each phone did.
fn finish_core(
    mut host: Host,
    index: Vec<usize>,
    done_at: Vec<Option<Instant>>,
    fds_peak: usize,
) -> CoreRun {
    if crate::metrics::enabled() {
        crate::metrics::publish(host.peers.iter().map(Peer::metrics_sample).collect());
        crate::metrics::retire();
    }
    let reports = host.reports();
    let fds_at_end = open_fds();
    let (timer_late_max, engine) = (host.timer_late_max(), host.engine_stats());
    host.close();
    let phones = index
        .into_iter()
        .zip(reports)
        .zip(done_at)
        .map(|((i, r), d)| (i, r, d))
        .collect();
    CoreRun {
        phones,
        max_turn: host.max_turn,
        turns: host.turns,
        long_turns: host.long_turns,
        fds_at_end,
        fds_peak,
        timer_late_max,
        engine,
    }
}

/// What one core ran.
struct CoreRun {
    phones: Vec<PhoneResult>,
    max_turn: Duration,
    turns: u64,
    long_turns: u64,
    fds_at_end: usize,
    fds_peak: usize,
    timer_late_max: Duration,
    engine: crate::engine::EngineStats,
}

/// Adds this core's share to the shared counters (each core owns disjoint phones, so it
/// publishes the change since what it published last).
fn publish(pr: &Progress, peers: &[Peer], last: &mut Vec<u64>) {
    let n = pr.files.len();
    let mut now = vec![0u64; n + 4];
    for p in peers {
        let s = p.progress();
        for (file, bytes) in &s.files {
            if let Some(k) = pr
                .files
                .iter()
                .position(|(m, f, _, _)| m == s.model && f == file)
            {
                now[k] += bytes;
            }
        }
        now[n] += s.roots;
        now[n + 1] += s.parents;
        now[n + 2] += s.children;
        now[n + 3] += s.fallbacks;
    }
    last.resize(n + 4, 0);
    let slots =
        pr.files
            .iter()
            .map(|f| &f.3)
            .chain([&pr.roots, &pr.parents, &pr.children, &pr.fallbacks]);
    for ((slot, v), prev) in slots.zip(&now).zip(last.iter()) {
        if *v >= *prev {
            slot.fetch_add(v - prev, Ordering::Relaxed);
        } else {
            slot.fetch_sub(prev - v, Ordering::Relaxed);
        }
    }
    *last = now;
}

/// Completion-time percentiles (seconds) from per-phone install instants: exact (nearest
/// rank over the sorted times), so p99 and max never exceed the makespan they come from.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
pub struct Completions {
    pub p50_s: f64,
    pub p90_s: f64,
    pub p99_s: f64,
    pub max_s: f64,
}

impl Completions {
    pub fn of(times_s: &[f64]) -> Completions {
        let mut sorted = times_s.to_vec();
        sorted.sort_by(f64::total_cmp);
        // Nearest rank: the smallest time with at least fraction p of the phones at or below.
        let q = |p: f64| {
            if sorted.is_empty() {
                return 0.0;
            }
            let k = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
            sorted[k - 1]
        };
        Completions {
            p50_s: q(0.5),
            p90_s: q(0.9),
            p99_s: q(0.99),
            max_s: q(1.0),
        }
    }
}

/// `pfs fleet`: N traditional pullers on an existing interface (in this namespace or a named
/// one), against any TFTP server.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    pub phones: usize,
    /// `tftp://HOST[:PORT]/DIR` or `http://HOST[:PORT]/DIR` (several separated by commas, tried
    /// in order): a load directory with its manifest.
    pub origin: String,
    pub iface: String,
    /// Run inside this existing namespace (`ip netns` name) instead of this one.
    pub netns: Option<String>,
    pub model: String,
    /// Each phone's store is `store/phone<i>`.
    pub store: PathBuf,
    /// Phone `i` binds its (unused) peer ports at `port_base + i`, so phones sharing one
    /// address never collide.
    pub port_base: u16,
    pub backend: Backend,
    pub deadline: Duration,
    pub tftp: crate::tftp::client::ClientConfig,
    pub seed: u64,
    /// `--peer-sharing`: each phone on its own address (see [`crate::fleetnet`]), sharing.
    pub sharing: Option<Sharing>,
}

/// How sharing phones run (`pfs fleet --peer-sharing`).
#[derive(Debug, Clone)]
pub struct Sharing {
    pub mode: Mode,
    pub fanout: u8,
    /// Once every phone here installed, keep serving until none has served a child for this
    /// long (phones of other hosts may still be fetching from them).
    pub linger: Duration,
}

/// What `pfs fleet` measured.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct FleetReport {
    pub phones: u32,
    pub completed: u32,
    /// Phones that installed a load failing verification (never expected: counted to prove it).
    pub corrupt_installs: u32,
    pub load_bytes: u64,
    /// Firmware bytes all phones received from the server.
    pub origin_bytes: u64,
    /// From the common boot instant to the last install (or the deadline).
    pub elapsed_s: f64,
    /// Aggregate goodput: firmware bytes over elapsed time.
    pub goodput_mbit: f64,
    #[serde(flatten)]
    pub completion: Completions,
    /// Transfers the server refused (TFTP error, e.g. busy) and that timed out.
    pub origin_refused: u64,
    pub origin_timeouts: u64,
    pub origin_errors: u64,
    /// Moves to the next origin after a failed HTTP transfer, by reason (`http_to_tftp`).
    pub origin_switches: BTreeMap<String, u64>,
    pub prepare_s: f64,
    pub max_turn_ms: f64,
    pub backend: String,
    /// Firmware bytes phones received from other phones (`--peer-sharing`).
    pub peer_bytes: u64,
    /// Each hierarchy (`MODEL/FILE`) and the phones that were its root at the end of the run.
    pub roots: BTreeMap<String, Vec<Ipv4Addr>>,
    /// Every phone's install time (s from this fleet's boot), sorted; for `pfs report merge`.
    pub completions: Vec<f64>,
}

impl FleetConfig {
    fn phone(&self, i: usize) -> PeerOptions {
        if let Some(sh) = &self.sharing {
            return PeerOptions {
                iface: crate::fleetnet::PHONE_IFACE.into(),
                model: self.model.clone(),
                source: Source::Origin(self.origin.clone()),
                store: self.store.join(format!("phone{i}")),
                mode: sh.mode,
                fanout: sh.fanout,
                backend: self.backend,
                public_key: None,
                tftp: self.tftp.clone(),
                linger: Some(sh.linger),
                deadline: None,
                seed: self.seed.wrapping_mul(1_000_003).wrapping_add(i as u64),
                port: pfs_common::PFS_PORT,
                max_site_phones: self.phones as u64,
            };
        }
        PeerOptions {
            iface: self.iface.clone(),
            model: self.model.clone(),
            source: Source::Origin(self.origin.clone()),
            store: self.store.join(format!("phone{i}")),
            mode: Mode::Traditional,
            fanout: 1,
            backend: self.backend,
            public_key: None,
            tftp: self.tftp.clone(),
            linger: None,
            deadline: None,
            seed: self.seed.wrapping_mul(1_000_003).wrapping_add(i as u64),
            port: self.port_base.wrapping_add(i as u16),
            max_site_phones: self.phones as u64,
        }
    }

    /// Ports `port_base .. port_base + phones` must fit.
    fn check(&self) -> Result<(), FleetError> {
        if self.phones == 0 {
            return Err(FleetError::Setup("need at least one phone".into()));
        }
        if usize::from(self.port_base) + self.phones > usize::from(u16::MAX) {
            return Err(FleetError::Setup(format!(
                "{} phones from port {} run past port 65535: lower --port-base",
                self.phones, self.port_base
            )));
        }
        Ok(())
    }
}

/// Powers the fleet on (manifests fetched from the server), for [`run_fleet`].
pub fn prepare_fleet(cfg: &FleetConfig) -> Result<(Vec<Ready>, f64), FleetError> {
    cfg.check()?;
    let t0 = Instant::now();
    let place = match &cfg.netns {
        Some(ns) => Place::netns(ns)?,
        None => Place::Here,
    };
    let phones = (0..cfg.phones)
        .map(|i| (cfg.phone(i), place.clone()))
        .collect();
    let ready = prepare_all(phones)?;
    Ok((ready, t0.elapsed().as_secs_f64()))
}

/// Powers on sharing phones, one in each namespace of `nets` (`--peer-sharing`).
pub fn prepare_sharing(
    cfg: &FleetConfig,
    nets: &crate::fleetnet::PhoneNets,
) -> Result<(Vec<Ready>, f64), FleetError> {
    let t0 = Instant::now();
    let phones = nets
        .phones
        .iter()
        .enumerate()
        .map(|(i, ns)| Ok((cfg.phone(i), Place::netns(ns.name())?)))
        .collect::<Result<Vec<_>, FleetError>>()?;
    let ready = prepare_all(phones)?;
    Ok((ready, t0.elapsed().as_secs_f64()))
}

/// One report for fleets that ran side by side (several load-generator hosts on one LAN):
/// counts add up, roots of a hierarchy are united, percentiles come from every phone's time.
pub fn merge(reports: &[FleetReport]) -> Option<FleetReport> {
    let first = reports.first()?;
    let mut m = first.clone();
    for r in &reports[1..] {
        m.phones += r.phones;
        m.completed += r.completed;
        m.corrupt_installs += r.corrupt_installs;
        m.origin_bytes += r.origin_bytes;
        m.peer_bytes += r.peer_bytes;
        m.elapsed_s = m.elapsed_s.max(r.elapsed_s);
        m.origin_refused += r.origin_refused;
        m.origin_timeouts += r.origin_timeouts;
        m.origin_errors += r.origin_errors;
        for (why, n) in &r.origin_switches {
            *m.origin_switches.entry(why.clone()).or_default() += n;
        }
        m.prepare_s = m.prepare_s.max(r.prepare_s);
        m.max_turn_ms = m.max_turn_ms.max(r.max_turn_ms);
        m.completions.extend(&r.completions);
        for (h, roots) in &r.roots {
            let all = m.roots.entry(h.clone()).or_default();
            all.extend(roots);
            all.sort();
            all.dedup();
        }
    }
    m.completions.sort_by(f64::total_cmp);
    m.completion = Completions::of(&m.completions);
    m.goodput_mbit = m.origin_bytes as f64 * 8.0 / m.elapsed_s.max(1e-9) / 1e6;
    Some(m)
}

/// One bar per file of the load the fleet pulls.
pub fn fleet_progress(ready: &[Ready]) -> Arc<Progress> {
    let n = ready.len() as u64;
    let files = ready
        .first()
        .and_then(|r| {
            let m = r.prepared.manifest()?;
            Some(
                m.files
                    .iter()
                    .map(|f| (r.opts.model.clone(), f.name.clone(), f.size * n))
                    .collect(),
            )
        })
        .unwrap_or_default();
    Progress::new(files)
}

/// Runs the prepared fleet and measures the server: goodput, completion times, failures.
pub fn run_fleet(
    cfg: &FleetConfig,
    ready: Vec<Ready>,
    prepare_s: f64,
    progress: Option<Arc<Progress>>,
) -> Result<FleetReport, FleetError> {
    let manifest = ready
        .first()
        .and_then(|r| r.prepared.manifest().cloned())
        .ok_or_else(|| FleetError::Setup("no phone started with its manifest".into()))?;
    let run = run(ready, cfg.backend, cfg.deadline, progress)?;
    let mut times = Vec::new();
    let mut corrupt = 0;
    let (mut origin_bytes, mut refused, mut timeouts, mut errors) = (0, 0, 0, 0);
    let mut switches: BTreeMap<String, u64> = BTreeMap::new();
    let mut backend = String::new();
    let mut last = run.start;
    let mut peer_bytes = 0;
    let mut roots: BTreeMap<String, Vec<Ipv4Addr>> = BTreeMap::new();
    for (i, r, done) in &run.phones {
        for f in &r.files {
            peer_bytes += f.peer_bytes;
            if f.role == "root" {
                roots
                    .entry(format!("{}/{}", r.model, f.file))
                    .or_default()
                    .push(r.peer);
            }
        }
        if let Some(at) = done {
            times.push(at.duration_since(run.start).as_secs_f64());
            last = last.max(*at);
            let dir = crate::store::Store::new(&cfg.store.join(format!("phone{i}")))
                .load_dir(&manifest.load);
            if manifest.verify_dir(&dir).is_err() {
                corrupt += 1;
            }
        }
        backend = r.engine.backend.to_owned();
        for f in &r.files {
            origin_bytes += f.origin_bytes;
            refused += u64::from(f.origin_refused);
            timeouts += u64::from(f.origin_timeouts);
            errors += u64::from(f.origin_errors);
            for (why, n) in &f.origin_switches {
                *switches.entry(why.clone()).or_default() += u64::from(*n);
            }
        }
    }
    let completed = times.len();
    let elapsed = if completed == run.phones.len() {
        last.duration_since(run.start)
    } else {
        run.start.elapsed()
    }
    .as_secs_f64();
    Ok(FleetReport {
        phones: run.phones.len() as u32,
        completed: completed as u32,
        corrupt_installs: corrupt,
        load_bytes: manifest.load_bytes(),
        origin_bytes,
        elapsed_s: elapsed,
        goodput_mbit: origin_bytes as f64 * 8.0 / elapsed.max(1e-9) / 1e6,
        completion: Completions::of(&times),
        origin_refused: refused,
        origin_timeouts: timeouts,
        origin_errors: errors,
        origin_switches: switches,
        prepare_s,
        max_turn_ms: run.max_turn.as_secs_f64() * 1e3,
        backend,
        peer_bytes,
        roots,
        completions: {
            let mut c = times.clone();
            c.sort_by(f64::total_cmp);
            c
        },
    })
}

#[cfg(test)]
mod tests {
    use super::Completions;

    /// Percentiles are phones' real times: p99 and max never exceed the slowest phone (a
    /// histogram with 3 significant digits reported 80.675 s for a run whose makespan was
    /// 80.61 s).
    #[test]
    fn completions_are_nearest_rank_of_the_real_times() {
        let times: Vec<f64> = (1..=60).map(|i| 80.0 + f64::from(i) * 0.01).collect();
        let c = Completions::of(&times);
        assert_eq!(c.max_s, 80.60);
        assert_eq!(c.p99_s, 80.60, "ceil(0.99 * 60) = 60th");
        assert_eq!(c.p90_s, 80.54, "ceil(0.9 * 60) = 54th");
        assert_eq!(c.p50_s, 80.30);
        assert_eq!(Completions::of(&[]).max_s, 0.0);
        assert_eq!(Completions::of(&[3.5]).p50_s, 3.5);
    }

    /// A failure says its cause once: the wrapped error's source is not lost (a fleet whose
    /// origin never answered printed only the URL) and not repeated.
    #[test]
    fn error_chain_keeps_every_cause_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("tftp://h/f")]
        struct Outer(#[source] std::io::Error);
        let timeout = std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer");
        assert_eq!(crate::error_chain(&Outer(timeout)), "tftp://h/f: no answer");
        #[derive(Debug, thiserror::Error)]
        #[error("/x: {0}")]
        struct Says(#[source] std::io::Error);
        let gone = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        assert_eq!(crate::error_chain(&Says(gone)), "/x: gone");
    }
}
