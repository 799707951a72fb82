//! `pfs origin`: a read-only TFTP server on real UDP sockets, driving [`ServerSession`]s.
//!
//! No thread per transfer: one event loop per core (at most four), each an epoll loop over
//! its listening socket (SO_REUSEPORT on the one address) and one socket per transfer (the TFTP
//! transfer id), with one timer heap. Sessions are sans-IO, so a loop only moves datagrams and
//! file bytes; descriptors are bounded by `max_sessions` (plus a listener and an epoll
//! instance per loop), and a request beyond it gets ERROR 0 "server busy, retry later".
//!
//! Requests: a leading `/` names the served root (PXE ROMs, iPXE and `get tftp://host/file`
//! send one; tftpd-hpa `-s` serves them the same way); `..`, symlinks leading out and writes
//! are refused. netascii is translated (LF -> CR LF, CR -> CR NUL). Replies leave from the
//! address the request arrived on (IP_PKTINFO), so a client of a host with several addresses
//! hears the address it asked.
//!
//! A new RRQ from a client endpoint that has a transfer: first, whatever the client sent that
//! transfer is read (a UEFI size probe's ERROR 8 ends it). Then a different request, or any
//! request once every block has gone out (the client has them all and its final ACK was lost),
//! means the client has moved on: the old transfer ends and the new one starts at once. The
//! same request while blocks remain unsent is the client retransmitting it because our first
//! answer is still queued on a slow link: it is dropped, since a second transfer would send
//! every block twice.

use std::{
    cmp::Reverse,
    collections::{BinaryHeap, HashMap},
    fs::File,
    io::{self, IoSlice, IoSliceMut, Read},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket},
    os::{
        fd::{AsFd, AsRawFd},
        unix::fs::FileExt,
    },
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    thread::JoinHandle,
    time::Instant,
};

use nix::sys::{
    epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout},
    socket::{
        ControlMessage, ControlMessageOwned, MsgFlags, SockaddrStorage, recvmsg, sendmsg,
        setsockopt, sockopt,
    },
};

use crate::phone::Time;
use crate::tftp::{
    ErrorCode, Packet, TftpError, netascii,
    packet::{data_header, decode, error, oack},
    server::{ServerAction, ServerConfig, ServerSession},
};

#[derive(Debug, Clone)]
pub struct OriginConfig {
    pub root: PathBuf,
    pub listen: SocketAddr,
    pub max_sessions: usize,
    pub session: ServerConfig,
}

/// A running origin; dropping it stops the loop and every transfer still running.
pub struct OriginHandle {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    pub stats: Arc<OriginStats>,
}

#[derive(Debug, Default)]
pub struct OriginStats {
    pub transfers_ok: AtomicUsize,
    pub transfers_failed: AtomicUsize,
    pub refused: AtomicUsize,
    /// RRQs repeated by a client while its transfer still has blocks to send, dropped.
    pub duplicate_requests: AtomicUsize,
    /// RRQs from a client endpoint whose earlier transfer was still open (its final ACK lost,
    /// or the client started over): the earlier one ended, the new one started.
    pub restarted: AtomicUsize,
    /// Windows resent after the client reported a loss, and after it went silent.
    pub rewinds: AtomicUsize,
    pub timeouts: AtomicUsize,
    /// DATA blocks sent more than once, whatever the cause.
    pub resent_blocks: AtomicUsize,
    pub bytes: AtomicUsize,
    /// Transfers running now, and the most that ever ran at once (counted here, at the
    /// origin: what a site's protocol must keep bounded).
    pub active_sessions: AtomicUsize,
    pub peak_sessions: AtomicUsize,
}

impl Drop for OriginHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Binds and starts serving: one event loop per core (at most [`MAX_LOOPS`]), each with its
/// own listening socket on the same address (SO_REUSEPORT). The kernel hashes a client
/// endpoint to one socket, so each endpoint's requests always reach the same loop, which
/// keeps that endpoint's transfers; `max_sessions` is shared by all loops.
pub fn spawn(cfg: OriginConfig) -> io::Result<OriginHandle> {
    let loops = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, MAX_LOOPS);
    spawn_loops(cfg, loops)
}

/// Most event loops an origin runs.
pub const MAX_LOOPS: usize = 4;

