//! `pfs origin`: a read-only TFTP server on real UDP sockets, driving [`ServerSession`]s.
//!
//! One thread per transfer, each with its own socket (the TFTP transfer id), bounded in
//! number. A repeated RRQ from a client endpoint that already has a transfer is dropped: the
//! client retransmitted it because our first answer is still queued on a slow link, and a
//! second transfer would send every block twice to a client that ignores one of them; the io_uring engine will drive the same sessions without threads. Requests are
//! confined to the root directory: no absolute paths, no `..`, no symlinks leading out.

use std::{
    collections::HashSet,
    fs::File,
    io,
    net::{SocketAddr, UdpSocket},
    os::unix::fs::FileExt,
    path::{Component, Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use crate::tftp::{
    ErrorCode, Packet,
    packet::{self, data_header, decode, error, oack},
    server::{ServerAction, ServerConfig, ServerSession},
};

#[derive(Debug, Clone)]
pub struct OriginConfig {
    pub root: PathBuf,
    pub listen: SocketAddr,
    pub max_sessions: usize,
    pub session: ServerConfig,
}

/// A running origin; dropping it stops the listener (sessions finish on their own).
pub struct OriginHandle {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    pub stats: Arc<OriginStats>,
}

#[derive(Debug, Default)]
pub struct OriginStats {
    pub transfers_ok: AtomicUsize,
    pub transfers_failed: AtomicUsize,
    pub refused: AtomicUsize,
    /// RRQs repeated by a client whose transfer is running, dropped.
    pub duplicate_requests: AtomicUsize,
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
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Resolves a requested name inside `root` (already canonical).
pub fn resolve(root: &Path, requested: &str) -> Result<PathBuf, (ErrorCode, String)> {
    let rel = Path::new(requested);
    let escapes = rel
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir));
    if requested.is_empty() || escapes {
        return Err((
            ErrorCode::AccessViolation,
            format!("{requested:?}: absolute paths and .. are refused"),
        ));
    }
    let full = root.join(rel);
    let real = full.canonicalize().map_err(|_| {
        (
            ErrorCode::FileNotFound,
            format!("{requested}: file not found"),
        )
    })?;
    if !real.starts_with(root) {
        return Err((
            ErrorCode::AccessViolation,
            format!("{requested}: resolves outside the served directory"),
        ));
    }
    if !real.is_file() {
        return Err((ErrorCode::FileNotFound, format!("{requested}: not a file")));
    }
    Ok(real)
}

/// Binds and starts serving in a background thread.
pub fn spawn(cfg: OriginConfig) -> io::Result<OriginHandle> {
    let root = cfg.root.canonicalize()?;
    let socket = UdpSocket::bind(cfg.listen)?;
    socket.set_read_timeout(Some(Duration::from_millis(100)))?;
    let addr = socket.local_addr()?;
    let stop = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(OriginStats::default());
    let (stop2, stats2) = (stop.clone(), stats.clone());
    let thread = std::thread::Builder::new()
        .name("pfs-origin".into())
        .spawn(move || listen(socket, root, cfg, stop2, stats2))?;
    Ok(OriginHandle {
        addr,
        stop,
        thread: Some(thread),
        stats,
    })
}

fn listen(
    socket: UdpSocket,
    root: PathBuf,
    cfg: OriginConfig,
    stop: Arc<AtomicBool>,
    stats: Arc<OriginStats>,
) {
    // Client endpoints with a running transfer; at most `max_sessions`.
    let active: Arc<Mutex<HashSet<SocketAddr>>> = Arc::default();
    let mut buf = vec![0u8; 2048];
    while !stop.load(Ordering::Relaxed) {
        let (n, peer) = match socket.recv_from(&mut buf) {
            Ok(x) => x,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                continue; // a signal (Ctrl-C) lands here too: the stop flag decides
            }
            Err(e) => {
                tracing::warn!(%e, "origin socket error");
                continue;
            }
        };
        let reply = |code: ErrorCode, msg: &str| {
            let _ = socket.send_to(&error(code, msg), peer);
        };
        match decode(&buf[..n]) {
            Ok(Packet::Rrq {
                filename, options, ..
            }) => {
                let path = match resolve(&root, filename) {
                    Ok(p) => p,
                    Err((code, msg)) => {
                        stats.refused.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(%peer, file = filename, %msg, "refused");
                        reply(code, &msg);
                        continue;
                    }
                };
                {
                    let mut running = active.lock().unwrap_or_else(|e| e.into_inner());
                    if running.contains(&peer) {
                        stats.duplicate_requests.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    if running.len() >= cfg.max_sessions {
                        stats.refused.fetch_add(1, Ordering::Relaxed);
                        reply(ErrorCode::NotDefined, "server busy, retry later");
                        continue;
                    }
                    running.insert(peer);
                    let now = stats.active_sessions.fetch_add(1, Ordering::Relaxed) + 1;
                    stats.peak_sessions.fetch_max(now, Ordering::Relaxed);
                }
                let (running, xfer_stats, session_cfg) =
                    (active.clone(), stats.clone(), cfg.session.clone());
                let local_ip = cfg.listen.ip();
                let name = filename.to_owned();
                let spawned = std::thread::Builder::new()
                    .name("pfs-origin-xfer".into())
                    .spawn(move || {
                        let stats = xfer_stats;
                        let result = transfer(local_ip, peer, &path, options, &session_cfg, &stats);
                        match &result {
                            Ok(()) => stats.transfers_ok.fetch_add(1, Ordering::Relaxed),
                            Err(_) => stats.transfers_failed.fetch_add(1, Ordering::Relaxed),
                        };
                        if let Err(e) = result {
                            tracing::info!(%peer, file = %name, error = %e, "transfer failed");
                        }
                        running
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .remove(&peer);
                        stats.active_sessions.fetch_sub(1, Ordering::Relaxed);
                    });
                if spawned.is_err() {
                    stats.active_sessions.fetch_sub(1, Ordering::Relaxed);
                    active
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&peer);
                    reply(ErrorCode::NotDefined, "server busy, retry later");
                }
            }
            Ok(Packet::Wrq { .. }) => reply(ErrorCode::AccessViolation, "read-only server"),
            Ok(_) => reply(ErrorCode::IllegalOperation, "expected a read request"),
            Err(e) => {
                // Request-shaped garbage gets an answer; anything else is dropped.
                if n >= 2 && buf[0] == 0 && (buf[1] == 1 || buf[1] == 2) {
                    reply(ErrorCode::IllegalOperation, &e.to_string());
                }
            }
        }
    }
}

