//! Building a run: the seeded draws (slow, corrupt, lying, crashing and cut phones), the
//! simulator's state, the first events; and the report at the end.

use super::*;

impl Sim {
    /// The simulator for `cfg`, every seeded draw made, and when each phone crashes (if it
    /// does).
    pub(super) fn build(cfg: &SimConfig) -> (Sim, Vec<Option<Time>>) {
        assert!(cfg.phones > 0 && cfg.models > 0 && !cfg.file_sizes.is_empty());
        let sizes = manifest::sizes(cfg);
        let files = sizes.len();
        let specs = manifest::specs(cfg, &sizes);
        let n = cfg.phones as usize;
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let load_bytes: u64 = cfg.file_sizes.iter().sum();
        let wan_rate = cfg.wan_mbit * 1e6 / 8.0 / 1e6;
        let limit_s = f64::from(cfg.models) * load_bytes as f64 * 8.0 / (cfg.wan_mbit * 1e6)
            + cfg.wan_rtt_ms / 1e3;
        let core = Config {
            mode: cfg.mode,
            fanout: cfg.fanout,
            fallback_slots: cfg.fallback_slots,
            n_max: cfg.max_site_phones,
            ..Config::default()
        };
        let slow_count = (cfg.slow_fraction * n as f64).round() as usize;
        let mut order: Vec<u32> = (0..cfg.phones).collect();
        let slow = draw(&mut order, &mut rng, slow_count);
        let rate: Vec<f64> = slow
            .iter()
            .map(|&s| if s { cfg.slow_mbit } else { cfg.lan_mbit } / 8.0)
            .collect();
        let mut phones = make_phones(cfg, &specs, &rate, &mut rng);
        let liars = corrupt_and_liars(cfg, &mut phones, &mut order, &mut rng);
        let mut by_model = vec![Vec::new(); cfg.models as usize];
        for i in 0..cfg.phones {
            by_model[(i % cfg.models) as usize].push(i);
        }
        let crash_at = crash_times(cfg, &mut order, &mut rng, limit_s);
        let cut_count = (cfg.partition_fraction * n as f64).round() as usize;
        let cut = draw(&mut order, &mut rng, cut_count);
        let partition = if cut_count > 0 && cfg.partition_for_s > 0.0 {
            let start = (cfg.partition_at_s * 1e6) as Time;
            (start, start + (cfg.partition_for_s * 1e6) as Time)
        } else {
            (0, 0)
        };
        let mut sim = Sim {
            core,
            rng,
            queue: BinaryHeap::new(),
            seq: 0,
            phones,
            alive: vec![true; n],
            frozen: vec![false; n],
            streams: Streams::default(),
            slow,
            rate,
            egress_free: vec![0; n],
            ingress_free: vec![0; n],
            host: host::Host::new(cfg),
            wan_free: 0,
            wan_rate,
            rtt: (cfg.wan_rtt_ms * 1000.0) as Time,
            files,
            by_model,
            truth: vec![0; n * files],
            installed: vec![0; n],
            completion: vec![None; n],
            tcp_peers: vec![Vec::new(); n],
            origin_gen: vec![0; n * files],
            origin_open: vec![false; n * files],
            origin_last: vec![0; n * files],
            origin_sessions: 0,
            timer_gen: vec![0; n * files * TIMER_KINDS],
            confirmed: vec![Vec::new(); cfg.models as usize * files],
            roots_killed: vec![false; cfg.models as usize * files],
            parents_of: vec![Vec::new(); n],
            report: new_report(cfg, load_bytes, limit_s),
            cut,
            partition,
            last_claim: 0,
            actions: Vec::new(),
            sizes,
            specs,
            cfg: cfg.clone(),
        };
        sim.report.liars = liars;
        (sim, crash_at)
    }

    /// Boots every phone at 0; schedules the crashes, then freezes and cuts, the first sample
    /// and the partition.
    pub(super) fn schedule(&mut self, crash_at: &[Option<Time>]) {
        for i in 0..self.cfg.phones {
            self.push(
                0,
                SimEvent::Phone {
                    to: i,
                    ev: Event::Boot,
                },
            );
            if let Some(at) = crash_at[i as usize] {
                self.push(at, SimEvent::Crash { phone: i });
            }
        }
        // Freezes and cuts: their own generator, so the draws above stay what they were.
        let mut frng = ChaCha8Rng::seed_from_u64(self.cfg.seed ^ 0x6672_6565_7a65);
        let mut spare: Vec<u32> = (0..self.cfg.phones)
            .filter(|&i| crash_at[i as usize].is_none())
            .collect();
        spare.shuffle(&mut frng);
        let n = self.cfg.phones as usize;
        let freezes = (self.cfg.freeze_fraction * n as f64).round() as usize;
        let cuts = (self.cfg.cut_fraction * n as f64).round() as usize;
        for (k, &i) in spare.iter().take(freezes + cuts).enumerate() {
            let at = frng.random_range(0..(self.report.limit_s * 1e6) as Time);
            let ev = if k < freezes {
                SimEvent::Freeze { phone: i }
            } else {
                SimEvent::Cut { phone: i }
            };
            self.push(at, ev);
        }
        self.push(SAMPLE_EVERY, SimEvent::Sample);
        if self.partition.0 < self.partition.1 {
            self.push(self.partition.0, SimEvent::PartitionStart);
        }
    }