/// [`spawn`] with `loops` event loops.
pub fn spawn_loops(cfg: OriginConfig, loops: usize) -> io::Result<OriginHandle> {
    let root = served_root(&cfg.root)?;
    raise_fd_limit(cfg.max_sessions + 64 * loops.max(1));
    if cfg.listen.port() != 0 {
        // SO_REUSEPORT would let this origin share a port another server already holds (the
        // kernel then splits requests between two servers); a plain bind first refuses that.
        drop(std::net::UdpSocket::bind(cfg.listen).map_err(|e| {
            io::Error::new(e.kind(), format!("cannot listen on {}: {e}", cfg.listen))
        })?);
    }
    let first = listener(cfg.listen)?;
    let addr = first.local_addr()?;
    let mut sockets = vec![first];
    for _ in 1..loops.max(1) {
        sockets.push(listener(addr)?);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(OriginStats::default());
    let mut threads = Vec::new();
    for (i, socket) in sockets.into_iter().enumerate() {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        epoll.add(&socket, EpollEvent::new(EpollFlags::EPOLLIN, LISTENER))?;
        let mut server = Server {
            root: root.clone(),
            cfg: cfg.clone(),
            listener: socket,
            epoll,
            slots: Vec::new(),
            free: Vec::new(),
            by_peer: HashMap::new(),
            timers: BinaryHeap::new(),
            start: Instant::now(),
            stats: stats.clone(),
            actions: Vec::new(),
            datagram: vec![0; usize::from(crate::tftp::MAX_BLKSIZE) + 4],
        };
        let stop2 = stop.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("pfs-origin-{i}"))
            .spawn(move || server.run(&stop2));
        match spawned {
            Ok(t) => threads.push(t),
            Err(e) => {
                stop.store(true, Ordering::Relaxed);
                for t in threads {
                    let _ = t.join();
                }
                return Err(e);
            }
        }
    }
    Ok(OriginHandle {
        addr,
        stop,
        threads,
        stats,
    })
}

/// A listening socket: nonblocking, SO_REUSEPORT (one per loop), the arrival address of
/// every request reported (IP_PKTINFO), a receive buffer for a site powering on at once.
fn listener(addr: SocketAddr) -> io::Result<UdpSocket> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, bind, socket};
    let family = if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd = socket(
        family,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )?;
    setsockopt(&fd, sockopt::ReusePort, &true)?;
    match addr {
        SocketAddr::V4(_) => setsockopt(&fd, sockopt::Ipv4PacketInfo, &true)?,
        SocketAddr::V6(_) => setsockopt(&fd, sockopt::Ipv6RecvPacketInfo, &true)?,
    }
    // A site powering on sends its requests at once: hold them rather than drop them.
    const WANT_RCVBUF: usize = 4 << 20;
    if setsockopt(&fd, sockopt::RcvBufForce, &WANT_RCVBUF).is_err() {
        let _ = setsockopt(&fd, sockopt::RcvBuf, &WANT_RCVBUF);
    }
    bind(fd.as_raw_fd(), &SockaddrStorage::from(addr))?;
    Ok(UdpSocket::from(fd))
}

/// One socket per transfer: lift the soft descriptor limit towards what `max_sessions` needs
/// (never above the hard limit).
fn raise_fd_limit(want: usize) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let target = (want as u64).min(hard);
        if target > soft {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, target, hard);
        }
    }
}

mod paths;
pub use paths::{resolve, served_root};
mod source;
use source::{Source, open_source};

const LISTENER: u64 = u64::MAX;
/// Datagrams read from one socket per readiness event, so one busy client cannot starve the
/// others.
const READ_BUDGET: usize = 64;

struct Transfer {
    socket: UdpSocket,
    peer: SocketAddr,
    name: String,
    /// The RRQ that started it, byte for byte: an identical one is a retransmission.
    request: Vec<u8>,
    session: ServerSession,
    source: Source,
    deadline: Time,
    /// The earliest entry this transfer has in the timer heap.
    armed: Option<Time>,
    generation: u64,
}

struct Server {
    root: PathBuf,
    cfg: OriginConfig,
    listener: UdpSocket,
    epoll: Epoll,
    slots: Vec<Option<Transfer>>,
    free: Vec<usize>,
    by_peer: HashMap<SocketAddr, usize>,
    /// (deadline, slot, generation); entries whose slot moved on are skipped.
    timers: BinaryHeap<Reverse<(Time, usize, u64)>>,
    start: Instant,
    stats: Arc<OriginStats>,
    actions: Vec<ServerAction>,
    datagram: Vec<u8>,
}

