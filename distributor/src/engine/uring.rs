//! The io_uring backend: one ring per thread (`SINGLE_ISSUER | DEFER_TASKRUN` where the kernel
//! has them), multishot accept, multishot `recv`/`recvmsg` into a provided buffer ring,
//! `SENDMSG_ZC` for sends above the threshold (plain `SENDMSG` below it), and the ring's own
//! wait timeout for the driver's deadlines.
//!
//! Every submitted operation has a slot keyed by `user_data` that owns what the kernel reads
//! or writes (message headers, address, clones of the frames). A zero-copy send's slot lives
//! until its notification CQE: only then may the pages (an image mapping) be released. One
//! send per connection is in flight, so frames leave in order; a short send resubmits the rest.

use std::{
    collections::{HashMap, VecDeque},
    io,
    net::{SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket},
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
    sync::atomic::{AtomicU16, Ordering},
    time::{Duration, Instant},
};

use io_uring::{IoUring, cqueue, opcode, squeue, types};

use super::{Completion, EngineError, EngineStats, Limits, Payload, Reactor, SendQueue, Token};

mod bufring;
mod reactor;

use bufring::BufRing;

/// Stream receives: few large buffers (a chunk frame is 64 KiB).
const BUF_GROUP: u16 = 0;
const BUF_COUNT: u16 = 256;
const BUF_SIZE: usize = 64 * 1024 + 256;
/// Datagram receives: many small buffers. One broadcast lands in every phone's socket on a
/// core at once (500 at 1000 phones); from the 256 stream buffers that ran dry on every
/// advert, and phones fired their claim timers before they could read the adverts that
/// would have suppressed them. TFTP DATA of blksize up to 9 KiB fits.
const DGRAM_GROUP: u16 = 1;
/// Bytes of datagram buffers per core: 16384 of 1.8 KiB, fewer when a larger blksize needs
/// larger buffers (at least 256). 4096 ran dry 17,829 times in a 1000-phone lab at 10 Mbit/s
/// (every advert is 500 datagrams per core, and a turn took up to 0.5 s): each time every
/// socket of the core stopped receiving until the next turn.
const DGRAM_POOL: usize = 32 << 20;
/// The `recvmsg` header and source address around a datagram's payload.
const RECVMSG_OVERHEAD: usize = 256;
/// `IORING_NOTIF_USAGE_ZC_COPIED` (linux/io_uring.h): the kernel copied a zero-copy send.
const COPIED: u32 = 1 << 31;
/// `IORING_SEND_ZC_REPORT_USAGE` (linux/io_uring.h).
const REPORT_USAGE: u16 = 1 << 3;

enum Kind {
    Listener(TcpListener),
    Stream {
        stream: TcpStream,
        queue: SendQueue,
        sending: bool,
        waiting: bool,
        connecting: bool,
    },
    Udp(UdpSocket),
}

/// What the kernel reported about this ring's zero-copy sends. One decision per ring: its
/// connections leave through the same devices (a relay's children sit on one LAN).
#[derive(Default)]
struct ZcUsage {
    notifs: u32,
    copied: u32,
    off: bool,
}

struct Sock {
    kind: Kind,
    /// Operations in flight that name this socket; it is dropped (closed) only at zero.
    ops: u32,
    /// Frozen by the driver ([`Reactor::freeze`]): open, but nothing is posted for it again.
    frozen: bool,
}

impl Sock {
    fn fd(&self) -> RawFd {
        match &self.kind {
            Kind::Listener(l) => l.as_raw_fd(),
            Kind::Stream { stream, .. } => stream.as_raw_fd(),
            Kind::Udp(u) => u.as_raw_fd(),
        }
    }
}

/// What the kernel reads for one `sendmsg`; boxed so its addresses stay put.
struct SendState {
    hdr: libc::msghdr,
    iov: Vec<libc::iovec>,
    addr: libc::sockaddr_in,
    keep: Vec<Payload>,
}

