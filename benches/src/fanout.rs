//! `fanout`: one mmapped image to K TCP receivers, as a parent relays to its children, over
//! loopback and over a veth between two namespaces. Backends, all measured in one run:
//!
//! - `zc`: the engine on io_uring, `SENDMSG_ZC` straight from the mapping;
//! - `uring-copy`: the same engine and ring, plain copying `SENDMSG` (isolates the zero-copy effect);
//! - `send`: the engine's syscall backend, `writev` copying from the mapping;
//! - `sendfile`: an epoll loop sending each frame's header, then `sendfile(2)` from the file.
//!
//! Senders run one thread per core (connections split between them, no stealing); receivers
//! run on their own threads and time each chunk from the moment it became eligible to send
//! (each connection has at most `WINDOW` chunks outstanding, as a relay that forwards chunks
//! as they are verified) to its last byte arriving. Sender CPU comes from `RUSAGE_THREAD`.

use std::{
    collections::HashMap,
    io::{self, Write},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    os::fd::AsRawFd,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;
use pfs::{
    engine::{self, Backend, Completion, Limits, Payload, Reactor},
    netns::{Netns, VethPair},
};

const CHUNK: usize = 64 * 1024;
const HEAD: usize = 32;
const FRAME: usize = HEAD + CHUNK;
/// Chunks outstanding per connection.
const WINDOW: usize = 4;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Zc,
    ZcAlways,
    UringCopy,
    Send,
    Sendfile,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Zc => "zc",
            Kind::ZcAlways => "zc-always",
            Kind::UringCopy => "uring-copy",
            Kind::Send => "send",
            Kind::Sendfile => "sendfile",
        }
    }

    /// One sender thread's work with this backend: `conns` fed from the mapping (or the file).
    fn send(
        self,
        set: Vec<(usize, TcpStream)>,
        map: Arc<memmap2::Mmap>,
        file: Arc<std::fs::File>,
        stamps: Arc<Stamps>,
        core: usize,
    ) -> SenderResult {
        match self {
            Kind::Zc => engine_sender(Backend::Uring, Limits::default(), set, map, stamps, core),
            Kind::ZcAlways => {
                let l = Limits {
                    zc_adaptive: false,
                    ..Limits::default()
                };
                engine_sender(Backend::Uring, l, set, map, stamps, core)
            }
            Kind::UringCopy => engine_sender(
                Backend::UringCopy,
                Limits::default(),
                set,
                map,
                stamps,
                core,
            ),
            Kind::Send => {
                engine_sender(Backend::Syscall, Limits::default(), set, map, stamps, core)
            }
            Kind::Sendfile => sendfile_sender(set, file, stamps, core),
        }
    }

    /// The fraction of sent bytes copied on the sending side, from `zc` zero-copy sends of
    /// which `copied` were reported copied.
    fn copied_fraction(self, zc: u64, copied: u64) -> f64 {
        match self {
            Kind::Zc | Kind::ZcAlways if zc > 0 => copied as f64 / zc as f64,
            Kind::Zc | Kind::ZcAlways => 1.0,
            // Every byte is copied from user memory into socket buffers.
            Kind::UringCopy | Kind::Send => 1.0,
            // Page-cache pages are attached to the socket: no copy on the sending side.
            Kind::Sendfile => 0.0,
        }
    }
}

/// When each (connection, chunk) became eligible, in ns since the run's start.
struct Stamps {
    start: Instant,
    chunks: usize,
    at: Vec<AtomicU64>,
}

impl Stamps {
    fn stamp(&self, conn: usize, chunk: usize) {
        let ns = self.start.elapsed().as_nanos() as u64;
        self.at[conn * self.chunks + chunk].store(ns, Ordering::Release);
    }
    fn age_us(&self, conn: usize, chunk: usize) -> u64 {
        let then = self.at[conn * self.chunks + chunk].load(Ordering::Acquire);
        (self.start.elapsed().as_nanos() as u64).saturating_sub(then) / 1000
    }
}

