//! End to end on a real network: tftpd-hpa in `hq` behind a tbf-shaped WAN veth, a site
//! bridge, and 7 `pfs peer` processes, each in its own namespace. Every phone must install a
//! verified load, the WAN must carry about one copy of it, each file must have exactly one
//! root, and no phone may have more than 2 children. Namespaces go away when the test ends,
//! however it ends.

use crate::common;

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use pfs::{
    manifest::Manifest,
    store::Store,
    topology::{ORIGIN_ADDR, PHONE_IFACE, Site, SiteSpec},
};

use common::{Guard, scratch, start_tftpd};

fn peer(site: &Site, i: usize, args: &[String]) -> Guard {
    let child = Command::new("ip")
        .args(["netns", "exec", site.phones[i].name()])
        .arg(env!("CARGO_BIN_EXE_pfs"))
        .args(["-v", "peer", "--iface", PHONE_IFACE, "--json"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start pfs peer");
    Guard(child)
}

/// Waits for every child (bounded); returns (stdout, stderr) of each. The pipes are drained
/// while waiting, so a chatty child never blocks on a full pipe.
fn wait_all(mut guards: Vec<Guard>, limit: Duration) -> Vec<(String, String)> {
    use std::io::Read;
    let readers: Vec<_> = guards
        .iter_mut()
        .map(|g| {
            let mut o = g.0.stdout.take().unwrap();
            let mut e = g.0.stderr.take().unwrap();
            (
                std::thread::spawn(move || {
                    let mut s = String::new();
                    let _ = o.read_to_string(&mut s);
                    s
                }),
                std::thread::spawn(move || {
                    let mut s = String::new();
                    let _ = e.read_to_string(&mut s);
                    s
                }),
            )
        })
        .collect();
    let deadline = Instant::now() + limit;
    loop {
        let running = guards
            .iter_mut()
            .filter_map(|g| g.0.try_wait().unwrap().is_none().then_some(()))
            .count();
        if running == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{running} peers still running after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    readers
        .into_iter()
        .map(|(o, e)| (o.join().unwrap(), e.join().unwrap()))
        .collect()
}

#[test]
fn seven_peers_on_io_uring_share_one_copy_of_the_load_over_a_shaped_wan() {
    let _group = crate::common::group(module_path!());
    seven_peers("uring");
}

#[test]
fn seven_peers_on_plain_syscalls_share_one_copy_of_the_load_over_a_shaped_wan() {
    let _group = crate::common::group(module_path!());
    seven_peers("syscall");
}

/// One site at a time: the WAN byte count must be this test's alone, and two fleets would
/// fight over two cores.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn seven_peers(backend: &str) {
    const PHONES: usize = 7;
    let _one_at_a_time = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !common::privileged("seven_peers") || !common::tool("in.tftpd") || !common::tool("tc") {
        return;
    }
    pfs::netns::sweep_stale();
    let site = Site::build(&SiteSpec {
        phones: PHONES,
        wan_kbit: Some(40_000),
        wan_burst: None,
        lan_kbit: None,
        wan_rtt_ms: None,
    })
    .expect("build the site");
    let root = scratch(&format!("origin-{backend}"));
    let manifest: Manifest = pfs::manifest::synth_load(&root.join("load"), 7, None).unwrap();
    let _tftpd = start_tftpd(&site, &root);
    std::thread::sleep(Duration::from_millis(300));
    let wan_before = site.wan_tx_bytes().unwrap();
    let stores = scratch(&format!("stores-{backend}"));
    let peers: Vec<Guard> = (0..PHONES)
        .map(|i| {
            let store = stores.join(format!("phone{i}"));
            peer(
                &site,
                i,
                &[
                    "--origin".into(),
                    format!("tftp://{ORIGIN_ADDR}/load"),
                    "--store".into(),
                    store.display().to_string(),
                    "--linger-s".into(),
                    "3".into(),
                    "--deadline-s".into(),
                    "90".into(),
                    "--backend".into(),
                    backend.into(),
                    "--seed".into(),
                    (1000 + i).to_string(),
                ],
            )
        })
        .collect();
    let outputs = wait_all(peers, Duration::from_secs(120));
    let wan = site.wan_tx_bytes().unwrap() - wan_before;
    let mut reports = Vec::new();
    for (i, (out, err)) in outputs.iter().enumerate() {
        let line = out
            .lines()
            .last()
            .unwrap_or_else(|| panic!("phone {i}: no report; stderr:\n{err}"));
        let r: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("phone {i}: {e}: {line}; stderr:\n{err}"));
        common::check_against_doc("peer", &r);
        assert_eq!(r["installed"], true, "phone {i}: {line}\nstderr:\n{err}");
        reports.push(r);
    }
    // Every store holds the load, active, and every file verifies against the manifest.
    for i in 0..PHONES {
        let store = Store::new(&stores.join(format!("phone{i}")));
        assert_eq!(store.current().as_deref(), Some(manifest.load.as_str()));
        manifest
            .verify_dir(&store.load_dir(&manifest.load))
            .unwrap_or_else(|e| panic!("phone {i}: {e}"));
    }
    for (fi, f) in manifest.files.iter().enumerate() {
        let roots = reports
            .iter()
            .filter(|r| r["files"][fi]["role"] == "root")
            .count();
        if roots != 1 {
            for (i, (_, err)) in outputs.iter().enumerate().take(2) {
                eprintln!("--- phone {i} stderr:\n{err}");
            }
        }
        assert_eq!(roots, 1, "{}: exactly one root", f.name);
        for (i, r) in reports.iter().enumerate() {
            let kids = r["files"][fi]["max_children"].as_u64().unwrap();
            assert!(kids <= 2, "phone {i} had {kids} children for {}", f.name);
            assert_eq!(r["files"][fi]["corrupt_chunks"], 0);
        }
    }
    let origin_bytes: u64 = reports
        .iter()
        .flat_map(|r| r["files"].as_array().unwrap())
        .map(|f| f["origin_bytes"].as_u64().unwrap())
        .sum();
    let load = manifest.load_bytes();
    eprintln!(
        "WAN {wan} B for a {load} B load ({:.3} x); origin payload {origin_bytes} B",
        wan as f64 / load as f64
    );
    assert!(
        wan as f64 <= 1.05 * load as f64,
        "WAN carried {wan} B, more than 1.05 x the {load} B load"
    );
    let _ = std::fs::remove_dir_all(&root);
    let _ = std::fs::remove_dir_all(&stores);
}

/// A million junk datagrams to 4051 flood the site while three peers with `--xdp` elect and
/// download: XDP drops the junk before their sockets, and the election still converges.
#[test]
fn an_election_converges_under_a_million_junk_datagrams_with_xdp() {
    let _group = crate::common::group(module_path!());
    const PEERS: usize = 3;
    const JUNK: u64 = 1_000_000;
    let _one_at_a_time = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !common::privileged("xdp flood") || !common::tool("in.tftpd") || !common::tool("tc") {
        return;
    }
    pfs::netns::sweep_stale();
    let site = Site::build(&SiteSpec {
        phones: PEERS + 1,
        wan_kbit: Some(40_000),
        wan_burst: None,
        lan_kbit: None,
        wan_rtt_ms: None,
    })
    .expect("build the site");
    let root = scratch("origin-flood");
    let manifest: Manifest = pfs::manifest::synth_load(&root.join("load"), 9, None).unwrap();
    let _tftpd = start_tftpd(&site, &root);
    std::thread::sleep(Duration::from_millis(300));
    // The last phone floods the LAN's broadcast address with datagrams that are not election
    // messages (bad magic): bounded in count and time.
    let flooder = site.phones[PEERS].name().to_owned();
    let from = site.phone_addrs[PEERS];
    let flood = std::thread::spawn(move || {
        pfs::traffic::flood_in(
            &flooder,
            from,
            std::net::SocketAddrV4::new(std::net::Ipv4Addr::new(198, 19, 255, 255), 4051),
            JUNK,
            vec![0xa5; 64],
            Duration::from_secs(90),
        )
    });
    std::thread::sleep(Duration::from_millis(200));
    let stores = scratch("stores-flood");
    let peers: Vec<Guard> = (0..PEERS)
        .map(|i| {
            peer(
                &site,
                i,
                &[
                    "--origin".into(),
                    format!("tftp://{ORIGIN_ADDR}/load"),
                    "--store".into(),
                    stores.join(format!("phone{i}")).display().to_string(),
                    "--xdp".into(),
                    "--linger-s".into(),
                    "3".into(),
                    "--deadline-s".into(),
                    "120".into(),
                ],
            )
        })
        .collect();
    let outputs = wait_all(peers, Duration::from_secs(150));
    let (sent, secs) = flood.join().unwrap().expect("flood");
    eprintln!("flood: {sent} datagrams in {secs:.1} s");
    assert_eq!(sent, JUNK, "the whole flood was sent");
    let mut dropped = 0;
    for (i, (out, err)) in outputs.iter().enumerate() {
        let line = out
            .lines()
            .last()
            .unwrap_or_else(|| panic!("phone {i}: no report; stderr:\n{err}"));
        let r: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(r["installed"], true, "phone {i}: {line}\n{err}");
        assert!(r["xdp"].is_object(), "phone {i} ran without XDP: {err}");
        // Not one junk datagram reached the peer's socket.
        assert_eq!(r["udp_undecodable"], 0, "phone {i}: {line}");
        assert!(
            r["udp_received"].as_u64().unwrap() > 0,
            "election traffic arrived"
        );
        dropped += r["xdp"]["drop_malformed"].as_u64().unwrap();
    }
    eprintln!("XDP dropped {dropped} junk datagrams across {PEERS} peers");
    assert!(dropped > 0, "the flood overlapped the peers' runs");
    for (fi, f) in manifest.files.iter().enumerate() {
        let roots = outputs
            .iter()
            .map(|(o, _)| {
                serde_json::from_str::<serde_json::Value>(o.lines().last().unwrap()).unwrap()
            })
            .filter(|r| r["files"][fi]["role"] == "root")
            .count();
        assert_eq!(roots, 1, "{}: exactly one root under the flood", f.name);
    }
    let _ = std::fs::remove_dir_all(&root);
    let _ = std::fs::remove_dir_all(&stores);
}
