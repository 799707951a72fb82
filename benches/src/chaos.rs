//! `chaos` (issue 14): seeded fault plans on real sockets (`pfs lab`) and, with the same plan,
//! in the simulator, side by side. First the plan the issue names (100 phones, 10 Mbit/s,
//! seed 7, every fault kind at once), then `--seeds N` random plans (default 20; `--quick`: 3)
//! at 60 to 200 phones. One JSON object per run on stdout, a table on stderr; every failing run
//! prints `reproduce: pfs lab ...` (and the `pfs simulate` line for the model).
//!
//! A run passes when: no phone is stuck (neither installed nor faulted), no install is corrupt
//! (checked against the bytes on disk), completed + faulted = phones, phones without a fault
//! finish within twice the WAN limit, the origin stays within its bound and the run's own
//! cross-checks find nothing.

use pfs::{
    faults::FaultPlan,
    lab::{Lab, LabConfig},
    phone::Mode,
    sim::{self, SimConfig},
};

/// A plan and the site it runs on.
#[derive(Debug, Clone)]
struct Case {
    name: String,
    phones: usize,
    wan_mbit: f64,
    plan: FaultPlan,
}

/// splitmix64: a seeded draw without another dependency.
fn mix(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn pick<T: Copy>(x: &mut u64, from: &[T]) -> T {
    from[(mix(x) % from.len() as u64) as usize]
}

fn named() -> Case {
    Case {
        name: "issue-seed-7".into(),
        phones: 100,
        wan_mbit: 10.0,
        plan: FaultPlan {
            seed: 7,
            crash_fraction: 0.1,
            freeze_fraction: 0.05,
            cut_fraction: 0.05,
            slow_fraction: 0.05,
            slow_mbit: 2.0,
            corrupt_peers: 2,
            liar_peers: 1,
            loss: 0.01,
            drop_fragments: false,
            ..FaultPlan::default()
        },
    }
}

fn random(seed: u64) -> Case {
    let mut x = seed ^ 0xc4a0_5000;
    Case {
        name: format!("random-{seed}"),
        phones: 60 + (mix(&mut x) % 141) as usize,
        wan_mbit: 10.0,
        plan: FaultPlan {
            seed,
            crash_fraction: pick(&mut x, &[0.0, 0.05, 0.1]),
            freeze_fraction: pick(&mut x, &[0.0, 0.02, 0.05]),
            cut_fraction: pick(&mut x, &[0.0, 0.02, 0.05]),
            slow_fraction: pick(&mut x, &[0.0, 0.05]),
            slow_mbit: 2.0,
            corrupt_peers: pick(&mut x, &[0, 1, 2]),
            liar_peers: pick(&mut x, &[0, 0, 1]),
            loss: pick(&mut x, &[0.0, 0.0, 0.01]),
            drop_fragments: false,
            ..FaultPlan::default()
        },
    }
}

fn fault_flags(p: &FaultPlan) -> String {
    let mut s = String::new();
    for (flag, v) in [
        ("crash-fraction", p.crash_fraction),
        ("freeze-fraction", p.freeze_fraction),
        ("cut-fraction", p.cut_fraction),
        ("slow-fraction", p.slow_fraction),
        ("loss", p.loss),
    ] {
        if v > 0.0 {
            s.push_str(&format!(" --{flag} {v}"));
        }
    }
    if p.corrupt_peers > 0 {
        s.push_str(&format!(" --corrupt-peers {}", p.corrupt_peers));
    }
    if p.liar_peers > 0 {
        s.push_str(&format!(" --liar-peers {}", p.liar_peers));
    }
    s
}

fn lab_command(c: &Case) -> String {
    format!(
        "pfs lab --seed {} --phones {} --wan-mbit {}{}",
        c.plan.seed,
        c.phones,
        c.wan_mbit,
        fault_flags(&c.plan)
    )
}

fn sim_command(c: &Case) -> String {
    format!(
        "pfs simulate --seed {} --phones {} --models 2 --wan-mbit {} --wan-rtt-ms 0{}",
        c.plan.seed,
        c.phones,
        c.wan_mbit,
        fault_flags(&c.plan)
    )
}

/// What failed in a lab run, if anything.
fn lab_failures(r: &pfs::lab::LabReport) -> Vec<String> {
    let mut v = Vec::new();
    let faulted = r.crashed + r.frozen + r.cut + r.liars;
    if r.stuck > 0 {
        v.push(format!("{} stuck", r.stuck));
    }
    if r.corrupt_installs > 0 {
        v.push(format!("{} corrupt installs", r.corrupt_installs));
    }
    if r.completed + faulted != r.phones {
        v.push(format!(
            "completed {} + faulted {faulted} != {}",
            r.completed, r.phones
        ));
    }
    if r.normal_makespan_s > 2.0 * r.limit_s {
        v.push(format!(
            "normal phones took {:.1} s > 2 x limit {:.1} s",
            r.normal_makespan_s, r.limit_s
        ));
    }
    if let Some(p) = r.origin_peak_sessions
        && p > r.origin_session_bound
    {
        v.push(format!(
            "origin peak {p} > bound {}",
            r.origin_session_bound
        ));
    }
    v.extend(r.violations.iter().cloned());
    v
}

fn sim_failures(r: &sim::Report) -> Vec<String> {
    let mut v = Vec::new();
    let faulted = r.crashed + r.frozen + r.cut + r.liars;
    if r.completed + faulted != r.phones {
        v.push(format!(
            "completed {} + faulted {faulted} != {}",
            r.completed, r.phones
        ));
    }
    if r.corrupt_installs > 0 {
        v.push(format!("{} corrupt installs", r.corrupt_installs));
    }
    if r.normal_makespan_s > 2.0 * r.limit_s {
        v.push(format!(
            "normal phones took {:.1} s > 2 x limit {:.1} s",
            r.normal_makespan_s, r.limit_s
        ));
    }
    v
}

/// The simulator's configuration for a case: its site and fault plan, no WAN delay (the lab
/// has no delay line on the WAN).
fn sim_config(c: &Case) -> SimConfig {
    SimConfig {
        phones: c.phones as u32,
        seed: c.plan.seed,
        mode: Mode::Pipelined,
        models: 2,
        wan_mbit: c.wan_mbit,
        wan_rtt_ms: 0.0,
        lan_mbit: 100.0,
        crash_fraction: c.plan.crash_fraction,
        freeze_fraction: c.plan.freeze_fraction,
        cut_fraction: c.plan.cut_fraction,
        slow_fraction: c.plan.slow_fraction,
        slow_mbit: c.plan.slow_mbit,
        corrupt_peers: c.plan.corrupt_peers as u32,
        liar_peers: c.plan.liar_peers as u32,
        loss: c.plan.loss,
        // As the lab configures its phones.
        max_site_phones: c.phones as u64,
        ..SimConfig::default()
    }
}

/// The simulator's side of a run's JSON line.
fn sim_json(s: &sim::Report, failures: &[String]) -> serde_json::Value {
    serde_json::json!({"completed": s.completed, "crashed": s.crashed, "frozen": s.frozen,
                       "cut": s.cut, "liars": s.liars, "corrupt_installs": s.corrupt_installs,
                       "limit_s": s.limit_s, "makespan_s": s.makespan_s,
                       "normal_makespan_s": s.normal_makespan_s,
                       "origin_peak_sessions": s.origin_peak_sessions,
                       "fallbacks": s.origin_fallbacks, "wan_bytes": s.wan_bytes,
                       "failures": failures})
}

/// [`sim_json`] with the roots rejected as stalled, shown beside the lab's.
fn sim_json_with_stalled(s: &sim::Report, failures: &[String]) -> serde_json::Value {
    let mut v = sim_json(s, failures);
    v["roots_rejected_stalled"] = s.roots_rejected_stalled.into();
    v
}

pub fn chaos(args: &[String]) {
    // `--sim-only`: the simulator's side of every plan, without a lab (no root needed).
    let sim_only = args.iter().any(|a| a == "--sim-only");
    assert!(
        sim_only || pfs::netns::can_create(),
        "the chaos benchmark needs root (or --sim-only)"
    );
    let value = |flag: &str| super::flag_value(args, flag);
    let quick = args.iter().any(|a| a == "--quick");
    let seeds: u64 = value("--seeds").map_or(if quick { 3 } else { 20 }, |v| {
        v.parse().expect("--seeds N")
    });
    let first: u64 = value("--first-seed").map_or(1, |v| v.parse().expect("--first-seed S"));
    let skip_named = args.iter().any(|a| a == "--no-named");
    let mut cases = Vec::new();
    if !skip_named {
        cases.push(named());
    }
    cases.extend((first..first + seeds).map(random));
    let mut rows = Vec::new();
    for c in &cases {
        let s = sim::run(&sim_config(c));
        if sim_only {
            let sf = sim_failures(&s);
            let v = serde_json::json!({
                "case": c.name, "seed": c.plan.seed, "phones": c.phones,
                "plan": fault_flags(&c.plan).trim(),
                "sim": sim_json(&s, &sf),
                "ok": sf.is_empty(),
                "sim_command": sim_command(c),
            });
            println!("{v}");
            if !sf.is_empty() {
                eprintln!("reproduce: {}", sim_command(c));
            }
            continue;
        }
        let lab = Lab::build(LabConfig {
            phones: c.phones,
            wan_mbit: c.wan_mbit,
            seed: c.plan.seed,
            progress: false,
            deadline: std::time::Duration::from_secs(180),
            faults: c.plan.clone(),
            ..LabConfig::default()
        })
        .expect("lab");
        let l = lab.run(Mode::Pipelined, None).expect("lab run");
        drop(lab);
        let (lf, sf) = (lab_failures(&l), sim_failures(&s));
        let v = serde_json::json!({
            "case": c.name,
            "seed": c.plan.seed,
            "phones": c.phones,
            "plan": fault_flags(&c.plan).trim(),
            "lab": {"completed": l.completed, "crashed": l.crashed, "frozen": l.frozen,
                    "cut": l.cut, "slow": l.slow, "corrupt_peers": l.corrupt_peers,
                    "liars": l.liars, "stuck": l.stuck, "corrupt_installs": l.corrupt_installs,
                    "limit_s": l.limit_s, "makespan_s": l.makespan_s,
                    "normal_makespan_s": l.normal_makespan_s,
                    "recovery_p50_s": l.recovery_p50_s, "recovery_max_s": l.recovery_max_s,
                    "origin_peak_sessions": l.origin_peak_sessions,
                    "origin_session_bound": l.origin_session_bound,
                    "fallbacks": l.origin_fallbacks, "wan_bytes": l.wan_bytes,
                    "roots_rejected_corrupt": l.roots_rejected_corrupt,
                    "roots_rejected_stalled": l.roots_rejected_stalled,
                    "max_turn_ms": l.max_turn_ms, "violations": l.violations,
                    "failures": lf},
            "sim": sim_json_with_stalled(&s, &sf),
            "ok": lf.is_empty() && sf.is_empty(),
            "lab_command": lab_command(c),
            "sim_command": sim_command(c),
        });
        println!("{v}");
        if !lf.is_empty() || !sf.is_empty() {
            eprintln!("{}: lab {lf:?}, simulator {sf:?}", c.name);
            eprintln!("reproduce: {}", lab_command(c));
            eprintln!("reproduce: {}", sim_command(c));
        }
        rows.push((c.clone(), l, s, lf.is_empty() && sf.is_empty()));
    }
    print_table(&rows);
}

/// The table on stderr: lab / simulator per case.
fn print_table(rows: &[(Case, pfs::lab::LabReport, sim::Report, bool)]) {
    eprintln!(
        "{:<14} {:>6} | {:>9} | {:>9} | {:>5} | {:>11} | {:>13} | {:>9} | ok",
        "case",
        "phones",
        "done l/s",
        "fault l/s",
        "stuck",
        "normal/limit",
        "origin pk l/s",
        "WAN x l/s"
    );
    for (c, l, s, ok) in rows {
        let load2 = 2.0 * l.load_bytes as f64;
        eprintln!(
            "{:<14} {:>6} | {:>4}/{:<4} | {:>4}/{:<4} | {:>5} | {:>5.2}/{:<5.2} | {:>6}/{:<6} | {:>4.2}/{:<4.2} | {}",
            c.name,
            c.phones,
            l.completed,
            s.completed,
            l.crashed + l.frozen + l.cut + l.liars,
            s.crashed + s.frozen + s.cut + s.liars,
            l.stuck,
            l.normal_makespan_s / l.limit_s,
            s.normal_makespan_s / s.limit_s,
            l.origin_peak_sessions.unwrap_or(0),
            s.origin_peak_sessions,
            l.wan_bytes as f64 / load2,
            s.wan_bytes as f64 / load2,
            if *ok { "yes" } else { "NO" }
        );
    }
}