fn thread_cpu_s() -> f64 {
    // SAFETY: getrusage fills the struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

#[derive(Default)]
struct SenderResult {
    cpu_s: f64,
    zc_sends: u64,
    zc_copied: u64,
    zc_fallbacks: u64,
    cut_off: u64,
}

fn head(chunk: usize) -> Vec<u8> {
    pfs::wire::chunk_head(pfs::wire::HierarchyId(1), (chunk * CHUNK) as u64, 0, CHUNK).to_vec()
}

/// The engine as a relay: keeps `WINDOW` frames queued per connection, refills on `Sent`.
fn engine_sender(
    backend: Backend,
    limits: Limits,
    conns: Vec<(usize, TcpStream)>,
    map: Arc<memmap2::Mmap>,
    stamps: Arc<Stamps>,
    core: usize,
) -> SenderResult {
    engine::pin_to_core(core);
    let cpu0 = thread_cpu_s();
    let mut r: Box<dyn Reactor> = engine::open(backend, limits).expect("engine");
    let chunks = stamps.chunks;
    let mut next: HashMap<u64, (usize, usize)> = HashMap::new(); // token -> (conn, next chunk)
    let mut done_conns = 0;
    let total = conns.len();
    for (conn, s) in conns {
        let t = conn as u64 + 100;
        r.register(t, s).expect("register");
        next.insert(t, (conn, 0));
    }
    let mut sent_frames: HashMap<u64, usize> = HashMap::new();
    let tokens: Vec<u64> = next.keys().copied().collect();
    let push = |r: &mut Box<dyn Reactor>, t: u64, conn: usize, c: usize| {
        stamps.stamp(conn, c);
        r.send(
            t,
            Payload::Mapped {
                head: head(c),
                map: map.clone(),
                off: c * CHUNK,
                len: CHUNK,
            },
        )
        .expect("send");
    };
    for t in tokens {
        let (conn, c) = next.get_mut(&t).unwrap();
        while *c < WINDOW.min(chunks) {
            push(&mut r, t, *conn, *c);
            *c += 1;
        }
    }
    let mut events = Vec::new();
    let mut closed = Vec::new();
    let mut cut_off = 0u64;
    while done_conns < total {
        r.poll(Some(Duration::from_millis(100)), &mut |c| match c {
            Completion::Sent { conn, frames } => events.push((conn, frames)),
            Completion::Closed { conn, error } => closed.push((conn, error)),
            _ => {}
        })
        .expect("poll");
        for (t, error) in closed.drain(..) {
            // The engine cut a receiver off (no progress within its stall limit): count it.
            eprintln!("connection {t} cut off: {error:?}");
            cut_off += 1;
            done_conns += 1;
            next.remove(&t);
        }
        for (t, frames) in events.drain(..) {
            if !next.contains_key(&t) {
                continue;
            }
            let n = sent_frames.entry(t).or_default();
            *n += frames;
            if *n == chunks {
                done_conns += 1;
            }
            let (conn, c) = next.get_mut(&t).unwrap();
            for _ in 0..frames {
                if *c < chunks {
                    push(&mut r, t, *conn, *c);
                    *c += 1;
                }
            }
        }
    }
    // Let the last zero-copy notifications arrive before counting.
    for _ in 0..10 {
        r.poll(Some(Duration::from_millis(5)), &mut |_| {})
            .expect("poll");
    }
    let st = r.stats();
    SenderResult {
        cpu_s: thread_cpu_s() - cpu0,
        zc_sends: st.zc_sends,
        zc_copied: st.zc_copied,
        zc_fallbacks: st.zc_fallbacks,
        cut_off,
    }
}

/// Baseline: header with `send(MSG_MORE)`, body with `sendfile(2)`, epoll-driven.
fn sendfile_sender(
    conns: Vec<(usize, TcpStream)>,
    file: Arc<std::fs::File>,
    stamps: Arc<Stamps>,
    core: usize,
) -> SenderResult {
    use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
    engine::pin_to_core(core);
    let cpu0 = thread_cpu_s();
    let chunks = stamps.chunks;
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).unwrap();
    struct C {
        conn: usize,
        s: TcpStream,
        chunk: usize,
        /// Bytes of the current frame sent.
        pos: usize,
        /// Chunks fully handed over (the window's tail).
        acked: usize,
    }
    let mut cs: Vec<C> = conns
        .into_iter()
        .map(|(conn, s)| {
            s.set_nonblocking(true).unwrap();
            C {
                conn,
                s,
                chunk: 0,
                pos: 0,
                acked: 0,
            }
        })
        .collect();
    for (i, c) in cs.iter().enumerate() {
        epoll
            .add(&c.s, EpollEvent::new(EpollFlags::EPOLLOUT, i as u64))
            .unwrap();
        for k in 0..WINDOW.min(chunks) {
            stamps.stamp(c.conn, k);
        }
    }
    let mut left = cs.len();
    let mut evs = vec![EpollEvent::empty(); 256];
    let file_fd = file.as_raw_fd();
    while left > 0 {
        let n = epoll.wait(&mut evs, EpollTimeout::from(100u16)).unwrap();
        for ev in &evs[..n] {
            let i = ev.data() as usize;
            let c = &mut cs[i];
            loop {
                if c.chunk == chunks {
                    break;
                }
                if c.pos < HEAD {
                    let h = head(c.chunk);
                    // SAFETY: send on our socket from a live buffer.
                    let r = unsafe {
                        libc::send(
                            c.s.as_raw_fd(),
                            h[c.pos..].as_ptr().cast(),
                            HEAD - c.pos,
                            libc::MSG_MORE | libc::MSG_NOSIGNAL,
                        )
                    };
                    if r < 0 {
                        break;
                    }
                    c.pos += r as usize;
                    continue;
                }
                let mut off = (c.chunk * CHUNK + (c.pos - HEAD)) as libc::off_t;
                // SAFETY: sendfile between descriptors we own.
                let r =
                    unsafe { libc::sendfile(c.s.as_raw_fd(), file_fd, &mut off, FRAME - c.pos) };
                if r <= 0 {
                    break;
                }
                c.pos += r as usize;
                if c.pos == FRAME {
                    c.pos = 0;
                    c.chunk += 1;
                    c.acked += 1;
                    if c.acked + WINDOW - 1 < chunks {
                        stamps.stamp(c.conn, c.acked + WINDOW - 1);
                    }
                    if c.chunk == chunks {
                        left -= 1;
                        let _ = epoll.delete(&c.s);
                        break;
                    }
                }
            }
        }
    }
    SenderResult {
        cpu_s: thread_cpu_s() - cpu0,
        ..SenderResult::default()
    }
}

