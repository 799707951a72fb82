//! HTTP origins for roots: `pfs fetch-load http://...` (verified chunks, `Range` from the
//! verified prefix after a failure) and virtual phones fetching over HTTP, with TFTP named
//! after it as the fallback a phone uses when HTTP fails. Loopback only, no root needed.

use crate::common;

use std::{
    net::TcpListener,
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use pfs::{
    engine::Backend,
    fetch::{FetchError, fetch_named_load_url},
    fleet::{FleetConfig, prepare_fleet, run_fleet},
    http::{self, HttpConfig},
    manifest::{generate_key, synth_load},
    origin::{self, OriginConfig},
    store::{Store, StoreError},
    tftp::client::ClientConfig,
};

#[test]
fn fetch_load_over_http_resumes_from_the_verified_prefix() {
    let _group = crate::common::group(module_path!());
    let base = common::scratch("http-load");
    let srv = base.join("srv");
    let (sk, vk) = generate_key().unwrap();
    let manifest = synth_load(&srv.join("load"), 5, Some(&sk)).unwrap();
    let web = http::spawn(HttpConfig {
        root: srv.clone(),
        listen: "127.0.0.1:0".parse().unwrap(),
        max_connections: 16,
    })
    .unwrap();
    let url = format!("http://{}/load", web.addr);

    let phone = Store::new(&base.join("phone1"));
    let r = fetch_named_load_url(&url, None, &phone, Some(&vk), ClientConfig::default()).unwrap();
    assert_eq!(r.files, manifest.files.len());
    assert_eq!(phone.current().as_deref(), Some(manifest.load.as_str()));
    manifest
        .verify_dir(&phone.load_dir(&manifest.load))
        .unwrap();

    // A corrupted file at the origin: refused at the bad chunk, nothing installed.
    let v = manifest
        .files
        .iter()
        .position(|f| f.size > 21 * 65536)
        .unwrap();
    let victim = srv.join("load").join(&manifest.files[v].name);
    let good = std::fs::read(&victim).unwrap();
    let mut bad = good.clone();
    bad[20 * 65536 + 7] ^= 1;
    std::fs::write(&victim, &bad).unwrap();
    let phone2 = Store::new(&base.join("phone2"));
    let err =
        fetch_named_load_url(&url, None, &phone2, Some(&vk), ClientConfig::default()).unwrap_err();
    assert!(
        matches!(
            &err,
            FetchError::Store {
                source: StoreError::Rejected { chunk: 20, .. },
                ..
            }
        ),
        "{err:#}"
    );
    assert_eq!(phone2.current(), None);

    // Repaired: the retry asks only for what is not verified yet.
    std::fs::write(&victim, &good).unwrap();
    let partial_before = web.stats.partial.load(Ordering::Relaxed);
    let sent_before = web.stats.bytes.load(Ordering::Relaxed) as u64;
    fetch_named_load_url(&url, None, &phone2, Some(&vk), ClientConfig::default()).unwrap();
    assert_eq!(phone2.current().as_deref(), Some(manifest.load.as_str()));
    assert_eq!(
        web.stats.partial.load(Ordering::Relaxed),
        partial_before + 1
    );
    let sent = web.stats.bytes.load(Ordering::Relaxed) as u64 - sent_before;
    let mlen = std::fs::metadata(srv.join("load").join(pfs::manifest::MANIFEST_FILE))
        .unwrap()
        .len();
    // The manifest again, the files before the bad one (installed already, but a retry does
    // not look for installed files: it fetches them again), the bad file from chunk 20 on,
    // the files after it.
    let rest = manifest.load_bytes();
    assert_eq!(sent, mlen + rest - 20 * 65536, "sent {sent} of {rest}");

    // The wrong key: refused before any file.
    let (_, other) = generate_key().unwrap();
    let phone3 = Store::new(&base.join("phone3"));
    let err = fetch_named_load_url(&url, None, &phone3, Some(&other), ClientConfig::default())
        .unwrap_err();
    assert!(matches!(err, FetchError::Manifest { .. }), "{err:#}");
    let _ = std::fs::remove_dir_all(&base);
}

fn fleet(base: &std::path::Path, origin: String, port_base: u16) -> FleetConfig {
    FleetConfig {
        phones: 3,
        origin,
        iface: "lo".into(),
        netns: None,
        model: "CP-7961G".into(),
        store: base.join(format!("stores-{port_base}")),
        port_base,
        backend: Backend::Syscall,
        deadline: Duration::from_secs(25),
        tftp: ClientConfig::default(),
        seed: 7,
        sharing: None,
    }
}

#[test]
fn phones_fetch_over_http_and_fall_back_to_tftp() {
    let _group = crate::common::group(module_path!());
    let base = common::scratch("http-fleet");
    let srv = base.join("srv");
    let manifest = synth_load(&srv.join("load"), 5, None).unwrap();
    let tftp = origin::spawn(OriginConfig {
        root: srv.clone(),
        listen: "127.0.0.1:0".parse().unwrap(),
        max_sessions: 64,
        session: Default::default(),
    })
    .unwrap();
    let web = http::spawn(HttpConfig {
        root: srv.clone(),
        listen: "127.0.0.1:0".parse().unwrap(),
        max_connections: 64,
    })
    .unwrap();

    // HTTP first, TFTP named as the fallback: everything comes over HTTP.
    let started = Instant::now();
    let cfg = fleet(
        &base,
        format!("http://{}/load,tftp://{}/load", web.addr, tftp.addr),
        61_400,
    );
    let (ready, prepare_s) = prepare_fleet(&cfg).unwrap();
    let report = run_fleet(&cfg, ready, prepare_s, None).unwrap();
    assert_eq!(report.completed, 3, "{report:?}");
    assert_eq!(report.corrupt_installs, 0);
    assert!(report.origin_switches.is_empty(), "{report:?}");
    assert_eq!(tftp.stats.transfers_ok.load(Ordering::Relaxed), 0);
    // Loopback phones share no LAN here: each fetches the manifest and every file, whole.
    assert_eq!(
        web.stats.ok.load(Ordering::Relaxed),
        3 * (1 + manifest.files.len())
    );
    assert_eq!(web.stats.partial.load(Ordering::Relaxed), 0);
    assert_eq!(
        web.stats.bytes.load(Ordering::Relaxed) as u64,
        3 * (std::fs::metadata(srv.join("load").join(pfs::manifest::MANIFEST_FILE))
            .unwrap()
            .len()
            + manifest.load_bytes())
    );
    eprintln!("over HTTP in {:?}", started.elapsed());

    // HTTP down (nothing listens there): the phones fall back to TFTP.
    let dead = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let cfg = fleet(
        &base,
        format!("http://{dead}/load,tftp://{}/load", tftp.addr),
        61_500,
    );
    let (ready, prepare_s) = prepare_fleet(&cfg).unwrap();
    let report = run_fleet(&cfg, ready, prepare_s, None).unwrap();
    assert_eq!(report.completed, 3, "{report:?}");
    assert_eq!(report.corrupt_installs, 0);
    assert!(tftp.stats.transfers_ok.load(Ordering::Relaxed) >= 3 + manifest.files.len());
    // Each phone's first transfer of each file failed over HTTP and went on over TFTP: the
    // phone's own fallback, counted under its reason, not as an origin error.
    let files = manifest.files.len() as u64;
    assert_eq!(
        report.origin_switches,
        std::collections::BTreeMap::from([("http_to_tftp".to_owned(), 3 * files)]),
        "{report:?}"
    );
    assert_eq!(report.origin_errors, 0, "{report:?}");
    let _ = std::fs::remove_dir_all(&base);
}

/// A root whose HTTP transfer breaks mid-file reopens it with `Range` from its verified prefix.
/// The origin here is a test double that cuts the first transfer of one file short.
#[test]
fn a_reopened_http_transfer_asks_range_from_the_verified_prefix() {
    let _group = crate::common::group(module_path!());
    use std::io::{BufRead, BufReader, Write};
    use std::sync::{Arc, Mutex};
    let base = common::scratch("http-reopen");
    let srv = base.join("srv");
    let manifest = synth_load(&srv.join("load"), 5, None).unwrap();
    let victim = manifest
        .files
        .iter()
        .find(|f| f.size > 400_000)
        .unwrap()
        .name
        .clone();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    // (path, Range start) of every request.
    type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;
    let seen: Seen = Arc::default();
    let (seen2, srv2, victim2) = (seen.clone(), srv.clone(), victim.clone());
    std::thread::spawn(move || {
        let mut cut = false;
        // Bounded: the manifest, six files, one retry, and a margin.
        for stream in listener.incoming().take(20) {
            let Ok(mut stream) = stream else { break };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
            let mut range = None;
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap() == 0 || h == "\r\n" {
                    break;
                }
                if let Some(v) = h.strip_prefix("Range: bytes=") {
                    range = Some(v.trim().trim_end_matches('-').to_owned());
                }
            }
            seen2.lock().unwrap().push((path.clone(), range.clone()));
            let data = std::fs::read(srv2.join(path.trim_start_matches('/'))).unwrap();
            let from: usize = range.as_deref().map_or(0, |r| r.parse().unwrap());
            let head = if range.is_some() {
                format!(
                    "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {from}-{}/{}\r\n\r\n",
                    data.len() - from,
                    data.len() - 1,
                    data.len()
                )
            } else {
                format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", data.len())
            };
            let _ = stream.write_all(head.as_bytes());
            if path.ends_with(&victim2) && !cut {
                cut = true;
                let _ = stream.write_all(&data[..300_000]);
                continue; // closed short of its Content-Length
            }
            let _ = stream.write_all(&data[from..]);
        }
    });
    let mut cfg = fleet(&base, format!("http://{addr}/load"), 61_600);
    cfg.phones = 1;
    let (ready, prepare_s) = prepare_fleet(&cfg).unwrap();
    let report = run_fleet(&cfg, ready, prepare_s, None).unwrap();
    assert_eq!(report.completed, 1, "{report:?}");
    assert_eq!(report.corrupt_installs, 0);
    let seen = seen.lock().unwrap().clone();
    let asks: Vec<_> = seen.iter().filter(|(p, _)| p.ends_with(&victim)).collect();
    // 300,000 bytes in: four 64 KiB chunks verified, the fifth incomplete.
    assert_eq!(asks.len(), 2, "{seen:?}");
    assert_eq!(asks[0].1, None);
    assert_eq!(asks[1].1.as_deref(), Some("262144"), "{seen:?}");
    let _ = std::fs::remove_dir_all(&base);
}
