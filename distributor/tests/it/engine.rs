//! The engine's backends on loopback: the same tests run on io_uring (zero-copy and copying)
//! and on the syscall backend.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream, UdpSocket},
    sync::Arc,
    time::{Duration, Instant},
};

use pfs::engine::{self, Backend, Completion, Limits, Payload, Reactor, Token};

const BACKENDS: [Backend; 3] = [Backend::Uring, Backend::UringCopy, Backend::Syscall];

fn image(len: usize) -> Arc<memmap2::Mmap> {
    let mut f = tempfile();
    let bytes: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
    f.write_all(&bytes).unwrap();
    // SAFETY: a private temporary file nobody else writes.
    Arc::new(unsafe { memmap2::Mmap::map(&f) }.unwrap())
}

fn tempfile() -> std::fs::File {
    let dir = std::env::temp_dir().join(format!("pfs-engine-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("img-{:?}", Instant::now()));
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    std::fs::remove_file(&path).unwrap();
    f
}

fn open(b: Backend, limits: Limits) -> Box<dyn Reactor> {
    match engine::open(b, limits) {
        Ok(r) => r,
        Err(e) => panic!("{b:?} unavailable: {e}"),
    }
}

/// Streams a mapped image in chunk frames (header + mapped body) plus owned frames through an
/// accepted connection; a blocking reader checks every byte, in order.
#[test]
fn frames_arrive_in_order_with_mapped_bodies() {
    let _group = crate::common::group(module_path!());
    for b in BACKENDS {
        let mut r = open(b, Limits::default());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        r.listen(1, listener).unwrap();
        let reader = std::thread::spawn(move || {
            let mut s = TcpStream::connect(addr).unwrap();
            let mut all = Vec::new();
            s.read_to_end(&mut all).unwrap();
            all
        });
        let mut conn = None;
        let deadline = Instant::now() + Duration::from_secs(5);
        while conn.is_none() && Instant::now() < deadline {
            r.poll(Some(Duration::from_millis(50)), &mut |c| {
                if let Completion::Accepted { stream, .. } = c {
                    conn = Some(stream);
                }
            })
            .unwrap();
        }
        r.register(2, conn.expect("accepted")).unwrap();
        let img = image(3 * 65536 + 123);
        let mut expect = Vec::new();
        let chunk = 65536;
        for (i, off) in (0..img.len()).step_by(chunk).enumerate() {
            let len = chunk.min(img.len() - off);
            let head = format!("H{i:03}").into_bytes();
            expect.extend_from_slice(&head);
            expect.extend_from_slice(&img[off..off + len]);
            r.send(
                2,
                Payload::Mapped {
                    head,
                    map: img.clone(),
                    off,
                    len,
                },
            )
            .unwrap();
            expect.extend_from_slice(b"tiny");
            r.send(2, Payload::Owned(b"tiny".to_vec())).unwrap();
        }
        let mut sent = 0;
        while sent < 8 && Instant::now() < deadline {
            r.poll(Some(Duration::from_millis(50)), &mut |c| {
                if let Completion::Sent { frames, .. } = c {
                    sent += frames;
                }
            })
            .unwrap();
        }
        assert_eq!(sent, 8, "{b:?}: all frames reported sent");
        assert_eq!(r.queued(2), 0);
        r.close(2);
        // Let the close (and any zero-copy notification) complete.
        for _ in 0..5 {
            r.poll(Some(Duration::from_millis(20)), &mut |_| {})
                .unwrap();
        }
        let got = reader.join().unwrap();
        assert_eq!(got.len(), expect.len(), "{b:?}");
        assert!(got == expect, "{b:?}: bytes differ");
        let st = r.stats();
        if b == Backend::Uring {
            assert_eq!(
                st.zc_sends, st.sends,
                "{b:?}: every batch was above the threshold: {st:?}"
            );
            assert!(st.zc_sends >= 1);
            // Loopback delivers a copy to the receiver: the kernel reports the send copied.
            assert_eq!(st.zc_copied, st.zc_sends, "{st:?}");
        } else {
            assert_eq!(st.zc_sends, 0, "{b:?}");
        }
        assert_eq!(st.bytes_sent as usize, expect.len(), "{b:?}");
    }
}

/// Connect, receive, datagrams both ways, and the peer's close are reported.
#[test]
fn connect_recv_datagrams_and_close() {
    let _group = crate::common::group(module_path!());
    for b in BACKENDS {
        let mut r = open(b, Limits::default());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let SocketAddr::V4(addr) = listener.local_addr().unwrap() else {
            unreachable!()
        };
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.write_all(b"hello from the server").unwrap();
        });
        r.connect(7, engine::tcp_socket().unwrap(), addr).unwrap();
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let udp_addr = udp.local_addr().unwrap();
        r.udp(8, udp).unwrap();
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        peer.send_to(b"ping", udp_addr).unwrap();
        r.send_to(8, peer.local_addr().unwrap(), b"pong").unwrap();
        let (mut connected, mut data, mut closed, mut dgram) = (false, Vec::new(), false, None);
        let deadline = Instant::now() + Duration::from_secs(5);
        while !(connected && closed && dgram.is_some()) && Instant::now() < deadline {
            r.poll(Some(Duration::from_millis(50)), &mut |c| match c {
                Completion::Connected { conn: 7, result } => connected = result.is_ok(),
                Completion::Data { conn: 7, bytes } => data.extend_from_slice(bytes),
                Completion::Closed { conn: 7, error } => closed = error.is_none(),
                Completion::Datagram {
                    sock: 8,
                    from,
                    bytes,
                } => dgram = Some((from, bytes.to_vec())),
                _ => {}
            })
            .unwrap();
        }
        server.join().unwrap();
        assert!(connected && closed, "{b:?}");
        assert_eq!(data, b"hello from the server", "{b:?}");
        let (from, bytes) = dgram.expect("datagram");
        assert_eq!(from, peer.local_addr().unwrap(), "{b:?}");
        assert_eq!(bytes, b"ping");
        let mut buf = [0u8; 16];
        peer.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let (n, _) = peer.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"pong", "{b:?}");
    }
}

