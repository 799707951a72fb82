//! `pfs`: the command-line front end. Parsing and printing only; the work lives in the library.

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use pfs::xdp::{self, AttachMode, Target};
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
    },
    /// Print the counters, summed over CPUs.
    Stats {
        #[command(flatten)]
        iface: IfaceArgs,
        /// One JSON object instead of a table.
        #[arg(long)]
        json: bool,
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
    let default = if cli.quiet {
        "error"
    } else {
        match cli.verbose {
            0 => "warn",
            1 => "info",
            2 => "debug",
            _ => "trace",
        }
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr);
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
    }
}

fn run_xdp(cmd: XdpCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        XdpCommand::Attach { iface, mode } => {
            let done = xdp::attach(&iface.target(), mode)?;
            println!(
                "attached to {} in {} mode; pins in {}",
                done.iface, done.mode, done.pin_dir
            );
        }
        XdpCommand::Stats { iface, json } => {
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