enum Op {
    Accept(Token),
    Recv(Token),
    RecvMsg(Token),
    Connect(Token, #[allow(dead_code)] Box<libc::sockaddr_in>),
    Send {
        token: Token,
        _st: Box<SendState>,
        want: usize,
        zc: bool,
        result_pending: bool,
        notif_pending: bool,
    },
    Datagram(Token, #[allow(dead_code)] Box<SendState>),
    Cancel,
}

pub struct UringReactor {
    ring: IoUring,
    bufs: BufRing,
    dgram_bufs: BufRing,
    zc: bool,
    limits: Limits,
    ops: Vec<Option<Op>>,
    free: Vec<usize>,
    socks: HashMap<Token, Sock>,
    /// Closed by the driver; kept until their last operation ends.
    closing: HashMap<Token, Sock>,
    /// Streams a frozen listener's accept still completed before its cancellation: kept open
    /// (in a hung process they would wait in the backlog) until the listener is closed.
    held: HashMap<Token, Vec<TcpStream>>,
    overflow: VecDeque<squeue::Entry>,
    inflight_sends: usize,
    ready: VecDeque<Token>,
    recvmsg_tmpl: Box<libc::msghdr>,
    cqes: Vec<(u64, i32, u32)>,
    stats: EngineStats,
    last_stall_check: Instant,
    zc_usage: ZcUsage,
}

impl UringReactor {
    /// `zero_copy == false` sends every frame with a plain (copying) `sendmsg`.
    pub fn new(limits: Limits, zero_copy: bool) -> io::Result<Self> {
        let build = |fancy: bool| {
            let mut b = IoUring::builder();
            // Room for every datagram buffer's completion plus the streams' (no CQ overflow
            // when all 16384 datagram buffers fill in one turn).
            b.setup_cqsize(32768);
            if fancy {
                b.setup_single_issuer().setup_defer_taskrun();
            }
            b.build(1024)
        };
        let ring = build(true).or_else(|_| build(false))?;
        let mut probe = io_uring::Probe::new();
        ring.submitter().register_probe(&mut probe)?;
        for code in [
            opcode::RecvMulti::CODE,
            opcode::AcceptMulti::CODE,
            opcode::SendMsg::CODE,
        ] {
            if !probe.is_supported(code) {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!("io_uring opcode {code} unsupported"),
                ));
            }
        }
        let zc = zero_copy && probe.is_supported(opcode::SendMsgZc::CODE);
        let bufs = BufRing::new(&ring, BUF_GROUP, BUF_COUNT, BUF_SIZE)?;
        let dgram_size = limits.datagram_bytes + RECVMSG_OVERHEAD;
        let dgram_count = (DGRAM_POOL / dgram_size).clamp(256, 16384);
        // A power of two below the bound (the ring's index mask).
        let dgram_count = 1u16 << (usize::BITS - 1 - dgram_count.leading_zeros());
        let dgram_bufs = BufRing::new(&ring, DGRAM_GROUP, dgram_count, dgram_size)?;
        // SAFETY: an all-zero msghdr is valid; only the name length matters for the template.
        let mut tmpl: Box<libc::msghdr> = Box::new(unsafe { std::mem::zeroed() });
        tmpl.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
        Ok(UringReactor {
            ring,
            bufs,
            dgram_bufs,
            zc,
            limits,
            ops: Vec::new(),
            free: Vec::new(),
            socks: HashMap::new(),
            closing: HashMap::new(),
            held: HashMap::new(),
            overflow: VecDeque::new(),
            inflight_sends: 0,
            ready: VecDeque::new(),
            recvmsg_tmpl: tmpl,
            cqes: Vec::with_capacity(8192),
            stats: EngineStats {
                backend: if zc { "io_uring-zc" } else { "io_uring" },
                ..EngineStats::default()
            },
            last_stall_check: Instant::now(),
            zc_usage: ZcUsage::default(),
        })
    }

    fn slot(&mut self, op: Op) -> u64 {
        if let Some(i) = self.free.pop() {
            self.ops[i] = Some(op);
            i as u64
        } else {
            self.ops.push(Some(op));
            (self.ops.len() - 1) as u64
        }
    }

    fn release(&mut self, ud: u64) -> Option<Op> {
        let op = self.ops.get_mut(ud as usize)?.take();
        if op.is_some() {
            self.free.push(ud as usize);
        }
        op
    }

