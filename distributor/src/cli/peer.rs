//! `pfs peer` and `pfs serve`: one phone (or a rig's permanent root) on real sockets.

use super::*;
use pfs::xdp;

/// Options `peer` and `serve` share.
#[derive(Args, Debug)]
pub(super) struct RunArgs {
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9464).
    #[arg(long, value_name = "ADDR")]
    metrics: Option<std::net::SocketAddr>,
    /// LAN interface (its IPv4 address is the peer's identity; adverts go to its broadcast).
    #[arg(long)]
    iface: String,
    /// Phone model: one hierarchy per (model, file, digest).
    #[arg(long, default_value = "CP-7961G")]
    model: String,
    #[arg(long, value_parser = mode_parser(), default_value_t = Mode::Pipelined)]
    mode: Mode,
    /// I/O backend (auto: io_uring, else plain syscalls).
    #[arg(long, value_enum, default_value_t = pfs::engine::Backend::Auto)]
    backend: pfs::engine::Backend,
    /// Require a manifest signed by this key.
    #[arg(long)]
    public_key: Option<std::path::PathBuf>,
    /// Attach the XDP election filter to --iface for the run (detached on exit).
    #[arg(long)]
    xdp: bool,
    /// Print the final report as one JSON line.
    #[arg(long)]
    json: bool,
    /// Seed of the phone's election draws (default: from the address and the clock).
    #[arg(long)]
    seed: Option<u64>,
    /// The most phones on this broadcast domain (sizes the election's back-off: the first
    /// claim comes sooner on a smaller site; more phones than this claim together more
    /// often, which the claim guard still resolves).
    #[arg(long, default_value_t = pfs::phone::Config::default().n_max, value_parser = clap::value_parser!(u64).range(2..))]
    max_site_phones: u64,
    #[arg(long, default_value_t = 4051)]
    port: u16,
}

#[derive(Args, Debug)]
pub(super) struct PeerArgs {
    #[command(flatten)]
    run: RunArgs,
    /// tftp://HOST[:PORT]/DIR or http://HOST[:PORT]/DIR holding pfs-manifest.json and the
    /// load's files; several separated by commas are tried in order.
    #[arg(long)]
    origin: String,
    /// The phone's store directory.
    #[arg(long)]
    store: std::path::PathBuf,
    /// Children per parent.
    #[arg(long, default_value_t = pfs::phone::Config::default().fanout, value_parser = clap::value_parser!(u8).range(1..))]
    fanout: u8,
    #[arg(long, default_value_t = pfs::tftp::client::ClientConfig::default().blksize, value_parser = clap::value_parser!(u16).range(8..=65464))]
    blksize: u16,
    #[arg(long, default_value_t = pfs::tftp::client::ClientConfig::default().windowsize, value_parser = clap::value_parser!(u16).range(1..))]
    windowsize: u16,
    /// Once installed, exit after this many seconds without a child to serve (default: run
    /// until SIGINT/SIGTERM).
    #[arg(long)]
    linger_s: Option<f64>,
    /// Exit non-zero if not installed within this many seconds.
    #[arg(long)]
    deadline_s: Option<f64>,
}

#[derive(Args, Debug)]
pub(super) struct ServeArgs {
    #[command(flatten)]
    run: RunArgs,
    /// Directory holding pfs-manifest.json and the files (verified at start).
    #[arg(long)]
    load: std::path::PathBuf,
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u8).range(1..))]
    fanout: u8,
}

/// XDP counters summed over `targets`, for /metrics.
pub(super) fn xdp_metrics(targets: Vec<Target>) {
    pfs::metrics::set_xdp(move || {
        let mut sum = std::collections::BTreeMap::new();
        for t in &targets {
            if let Ok(s) = xdp::stats(t) {
                for (k, v) in s.counters {
                    *sum.entry(k.to_owned()).or_default() += v;
                }
            }
        }
        sum
    });
}

