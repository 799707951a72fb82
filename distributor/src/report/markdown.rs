//! `report.md`: what was run, the table, then the plots, each with a sentence on what it shows.

use std::fmt::Write as _;

use super::RunInfo;
use crate::{lab::LabReport, phone::Mode};

fn opt_f(v: Option<f64>, unit: &str) -> Option<String> {
    v.map(|v| format!("{} {unit}", super::plot::tick(v)))
}

/// The "what was run" section.
pub fn run_info(info: &RunInfo) -> String {
    let mut s = String::from("## What was run\n\n");
    let _ = writeln!(s, "```\n{}\n```\n", info.command);
    let site = &info.site;
    let mut rows: Vec<(&str, String)> = vec![
        ("pfs", format!("{} (commit {})", info.version, info.commit)),
        (
            "host",
            format!(
                "{} cores, {}, Linux {}",
                info.host.cores, info.host.cpu, info.host.kernel
            ),
        ),
        ("date", info.date.clone()),
        ("phones", site.phones.to_string()),
        (
            "models",
            format!("{} ({})", site.models.len(), site.models.join(", ")),
        ),
        (
            "WAN",
            format!(
                "{} Mbit/s{}",
                super::plot::tick(site.wan_mbit),
                site.wan_burst_kib
                    .map_or(String::new(), |k| format!(", bucket {k} KiB"))
            ),
        ),
        (
            "phone ports",
            opt_f(site.lan_mbit, "Mbit/s").unwrap_or_else(|| "unshaped".into()),
        ),
    ];
    if let Some(rtt) = opt_f(site.wan_rtt_ms, "ms") {
        rows.push(("WAN RTT", rtt));
    }
    if let Some(loss) = site.wan_loss {
        rows.push(("WAN loss", format!("{} %", super::plot::tick(loss * 100.0))));
    }
    rows.extend([
        ("fanout", site.fanout.to_string()),
        ("origin", site.origin.clone()),
        ("backend", site.backend.clone()),
        ("seed", site.seed.to_string()),
    ]);
    s.push_str("| | |\n| --- | --- |\n");
    for (k, v) in rows {
        let _ = writeln!(s, "| {k} | {v} |");
    }
    s.push('\n');
    s
}

/// The whole `report.md` for the runs of one lab; `tree_run` is the run `tree.svg` draws.
pub fn lab(
    runs: &[LabReport],
    info: &RunInfo,
    tree_run: Option<&LabReport>,
    tree_of: Option<&str>,
) -> String {
    let mut s = String::from("# pfs lab report\n\n");
    s.push_str(&run_info(info));
    s.push_str("## Results\n\n");
    if let Some(r) = runs.first() {
        let _ = writeln!(
            s,
            "Load {:.1} MB per model; no distribution can finish sooner than {:.2} s (models x load over the WAN rate). Run on backend {}.\n",
            r.load_bytes as f64 / 1e6,
            r.limit_s,
            r.backend
        );
        if !r.host_tuning.is_empty() {
            let list: Vec<String> = r
                .host_tuning
                .iter()
                .map(|(k, before, set)| format!("`{k}` {before} -> {set}"))
                .collect();
            let _ = writeln!(
                s,
                "Host settings raised for the run and restored after: {}.\n",
                list.join(", ")
            );
        }
    }
    s.push_str(&results_table(runs));
    s.push_str(&how_each_was_run(runs));
    s.push_str(&plots_section(runs, tree_run, tree_of));
    s
}