    /// Queues an entry; a full submission queue spills to the overflow list (order kept).
    fn push(&mut self, e: squeue::Entry) {
        if self.overflow.is_empty() {
            // SAFETY: every pointer in `e` points into a slot that outlives the operation.
            if unsafe { self.ring.submission().push(&e) }.is_ok() {
                return;
            }
        }
        self.stats.overflowed += 1;
        self.overflow.push_back(e);
    }

    fn flush_overflow(&mut self) {
        while let Some(e) = self.overflow.front() {
            // SAFETY: as in `push`.
            if unsafe { self.ring.submission().push(e) }.is_err() {
                break;
            }
            self.overflow.pop_front();
        }
    }

    fn sock_mut(&mut self, token: Token) -> Option<&mut Sock> {
        self.socks.get_mut(&token)
    }

    fn is_frozen(&self, token: Token) -> bool {
        self.socks.get(&token).is_some_and(|s| s.frozen)
    }

    /// Marks a socket frozen and cancels its multishot receive or accept (by its slot: the
    /// socket's sends in flight finish, the socket stays open).
    fn freeze_socket(&mut self, token: Token) {
        let Some(s) = self.socks.get_mut(&token) else {
            return;
        };
        if s.frozen {
            return;
        }
        s.frozen = true;
        let armed = self.ops.iter().position(
            |o| matches!(o, Some(Op::Recv(t) | Op::RecvMsg(t) | Op::Accept(t)) if *t == token),
        );
        if let Some(ud) = armed {
            let c = types::CancelBuilder::user_data(ud as u64);
            let slot = self.slot(Op::Cancel);
            self.push(opcode::AsyncCancel2::new(c).build().user_data(slot));
        }
    }

    /// Counts an operation against the socket (open or closing).
    fn op_started(&mut self, token: Token) {
        if let Some(s) = self.socks.get_mut(&token) {
            s.ops += 1;
        } else if let Some(s) = self.closing.get_mut(&token) {
            s.ops += 1;
        }
    }

    /// An operation counted by [`Self::op_started`] completed for good.
    fn op_ended(&mut self, token: Token) {
        if let Some(s) = self.socks.get_mut(&token) {
            assert!(
                s.ops > 0,
                "operation count of {token:?} would go below zero"
            );
            s.ops -= 1;
        } else if let Some(s) = self.closing.get_mut(&token) {
            assert!(
                s.ops > 0,
                "operation count of {token:?} would go below zero"
            );
            s.ops -= 1;
            if s.ops == 0 {
                self.closing.remove(&token);
            }
        }
    }

    fn arm_recv(&mut self, token: Token) {
        let Some(s) = self.socks.get(&token) else {
            return;
        };
        if s.frozen {
            return;
        }
        let fd = types::Fd(s.fd());
        let e = match s.kind {
            Kind::Listener(_) => {
                let ud = self.slot(Op::Accept(token));
                opcode::AcceptMulti::new(fd).build().user_data(ud)
            }
            Kind::Stream { .. } => {
                let ud = self.slot(Op::Recv(token));
                opcode::RecvMulti::new(fd, BUF_GROUP).build().user_data(ud)
            }
            Kind::Udp(_) => {
                let ud = self.slot(Op::RecvMsg(token));
                opcode::RecvMsgMulti::new(fd, &*self.recvmsg_tmpl, DGRAM_GROUP)
                    .build()
                    .user_data(ud)
            }
        };
        self.op_started(token);
        self.push(e);
    }

