//! Benchmark harness (`cargo xtask bench NAME [--quick]`). Prints one JSON object per line.
//!
//! `simulate`: the issue-3 targets on the deterministic simulator: 100,000 phones pipelined
//! (with store-and-forward and traditional measured in the same run for the ratios), the
//! 10,000-phone fault case, the slow-phone case, and election broadcasts at 1k/10k/100k.

use std::process::ExitCode;

use pfs::{
    phone::Mode,
    sim::{self, Report, SimConfig},
};

fn line(case: &str, r: &Report) {
    let mut v = serde_json::to_value(r).expect("report serialises");
    let o = v.as_object_mut().expect("object");
    o.insert("case".into(), case.into());
    o.insert("makespan_ratio".into(), (r.makespan_s / r.limit_s).into());
    o.insert(
        "wan_ratio".into(),
        (r.wan_bytes as f64 / (f64::from(r.models) * r.load_bytes as f64)).into(),
    );
    println!("{v}");
}

fn simulate(quick: bool) {
    let big = if quick { 10_000 } else { 100_000 };
    let base = |phones| SimConfig {
        phones,
        ..SimConfig::default()
    };
    line("pipelined", &sim::run(&base(big)));
    line(
        "store-and-forward",
        &sim::run(&SimConfig {
            mode: Mode::StoreAndForward,
            ..base(big)
        }),
    );
    line(
        "traditional-40",
        &sim::run(&SimConfig {
            mode: Mode::Traditional,
            ..base(40)
        }),
    );
    line(
        "faults-10k",
        &sim::run(&SimConfig {
            crash_fraction: 0.1,
            corrupt_peers: 2,
            loss: 0.01,
            ..base(10_000)
        }),
    );
    line(
        "partition-5k",
        &sim::run(&SimConfig {
            partition_fraction: 0.3,
            partition_at_s: 2.0,
            partition_for_s: 5.0,
            ..base(5000)
        }),
    );
    line(
        "slow-1k",
        &sim::run(&SimConfig {
            slow_fraction: 0.05,
            slow_mbit: 2.0,
            ..base(1000)
        }),
    );
    for n in [1_000, 10_000] {
        line(&format!("broadcasts-{n}"), &sim::run(&base(n)));
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    match args.first().map(String::as_str) {
        Some("simulate") => {
            simulate(quick);
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!(
                "usage: cargo xtask bench simulate [--quick]\n\
                 (origin, fan-out and XDP benchmarks come with issues 4, 5 and 6)"
            );
            ExitCode::from(2)
        }
    }
}