fn transfer(
    local_ip: std::net::IpAddr,
    peer: SocketAddr,
    path: &Path,
    options: packet::Options,
    cfg: &ServerConfig,
    stats: &OriginStats,
) -> Result<(), String> {
    let socket = UdpSocket::bind(SocketAddr::new(local_ip, 0)).map_err(|e| e.to_string())?;
    socket.connect(peer).map_err(|e| e.to_string())?;
    let send_err = |code, msg: &str| {
        let _ = socket.send(&error(code, msg));
    };
    let file = File::open(path).map_err(|e| {
        send_err(ErrorCode::AccessViolation, "cannot open file");
        e.to_string()
    })?;
    let len = file.metadata().map_err(|e| e.to_string())?.len();
    let mut session = ServerSession::new(cfg, len, options);
    let result = serve(&socket, &file, &mut session, stats, send_err);
    stats
        .rewinds
        .fetch_add(session.rewinds as usize, Ordering::Relaxed);
    stats
        .timeouts
        .fetch_add(session.timeouts as usize, Ordering::Relaxed);
    stats
        .resent_blocks
        .fetch_add(session.resent_blocks as usize, Ordering::Relaxed);
    result
}

/// Drives one session on its socket until it ends.
fn serve(
    socket: &UdpSocket,
    file: &File,
    session: &mut ServerSession,
    stats: &OriginStats,
    send_err: impl Fn(ErrorCode, &str),
) -> Result<(), String> {
    let start = Instant::now();
    let now = || start.elapsed().as_micros() as u64;
    let mut out = Vec::new();
    let mut deadline = 0;
    let mut datagram = Vec::with_capacity(65_536 + 4);
    let mut buf = vec![0u8; 2048];
    session.start(now(), &mut out);
    loop {
        for action in out.drain(..) {
            match action {
                ServerAction::SendOack(o) => {
                    socket.send(&oack(&o)).map_err(|e| e.to_string())?;
                }
                ServerAction::SendData {
                    wire, offset, len, ..
                } => {
                    datagram.clear();
                    datagram.extend_from_slice(&data_header(wire));
                    datagram.resize(4 + len, 0);
                    file.read_exact_at(&mut datagram[4..], offset)
                        .map_err(|e| {
                            send_err(ErrorCode::NotDefined, "read error");
                            e.to_string()
                        })?;
                    socket.send(&datagram).map_err(|e| e.to_string())?;
                    stats.bytes.fetch_add(len, Ordering::Relaxed);
                }
                ServerAction::Timer(at) => deadline = at,
                ServerAction::Done(result) => return result,
            }
        }
        let wait = deadline.saturating_sub(now()).max(1_000);
        socket
            .set_read_timeout(Some(Duration::from_micros(wait)))
            .map_err(|e| e.to_string())?;
        match socket.recv(&mut buf) {
            Ok(n) => match decode(&buf[..n]) {
                Ok(Packet::Ack { block }) => session.on_ack(now(), block, &mut out),
                Ok(Packet::Error { message, .. }) => session.on_error(message, &mut out),
                _ => {} // not for a read transfer: ignore
            },
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                session.on_timer(now(), &mut out);
            }
            // ICMP port unreachable: the client is gone.
            Err(e) => return Err(e.to_string()),
        }
    }
}
