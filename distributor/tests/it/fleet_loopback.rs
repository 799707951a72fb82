//! Virtual phones on the engine against the embedded origin, on loopback (no root needed):
//! every transfer must end cleanly on both sides. The server counts a transfer as done only
//! when the client's final ACK arrives, so this catches a client that drops its last ACK (the
//! io_uring backend once closed the socket before that send left, and the core's close raced
//! it), which costs the server its retransmission budget on every file.

use crate::common;

use std::{
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use pfs::{
    engine::Backend,
    fleet::{FleetConfig, prepare_fleet, run_fleet},
    manifest::synth_load,
    origin::{self, OriginConfig},
    tftp::client::ClientConfig,
};

#[test]
fn every_origin_transfer_ends_with_the_clients_final_ack() {
    let _group = crate::common::group(module_path!());
    let base = common::scratch("fleet-lo");
    let srv = base.join("srv");
    let manifest = synth_load(&srv.join("load"), 5, None).unwrap();
    let origin = origin::spawn(OriginConfig {
        root: srv.clone(),
        listen: "127.0.0.1:0".parse().unwrap(),
        max_sessions: 64,
        session: Default::default(),
    })
    .unwrap();
    let phones = 3;
    for (round, backend) in [Backend::Uring, Backend::Syscall].into_iter().enumerate() {
        let before = origin.stats.transfers_ok.load(Ordering::Relaxed);
        let cfg = FleetConfig {
            phones,
            origin: format!("tftp://{}/load", origin.addr),
            iface: "lo".into(),
            netns: None,
            model: "CP-7961G".into(),
            store: base.join(format!("stores-{round}")),
            // Above the ephemeral range: the origin's transfer sockets take ephemeral ports.
            port_base: 61_100 + 100 * round as u16,
            backend,
            deadline: Duration::from_secs(60),
            tftp: ClientConfig::unfragmented(),
            seed: 7,
            sharing: None,
        };
        let (ready, prepare_s) = prepare_fleet(&cfg).unwrap();
        let report = run_fleet(&cfg, ready, prepare_s, None).unwrap();
        assert_eq!(report.completed as usize, phones, "{backend:?}: {report:?}");
        assert_eq!(report.corrupt_installs, 0);
        assert_eq!(
            report.origin_timeouts + report.origin_refused,
            0,
            "{report:?}"
        );
        // The manifest (fetched at power-on) and every file, once per phone, each closed by
        // the client's last ACK within moments, not by the server's give-up 30 s later.
        let want = before + phones * (1 + manifest.files.len());
        let until = Instant::now() + Duration::from_secs(3);
        while origin.stats.transfers_ok.load(Ordering::Relaxed) < want && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(
            origin.stats.transfers_ok.load(Ordering::Relaxed),
            want,
            "{backend:?}"
        );
        assert_eq!(origin.stats.transfers_failed.load(Ordering::Relaxed), 0);
        assert_eq!(origin.stats.duplicate_requests.load(Ordering::Relaxed), 0);
    }
    let _ = std::fs::remove_dir_all(&base);
}