/// Where a request came from and which local address it was sent to.
struct Request {
    peer: SocketAddr,
    local: Option<IpAddr>,
}

impl Server {
    fn now(&self) -> Time {
        self.start.elapsed().as_micros() as Time
    }

    fn run(&mut self, stop: &AtomicBool) {
        let mut events = vec![EpollEvent::empty(); 256];
        let mut buf = vec![0u8; 65_536];
        let mut generation = 0u64;
        let mut ready: Vec<u64> = Vec::with_capacity(events.len());
        while !stop.load(Ordering::Relaxed) {
            let now = self.now();
            let wait_us = self
                .timers
                .peek()
                .map_or(100_000, |Reverse((at, _, _))| at.saturating_sub(now))
                .min(100_000);
            let timeout =
                EpollTimeout::try_from(wait_us.div_ceil(1000) as i32).unwrap_or(EpollTimeout::ZERO);
            let n = match self.epoll.wait(&mut events, timeout) {
                Ok(n) => n,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    tracing::warn!(%e, "origin epoll failed");
                    return;
                }
            };
            // Requests first: a retransmitted RRQ is judged before the ACKs that followed it.
            ready.clear();
            ready.extend(events[..n].iter().map(EpollEvent::data));
            ready.sort_unstable_by_key(|&d| d != LISTENER);
            for &data in &ready {
                if data == LISTENER {
                    for _ in 0..READ_BUDGET {
                        match self.recv_request(&mut buf) {
                            Ok(Some((len, req))) => {
                                generation += 1;
                                let request = buf[..len].to_vec();
                                self.on_request(&request, req, generation);
                            }
                            Ok(None) => break,
                            Err(e) => {
                                tracing::warn!(%e, "origin socket error");
                                break;
                            }
                        }
                    }
                } else {
                    // One datagram per ready transfer per round (a client sends one ACK
                    // per window): no trailing EAGAIN read, and the epoll is level
                    // triggered, so anything left is reported again at once.
                    self.drain(data as usize, &mut buf, 1);
                }
            }
            self.expire_timers();
        }
    }

    /// Reads one request and the local address it was sent to. `None`: nothing queued.
    fn recv_request(&self, buf: &mut [u8]) -> io::Result<Option<(usize, Request)>> {
        let mut cmsg = nix::cmsg_space!(libc::in6_pktinfo);
        let mut iov = [IoSliceMut::new(buf)];
        let msg = match recvmsg::<SockaddrStorage>(
            self.listener.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_DONTWAIT,
        ) {
            Ok(m) => m,
            Err(nix::errno::Errno::EAGAIN) => return Ok(None),
            Err(nix::errno::Errno::EINTR) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let Some(peer) = msg.address.as_ref().and_then(std_addr) else {
            return Ok(Some((0, self.unknown_request())));
        };
        let mut local = None;
        if let Ok(cmsgs) = msg.cmsgs() {
            for c in cmsgs {
                match c {
                    ControlMessageOwned::Ipv4PacketInfo(info) => {
                        let dst = Ipv4Addr::from(u32::from_be(info.ipi_addr.s_addr));
                        let spec = Ipv4Addr::from(u32::from_be(info.ipi_spec_dst.s_addr));
                        // A broadcast or multicast request is answered from our own address.
                        local = Some(IpAddr::V4(
                            if dst.is_broadcast() || dst.is_multicast() || dst.is_unspecified() {
                                spec
                            } else {
                                dst
                            },
                        ));
                    }
                    ControlMessageOwned::Ipv6PacketInfo(info) => {
                        let dst = Ipv6Addr::from(info.ipi6_addr.s6_addr);
                        if !dst.is_multicast() {
                            local = Some(IpAddr::V6(dst));
                        }
                    }
                    _ => {}
                }
            }
        }
        let len = msg.bytes;
        Ok(Some((len, Request { peer, local })))
    }

    fn unknown_request(&self) -> Request {
        Request {
            peer: SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)),
            local: None,
        }
    }

    /// An ERROR from the listening port, leaving from the address the request arrived on.
    fn reply(&self, req: &Request, code: ErrorCode, msg: &str) {
        if req.peer.port() == 0 {
            return;
        }
        let bytes = error(code, msg);
        let iov = [IoSlice::new(&bytes)];
        let to = SockaddrStorage::from(req.peer);
        let fd = self.listener.as_raw_fd();
        let sent = match (req.local, req.peer) {
            (Some(IpAddr::V4(ip)), SocketAddr::V4(_)) => {
                let info = libc::in_pktinfo {
                    ipi_ifindex: 0,
                    ipi_spec_dst: libc::in_addr {
                        s_addr: u32::from(ip).to_be(),
                    },
                    ipi_addr: libc::in_addr { s_addr: 0 },
                };
                sendmsg(
                    fd,
                    &iov,
                    &[ControlMessage::Ipv4PacketInfo(&info)],
                    MsgFlags::MSG_DONTWAIT,
                    Some(&to),
                )
            }
            (Some(IpAddr::V6(ip)), SocketAddr::V6(_)) => {
                let info = libc::in6_pktinfo {
                    ipi6_addr: libc::in6_addr {
                        s6_addr: ip.octets(),
                    },
                    ipi6_ifindex: 0,
                };
                sendmsg(
                    fd,
                    &iov,
                    &[ControlMessage::Ipv6PacketInfo(&info)],
                    MsgFlags::MSG_DONTWAIT,
                    Some(&to),
                )
            }
            _ => sendmsg(fd, &iov, &[], MsgFlags::MSG_DONTWAIT, Some(&to)),
        };
        if let Err(e) = sent {
            tracing::debug!(%e, peer = %req.peer, "error reply not sent");
        }
    }

    /// A datagram on the listener as a read request: (filename, mode, options), or `None`
    /// after answering what is not one (a write, another packet, request-shaped garbage).
    fn read_request(
        &mut self,
        bytes: &[u8],
        req: &Request,
    ) -> Option<(String, String, crate::tftp::Options)> {
        match decode(bytes) {
            Ok(Packet::Rrq {
                filename,
                mode,
                options,
            }) => Some((filename.to_owned(), mode.to_owned(), options)),
            Ok(Packet::Wrq { .. }) => {
                self.reply(req, ErrorCode::AccessViolation, "read-only server");
                None
            }
            Ok(_) => {
                self.reply(req, ErrorCode::IllegalOperation, "expected a read request");
                None
            }
            Err(e) => {
                // Request-shaped garbage gets an answer; anything else is dropped.
                if bytes.len() >= 2 && bytes[0] == 0 && (bytes[1] == 1 || bytes[1] == 2) {
                    self.stats.refused.fetch_add(1, Ordering::Relaxed);
                    let code = match e {
                        TftpError::BadOption { .. } => ErrorCode::OptionNegotiation,
                        _ => ErrorCode::IllegalOperation,
                    };
                    self.reply(req, code, &e.to_string());
                }
                None
            }
        }
    }

    /// A request from an endpoint with a transfer open: `true` when it is that transfer's own
    /// request again (dropped); otherwise the old transfer ends, and the request is served.
    fn supersede(&mut self, peer: SocketAddr, bytes: &[u8]) -> bool {
        // A transfer already open for this endpoint: hear what the client sent it first (an
        // ERROR ending it, or the final ACK), then decide. Only the few datagrams queued
        // before this request matter: a fast client must not run its whole transfer here.
        if let Some(&slot) = self.by_peer.get(&peer) {
            let mut scratch = vec![0u8; 65_536];
            self.drain(slot, &mut scratch, 4);
        }
        if let Some(&slot) = self.by_peer.get(&peer) {
            let t = self.slots[slot].as_ref().expect("mapped slot");
            let all_sent = t.session.all_sent();
            if t.request == bytes && !all_sent {
                self.stats
                    .duplicate_requests
                    .fetch_add(1, Ordering::Relaxed);
                return true;
            }
            self.stats.restarted.fetch_add(1, Ordering::Relaxed);
            // The client moved on: if it had every block, only the final ACK went missing.
            let result = if all_sent {
                Ok(())
            } else {
                Err("the client sent a new request".to_owned())
            };
            self.finish(slot, result);
        }
        false
    }

    fn on_request(&mut self, bytes: &[u8], req: Request, generation: u64) {
        if req.peer.port() == 0 {
            return;
        }
        let peer = req.peer;
        let Some((filename, mode, options)) = self.read_request(bytes, &req) else {
            return;
        };
        if self.supersede(peer, bytes) {
            return;
        }
        let path = match resolve(&self.root, &filename) {
            Ok(p) => p,
            Err((code, msg)) => {
                self.stats.refused.fetch_add(1, Ordering::Relaxed);
                tracing::info!(%peer, file = filename, %msg, "refused");
                return self.reply(&req, code, &msg);
            }
        };
        // Admission, shared by every loop: the running count is taken here and given back
        // if the transfer cannot start.
        let running = self.stats.active_sessions.fetch_add(1, Ordering::Relaxed) + 1;
        if running > self.cfg.max_sessions {
            self.stats.active_sessions.fetch_sub(1, Ordering::Relaxed);
            self.stats.refused.fetch_add(1, Ordering::Relaxed);
            return self.reply(&req, ErrorCode::NotDefined, "server busy, retry later");
        }
        let release = |stats: &OriginStats| {
            stats.active_sessions.fetch_sub(1, Ordering::Relaxed);
            stats.refused.fetch_add(1, Ordering::Relaxed);
        };
        let text = mode.eq_ignore_ascii_case("netascii");
        let source = match open_source(&path, text) {
            Ok(s) => s,
            Err((code, msg)) => {
                release(&self.stats);
                return self.reply(&req, code, &msg);
            }
        };
        let len = match &source {
            Source::File { file, .. } => file.metadata().map(|m| m.len()).unwrap_or(0),
            Source::Text(t) => t.len() as u64,
        };
        let local = req.local.unwrap_or(self.cfg.listen.ip());
        let socket = match transfer_socket(local, peer) {
            Ok(s) => s,
            Err(e) => {
                // Out of descriptors or ports: the client may come back later.
                tracing::warn!(%e, %peer, "no transfer socket");
                release(&self.stats);
                return self.reply(&req, ErrorCode::NotDefined, "server busy, retry later");
            }
        };
        let slot = self.free.pop().unwrap_or_else(|| {
            self.slots.push(None);
            self.slots.len() - 1
        });
        if let Err(e) = self.epoll.add(
            socket.as_fd(),
            EpollEvent::new(EpollFlags::EPOLLIN, slot as u64),
        ) {
            tracing::warn!(%e, %peer, "epoll add failed");
            self.free.push(slot);
            release(&self.stats);
            return self.reply(&req, ErrorCode::NotDefined, "server busy, retry later");
        }
        let session = ServerSession::new(&self.cfg.session, len, options);
        self.slots[slot] = Some(Transfer {
            socket,
            peer,
            name: filename,
            request: bytes.to_vec(),
            session,
            source,
            deadline: 0,
            armed: None,
            generation,
        });
        self.by_peer.insert(peer, slot);
        self.stats
            .peak_sessions
            .fetch_max(running, Ordering::Relaxed);
        tracing::info!(%peer, file = %self.slots[slot].as_ref().expect("just set").name, running, "transfer started");
        let now = self.now();
        let mut actions = std::mem::take(&mut self.actions);
        if let Some(t) = self.slots[slot].as_mut() {
            t.session.start(now, &mut actions);
        }
        self.apply(slot, &mut actions);
        self.actions = actions;
    }

    /// Reads what the client sent to a transfer's socket and runs the session on it.
    fn drain(&mut self, slot: usize, buf: &mut [u8], budget: usize) {
        let mut actions = std::mem::take(&mut self.actions);
        for _ in 0..budget {
            let Some(t) = self.slots.get_mut(slot).and_then(Option::as_mut) else {
                break;
            };
            let now = self.start.elapsed().as_micros() as Time;
            match t.socket.recv(buf) {
                Ok(n) => {
                    match decode(&buf[..n]) {
                        Ok(Packet::Ack { block }) => {
                            t.session.on_ack(now, block, &mut actions);
                        }
                        Ok(Packet::Error { message, .. }) => {
                            t.session.on_error(message, &mut actions);
                        }
                        _ => {} // not for a read transfer: ignore
                    }
                    self.apply(slot, &mut actions);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // ICMP port unreachable: the client is gone.
                Err(e) => {
                    self.finish(slot, Err(e.to_string()));
                    break;
                }
            }
        }
        self.actions = actions;
    }

    fn expire_timers(&mut self) {
        let mut actions = std::mem::take(&mut self.actions);
        loop {
            let now = self.now();
            let Some(&Reverse((at, slot, generation))) = self.timers.peek() else {
                break;
            };
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(t) = self.slots.get_mut(slot).and_then(Option::as_mut) else {
                continue;
            };
            if t.generation != generation {
                continue; // another transfer's
            }
            if t.armed == Some(at) {
                t.armed = None;
            }
            if t.deadline > now {
                // Moved later since this entry was pushed.
                if t.armed.is_none() {
                    t.armed = Some(t.deadline);
                    self.timers.push(Reverse((t.deadline, slot, generation)));
                }
                continue;
            }
            t.session.on_timer(now, &mut actions);
            self.apply(slot, &mut actions);
        }
        self.actions = actions;
    }

    /// Carries out a session's actions.
    fn apply(&mut self, slot: usize, actions: &mut Vec<ServerAction>) {
        let mut done = None;
        if let Some(t) = self.slots[slot].as_mut() {
            for action in actions.drain(..) {
                match action {
                    ServerAction::SendOack(o) => send(&t.socket, &oack(&o)),
                    ServerAction::SendData {
                        wire, offset, len, ..
                    } => {
                        let d = &mut self.datagram[..4 + len];
                        d[..4].copy_from_slice(&data_header(wire));
                        if let Err(e) = t.source.read_at(&mut d[4..], offset) {
                            send(&t.socket, &error(ErrorCode::NotDefined, "read error"));
                            done = Some(Err(format!("read: {e}")));
                            break;
                        }
                        send(&t.socket, d);
                        self.stats.bytes.fetch_add(len, Ordering::Relaxed);
                    }
                    ServerAction::Timer(at) => {
                        // Deadlines mostly move later (every ACK pushes one): the heap keeps
                        // one entry per transfer, re-armed when it falls due early.
                        t.deadline = at;
                        if t.armed.is_none_or(|armed| armed > at) {
                            t.armed = Some(at);
                            self.timers.push(Reverse((at, slot, t.generation)));
                        }
                    }
                    ServerAction::Done(result) => done = Some(result),
                }
            }
        }
        actions.clear();
        if let Some(result) = done {
            self.finish(slot, result);
        }
    }

    fn finish(&mut self, slot: usize, result: Result<(), String>) {
        let Some(t) = self.slots[slot].take() else {
            return;
        };
        let _ = self.epoll.delete(t.socket.as_fd());
        self.by_peer.remove(&t.peer);
        self.free.push(slot);
        self.stats.active_sessions.fetch_sub(1, Ordering::Relaxed);
        let s = &self.stats;
        s.rewinds
            .fetch_add(t.session.rewinds as usize, Ordering::Relaxed);
        s.timeouts
            .fetch_add(t.session.timeouts as usize, Ordering::Relaxed);
        s.resent_blocks
            .fetch_add(t.session.resent_blocks as usize, Ordering::Relaxed);
        match result {
            Ok(()) => {
                s.transfers_ok.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                s.transfers_failed.fetch_add(1, Ordering::Relaxed);
                tracing::info!(peer = %t.peer, file = %t.name, error = %e, "transfer failed");
            }
        }
    }
}

