//! `pfs`: the command-line front end. Parsing and printing only; the work lives in the library.

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use pfs::{
    phone::Mode,
    sim::{self, SimConfig},
    xdp::{self, AttachMode, Target},
};
use tracing_subscriber::{EnvFilter, fmt};

#[derive(Parser, Debug)]
#[command(
    name = "pfs",
    version,
    about = "Peer firmware sharing: phones share firmware over the LAN instead of each pulling it across the WAN."
)]
struct Cli {
    /// More log output (-v info, -vv debug, -vvv trace). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Less log output (errors only).
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    /// Log line format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The XDP fast path for port-4051 election traffic.
    #[command(subcommand)]
    Xdp(XdpCommand),
    /// Simulate a fleet upgrade (deterministic: same seed, same report).
    Simulate(SimulateArgs),
    /// Serve a directory read-only over TFTP (blksize, tsize, timeout, windowsize), and HTTP with --http.
    Origin(OriginArgs),
    /// Download one file: tftp://HOST[:PORT]/PATH or http://HOST[:PORT]/PATH.
    Fetch(FetchArgs),
    /// Fetch a whole load (manifest first) into a store, verifying every chunk, then activate it.
    FetchLoad(FetchLoadArgs),
    /// Build (or with --verify, check) the manifest of a load directory.
    Manifest(ManifestArgs),
    /// Firmware loads.
    #[command(subcommand)]
    Load(LoadCommand),
    /// ed25519 keys for signing manifests.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Phone configuration files.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Run one phone on an interface: elect, fetch or join, verify, install, relay.
    Peer(PeerArgs),
    /// Serve a load already held as a permanent root with a large fan-out (a rig server).
    Serve(ServeArgs),
    /// Build a site of network namespaces and upgrade a fleet of virtual phones over a shaped WAN.
    Lab(LabArgs),
    /// Load-test a TFTP server: N virtual phones on an existing interface pull a load
    /// traditionally; reports goodput, completion times and failures.
    Fleet(FleetArgs),
    /// JSON reports.
    #[command(subcommand)]
    Report(ReportCommand),
    /// Write man pages (man/) and shell completions (completions/) into DIR, for packaging
    /// (`cargo xtask deb`).
    #[command(hide = true)]
    GenerateAssets { dir: std::path::PathBuf },
}

#[derive(Subcommand, Debug)]
enum ReportCommand {
    /// Combine `pfs fleet --json` reports of fleets that ran side by side (one site over
    /// several hosts) into one fleet report: counts add up, each hierarchy's roots are united.
    Merge {
        /// Files holding one `fleet` report (a `pfs fleet --json` line) each.
        #[arg(required = true, num_args = 1..)]
        files: Vec<std::path::PathBuf>,
    },
}

#[derive(Args, Debug)]
struct FleetArgs {
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
    #[arg(long, default_value_t = 1468, value_parser = clap::value_parser!(u16).range(8..=65464))]
    blksize: u16,
    /// TFTP window size to ask for (RFC 7440).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..))]
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
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..))]
    fanout: u8,
    /// With --peer-sharing: once all phones here installed, keep serving until none has
    /// served a child for this long (other hosts' phones may still need them).
    #[arg(long, default_value_t = 5.0)]
    linger_s: f64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[derive(Args, Debug)]
struct LabArgs {
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9464).
    #[arg(long, value_name = "ADDR")]
    metrics: Option<std::net::SocketAddr>,
    #[arg(long, default_value_t = 60)]
    phones: usize,
    /// Models (comma-separated); phones take them in turn, each model its own hierarchies.
    #[arg(long, value_delimiter = ',', default_value = "CP-7961G,CP-7941G")]
    models: Vec<String>,
    #[arg(long, default_value_t = 50.0)]
    wan_mbit: f64,
    /// WAN token-bucket size in KiB: how much may leave back to back at line rate (default:
    /// 10 ms at the rate, at least 32).
    #[arg(long, value_parser = clap::value_parser!(u32).range(2..=1_048_576))]
    wan_burst_kib: Option<u32>,
    /// Each phone's port (0: unshaped).
    #[arg(long, default_value_t = 100.0)]
    lan_mbit: f64,
    #[arg(long, value_parser = mode_parser(), default_value_t = Mode::Pipelined)]
    mode: Mode,
    /// Run traditional, store-and-forward and pipelined one after another and compare.
    #[arg(long)]
    compare: bool,
    /// With --compare: also run these systems on the same site (comma-separated; each needs
    /// its Debian packages, see `cargo xtask setup`).
    #[arg(long, value_enum, value_delimiter = ',', requires = "compare")]
    peers: Vec<pfs::peers::Peer>,
    #[arg(long, value_enum, default_value_t = pfs::lab::OriginKind::Pfs)]
    origin: pfs::lab::OriginKind,
    /// How phones fetch from the origin (nginx serves only HTTP, tftpd-hpa only TFTP).
    #[arg(long, value_enum, default_value_t = pfs::lab::OriginProto::Tftp)]
    origin_proto: pfs::lab::OriginProto,
    #[arg(long, value_enum, default_value_t = pfs::engine::Backend::Auto)]
    backend: pfs::engine::Backend,
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..))]
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
    #[arg(long, default_value_t = 600.0)]
    deadline_s: f64,
    #[arg(long, default_value_t = 1)]
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
    /// WAN round trip in ms (half each way): the WAN becomes a TUN pair with a delay line in
    /// this process (the kernel has no netem); ping from a phone checks it before the run.
    #[arg(long, value_parser = parse_rtt)]
    wan_rtt_ms: Option<f64>,
}

fn parse_rtt(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if (0.0..=10_000.0).contains(&v) {
        Ok(v)
    } else {
        Err("a round trip from 0 to 10000 ms".into())
    }
}

/// Options `peer` and `serve` share.
#[derive(Args, Debug)]
struct RunArgs {
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
    #[arg(long, default_value_t = 4051)]
    port: u16,
}

#[derive(Args, Debug)]
struct PeerArgs {
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
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..))]
    fanout: u8,
    #[arg(long, default_value_t = 1468, value_parser = clap::value_parser!(u16).range(8..=65464))]
    blksize: u16,
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..))]
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
struct ServeArgs {
    #[command(flatten)]
    run: RunArgs,
    /// Directory holding pfs-manifest.json and the files (verified at start).
    #[arg(long)]
    load: std::path::PathBuf,
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u8).range(1..))]
    fanout: u8,
}

