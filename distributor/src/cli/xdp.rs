//! `pfs xdp`: attach, count, detach the XDP program.

use super::*;
use pfs::xdp;

#[derive(Args, Debug, Clone)]
pub(super) struct IfaceArgs {
    /// Interface the program is attached to.
    #[arg(long)]
    iface: String,
    /// Named network namespace (`ip netns`) holding the interface.
    #[arg(long)]
    netns: Option<String>,
}

impl IfaceArgs {
    pub(super) fn target(&self) -> Target {
        Target {
            iface: self.iface.clone(),
            netns: self.netns.clone(),
        }
    }
}

#[derive(Subcommand, Debug)]
pub(super) enum XdpCommand {
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

pub(super) fn run_xdp(cmd: XdpCommand) -> anyhow::Result<ExitCode> {
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
        } => watch_stats(&iface, json, every, count)?,
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

/// `pfs xdp stats --watch S [--count N]`: the counters and their rates every S seconds.
fn watch_stats(
    iface: &IfaceArgs,
    json: bool,
    every: f64,
    count: Option<u64>,
) -> anyhow::Result<()> {
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
    Ok(())
}