/// A datagram handed over just before its socket is closed still goes out, and the socket
/// reports nothing after the close. A TFTP client's last ACK is sent exactly like this; when
/// io_uring dropped it, every origin transfer ended in the server's retransmissions.
#[test]
fn datagrams_sent_before_close_still_leave() {
    let _group = crate::common::group(module_path!());
    for b in BACKENDS {
        let mut r = open(b, Limits::default());
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let udp_addr = udp.local_addr().unwrap();
        r.udp(8, udp).unwrap();
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        for i in 0..3u8 {
            r.send_to(8, peer.local_addr().unwrap(), &[b'a', i])
                .unwrap();
        }
        r.close(8);
        peer.send_to(b"late", udp_addr).unwrap();
        let mut reported = 0;
        for _ in 0..10 {
            r.poll(Some(Duration::from_millis(20)), &mut |c| {
                if matches!(c, Completion::Datagram { sock: 8, .. }) {
                    reported += 1;
                }
            })
            .unwrap();
        }
        assert_eq!(reported, 0, "{b:?}: completions after close");
        peer.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        for i in 0..3u8 {
            let mut buf = [0u8; 16];
            let (n, _) = peer
                .recv_from(&mut buf)
                .unwrap_or_else(|e| panic!("{b:?}: datagram {i} lost: {e}"));
            assert_eq!(&buf[..n], &[b'a', i], "{b:?}");
        }
    }
}