/// Every run's row of the results table, then how much sooner each mode finished than
/// traditional (when there was a traditional run).
fn results_table(runs: &[LabReport]) -> String {
    let mut s = String::new();
    s.push_str("| mode | completed | makespan s | x limit | p50 s | p90 s | p99 s | WAN firmware MB | x models x load | WAN link MB | roots/hierarchy (ever confirmed) | max children | max depth | fallbacks | corrupt |\n");
    s.push_str("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
    for r in runs {
        let _ = writeln!(
            s,
            "| {} | {}/{} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.1} | {:.3} | {:.1} | {} | {} | {} | {} | {} |",
            r.mode,
            r.completed,
            r.phones,
            r.makespan_s,
            r.makespan_s / r.limit_s,
            r.completion_p50_s,
            r.completion_p90_s,
            r.completion_p99_s,
            r.wan_bytes as f64 / 1e6,
            r.wan_bytes as f64 / (f64::from(r.models) * r.load_bytes as f64),
            r.wan_link_bytes as f64 / 1e6,
            r.roots_elected_max,
            r.max_children,
            r.max_depth,
            r.origin_fallbacks,
            r.corrupt_installs
        );
    }
    if let Some(base) = runs.iter().find(|r| r.mode == Mode::Traditional) {
        s.push('\n');
        for r in runs.iter().filter(|r| r.mode != Mode::Traditional) {
            let _ = writeln!(
                s,
                "- {} finishes {:.1}x sooner than traditional and sends {:.1}x fewer firmware bytes over the WAN.",
                r.mode,
                base.makespan_s / r.makespan_s.max(1e-9),
                base.wan_bytes as f64 / r.wan_bytes.max(1) as f64
            );
        }
    }
    s
}

/// The commands each external system ran (`--peers`), and its WAN link bytes; empty when
/// only pfs ran.
fn how_each_was_run(runs: &[LabReport]) -> String {
    let mut s = String::new();
    let external: Vec<&LabReport> = runs.iter().filter(|r| !r.commands.is_empty()).collect();
    if !external.is_empty() {
        s.push_str("\n## How each was run\n\n");
        s.push_str("pfs runs in this process, one virtual phone per namespace (see above). The other systems ran on the same site, phones, shaping and loads, counted from the phones' power-on (after hq's tracker and seed were up), each phone's files verified against the manifest afterwards; WAN bytes are hq's transmit counter on the WAN link. A pfs run's WAN link bytes also hold what every phone read before power-on (its cnf.xml and its load's manifest, `wan_manifest_bytes`), which the other systems' phones here do not read.\n\n");
        for r in &external {
            let _ = writeln!(
                s,
                "### {}\n\nWAN link: {:.1} MB ({:.2} x models x load).\n\n```",
                r.mode,
                r.wan_link_bytes as f64 / 1e6,
                r.wan_link_bytes as f64 / (f64::from(r.models) * r.load_bytes as f64).max(1.0)
            );
            for c in &r.commands {
                let _ = writeln!(s, "{c}");
            }
            s.push_str("```\n\n");
        }
    }
    s
}

/// The plots section: one sentence saying what each plot shows, then the plot.
fn plots_section(
    runs: &[LabReport],
    tree_run: Option<&LabReport>,
    tree_of: Option<&str>,
) -> String {
    let mut s = String::new();
    s.push_str("\n## Plots\n\n");
    let tree_what = match (tree_run, tree_of) {
        (None, _) => "no run to draw".to_owned(),
        (Some(r), Some(one)) => format!("hierarchy {one} of the {} run", r.mode),
        (Some(r), None) => format!("every hierarchy of the {} run", r.mode),
    };
    let source = runs
        .iter()
        .map(|r| r.wan_samples_source.as_str())
        .find(|s| !s.is_empty())
        .map_or(String::new(), |s| format!(" Samples: {s}."));
    let sentences = [
        (
            "completion CDF",
            "cdf.svg",
            "Share of phones holding a verified load against time since boot, every run on one plot (log time axis when runs differ by an order of magnitude); a line that ends below 100 % had phones that never finished."
                .to_owned(),
        ),
        (
            "WAN throughput",
            "wan.svg",
            format!(
                "Bytes hq sent over the WAN link per 100 ms, as Mbit/s, against the link's rate (dashed), one panel per run; dips while phones still wait are where the root's fetch from the origin stalled.{source}"
            ),
        ),
        (
            "completion timeline",
            "timeline.svg",
            "One bar per phone from boot to its verified install, one panel per run; crosses mark phones that never installed, triangles phones that fell back to the origin."
                .to_owned(),
        ),
        (
            "trees",
            "tree.svg",
            format!(
                "The peer tree of {tree_what}: each child under its parent, every phone labelled with its address and depth, roots green, phones that fell back or never installed red."
            ),
        ),
    ];
    for (alt, file, what) in sentences {
        let _ = writeln!(s, "{what}\n\n![{alt}]({file})\n");
    }
    s
}