    /// What phones are in at the end, in the debug log.
    pub(super) fn log_end_state(&self) {
        if tracing::enabled!(tracing::Level::DEBUG) {
            for (i, p) in self.phones.iter().enumerate() {
                for x in &p.hierarchies {
                    if matches!(x.role, Role::Root | Role::Claimant | Role::Fallback) {
                        tracing::debug!(phone = i, alive = self.alive[i], h = x.id, role = ?x.role, verified = x.verified, chunks = x.chunks, state = ?x, "root-like state at the end");
                    }
                }
            }
            let mut shown = 0;
            for (i, p) in self.phones.iter().enumerate() {
                if self.alive[i] && !p.done() && shown < 12 {
                    shown += 1;
                    for x in &p.hierarchies {
                        tracing::debug!(phone = i, h = x.id, role = ?x.role, verified = x.verified, chunks = x.chunks, parent = ?x.parent, state = ?x, "unfinished phone at the end");
                    }
                }
            }
        }
    }

    /// The report: completion times, as the lab counts them, and the election's.
    pub(super) fn finish(mut self) -> Report {
        let r = &mut self.report;
        let done = |t: &Option<Time>| t.map(|t| t as f64 / 1e6);
        r.makespan_s = self.completion.iter().filter_map(done).fold(0.0, f64::max);
        // As the lab counts it: phones the plan left alone (not slow, corrupt or lying; crashed,
        // frozen and cut phones never complete).
        r.normal_makespan_s = self
            .completion
            .iter()
            .zip(&self.slow)
            .zip(&self.phones)
            .filter(|((_, s), p)| !**s && !p.corrupt && p.liar.is_none())
            .filter_map(|((t, _), _)| done(t))
            .fold(0.0, f64::max);
        r.election_converged_s = self.last_claim as f64 / 1e6;
        r.roots_elected_max = self
            .confirmed
            .iter()
            .map(|c| c.len() as u32)
            .max()
            .unwrap_or(0);
        self.report
    }
}

/// Shuffles `order` and marks its first `count` phones.
fn draw(order: &mut [u32], rng: &mut ChaCha8Rng, count: usize) -> Vec<bool> {
    let mut marked = vec![false; order.len()];
    order.shuffle(rng);
    for &i in order.iter().take(count) {
        marked[i as usize] = true;
    }
    marked
}

/// One phone per index, of model `i % models`, on a link of `rate[i]` bytes per microsecond,
/// knowing the hierarchies its model's phones know at power-on.
fn make_phones(
    cfg: &SimConfig,
    specs: &[Vec<HierarchySpec>],
    rate: &[f64],
    rng: &mut ChaCha8Rng,
) -> Vec<Phone> {
    (0..cfg.phones)
        .map(|i| {
            let kbit = (rate[i as usize] * 8.0 * 1000.0) as u32;
            let specs = manifest::at_boot(cfg, &specs[(i % cfg.models) as usize]);
            Phone::new(PeerId(i), kbit, rng.random(), specs)
        })
        .collect()
}

/// Makes `cfg.corrupt_peers` phones corrupt and `cfg.liar_peers` of the others liars (silent
/// and trickling in turn); how many liars there are.
fn corrupt_and_liars(
    cfg: &SimConfig,
    phones: &mut [Phone],
    order: &mut [u32],
    rng: &mut ChaCha8Rng,
) -> u32 {
    order.shuffle(rng);
    for &i in order.iter().take(cfg.corrupt_peers as usize) {
        phones[i as usize].corrupt = true;
    }
    // Liars: drawn from the phones that are not corrupt.
    let mut k = 0;
    for &i in order.iter().skip(cfg.corrupt_peers as usize) {
        if k >= cfg.liar_peers {
            break;
        }
        phones[i as usize].liar = Some(if k % 2 == 0 {
            crate::phone::Liar::Silent
        } else {
            crate::phone::Liar::Trickle
        });
        k += 1;
    }
    k
}

/// When each of `cfg.crash_fraction` of the phones crashes, uniform within the WAN limit.
fn crash_times(
    cfg: &SimConfig,
    order: &mut [u32],
    rng: &mut ChaCha8Rng,
    limit_s: f64,
) -> Vec<Option<Time>> {
    let n = order.len();
    let crash_count = (cfg.crash_fraction * n as f64).round() as usize;
    order.shuffle(rng);
    let mut crash_at = vec![None; n];
    for &i in order.iter().take(crash_count) {
        crash_at[i as usize] = Some(rng.random_range(0..(limit_s * 1e6) as Time));
    }
    crash_at
}

/// A report with nothing counted yet.
fn new_report(cfg: &SimConfig, load_bytes: u64, limit_s: f64) -> Report {
    Report {
        phones: cfg.phones,
        completed: 0,
        crashed: 0,
        frozen: 0,
        cut: 0,
        corrupt_installs: 0,
        origin_fallbacks: 0,
        fallbacks_no_peer: 0,
        roots_rejected_corrupt: 0,
        liars: 0,
        roots_rejected_stalled: 0,
        roots_elected_max: 0,
        origin_peak_sessions: 0,
        origin_busy: 0,
        wan_manifest_bytes: if cfg.manifest_over_lan {
            0
        } else {
            u64::from(cfg.phones) * cfg.manifest_bytes
        },
        manifest_origin_fetches: if cfg.manifest_over_lan { 0 } else { cfg.phones },
        roots_max: 0,
        roots_max_partitioned: 0,
        final_max_depth: 0,
        final_roots_max: 0,
        max_children: 0,
        max_depth: 0,
        parent_cycles: 0,
        wan_bytes: 0,
        load_bytes,
        models: cfg.models,
        makespan_s: 0.0,
        normal_makespan_s: 0.0,
        limit_s,
        election_converged_s: 0.0,
        election_broadcasts: 0,
        unicast_control: 0,
        slow_phones_with_children: 0,
        events: 0,
        timed_out: false,
        wall_s: 0.0,
        host_cpu_s: 0.0,
        seed: cfg.seed,
        mode: cfg.mode,
    }
}
