//! Benchmark harness (`cargo xtask bench NAME [--quick]`). Prints one JSON object per line.
//!
//! `chaos`: seeded fault plans in the lab and the simulator side by side (see [`chaos`]).
//!
//! `fanout`: see [`fanout`].
//!
//! `peers`: pfs pipelined against udpcast and BitTorrent on one lab site (see [`peers`]).
//!
//! `simulate`: the issue-3 targets on the deterministic simulator: 100,000 phones pipelined
//! (with store-and-forward and traditional measured in the same run for the ratios), the
//! 10,000-phone fault case, the slow-phone case, and election broadcasts at 1k/10k/100k.

mod agree;
mod chaos;
mod fanout;

use std::process::ExitCode;

use pfs::{
    phone::Mode,
    sim::{self, Report, SimConfig},
};

/// The value after `flag` in a benchmark's arguments (`--phones 60,200`), if given.
fn flag_value(args: &[String], flag: &str) -> Option<String> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

fn line(case: &str, r: &Report) {
    let mut v = serde_json::to_value(r).expect("report serialises");
    let o = v.as_object_mut().expect("object");
    o.insert("case".into(), case.into());
    o.insert("makespan_ratio".into(), (r.makespan_s / r.limit_s).into());
    o.insert(
        "wan_ratio".into(),
        (r.wan_bytes as f64 / (f64::from(r.models) * r.load_bytes as f64)).into(),
    );
    println!("{v}");
}

fn simulate(quick: bool) {
    let big = if quick { 10_000 } else { 100_000 };
    let base = |phones| SimConfig {
        phones,
        ..SimConfig::default()
    };
    line("pipelined", &sim::run(&base(big)));
    line(
        "store-and-forward",
        &sim::run(&SimConfig {
            mode: Mode::StoreAndForward,
            ..base(big)
        }),
    );
    line(
        "traditional-40",
        &sim::run(&SimConfig {
            mode: Mode::Traditional,
            ..base(40)
        }),
    );
    line(
        "faults-10k",
        &sim::run(&SimConfig {
            crash_fraction: 0.1,
            corrupt_peers: 2,
            loss: 0.01,
            ..base(10_000)
        }),
    );
    line(
        "partition-5k",
        &sim::run(&SimConfig {
            partition_fraction: 0.3,
            partition_at_s: 2.0,
            partition_for_s: 5.0,
            ..base(5000)
        }),
    );
    line(
        "slow-1k",
        &sim::run(&SimConfig {
            slow_fraction: 0.05,
            slow_mbit: 2.0,
            ..base(1000)
        }),
    );
    for n in [1_000, 10_000] {
        line(&format!("broadcasts-{n}"), &sim::run(&base(n)));
    }
}

