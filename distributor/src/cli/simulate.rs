//! `pfs simulate`: the simulator, one seed or a swarm of them.

use super::*;

#[derive(Args, Debug)]
pub(super) struct SimulateArgs {
    #[arg(long, default_value_t = SimConfig::default().phones, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    phones: u32,
    /// The run's seed [default: 1]; with --swarm, where the swarm's seeds start (default:
    /// drawn from the OS).
    #[arg(long)]
    seed: Option<u64>,
    /// Run this many seeds with the other settings, checking each run (`sim::check` and the
    /// phones' invariants after every event); stops at the first failure and prints
    /// `reproduce: pfs simulate --seed S ...`. Exit 1 on a failure.
    #[arg(long, value_name = "N", conflicts_with = "json", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    swarm: Option<u32>,
    #[arg(long, value_parser = mode_parser(), default_value_t = SimConfig::default().mode)]
    mode: Mode,
    /// Phone models (each forms its own hierarchies).
    #[arg(long, default_value_t = SimConfig::default().models, value_parser = clap::value_parser!(u32).range(1..=64))]
    models: u32,
    #[arg(long, default_value_t = SimConfig::default().wan_mbit)]
    wan_mbit: f64,
    #[arg(long, default_value_t = SimConfig::default().wan_rtt_ms)]
    wan_rtt_ms: f64,
    #[arg(long, default_value_t = SimConfig::default().lan_mbit)]
    lan_mbit: f64,
    #[arg(long, default_value_t = SimConfig::default().lan_latency_us)]
    lan_latency_us: u64,
    /// Phones without the load signer's key: each fetches its own manifest from the origin
    /// before power-on (default: the manifest is a hierarchy shared over the LAN, as phones
    /// with the key share it; docs/protocol.md).
    #[arg(long)]
    keyless: bool,
    /// Packet loss probability on every link.
    #[arg(long, default_value_t = SimConfig::default().loss)]
    loss: f64,
    #[arg(long, default_value_t = SimConfig::default().crash_fraction)]
    crash_fraction: f64,
    /// Phones that hang with their sockets open (peers see silence on live streams).
    #[arg(long, default_value_t = SimConfig::default().freeze_fraction)]
    freeze_fraction: f64,
    /// Phones whose link goes down (half-open streams, noticed after TCP_USER_TIMEOUT).
    #[arg(long, default_value_t = SimConfig::default().cut_fraction)]
    cut_fraction: f64,
    #[arg(long, default_value_t = SimConfig::default().corrupt_peers)]
    corrupt_peers: u32,
    /// Hostile phones claiming root with the strongest adverts, then feeding their children
    /// nothing (even-numbered) or a trickle (odd-numbered), as `pfs lab --liar-peers`.
    #[arg(long, default_value_t = SimConfig::default().liar_peers)]
    liar_peers: u32,
    #[arg(long, default_value_t = SimConfig::default().slow_fraction)]
    slow_fraction: f64,
    #[arg(long, default_value_t = SimConfig::default().slow_mbit)]
    slow_mbit: f64,
    #[arg(long, default_value_t = SimConfig::default().fanout, value_parser = clap::value_parser!(u8).range(1..=64))]
    fanout: u8,
    #[arg(long, default_value_t = SimConfig::default().chunk_size, value_parser = clap::value_parser!(u32).range(1024..=1_048_576))]
    chunk_size: u32,
    /// Fraction of phones cut off (with the site router) by a partition.
    #[arg(long, default_value_t = SimConfig::default().partition_fraction)]
    partition_fraction: f64,
    /// When the partition starts (simulated seconds).
    #[arg(long, default_value_t = SimConfig::default().partition_at_s)]
    partition_at_s: f64,
    /// How long it lasts (simulated seconds).
    #[arg(long, default_value_t = SimConfig::default().partition_for_s)]
    partition_for_s: f64,
    /// Stop the virtual clock here even if phones are unfinished.
    #[arg(long, default_value_t = SimConfig::default().max_sim_s)]
    max_sim_s: f64,
    /// The root of every hierarchy crashes when it holds this fraction of its file (0: never).
    #[arg(long, default_value_t = SimConfig::default().kill_root_at)]
    kill_root_at: f64,
    /// K: fallback leases each root grants at once.
    #[arg(long, default_value_t = SimConfig::default().fallback_slots)]
    fallback_slots: u32,
    /// The origin's own limit on concurrent transfers, answered with "busy" (0: none, as
    /// tftpd-hpa).
    #[arg(long, default_value_t = SimConfig::default().origin_max_sessions)]
    origin_max_sessions: u32,
    /// The phones' bound on phones per broadcast domain (`pfs peer --max-site-phones`; `pfs
    /// lab` sets it to its phone count).
    #[arg(long, default_value_t = SimConfig::default().max_site_phones, value_parser = clap::value_parser!(u64).range(2..))]
    max_site_phones: u64,
    /// Run every phone on one host of this many cores, as `pfs lab` does (0: each phone has
    /// its own CPU, as real phones do). Needs --host-cpu-s-per-gb.
    #[arg(long, default_value_t = SimConfig::default().host_cores, requires = "host_cpu_s_per_gb")]
    host_cores: u32,
    /// With --host-cores: the host's CPU seconds per GB delivered to phones (what `pfs lab
    /// --json` reports as `cpu_s_per_gb` on that host).
    #[arg(long, requires = "host_cores")]
    host_cpu_s_per_gb: Option<f64>,
    #[arg(long)]
    json: bool,
}

