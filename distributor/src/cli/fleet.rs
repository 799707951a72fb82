//! `pfs fleet`: many phones in one process against one origin.

use super::*;

#[derive(Args, Debug)]
pub(super) struct FleetArgs {
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9464).
    #[arg(long, value_name = "ADDR")]
    metrics: Option<std::net::SocketAddr>,
    /// The load: tftp://HOST[:PORT]/DIR or http://HOST[:PORT]/DIR, a directory holding the load
    /// and its manifest; several URLs separated by commas are tried in order (HTTP first, TFTP
    /// when HTTP fails, as a phone does).
    #[arg(long)]
    origin: String,
    #[arg(long, default_value_t = 50)]
    phones: usize,
    /// Interface whose address the phones share.
    #[arg(long)]
    iface: String,
    /// Run inside this existing network namespace (an `ip netns` name).
    #[arg(long)]
    netns: Option<String>,
    #[arg(long, default_value = "CP-7961G")]
    model: String,
    /// Stores go here, one per phone (default: a fresh directory under /dev/shm, removed
    /// after the run).
    #[arg(long)]
    store: Option<std::path::PathBuf>,
    /// Phone i binds its peer ports at PORT_BASE + i (the default sits above Linux's
    /// ephemeral range, 32768-60999, so no other socket holds them by chance).
    #[arg(long, default_value_t = 61000)]
    port_base: u16,
    #[arg(long, value_enum, default_value_t = pfs::engine::Backend::Auto)]
    backend: pfs::engine::Backend,
    /// TFTP block size to ask for.
    #[arg(long, default_value_t = pfs::tftp::client::ClientConfig::unfragmented().blksize, value_parser = clap::value_parser!(u16).range(8..=65464))]
    blksize: u16,
    /// TFTP window size to ask for (RFC 7440).
    #[arg(long, default_value_t = pfs::tftp::client::ClientConfig::unfragmented().windowsize, value_parser = clap::value_parser!(u16).range(1..))]
    windowsize: u16,
    /// Stop after this many seconds, counting phones not done as failed.
    #[arg(long, default_value_t = 600.0)]
    deadline_s: f64,
    #[arg(long)]
    json: bool,
    /// Sharing phones: each on its own address and MAC on --iface's LAN (a macvlan or
    /// ipvlan child in a namespace of its own), electing and sharing with every pfs phone on
    /// the LAN, other hosts' fleets included.
    #[arg(long, requires = "addresses")]
    peer_sharing: bool,
    /// With --peer-sharing: the phones' addresses, taken in order (e.g. 198.18.1.0/24); give
    /// each host its own range.
    #[arg(long, value_name = "CIDR", requires = "peer_sharing")]
    addresses: Option<pfs::fleetnet::Cidr>,
    /// With --peer-sharing: the phones' links.
    #[arg(long, value_enum, default_value_t = pfs::fleetnet::LinkKind::Macvlan)]
    link: pfs::fleetnet::LinkKind,
    /// With --peer-sharing: how files move between phones.
    #[arg(long, value_parser = mode_parser(), default_value_t = Mode::Pipelined)]
    mode: Mode,
    /// With --peer-sharing: children per parent.
    #[arg(long, default_value_t = pfs::phone::Config::default().fanout, value_parser = clap::value_parser!(u8).range(1..))]
    fanout: u8,
    /// With --peer-sharing: once all phones here installed, keep serving until none has
    /// served a child for this long (other hosts' phones may still need them).
    #[arg(long, default_value_t = 5.0)]
    linger_s: f64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

