//! `cargo xtask bench agree`: the simulator and the lab on the same scenario.

use super::*;

/// `agree`: the same scenario through the simulator and the lab, side by side. The lab runs
/// without WAN delay here, so the simulator runs with a zero WAN RTT; everything else (phones,
/// one model, WAN and port rates, pipelined, seed, the origin's admission, the TFTP window)
/// is the lab's, and so is the host: all phones on this machine's cores (see below).
pub fn agree(args: &[String]) {
    use pfs::lab::{Lab, LabConfig};
    use pfs::sim::{self, SimConfig};
    assert!(pfs::netns::can_create(), "the agree benchmark needs root");
    let value = |flag: &str| flag_value(args, flag);
    let quick = args.iter().any(|a| a == "--quick");
    let sizes: Vec<usize> = value("--phones")
        .map(|v| {
            v.split(',')
                .map(|n| n.parse().expect("--phones N[,N...]"))
                .collect()
        })
        .unwrap_or_else(|| {
            if quick {
                vec![60, 200]
            } else {
                vec![60, 200, 400, 1000]
            }
        });
    let wan: f64 = value("--wan-mbit").map_or(10.0, |v| v.parse().expect("--wan-mbit"));
    let seed: u64 = value("--seed").map_or(1, |v| v.parse().expect("--seed"));
    // The labs first, smallest first: the smallest one's CPU cost per delivered GB is the
    // host's, measured where the host is not yet the bottleneck; the simulator then runs
    // every size on a host of as many cores at that cost (`SimConfig::host_cores`), since
    // the lab's phones share this machine's CPU as real phones do not.
    let mut sizes = sizes;
    sizes.sort_unstable();
    let labs: Vec<pfs::lab::LabReport> = sizes
        .iter()
        .map(|&phones| {
            let lab = Lab::build(LabConfig {
                phones,
                models: vec!["CP-7961G".into()],
                wan_mbit: wan,
                seed,
                progress: false,
                ..LabConfig::default()
            })
            .expect("lab");
            lab.run(Mode::Pipelined, None).expect("lab run")
        })
        .collect();
    let host_cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
    let host_cpu_s_per_gb = labs[0].cpu_s_per_gb;
    eprintln!(
        "host: {host_cores} cores at {host_cpu_s_per_gb:.2} CPU s per delivered GB (the {}-phone lab's)",
        sizes[0]
    );
    let mut rows = Vec::new();
    for (&phones, l) in sizes.iter().zip(labs) {
        let s = sim::run(&SimConfig {
            phones: phones as u32,
            seed,
            mode: Mode::Pipelined,
            models: 1,
            wan_mbit: wan,
            wan_rtt_ms: 0.0,
            lan_mbit: 100.0,
            max_site_phones: phones as u64,
            host_cores,
            host_cpu_s_per_gb,
            ..SimConfig::default()
        });
        let (sr, lr) = (s.makespan_s / s.limit_s, l.makespan_s / l.limit_s);
        let v = serde_json::json!({
            "case": format!("agree-{phones}"),
            "phones": phones,
            "wan_mbit": wan,
            "host_cores": host_cores,
            "host_cpu_s_per_gb": host_cpu_s_per_gb,
            "sim": {"completed": s.completed, "roots_elected_max": s.roots_elected_max,
                    "fallbacks": s.origin_fallbacks, "origin_peak_sessions": s.origin_peak_sessions,
                    "wan_bytes": s.wan_bytes, "wan_manifest_bytes": s.wan_manifest_bytes,
                    "makespan_ratio": sr, "host_cpu_s": s.host_cpu_s},
            "lab": {"completed": l.completed, "roots_elected_max": l.roots_elected_max,
                    "fallbacks": l.origin_fallbacks, "origin_peak_sessions": l.origin_peak_sessions,
                    "wan_bytes": l.wan_bytes, "wan_link_bytes": l.wan_link_bytes,
                    "wan_manifest_bytes": l.wan_manifest_bytes, "makespan_ratio": lr,
                    "max_turn_ms": l.max_turn_ms, "long_turns": l.long_turns, "turns": l.turns,
                    "cpu_s": l.cpu_s, "cpu_s_per_gb": l.cpu_s_per_gb, "violations": l.violations},
            "makespan_ratio_lab_over_sim": lr / sr,
            "agree": s.completed == l.completed && s.roots_elected_max == l.roots_elected_max
                && s.origin_fallbacks == l.origin_fallbacks && (lr / sr - 1.0).abs() <= 0.2,
        });
        println!("{v}");
        rows.push((phones, s, l));
    }
    print_table(&rows);
}

/// The side-by-side table on stderr: simulator / lab per site size.
fn print_table(rows: &[(usize, sim::Report, pfs::lab::LabReport)]) {
    eprintln!(
        "{:>6} | {:>15} | {:>11} | {:>11} | {:>21} | {:>13} | {:>15}",
        "phones",
        "completed s/l",
        "roots s/l",
        "fallb. s/l",
        "WAN MB s(+man)/l link",
        "CPU s s/l",
        "x limit s/l"
    );
    for (n, s, l) in rows {
        eprintln!(
            "{n:>6} | {:>7}/{:<7} | {:>5}/{:<5} | {:>5}/{:<5} | {:>6.2}(+{:.2})/{:<6.2} | {:>6.1}/{:<6.1} | {:>6.2}/{:<6.2}",
            s.completed,
            l.completed,
            s.roots_elected_max,
            l.roots_elected_max,
            s.origin_fallbacks,
            l.origin_fallbacks,
            s.wan_bytes as f64 / 1e6,
            s.wan_manifest_bytes as f64 / 1e6,
            l.wan_link_bytes as f64 / 1e6,
            s.host_cpu_s,
            l.cpu_s,
            s.makespan_s / s.limit_s,
            l.makespan_s / l.limit_s
        );
    }
}