/// Reads every byte of its connections; records per-chunk latency.
fn receiver(
    conns: Vec<(usize, TcpStream)>,
    stamps: Arc<Stamps>,
    image: usize,
) -> (Histogram<u64>, usize) {
    let mut r = engine::open(Backend::Syscall, Limits::default()).expect("receiver engine");
    let mut got: HashMap<u64, (usize, usize)> = HashMap::new();
    for (conn, s) in conns {
        let t = conn as u64;
        r.register(t, s).unwrap();
        got.insert(t, (conn, 0));
    }
    let want = image / CHUNK * FRAME;
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
    let mut left = got.len();
    while left > 0 {
        r.poll(Some(Duration::from_millis(100)), &mut |c| match c {
            Completion::Data { conn, bytes } => {
                let (idx, n) = got.get_mut(&conn).unwrap();
                let before = *n / FRAME;
                *n += bytes.len();
                for chunk in before..*n / FRAME {
                    let _ = hist.record(stamps.age_us(*idx, chunk).max(1));
                }
                if *n == want {
                    left -= 1;
                }
            }
            // Cut off by the sender before the end.
            Completion::Closed { conn, .. } if got[&conn].1 < want => left -= 1,
            _ => {}
        })
        .unwrap();
    }
    (hist, got.values().map(|v| v.1).sum())
}

