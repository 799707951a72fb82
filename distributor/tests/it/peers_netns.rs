//! `pfs lab --compare --peers`: a 10-phone site runs udpcast, BitTorrent and uftp, and each must
//! deliver bytes that verify against the manifest on every phone, count from the same start,
//! cross the WAN, write its exact command lines, and leave no process behind.

use crate::common;

use pfs::{
    lab::{Lab, LabConfig},
    peers::{Peer, System},
};

/// Processes of `name` running now (by /proc/*/comm).
fn running(name: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == name)
        })
        .collect()
}

#[test]
fn udpcast_bittorrent_and_uftp_deliver_verified_bytes_to_10_phones() {
    let _group = crate::common::group(module_path!());
    if !common::privileged("peers_netns") {
        return;
    }
    for prog in [
        "udp-sender",
        "udp-receiver",
        "opentracker",
        "aria2c",
        "mktorrent",
        "uftp",
        "uftpd",
        "uftpproxyd",
    ] {
        if !common::tool(prog) {
            return;
        }
    }
    let tools = [
        "udp-sender",
        "udp-receiver",
        "opentracker",
        "aria2c",
        "uftp",
        "uftpd",
        "uftpproxyd",
    ];
    let before: Vec<Vec<u32>> = tools.iter().map(|t| running(t)).collect();
    let lab = Lab::build(LabConfig {
        phones: 10,
        models: vec!["CP-7961G".into()],
        wan_mbit: 50.0,
        lan_mbit: Some(100.0),
        progress: false,
        deadline: std::time::Duration::from_secs(20),
        ..LabConfig::default()
    })
    .expect("lab");
    for p in [Peer::Udpcast, Peer::Bittorrent, Peer::Uftp] {
        let r = pfs::peers::run(&lab, p).expect("run");
        eprintln!(
            "{}: {}/{} in {:.2} s, WAN link {:.1} MB",
            r.mode,
            r.completed,
            r.phones,
            r.makespan_s,
            r.wan_link_bytes as f64 / 1e6
        );
        assert_eq!(r.mode, System::from(p));
        assert_eq!(r.completed, 10, "{p:?}: {:?}", r.violations);
        assert_eq!(r.corrupt_installs, 0, "{p:?}");
        assert!(r.violations.is_empty(), "{p:?}: {:?}", r.violations);
        assert_eq!(r.completions.len(), 10);
        assert!(
            r.makespan_s > 0.0 && r.makespan_s < 20.0,
            "{p:?}: {}",
            r.makespan_s
        );
        // The load crossed the WAN at least once.
        assert!(
            r.wan_link_bytes >= r.load_bytes,
            "{p:?}: {}",
            r.wan_link_bytes
        );
        assert!(!r.commands.is_empty());
        let json = pfs::report::schema::to_json_line("lab", &r).unwrap();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["mode"], System::from(p).to_string());
    }
    drop(lab);
    for (t, was) in tools.iter().zip(before) {
        let stray: Vec<u32> = running(t)
            .into_iter()
            .filter(|p| !was.contains(p))
            .collect();
        assert!(stray.is_empty(), "{t} still running: {stray:?}");
    }
}