#[derive(Subcommand, Debug)]
enum ConfigCommand {
    /// Write SEP<MAC>.cnf.xml for every device of a site TOML (PFS flag: device > profile > enterprise).
    Render {
        #[arg(long)]
        config: std::path::PathBuf,
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// Print what a phone reads from a cnf.xml (SEP<MAC>.cnf.xml or XMLDefault.cnf.xml).
    Show {
        file: std::path::PathBuf,
        /// The phone's model: CP-7942G, Cisco 7942, or Cisco's device type number (434).
        #[arg(long)]
        model: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug)]
struct FetchLoadArgs {
    /// tftp://HOST[:PORT]/DIR or http://HOST[:PORT]/DIR (DIR holds pfs-manifest.json and the
    /// files; over HTTP a file partly in the store continues with Range)
    url: String,
    /// The phone's store directory.
    #[arg(long)]
    store: std::path::PathBuf,
    /// Require a manifest signed by this key.
    #[arg(long)]
    public_key: Option<std::path::PathBuf>,
    #[arg(long, default_value_t = 1428, value_parser = clap::value_parser!(u16).range(8..=65464))]
    blksize: u16,
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..))]
    windowsize: u16,
    /// The load the phone's configuration names: fetch pfs-manifest.<LOAD>.json (written by
    /// `pfs manifest DIR --all`) instead of pfs-manifest.json.
    #[arg(long)]
    load: Option<String>,
}

#[derive(Args, Debug)]
struct ManifestArgs {
    /// Load directory, or a TFTP folder holding many loads (then name one with --load).
    dir: std::path::PathBuf,
    /// The load to cover: its .loads name without the suffix, as a configuration's
    /// loadInformation gives it (e.g. SCCP41.9-4-2SR3-1S).
    #[arg(long, conflicts_with = "all")]
    load: Option<String>,
    /// One manifest per .loads in DIR, each as pfs-manifest.<LOAD>.json.
    #[arg(long)]
    all: bool,
    #[arg(long, default_value_t = pfs::manifest::DEFAULT_CHUNK, value_parser = clap::value_parser!(u32).range(1024..=1_048_576))]
    chunk_size: u32,
    /// Sign with this secret key (hex seed, from `pfs key generate`).
    #[arg(long)]
    sign_key: Option<std::path::PathBuf>,
    /// Check the directory against its existing manifest instead of writing one.
    #[arg(long)]
    verify: bool,
    /// With --verify: require a valid signature by this public key.
    #[arg(long)]
    public_key: Option<std::path::PathBuf>,
}

#[derive(Subcommand, Debug)]
enum LoadCommand {
    /// Write a synthetic load with the file sizes of SCCP41.9-4-2SR3-1S, its .loads and manifest.
    Synth {
        #[arg(long)]
        out: std::path::PathBuf,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long)]
        sign_key: Option<std::path::PathBuf>,
    },
    /// Show a .loads file's signed header and components, or a .sbn/.sgn/.sebn's header.
    Inspect {
        file: std::path::PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
enum KeyCommand {
    /// Write PREFIX.key (secret seed, hex, mode 0600) and PREFIX.pub (public key, hex).
    Generate {
        #[arg(long)]
        out: std::path::PathBuf,
    },
}

#[derive(Args, Debug)]
struct OriginArgs {
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9464).
    #[arg(long, value_name = "ADDR")]
    metrics: Option<std::net::SocketAddr>,
    /// Directory served; nothing outside it is reachable.
    #[arg(long)]
    root: std::path::PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:6969")]
    listen: std::net::SocketAddr,
    /// Concurrent transfers; more are refused with "server busy".
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    max_sessions: u32,
    /// Largest windowsize granted.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..))]
    max_window: u16,
    /// Also serve the root read-only over HTTP at IP[:PORT] (port 6970 when omitted, where
    /// Cisco phones look): GET, HEAD, one Range, the same path rules, no listing.
    #[arg(long, value_name = "ADDR", value_parser = pfs::http::parse_listen)]
    http: Option<std::net::SocketAddr>,
    /// Concurrent HTTP connections; more get 503 with Retry-After.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    http_max_connections: u32,
}

#[derive(Args, Debug)]
struct FetchArgs {
    /// tftp://HOST[:PORT]/PATH or http://HOST[:PORT]/PATH
    url: String,
    /// Output file (written atomically).
    #[arg(short, long)]
    output: std::path::PathBuf,
    #[arg(long, default_value_t = 1428, value_parser = clap::value_parser!(u16).range(8..=65464))]
    blksize: u16,
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..))]
    windowsize: u16,
    /// Retransmission timeout.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(10..=255_000))]
    timeout_ms: u64,
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(0..=100))]
    retries: u32,
    /// Ask for each window as soon as the last is in (plain RFC 7440), instead of pacing
    /// window requests by a congestion window that halves on loss.
    #[arg(long)]
    fixed_window: bool,
    /// http:// only: keep a partial download (.NAME.pfs-partial next to the output) when the
    /// transfer fails, and continue one found there with `Range` instead of starting over.
    #[arg(long)]
    resume: bool,
}

