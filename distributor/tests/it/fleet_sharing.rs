//! `pfs fleet --peer-sharing` across machines: two fleets, each in its own namespace standing
//! in for a load-generator host, with one veth each onto one LAN bridge (where the origin
//! lives). Every phone gets a macvlan of its host's port with its own address and MAC. The two
//! fleets form one site with no coordinator: every phone installs a verified load, and
//! `pfs report merge` of their reports shows one root per hierarchy across both.

use crate::common;

use std::process::{Command, Stdio};

use pfs::netns::Netns;

#[test]
fn two_hosts_form_one_site() {
    let _group = crate::common::group(module_path!());
    if !common::privileged("pfs fleet --peer-sharing") {
        return;
    }
    let dir = common::scratch("fleet-sharing");
    let load = dir.join("srv").join("load");
    let manifest = pfs::manifest::synth_load(&load, 3, None).unwrap();
    // The LAN: a bridge with the origin on it; two hosts, each with a port on the bridge.
    let (lan, hosts) = lan_with_two_hosts();
    let _origin = common::Guard(
        Command::new("ip")
            .args(["netns", "exec", lan.name(), env!("CARGO_BIN_EXE_pfs")])
            .args(["-q", "origin", "--listen", "198.18.0.1:69", "--root"])
            .arg(dir.join("srv"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    // Both fleets at once, as two hosts would be started.
    let per_host = run_fleets(&dir, &hosts);
    let m = merged_report(&dir);
    common::check_against_doc("fleet", &m);
    assert_eq!(m["phones"], 10);
    assert_eq!(
        m["completed"], 10,
        "every phone installed a verified load: {m}"
    );
    assert_eq!(m["corrupt_installs"], 0);
    let roots = m["roots"].as_object().unwrap();
    assert_eq!(
        roots.len(),
        manifest.files.len(),
        "a root for every hierarchy: {m}"
    );
    for (h, r) in roots {
        assert_eq!(
            r.as_array().unwrap().len(),
            1,
            "one root for {h} across both hosts: {m}"
        );
    }
    // The firmware crossed the WAN about once per file, not once per phone: phones of both
    // hosts fetched from each other.
    let load_bytes = m["load_bytes"].as_u64().unwrap();
    assert!(
        m["origin_bytes"].as_u64().unwrap() < 3 * load_bytes,
        "origin bytes {} for a {load_bytes}-byte load: {m}",
        m["origin_bytes"]
    );
    assert!(
        per_host
            .iter()
            .all(|v| v["peer_bytes"].as_u64().unwrap() > 0)
    );
    drop(hosts);
    drop(lan);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A LAN namespace with a bridge at 198.18.0.1, and two host namespaces with a port on it
/// each (198.18.0.2 and .3).
fn lan_with_two_hosts() -> (Netns, Vec<Netns>) {
    let lan = Netns::create("lan").unwrap();
    lan.ip(&["link", "add", "br0", "type", "bridge"]).unwrap();
    lan.ip(&["addr", "add", "198.18.0.1/16", "dev", "br0"])
        .unwrap();
    lan.ip(&["link", "set", "br0", "up"]).unwrap();
    let mut hosts = Vec::new();
    for (h, addr) in [(0, "198.18.0.2/16"), (1, "198.18.0.3/16")] {
        let ns = Netns::create(&format!("host{h}")).unwrap();
        let port = format!("lanp{h}");
        ns.ip(&[
            "link",
            "add",
            "eth0",
            "type",
            "veth",
            "peer",
            "name",
            &port,
            "netns",
            lan.name(),
        ])
        .unwrap();
        ns.ip(&["addr", "add", addr, "dev", "eth0"]).unwrap();
        ns.ip(&["link", "set", "eth0", "up"]).unwrap();
        lan.ip(&["link", "set", &port, "master", "br0", "up"])
            .unwrap();
        hosts.push(ns);
    }
    (lan, hosts)
}

/// Five sharing phones per host, both fleets at once; each fleet's report, checked to have
/// installed every phone.
fn run_fleets(dir: &std::path::Path, hosts: &[Netns]) -> Vec<serde_json::Value> {
    let fleets: Vec<_> = hosts
        .iter()
        .enumerate()
        .map(|(h, ns)| {
            let out = std::fs::File::create(dir.join(format!("fleet{h}.json"))).unwrap();
            let err = std::fs::File::create(dir.join(format!("fleet{h}.err"))).unwrap();
            common::Guard(
                Command::new(env!("CARGO_BIN_EXE_pfs"))
                    .args([
                        "fleet",
                        "--peer-sharing",
                        "--iface",
                        "eth0",
                        "--netns",
                        ns.name(),
                    ])
                    .args(["--origin", "tftp://198.18.0.1/load", "--phones", "5"])
                    .args(["--addresses", &format!("198.18.{}.0/24", 10 + h)])
                    .args(["--linger-s", "4", "--deadline-s", "50", "--json"])
                    .arg("--store")
                    .arg(dir.join(format!("stores{h}")))
                    .stdout(out)
                    .stderr(err)
                    .spawn()
                    .unwrap(),
            )
        })
        .collect();
    for (h, mut g) in fleets.into_iter().enumerate() {
        let st = g.0.wait().unwrap();
        assert!(
            st.success(),
            "fleet {h} failed: {}",
            std::fs::read_to_string(dir.join(format!("fleet{h}.err"))).unwrap_or_default()
        );
    }
    let mut per_host = Vec::new();
    for h in 0..2 {
        let text = std::fs::read_to_string(dir.join(format!("fleet{h}.json"))).unwrap();
        let v: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        common::check_against_doc("fleet", &v);
        assert_eq!(v["completed"], 5, "{v}");
        assert_eq!(v["corrupt_installs"], 0);
        per_host.push(v);
    }
    per_host
}

/// `pfs report merge` of both fleets' reports.
fn merged_report(dir: &std::path::Path) -> serde_json::Value {
    let merged = Command::new(env!("CARGO_BIN_EXE_pfs"))
        .args(["report", "merge"])
        .arg(dir.join("fleet0.json"))
        .arg(dir.join("fleet1.json"))
        .output()
        .unwrap();
    let m: serde_json::Value = serde_json::from_str(
        String::from_utf8_lossy(&merged.stdout)
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert!(
        merged.status.success(),
        "{m} {}",
        String::from_utf8_lossy(&merged.stderr)
    );
    m
}
