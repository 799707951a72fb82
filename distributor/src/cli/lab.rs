//! `pfs lab`: the namespace site, its runs and their table.

use super::*;
use pfs::xdp;

#[derive(Args, Debug)]
pub(super) struct LabArgs {
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9464).
    #[arg(long, value_name = "ADDR")]
    metrics: Option<std::net::SocketAddr>,
    #[arg(long, default_value_t = pfs::lab::LabConfig::default().phones)]
    phones: usize,
    /// Models (comma-separated); phones take them in turn, each model its own hierarchies.
    #[arg(long, value_delimiter = ',', default_values_t = pfs::lab::LabConfig::default().models)]
    models: Vec<String>,
    #[arg(long, default_value_t = pfs::lab::LabConfig::default().wan_mbit)]
    wan_mbit: f64,
    /// WAN token-bucket size in KiB: how much may leave back to back at line rate (default:
    /// 10 ms at the rate, at least 32).
    #[arg(long, value_parser = clap::value_parser!(u32).range(2..=1_048_576))]
    wan_burst_kib: Option<u32>,
    /// Each phone's port (0: unshaped).
    #[arg(long, default_value_t = pfs::lab::LabConfig::default().lan_mbit.unwrap_or(100.0))]
    lan_mbit: f64,
    #[arg(long, value_parser = mode_parser(), default_value_t = Mode::default())]
    mode: Mode,
    /// Run traditional, store-and-forward and pipelined one after another and compare.
    #[arg(long)]
    compare: bool,
    /// With --compare: also run these systems on the same site (comma-separated; each needs
    /// its Debian packages, see `cargo xtask setup`).
    #[arg(long, value_enum, value_delimiter = ',', requires = "compare")]
    peers: Vec<pfs::peers::Peer>,
    #[arg(long, value_enum, default_value_t = pfs::lab::LabConfig::default().origin)]
    origin: pfs::lab::OriginKind,
    /// How phones fetch from the origin (nginx serves only HTTP, tftpd-hpa only TFTP).
    #[arg(long, value_enum, default_value_t = pfs::lab::LabConfig::default().origin_proto)]
    origin_proto: pfs::lab::OriginProto,
    #[arg(long, value_enum, default_value_t = pfs::lab::LabConfig::default().backend)]
    backend: pfs::engine::Backend,
    #[arg(long, default_value_t = pfs::phone::Config::default().fanout, value_parser = clap::value_parser!(u8).range(1..))]
    fanout: u8,
    /// Attach the XDP election filter on every phone's port.
    #[arg(long)]
    xdp: bool,
    /// Print one JSON object per run instead of tables.
    #[arg(long)]
    json: bool,
    /// Draw each hierarchy's tree.
    #[arg(long)]
    tree: bool,
    /// Write report.md and SVG plots here.
    #[arg(long)]
    report: Option<std::path::PathBuf>,
    /// Draw only this hierarchy in the report's tree.svg (default: every hierarchy).
    #[arg(long, value_name = "MODEL/FILE", requires = "report")]
    tree_of: Option<String>,
    /// Stop a run that has not finished after this many seconds.
    #[arg(long, default_value_t = pfs::lab::LabConfig::default().deadline.as_secs_f64())]
    deadline_s: f64,
    #[arg(long, default_value_t = pfs::lab::LabConfig::default().seed)]
    seed: u64,
    /// Capture the site bridge (port 4051: elections and chunk streams) into this pcap file
    /// with tcpdump; read it with contrib/wireshark/pfs.lua.
    #[arg(long, value_name = "FILE", conflicts_with = "compare")]
    pcap: Option<std::path::PathBuf>,
    /// Bytes kept of each captured frame (0: whole frames; the dissector needs them to follow
    /// chunk streams, a small snaplen keeps only the election traffic whole).
    #[arg(long, default_value_t = 0, requires = "pcap")]
    pcap_snaplen: u32,
    /// Fault plan: this fraction of phones crash (sockets closed, phone stopped).
    #[arg(long, default_value_t = 0.0)]
    crash_fraction: f64,
    /// When the crashing phones crash (default: a seeded time within the limit).
    #[arg(long)]
    crash_at_s: Option<f64>,
    /// This fraction of phones hang (sockets open, nothing processed).
    #[arg(long, default_value_t = 0.0)]
    freeze_fraction: f64,
    /// This fraction of phones have their link cut in their namespace (half-open, no RST).
    #[arg(long, default_value_t = 0.0)]
    cut_fraction: f64,
    /// Bring cut links back up after this long.
    #[arg(long)]
    cut_for_s: Option<f64>,
    /// This fraction of phones have their port shaped to --slow-mbit.
    #[arg(long, default_value_t = 0.0)]
    slow_fraction: f64,
    #[arg(long, default_value_t = 2.0)]
    slow_mbit: f64,
    /// Phones that relay chunks with flipped bytes.
    #[arg(long, default_value_t = 0)]
    corrupt_peers: usize,
    /// Hostile phones that claim root with the strongest adverts, accept children, then send
    /// them nothing (the first, third, ...) or a trickle (the second, ...).
    #[arg(long, default_value_t = 0)]
    liar_peers: usize,
    /// The root of every hierarchy crashes when it holds this fraction of its file.
    #[arg(long)]
    kill_root_at: Option<f64>,
    /// The root of every hierarchy has its link cut when it holds this fraction of its file.
    #[arg(long)]
    cut_root_at: Option<f64>,
    /// The first phone to confirm itself root has its link cut this many seconds later.
    #[arg(long)]
    cut_first_root_after_s: Option<f64>,
    /// Random packet loss (0..1) on the site bridge and the WAN (nftables numgen in the
    /// site router).
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// The site router drops every IP fragment between the WAN and the site (a firewall that
    /// refuses fragments): the roots' WAN fetch must fall back to unfragmented blocks
    /// (`origin_switches.tftp_fragmented_to_unfragmented`).
    #[arg(long)]
    drop_fragments: bool,
    /// Phones find each other with ARP broadcasts (default: static neighbour entries, as
    /// Mininet's autoStaticArp; a thousand phones' ARP floods cost seconds of kernel time on
    /// two cores).
    #[arg(long)]
    dynamic_arp: bool,
    /// WAN round trip in ms (half each way): the WAN becomes a TUN pair with a delay line in
    /// this process (the kernel has no netem); ping from a phone checks it before the run.
    #[arg(long, value_parser = parse_rtt)]
    wan_rtt_ms: Option<f64>,
    /// blksize of the roots' WAN fetch (the traditional baseline keeps a phone's lock-step
    /// 1428-byte blocks); above 1428 each block is several IP fragments, and a transfer whose
    /// fragments never arrive starts over with 1428.
    #[arg(long, default_value_t = pfs::lab::LabConfig::default().tftp.blksize, value_parser = clap::value_parser!(u16).range(8..=65464))]
    blksize: u16,
    /// windowsize of the roots' WAN fetch, in blocks.
    #[arg(long, default_value_t = pfs::lab::LabConfig::default().tftp.windowsize, value_parser = clap::value_parser!(u16).range(1..))]
    windowsize: u16,
}

