//! The I/O engine: one reactor per core that turns socket readiness or completions into
//! [`Completion`]s for a driver (the peer runtime, the fan-out benchmark).
//!
//! Two backends share this interface: [`uring`] (io_uring: multishot accept and recv from a
//! provided buffer ring, `SENDMSG_ZC` straight from mmapped images, timeouts through the
//! ring's wait) and [`poll`] (epoll and plain non-blocking syscalls), chosen at start. Each
//! reactor belongs to one thread; cores never share one (thread-per-core, no work stealing).
//!
//! Everything is bounded: frames queued per connection, sends in flight per connection and per
//! core, and how long a connection may make no send progress before it is cut off, so a slow
//! or hostile child never holds up its siblings.

pub mod poll;
pub mod uring;

use std::{
    collections::VecDeque,
    io,
    net::{SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket},
    os::fd::OwnedFd,
    sync::Arc,
    time::{Duration, Instant},
};

/// Names a socket registered with a reactor; chosen by the driver, unique per reactor.
pub type Token = u64;

/// Which reactor implementation runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    /// io_uring if the kernel allows it, else plain syscalls.
    Auto,
    /// io_uring with zero-copy sends above the threshold.
    Uring,
    /// io_uring, every send copied (for comparison).
    UringCopy,
    /// epoll and plain non-blocking syscalls.
    Syscall,
}

/// Limits every reactor enforces.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Frames queued per connection (beyond that `send` fails with `Backpressure`).
    pub queue_frames: usize,
    /// Frames one send operation carries (they go out as one `sendmsg`).
    pub batch_frames: usize,
    /// Send operations in flight per core; more wait in an overflow list.
    pub inflight_per_core: usize,
    /// A connection with queued data and no send progress for this long is cut off.
    pub stall: Duration,
    /// Sends at least this large go out zero-copy (io_uring backend).
    pub zc_threshold: usize,
    /// A ring whose zero-copy sends the kernel reports copied anyway (loopback, veth, a NIC
    /// without scatter-gather) switches to plain sends after `ZC_PROBE` notifications.
    pub zc_adaptive: bool,
    /// The largest datagram a UDP socket on this reactor must receive whole (TFTP DATA of
    /// the largest blksize in use plus its header); bigger ones are dropped and counted
    /// (`recv_truncated`).
    pub datagram_bytes: usize,
}

impl Limits {
    /// The defaults, with room for TFTP DATA of `blksize`.
    pub fn for_blksize(blksize: u16) -> Limits {
        Limits {
            datagram_bytes: usize::from(blksize).max(1500) + 64,
            ..Limits::default()
        }
    }
}

/// Zero-copy notifications a ring collects before the adaptive check decides.
pub const ZC_PROBE: u32 = 32;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            queue_frames: 8192,
            batch_frames: 8,
            inflight_per_core: 1024,
            stall: Duration::from_secs(10),
            zc_threshold: 16 * 1024,
            zc_adaptive: true,
            datagram_bytes: 1500 + 64,
        }
    }
}

/// One frame to send on a stream: owned bytes, or a small header followed by a range of a
/// shared mapping (sent without copying where the backend can; the mapping stays alive until
/// the kernel is done with it).
#[derive(Clone)]
pub enum Payload {
    Owned(Vec<u8>),
    Mapped {
        head: Vec<u8>,
        map: Arc<memmap2::Mmap>,
        off: usize,
        len: usize,
    },
}

impl Payload {
    /// Header (or the whole owned frame) and the mapped body.
    pub fn parts(&self) -> (&[u8], &[u8]) {
        match self {
            Payload::Owned(b) => (b, &[]),
            Payload::Mapped {
                head,
                map,
                off,
                len,
            } => (head, &map[*off..*off + *len]),
        }
    }
    pub fn len(&self) -> usize {
        let (a, b) = self.parts();
        a.len() + b.len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl std::fmt::Debug for Payload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Payload({} bytes)", self.len())
    }
}