/// Refuses arguments no run can honour: fractions outside 0..=1 (loss below 1), more
/// hostile phones than phones, rates and times that are not positive.
fn check_args(a: &SimulateArgs) -> anyhow::Result<()> {
    for (name, p) in [
        ("crash-fraction", a.crash_fraction),
        ("slow-fraction", a.slow_fraction),
        ("freeze-fraction", a.freeze_fraction),
        ("cut-fraction", a.cut_fraction),
        ("partition-fraction", a.partition_fraction),
    ] {
        anyhow::ensure!((0.0..=1.0).contains(&p), "--{name} must be within 0..=1");
    }
    anyhow::ensure!(
        u64::from(a.corrupt_peers) + u64::from(a.liar_peers) <= u64::from(a.phones),
        "--corrupt-peers and --liar-peers are more than the {} phones",
        a.phones
    );
    // At 1 nothing would ever arrive: the run could only time out.
    anyhow::ensure!((0.0..1.0).contains(&a.loss), "--loss must be within 0..1");
    for (name, r) in [
        ("wan-mbit", a.wan_mbit),
        ("lan-mbit", a.lan_mbit),
        ("slow-mbit", a.slow_mbit),
    ] {
        anyhow::ensure!(r > 0.0 && r.is_finite(), "--{name} must be positive");
    }
    if let Some(c) = a.host_cpu_s_per_gb {
        anyhow::ensure!(
            c >= 0.0 && c.is_finite(),
            "--host-cpu-s-per-gb must be a non-negative number"
        );
    }
    anyhow::ensure!(
        a.wan_rtt_ms >= 0.0 && a.max_sim_s > 0.0,
        "times must be positive"
    );
    Ok(())
}

