//! XDP counting on a real veth between two namespaces, driven through the `pfs` binary.

use crate::common;

use std::{
    net::{Ipv4Addr, SocketAddrV4},
    process::{Command, Output},
    time::Duration,
};

use pfs::{
    netns::{Netns, VethPair},
    traffic::{self, Burst},
};

fn pfs(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pfs"))
        .args(args)
        .output()
        .expect("run pfs")
}

fn ok(args: &[&str]) -> String {
    let out = pfs(args);
    assert!(
        out.status.success(),
        "pfs {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Detaches through the CLI when the test ends, however it ends.
struct Detach<'a>(&'a str, &'a str);
impl Drop for Detach<'_> {
    fn drop(&mut self) {
        let _ = pfs(&["xdp", "detach", "--iface", self.0, "--netns", self.1]);
    }
}

#[test]
fn counts_exactly_1000_broadcasts_to_4051_and_100_other_datagrams() {
    let _group = crate::common::group(module_path!());
    if !common::privileged("xdp counts") {
        return;
    }
    let (sender, receiver, link) = veth_between('x', 1);
    let ns = receiver.name().to_owned();
    let iface = link.b_name.clone();

    let attached = ok(&["xdp", "attach", "--iface", &iface, "--netns", &ns]);
    let _detach = Detach(&iface, &ns);
    assert!(attached.contains("attached to pfsx-b"), "{attached}");

    // A second attach must be refused, not stacked.
    let again = pfs(&["xdp", "attach", "--iface", &iface, "--netns", &ns]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already attached"));

    let send = |port: u16, count: u32| {
        traffic::send_in(
            sender.name(),
            Burst {
                from: link.a_addr,
                to: SocketAddrV4::new(link.broadcast(), port),
                count,
                payload: vec![0xab; 64],
                deadline: Duration::from_secs(30),
            },
        )
        .expect("send")
    };
    assert_eq!(send(4051, 1000), 1000);
    assert_eq!(send(5353, 100), 100);
    std::thread::sleep(Duration::from_millis(300));

    let json = ok(&["xdp", "stats", "--iface", &iface, "--netns", &ns, "--json"]);
    let stats: serde_json::Value = serde_json::from_str(&json).expect("stats JSON");
    assert_eq!(stats["counters"]["udp_4051"], 1000, "{json}");
    assert_eq!(stats["counters"]["other"], 100, "{json}");

    // --watch samples: same totals, and a rate of 0 since nothing is being sent now.
    let watch = ok(&[
        "xdp", "stats", "--iface", &iface, "--netns", &ns, "--json", "--watch", "0.1", "--count",
        "2",
    ]);
    let samples: Vec<serde_json::Value> = watch
        .lines()
        .map(|l| serde_json::from_str(l).expect("sample JSON"))
        .collect();
    assert_eq!(samples.len(), 2, "{watch}");
    for s in &samples {
        assert_eq!(s["counters"]["udp_4051"], 1000, "{watch}");
        assert_eq!(s["per_second"]["udp_4051"], 0.0, "{watch}");
    }

    // bpftool reads the same pinned map: per-CPU values must sum to the same totals.
    let pin = format!("/sys/fs/bpf/pfs/{ns}/{iface}/PFS_COUNTERS");
    let dump = bpftool_dump(&pin);
    let sum = |slot: u64| per_cpu_sum(&dump, slot);
    assert_eq!(sum(0), 1000);
    assert_eq!(sum(1), 100);

    ok(&["xdp", "detach", "--iface", &iface, "--netns", &ns]);
    assert!(!std::path::Path::new(&pin).exists(), "pins left behind");
    let after = pfs(&["xdp", "stats", "--iface", &iface, "--netns", &ns]);
    assert!(!after.status.success());
    assert!(String::from_utf8_lossy(&after.stderr).contains("not attached"));
    // The interface no longer carries an XDP program.
    let link_info = receiver
        .ip(&["-d", "link", "show", &iface])
        .expect("ip link");
    assert!(!link_info.contains("prog/xdp"), "{link_info}");
}

#[test]
fn namespaces_are_removed_when_the_guard_drops_even_on_panic() {
    let _group = crate::common::group(module_path!());
    if !common::privileged("netns teardown") {
        return;
    }
    let name = std::thread::spawn(|| {
        let ns = Netns::create("xt-panic").expect("netns");
        let name = ns.name().to_owned();
        assert!(pfs::netns::netns_path(&name).exists());
        std::panic::panic_any(name)
    })
    .join()
    .expect_err("thread panics");
    let name = name.downcast::<String>().expect("name");
    assert!(
        !pfs::netns::netns_path(&name).exists(),
        "{name} survived a panic"
    );
}

#[test]
fn cli_errors_are_one_clear_line() {
    let _group = crate::common::group(module_path!());
    let out = pfs(&["xdp", "stats", "--iface", "pfs-no-such-if"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("pfs: ") && (err.contains("not attached") || err.contains("needs root")),
        "{err}"
    );
}

/// bpftool prints numbers as JSON numbers when the map has BTF, else as little-endian hex bytes.
fn bpftool_number(v: &serde_json::Value) -> u64 {
    if let Some(n) = v.as_u64() {
        return n;
    }
    let bytes = v.as_array().expect("number or byte array");
    bytes.iter().rev().fold(0, |acc, b| {
        let hex = b.as_str().expect("hex byte").trim_start_matches("0x");
        (acc << 8) | u64::from_str_radix(hex, 16).expect("hex")
    })
}

/// Namespaces `x{tag}-tx` and `x{tag}-rx` joined by a veth (`pfs{tag}-a`, `pfs{tag}-b`) on
/// 198.18.`subnet`.0/24.
fn veth_between(tag: char, subnet: u8) -> (Netns, Netns, VethPair) {
    let sender = Netns::create(&format!("x{tag}-tx")).expect("netns");
    let receiver = Netns::create(&format!("x{tag}-rx")).expect("netns");
    let link = VethPair::create(
        &sender,
        &format!("pfs{tag}-a"),
        Ipv4Addr::new(198, 18, subnet, 1),
        &receiver,
        &format!("pfs{tag}-b"),
        Ipv4Addr::new(198, 18, subnet, 2),
        24,
    )
    .expect("veth");
    (sender, receiver, link)
}

/// bpftool's JSON dump of the pinned map `pin`.
fn bpftool_dump(pin: &str) -> serde_json::Value {
    let dump = Command::new("bpftool")
        .args(["-j", "map", "dump", "pinned", pin])
        .output()
        .expect("run bpftool");
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    serde_json::from_slice(&dump.stdout).expect("bpftool JSON")
}

/// Counter `slot` of a per-CPU map dump, summed over the CPUs.
fn per_cpu_sum(dump: &serde_json::Value, slot: u64) -> u64 {
    let entry = dump
        .as_array()
        .expect("array")
        .iter()
        .find(|e| bpftool_number(&e["key"]) == slot)
        .expect("slot present");
    entry["values"]
        .as_array()
        .expect("per-cpu values")
        .iter()
        .map(|v| bpftool_number(&v["value"]))
        .sum()
}

/// Every datagram `socket` receives until it has been quiet for its read timeout (at most
/// 1000).
fn drain(socket: &std::net::UdpSocket) -> Vec<Vec<u8>> {
    let mut received = Vec::new();
    let mut buf = [0u8; 2048];
    for _ in 0..1000 {
        match socket.recv_from(&mut buf) {
            Ok((n, _)) => received.push(buf[..n].to_vec()),
            Err(_) => break,
        }
    }
    received
}

/// The known mix sent to 4051, and the payloads that must pass XDP to the socket, in order:
/// 20 adverts (pass), 10 of them again (duplicates), 7 of another model, 5 malformed, 4 joins
/// (never de-duplicated: all pass).
fn known_mix() -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let mut mix: Vec<Vec<u8>> = Vec::new();
    let mut expected_payloads: Vec<Vec<u8>> = Vec::new();
    for seq in 1..=20 {
        mix.push(advert("CP-7961G", seq)); // valid: pass
        expected_payloads.push(advert("CP-7961G", seq));
    }
    for seq in 1..=10 {
        mix.push(advert("CP-7961G", seq)); // duplicates: drop
    }
    for seq in 1..=7 {
        mix.push(advert("CP-7941G", seq)); // another model: drop
    }
    let good = advert("CP-7961G", 99);
    let mut bad_magic = good.clone();
    bad_magic[0] = b'X';
    let mut bad_version = good.clone();
    bad_version[2] = 9;
    let truncated = good[..good.len() - 3].to_vec();
    let mut long_declared = good.clone();
    long_declared[7] = long_declared[7].wrapping_add(5);
    let tcp_type_on_udp = pfs::wire::Message::Have {
        hierarchy: pfs::wire::HierarchyId(1),
        verified: 2,
    }
    .encode()
    .unwrap();
    mix.extend([
        bad_magic,
        bad_version,
        truncated,
        long_declared,
        tcp_type_on_udp,
    ]);
    for _ in 0..4 {
        let join = pfs::wire::Message::Join {
            key: pfs::wire::HierarchyKey {
                model: "CP-7961G".into(),
                file: "apps".into(),
                digest: [1; 32],
            },
            xid: 1,
            max_children: 2,
            link_kbit: 100_000,
            verified: 0,
            exclude: vec![],
        }
        .encode()
        .unwrap();
        mix.push(join.clone()); // joins are not de-duplicated: all pass
        expected_payloads.push(join);
    }
    (mix, expected_payloads)
}

fn advert(model: &str, seq: u32) -> Vec<u8> {
    pfs::wire::Message::Advert {
        key: pfs::wire::HierarchyKey {
            model: model.into(),
            file: "cvm41sccp.9-4-2SR3-1S.sbn".into(),
            digest: [7; 32],
        },
        xid: 0x0800_27f8,
        strength: 0x31d4_d43d,
        tier: pfs::wire::Tier::Tentative,
        seq,
        depth: 0,
        free_slots: 2,
        verified: 0,
    }
    .encode()
    .unwrap()
}

#[test]
fn validates_deduplicates_filters_and_counts_a_known_mix() {
    let _group = crate::common::group(module_path!());
    if !common::privileged("xdp known mix") {
        return;
    }
    let (sender, receiver, link) = veth_between('m', 2);
    let ns = receiver.name().to_owned();
    let iface = link.b_name.clone();
    ok(&[
        "xdp", "attach", "--iface", &iface, "--netns", &ns, "--model", "CP-7961G",
    ]);
    let _detach = Detach(&iface, &ns);

    // What a peer in the receiving namespace gets.
    let socket = receiver
        .run(|| std::net::UdpSocket::bind("0.0.0.0:4051"))
        .expect("netns")
        .expect("bind 4051");
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();

    let (mix, expected_payloads) = known_mix();
    let to = SocketAddrV4::new(link.broadcast(), 4051);
    let sent =
        traffic::send_payloads_in(sender.name(), link.a_addr, to, mix, Duration::from_secs(30))
            .expect("send");
    assert_eq!(sent, 46);
    let others = traffic::send_in(
        sender.name(),
        Burst {
            from: link.a_addr,
            to: SocketAddrV4::new(link.broadcast(), 5353),
            count: 3,
            payload: vec![1; 10],
            deadline: Duration::from_secs(5),
        },
    )
    .expect("send");
    assert_eq!(others, 3);

    let received = drain(&socket);
    assert_eq!(
        received, expected_payloads,
        "the peer socket got exactly what should pass"
    );

    let json = ok(&["xdp", "stats", "--iface", &iface, "--netns", &ns, "--json"]);
    let stats: serde_json::Value = serde_json::from_str(&json).unwrap();
    let c = &stats["counters"];
    for (name, want) in [
        ("udp_4051", 46),
        ("other", 3),
        ("advert", 20),
        ("join", 4),
        ("accept", 0),
        ("drop_duplicate", 10),
        ("drop_other_model", 7),
        ("drop_malformed", 5),
    ] {
        assert_eq!(c[name], want, "{name}: {json}");
    }
    // bpftool reads the same pinned counters.
    let pin = format!("/sys/fs/bpf/pfs/{ns}/{iface}/PFS_COUNTERS");
    let dump = bpftool_dump(&pin);
    let slot = |i: u64| per_cpu_sum(&dump, i);
    assert_eq!((slot(2), slot(8), slot(9), slot(10)), (20, 5, 10, 7));
}

/// `ip netns exec NS pfs xdp attach --iface IF` used to print "attached" and exit 0 while the
/// pins went into the private /sys that `ip netns exec` mounts, and the attachment vanished
/// with the process. It must fail and point to `--netns`, and leave nothing attached.
#[test]
fn attach_under_ip_netns_exec_fails_instead_of_vanishing() {
    let _group = crate::common::group(module_path!());
    if !common::privileged("xdp attach under ip netns exec") || !pfs::xdp::is_built() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            assert!(
                pfs::xdp::is_built(),
                "CI=true: the XDP object must be built"
            );
        }
        return;
    }
    let a = Netns::create("xe-a").expect("netns");
    let b = Netns::create("xe-b").expect("netns");
    let link = VethPair::create(
        &a,
        "pfsxe-a",
        Ipv4Addr::new(198, 18, 2, 1),
        &b,
        "pfsxe-b",
        Ipv4Addr::new(198, 18, 2, 2),
        24,
    )
    .expect("veth");
    let ns = b.name().to_owned();
    let iface = link.b_name.clone();
    let _detach = Detach(&iface, &ns);
    let out = Command::new("ip")
        .args(["netns", "exec", &ns, env!("CARGO_BIN_EXE_pfs")])
        .args(["xdp", "attach", "--iface", &iface])
        .output()
        .expect("ip netns exec pfs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "claimed success: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(stderr.contains("--netns"), "{stderr}");
    // Nothing stays attached: the interface has no XDP program.
    let show = Command::new("ip")
        .args(["-n", &ns, "-d", "link", "show", &iface])
        .output()
        .expect("ip link show");
    let show = String::from_utf8_lossy(&show.stdout);
    assert!(!show.contains("prog/xdp"), "{show}");
    // The supported way works.
    let attached = ok(&["xdp", "attach", "--iface", &iface, "--netns", &ns]);
    assert!(attached.contains("attached to"), "{attached}");
}