/// A child that reads nothing is cut off after the stall limit while its sibling receives
/// everything; the queue bound refuses frames beyond it.
#[test]
fn a_stalled_child_is_cut_off_and_its_sibling_finishes() {
    let _group = crate::common::group(module_path!());
    for b in BACKENDS {
        let limits = Limits {
            stall: Duration::from_millis(400),
            queue_frames: 64,
            ..Limits::default()
        };
        let mut r = open(b, limits);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        r.listen(1, listener).unwrap();
        let stalled = TcpStream::connect(addr).unwrap();
        stalled.set_nonblocking(true).unwrap();
        // Small receive buffer so the stalled child fills up quickly.
        nix::sys::socket::setsockopt(&stalled, nix::sys::socket::sockopt::RcvBuf, &4096).unwrap();
        let good = std::thread::spawn(move || {
            let mut s = TcpStream::connect(addr).unwrap();
            let mut n = 0usize;
            let mut buf = vec![0u8; 1 << 16];
            loop {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break n,
                    Ok(k) => n += k,
                }
            }
        });
        let mut accepted = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while accepted.len() < 2 && Instant::now() < deadline {
            r.poll(Some(Duration::from_millis(50)), &mut |c| {
                if let Completion::Accepted { stream, from, .. } = c {
                    accepted.push((stream, from));
                }
            })
            .unwrap();
        }
        let stalled_local = stalled.local_addr().unwrap();
        for (stream, from) in accepted.drain(..) {
            let token = if from == stalled_local { 10 } else { 11 };
            r.register(token, stream).unwrap();
        }
        let img = image(64 * 65536);
        for off in (0..img.len()).step_by(65536) {
            for t in [10, 11] {
                r.send(
                    t,
                    Payload::Mapped {
                        head: vec![],
                        map: img.clone(),
                        off,
                        len: 65536,
                    },
                )
                .unwrap();
            }
        }
        assert!(matches!(
            r.send(10, Payload::Owned(vec![1])),
            Err(engine::EngineError::Backpressure(10, 64))
        ));
        let (mut cut, mut good_sent) = (false, 0);
        while !(cut && good_sent == 64) && Instant::now() < deadline {
            r.poll(Some(Duration::from_millis(50)), &mut |c| match c {
                Completion::Closed { conn: 10, error } => {
                    cut = error.is_some_and(|e| e.kind() == std::io::ErrorKind::TimedOut)
                }
                Completion::Sent { conn: 11, frames } => good_sent += frames,
                _ => {}
            })
            .unwrap();
        }
        assert!(cut, "{b:?}: stalled child cut off");
        assert_eq!(good_sent, 64, "{b:?}: sibling got everything");
        assert_eq!(r.stats().stalled_cutoffs, 1, "{b:?}");
        r.close(11);
        for _ in 0..5 {
            r.poll(Some(Duration::from_millis(20)), &mut |_| {})
                .unwrap();
        }
        assert_eq!(good.join().unwrap(), 64 * 65536, "{b:?}");
        drop(stalled);
    }
}

/// Bytes the kernel holds unread for a socket (`FIONREAD`), read through a duplicate of its
/// descriptor.
fn unread(fd: &std::os::fd::OwnedFd) -> usize {
    use std::os::fd::AsRawFd;
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut n) };
    assert_eq!(r, 0, "FIONREAD: {}", std::io::Error::last_os_error());
    n as usize
}

/// Polls `r` until stream `token`'s connect completes (at most 5 s); whether it succeeded.
fn wait_connected(r: &mut Box<dyn Reactor>, token: Token) -> bool {
    let mut connected = false;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !connected && Instant::now() < deadline {
        r.poll(Some(Duration::from_millis(20)), &mut |c| {
            if let Completion::Connected { conn, result } = c
                && conn == token
            {
                connected = result.is_ok();
            }
        })
        .unwrap();
    }
    connected
}

/// Queues all of `img` on stream `token`, 64 KiB per frame.
fn queue_image(r: &mut Box<dyn Reactor>, token: Token, img: &Arc<memmap2::Mmap>) {
    for off in (0..img.len()).step_by(65536) {
        let map = img.clone();
        let frame = Payload::Mapped {
            head: vec![],
            map,
            off,
            len: 65536,
        };
        r.send(token, frame).unwrap();
    }
}

