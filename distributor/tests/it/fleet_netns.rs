//! `pfs fleet` as a load generator against the real tftpd-hpa: 20 virtual phones in one
//! existing namespace pull a load over an 80 Mbit/s tbf-shaped WAN. Every phone must install a
//! verified copy, the server must have sent exactly 20 copies, and the reported goodput must be
//! what the shaped link allows (so the figure measures the server path, not the clock). A
//! second run against a load with a file missing must count the server's refusals and fail.

use crate::common;

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use pfs::topology::{ORIGIN_ADDR, PHONE_IFACE, Site, SiteSpec};

use common::{scratch, start_tftpd};

/// Runs `pfs fleet` (bounded) and returns its exit success and its JSON report.
fn fleet(site: &Site, load: &str, phones: usize, deadline_s: u32) -> (bool, serde_json::Value) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pfs"))
        .args(["fleet", "--json", "--iface", PHONE_IFACE])
        .args(["--netns", site.phones[0].name()])
        .args(["--phones", &phones.to_string()])
        .args(["--origin", &format!("tftp://{ORIGIN_ADDR}/{load}")])
        .args(["--deadline-s", &deadline_s.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start pfs fleet");
    let limit = Instant::now() + Duration::from_secs(u64::from(deadline_s) + 60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > limit {
            let _ = child.kill();
            panic!("pfs fleet still running past its deadline");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_else(|| {
        panic!(
            "no report; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let report: serde_json::Value = serde_json::from_str(line).unwrap();
    common::check_against_doc("fleet", &report);
    (status.success(), report)
}

#[test]
fn twenty_pullers_measure_a_real_tftp_server_and_count_its_refusals() {
    let _group = crate::common::group(module_path!());
    const PHONES: usize = 20;
    const WAN_KBIT: u32 = 80_000;
    if !common::privileged("fleet") || !common::tool("in.tftpd") || !common::tool("tc") {
        return;
    }
    pfs::netns::sweep_stale();
    let site = Site::build(&SiteSpec {
        phones: 1,
        wan_kbit: Some(WAN_KBIT),
        wan_burst: None,
        lan_kbit: None,
        wan_rtt_ms: None,
    })
    .expect("build the site");
    let root = scratch("fleet-origin");
    let manifest = pfs::manifest::synth_load(&root.join("load"), 11, None).unwrap();
    // A second copy of the load with one file gone: the server answers "file not found".
    let broken = root.join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    for entry in std::fs::read_dir(root.join("load")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), broken.join(entry.file_name())).unwrap();
    }
    std::fs::remove_file(broken.join(&manifest.files[0].name)).unwrap();
    let _ = Command::new("chmod")
        .arg("-R")
        .arg("a+rX")
        .arg(&root)
        .status();
    let _tftpd = start_tftpd(&site, &root);
    std::thread::sleep(Duration::from_millis(300));

    let wan_before = site.wan_tx_bytes().unwrap();
    let (ok, r) = fleet(&site, "load", PHONES, 120);
    let wan = site.wan_tx_bytes().unwrap() - wan_before;
    let load = manifest.load_bytes();
    eprintln!("fleet report: {r}");
    assert!(ok, "fleet failed: {r}");
    assert_eq!(r["phones"], PHONES);
    assert_eq!(r["completed"], PHONES, "{r}");
    assert_eq!(r["corrupt_installs"], 0);
    assert_eq!(r["load_bytes"], load);
    assert_eq!(r["origin_bytes"], PHONES as u64 * load, "{r}");
    // The link carried all of it (plus TFTP/IP headers and the manifests).
    assert!(wan >= PHONES as u64 * load, "WAN {wan} < {PHONES} loads");
    let goodput = r["goodput_mbit"].as_f64().unwrap();
    let link = f64::from(WAN_KBIT) / 1000.0;
    assert!(
        goodput <= link * 1.05 && goodput >= link * 0.5,
        "goodput {goodput} Mbit/s on a {link} Mbit/s link"
    );
    let (p50, max) = (r["p50_s"].as_f64().unwrap(), r["max_s"].as_f64().unwrap());
    assert!(p50 > 0.0 && p50 <= max, "{r}");

    let (ok, r) = fleet(&site, "broken", 4, 6);
    assert!(!ok, "a fleet that could not install must fail: {r}");
    assert_eq!(r["completed"], 0, "{r}");
    assert!(
        r["origin_refused"].as_u64().unwrap() >= 4,
        "every phone's first request for the missing file is refused: {r}"
    );
    let _ = std::fs::remove_dir_all(&root);
}