    /// Starts the next send of `token` if none is in flight and the core has room.
    fn start_send(&mut self, token: Token) {
        let limit = self.limits.inflight_per_core;
        let batch = self.limits.batch_frames;
        let busy = self.inflight_sends >= limit;
        let Some(Sock {
            kind:
                Kind::Stream {
                    stream,
                    queue,
                    sending,
                    waiting,
                    connecting,
                },
            frozen: false,
            ..
        }) = self.socks.get_mut(&token)
        else {
            return;
        };
        let zc_off = self.zc_usage.off;
        if *sending || *connecting || queue.frames.is_empty() {
            return;
        }
        if busy {
            if !*waiting {
                *waiting = true;
                self.ready.push_back(token);
            }
            return;
        }
        let fd = types::Fd(stream.as_raw_fd());
        let keep: Vec<Payload> = queue.frames.iter().take(batch).cloned().collect();
        let mut skip = queue.sent;
        let mut iov = Vec::with_capacity(keep.len() * 2);
        for f in &keep {
            let (a, b) = f.parts();
            for part in [a, b] {
                if skip >= part.len() {
                    skip -= part.len();
                    continue;
                }
                iov.push(libc::iovec {
                    iov_base: part[skip..].as_ptr() as *mut _,
                    iov_len: part.len() - skip,
                });
                skip = 0;
            }
        }
        let want: usize = iov.iter().map(|v| v.iov_len).sum();
        *sending = true;
        // SAFETY: zeroed msghdr/sockaddr are valid; the fields used are set below.
        let mut st = Box::new(SendState {
            hdr: unsafe { std::mem::zeroed() },
            iov,
            addr: unsafe { std::mem::zeroed() },
            keep,
        });
        st.hdr.msg_iov = st.iov.as_mut_ptr();
        st.hdr.msg_iovlen = st.iov.len() as _;
        let zc = self.zc && !zc_off && want >= self.limits.zc_threshold;
        let e = if zc {
            opcode::SendMsgZc::new(fd, &st.hdr)
                .ioprio(REPORT_USAGE)
                .flags(libc::MSG_NOSIGNAL as u32)
                .build()
        } else {
            opcode::SendMsg::new(fd, &st.hdr)
                .flags(libc::MSG_NOSIGNAL as u32)
                .build()
        };
        let ud = self.slot(Op::Send {
            token,
            _st: st,
            want,
            zc,
            result_pending: true,
            notif_pending: zc,
        });
        self.op_started(token);
        self.inflight_sends += 1;
        self.stats.max_inflight = self.stats.max_inflight.max(self.inflight_sends as u64);
        self.push(e.user_data(ud));
    }

    /// Takes a socket out of service: the driver never hears of it again.
    fn retire(&mut self, token: Token) {
        self.held.remove(&token);
        let Some(s) = self.socks.remove(&token) else {
            return;
        };
        if s.ops == 0 {
            return; // dropping it closes it
        }
        let cancel = if let Kind::Udp(_) = s.kind {
            // Datagrams already handed over must still leave (a TFTP client's last ACK):
            // stop only the receive; sends on a datagram socket never wait on a peer.
            self.ops
                .iter()
                .position(|o| matches!(o, Some(Op::RecvMsg(t)) if *t == token))
                .map(|ud| types::CancelBuilder::user_data(ud as u64))
        } else {
            // SAFETY: shutting down a socket we own; ends its multishot receive.
            unsafe { libc::shutdown(s.fd(), libc::SHUT_RDWR) };
            Some(types::CancelBuilder::fd(types::Fd(s.fd())).all())
        };
        if let Some(c) = cancel {
            let ud = self.slot(Op::Cancel);
            self.push(opcode::AsyncCancel2::new(c).build().user_data(ud));
        }
        self.closing.insert(token, s);
    }