/// What a reactor reports. Borrowed bytes are valid only during the callback.
#[derive(Debug)]
pub enum Completion<'a> {
    Accepted {
        listener: Token,
        stream: TcpStream,
        from: SocketAddr,
    },
    Connected {
        conn: Token,
        result: io::Result<()>,
    },
    Data {
        conn: Token,
        bytes: &'a [u8],
    },
    /// The peer closed, the connection failed, or it was cut off for stalling. Not reported
    /// for connections the driver closed itself.
    Closed {
        conn: Token,
        error: Option<io::Error>,
    },
    Datagram {
        sock: Token,
        from: SocketAddr,
        bytes: &'a [u8],
    },
    /// Frames of `conn` fully handed to the kernel since the last report.
    Sent {
        conn: Token,
        frames: usize,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("connection {0} has {1} frames queued (limit)")]
    Backpressure(Token, usize),
    #[error("no socket with token {0}")]
    UnknownToken(Token),
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Counters every backend keeps; shown in the peer's stats.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct EngineStats {
    pub backend: &'static str,
    pub sends: u64,
    pub zc_sends: u64,
    /// Zero-copy sends the kernel copied anyway (`IORING_NOTIF_USAGE_ZC_COPIED`).
    pub zc_copied: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub short_sends: u64,
    pub overflowed: u64,
    pub stalled_cutoffs: u64,
    /// 1 once the ring switched from zero-copy to plain sends because the kernel copied.
    pub zc_fallbacks: u64,
    pub max_inflight: u64,
    /// Receives that found the provided-buffer ring empty (re-armed).
    pub recv_no_buffers: u64,
    /// Datagrams larger than `Limits::datagram_bytes`, dropped.
    pub recv_truncated: u64,
}

/// The operations a driver needs; both backends implement it.
pub trait Reactor {
    fn listen(&mut self, token: Token, listener: TcpListener) -> io::Result<()>;
    /// Adopts a connected stream (an accepted one).
    fn register(&mut self, token: Token, stream: TcpStream) -> io::Result<()>;
    /// Connects `socket` (from [`tcp_socket`], made in whatever network namespace it must
    /// live in) to `to`; answers `Connected`.
    fn connect(&mut self, token: Token, socket: OwnedFd, to: SocketAddrV4) -> io::Result<()>;
    fn udp(&mut self, token: Token, socket: UdpSocket) -> io::Result<()>;
    /// One datagram (small control messages; never zero-copy).
    fn send_to(&mut self, sock: Token, to: SocketAddr, bytes: &[u8]) -> Result<(), EngineError>;
    /// Queues a frame on a stream; frames go out in order.
    fn send(&mut self, conn: Token, frame: Payload) -> Result<(), EngineError>;
    /// Frames queued or in flight on `conn`.
    fn queued(&self, conn: Token) -> usize;
    /// Closes and forgets a socket; no further completions are reported for it.
    fn close(&mut self, token: Token);
    /// Stops serving a socket without closing it, as a hung process does: no receive or
    /// accept is posted for it again (what arrives stays in the kernel's buffers: a stream's
    /// receive window closes, datagrams pile up and then are dropped, connections wait in
    /// the accept backlog), queued frames stay unsent, it is never cut off for stalling, and
    /// nothing more is reported for it. Only [`Reactor::close`] releases it.
    fn freeze(&mut self, token: Token);
    /// What the kernel holds unread for a socket (`FIONREAD`): a stream's bytes, a datagram
    /// socket's next datagram size; 0 for an unknown token.
    fn unread(&self, token: Token) -> usize;
    /// Waits up to `timeout` for events, then reports every completion gathered (all are
    /// drained from the kernel before the first callback runs).
    fn poll(
        &mut self,
        timeout: Option<Duration>,
        on: &mut dyn FnMut(Completion<'_>),
    ) -> io::Result<()>;
    fn stats(&self) -> EngineStats;
}

/// Opens the reactor `backend` asks for; `Auto` falls back to syscalls (and says why) when
/// io_uring is unavailable (old kernel, seccomp, `io_uring_disabled`).
pub fn open(backend: Backend, limits: Limits) -> io::Result<Box<dyn Reactor>> {
    match backend {
        Backend::Syscall => Ok(Box::new(poll::PollReactor::new(limits)?)),
        Backend::Uring => Ok(Box::new(uring::UringReactor::new(limits, true)?)),
        Backend::UringCopy => Ok(Box::new(uring::UringReactor::new(limits, false)?)),
        Backend::Auto => match uring::UringReactor::new(limits.clone(), true) {
            Ok(r) => Ok(Box::new(r)),
            Err(e) => {
                tracing::info!("io_uring unavailable ({e}); using the syscall backend");
                Ok(Box::new(poll::PollReactor::new(limits)?))
            }
        },
    }
}

/// The frames of one connection waiting to go out, with the byte offset already sent of the
/// first; shared by both backends.
#[derive(Debug)]
pub(crate) struct SendQueue {
    pub frames: VecDeque<Payload>,
    /// Bytes of `frames[0]` already sent.
    pub sent: usize,
    pub last_progress: Instant,
}

impl SendQueue {
    pub fn new(now: Instant) -> Self {
        SendQueue {
            frames: VecDeque::new(),
            sent: 0,
            last_progress: now,
        }
    }

    pub fn push(
        &mut self,
        token: Token,
        frame: Payload,
        limits: &Limits,
    ) -> Result<(), EngineError> {
        if self.frames.len() >= limits.queue_frames {
            return Err(EngineError::Backpressure(token, self.frames.len()));
        }
        if self.frames.is_empty() {
            self.last_progress = Instant::now();
        }
        self.frames.push_back(frame);
        Ok(())
    }