pub(super) fn run_simulate(a: SimulateArgs) -> anyhow::Result<ExitCode> {
    check_args(&a)?;
    let cfg = SimConfig {
        phones: a.phones,
        seed: a.seed.unwrap_or(SimConfig::default().seed),
        mode: a.mode,
        models: a.models,
        wan_mbit: a.wan_mbit,
        wan_rtt_ms: a.wan_rtt_ms,
        lan_mbit: a.lan_mbit,
        lan_latency_us: a.lan_latency_us,
        loss: a.loss,
        crash_fraction: a.crash_fraction,
        freeze_fraction: a.freeze_fraction,
        cut_fraction: a.cut_fraction,
        corrupt_peers: a.corrupt_peers.min(a.phones),
        liar_peers: a.liar_peers.min(a.phones.saturating_sub(a.corrupt_peers)),
        slow_fraction: a.slow_fraction,
        slow_mbit: a.slow_mbit,
        chunk_size: a.chunk_size,
        fanout: a.fanout,
        max_site_phones: a.max_site_phones,
        host_cores: a.host_cores,
        host_cpu_s_per_gb: a.host_cpu_s_per_gb.unwrap_or(0.0),
        max_sim_s: a.max_sim_s,
        partition_fraction: a.partition_fraction,
        partition_at_s: a.partition_at_s,
        partition_for_s: a.partition_for_s,
        kill_root_at: a.kill_root_at,
        fallback_slots: a.fallback_slots,
        origin_max_sessions: a.origin_max_sessions,
        manifest_over_lan: !a.keyless,
        ..SimConfig::default()
    };
    if let Some(n) = a.swarm {
        return swarm(&cfg, n, a.seed);
    }
    let wall = std::time::Instant::now();
    let mut r = sim::run(&cfg);
    r.wall_s = wall.elapsed().as_secs_f64();
    if a.json {
        println!("{}", pfs::report::schema::to_json_line("simulate", &r)?);
    } else {
        print_text(&r);
    }
    let failures = sim::check(&r);
    for f in &failures {
        eprintln!("error: {f}");
    }
    Ok(if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The report as text.
fn print_text(r: &sim::Report) {
    println!(
        "{} phones, {} model(s), mode {}, seed {}",
        r.phones, r.models, r.mode, r.seed
    );
    println!(
        "completed {} crashed {} frozen {} cut {} liars {} corrupt installs {} origin fallbacks {}; roots rejected: corrupt {}, stalled {}",
        r.completed,
        r.crashed,
        r.frozen,
        r.cut,
        r.liars,
        r.corrupt_installs,
        r.origin_fallbacks,
        r.roots_rejected_corrupt,
        r.roots_rejected_stalled
    );
    println!(
        "makespan {:.2} s (limit {:.2} s, ratio {:.3})",
        r.makespan_s,
        r.limit_s,
        r.makespan_s / r.limit_s
    );
    if r.host_cpu_s > 0.0 {
        println!(
            "all phones on one host (--host-cores): {:.2} CPU s charged to it",
            r.host_cpu_s
        );
    }
    // Per model, as the lab prints it: 1.000 is one copy of each model's load.
    let loads = r.load_bytes as f64 * f64::from(r.models);
    println!(
        "WAN bytes: firmware {} = {:.3} x (models x load), manifests {} = {:.3} x",
        r.wan_bytes,
        r.wan_bytes as f64 / loads,
        r.wan_manifest_bytes,
        r.wan_manifest_bytes as f64 / loads
    );
    // A depth past the bound means the sampler followed a parent-pointer cycle.
    let depth = if r.max_depth > 4096 {
        format!("{} (a parent cycle was seen)", r.max_depth)
    } else {
        r.max_depth.to_string()
    };
    println!(
        "election converged {:.3} s with {} broadcasts; roots max {} (partitioned {}), ever confirmed {}, children max {}, depth max {depth}",
        r.election_converged_s,
        r.election_broadcasts,
        r.roots_max,
        r.roots_max_partitioned,
        r.roots_elected_max,
        r.max_children
    );
    println!("{} events in {:.2} s wall", r.events, r.wall_s);
}

/// `pfs simulate --swarm N`: N runs of `cfg` with random seeds; the first failure (a
/// `sim::check` failure or a panic, e.g. a broken invariant) is printed with the command line
/// that reproduces it.
pub(super) fn swarm(cfg: &SimConfig, n: u32, first: Option<u64>) -> anyhow::Result<ExitCode> {
    let first = match first {
        Some(seed) => seed,
        None => {
            let mut entropy = [0u8; 8];
            std::fs::File::open("/dev/urandom")
                .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut entropy))
                .map_err(|e| anyhow::anyhow!("reading /dev/urandom for the swarm's seeds: {e}"))?;
            u64::from_le_bytes(entropy)
        }
    };
    // The command line as given, without --swarm and --seed: the reproduce line adds the seed.
    let mut rest = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--swarm" | "--seed" => {
                args.next();
            }
            a if a.starts_with("--swarm=") || a.starts_with("--seed=") => {}
            _ => rest.push(arg),
        }
    }
    let started = std::time::Instant::now();
    for i in 0..n {
        let seed = first.wrapping_add(u64::from(i).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let run = SimConfig {
            seed,
            ..cfg.clone()
        };
        let failures = match std::panic::catch_unwind(|| sim::run(&run)) {
            Ok(r) => sim::check(&r),
            Err(panic) => vec![
                panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "panic".into()),
            ],
        };
        if !failures.is_empty() {
            eprintln!("swarm: run {} of {n} (seed {seed}) failed:", i + 1);
            for f in &failures {
                eprintln!("  {f}");
            }
            println!("reproduce: pfs {} --seed {seed}", rest.join(" "));
            return Ok(ExitCode::FAILURE);
        }
    }
    println!(
        "swarm: {n} seeds passed (from {first}; again: --swarm {n} --seed {first}; {:.1} s)",
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}
