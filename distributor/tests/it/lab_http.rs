//! `pfs lab --origin-proto http`: virtual phones in their own namespaces fetch over HTTP from
//! port 6970 of the origin, from the embedded origin (which also serves TFTP, the phones'
//! fallback) and from a real nginx. Every phone installs a verified load and the WAN carries
//! the firmware once.

use crate::common;

use std::process::Command;

fn lab_over_http(origin: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_pfs"))
        .args(["lab", "--phones", "8", "--models", "CP-7961G"])
        .args([
            "--wan-mbit",
            "50",
            "--lan-mbit",
            "100",
            "--mode",
            "pipelined",
        ])
        .args(["--origin", origin, "--origin-proto", "http"])
        .args(["--json", "--deadline-s", "20", "-v"])
        .output()
        .expect("run pfs lab");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "pfs lab failed:\n{stdout}\n{stderr}");
    let r: serde_json::Value = serde_json::from_str(stdout.lines().last().expect("a report"))
        .unwrap_or_else(|e| panic!("{e}: {stdout}"));
    common::check_against_doc("lab", &r);
    assert_eq!(r["completed"], 8, "{r}");
    assert_eq!(r["corrupt_installs"], 0, "{r}");
    assert_eq!(r["origin_fallbacks"], 0, "{r}");
    assert_eq!(r["violations"], serde_json::json!([]), "{r}");
    // One copy of the firmware from the origin, and it came over HTTP.
    assert_eq!(r["wan_bytes"], r["load_bytes"], "{r}");
    let plain = stderr.replace("\u{1b}[", "");
    assert!(plain.contains("fetching from http://"), "{stderr}");
    assert!(!plain.contains("fetching from tftp://"), "{stderr}");
}

#[test]
fn phones_fetch_over_http_from_pfs_origin() {
    let _group = crate::common::group(module_path!());
    if !common::privileged("pfs lab") || !common::tool("tc") {
        return;
    }
    lab_over_http("pfs");
}

#[test]
fn phones_fetch_over_http_from_nginx() {
    let _group = crate::common::group(module_path!());
    if !common::privileged("pfs lab") || !common::tool("tc") || !common::tool("nginx") {
        return;
    }
    lab_over_http("nginx");
}

#[test]
fn tftpd_hpa_cannot_serve_http() {
    let _group = crate::common::group(module_path!());
    let out = Command::new(env!("CARGO_BIN_EXE_pfs"))
        .args([
            "lab",
            "--phones",
            "2",
            "--origin",
            "tftpd-hpa",
            "--origin-proto",
            "http",
        ])
        .output()
        .expect("run pfs lab");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("TFTP only"));
}