    /// Up to `max` frames from the front as I/O slices (the first one minus what was sent).
    pub fn slices(&self, max: usize) -> Vec<io::IoSlice<'_>> {
        let mut out = Vec::with_capacity(max * 2);
        let mut skip = self.sent;
        for f in self.frames.iter().take(max) {
            let (a, b) = f.parts();
            for part in [a, b] {
                if skip >= part.len() {
                    skip -= part.len();
                    continue;
                }
                out.push(io::IoSlice::new(&part[skip..]));
                skip = 0;
            }
        }
        out
    }

    /// Records `n` bytes sent; returns how many frames completed.
    pub fn advance(&mut self, mut n: usize) -> usize {
        let mut done = 0;
        if n > 0 {
            self.last_progress = Instant::now();
        }
        while n > 0 {
            let Some(front) = self.frames.front() else {
                debug_assert!(false, "sent more than was queued");
                break;
            };
            let left = front.len() - self.sent;
            if n >= left {
                n -= left;
                self.frames.pop_front();
                self.sent = 0;
                done += 1;
            } else {
                self.sent += n;
                n = 0;
            }
        }
        done
    }

    pub fn stalled(&self, now: Instant, limit: Duration) -> bool {
        !self.frames.is_empty() && now.duration_since(self.last_progress) > limit
    }
}

/// A fresh IPv4 TCP socket in the calling thread's network namespace, for [`Reactor::connect`].
pub fn tcp_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the descriptor is owned at once.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor nobody else owns.
    let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    tcp_liveness(&fd);
    Ok(fd)
}

/// How long a peer stream may go without an acknowledgement before the kernel gives up on
/// it (`TCP_USER_TIMEOUT`, with keepalive probes on an idle stream). Measured in `pfs lab`:
/// without it a phone whose cable is pulled (link down, no RST) left its children on a
/// half-open stream for the whole run, and its parent sending into it for the engine's stall
/// limit. Equal to the core's `root_timeout`.
pub const PEER_TIMEOUT: Duration = Duration::from_secs(3);

/// Sets the stream liveness options (keepalive every second once idle for a second, and
/// `TCP_USER_TIMEOUT` of [`PEER_TIMEOUT`]); best effort, a failure is logged.
pub fn tcp_liveness(fd: &impl std::os::fd::AsFd) {
    use nix::sys::socket::{setsockopt, sockopt};
    let ms = PEER_TIMEOUT.as_millis() as u32;
    let r = setsockopt(fd, sockopt::KeepAlive, &true)
        .and_then(|()| setsockopt(fd, sockopt::TcpKeepIdle, &1))
        .and_then(|()| setsockopt(fd, sockopt::TcpKeepInterval, &1))
        .and_then(|()| setsockopt(fd, sockopt::TcpKeepCount, &2))
        .and_then(|()| setsockopt(fd, sockopt::TcpUserTimeout, &ms));
    if let Err(e) = r {
        tracing::debug!("stream liveness options: {e}");
    }
}

/// `FIONREAD` of a descriptor (0 on error).
pub(crate) fn fionread(fd: std::os::fd::RawFd) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int.
    let r = unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) };
    if r == 0 { n.max(0) as usize } else { 0 }
}

/// Pins the calling thread to `core` (best effort: a cgroup may forbid it).
pub fn pin_to_core(core: usize) {
    let mut set = nix::sched::CpuSet::new();
    if set.set(core).is_ok() {
        let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set);
    }
}

/// Cores this process may run on.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owned(n: usize, b: u8) -> Payload {
        Payload::Owned(vec![b; n])
    }

    #[test]
    fn send_queue_tracks_partial_frames() {
        let lim = Limits {
            queue_frames: 3,
            ..Limits::default()
        };
        let mut q = SendQueue::new(Instant::now());
        q.push(1, owned(10, 1), &lim).unwrap();
        q.push(1, owned(5, 2), &lim).unwrap();
        q.push(1, owned(7, 3), &lim).unwrap();
        assert!(matches!(
            q.push(1, owned(1, 4), &lim),
            Err(EngineError::Backpressure(1, 3))
        ));
        assert_eq!(q.advance(4), 0);
        let s = q.slices(2);
        assert_eq!(s.iter().map(|s| s.len()).collect::<Vec<_>>(), vec![6, 5]);
        assert_eq!(s[0][0], 1);
        assert_eq!(q.advance(6 + 5 + 2), 2);
        assert_eq!(q.slices(8).iter().map(|s| s.len()).sum::<usize>(), 5);
        assert_eq!(q.advance(5), 1);
        assert!(q.frames.is_empty());
        assert!(!q.stalled(
            Instant::now() + Duration::from_secs(100),
            Duration::from_secs(1)
        ));
    }
}