/// Median of a few timed runs, in seconds.
fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// in.tftpd from tftpd-hpa on loopback, killed on drop.
struct Hpa(std::process::Child);
impl Drop for Hpa {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// pfs origin and tftpd-hpa serving `dir` on loopback (tftpd-hpa on a free port), for the
/// origin benchmarks side by side.
fn origins(dir: &std::path::Path) -> (pfs::origin::OriginHandle, Hpa, std::net::SocketAddr) {
    let ours = pfs::origin::spawn(pfs::origin::OriginConfig {
        root: dir.to_owned(),
        listen: "127.0.0.1:0".parse().unwrap(),
        max_sessions: 1100,
        session: Default::default(),
    })
    .expect("origin");
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let hpa_addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let hpa = Hpa(std::process::Command::new("in.tftpd")
        .args([
            "--foreground",
            "--listen",
            "--address",
            &hpa_addr.to_string(),
            "--secure",
        ])
        .arg(dir)
        .spawn()
        .expect("in.tftpd (apt-get install tftpd-hpa)"));
    std::thread::sleep(std::time::Duration::from_millis(300));
    (ours, hpa, hpa_addr)
}

/// Origin throughput, 1 and 32 concurrent clients, pfs origin vs tftpd-hpa; client fetch
/// time, pfs fetch vs curl, from the same server; then [`origin_scale`]. Loopback only.
fn origin(quick: bool) {
    use pfs::{fetch, tftp::client::ClientConfig};
    use std::{net::SocketAddr, process::Command, time::Instant};
    let dir = std::env::temp_dir().join(format!("pfs-bench-origin-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let size: u64 = if quick { 8 << 20 } else { 32 << 20 };
    std::fs::write(dir.join("image.bin"), pfs::manifest::synth_bytes(9, size)).unwrap();
    let _ = Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(&dir)
        .status();
    let (ours, _hpa, hpa_addr) = origins(&dir);
    let runs = if quick { 3 } else { 5 };
    let cfg = |blksize, windowsize| ClientConfig {
        blksize,
        windowsize,
        ..ClientConfig::default()
    };
    let out = |tag: &str| dir.join(format!("out-{tag}"));
    // Throughput with `clients` concurrent fetches of the whole image.
    let throughput = |server: SocketAddr, clients: usize, c: ClientConfig| -> f64 {
        let secs = median(
            (0..runs)
                .map(|_| {
                    let start = Instant::now();
                    std::thread::scope(|s| {
                        for i in 0..clients {
                            let (c, o) = (c.clone(), out(&format!("{}-{i}", server.port())));
                            s.spawn(move || {
                                fetch::fetch(server, "image.bin", &o, c).expect("fetch")
                            });
                        }
                    });
                    start.elapsed().as_secs_f64()
                })
                .collect(),
        );
        (clients as f64 * size as f64 * 8.0 / secs) / 1e9
    };
    for clients in [1usize, 32] {
        for (blksize, window) in [(1428u16, 1u16), (1428, 16), (8192, 16)] {
            let hpa = throughput(hpa_addr, clients, cfg(blksize, window));
            let pfs_gbps = throughput(ours.addr, clients, cfg(blksize, window));
            println!(
                "{}",
                serde_json::json!({"bench": "origin", "clients": clients, "blksize": blksize,
                    "windowsize": window, "bytes_per_client": size, "pfs_origin_gbps": pfs_gbps,
                    "tftpd_hpa_gbps": hpa, "ratio": pfs_gbps / hpa})
            );
        }
    }
    // Client: pfs fetch vs curl, same server (tftpd-hpa), same blksize.
    for blksize in [512u16, 1428] {
        let ours_s = median(
            (0..runs)
                .map(|_| {
                    let t = Instant::now();
                    fetch::fetch(hpa_addr, "image.bin", &out("c"), cfg(blksize, 1)).expect("fetch");
                    t.elapsed().as_secs_f64()
                })
                .collect(),
        );
        let curl_s = median(
            (0..runs)
                .map(|_| {
                    let t = Instant::now();
                    let ok = Command::new("curl")
                        .args(["-sS", "--tftp-blksize", &blksize.to_string()])
                        .arg(format!("tftp://{hpa_addr}/image.bin"))
                        .arg("-o")
                        .arg(out("curl"))
                        .status()
                        .expect("curl")
                        .success();
                    assert!(ok);
                    t.elapsed().as_secs_f64()
                })
                .collect(),
        );
        println!(
            "{}",
            serde_json::json!({"bench": "client", "server": "tftpd-hpa", "blksize": blksize,
                "bytes": size, "pfs_fetch_s": ours_s, "curl_s": curl_s, "ratio": ours_s / curl_s})
        );
    }
    origin_scale(quick, &dir, &ours, hpa_addr);
    drop(ours);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The origin at scale: `pfs fleet` (virtual phones on the engine, each pulling the load over
/// TFTP) against pfs origin and tftpd-hpa at 1, 32, 256 and 1000 concurrent clients,
/// lock-step and windowed: goodput, p99 completion, failed transfers. Loopback only.
fn origin_scale(
    quick: bool,
    dir: &std::path::Path,
    ours: &pfs::origin::OriginHandle,
    hpa: std::net::SocketAddr,
) {
    use std::sync::atomic::Ordering;
    // A small load, so 1000 phones x 2 servers x 2 modes fit a shared machine.
    let load = dir.join("scale");
    std::fs::create_dir_all(&load).unwrap();
    let size: u64 = if quick { 128 << 10 } else { 1 << 20 };
    std::fs::write(load.join("scale.bin"), pfs::manifest::synth_bytes(11, size)).unwrap();
    let manifest = pfs::manifest::manifest_for_dir(&load, 64 << 10, None).expect("manifest");
    std::fs::write(
        load.join(pfs::manifest::MANIFEST_FILE),
        serde_json::to_vec(&manifest).unwrap(),
    )
    .unwrap();
    let _ = std::process::Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(dir)
        .status();
    let store = pfs::store::scratch_base().join(format!("pfs-bench-scale-{}", std::process::id()));
    for clients in [1usize, 32, 256, 1000] {
        for window in [1u16, 16] {
            for (server, addr) in [("pfs-origin", ours.addr), ("tftpd-hpa", hpa)] {
                // The peak of this run alone.
                ours.stats.peak_sessions.store(
                    ours.stats.active_sessions.load(Ordering::Relaxed),
                    Ordering::Relaxed,
                );
                let store = store.join(format!("{server}-{clients}-{window}"));
                let cfg = scale_fleet(clients, addr, window, store, quick);
                // Small fleets finish in milliseconds: the median of a few runs.
                let runs = match (clients, quick) {
                    (..=32, _) => 5,
                    (_, true) => 1,
                    (_, false) => 3,
                };
                let report = median_fleet_run(&cfg, runs);
                match report {
                    Ok(r) => println!(
                        "{}",
                        serde_json::json!({"bench": "origin-scale", "server": server,
                            "clients": clients, "windowsize": window, "bytes_per_client": size,
                            "runs": runs,
                            "completed": r.completed, "failed": r.phones - r.completed,
                            "goodput_mbit": r.goodput_mbit, "p50_s": r.completion.p50_s,
                            "p99_s": r.completion.p99_s, "refused": r.origin_refused,
                            "timeouts": r.origin_timeouts, "errors": r.origin_errors,
                            "pfs_origin_peak_sessions": (server == "pfs-origin")
                                .then(|| ours.stats.peak_sessions.load(Ordering::Relaxed))})
                    ),
                    Err(e) => println!(
                        "{}",
                        serde_json::json!({"bench": "origin-scale", "server": server,
                            "clients": clients, "windowsize": window, "error": e.to_string()})
                    ),
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(&store);
}

/// The fleet of [`origin_scale`]: `clients` phones on loopback pulling the small load from
/// `addr` with TFTP window `window`.
fn scale_fleet(
    clients: usize,
    addr: std::net::SocketAddr,
    window: u16,
    store: std::path::PathBuf,
    quick: bool,
) -> pfs::fleet::FleetConfig {
    use pfs::{engine::Backend, fleet::FleetConfig, tftp::client::ClientConfig};
    FleetConfig {
        phones: clients,
        origin: format!("tftp://{addr}/scale"),
        iface: "lo".into(),
        netns: None,
        model: "CP-7961G".into(),
        store,
        port_base: 61_000,
        backend: Backend::Auto,
        deadline: std::time::Duration::from_secs(if quick { 120 } else { 600 }),
        tftp: ClientConfig {
            windowsize: window,
            ..ClientConfig::unfragmented()
        },
        seed: 1,
        sharing: None,
    }
}

/// The fleet run with the median goodput of `runs`, or the first error.
fn median_fleet_run(
    cfg: &pfs::fleet::FleetConfig,
    runs: usize,
) -> Result<pfs::fleet::FleetReport, pfs::fleet::FleetError> {
    use pfs::fleet::{prepare_fleet, run_fleet};
    let mut reports = Vec::new();
    for _ in 0..runs {
        let r = prepare_fleet(cfg)
            .and_then(|(ready, prepare_s)| run_fleet(cfg, ready, prepare_s, None));
        let _ = std::fs::remove_dir_all(&cfg.store);
        reports.push(r?);
    }
    reports.sort_by(|a, b| a.goodput_mbit.total_cmp(&b.goodput_mbit));
    Ok(reports.swap_remove(reports.len() / 2))
}

/// Only [`origin_scale`], with its own pfs origin and tftpd-hpa.
fn origin_scale_only(quick: bool) {
    let dir = std::env::temp_dir().join(format!("pfs-bench-scale-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (ours, _hpa, hpa_addr) = origins(&dir);
    origin_scale(quick, &dir, &ours, hpa_addr);
    drop(ours);
    let _ = std::fs::remove_dir_all(&dir);
}

/// CPU time of the calling thread, in seconds.
fn thread_cpu() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid clock id and a valid out pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// Datagrams received on `socket` (which has a read timeout) until `stop` is set and the
/// socket has gone quiet, and the receiving thread's CPU seconds meanwhile.
fn count_until_stopped(
    socket: &std::net::UdpSocket,
    stop: &std::sync::atomic::AtomicBool,
) -> (u64, f64) {
    let cpu0 = thread_cpu();
    let mut got = 0u64;
    let mut buf = [0u8; 2048];
    // Bounded: stops when told and the socket has gone quiet.
    loop {
        match socket.recv(&mut buf) {
            Ok(_) => got += 1,
            Err(_) if stop.load(std::sync::atomic::Ordering::Relaxed) => break,
            Err(_) => {}
        }
    }
    (got, thread_cpu() - cpu0)
}

/// The XDP program's count of malformed datagrams dropped on `target` (0 without XDP).
fn xdp_dropped_malformed(target: &pfs::xdp::Target, with_xdp: bool) -> u64 {
    if with_xdp {
        pfs::xdp::stats(target)
            .unwrap()
            .get(pfs_common::Counter::DropMalformed)
    } else {
        0
    }
}

/// Junk flood to UDP 4051 on a veth between two namespaces, received (a) by a user-space
/// socket without XDP and (b) with the XDP program attached, which drops the junk. Reports the
/// offered rate, what reached the socket, what XDP counted, and the receiving thread's CPU.
fn xdp(quick: bool) {
    use pfs::{
        netns::{Netns, VethPair},
        xdp::{self, AttachMode, Target},
    };
    use std::{
        net::{Ipv4Addr, SocketAddrV4, UdpSocket},
        sync::{
            Arc,
            atomic::{AtomicBool, Ordering},
        },
        time::Duration,
    };
    assert!(
        pfs::netns::can_create(),
        "the xdp benchmark needs root and iproute2"
    );
    let flood: u64 = if quick { 200_000 } else { 1_000_000 };
    let tx = Netns::create("bx-tx").expect("netns");
    let rx = Netns::create("bx-rx").expect("netns");
    let link = VethPair::create(
        &tx,
        "pfsb-a",
        Ipv4Addr::new(198, 18, 3, 1),
        &rx,
        "pfsb-b",
        Ipv4Addr::new(198, 18, 3, 2),
        24,
    )
    .expect("veth");
    let target = Target {
        iface: link.b_name.clone(),
        netns: Some(rx.name().to_owned()),
    };
    let dest = SocketAddrV4::new(link.b_addr, 4051);
    let from = link.a_addr;
    for with_xdp in [false, true] {
        if with_xdp {
            xdp::attach(&target, AttachMode::Auto, &["CP-7961G".into()]).expect("attach");
        }
        let before = xdp_dropped_malformed(&target, with_xdp);
        let socket = rx
            .run(|| UdpSocket::bind("0.0.0.0:4051"))
            .expect("netns")
            .expect("bind");
        socket
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let reader = std::thread::spawn(move || count_until_stopped(&socket, &stop2));
        // Unpaced sender, bounded in count and time; addresses checked to be in the lab range.
        let (sent, secs) = pfs::traffic::flood_in(
            tx.name(),
            from,
            dest,
            flood,
            vec![0xa5; 64],
            Duration::from_secs(60),
        )
        .expect("flood");
        std::thread::sleep(Duration::from_millis(200));
        stop.store(true, Ordering::Relaxed);
        let (got, cpu) = reader.join().unwrap();
        let xdp_dropped = xdp_dropped_malformed(&target, with_xdp) - before;
        println!(
            "{}",
            serde_json::json!({"bench": "xdp-flood", "xdp": with_xdp, "sent": sent,
                "offered_pps": sent as f64 / secs, "socket_received": got,
                "socket_pps": got as f64 / secs, "xdp_dropped": xdp_dropped,
                "xdp_pps": xdp_dropped as f64 / secs, "reader_cpu_s": cpu,
                "reader_cpu_ns_per_pkt": if got > 0 { cpu * 1e9 / got as f64 } else { 0.0 }})
        );
        if with_xdp {
            xdp::detach(&target).expect("detach");
        }
    }
    peer_cpu_under_flood(&tx, &rx, &link, &target, quick);
}

/// A `pfs serve` peer (the engine, the election socket, root of a held load) in the receiving
/// namespace for a fixed time: its thread's CPU with no flood, under a junk flood without XDP,
/// and under the same flood with XDP attached.
fn peer_cpu_under_flood(
    tx: &pfs::netns::Netns,
    rx: &pfs::netns::Netns,
    link: &pfs::netns::VethPair,
    target: &pfs::xdp::Target,
    quick: bool,
) {
    use pfs::peer::{Peer, PeerOptions, Source};
    use std::time::Duration;
    let dir = std::env::temp_dir().join(format!("pfs-bench-xdp-load-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    pfs::manifest::synth_load(&dir, 3, None).expect("load");
    let run_for = Duration::from_secs(if quick { 2 } else { 4 });
    for (phase, flood, with_xdp) in [
        ("idle", false, false),
        ("flood-no-xdp", true, false),
        ("flood-xdp", true, true),
    ] {
        if with_xdp {
            pfs::xdp::attach(target, pfs::xdp::AttachMode::Auto, &["CP-7961G".into()])
                .expect("attach");
        }
        let opts = PeerOptions {
            iface: link.b_name.clone(),
            model: "CP-7961G".into(),
            source: Source::Serve(dir.clone()),
            store: dir.clone(),
            mode: pfs::phone::Mode::Pipelined,
            fanout: 64,
            backend: pfs::engine::Backend::Auto,
            public_key: None,
            tftp: Default::default(),
            linger: Some(run_for),
            deadline: None,
            seed: 7,
            port: 4051,
            max_site_phones: pfs::phone::Config::default().n_max,
        };
        let ns = rx.name().to_owned();
        let peer = std::thread::spawn(move || {
            pfs::netns::enter(&ns).expect("enter netns");
            let cpu0 = thread_cpu();
            let report = Peer::new(opts).and_then(Peer::run).expect("peer");
            (thread_cpu() - cpu0, report)
        });
        let sent = if flood {
            let (sent, _) = pfs::traffic::flood_in(
                tx.name(),
                link.a_addr,
                std::net::SocketAddrV4::new(link.b_addr, 4051),
                u64::MAX,
                vec![0xa5; 64],
                run_for + Duration::from_millis(500),
            )
            .expect("flood");
            sent
        } else {
            0
        };
        let (cpu, report) = peer.join().expect("peer thread");
        println!(
            "{}",
            serde_json::json!({"bench": "xdp-peer-cpu", "phase": phase, "xdp": with_xdp,
                "junk_sent": sent, "peer_cpu_s": cpu, "peer_seconds": report.seconds,
                "peer_cpu_fraction": cpu / report.seconds,
                "socket_junk": report.udp_undecodable})
        );
        if with_xdp {
            pfs::xdp::detach(target).expect("detach");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `lab`: the issue-7 targets on real namespaces. 200 phones, 1 model, 10 Mbit/s WAN,
/// pipelined; 40 phones traditional on the same WAN; the README default (60 phones, 2 models,
/// 50 Mbit/s, compare). `--quick`: 50 and 10 phones, and the default without traditional.
fn lab(quick: bool) {
    use pfs::lab::{Lab, LabConfig};
    assert!(pfs::netns::can_create(), "the lab benchmark needs root");
    let line = |case: &str, r: &pfs::lab::LabReport, wall: f64| {
        let mut v = serde_json::to_value(r).expect("report");
        let o = v.as_object_mut().expect("object");
        // Per-phone and per-100 ms series are for the lab's plots, not the benchmark line.
        for series in ["trees", "wan_samples", "phone_times"] {
            o.remove(series);
        }
        o.insert("case".into(), case.into());
        o.insert("wall_s".into(), wall.into());
        o.insert("makespan_ratio".into(), (r.makespan_s / r.limit_s).into());
        o.insert(
            "wan_ratio".into(),
            (r.wan_bytes as f64 / (f64::from(r.models) * r.load_bytes as f64)).into(),
        );
        println!("{v}");
    };
    // Runs each mode on one topology; a repeated mode is reported per run and as a median.
    let one = |phones: usize, models: Vec<String>, wan: f64, modes: &[Mode], case: &str| {
        let t0 = std::time::Instant::now();
        let lab = Lab::build(LabConfig {
            phones,
            models,
            wan_mbit: wan,
            progress: false,
            ..LabConfig::default()
        })
        .expect("lab");
        let mut ratios: Vec<(Mode, f64)> = Vec::new();
        for &m in modes {
            let t = std::time::Instant::now();
            let r = lab.run(m, None).expect("run");
            line(&format!("{case}-{m:?}"), &r, t.elapsed().as_secs_f64());
            ratios.push((m, r.makespan_s / r.limit_s));
        }
        for &m in modes
            .iter()
            .filter(|&&m| modes.iter().filter(|&&x| x == m).count() > 1)
        {
            let mut v: Vec<f64> = ratios.iter().filter(|r| r.0 == m).map(|r| r.1).collect();
            if v.is_empty() {
                continue; // reported already
            }
            v.sort_by(f64::total_cmp);
            eprintln!(
                "{case}-{m:?}: median makespan {:.3} x limit over {} runs {v:.3?}",
                v[v.len() / 2],
                v.len()
            );
            ratios.retain(|r| r.0 != m);
        }
        drop(lab);
        eprintln!(
            "{case}: {:.1} s including setup and teardown",
            t0.elapsed().as_secs_f64()
        );
    };
    let m1 = vec!["CP-7961G".to_string()];
    let m2 = vec!["CP-7961G".to_string(), "CP-7941G".to_string()];
    one(
        if quick { 50 } else { 200 },
        m1.clone(),
        10.0,
        if quick {
            &[Mode::Pipelined]
        } else {
            &[Mode::Pipelined; 3]
        },
        "wan10",
    );
    one(
        if quick { 10 } else { 40 },
        m1,
        10.0,
        &[Mode::Traditional],
        "wan10",
    );
    let modes: &[Mode] = if quick {
        &[Mode::StoreAndForward, Mode::Pipelined]
    } else {
        &[Mode::Traditional, Mode::StoreAndForward, Mode::Pipelined]
    };
    one(60, m2, 50.0, modes, "default");
}

/// `peers` (issue 18): pfs pipelined against udpcast, BitTorrent and uftp on the same site, 60
/// and 200 phones of 1 model on 100 Mbit/s ports, WAN-bound (10 Mbit/s WAN) and LAN-bound (WAN
/// as fast as a port). `--quick`: 10 phones; `--phones N`: N phones only; both regimes. One
/// JSON object per run.
fn peers(quick: bool, phones: Option<usize>) {
    use pfs::{
        lab::{Lab, LabConfig},
        peers::Peer,
    };
    assert!(pfs::netns::can_create(), "the peers benchmark needs root");
    const PEERS: [Peer; 3] = [Peer::Udpcast, Peer::Bittorrent, Peer::Uftp];
    for p in PEERS {
        pfs::peers::check_installed(p).expect("cargo xtask setup installs it");
    }
    let sizes: Vec<usize> = match phones {
        Some(n) => vec![n],
        None if quick => vec![10],
        None => vec![60, 200],
    };
    for phones in sizes {
        for (regime, wan) in [("wan-bound", 10.0), ("lan-bound", 100.0)] {
            let lab = Lab::build(LabConfig {
                phones,
                models: vec!["CP-7961G".into()],
                wan_mbit: wan,
                lan_mbit: Some(100.0),
                progress: false,
                deadline: std::time::Duration::from_secs(300),
                ..LabConfig::default()
            })
            .expect("lab");
            let mut runs = vec![lab.run(Mode::Pipelined, None).expect("pfs run")];
            for p in PEERS {
                runs.push(pfs::peers::run(&lab, p).expect("peer run"));
            }
            for r in &runs {
                let mut v = serde_json::to_value(r).expect("report");
                let o = v.as_object_mut().expect("object");
                for series in ["trees", "wan_samples", "phone_times", "commands"] {
                    o.remove(series);
                }
                o.insert(
                    "case".into(),
                    format!("{phones}-{regime}-{}", r.mode).into(),
                );
                o.insert("makespan_ratio".into(), (r.makespan_s / r.limit_s).into());
                o.insert(
                    "wan_link_ratio".into(),
                    (r.wan_link_bytes as f64 / (f64::from(r.models) * r.load_bytes as f64)).into(),
                );
                println!("{v}");
            }
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    match args.first().map(String::as_str) {
        Some("simulate") => {
            simulate(quick);
            ExitCode::SUCCESS
        }
        Some("origin") => {
            origin(quick);
            ExitCode::SUCCESS
        }
        Some("origin-scale") => {
            origin_scale_only(quick);
            ExitCode::SUCCESS
        }
        Some("xdp") => {
            xdp(quick);
            ExitCode::SUCCESS
        }
        Some("lab") => {
            lab(quick);
            ExitCode::SUCCESS
        }
        Some("fanout") => {
            fanout::fanout(quick);
            ExitCode::SUCCESS
        }
        Some("peers") => {
            // `--phones N`: one size only (the lab is held for one size at a time).
            let phones = args
                .iter()
                .position(|a| a == "--phones")
                .and_then(|i| args.get(i + 1)?.parse().ok());
            peers(quick, phones);
            ExitCode::SUCCESS
        }
        Some("agree") => {
            agree::agree(&args[1..]);
            ExitCode::SUCCESS
        }
        Some("chaos") => {
            chaos::chaos(&args[1..]);
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!(
                "usage: cargo xtask bench simulate|origin|origin-scale|xdp|fanout|lab|peers|agree|chaos [--quick] [--json] [--phones N (peers)]\n\
                 (every benchmark prints one JSON object per line)"
            );
            ExitCode::from(2)
        }
    }
}