/// A datagram on a transfer's socket. A full send buffer drops it, like a loss on the path:
/// the session's retransmission covers it, and the loop never blocks on one client.
fn send(socket: &UdpSocket, bytes: &[u8]) {
    if let Err(e) = socket.send(bytes)
        && e.kind() != io::ErrorKind::WouldBlock
    {
        tracing::debug!(%e, "send failed");
    }
}

/// The transfer's own socket: a new port (the transfer id) on the address the request came
/// to, connected to the client so only its datagrams arrive.
fn transfer_socket(local: IpAddr, peer: SocketAddr) -> io::Result<UdpSocket> {
    let socket = UdpSocket::bind(SocketAddr::new(local, 0))?;
    socket.connect(peer)?;
    socket.set_nonblocking(true)?;
    // A window leaves as one burst: let the socket hold it.
    const WANT: usize = 2 << 20;
    if setsockopt(&socket, sockopt::SndBufForce, &WANT).is_err() {
        let _ = setsockopt(&socket, sockopt::SndBuf, &WANT);
    }
    Ok(socket)
}

fn std_addr(a: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::V4(SocketAddrV4::new(v4.ip(), v4.port())));
    }
    a.as_sockaddr_in6().map(|v6| {
        SocketAddr::V6(SocketAddrV6::new(
            v6.ip(),
            v6.port(),
            v6.flowinfo(),
            v6.scope_id(),
        ))
    })
}

#[cfg(test)]
mod tests;
