//! The lab report as a reader meets it: every SVG renders in a real SVG renderer
//! (rsvg-convert), every plot's axes carry tick labels, names are the ones users type; and the
//! JSON the binary prints holds exactly the fields `docs/report.md` documents.

use crate::common;

use std::{collections::BTreeMap, net::Ipv4Addr, process::Command};

use pfs::{
    lab::{LabReport, TreeNode},
    phone::Mode,
    report::{PhoneTime, RunInfo, SiteInfo, WanSample},
};

fn addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 19, 1, 2 + i as u8)
}

/// A run like the lab's: `phones` phones, completion times around `t` s, a binary tree per
/// hierarchy, one phone that fell back and one that never installed.
fn run(mode: Mode, phones: usize, t: f64) -> LabReport {
    let times: Vec<Option<f64>> = (0..phones)
        .map(|i| (i != 5).then(|| t * (0.8 + 0.2 * i as f64 / phones as f64)))
        .collect();
    let mut trees = BTreeMap::new();
    if mode != Mode::Traditional {
        for file in ["apps.sbn", "dsp.sbn"] {
            let nodes = (0..phones)
                .map(|i| TreeNode {
                    phone: addr(i),
                    parent: (i > 0 && i != 7).then(|| addr((i - 1) / 2)),
                    depth: (usize::BITS - (i + 1).leading_zeros() - 1) as u8,
                    role: match i {
                        0 => "root",
                        7 => "fallback",
                        _ => "member",
                    }
                    .into(),
                })
                .collect();
            trees.insert(format!("CP-7961G/{file}"), nodes);
        }
    }
    // The WAN at its rate, but for a stall from 40 % to 50 % of the run.
    let rate = 50e6 / 8.0;
    let busy = |x: f64| x.min(0.4 * t) + (x - 0.5 * t).max(0.0);
    let samples: Vec<WanSample> = (0..=(t * 10.0) as usize)
        .map(|k| WanSample {
            t_s: k as f64 / 10.0,
            tx_bytes: (busy(k as f64 / 10.0) * rate) as u64,
        })
        .collect();
    LabReport {
        mode: mode.into(),
        phones: phones as u32,
        completed: times.iter().flatten().count() as u32,
        makespan_s: t,
        limit_s: 2.6,
        load_bytes: 8_000_000,
        models: 2,
        wan_mbit: 50.0,
        lan_mbit: Some(100.0),
        backend: "io_uring".into(),
        completions: times.iter().flatten().copied().collect(),
        phone_times: times
            .iter()
            .enumerate()
            .map(|(i, t)| PhoneTime {
                phone: addr(i),
                model: if i % 2 == 0 { "CP-7961G" } else { "CP-7941G" }.into(),
                installed_s: *t,
                fallbacks: u32::from(i == 7),
            })
            .collect(),
        wan_samples: samples.clone(),
        wan_link_bytes: samples.last().map_or(0, |s| s.tx_bytes),
        wan_samples_source: "test".into(),
        trees,
        ..LabReport::default()
    }
}

#[test]
fn every_lab_svg_renders_with_tick_labels_on_its_axes() {
    let _group = crate::common::group(module_path!());
    if !common::tool("rsvg-convert") {
        return;
    }
    let dir = common::scratch("report-svg");
    let runs = vec![
        run(Mode::Traditional, 24, 80.0),
        run(Mode::StoreAndForward, 24, 5.2),
        run(Mode::Pipelined, 24, 2.9),
    ];
    let info = RunInfo::here(SiteInfo {
        phones: 24,
        models: vec!["CP-7961G".into(), "CP-7941G".into()],
        wan_mbit: 50.0,
        wan_rtt_ms: Some(40.0),
        wan_loss: Some(0.01),
        ..SiteInfo::default()
    });
    let written = pfs::report::write_lab_report(&dir, &runs, &info, None).unwrap();
    assert_eq!(written.len(), 1 + pfs::report::LAB_PLOTS.len());
    common::check_lab_report(&dir, runs.len());

    // 80 s against 2.9 s: the CDF's time axis is logarithmic, its legend the CLI's names.
    let cdf = std::fs::read_to_string(dir.join("cdf.svg")).unwrap();
    assert!(cdf.contains("log scale"), "linear axis for 80 s vs 2.9 s");
    for name in ["traditional", "store-and-forward", "pipelined"] {
        assert!(cdf.contains(name), "legend lacks {name}");
    }
    // The tree labels every phone with its address and depth, and marks the faulted ones.
    let tree: Vec<String> =
        common::svg_texts(&std::fs::read_to_string(dir.join("tree.svg")).unwrap())
            .into_iter()
            .map(|t| t.2)
            .collect();
    for i in 0..24 {
        assert!(
            tree.contains(&addr(i).to_string()),
            "tree lacks {}",
            addr(i)
        );
    }
    assert!(tree.iter().any(|t| t == "root, depth 0"));
    assert!(tree.iter().any(|t| t == "depth 3"));
    assert!(tree.iter().any(|t| t == "fallback"));
    assert!(tree.iter().any(|t| t.ends_with("failed")));
    // report.md opens with what was run.
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    let head = md.split("## Results").next().unwrap();
    for must in [
        "## What was run",
        "cores",
        "Linux",
        "50 Mbit/s",
        "WAN RTT",
        "40 ms",
        "1 %",
        "CP-7941G",
    ] {
        assert!(
            head.contains(must),
            "report.md's head lacks {must}:\n{head}"
        );
    }

    // One hierarchy only, by name.
    let one = common::scratch("report-svg-one");
    pfs::report::write_lab_report(&one, &runs, &info, Some("CP-7961G/dsp.sbn")).unwrap();
    let svg = std::fs::read_to_string(one.join("tree.svg")).unwrap();
    assert!(svg.contains("CP-7961G/dsp.sbn") && !svg.contains("CP-7961G/apps.sbn"));
    common::render_svg(&one.join("tree.svg"));
    // PFS_KEEP_REPORT=1 keeps them to look at.
    if std::env::var_os("PFS_KEEP_REPORT").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(&one);
    } else {
        eprintln!("report kept in {}", dir.display());
    }
}

#[test]
fn simulate_json_holds_exactly_the_documented_fields() {
    let _group = crate::common::group(module_path!());
    let out = Command::new(env!("CARGO_BIN_EXE_pfs"))
        .args(["simulate", "--phones", "16", "--json"])
        .output()
        .expect("run pfs simulate");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8_lossy(&out.stdout);
    let json: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
    common::check_against_doc("simulate", &json);
}