fn parse_rtt(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if (0.0..=10_000.0).contains(&v) {
        Ok(v)
    } else {
        Err("a round trip from 0 to 10000 ms".into())
    }
}

impl LabArgs {
    /// The site and fault plan these arguments describe.
    fn lab_config(&self) -> pfs::lab::LabConfig {
        pfs::lab::LabConfig {
            phones: self.phones,
            models: self.models.clone(),
            wan_mbit: self.wan_mbit,
            wan_burst_kib: self.wan_burst_kib,
            tftp: pfs::tftp::client::ClientConfig {
                blksize: self.blksize,
                windowsize: self.windowsize,
                ..pfs::lab::LabConfig::default().tftp
            },
            lan_mbit: (self.lan_mbit > 0.0).then_some(self.lan_mbit),
            fanout: self.fanout,
            origin: self.origin,
            origin_proto: self.origin_proto,
            backend: self.backend,
            xdp: self.xdp,
            seed: self.seed,
            deadline: std::time::Duration::from_secs_f64(self.deadline_s.max(1.0)),
            progress: !self.json,
            pcap: self.pcap.clone(),
            pcap_snaplen: self.pcap_snaplen,
            faults: pfs::faults::FaultPlan {
                seed: self.seed,
                crash_fraction: self.crash_fraction,
                crash_at_s: self.crash_at_s,
                freeze_fraction: self.freeze_fraction,
                cut_fraction: self.cut_fraction,
                cut_for_s: self.cut_for_s,
                slow_fraction: self.slow_fraction,
                slow_mbit: self.slow_mbit,
                corrupt_peers: self.corrupt_peers,
                liar_peers: self.liar_peers,
                kill_root_at: self.kill_root_at,
                cut_root_at: self.cut_root_at,
                cut_first_root_after_s: self.cut_first_root_after_s,
                loss: self.loss,
                drop_fragments: self.drop_fragments,
            },
            dynamic_arp: self.dynamic_arp,
            wan_rtt_ms: self.wan_rtt_ms,
        }
    }
}