pub(super) fn run_peer(
    run: RunArgs,
    source: pfs::peer::Source,
    store: std::path::PathBuf,
    fanout: u8,
    tftp: pfs::tftp::client::ClientConfig,
    linger: Option<std::time::Duration>,
    deadline: Option<std::time::Duration>,
) -> anyhow::Result<ExitCode> {
    use pfs::peer;
    let public_key = run
        .public_key
        .as_deref()
        .map(pfs::manifest::read_verifying_key)
        .transpose()?;
    let seed = run.seed.unwrap_or_else(|| {
        let addr = peer::iface_addrs(&run.iface).map_or(0, |(a, _)| u32::from(a));
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        (u64::from(addr) << 32) ^ t ^ u64::from(std::process::id())
    });
    peer::install_signal_handlers();
    start_metrics(run.metrics)?;
    let target = Target {
        iface: run.iface.clone(),
        netns: None,
    };
    // Without root or BPF the peer says so in one line and runs without XDP.
    let xdp_on = run.xdp
        && match xdp::attach(&target, AttachMode::Auto, std::slice::from_ref(&run.model)) {
            Ok(a) => {
                tracing::info!("XDP attached to {} in {} mode", a.iface, a.mode);
                true
            }
            Err(e) => {
                eprintln!("pfs: XDP unavailable ({e}); running without it");
                false
            }
        };
    if xdp_on {
        xdp_metrics(vec![target.clone()]);
    }
    let opts = peer::PeerOptions {
        iface: run.iface.clone(),
        model: run.model,
        source,
        store,
        mode: run.mode,
        fanout,
        backend: run.backend,
        public_key,
        tftp,
        linger,
        deadline,
        seed,
        port: run.port,
        max_site_phones: run.max_site_phones,
    };
    let result = peer::Peer::new(opts).and_then(peer::Peer::run);
    let xdp_stats = if xdp_on {
        let s = xdp::stats(&target).ok();
        if let Err(e) = xdp::detach(&target) {
            eprintln!("pfs: XDP detach: {e}");
        }
        s
    } else {
        None
    };
    let mut report = result?;
    report.xdp = xdp_stats.map(|s| serde_json::json!(s.counters));
    if run.json {
        println!("{}", pfs::report::schema::to_json_line("peer", &report)?);
    } else {
        print_peer_report(&report);
    }
    Ok(if report.installed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `pfs peer`: a phone on real sockets, fetching from the origin when it is root.
pub(super) fn run_peer_args(a: PeerArgs) -> anyhow::Result<ExitCode> {
    let tftp = pfs::tftp::client::ClientConfig {
        blksize: a.blksize,
        windowsize: a.windowsize,
        ..Default::default()
    };
    let secs = |s: f64| std::time::Duration::from_secs_f64(s.max(0.0));
    run_peer(
        a.run,
        pfs::peer::Source::Origin(a.origin),
        a.store,
        a.fanout,
        tftp,
        a.linger_s.map(secs),
        a.deadline_s.map(secs),
    )
}

/// `pfs serve`: a permanent root for a rig, serving a load it holds.
pub(super) fn run_serve(a: ServeArgs) -> anyhow::Result<ExitCode> {
    run_peer(
        a.run,
        pfs::peer::Source::Serve(a.load.clone()),
        a.load,
        a.fanout,
        Default::default(),
        None,
        None,
    )
}

/// The human-readable summary of a `pfs peer` / `pfs serve` run.
fn print_peer_report(report: &pfs::peer::PeerReport) {
    println!(
        "{} {} load {}: {} in {:.2} s ({} backend, {} zero-copy sends, {} copied by the kernel)",
        report.peer,
        report.model,
        report.load,
        if report.installed {
            "installed"
        } else {
            "NOT installed"
        },
        report.seconds,
        report.engine.backend,
        report.engine.zc_sends,
        report.engine.zc_copied
    );
    for f in &report.files {
        println!(
            "  {:<28} {:<11} children<={} origin {} B, peers {} B{}",
            f.file,
            f.role,
            f.max_children,
            f.origin_bytes,
            f.peer_bytes,
            f.parent
                .map(|p| format!(", parent {p}"))
                .unwrap_or_default()
        );
    }
    if let Some(serde_json::Value::Object(counters)) = &report.xdp {
        let list: Vec<String> = counters.iter().map(|(k, v)| format!("{k} {v}")).collect();
        println!("  XDP counted: {}", list.join(", "));
    }
}