#[derive(Args, Debug)]
struct SimulateArgs {
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    phones: u32,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long, value_parser = mode_parser(), default_value_t = Mode::Pipelined)]
    mode: Mode,
    /// Phone models (each forms its own hierarchies).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    models: u32,
    #[arg(long, default_value_t = 10.0)]
    wan_mbit: f64,
    #[arg(long, default_value_t = 50.0)]
    wan_rtt_ms: f64,
    #[arg(long, default_value_t = 100.0)]
    lan_mbit: f64,
    #[arg(long, default_value_t = 50)]
    lan_latency_us: u64,
    /// Packet loss probability on every link.
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    #[arg(long, default_value_t = 0.0)]
    crash_fraction: f64,
    /// Phones that hang with their sockets open (peers see silence on live streams).
    #[arg(long, default_value_t = 0.0)]
    freeze_fraction: f64,
    /// Phones whose link goes down (half-open streams, noticed after TCP_USER_TIMEOUT).
    #[arg(long, default_value_t = 0.0)]
    cut_fraction: f64,
    #[arg(long, default_value_t = 0)]
    corrupt_peers: u32,
    /// Hostile phones claiming root with the strongest adverts, then feeding their children
    /// nothing (even-numbered) or a trickle (odd-numbered), as `pfs lab --liar-peers`.
    #[arg(long, default_value_t = 0)]
    liar_peers: u32,
    #[arg(long, default_value_t = 0.0)]
    slow_fraction: f64,
    #[arg(long, default_value_t = 2.0)]
    slow_mbit: f64,
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..=64))]
    fanout: u8,
    #[arg(long, default_value_t = 65536, value_parser = clap::value_parser!(u32).range(1024..=1_048_576))]
    chunk_size: u32,
    /// Fraction of phones cut off (with the site router) by a partition.
    #[arg(long, default_value_t = 0.0)]
    partition_fraction: f64,
    /// When the partition starts (simulated seconds).
    #[arg(long, default_value_t = 2.0)]
    partition_at_s: f64,
    /// How long it lasts (simulated seconds).
    #[arg(long, default_value_t = 5.0)]
    partition_for_s: f64,
    /// Stop the virtual clock here even if phones are unfinished.
    #[arg(long, default_value_t = 36_000.0)]
    max_sim_s: f64,
    /// The root of every hierarchy crashes when it holds this fraction of its file (0: never).
    #[arg(long, default_value_t = 0.0)]
    kill_root_at: f64,
    /// K: fallback leases each root grants at once.
    #[arg(long, default_value_t = pfs::phone::Config::default().fallback_slots)]
    fallback_slots: u32,
    /// The origin's own limit on concurrent transfers, answered with "busy" (0: none, as
    /// tftpd-hpa).
    #[arg(long, default_value_t = pfs::sim::SimConfig::default().origin_max_sessions)]
    origin_max_sessions: u32,
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug, Clone)]
struct IfaceArgs {
    /// Interface the program is attached to.
    #[arg(long)]
    iface: String,
    /// Named network namespace (`ip netns`) holding the interface.
    #[arg(long)]
    netns: Option<String>,
}

impl IfaceArgs {
    fn target(&self) -> Target {
        Target {
            iface: self.iface.clone(),
            netns: self.netns.clone(),
        }
    }
}

#[derive(Subcommand, Debug)]
enum XdpCommand {
    /// Attach the program and pin it (and its counters) under /sys/fs/bpf/pfs/.
    Attach {
        #[command(flatten)]
        iface: IfaceArgs,
        /// Attach mode.
        #[arg(long, value_enum, default_value_t = AttachMode::Auto)]
        mode: AttachMode,
        /// Models this host runs (repeatable); adverts for other models are dropped in XDP.
        #[arg(long = "model")]
        models: Vec<String>,
    },
    /// Print the counters, summed over CPUs.
    Stats {
        #[command(flatten)]
        iface: IfaceArgs,
        /// One JSON object instead of a table (with --watch: one per sample).
        #[arg(long)]
        json: bool,
        /// Print again every SECONDS (default 1) with per-second rates, until Ctrl-C.
        #[arg(long, num_args = 0..=1, default_missing_value = "1")]
        watch: Option<f64>,
        /// With --watch: stop after this many samples.
        #[arg(long)]
        count: Option<u64>,
    },
    /// Remove the pins, which detaches the program.
    Detach {
        #[command(flatten)]
        iface: IfaceArgs,
    },
    /// Build two namespaces and a veth, attach, send a known number of broadcasts, compare.
    Demo {
        /// Broadcasts to UDP 4051.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
        broadcasts: u32,
        /// Datagrams to another port (4052).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
        others: u32,
        #[arg(long)]
        json: bool,
    },
}

