//! Cases from public bug reports against TFTP servers and clients (tftpd-hpa, atftp, dnsmasq,
//! iPXE, U-Boot, tftpy, rs-tftpd), tried on `pfs origin`: the right answer is what tftpd-hpa
//! gives on the same input. Real clients (tftp-hpa, curl) where a real client shows the fault.
//! Loopback only; every loop is bounded.

use crate::common;

use std::{
    net::{SocketAddr, UdpSocket},
    path::Path,
    process::{Command, Stdio},
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use pfs::{
    origin::{self, OriginConfig, OriginHandle},
    tftp::server::ServerConfig,
};

fn start(root: &Path, listen: &str, max_sessions: usize) -> OriginHandle {
    origin::spawn(OriginConfig {
        root: root.to_owned(),
        listen: listen.parse().unwrap(),
        max_sessions,
        session: ServerConfig::default(),
    })
    .expect("origin")
}

fn rrq(name: &str, mode: &str, options: &[(&str, &str)]) -> Vec<u8> {
    let mut p = vec![0, 1];
    p.extend_from_slice(name.as_bytes());
    p.push(0);
    p.extend_from_slice(mode.as_bytes());
    p.push(0);
    for (k, v) in options {
        p.extend_from_slice(k.as_bytes());
        p.push(0);
        p.extend_from_slice(v.as_bytes());
        p.push(0);
    }
    p
}

fn client() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(1000)))
        .unwrap();
    s
}

fn recv(s: &UdpSocket) -> (Vec<u8>, SocketAddr) {
    let mut buf = vec![0u8; 65_536];
    let (n, from) = s.recv_from(&mut buf).expect("an answer within 1 s");
    (buf[..n].to_vec(), from)
}

/// The OACK's options as (name, value) pairs.
fn oack_options(p: &[u8]) -> Vec<(String, String)> {
    assert_eq!(p[..2], [0, 6], "an OACK: {p:?}");
    let fields: Vec<String> = p[2..]
        .split(|&b| b == 0)
        .filter(|f| !f.is_empty())
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect();
    fields
        .chunks(2)
        .map(|c| (c[0].clone(), c[1].clone()))
        .collect()
}

fn error_code(p: &[u8]) -> Option<u16> {
    (p.len() >= 4 && p[..2] == [0, 5]).then(|| u16::from_be_bytes([p[2], p[3]]))
}

/// Reads a lock-step transfer to its end from `tid`, ACKing every block.
fn read_to_end(s: &UdpSocket, first: Vec<u8>, tid: SocketAddr, blksize: usize) -> Vec<u8> {
    let mut got = Vec::new();
    let mut packet = first;
    let mut expect = 1u16;
    for _ in 0..100_000 {
        if packet[..2] == [0, 6] {
            s.send_to(&[0, 4, 0, 0], tid).unwrap();
        } else {
            assert_eq!(packet[..2], [0, 3], "{:?}", &packet[..packet.len().min(40)]);
            let block = u16::from_be_bytes([packet[2], packet[3]]);
            if block == expect {
                got.extend_from_slice(&packet[4..]);
                s.send_to(&[0, 4, packet[2], packet[3]], tid).unwrap();
                if packet.len() - 4 < blksize {
                    return got;
                }
                expect = expect.wrapping_add(1);
            }
        }
        let (p, from) = recv(s);
        assert_eq!(from, tid);
        packet = p;
    }
    panic!("transfer did not end");
}