    fn complete(&mut self, ud: u64, res: i32, flags: u32, on: &mut dyn FnMut(Completion<'_>)) {
        let more = cqueue::more(flags);
        // A slot lives until its operation's last completion (multishot: the one without
        // MORE; a zero-copy send: its notification), so a completion always finds one.
        let Some(op) = self.ops.get(ud as usize).and_then(|o| o.as_ref()) else {
            panic!("io_uring completion for user_data {ud} (res {res}) with no slot");
        };
        match *op {
            Op::Cancel => {
                self.release(ud);
            }
            Op::Accept(token) => self.accepted(ud, token, res, more, on),
            Op::Recv(token) => self.received(ud, token, false, res, flags, on),
            Op::RecvMsg(token) => self.received(ud, token, true, res, flags, on),
            Op::Connect(token, _) => self.connected(ud, token, res, on),
            Op::Datagram(token, _) => {
                self.release(ud);
                self.op_ended(token);
            }
            Op::Send { .. } => self.send_done(ud, res, flags, on),
        }
    }

    /// A multishot accept's completion: a new stream, or its end (re-armed).
    fn accepted(
        &mut self,
        ud: u64,
        token: Token,
        res: i32,
        more: bool,
        on: &mut dyn FnMut(Completion<'_>),
    ) {
        if !more {
            self.release(ud);
            self.op_ended(token);
        }
        if res >= 0 {
            // SAFETY: the kernel handed us a new descriptor.
            let stream = unsafe { TcpStream::from_raw_fd(res) };
            if self.is_frozen(token) {
                self.held.entry(token).or_default().push(stream);
            } else if self.socks.contains_key(&token)
                && let Ok(from) = stream.peer_addr()
            {
                on(Completion::Accepted {
                    listener: token,
                    stream,
                    from,
                });
            }
        }
        if !more && self.socks.contains_key(&token) {
            self.arm_recv(token);
        }
    }

    /// A multishot receive's completion (stream bytes, or a datagram with `is_msg`): hand the
    /// bytes over, give the buffer back, re-arm; a stream's end or error closes it.
    fn received(
        &mut self,
        ud: u64,
        token: Token,
        is_msg: bool,
        res: i32,
        flags: u32,
        on: &mut dyn FnMut(Completion<'_>),
    ) {
        let more = cqueue::more(flags);
        if !more {
            self.release(ud);
            self.op_ended(token);
        }
        // A frozen socket's completions (the receive's end after its cancellation, bytes it
        // took just before) are not the driver's business: it hung.
        let alive = self.socks.contains_key(&token) && !self.is_frozen(token);
        if res > 0 {
            let bid = cqueue::buffer_select(flags).unwrap_or(0);
            let bufs = if is_msg { &self.dgram_bufs } else { &self.bufs };
            let data = bufs.buf(bid, res as usize);
            self.stats.bytes_received += res as u64;
            if alive {
                if is_msg {
                    match types::RecvMsgOut::parse(data, &self.recvmsg_tmpl) {
                        Ok(msg) if msg.is_payload_truncated() => {
                            self.stats.recv_truncated += 1;
                        }
                        Ok(msg) => {
                            if let Some(from) = sockaddr_in(msg.name_data()) {
                                on(Completion::Datagram {
                                    sock: token,
                                    from: SocketAddr::V4(from),
                                    bytes: msg.payload_data(),
                                });
                            }
                        }
                        Err(()) => self.stats.recv_truncated += 1,
                    }
                } else {
                    on(Completion::Data {
                        conn: token,
                        bytes: data,
                    });
                }
            }
            let bufs = if is_msg {
                &mut self.dgram_bufs
            } else {
                &mut self.bufs
            };
            bufs.add(bid);
            bufs.commit();
            if !more && self.socks.contains_key(&token) {
                self.arm_recv(token);
            }
        } else if res == -libc::ENOBUFS {
            self.stats.recv_no_buffers += 1;
            if !more && alive {
                self.arm_recv(token);
            }
        } else if alive && !is_msg {
            self.retire(token);
            on(Completion::Closed {
                conn: token,
                error: (res < 0).then(|| io::Error::from_raw_os_error(-res)),
            });
        } else if alive && !more {
            self.arm_recv(token);
        }
    }

    /// A connect's completion: the stream is usable (receive armed, queued frames sent), or
    /// it failed and is dropped.
    fn connected(&mut self, ud: u64, token: Token, res: i32, on: &mut dyn FnMut(Completion<'_>)) {
        self.release(ud);
        self.op_ended(token);
        if !self.socks.contains_key(&token) {
            return;
        }
        if self.is_frozen(token) {
            // The kernel finished (or failed) the handshake; the hung process never looks.
            if let Some(Sock {
                kind: Kind::Stream { connecting, .. },
                ..
            }) = self.sock_mut(token)
            {
                *connecting = false;
            }
            return;
        }
        if res < 0 {
            self.socks.remove(&token);
            on(Completion::Connected {
                conn: token,
                result: Err(io::Error::from_raw_os_error(-res)),
            });
            return;
        }
        if let Some(Sock {
            kind: Kind::Stream { connecting, .. },
            ..
        }) = self.sock_mut(token)
        {
            *connecting = false;
        }
        on(Completion::Connected {
            conn: token,
            result: Ok(()),
        });
        self.arm_recv(token);
        self.start_send(token);
    }

    fn send_done(&mut self, ud: u64, res: i32, flags: u32, on: &mut dyn FnMut(Completion<'_>)) {
        let Some(Some(Op::Send {
            token,
            want,
            zc,
            result_pending,
            notif_pending,
            ..
        })) = self.ops.get_mut(ud as usize)
        else {
            return;
        };
        let token = *token;
        if cqueue::notif(flags) {
            *notif_pending = false;
            self.count_zc_notif(res);
        } else {
            *result_pending = false;
            if *zc && !cqueue::more(flags) {
                *notif_pending = false;
            }
            let (want, zc) = (*want, *zc);
            self.inflight_sends -= 1;
            self.stats.sends += 1;
            if zc {
                self.stats.zc_sends += 1;
            }
            if let Some(Sock {
                kind: Kind::Stream { queue, sending, .. },
                frozen,
                ..
            }) = self.socks.get_mut(&token)
            {
                *sending = false;
                if *frozen {
                    // What the kernel took leaves; nothing more is sent or reported.
                    if res > 0 {
                        queue.advance(res as usize);
                    }
                } else if res < 0 {
                    self.retire(token);
                    on(Completion::Closed {
                        conn: token,
                        error: Some(io::Error::from_raw_os_error(-res)),
                    });
                } else {
                    let n = res as usize;
                    self.stats.bytes_sent += n as u64;
                    if n < want {
                        self.stats.short_sends += 1;
                    }
                    let frames = queue.advance(n);
                    if frames > 0 {
                        on(Completion::Sent {
                            conn: token,
                            frames,
                        });
                    }
                    self.start_send(token);
                }
            }
            self.start_waiting_sends();
        }
        if let Some(Some(Op::Send {
            result_pending: false,
            notif_pending: false,
            ..
        })) = self.ops.get(ud as usize)
        {
            // Only now may the frames (and the image pages they point into) be released.
            self.release(ud);
            self.op_ended(token);
        }
    }

    /// A zero-copy notification: counts whether the kernel copied anyway, and turns zero-copy
    /// off when it mostly does (`zc_adaptive`).
    fn count_zc_notif(&mut self, res: i32) {
        let copied = res as u32 & COPIED != 0;
        if copied {
            self.stats.zc_copied += 1;
        }
        let zc = &mut self.zc_usage;
        zc.notifs += 1;
        zc.copied += u32::from(copied);
        // Copied anyway: zero-copy only adds notifications and pinned pages. Go plain.
        if self.limits.zc_adaptive
            && !zc.off
            && zc.notifs >= super::ZC_PROBE
            && zc.copied * 4 >= zc.notifs * 3
        {
            zc.off = true;
            self.stats.zc_fallbacks += 1;
            tracing::info!(
                "the kernel copied {} of {} zero-copy sends (loopback, veth or no scatter-gather): sending plainly",
                zc.copied,
                zc.notifs
            );
        }
    }

    /// A freed core slot goes to the connection that waited longest.
    fn start_waiting_sends(&mut self) {
        while self.inflight_sends < self.limits.inflight_per_core {
            let Some(next) = self.ready.pop_front() else {
                break;
            };
            if let Some(Sock {
                kind: Kind::Stream { waiting, .. },
                ..
            }) = self.socks.get_mut(&next)
            {
                *waiting = false;
                self.start_send(next);
            }
        }
    }
}

fn sockaddr_in(name: &[u8]) -> Option<SocketAddrV4> {
    if name.len() < std::mem::size_of::<libc::sockaddr_in>() {
        return None;
    }
    // SAFETY: length checked; read unaligned from the kernel-written bytes.
    let sa: libc::sockaddr_in = unsafe { std::ptr::read_unaligned(name.as_ptr().cast()) };
    if i32::from(sa.sin_family) != libc::AF_INET {
        return None;
    }
    Some(SocketAddrV4::new(
        u32::from_be(sa.sin_addr.s_addr).into(),
        u16::from_be(sa.sin_port),
    ))
}

fn to_sockaddr(a: SocketAddrV4) -> libc::sockaddr_in {
    // SAFETY: zeroed sockaddr_in is valid.
    let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    sa.sin_family = libc::AF_INET as _;
    sa.sin_port = a.port().to_be();
    sa.sin_addr.s_addr = u32::from(*a.ip()).to_be();
    sa
}
