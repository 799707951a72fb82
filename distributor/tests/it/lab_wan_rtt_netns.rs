//! `pfs lab --wan-rtt-ms`: a real WAN delay (TUN pair and a delay thread, no netem). ping from
//! a phone must see the set round trip within 10%, pfs must still finish, and the traditional
//! baseline must show lock-step TFTP's cap of one block per round trip (the technote's
//! complaint: a site far from headquarters upgrades slowly however fast its WAN is).

use crate::common;

use std::process::Command;

const RTT_MS: f64 = 100.0;
/// The lab's phones' TFTP block (the client's default blksize).
const BLKSIZE: f64 = 1428.0;

fn lab(args: &[&str]) -> Option<serde_json::Value> {
    if !common::privileged("pfs lab --wan-rtt-ms") || !common::tool("tc") || !common::tool("ping") {
        return None;
    }
    let out = Command::new(env!("CARGO_BIN_EXE_pfs"))
        .args(["lab", "--phones", "4", "--models", "CP-7961G"])
        .args(["--wan-mbit", "10", "--seed", "5", "--json"])
        .args(["--wan-rtt-ms", &RTT_MS.to_string()])
        .args(args)
        .output()
        .expect("run pfs lab");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let r: serde_json::Value = serde_json::from_str(stdout.lines().last().expect("a report"))
        .unwrap_or_else(|e| panic!("{e}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr)));
    common::check_against_doc("lab", &r);
    assert_eq!(r["wan_rtt_ms"], RTT_MS, "{r}");
    let ping = r["wan_rtt_ping_ms"].as_f64().expect("ping measured");
    assert!(
        (ping - RTT_MS).abs() <= 0.1 * RTT_MS,
        "ping saw {ping} ms for a {RTT_MS} ms WAN: {r}"
    );
    assert_eq!(r["violations"], serde_json::json!([]), "{r}");
    // Nothing left behind: no TUN device escaped into the host's namespace.
    let links = Command::new("ip").args(["-o", "link"]).output().unwrap();
    let links = String::from_utf8_lossy(&links.stdout);
    assert!(
        !links.contains("wan0") && !links.contains("wan1"),
        "{links}"
    );
    Some(r)
}

#[test]
fn pipelined_finishes_over_a_long_wan_and_ping_sees_the_delay() {
    let _group = crate::common::group(module_path!());
    let Some(r) = lab(&["--deadline-s", "90"]) else {
        return;
    };
    assert_eq!(r["completed"], 4, "{r}");
    assert_eq!(r["corrupt_installs"], 0, "{r}");
    // One copy crossed the WAN.
    let load = r["load_bytes"].as_f64().unwrap();
    assert!(r["wan_bytes"].as_f64().unwrap() <= 1.01 * load, "{r}");
}

#[test]
fn traditional_lock_step_tftp_is_capped_at_a_block_per_round_trip() {
    let _group = crate::common::group(module_path!());
    // 8 MB at 14 KB/s would take ~10 minutes: measure the rate over a 15 s window instead.
    let deadline = 15.0;
    let Some(r) = lab(&[
        "--mode",
        "traditional",
        "--deadline-s",
        &deadline.to_string(),
    ]) else {
        return;
    };
    assert_eq!(r["completed"], 0, "{r}");
    let per_phone = r["wan_bytes"].as_f64().unwrap() / 4.0 / deadline;
    let cap = BLKSIZE / (RTT_MS / 1e3);
    assert!(
        per_phone <= 1.05 * cap && per_phone >= 0.75 * cap,
        "a lock-step phone fetched {per_phone:.0} B/s; blksize/RTT is {cap:.0} B/s: {r}"
    );
    // The WAN (10 Mbit/s) was nearly idle: the round trip, not the link, is the limit.
    let wan_rate = r["wan_mbit"].as_f64().unwrap() * 1e6 / 8.0;
    assert!(4.0 * per_phone < 0.1 * wan_rate, "{r}");
}