fn init_tracing(cli: &Cli) {
    let lab = matches!(cli.command, Command::Lab(_) | Command::Fleet(_));
    let default = if cli.quiet {
        "error"
    } else {
        match cli.verbose {
            // A lab's hundreds of phones would bury the progress display in per-phone
            // warnings (TFTP retries of the traditional run); -v shows them.
            0 if lab => "warn,pfs::peer=error",
            0 => "warn",
            1 => "info",
            2 => "debug",
            _ => "trace",
        }
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    // Colours only on a terminal: logs redirected to a file or a pipe stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(LogLine::default);
    match cli.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(&cli);
    match run(cli.command) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("pfs: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Xdp(cmd) => run_xdp(cmd),
        Command::Simulate(args) => run_simulate(args),
        Command::Origin(args) => run_origin(args),
        Command::Fetch(args) => run_fetch(args),
        Command::Manifest(args) => run_manifest(args),
        Command::Peer(a) => {
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
        Command::Lab(a) => run_lab(a),
        Command::Fleet(a) => run_fleet(a),
        Command::Report(ReportCommand::Merge { files }) => report_merge(&files),
        Command::GenerateAssets { dir } => generate_assets(&dir),
        Command::Serve(a) => run_peer(
            a.run,
            pfs::peer::Source::Serve(a.load.clone()),
            a.load,
            a.fanout,
            Default::default(),
            None,
            None,
        ),
        Command::FetchLoad(a) => {
            let key = a
                .public_key
                .as_deref()
                .map(pfs::manifest::read_verifying_key)
                .transpose()?;
            let cfg = pfs::tftp::client::ClientConfig {
                blksize: a.blksize,
                windowsize: a.windowsize,
                ..Default::default()
            };
            let store = pfs::store::Store::new(&a.store);
            let r = pfs::fetch::fetch_named_load_url(
                &a.url,
                a.load.as_deref(),
                &store,
                key.as_ref(),
                cfg,
            )?;
            println!(
                "{}: {} files, {} bytes verified and active in {:.2} s",
                r.load, r.files, r.bytes, r.seconds
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Load(LoadCommand::Synth {
            out,
            seed,
            sign_key,
        }) => {
            let key = sign_key
                .as_deref()
                .map(pfs::manifest::read_signing_key)
                .transpose()?;
            let m = pfs::manifest::synth_load(&out, seed, key.as_ref())?;
            println!(
                "{}: {} files, {} bytes, manifest {}",
                m.load,
                m.files.len(),
                m.load_bytes(),
                out.join(pfs::manifest::MANIFEST_FILE).display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Load(LoadCommand::Inspect { file, json }) => run_load_inspect(&file, json),
        Command::Config(ConfigCommand::Render { config, out }) => {
            let text = std::fs::read_to_string(&config)
                .map_err(|e| anyhow::anyhow!("{}: {e}", config.display()))?;
            let site = pfs::phoneconfig::SiteConfig::parse(&text)?;
            std::fs::create_dir_all(&out)?;
            for (name, xml) in site.render_all() {
                std::fs::write(out.join(&name), xml)?;
                println!("{}", out.join(name).display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Config(ConfigCommand::Show { file, model, json }) => {
            run_config_show(&file, model.as_deref(), json)
        }
        Command::Key(KeyCommand::Generate { out }) => {
            use std::os::unix::fs::OpenOptionsExt;
            let (sk, vk) = pfs::manifest::generate_key()?;
            let secret = out.with_extension("key");
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&secret)?;
            std::io::Write::write_all(
                &mut f,
                format!("{}\n", hex::encode(sk.to_bytes())).as_bytes(),
            )?;
            let public = out.with_extension("pub");
            std::fs::write(&public, format!("{}\n", hex::encode(vk.to_bytes())))?;
            println!("wrote {} and {}", secret.display(), public.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The progress bars on screen, if any: log lines are written above them, each on its own line,
/// instead of into the middle of a bar.
static BARS: std::sync::Mutex<Option<indicatif::MultiProgress>> = std::sync::Mutex::new(None);

/// One log event's text, written to stderr whole when the event is done.
#[derive(Default)]
struct LogLine(Vec<u8>);

impl std::io::Write for LogLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogLine {
    fn drop(&mut self) {
        use std::io::Write as _;
        let line = std::mem::take(&mut self.0);
        let put = || {
            let _ = std::io::stderr().lock().write_all(&line);
        };
        match BARS.lock().ok().as_deref().and_then(Option::as_ref) {
            Some(bars) => bars.suspend(put),
            None => put(),
        }
    }
}

/// Live bars, one per (model, file), and the installed count with roles; drawn by a thread.
struct ProgressBars {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    drawer: std::thread::JoinHandle<()>,
}

impl ProgressBars {
    fn start(p: std::sync::Arc<pfs::fleet::Progress>, phones: u64, label: String) -> Self {
        use std::sync::atomic::Ordering;
        let multi = indicatif::MultiProgress::new();
        let style = indicatif::ProgressStyle::with_template(
            "{prefix:>40} [{bar:30}] {bytes:>10}/{total_bytes:<10} {bytes_per_sec}",
        )
        .expect("template")
        .progress_chars("=> ");
        let files: Vec<indicatif::ProgressBar> = p
            .files
            .iter()
            .map(|(m, f, total, _)| {
                let b = multi.add(indicatif::ProgressBar::new(*total));
                b.set_style(style.clone());
                b.set_prefix(format!("{m} {f}"));
                b
            })
            .collect();
        let all = multi.add(indicatif::ProgressBar::new(phones));
        all.set_style(
            indicatif::ProgressStyle::with_template(
                "{prefix:>40} [{bar:30}] {pos}/{len} phones  {msg}",
            )
            .expect("template")
            .progress_chars("=> "),
        );
        all.set_prefix(label);
        if let Ok(mut b) = BARS.lock() {
            *b = Some(multi.clone());
        }
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let halt = stop.clone();
        let drawer = std::thread::spawn(move || {
            loop {
                for (b, f) in files.iter().zip(&p.files) {
                    b.set_position(f.3.load(Ordering::Relaxed));
                }
                all.set_position(p.installed.load(Ordering::Relaxed));
                all.set_message(format!(
                    "roots {} parents {} children {} fallbacks {}",
                    p.roots.load(Ordering::Relaxed),
                    p.parents.load(Ordering::Relaxed),
                    p.children.load(Ordering::Relaxed),
                    p.fallbacks.load(Ordering::Relaxed)
                ));
                if halt.load(Ordering::Relaxed) {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            for b in &files {
                b.finish();
            }
            all.finish();
            drop(multi);
        });
        ProgressBars { stop, drawer }
    }

    fn finish(self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = self.drawer.join();
        if let Ok(mut b) = BARS.lock() {
            *b = None;
        }
    }
}

fn run_fleet(a: FleetArgs) -> anyhow::Result<ExitCode> {
    use pfs::fleet::{FleetConfig, fleet_progress, prepare_fleet, run_fleet};
    pfs::peer::install_signal_handlers();
    start_metrics(a.metrics)?;
    let (store, scratch) = match &a.store {
        Some(s) => (s.clone(), false),
        None => {
            let base = if std::path::Path::new("/dev/shm").is_dir() {
                std::path::PathBuf::from("/dev/shm")
            } else {
                std::env::temp_dir()
            };
            (base.join(format!("pfs-fleet-{}", std::process::id())), true)
        }
    };
    let cfg = FleetConfig {
        phones: a.phones,
        origin: a.origin.clone(),
        iface: a.iface.clone(),
        netns: a.netns.clone(),
        model: a.model.clone(),
        store: store.clone(),
        port_base: a.port_base,
        backend: a.backend,
        deadline: std::time::Duration::from_secs_f64(a.deadline_s.max(1.0)),
        tftp: pfs::tftp::client::ClientConfig {
            blksize: a.blksize,
            windowsize: a.windowsize,
            ..Default::default()
        },
        seed: a.seed,
        sharing: a.peer_sharing.then(|| pfs::fleet::Sharing {
            mode: a.mode,
            fanout: a.fanout,
            linger: std::time::Duration::from_secs_f64(a.linger_s.max(0.0)),
        }),
    };
    let show = !a.json;
    let result = (|| {
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
        // Sharing phones' namespaces live until the run is over (dropped at the closure's end).
        let nets = match (a.peer_sharing, a.addresses) {
            (true, Some(pool)) => Some(
                pfs::fleetnet::build(&a.iface, a.netns.as_deref(), pool, a.phones, a.link)
                    .map_err(|e| pfs::fleet::FleetError::Setup(format!("--peer-sharing: {e}")))?,
            ),
            _ => None,
        };
        let (ready, prepare_s) = match &nets {
            Some(n) => pfs::fleet::prepare_sharing(&cfg, n)?,
            None => prepare_fleet(&cfg)?,
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
        let r = run_fleet(&cfg, ready, prepare_s, Some(progress));
        if let Some(b) = bars {
            b.finish();
        }
        r
    })();
    if scratch {
        let _ = std::fs::remove_dir_all(&store);
    }
    let r = result?;
    if a.json {
        println!("{}", pfs::report::schema::to_json_line("fleet", &r)?);
    } else {
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
    Ok(if r.completed == r.phones && r.corrupt_installs == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// A man page per subcommand (`pfs.1`, `pfs-origin.1`, `pfs-xdp-attach.1`, ...) and bash,
/// zsh and fish completions, from the CLI's own definition.
fn generate_assets(dir: &std::path::Path) -> anyhow::Result<ExitCode> {
    use clap::CommandFactory;
    let (man, completions) = (dir.join("man"), dir.join("completions"));
    std::fs::create_dir_all(&man)?;
    std::fs::create_dir_all(&completions)?;
    clap_mangen::generate_to(Cli::command(), &man)?;
    for shell in [
        clap_complete::Shell::Bash,
        clap_complete::Shell::Zsh,
        clap_complete::Shell::Fish,
    ] {
        clap_complete::generate_to(shell, &mut Cli::command(), "pfs", &completions)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn report_merge(files: &[std::path::PathBuf]) -> anyhow::Result<ExitCode> {
    let mut reports = Vec::new();
    for f in files {
        let text =
            std::fs::read_to_string(f).map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?;
        let mut found = false;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let v: serde_json::Value = serde_json::from_str(line)
                .map_err(|e| anyhow::anyhow!("{}: not JSON lines: {e}", f.display()))?;
            if v["kind"] == "fleet" {
                reports.push(
                    serde_json::from_value::<pfs::fleet::FleetReport>(v)
                        .map_err(|e| anyhow::anyhow!("{}: not a fleet report: {e}", f.display()))?,
                );
                found = true;
            }
        }
        if !found {
            anyhow::bail!("{}: no fleet report (pfs fleet --json) in it", f.display());
        }
    }
    let m = pfs::fleet::merge(&reports).expect("at least one report");
    println!("{}", pfs::report::schema::to_json_line("fleet", &m)?);
    let split: Vec<&String> = m
        .roots
        .iter()
        .filter(|(_, r)| r.len() > 1)
        .map(|(h, _)| h)
        .collect();
    if !split.is_empty() {
        eprintln!("pfs: more than one root at the end for: {split:?}");
    }
    Ok(
        if m.completed == m.phones && m.corrupt_installs == 0 && split.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        },
    )
}

fn run_lab(a: LabArgs) -> anyhow::Result<ExitCode> {
    use pfs::lab::{Lab, LabConfig};
    pfs::peer::install_signal_handlers();
    let cfg = LabConfig {
        phones: a.phones,
        models: a.models,
        wan_mbit: a.wan_mbit,
        wan_burst_kib: a.wan_burst_kib,
        lan_mbit: (a.lan_mbit > 0.0).then_some(a.lan_mbit),
        fanout: a.fanout,
        origin: a.origin,
        origin_proto: a.origin_proto,
        backend: a.backend,
        xdp: a.xdp,
        seed: a.seed,
        deadline: std::time::Duration::from_secs_f64(a.deadline_s.max(1.0)),
        progress: !a.json,
        pcap: a.pcap.clone(),
        pcap_snaplen: a.pcap_snaplen,
        faults: pfs::faults::FaultPlan {
            seed: a.seed,
            crash_fraction: a.crash_fraction,
            crash_at_s: a.crash_at_s,
            freeze_fraction: a.freeze_fraction,
            cut_fraction: a.cut_fraction,
            cut_for_s: a.cut_for_s,
            slow_fraction: a.slow_fraction,
            slow_mbit: a.slow_mbit,
            corrupt_peers: a.corrupt_peers,
            liar_peers: a.liar_peers,
            kill_root_at: a.kill_root_at,
            cut_root_at: a.cut_root_at,
            cut_first_root_after_s: a.cut_first_root_after_s,
            loss: a.loss,
        },
        wan_rtt_ms: a.wan_rtt_ms,
    };
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
        let r = pfs::peers::run(&lab, *p)?;
        if a.json {
            println!("{}", pfs::report::schema::to_json_line("lab", &r)?);
        } else {
            print_lab_run(&r);
        }
        runs.push(r);
    }
    if show && runs.len() > 1 {
        print_lab_compare(&runs);
    }
    if let Some(dir) = &a.report {
        pfs::report::write_lab_report(dir, &runs, &info, a.tree_of.as_deref())?;
        if let (Some(want), Some(r)) = (&a.tree_of, pfs::report::plot::tree_run(&runs))
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
    }
    let ok = !runs.is_empty()
        && runs
            .iter()
            .all(|r| r.stuck == 0 && r.corrupt_installs == 0 && r.violations.is_empty());
    for r in &runs {
        for v in &r.violations {
            eprintln!("pfs: {} run: {v}", r.mode);
        }
    }
    if show {
        eprintln!("tearing down the site ...");
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// XDP on every phone's port for the lab's lifetime.
struct LabXdp(Vec<Target>);

impl LabXdp {
    fn attach(lab: &pfs::lab::Lab) -> LabXdp {
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

fn print_lab_run(r: &pfs::lab::LabReport) {
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
            "  faults: crashed {}, frozen {}, cut {}, slow {}, corrupt peers {}; stuck {}; normal phones' makespan {:.2} s ({:.2} x limit); recovery p50 {:.2} s max {:.2} s over {} orphans; origin peak sessions {:?} (bound {})",
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
            r.origin_peak_sessions,
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

fn print_lab_compare(runs: &[pfs::lab::LabReport]) {
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

/// `--metrics ADDR`: serve /metrics for the rest of the process.
fn start_metrics(addr: Option<std::net::SocketAddr>) -> anyhow::Result<()> {
    if let Some(addr) = addr {
        let bound = pfs::metrics::serve(addr)
            .map_err(|e| anyhow::anyhow!("--metrics {addr}: cannot listen: {e}"))?;
        eprintln!("pfs: metrics on http://{bound}/metrics");
    }
    Ok(())
}

/// XDP counters summed over `targets`, for /metrics.
fn xdp_metrics(targets: Vec<Target>) {
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

fn run_peer(
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
    Ok(if report.installed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn run_xdp(cmd: XdpCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        XdpCommand::Attach {
            iface,
            mode,
            models,
        } => {
            // The attachment must outlive this command: refuse rather than print "attached"
            // for pins that vanish with the process (`ip netns exec`).
            xdp::pins_persist()?;
            let done = xdp::attach(&iface.target(), mode, &models)?;
            println!(
                "attached to {} in {} mode; pins in {}",
                done.iface, done.mode, done.pin_dir
            );
        }
        XdpCommand::Stats {
            iface,
            json,
            watch: None,
            ..
        } => {
            let stats = xdp::stats(&iface.target())?;
            if json {
                println!("{}", serde_json::to_string(&stats)?);
            } else {
                println!("{:<12} {:>14}", "counter", "packets");
                for (name, value) in &stats.counters {
                    println!("{name:<12} {value:>14}");
                }
            }
        }
        XdpCommand::Stats {
            iface,
            json,
            watch: Some(every),
            count,
        } => {
            pfs::peer::install_signal_handlers();
            let every = std::time::Duration::from_secs_f64(every.max(0.05));
            let mut last = xdp::stats(&iface.target())?;
            let mut at = std::time::Instant::now();
            let mut n = 0u64;
            while !pfs::peer::stop_requested() && count.is_none_or(|c| n < c) {
                std::thread::sleep(every);
                let now = xdp::stats(&iface.target())?;
                let secs = at.elapsed().as_secs_f64();
                at = std::time::Instant::now();
                n += 1;
                let rates: std::collections::BTreeMap<&str, f64> = now
                    .counters
                    .iter()
                    .map(|(k, v)| {
                        (
                            *k,
                            (v - last.counters.get(k).copied().unwrap_or(0)) as f64 / secs,
                        )
                    })
                    .collect();
                if json {
                    println!(
                        "{}",
                        serde_json::json!({"iface": now.iface, "counters": now.counters, "per_second": rates})
                    );
                } else {
                    println!("{:<16} {:>14} {:>12}", "counter", "packets", "per second");
                    for (name, value) in &now.counters {
                        println!("{name:<16} {value:>14} {:>12.0}", rates[name]);
                    }
                    println!();
                }
                last = now;
            }
        }
        XdpCommand::Detach { iface } => {
            xdp::detach(&iface.target())?;
            println!("detached from {}", iface.iface);
        }
        XdpCommand::Demo {
            broadcasts,
            others,
            json,
        } => {
            let report = pfs::demo::run(broadcasts, others)?;
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                println!(
                    "XDP attached in {} mode on a veth between two namespaces",
                    report.mode
                );
                println!(
                    "udp 4051: sent {:>8}  counted {:>8}",
                    report.sent_4051, report.counted_4051
                );
                println!(
                    "other:    sent {:>8}  counted {:>8}",
                    report.sent_other, report.counted_other
                );
                println!(
                    "{}",
                    if report.exact {
                        "counts exact"
                    } else {
                        "COUNTS DIFFER"
                    }
                );
            }
            if !report.exact {
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn run_simulate(a: SimulateArgs) -> anyhow::Result<ExitCode> {
    for (name, p) in [
        ("loss", a.loss),
        ("crash-fraction", a.crash_fraction),
        ("slow-fraction", a.slow_fraction),
    ] {
        anyhow::ensure!((0.0..=1.0).contains(&p), "--{name} must be within 0..=1");
    }
    for (name, r) in [
        ("wan-mbit", a.wan_mbit),
        ("lan-mbit", a.lan_mbit),
        ("slow-mbit", a.slow_mbit),
    ] {
        anyhow::ensure!(r > 0.0 && r.is_finite(), "--{name} must be positive");
    }
    anyhow::ensure!(
        a.wan_rtt_ms >= 0.0 && a.max_sim_s > 0.0,
        "times must be positive"
    );
    let cfg = SimConfig {
        phones: a.phones,
        seed: a.seed,
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
        max_sim_s: a.max_sim_s,
        partition_fraction: a.partition_fraction,
        partition_at_s: a.partition_at_s,
        partition_for_s: a.partition_for_s,
        kill_root_at: a.kill_root_at,
        fallback_slots: a.fallback_slots,
        origin_max_sessions: a.origin_max_sessions,
        ..SimConfig::default()
    };
    let wall = std::time::Instant::now();
    let mut r = sim::run(&cfg);
    r.wall_s = wall.elapsed().as_secs_f64();
    if a.json {
        println!("{}", pfs::report::schema::to_json_line("simulate", &r)?);
    } else {
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
        println!(
            "WAN bytes {} = {:.3} x load",
            r.wan_bytes,
            r.wan_bytes as f64 / r.load_bytes as f64
        );
        println!(
            "election converged {:.3} s with {} broadcasts; roots max {}, children max {}, depth max {}",
            r.election_converged_s, r.election_broadcasts, r.roots_max, r.max_children, r.max_depth
        );
        println!("{} events in {:.2} s wall", r.events, r.wall_s);
    }
    let healthy =
        r.completed + r.crashed + r.frozen + r.cut + r.liars == r.phones && r.corrupt_installs == 0;
    Ok(if healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn run_origin(a: OriginArgs) -> anyhow::Result<ExitCode> {
    start_metrics(a.metrics)?;
    let handle = pfs::origin::spawn(pfs::origin::OriginConfig {
        root: a.root.clone(),
        listen: a.listen,
        max_sessions: a.max_sessions as usize,
        session: pfs::tftp::server::ServerConfig {
            max_window: a.max_window,
            ..Default::default()
        },
    })?;
    pfs::metrics::set_origin(handle.stats.clone());
    eprintln!("serving {} read-only on {}", a.root.display(), handle.addr);
    let _http = match a.http {
        Some(listen) => {
            let h = pfs::http::spawn(pfs::http::HttpConfig {
                root: a.root.clone(),
                listen,
                max_connections: a.http_max_connections as usize,
            })?;
            pfs::metrics::set_origin_http(h.stats.clone());
            eprintln!(
                "serving {} read-only on http://{}/",
                a.root.display(),
                h.addr
            );
            Some(h)
        }
        None => None,
    };
    loop {
        std::thread::park();
    }
}

fn run_fetch(a: FetchArgs) -> anyhow::Result<ExitCode> {
    if a.url.starts_with("http://") {
        let url = pfs::http::HttpUrl::parse(&a.url)?;
        let timeout = std::time::Duration::from_millis(a.timeout_ms.max(1000) * 10);
        let report = pfs::fetch::fetch_http(&url, &a.output, a.resume, timeout)
            .map_err(|e| anyhow::anyhow!("{url}: {e}"))?;
        eprintln!(
            "{} bytes in {:.3} s ({:.1} Mbit/s){}",
            report.bytes,
            report.seconds,
            report.bytes as f64 * 8.0 / report.seconds.max(1e-9) / 1e6,
            if report.resumed_from > 0 {
                format!(", resumed from byte {}", report.resumed_from)
            } else {
                String::new()
            }
        );
        return Ok(ExitCode::SUCCESS);
    }
    anyhow::ensure!(!a.resume, "--resume is for http:// URLs");
    let (server, path) = pfs::fetch::parse_url(&a.url)?;
    let cfg = pfs::tftp::client::ClientConfig {
        blksize: a.blksize,
        windowsize: a.windowsize,
        timeout: a.timeout_ms * 1000,
        max_retries: a.retries,
        adaptive: !a.fixed_window,
    };
    let report = pfs::fetch::fetch(server, &path, &a.output, cfg)?;
    eprintln!(
        "{} bytes in {:.3} s ({:.1} Mbit/s)",
        report.bytes,
        report.seconds,
        report.bytes as f64 * 8.0 / report.seconds.max(1e-9) / 1e6
    );
    Ok(ExitCode::SUCCESS)
}

/// Reads the manifest at `path` (signature checked with `public_key`) and verifies `dir`.
fn verify_manifest(
    path: &std::path::Path,
    dir: &std::path::Path,
    public_key: Option<&std::path::Path>,
) -> anyhow::Result<pfs::manifest::Manifest> {
    let key = public_key
        .map(pfs::manifest::read_verifying_key)
        .transpose()?;
    let bytes = std::fs::read(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let m = pfs::manifest::Manifest::parse(&bytes, key.as_ref())?;
    m.verify_dir(dir)?;
    Ok(m)
}

/// `pfs load inspect`: header kind and fields, digest check, components.
fn run_load_inspect(file: &std::path::Path, json: bool) -> anyhow::Result<ExitCode> {
    use pfs::loads::{SignedHeader, parse_body, parse_signed_header};
    let bytes = std::fs::read(file).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let is_loads = file
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("loads"));
    if is_loads && bytes.len() > pfs::loads::MAX_LOADS_BYTES {
        anyhow::bail!("{}: {}", file.display(), pfs::loads::LoadsError::TooLarge);
    }
    let header =
        parse_signed_header(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let digest_ok = match &header {
        Some(SignedHeader::Gen5(g)) => Some(g.sha256_ok),
        _ => None,
    };
    let start = header.as_ref().map_or(0, SignedHeader::header_len);
    let body = if is_loads {
        Some(parse_body(&bytes[start..]).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?)
    } else {
        None
    };
    if json {
        let mut v = serde_json::json!({
            "file": file.display().to_string(),
            "size": bytes.len(),
            "header": header,
            // SHA-256 of the payload (5th-generation header); null when the header has no
            // digest pfs can check (TLV: RSA over SHA-1 with Cisco's key).
            "digest_ok": digest_ok,
        });
        if let Some((layout, version, components)) = &body {
            v["layout"] = serde_json::json!(layout);
            v["version"] = serde_json::json!(version);
            v["components"] = serde_json::json!(components);
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("{}: {} bytes", file.display(), bytes.len());
        match &header {
            None => println!("header: none (no signed header)"),
            Some(SignedHeader::Tlv(h)) => {
                println!(
                    "header: TLV signed header, version {}.{}, header length {} bytes",
                    h.version[0], h.version[1], h.header_len
                );
                let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
                println!("  name:      {}", opt(&h.file_name));
                println!("  signer:    {}", opt(&h.signer));
                println!("  serial:    {}", opt(&h.serial));
                println!("  CA:        {}", opt(&h.ca));
                let digest = match h.digest_algorithm {
                    Some(1) => "SHA-1".to_string(),
                    Some(n) => format!("algorithm {n}"),
                    None => "-".into(),
                };
                let sig = if h.test_placeholder {
                    "TEST PLACEHOLDER (synthetic file, not a signature)".to_string()
                } else {
                    format!(
                        "{} bytes, RSA with Cisco's key (not checked by pfs)",
                        h.signature_len
                    )
                };
                println!("  digest:    {digest}");
                println!("  signature: {sig}");
            }
            Some(SignedHeader::Gen5(g)) => {
                println!(
                    "header: 5th-generation signed header (CD 34 12 AB), header length {} bytes, payload {} bytes",
                    g.header_len, g.payload_len
                );
                println!("  name:      {}", g.file_name);
                println!("  flags:     {}", g.flags);
                println!(
                    "  digest:    SHA-256 {} ({})",
                    g.sha256,
                    if g.sha256_ok {
                        "matches the payload"
                    } else {
                        "DOES NOT MATCH the payload"
                    }
                );
            }
        }
        if let Some((layout, version, components)) = &body {
            println!(
                "body: {layout}{}",
                version
                    .as_ref()
                    .map(|v| format!(", version {v}"))
                    .unwrap_or_default()
            );
            println!("components: {}", components.len());
            for c in components {
                let mut line = format!("  {}", c.name);
                if let Some(n) = c.size {
                    line.push_str(&format!("  size {n}"));
                }
                if let Some(m) = &c.md5 {
                    line.push_str(&format!("  md5 {m}"));
                }
                if let Some(p) = c.platform {
                    line.push_str(&format!("  platform {p}"));
                }
                println!("{line}");
            }
        }
    }
    if digest_ok == Some(false) {
        eprintln!(
            "{}: the payload's SHA-256 does not match its header",
            file.display()
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// `pfs config show`: what a phone (of `model`, if given) reads from a cnf.xml.
fn run_config_show(
    file: &std::path::Path,
    model: Option<&str>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    use pfs::phoneconfig::{ConfigError, Root, device_type, model_name, read_cnf_xml};
    let bytes = std::fs::read(file).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let dt = model
        .map(|m| device_type(m).ok_or_else(|| ConfigError::UnknownModel(m.to_owned())))
        .transpose()?;
    let cnf = read_cnf_xml(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let c = cnf
        .for_device(dt)
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    if json {
        let mut v = serde_json::to_value(&c)?;
        v["root"] = serde_json::to_value(cnf.root)?;
        v["loads"] = serde_json::to_value(&cnf.loads)?;
        v["addon_loads"] = serde_json::to_value(&cnf.addon_loads)?;
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let root = match cnf.root {
        Root::Device => "<device> (one phone)",
        Root::Default => "<Default> (XMLDefault: per device type)",
    };
    println!("root: {root}");
    match &c.load_information {
        Some(l) => println!("load: {l}"),
        None if cnf.root == Root::Default && dt.is_none() && !cnf.loads.is_empty() => {
            println!("load: - (loads are listed per device type: choose one with --model)")
        }
        None => println!("load: -"),
    }
    println!(
        "peer_firmware_sharing: {}",
        if c.peer_firmware_sharing { "on" } else { "off" }
    );
    println!("load_server: {}", opt(&c.load_server));
    println!("log_server: {}", opt(&c.log_server));
    println!("ipv6_load_server: {}", opt(&c.ipv6_load_server));
    println!("ipv6_log_server: {}", opt(&c.ipv6_log_server));
    match c.device_type {
        Some(n) => println!(
            "device_type: {n} ({})",
            model_name(n).unwrap_or("model not in pfs's table")
        ),
        None => println!("device_type: -"),
    }
    if !cnf.addon_loads.is_empty() {
        println!(
            "add-on module loads (not the phone's): {}",
            cnf.addon_loads.join(", ")
        );
    }
    if cnf.root == Root::Default && dt.is_none() && !cnf.loads.is_empty() {
        println!("loads by device type:");
        for e in &cnf.loads {
            let n = e
                .device_type
                .map(|n| n.to_string())
                .unwrap_or_else(|| "any".into());
            // The number decides (the file's model text is sometimes wrong): show both
            // when they differ, as the JSON keeps the file's text under `model`.
            let table = e.device_type.and_then(model_name);
            let model = match (table, e.model.as_deref()) {
                (Some(t), Some(f)) if t != f => format!("{t} (the file says \"{f}\")"),
                (Some(t), _) => t.to_owned(),
                (None, Some(f)) => f.to_owned(),
                (None, None) => "-".to_owned(),
            };
            let load = if e.load.is_empty() { "-" } else { &e.load };
            println!("  {n:>6}  {model}: {load}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn run_manifest(a: ManifestArgs) -> anyhow::Result<ExitCode> {
    use pfs::manifest::{MANIFEST_FILE, manifest_file_for};
    let sign_key = a
        .sign_key
        .as_deref()
        .map(pfs::manifest::read_signing_key)
        .transpose()?;
    if a.all {
        let loads = pfs::manifest::loads_in_dir(&a.dir)?;
        if loads.is_empty() {
            anyhow::bail!("{}: no .loads file", a.dir.display());
        }
        let mut failed = 0;
        for lp in loads {
            let name = lp
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let path = a.dir.join(manifest_file_for(&name));
            if a.verify {
                match verify_manifest(&path, &a.dir, a.public_key.as_deref()) {
                    Ok(m) => println!("{}: {} files verified", m.load, m.files.len()),
                    Err(e) => {
                        eprintln!("{name}: {e}");
                        failed += 1;
                    }
                }
                continue;
            }
            if let Err(e) =
                write_manifest(&a.dir, a.chunk_size, Some(&name), sign_key.as_ref(), &path)
            {
                eprintln!("{name}: {e}");
                failed += 1;
            }
        }
        return Ok(if failed == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    let path = a.dir.join(MANIFEST_FILE);
    if a.verify {
        let path = match a.load.as_deref() {
            Some(l) if a.dir.join(manifest_file_for(l)).exists() => {
                a.dir.join(manifest_file_for(l))
            }
            _ => path,
        };
        let m = verify_manifest(&path, &a.dir, a.public_key.as_deref())?;
        if let Some(l) = a.load.as_deref()
            && !m.load.eq_ignore_ascii_case(l)
        {
            anyhow::bail!(
                "{}: manifest is for load {}, not {l}",
                path.display(),
                m.load
            );
        }
        println!(
            "{}: {} files verified ({} bytes)",
            m.load,
            m.files.len(),
            m.load_bytes()
        );
        return Ok(ExitCode::SUCCESS);
    }
    write_manifest(
        &a.dir,
        a.chunk_size,
        a.load.as_deref(),
        sign_key.as_ref(),
        &path,
    )?;
    Ok(ExitCode::SUCCESS)
}

/// Builds the manifest of `load` in `dir`, signs it when a key is given, writes it to `path`
/// and says so.
fn write_manifest(
    dir: &std::path::Path,
    chunk_size: u32,
    load: Option<&str>,
    sign_key: Option<&ed25519_dalek::SigningKey>,
    path: &std::path::Path,
) -> anyhow::Result<()> {
    let mut m = pfs::manifest::manifest_for_dir(dir, chunk_size, load)?;
    if let Some(k) = sign_key {
        m.sign(k);
    }
    std::fs::write(path, serde_json::to_vec_pretty(&m)?)?;
    println!(
        "{}: {} files, {} bytes -> {}",
        m.load,
        m.files.len(),
        m.load_bytes(),
        path.display()
    );
    Ok(())
}

/// `--mode`: the core's [`Mode`] names, listed in `--help` and completions.
fn mode_parser() -> impl clap::builder::TypedValueParser<Value = Mode> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(Mode::ALL.map(Mode::name)).map(|s| {
        s.parse::<Mode>()
            .expect("PossibleValuesParser admitted only Mode names")
    })
}