pub(super) fn run_lab(a: LabArgs) -> anyhow::Result<ExitCode> {
    use pfs::lab::Lab;
    pfs::peer::install_signal_handlers();
    let cfg = a.lab_config();
    // Bad arguments fail at once, not after waiting for another site's lock.
    pfs::lab::check_config(&cfg)?;
    let info = pfs::report::RunInfo::here(pfs::report::SiteInfo::of_lab(&cfg));
    let show = !a.json;
    if show {
        eprintln!(
            "building the site: {} phones ({}), WAN {} Mbit/s{}, phone ports {} ...",
            cfg.phones,
            cfg.models.join(", "),
            cfg.wan_mbit,
            cfg.wan_rtt_ms
                .map_or(String::new(), |r| format!(" with a {r} ms round trip")),
            cfg.lan_mbit
                .map_or("unshaped".into(), |m| format!("{m} Mbit/s"))
        );
    }
    // A missing tool fails before minutes of setup, naming its package.
    for p in &a.peers {
        pfs::peers::check_installed(*p)?;
    }
    start_metrics(a.metrics)?;
    let lab = Lab::build(cfg)?;
    if let Some(stats) = lab.origin_stats() {
        pfs::metrics::set_origin(stats);
    }
    if let Some(stats) = lab.origin_http_stats() {
        pfs::metrics::set_origin_http(stats);
    }
    let _xdp = if a.xdp {
        let x = LabXdp::attach(&lab);
        xdp_metrics(x.0.clone());
        Some(x)
    } else {
        None
    };
    let mut runs = run_modes(&a, &lab)?;
    runs.extend(run_peers(&a, &lab)?);
    if show && runs.len() > 1 {
        print_lab_compare(&runs);
    }
    if let Some(dir) = &a.report {
        write_report(&a, dir, &runs, &info)?;
    }
    let ok = !runs.is_empty()
        && runs
            .iter()
            .all(|r| r.stuck == 0 && r.corrupt_installs == 0 && r.violations.is_empty());
    if runs.is_empty() {
        eprintln!("pfs: no run finished");
    }
    for r in &runs {
        // Every reason the exit status will be a failure, said once per run.
        if r.stuck > 0 {
            eprintln!(
                "pfs: {} run: {} of {} phones neither installed nor faulted (deadline {} s)",
                r.mode, r.stuck, r.phones, a.deadline_s
            );
        }
        if r.corrupt_installs > 0 {
            eprintln!(
                "pfs: {} run: {} phones installed bytes that do not match the load",
                r.mode, r.corrupt_installs
            );
        }
        for v in &r.violations {
            eprintln!("pfs: {} run: {v}", r.mode);
        }
    }
    if show {
        eprintln!("tearing down the site ...");
    }
    // The site goes with the lab: namespaces, links, qdiscs, rules, the origin.
    let t = std::time::Instant::now();
    drop(lab);
    eprintln!("pfs: site torn down in {:.1} s", t.elapsed().as_secs_f64());
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The lab's runs of pfs itself: `--mode`, or every mode with `--compare`; each printed as it
/// ends. Stops early when interrupted.
fn run_modes(a: &LabArgs, lab: &pfs::lab::Lab) -> anyhow::Result<Vec<pfs::lab::LabReport>> {
    let show = !a.json;
    let modes = if a.compare {
        vec![Mode::Traditional, Mode::StoreAndForward, Mode::Pipelined]
    } else {
        vec![a.mode]
    };
    let mut runs = Vec::new();
    for mode in modes {
        if pfs::peer::stop_requested() {
            break;
        }
        let progress = lab.progress();
        let bars = show.then(|| {
            ProgressBars::start(
                progress.clone(),
                lab.config().phones as u64,
                format!("{mode}: installed"),
            )
        });
        let result = lab.run(mode, Some(progress));
        if let Some(b) = bars {
            b.finish();
        }
        let r = result?;
        if show && pfs::peer::stop_requested() {
            eprintln!("interrupted: partial results of the {mode} run");
        }
        if a.json {
            let mut brief = r.clone();
            if !a.tree {
                brief.trees.clear();
            }
            println!("{}", pfs::report::schema::to_json_line("lab", &brief)?);
        } else {
            print_lab_run(&r);
        }
        if a.tree {
            print!("{}", pfs::lab::text_trees(&r));
        }
        runs.push(r);
    }
    Ok(runs)
}

/// `--peers`: the other distributors on the same site, each printed as it ends.
fn run_peers(a: &LabArgs, lab: &pfs::lab::Lab) -> anyhow::Result<Vec<pfs::lab::LabReport>> {
    let show = !a.json;
    let mut runs = Vec::new();
    for p in &a.peers {
        if pfs::peer::stop_requested() {
            break;
        }
        if show {
            eprintln!(
                "{}: running on the same site ...",
                pfs::peers::System::from(*p)
            );
        }
        let r = pfs::peers::run(lab, *p)?;
        if a.json {
            println!("{}", pfs::report::schema::to_json_line("lab", &r)?);
        } else {
            print_lab_run(&r);
        }
        runs.push(r);
    }
    Ok(runs)
}

/// `--report DIR`: the report of every run, with a warning when `--tree-of` names no hierarchy.
fn write_report(
    a: &LabArgs,
    dir: &std::path::Path,
    runs: &[pfs::lab::LabReport],
    info: &pfs::report::RunInfo,
) -> anyhow::Result<()> {
    let show = !a.json;
    pfs::report::write_lab_report(dir, runs, info, a.tree_of.as_deref())?;
    if let (Some(want), Some(r)) = (&a.tree_of, pfs::report::plot::tree_run(runs))
        && !r.trees.contains_key(want)
    {
        let names: Vec<&str> = r.trees.keys().map(String::as_str).collect();
        eprintln!(
            "warning: no hierarchy {want} in the {} run; it has: {}",
            r.mode,
            names.join(", ")
        );
    }
    if show {
        eprintln!("report written to {}", dir.join("report.md").display());
    }
    Ok(())
}

/// XDP on every phone's port for the lab's lifetime.
pub(super) struct LabXdp(Vec<Target>);

impl LabXdp {
    pub(super) fn attach(lab: &pfs::lab::Lab) -> LabXdp {
        let models = lab.config().models.clone();
        let mut done = Vec::new();
        for ns in &lab.site.phones {
            let t = Target {
                iface: pfs::topology::PHONE_IFACE.into(),
                netns: Some(ns.name().to_owned()),
            };
            match xdp::attach(&t, AttachMode::Auto, &models) {
                Ok(_) => done.push(t),
                Err(e) => {
                    eprintln!("pfs: XDP unavailable ({e}); running without it");
                    break;
                }
            }
        }
        LabXdp(done)
    }
}

impl Drop for LabXdp {
    fn drop(&mut self) {
        for t in &self.0 {
            let _ = xdp::detach(t);
        }
    }
}

pub(super) fn print_lab_run(r: &pfs::lab::LabReport) {
    println!(
        "{}: {}/{} phones installed a verified load in {:.2} s ({:.2} x the WAN limit {:.2} s); completion p50 {:.2} s p90 {:.2} s p99 {:.2} s",
        r.mode,
        r.completed,
        r.phones,
        r.makespan_s,
        r.makespan_s / r.limit_s,
        r.limit_s,
        r.completion_p50_s,
        r.completion_p90_s,
        r.completion_p99_s
    );
    println!(
        "  WAN: firmware {:.1} MB = {:.3} x (models x load), link {:.1} MB; roots per hierarchy (ever confirmed) {}, max children {}, max depth {}, fallbacks {}, corrupt installs {}",
        r.wan_bytes as f64 / 1e6,
        r.wan_bytes as f64 / (f64::from(r.models) * r.load_bytes as f64),
        r.wan_link_bytes as f64 / 1e6,
        r.roots_elected_max,
        r.max_children,
        r.max_depth,
        r.origin_fallbacks,
        r.corrupt_installs
    );
    if let Some(set) = r.wan_rtt_ms {
        println!(
            "  WAN round trip: set {set} ms, ping measured {}; delay line late by at most {:.2} ms, {} packets dropped",
            r.wan_rtt_ping_ms
                .map_or("nothing (no ping)".into(), |p| format!("{p} ms")),
            r.wan_delay_late_max_ms.unwrap_or(0.0),
            r.wan_delay_dropped.unwrap_or(0)
        );
    }
    if !r.fault_events.is_empty() || r.slow > 0 || r.corrupt_peers > 0 {
        println!(
            "  faults: crashed {}, frozen {}, cut {}, slow {}, corrupt peers {}; stuck {}; normal phones' makespan {:.2} s ({:.2} x limit); recovery p50 {:.2} s max {:.2} s over {} orphans; origin peak sessions {} (bound {})",
            r.crashed,
            r.frozen,
            r.cut,
            r.slow,
            r.corrupt_peers,
            r.stuck,
            r.normal_makespan_s,
            r.normal_makespan_s / r.limit_s,
            r.recovery_p50_s,
            r.recovery_max_s,
            r.recoveries,
            r.origin_peak_sessions
                .map_or("not counted".into(), |n| n.to_string()),
            r.origin_session_bound
        );
        for e in &r.fault_events {
            println!(
                "    {:.2} s {} {} ({}), {} children orphaned",
                e.at_s, e.phone, e.kind, e.why, e.orphans
            );
        }
    }
}

pub(super) fn print_lab_compare(runs: &[pfs::lab::LabReport]) {
    println!();
    println!(
        "{:<18} {:>10} {:>9} {:>8} {:>8} {:>12} {:>12} {:>9}",
        "mode", "makespan", "x limit", "p50", "p99", "WAN x load", "WAN link MB", "speed-up"
    );
    let base = runs
        .iter()
        .find(|r| r.mode == Mode::Traditional)
        .map(|r| r.makespan_s);
    for r in runs {
        println!(
            "{:<18} {:>9.2}s {:>9.2} {:>7.2}s {:>7.2}s {:>12.3} {:>12.1} {:>9}",
            r.mode.to_string(),
            r.makespan_s,
            r.makespan_s / r.limit_s,
            r.completion_p50_s,
            r.completion_p99_s,
            r.wan_bytes as f64 / (f64::from(r.models) * r.load_bytes as f64),
            r.wan_link_bytes as f64 / 1e6,
            match base {
                // A run where not every phone installed has no makespan to compare.
                Some(b) if r.completed == r.phones => format!("{:.1}x", b / r.makespan_s.max(1e-9)),
                _ => "-".into(),
            }
        );
    }
}