/// K connected pairs: (sender side, receiver side), accepted before the clock starts.
fn pairs(k: usize, veth: Option<(&Netns, &Netns, Ipv4Addr)>) -> Vec<(TcpStream, TcpStream)> {
    let listener = match veth {
        Some((a, _, addr)) => a
            .run(move || TcpListener::bind((addr, 0)))
            .unwrap()
            .unwrap(),
        None => TcpListener::bind("127.0.0.1:0").unwrap(),
    };
    // SAFETY: raising the backlog of our own listening socket.
    unsafe { libc::listen(listener.as_raw_fd(), 1024) };
    let to: SocketAddr = listener.local_addr().unwrap();
    let clients: Vec<TcpStream> = match veth {
        Some((_, b, _)) => b
            .run(move || {
                (0..k)
                    .map(|_| TcpStream::connect(to))
                    .collect::<io::Result<Vec<_>>>()
            })
            .unwrap()
            .unwrap(),
        None => (0..k).map(|_| TcpStream::connect(to).unwrap()).collect(),
    };
    let mut servers = HashMap::new();
    for _ in 0..k {
        let (s, from) = listener.accept().unwrap();
        servers.insert(from, s);
    }
    clients
        .into_iter()
        .map(|c| {
            let s = servers.remove(&c.local_addr().unwrap()).unwrap();
            (s, c)
        })
        .collect()
}

#[derive(Clone, Copy)]
struct Case<'a> {
    kind: Kind,
    transport: &'static str,
    k: usize,
    image: usize,
    map: &'a Arc<memmap2::Mmap>,
    file: &'a Arc<std::fs::File>,
    veth: Option<(&'a Netns, &'a Netns, Ipv4Addr)>,
}

/// The run with the median throughput of `reps` (noise on a shared 2-core machine is large).
fn median_run(reps: usize, case: Case<'_>) -> serde_json::Value {
    let mut runs: Vec<serde_json::Value> = (0..reps)
        .map(|_| {
            run(Case {
                veth: case.veth,
                ..case
            })
        })
        .collect();
    runs.sort_by(|a, b| {
        a["gbps"]
            .as_f64()
            .unwrap()
            .total_cmp(&b["gbps"].as_f64().unwrap())
    });
    let mut m = runs.swap_remove(reps / 2);
    m["reps"] = reps.into();
    m
}

