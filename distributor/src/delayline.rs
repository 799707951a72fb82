//! A real WAN delay without netem (this kernel has no `sch_netem`): the WAN link between `hq`
//! and the site router becomes a pair of TUN devices, one in each namespace, and a thread of
//! the lab process carries every IP packet from one to the other after a fixed one-way delay
//! (`--wan-rtt-ms R`: R/2 each way). The tbf shaping stays on each TUN device's egress, so a
//! packet is first paced at the WAN rate, then delayed, as on a long, narrow link.
//!
//! Bounds: the queue holds at most [`QUEUE_BYTES`] per direction (beyond it packets are dropped
//! and counted, as a router's buffer would); the thread stops when the line is dropped, and the
//! TUN devices (not persistent) vanish with its descriptors, before the namespaces go.

use std::{
    collections::VecDeque,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use crate::netns::{Netns, NetnsError};

/// Bytes a direction may hold in flight (a generous router buffer: 100 ms at 1 Gbit/s is
/// 12.5 MB); packets beyond are dropped and counted.
pub const QUEUE_BYTES: usize = 16 << 20;

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TUN: libc::c_short = 0x0001;
const IFF_NO_PI: libc::c_short = 0x1000;

/// `struct ifreq` as TUNSETIFF reads it: a name and the flags (40 bytes on 64-bit Linux).
#[repr(C)]
struct IfReq {
    name: [u8; 16],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// Creates TUN device `name` inside `ns` (a device belongs to the namespace of the thread that
/// opens `/dev/net/tun`) and returns its descriptor, non-blocking.
pub fn open_tun(ns: &Netns, name: &str) -> Result<OwnedFd, NetnsError> {
    let owned = name.to_owned();
    let fd = ns.run(move || -> std::io::Result<OwnedFd> {
        // SAFETY: open(2) with a NUL-terminated path; the result is checked.
        let fd = unsafe {
            libc::open(
                c"/dev/net/tun".as_ptr(),
                libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: fd was just opened and is owned here.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut req = IfReq {
            name: [0; 16],
            flags: IFF_TUN | IFF_NO_PI,
            _pad: [0; 22],
        };
        let n = owned.len().min(15);
        req.name[..n].copy_from_slice(&owned.as_bytes()[..n]);
        // SAFETY: TUNSETIFF reads and writes a `struct ifreq`, which `req` lays out.
        if unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF as _, &mut req) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(fd)
    })?;
    fd.map_err(|source| NetnsError::Open {
        name: format!("/dev/net/tun ({name} in {})", ns.name()),
        source,
    })
}

/// What the line carried, per direction (0: hq -> site, 1: site -> hq).
#[derive(Debug, Default)]
pub struct DelayStats {
    pub packets: [AtomicU64; 2],
    pub bytes: [AtomicU64; 2],
    pub dropped: [AtomicU64; 2],
    /// The latest a packet left after its due time (µs): how exact the delay was.
    pub late_max_us: AtomicU64,
}

/// The running delay line; dropping it stops the thread and closes both devices.
#[derive(Debug)]
pub struct DelayLine {
    pub one_way: Duration,
    pub stats: Arc<DelayStats>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl DelayLine {
    /// Carries packets between `hq` (read from it, written to `site`) and back, each after
    /// `one_way`. Takes both descriptors; they close when the line drops.
    pub fn start(hq: OwnedFd, site: OwnedFd, one_way: Duration) -> std::io::Result<DelayLine> {
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(DelayStats::default());
        let (s, st) = (stop.clone(), stats.clone());
        let thread = std::thread::Builder::new()
            .name("wan-delay".into())
            .spawn(move || carry([hq, site], one_way, &s, &st))?;
        Ok(DelayLine {
            one_way,
            stats,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for DelayLine {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads at most this many packets from one device per wake-up (bounded work per turn).
const READ_BATCH: usize = 256;

fn carry(fds: [OwnedFd; 2], one_way: Duration, stop: &AtomicBool, stats: &DelayStats) {
    let mut queues: [VecDeque<(Instant, Vec<u8>)>; 2] = [VecDeque::new(), VecDeque::new()];
    let mut queued = [0usize; 2];
    let mut buf = vec![0u8; 65_536];
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        // Sleep until the next packet is due, at most 20 ms (to notice `stop`).
        let wait = queues
            .iter()
            .filter_map(|q| q.front().map(|(due, _)| due.saturating_duration_since(now)))
            .min()
            .unwrap_or(Duration::from_millis(20))
            .min(Duration::from_millis(20));
        let mut pfd = [
            libc::pollfd {
                fd: fds[0].as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: fds[1].as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let ts = libc::timespec {
            tv_sec: wait.as_secs() as libc::time_t,
            tv_nsec: wait.subsec_nanos() as libc::c_long,
        };
        // SAFETY: two valid pollfds, a valid timespec, no signal mask.
        let n = unsafe { libc::ppoll(pfd.as_mut_ptr(), 2, &ts, std::ptr::null()) };
        if n < 0 && std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            tracing::warn!("wan delay line: ppoll: {}", std::io::Error::last_os_error());
            return;
        }
        let now = Instant::now();
        for dir in 0..2 {
            if pfd[dir].revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0 {
                return; // the device went away
            }
            if pfd[dir].revents & libc::POLLIN == 0 {
                continue;
            }
            for _ in 0..READ_BATCH {
                // SAFETY: reading into a buffer of the given length.
                let r =
                    unsafe { libc::read(fds[dir].as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
                if r <= 0 {
                    break; // EAGAIN: drained
                }
                let len = r as usize;
                if queued[dir] + len > QUEUE_BYTES {
                    stats.dropped[dir].fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                queued[dir] += len;
                queues[dir].push_back((now + one_way, buf[..len].to_vec()));
            }
        }
        let now = Instant::now();
        for dir in 0..2 {
            while let Some((due, _)) = queues[dir].front() {
                if *due > now {
                    break;
                }
                let late = now.duration_since(*due).as_micros() as u64;
                stats.late_max_us.fetch_max(late, Ordering::Relaxed);
                let (_, pkt) = queues[dir].pop_front().expect("front");
                queued[dir] -= pkt.len();
                // SAFETY: writing one whole packet to the other device.
                let w = unsafe {
                    libc::write(fds[1 - dir].as_raw_fd(), pkt.as_ptr().cast(), pkt.len())
                };
                if w < 0 {
                    stats.dropped[dir].fetch_add(1, Ordering::Relaxed);
                } else {
                    stats.packets[dir].fetch_add(1, Ordering::Relaxed);
                    stats.bytes[dir].fetch_add(pkt.len() as u64, Ordering::Relaxed);
                }
            }
        }
    }
}

/// Round-trip times `ping` measured from inside `ns` to `addr` (ms): (min, median), from
/// `count` echoes 200 ms apart. `None` when ping is missing or got no answer.
pub fn ping_rtt_ms(ns: &str, addr: std::net::Ipv4Addr, count: u32) -> Option<(f64, f64)> {
    crate::netns::check_lab_addr(addr).ok()?;
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", ns, "ping", "-n", "-c"])
        .arg(count.clamp(1, 20).to_string())
        .args(["-i", "0.2", "-W", "2"])
        .arg(addr.to_string())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut v: Vec<f64> = text
        .lines()
        .filter_map(|l| {
            l.split("time=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some((v[0], v[v.len() / 2]))
}