/// A frozen socket behaves as one of a hung process (`pfs lab --freeze-fraction`): it stays
/// open but is no longer read. A parent streaming into a frozen child's stream fills its
/// receive buffer, the window closes, and the parent's `TCP_USER_TIMEOUT` aborts the stream
/// (zero-window probes unanswered) about `PEER_TIMEOUT` later, before the engine's own stall
/// limit; the frozen stream and datagram socket hold what arrived; nothing is reported for
/// them; another phone's socket on the same reactor keeps working. Before, the reactor kept
/// reading a frozen phone's sockets (and threw the bytes away): the parent never noticed.
#[test]
fn a_frozen_socket_is_not_read_and_its_parent_times_out() {
    let _group = crate::common::group(module_path!());
    for b in BACKENDS {
        // The parent: a stream with the peers' liveness options, fed by its own reactor.
        let mut parent = open(b, Limits::default());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let SocketAddr::V4(addr) = listener.local_addr().unwrap() else {
            unreachable!()
        };
        // The child's reactor, shared with another phone (its datagram socket).
        let mut shared = open(b, Limits::default());
        let sock = engine::tcp_socket().unwrap();
        let stream_dup = sock.try_clone().unwrap();
        shared.connect(7, sock, addr).unwrap();
        let frozen_udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let frozen_udp_addr = frozen_udp.local_addr().unwrap();
        let udp_dup = std::os::fd::OwnedFd::from(frozen_udp.try_clone().unwrap());
        shared.udp(8, frozen_udp).unwrap();
        let other = UdpSocket::bind("127.0.0.1:0").unwrap();
        let other_addr = other.local_addr().unwrap();
        shared.udp(9, other).unwrap();
        assert!(wait_connected(&mut shared, 7), "{b:?}");
        // The handshake completed in the backlog; the parent takes it now.
        let (accepted, _) = listener.accept().unwrap();
        engine::tcp_liveness(&accepted);
        parent.register(1, accepted).unwrap();
        shared.freeze(7);
        shared.freeze(8);
        queue_image(&mut parent, 1, &image(64 * 65536));
        let pinger = UdpSocket::bind("127.0.0.1:0").unwrap();
        let start = Instant::now();
        let (mut last_sent, mut broken, mut frozen_reports, mut other_got) = (start, None, 0, 0);
        while broken.is_none() && start.elapsed() < Duration::from_secs(15) {
            pinger.send_to(b"advert", frozen_udp_addr).unwrap();
            pinger.send_to(b"advert", other_addr).unwrap();
            parent
                .poll(Some(Duration::from_millis(10)), &mut |c| match c {
                    Completion::Sent { conn: 1, .. } => last_sent = Instant::now(),
                    Completion::Closed { conn: 1, error } => {
                        broken = Some((Instant::now(), error.and_then(|e| e.raw_os_error())))
                    }
                    _ => {}
                })
                .unwrap();
            shared
                .poll(Some(Duration::from_millis(10)), &mut |c| match c {
                    Completion::Datagram { sock: 9, .. } => other_got += 1,
                    Completion::Data { conn: 7, .. }
                    | Completion::Closed { conn: 7, .. }
                    | Completion::Datagram { sock: 8, .. } => frozen_reports += 1,
                    _ => {}
                })
                .unwrap();
        }
        let Some((at, errno)) = broken else {
            panic!("{b:?}: the parent never noticed its frozen child");
        };
        let after_window = at.duration_since(last_sent);
        eprintln!(
            "{b:?}: parent's stream broke {:.2} s after the freeze, {:.2} s after its last send progress (window closed), errno {errno:?}; frozen stream unread {} B",
            at.duration_since(start).as_secs_f64(),
            after_window.as_secs_f64(),
            unread(&stream_dup)
        );
        // The kernel's user timeout (ETIMEDOUT), not the engine's stall cut-off (10 s).
        assert_eq!(errno, Some(libc::ETIMEDOUT), "{b:?}");
        assert!(
            after_window >= engine::PEER_TIMEOUT - Duration::from_millis(500)
                && after_window <= engine::PEER_TIMEOUT + Duration::from_secs(2),
            "{b:?}: broke {after_window:?} after the window closed"
        );
        assert_eq!(frozen_reports, 0, "{b:?}: completions for frozen sockets");
        assert!(other_got > 0, "{b:?}: the other phone's socket went deaf");
        assert!(unread(&stream_dup) > 0, "{b:?}: the frozen stream was read");
        assert_eq!(shared.unread(7), unread(&stream_dup), "{b:?}");
        assert!(
            unread(&udp_dup) > 0,
            "{b:?}: the frozen datagram socket was read"
        );
        shared.close(7);
        shared.close(8);
        shared.close(9);
        parent.close(1);
    }
}
