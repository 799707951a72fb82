//! The `pfs` command line: parsing, dispatch and output; one module per subcommand. The work
//! lives in the library; defaults come from the library's configs.

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use pfs::{
    phone::Mode,
    sim::{self, SimConfig},
    xdp::{AttachMode, Target},
};
use tracing_subscriber::{EnvFilter, fmt};

mod fleet;
mod lab;
mod load;
mod origin;
mod peer;
mod progress;
mod simulate;
mod xdp;
use self::{fleet::*, lab::*, load::*, origin::*, peer::*, progress::*, simulate::*, xdp::*};

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

pub(super) fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.command.prints_only() {
        // Rust ignores SIGPIPE, so `pfs config show | head` would panic on the first write
        // after the reader left; a printing command ends quietly instead, as cat does. (Not
        // the commands with sockets: a peer that vanished must not kill the process.)
        // SAFETY: restoring the default disposition of one signal before any thread starts.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    init_tracing(&cli);
    match run(cli.command) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("pfs: {}", pfs::error_chain(err.as_ref()));
            ExitCode::FAILURE
        }
    }
}

impl Command {
    /// Commands that only read files and print: no socket whose peer may vanish.
    fn prints_only(&self) -> bool {
        matches!(
            self,
            Command::Simulate(_)
                | Command::Manifest(_)
                | Command::Report(_)
                | Command::Load(_)
                | Command::Config(_)
                | Command::Key(_)
        )
    }
}

fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Xdp(cmd) => run_xdp(cmd),
        Command::Simulate(args) => run_simulate(args),
        Command::Origin(args) => run_origin(args),
        Command::Fetch(args) => run_fetch(args),
        Command::Manifest(args) => run_manifest(args),
        Command::Peer(a) => run_peer_args(a),
        Command::Lab(a) => run_lab(a),
        Command::Fleet(a) => run_fleet(a),
        Command::Report(ReportCommand::Merge { files }) => report_merge(&files),
        Command::GenerateAssets { dir } => generate_assets(&dir),
        Command::Serve(a) => run_serve(a),
        Command::FetchLoad(a) => run_fetch_load(a),
        Command::Load(LoadCommand::Synth {
            out,
            seed,
            sign_key,
        }) => run_load_synth(&out, seed, sign_key.as_deref()),
        Command::Load(LoadCommand::Inspect { file, json }) => run_load_inspect(&file, json),
        Command::Config(ConfigCommand::Render { config, out }) => run_config_render(&config, &out),
        Command::Config(ConfigCommand::Show { file, model, json }) => {
            run_config_show(&file, model.as_deref(), json)
        }
        Command::Key(KeyCommand::Generate { out }) => run_key_generate(&out),
    }
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

/// `--metrics ADDR`: serve /metrics for the rest of the process.
fn start_metrics(addr: Option<std::net::SocketAddr>) -> anyhow::Result<()> {
    if let Some(addr) = addr {
        let bound = pfs::metrics::serve(addr)
            .map_err(|e| anyhow::anyhow!("--metrics {addr}: cannot listen: {e}"))?;
        eprintln!("pfs: metrics on http://{bound}/metrics");
    }
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