pub(super) fn run_fleet(a: FleetArgs) -> anyhow::Result<ExitCode> {
    pfs::peer::install_signal_handlers();
    start_metrics(a.metrics)?;
    let (store, scratch) = match &a.store {
        Some(s) => (s.clone(), false),
        None => (
            pfs::store::scratch_base().join(format!("pfs-fleet-{}", std::process::id())),
            true,
        ),
    };
    let cfg = a.fleet_config(store.clone());
    let result = power_on(&a, &cfg);
    if scratch {
        let _ = std::fs::remove_dir_all(&store);
    }
    let r = result?;
    if a.json {
        println!("{}", pfs::report::schema::to_json_line("fleet", &r)?);
    } else {
        print_fleet_summary(&r);
    }
    Ok(if r.completed == r.phones && r.corrupt_installs == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

impl FleetArgs {
    /// The fleet these arguments describe, its stores under `store`.
    fn fleet_config(&self, store: std::path::PathBuf) -> pfs::fleet::FleetConfig {
        pfs::fleet::FleetConfig {
            phones: self.phones,
            origin: self.origin.clone(),
            iface: self.iface.clone(),
            netns: self.netns.clone(),
            model: self.model.clone(),
            store,
            port_base: self.port_base,
            backend: self.backend,
            deadline: std::time::Duration::from_secs_f64(self.deadline_s.max(1.0)),
            tftp: pfs::tftp::client::ClientConfig {
                blksize: self.blksize,
                windowsize: self.windowsize,
                ..Default::default()
            },
            seed: self.seed,
            sharing: self.peer_sharing.then(|| pfs::fleet::Sharing {
                mode: self.mode,
                fanout: self.fanout,
                linger: std::time::Duration::from_secs_f64(self.linger_s.max(0.0)),
            }),
        }
    }
}

/// Powers the phones on (each on an address of its own with `--peer-sharing`) and runs them
/// to the end, with progress bars unless `--json`.
fn power_on(
    a: &FleetArgs,
    cfg: &pfs::fleet::FleetConfig,
) -> Result<pfs::fleet::FleetReport, pfs::fleet::FleetError> {
    use pfs::fleet::{fleet_progress, prepare_fleet, run_fleet};
    let show = !a.json;
    if show {
        eprintln!(
            "powering on {} phones on {}{} (manifests from {}) ...",
            a.phones,
            a.iface,
            a.netns
                .as_deref()
                .map_or(String::new(), |n| format!(" in namespace {n}")),
            a.origin
        );
    }
    // Sharing phones' namespaces live until the run is over (dropped at the end).
    let nets = match (a.peer_sharing, a.addresses) {
        (true, Some(pool)) => Some(
            pfs::fleetnet::build(&a.iface, a.netns.as_deref(), pool, a.phones, a.link)
                .map_err(|e| pfs::fleet::FleetError::Setup(format!("--peer-sharing: {e}")))?,
        ),
        _ => None,
    };
    let (ready, prepare_s) = match &nets {
        Some(n) => pfs::fleet::prepare_sharing(cfg, n)?,
        None => prepare_fleet(cfg)?,
    };
    let progress = fleet_progress(&ready);
    let bars = show.then(|| {
        ProgressBars::start(
            progress.clone(),
            a.phones as u64,
            format!(
                "{}: installed",
                if a.peer_sharing {
                    a.mode
                } else {
                    Mode::Traditional
                }
            ),
        )
    });
    let r = run_fleet(cfg, ready, prepare_s, Some(progress));
    if let Some(b) = bars {
        b.finish();
    }
    r
}

/// The fleet's result in words: installs, completion percentiles, what the server refused.
fn print_fleet_summary(r: &pfs::fleet::FleetReport) {
    println!(
        "{}/{} phones installed {:.1} MB each in {:.2} s: goodput {:.1} Mbit/s from the server",
        r.completed,
        r.phones,
        r.load_bytes as f64 / 1e6,
        r.elapsed_s,
        r.goodput_mbit
    );
    println!(
        "completion p50 {:.2} s  p90 {:.2} s  p99 {:.2} s  max {:.2} s",
        r.completion.p50_s, r.completion.p90_s, r.completion.p99_s, r.completion.max_s
    );
    println!(
        "server refused {} transfers, {} timed out, {} protocol errors; {} corrupt installs",
        r.origin_refused, r.origin_timeouts, r.origin_errors, r.corrupt_installs
    );
}