fn run(case: Case<'_>) -> serde_json::Value {
    let Case {
        kind,
        transport,
        k,
        image,
        map,
        file,
        veth,
    } = case;
    let chunks = image / CHUNK;
    let ps = pairs(k, veth);
    let stamps = Arc::new(Stamps {
        start: Instant::now(),
        chunks,
        at: (0..k * chunks).map(|_| AtomicU64::new(0)).collect(),
    });
    let cores = engine::cores().min(k);
    let mut send_sets: Vec<Vec<(usize, TcpStream)>> = (0..cores).map(|_| Vec::new()).collect();
    let rx_threads = 2.min(k);
    let mut recv_sets: Vec<Vec<(usize, TcpStream)>> = (0..rx_threads).map(|_| Vec::new()).collect();
    for (i, (s, c)) in ps.into_iter().enumerate() {
        send_sets[i % cores].push((i, s));
        recv_sets[i % rx_threads].push((i, c));
    }
    let start = Instant::now();
    let receivers: Vec<_> = recv_sets
        .into_iter()
        .map(|set| {
            let stamps = stamps.clone();
            std::thread::spawn(move || receiver(set, stamps, image))
        })
        .collect();
    let senders: Vec<_> = send_sets
        .into_iter()
        .enumerate()
        .map(|(core, set)| {
            let (stamps, map, file) = (stamps.clone(), map.clone(), file.clone());
            std::thread::spawn(move || kind.send(set, map, file, stamps, core))
        })
        .collect();
    let (mut cpu, mut zc, mut copied, mut fallbacks, mut cut_off) = (0.0, 0, 0, 0, 0);
    for s in senders {
        let r = s.join().expect("sender");
        cpu += r.cpu_s;
        zc += r.zc_sends;
        copied += r.zc_copied;
        fallbacks += r.zc_fallbacks;
        cut_off += r.cut_off;
    }
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
    let mut delivered = 0usize;
    for r in receivers {
        let (h, bytes) = r.join().expect("receiver");
        hist.add(h).unwrap();
        delivered += bytes;
    }
    let secs = start.elapsed().as_secs_f64();
    let gb = delivered as f64 / 1e9;
    let copied_fraction = kind.copied_fraction(zc, copied);
    serde_json::json!({
        "bench": "fanout",
        "backend": kind.name(),
        "transport": transport,
        "k": k,
        "image_mib": image >> 20,
        "gbps": gb * 8.0 / secs,
        "gbytes_per_s": gb / secs,
        "cpu_s_per_gb": cpu / gb,
        "sender_cpu_s": cpu,
        "p50_us": hist.value_at_quantile(0.5),
        "p99_us": hist.value_at_quantile(0.99),
        "p999_us": hist.value_at_quantile(0.999),
        "copied_fraction": copied_fraction,
        "zc_sends": zc,
        "zc_fallbacks": fallbacks,
        "cut_off": cut_off,
        "seconds": secs,
    })
}

pub fn fanout(quick: bool) {
    let image: usize = 64 << 20;
    let ks: &[usize] = if quick {
        &[1, 8, 64]
    } else {
        &[1, 2, 8, 64, 256]
    };
    let reps = if quick { 1 } else { 3 };
    // The image lives on tmpfs so sendfile and the mapping read the same resident pages.
    let path = std::path::Path::new("/dev/shm").join(format!("pfs-fanout-{}", std::process::id()));
    {
        let mut f = std::fs::File::create(&path).expect("image on /dev/shm");
        f.write_all(&pfs::manifest::synth_bytes(5, image as u64))
            .unwrap();
    }
    let file = Arc::new(std::fs::File::open(&path).unwrap());
    // SAFETY: our own file, not modified while mapped.
    let map = Arc::new(unsafe { memmap2::Mmap::map(&*file) }.unwrap());
    let _ = std::fs::remove_file(&path);
    let kinds = [
        Kind::Zc,
        Kind::ZcAlways,
        Kind::UringCopy,
        Kind::Send,
        Kind::Sendfile,
    ];
    for &k in ks {
        for kind in kinds {
            println!(
                "{}",
                median_run(
                    reps,
                    Case {
                        kind,
                        transport: "loopback",
                        k,
                        image,
                        map: &map,
                        file: &file,
                        veth: None,
                    }
                )
            );
        }
    }
    if !pfs::netns::can_create() {
        eprintln!("veth transport skipped: needs root and iproute2");
        return;
    }
    let a = Netns::create("fo-a").expect("netns");
    let b = Netns::create("fo-b").expect("netns");
    let pair = VethPair::create(
        &a,
        "fo0",
        Ipv4Addr::new(198, 18, 7, 1),
        &b,
        "fo1",
        Ipv4Addr::new(198, 18, 7, 2),
        24,
    )
    .expect("veth");
    for &k in ks {
        for kind in kinds {
            println!(
                "{}",
                median_run(
                    reps,
                    Case {
                        kind,
                        transport: "veth",
                        k,
                        image,
                        map: &map,
                        file: &file,
                        veth: Some((&a, &b, pair.a_addr)),
                    }
                )
            );
        }
    }
}