/// A request for `/f.bin` or `/boot/x.bin` names the served root (PXE ROMs, iPXE, devices told
/// `get tftp://host/file`), as tftpd-hpa `-s` reads it; `/../x` stays refused.
#[test]
fn a_leading_slash_names_the_served_root() {
    let _group = crate::common::group(module_path!());
    let root = common::scratch("slash");
    std::fs::create_dir_all(root.join("boot")).unwrap();
    std::fs::write(root.join("f.bin"), b"top level file").unwrap();
    std::fs::write(root.join("boot/x.bin"), vec![7u8; 1500]).unwrap();
    let origin = start(&root, "127.0.0.1:0", 16);
    for (name, want) in [
        ("/f.bin", b"top level file".to_vec()),
        ("/boot/x.bin", vec![7u8; 1500]),
        ("//boot/x.bin", vec![7u8; 1500]),
    ] {
        let s = client();
        s.send_to(&rrq(name, "octet", &[]), origin.addr).unwrap();
        let (p, tid) = recv(&s);
        assert_eq!(read_to_end(&s, p, tid, 512), want, "{name}");
    }
    for escape in ["/../x", "/../../etc/passwd", "/boot/../../x"] {
        let s = client();
        s.send_to(&rrq(escape, "octet", &[]), origin.addr).unwrap();
        assert_eq!(error_code(&recv(&s).0), Some(2), "{escape}");
    }
    // Real clients: tftp-hpa sends the name as typed; curl sends `/x` for `tftp://host//x`.
    let port = origin.addr.port().to_string();
    if common::tool("tftp") {
        let out = root.join("hpa-out");
        let status = Command::new("tftp")
            .args([
                "-m",
                "binary",
                "127.0.0.1",
                &port,
                "-c",
                "get",
                "/boot/x.bin",
            ])
            .arg(&out)
            .stdin(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        assert_eq!(std::fs::read(&out).unwrap(), vec![7u8; 1500]);
    }
    if common::tool("curl") {
        let out = root.join("curl-out");
        let status = Command::new("curl")
            .args(["-sS", "--max-time", "20"])
            .arg(format!("tftp://127.0.0.1:{port}//boot/x.bin"))
            .arg("-o")
            .arg(&out)
            .status()
            .unwrap();
        assert!(status.success());
        assert_eq!(std::fs::read(&out).unwrap(), vec![7u8; 1500]);
    }
}

/// netascii is translated: the tftp-hpa client's default mode fetched a 32-byte file with
/// CR LF lines as 30 bytes. tsize in netascii announces the octets that will be sent.
#[test]
fn netascii_is_translated_for_tftp_hpa_and_tsize_counts_the_wire() {
    let _group = crate::common::group(module_path!());
    let root = common::scratch("netascii");
    let crlf = b"line one\r\nline two\r\nline 33333\r\n";
    assert_eq!(crlf.len(), 32);
    let lf = b"unix\nlines\n\nand a bare \r here\n";
    std::fs::write(root.join("crlf.txt"), crlf).unwrap();
    std::fs::write(root.join("lf.txt"), lf).unwrap();
    let origin = start(&root, "127.0.0.1:0", 16);

    // Raw: the wire form and its announced size.
    let s = client();
    s.send_to(&rrq("crlf.txt", "netascii", &[("tsize", "0")]), origin.addr)
        .unwrap();
    let (p, tid) = recv(&s);
    let wire = pfs::tftp::netascii::encode(crlf);
    assert_eq!(
        oack_options(&p),
        vec![("tsize".to_owned(), wire.len().to_string())]
    );
    assert_eq!(read_to_end(&s, p, tid, 512), wire);

    if common::tool("tftp") {
        let port = origin.addr.port().to_string();
        for (name, want) in [("crlf.txt", &crlf[..]), ("lf.txt", &lf[..])] {
            let out = root.join(format!("got-{name}"));
            // No -m: tftp-hpa's default mode is netascii.
            let status = Command::new("tftp")
                .args(["127.0.0.1", &port, "-c", "get", name])
                .arg(&out)
                .stdin(Stdio::null())
                .status()
                .unwrap();
            assert!(status.success());
            assert_eq!(std::fs::read(&out).unwrap(), want, "{name}");
        }
    }
}

/// `blksize 65535` (a real client offers 65536) is answered with the largest size RFC 2348
/// allows, as tftpd-hpa does, not refused; impossible values are ERROR 8, not 4; unknown
/// options are ignored however many or long.
#[test]
fn option_negotiation_follows_rfc_2347_and_tftpd_hpa() {
    let _group = crate::common::group(module_path!());
    let root = common::scratch("options");
    let file: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(root.join("big.bin"), &file).unwrap();
    let origin = start(&root, "127.0.0.1:0", 16);
    for offered in ["65535", "65536"] {
        let s = client();
        s.send_to(
            &rrq("big.bin", "octet", &[("blksize", offered)]),
            origin.addr,
        )
        .unwrap();
        let (p, tid) = recv(&s);
        assert_eq!(
            oack_options(&p),
            vec![("blksize".to_owned(), "65464".to_owned())],
            "blksize {offered}"
        );
        assert!(read_to_end(&s, p, tid, 65464) == file, "blksize {offered}");
    }
    // curl 7.88 with --tftp-blksize 65535 fails before it sends anything ("getpeername()
    // failed"), against tftpd-hpa too: the raw requests above stand for the real client.
    for (k, v) in [("blksize", "7"), ("timeout", "0"), ("windowsize", "0")] {
        let s = client();
        s.send_to(&rrq("big.bin", "octet", &[(k, v)]), origin.addr)
            .unwrap();
        assert_eq!(error_code(&recv(&s).0), Some(8), "{k}={v}");
    }
    let long = "x".repeat(300);
    let mut opts: Vec<(String, String)> = (0..40)
        .map(|i| (format!("vendor-{i}"), long.clone()))
        .collect();
    opts.push(("tsize".into(), "0".into()));
    let opts: Vec<(&str, &str)> = opts.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let s = client();
    s.send_to(&rrq("big.bin", "octet", &opts), origin.addr)
        .unwrap();
    let (p, _) = recv(&s);
    assert_eq!(
        oack_options(&p),
        vec![("tsize".to_owned(), file.len().to_string())]
    );
}

/// UEFI's size probe: RRQ with tsize, OACK, ERROR 8, the same RRQ again from the same port at
/// once. Every try must be served (0-45% were dropped).
#[test]
fn a_size_probe_then_the_real_request_from_the_same_port_is_served() {
    let _group = crate::common::group(module_path!());
    let root = common::scratch("probe");
    let file: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(root.join("boot.efi"), &file).unwrap();
    // One event loop, and four (each client endpoint must stay with one loop).
    for loops in [1, 4] {
        probe_then_request(&root, &file, loops);
    }
}

fn probe_then_request(root: &Path, file: &[u8], loops: usize) {
    let origin = origin::spawn_loops(
        OriginConfig {
            root: root.to_owned(),
            listen: "127.0.0.1:0".parse().unwrap(),
            max_sessions: 16,
            session: ServerConfig::default(),
        },
        loops,
    )
    .unwrap();
    let req = rrq("boot.efi", "octet", &[("tsize", "0"), ("blksize", "1468")]);
    for attempt in 0..50 {
        let s = client();
        s.send_to(&req, origin.addr).unwrap();
        let (p, probe_tid) = recv(&s);
        assert!(oack_options(&p).contains(&("tsize".to_owned(), "5000".to_owned())));
        s.send_to(
            &pfs::tftp::packet::error(pfs::tftp::ErrorCode::OptionNegotiation, "size probe"),
            probe_tid,
        )
        .unwrap();
        s.send_to(&req, origin.addr).unwrap();
        let (p, tid) = recv(&s);
        assert_ne!(tid, probe_tid, "attempt {attempt}: a new transfer id");
        assert_eq!(read_to_end(&s, p, tid, 1468), file, "attempt {attempt}");
    }
    assert_eq!(origin.stats.duplicate_requests.load(Ordering::Relaxed), 0);
}

/// A client whose final ACK was lost asks again from the same port: served at once, not after
/// the old transfer's retransmissions run out (up to 32 s).
#[test]
fn a_new_request_after_a_lost_final_ack_is_served_at_once() {
    let _group = crate::common::group(module_path!());
    let root = common::scratch("finalack");
    let file: Vec<u8> = (0..1300u32).map(|i| i as u8).collect();
    std::fs::write(root.join("cfg.xml"), &file).unwrap();
    // A single-block file without options: its only DATA is also the last, so the
    // transfer has sent everything the moment it starts (tftpd-hpa serves the repeat too).
    std::fs::write(root.join("small.cfg"), &file[..300]).unwrap();
    let origin = start(&root, "127.0.0.1:0", 16);
    for (name, options) in [
        ("cfg.xml", &[][..]),
        ("cfg.xml", &[("tsize", "0")][..]),
        ("small.cfg", &[][..]),
    ] {
        let file = std::fs::read(root.join(name)).unwrap();
        let s = client();
        let req = rrq(name, "octet", options);
        s.send_to(&req, origin.addr).unwrap();
        let (mut p, tid) = recv(&s);
        let mut got = Vec::new();
        // Every block but the final ACK.
        for _ in 0..10 {
            if p[..2] == [0, 6] {
                s.send_to(&[0, 4, 0, 0], tid).unwrap();
            } else {
                got.extend_from_slice(&p[4..]);
                if p.len() - 4 < 512 {
                    break;
                }
                s.send_to(&[0, 4, p[2], p[3]], tid).unwrap();
            }
            p = recv(&s).0;
        }
        assert_eq!(got, file);
        let asked = Instant::now();
        s.send_to(&req, origin.addr).unwrap();
        let (p, tid2) = recv(&s);
        assert!(asked.elapsed() < Duration::from_millis(500));
        assert_ne!(tid2, tid);
        assert_eq!(read_to_end(&s, p, tid2, 512), file, "{options:?}");
    }
    let until = Instant::now() + Duration::from_secs(2);
    while origin.stats.transfers_ok.load(Ordering::Relaxed) < 6 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(origin.stats.transfers_ok.load(Ordering::Relaxed), 6);
    assert_eq!(origin.stats.transfers_failed.load(Ordering::Relaxed), 0);
}

/// On a host with several addresses, replies leave from the address the request arrived on
/// (IP_PKTINFO): 127.0.0.2 and 127.0.0.3 are both this host's, the origin listens on all.
#[test]
fn replies_leave_from_the_address_the_request_arrived_on() {
    let _group = crate::common::group(module_path!());
    let root = common::scratch("pktinfo");
    std::fs::write(root.join("f.bin"), vec![1u8; 700]).unwrap();
    let origin = start(&root, "0.0.0.0:0", 16);
    for ip in ["127.0.0.2", "127.0.0.3"] {
        let to: SocketAddr = format!("{ip}:{}", origin.addr.port()).parse().unwrap();
        let s = client();
        s.send_to(&rrq("f.bin", "octet", &[]), to).unwrap();
        let (p, tid) = recv(&s);
        assert_eq!(tid.ip().to_string(), ip, "DATA from {tid}");
        assert_eq!(read_to_end(&s, p, tid, 512), vec![1u8; 700]);
        // Errors too, from the listening port.
        s.send_to(&rrq("missing.bin", "octet", &[]), to).unwrap();
        let (p, from) = recv(&s);
        assert_eq!(error_code(&p), Some(1));
        assert_eq!(from, to, "ERROR from {from}");
    }
}

/// At capacity an RRQ gets ERROR 0 "server busy, retry later"; peak_sessions counts the most
/// transfers that ran at once.
#[test]
fn at_capacity_requests_are_told_busy_and_the_peak_is_counted() {
    let _group = crate::common::group(module_path!());
    let root = common::scratch("busy");
    std::fs::write(root.join("f.bin"), vec![1u8; 5000]).unwrap();
    let origin = start(&root, "127.0.0.1:0", 3);
    let held: Vec<UdpSocket> = (0..3)
        .map(|_| {
            let s = client();
            s.send_to(&rrq("f.bin", "octet", &[]), origin.addr).unwrap();
            assert_eq!(recv(&s).0[..2], [0, 3]);
            s
        })
        .collect();
    let s = client();
    s.send_to(&rrq("f.bin", "octet", &[]), origin.addr).unwrap();
    let (p, _) = recv(&s);
    assert_eq!(error_code(&p), Some(0));
    assert!(String::from_utf8_lossy(&p[4..]).starts_with("server busy"));
    assert_eq!(origin.stats.peak_sessions.load(Ordering::Relaxed), 3);
    assert_eq!(origin.stats.active_sessions.load(Ordering::Relaxed), 3);
    drop(held);
}

/// 1000 concurrent transfers on one origin thread (all open at once), none failed.
#[test]
fn a_thousand_concurrent_transfers_all_complete() {
    let _group = crate::common::group(module_path!());
    const N: usize = 1000;
    let root = common::scratch("thousand");
    let file: Vec<u8> = (0..3000u32).map(|i| (i * 13 % 256) as u8).collect();
    std::fs::write(root.join("f.bin"), &file).unwrap();
    let origin = start(&root, "127.0.0.1:0", N + 10);
    // The clients' sockets count against this process's limit too.
    let (_, hard) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
    let _ = nix::sys::resource::setrlimit(
        nix::sys::resource::Resource::RLIMIT_NOFILE,
        hard.min(8192),
        hard,
    );
    let sockets: Vec<UdpSocket> = (0..N)
        .map(|_| {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            s.set_nonblocking(true).unwrap();
            s
        })
        .collect();
    // Every request first, so all transfers are open at once.
    for s in &sockets {
        s.send_to(&rrq("f.bin", "octet", &[]), origin.addr).unwrap();
    }
    let mut got: Vec<Vec<u8>> = vec![Vec::new(); N];
    let mut done = vec![false; N];
    let mut answered = vec![false; N];
    let mut tid: Vec<Option<SocketAddr>> = vec![None; N];
    let mut holding = true;
    let mut buf = vec![0u8; 2048];
    let start = Instant::now();
    let until = start + Duration::from_secs(60);
    let mut resent_at = start;
    while done.iter().any(|d| !d) && Instant::now() < until {
        let mut idle = true;
        // Like a real client, ask again when a request went unanswered for a second.
        if resent_at.elapsed() > Duration::from_secs(1) {
            resent_at = Instant::now();
            for (i, s) in sockets.iter().enumerate() {
                if !answered[i] {
                    let _ = s.send_to(&rrq("f.bin", "octet", &[]), origin.addr);
                }
            }
        }
        for (i, s) in sockets.iter().enumerate() {
            if done[i] {
                continue;
            }
            while let Ok((n, from)) = s.recv_from(&mut buf) {
                idle = false;
                answered[i] = true;
                if buf[..2] != [0, 3] {
                    continue;
                }
                let block = u16::from_be_bytes([buf[2], buf[3]]) as usize;
                if block == got[i].len() / 512 + 1 {
                    got[i].extend_from_slice(&buf[4..n]);
                    if n - 4 < 512 {
                        done[i] = true;
                    }
                }
                tid[i] = Some(from);
                // Hold every transfer open until all of them are: then the peak is N.
                if holding {
                    continue;
                }
                let _ = s.send_to(&[0, 4, buf[2], buf[3]], from);
            }
        }
        if holding && answered.iter().all(|a| *a) {
            holding = false;
            for (s, to) in sockets.iter().zip(&tid) {
                let _ = s.send_to(&[0, 4, 0, 1], to.expect("answered"));
            }
        }
        if idle {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let finished = done.iter().filter(|d| **d).count();
    assert_eq!(finished, N, "transfers finished");
    assert!(got.iter().all(|g| *g == file));
    assert_eq!(origin.stats.transfers_failed.load(Ordering::Relaxed), 0);
    let peak = origin.stats.peak_sessions.load(Ordering::Relaxed);
    assert_eq!(peak, N, "every transfer open at once");
    eprintln!(
        "{N} transfers in {:.2} s, peak {peak} at once, {} requests dropped as repeats",
        start.elapsed().as_secs_f64(),
        origin.stats.duplicate_requests.load(Ordering::Relaxed)
    );
}

/// The one event loop keeps every transfer's timer: an unacknowledged block goes out again
/// after the timeout, with its exponential backoff, and the transfer then completes.
#[test]
fn an_unacknowledged_block_is_resent_after_the_timeout() {
    let _group = crate::common::group(module_path!());
    let root = common::scratch("resend");
    let file: Vec<u8> = (0..1500u32).map(|i| (i * 7) as u8).collect();
    std::fs::write(root.join("f.bin"), &file).unwrap();
    let origin = start(&root, "127.0.0.1:0", 16);
    let s = client();
    s.set_read_timeout(Some(Duration::from_millis(3500)))
        .unwrap();
    s.send_to(&rrq("f.bin", "octet", &[]), origin.addr).unwrap();
    let (first, tid) = recv(&s);
    let sent = Instant::now();
    let (again, from) = recv(&s);
    let waited = sent.elapsed();
    assert_eq!((from, &again), (tid, &first), "the same block again");
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_millis(1600),
        "resent after {waited:?}"
    );
    let (third, _) = recv(&s);
    let waited = sent.elapsed();
    assert_eq!(third, first);
    assert!(waited >= Duration::from_millis(2800), "backoff: {waited:?}");
    assert_eq!(read_to_end(&s, third, tid, 512), file);
    assert!(origin.stats.timeouts.load(Ordering::Relaxed) <= 2);
}

/// IPv6 too: requests on ::1 are served, replies from ::1.
#[test]
fn the_origin_serves_ipv6() {
    let _group = crate::common::group(module_path!());
    if UdpSocket::bind("[::1]:0").is_err() {
        eprintln!("SKIPPED: no IPv6 loopback here");
        return;
    }
    let root = common::scratch("ipv6");
    let file: Vec<u8> = (0..70_000u32).map(|i| (i % 241) as u8).collect();
    std::fs::write(root.join("f.bin"), &file).unwrap();
    for listen in ["[::1]:0", "[::]:0"] {
        let origin = start(&root, listen, 16);
        let server: SocketAddr = format!("[::1]:{}", origin.addr.port()).parse().unwrap();
        let out = root.join("got");
        pfs::fetch::fetch(
            server,
            "/f.bin",
            &out,
            pfs::tftp::client::ClientConfig::default(),
        )
        .expect("fetch over ::1");
        assert!(std::fs::read(&out).unwrap() == file, "{listen}");
    }
}

/// `pfs fetch` answers an OACK it cannot accept with ERROR 8 (RFC 2347) from its transfer
/// port, so the server stops at once instead of retransmitting the OACK until it gives up.
#[test]
fn pfs_fetch_answers_an_unacceptable_oack_with_error_8() {
    let _group = crate::common::group(module_path!());
    let listen = UdpSocket::bind("127.0.0.1:0").unwrap();
    listen
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let server = listen.local_addr().unwrap();
    let root = common::scratch("oack8");
    let out = root.join("never");
    let client = std::thread::spawn(move || {
        pfs::fetch::fetch(
            server,
            "f.bin",
            &out,
            pfs::tftp::client::ClientConfig {
                blksize: 1428,
                ..Default::default()
            },
        )
    });
    let mut buf = [0u8; 2048];
    let (_, from) = listen.recv_from(&mut buf).expect("the RRQ");
    // A server that ignores the requested blksize and answers a larger one.
    let tid = UdpSocket::bind("127.0.0.1:0").unwrap();
    tid.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    tid.send_to(b"\x00\x06blksize\x008192\x00", from).unwrap();
    let (n, _) = tid.recv_from(&mut buf).expect("an answer to the OACK");
    assert_eq!(error_code(&buf[..n]), Some(8), "{:?}", &buf[..n]);
    let result = client.join().unwrap();
    assert!(result.is_err());
}

/// The transfer id is checked against the server's address before it is pinned: a datagram
/// from another host that races the server's first answer is told ERROR 5 and the transfer
/// goes on with the real server.
#[test]
fn pfs_fetch_does_not_pin_a_stray_first_datagram() {
    let _group = crate::common::group(module_path!());
    let listen = UdpSocket::bind("127.0.0.1:0").unwrap();
    listen
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let server = listen.local_addr().unwrap();
    let root = common::scratch("tid");
    let out = root.join("got");
    let out2 = out.clone();
    let client = std::thread::spawn(move || {
        pfs::fetch::fetch(
            server,
            "f.bin",
            &out2,
            pfs::tftp::client::ClientConfig {
                blksize: 512,
                windowsize: 1,
                ..Default::default()
            },
        )
    });
    let mut buf = [0u8; 2048];
    let (_, from) = listen.recv_from(&mut buf).expect("the RRQ");
    let stray = UdpSocket::bind("127.0.0.9:0").unwrap();
    stray
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    stray.send_to(b"\x00\x03\x00\x01forged", from).unwrap();
    let (n, _) = stray.recv_from(&mut buf).expect("ERROR 5 to the stray");
    assert_eq!(error_code(&buf[..n]), Some(5));
    let tid = UdpSocket::bind("127.0.0.1:0").unwrap();
    tid.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    tid.send_to(b"\x00\x03\x00\x01genuine", from).unwrap();
    let (n, _) = tid.recv_from(&mut buf).expect("the final ACK");
    assert_eq!(&buf[..n], &[0, 4, 0, 1]);
    client.join().unwrap().expect("fetch");
    assert_eq!(std::fs::read(&out).unwrap(), b"genuine");
}
