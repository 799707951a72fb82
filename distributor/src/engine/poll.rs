//! The plain-syscall backend: epoll readiness, non-blocking `accept`, `read`, `writev`,
//! `recvfrom`, `sendto`. Chosen when io_uring is unavailable or `--backend syscall` asks for it.

use std::{
    collections::HashMap,
    io::{self, Read, Write},
    net::{SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket},
    os::fd::{AsFd, AsRawFd, OwnedFd},
    time::{Duration, Instant},
};

use nix::sys::{
    epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout},
    socket::{SockaddrIn, connect},
};

use super::{Completion, EngineError, EngineStats, Limits, Payload, Reactor, SendQueue, Token};

enum Sock {
    Listener(TcpListener),
    Stream {
        stream: TcpStream,
        queue: SendQueue,
        connecting: bool,
        want_out: bool,
    },
    Udp(UdpSocket),
}

pub struct PollReactor {
    epoll: Epoll,
    socks: HashMap<Token, Sock>,
    /// Frozen by the driver: open, out of epoll, never read, written or cut off.
    frozen: HashMap<Token, Sock>,
    limits: Limits,
    stats: EngineStats,
    scratch: Vec<u8>,
}

const READ_BURST: usize = 16;

impl PollReactor {
    pub fn new(limits: Limits) -> io::Result<Self> {
        Ok(PollReactor {
            epoll: Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?,
            socks: HashMap::new(),
            frozen: HashMap::new(),
            limits,
            stats: EngineStats {
                backend: "syscall",
                ..EngineStats::default()
            },
            scratch: vec![0; 64 * 1024],
        })
    }

    fn add(&mut self, token: Token, fd: &impl AsFd, flags: EpollFlags) -> io::Result<()> {
        self.epoll.add(fd, EpollEvent::new(flags, token))?;
        Ok(())
    }

    fn set_out(&mut self, token: Token, on: bool) {
        if let Some(Sock::Stream {
            stream, want_out, ..
        }) = self.socks.get_mut(&token)
            && *want_out != on
        {
            *want_out = on;
            let mut flags = EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP;
            if on {
                flags |= EpollFlags::EPOLLOUT;
            }
            let _ = self
                .epoll
                .modify(&*stream, &mut EpollEvent::new(flags, token));
        }
    }

    /// Writes what the socket takes; returns (frames completed, error).
    fn flush(&mut self, token: Token) -> (usize, Option<io::Error>) {
        let Some(Sock::Stream { stream, queue, .. }) = self.socks.get_mut(&token) else {
            return (0, None);
        };
        let mut done = 0;
        while !queue.frames.is_empty() {
            let slices = queue.slices(self.limits.batch_frames);
            let want: usize = slices.iter().map(|s| s.len()).sum();
            match stream.write_vectored(&slices) {
                Ok(n) => {
                    drop(slices);
                    self.stats.sends += 1;
                    self.stats.bytes_sent += n as u64;
                    if n < want {
                        self.stats.short_sends += 1;
                    }
                    done += queue.advance(n);
                    if n < want {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return (done, Some(e)),
            }
        }
        let empty = queue.frames.is_empty();
        self.set_out(token, !empty);
        (done, None)
    }
}

impl Reactor for PollReactor {
    fn listen(&mut self, token: Token, listener: TcpListener) -> io::Result<()> {
        listener.set_nonblocking(true)?;
        self.add(token, &listener, EpollFlags::EPOLLIN)?;
        self.socks.insert(token, Sock::Listener(listener));
        Ok(())
    }

    fn register(&mut self, token: Token, stream: TcpStream) -> io::Result<()> {
        stream.set_nonblocking(true)?;
        stream.set_nodelay(true)?;
        self.add(token, &stream, EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP)?;
        self.socks.insert(
            token,
            Sock::Stream {
                stream,
                queue: SendQueue::new(Instant::now()),
                connecting: false,
                want_out: false,
            },
        );
        Ok(())
    }

    fn connect(&mut self, token: Token, fd: OwnedFd, to: SocketAddrV4) -> io::Result<()> {
        nix::fcntl::fcntl(
            &fd,
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        )?;
        match connect(fd.as_raw_fd(), &SockaddrIn::from(to)) {
            Ok(()) | Err(nix::errno::Errno::EINPROGRESS) => {}
            Err(e) => return Err(e.into()),
        }
        let stream = TcpStream::from(fd);
        stream.set_nodelay(true)?;
        self.add(
            token,
            &stream,
            EpollFlags::EPOLLIN | EpollFlags::EPOLLOUT | EpollFlags::EPOLLRDHUP,
        )?;
        self.socks.insert(
            token,
            Sock::Stream {
                stream,
                queue: SendQueue::new(Instant::now()),
                connecting: true,
                want_out: true,
            },
        );
        Ok(())
    }

    fn udp(&mut self, token: Token, socket: UdpSocket) -> io::Result<()> {
        socket.set_nonblocking(true)?;
        self.add(token, &socket, EpollFlags::EPOLLIN)?;
        self.socks.insert(token, Sock::Udp(socket));
        Ok(())
    }

    fn send_to(&mut self, sock: Token, to: SocketAddr, bytes: &[u8]) -> Result<(), EngineError> {
        let Some(Sock::Udp(s)) = self.socks.get(&sock) else {
            return Err(EngineError::UnknownToken(sock));
        };
        s.send_to(bytes, to)?;
        self.stats.sends += 1;
        self.stats.bytes_sent += bytes.len() as u64;
        Ok(())
    }

    fn send(&mut self, conn: Token, frame: Payload) -> Result<(), EngineError> {
        let Some(Sock::Stream { queue, .. }) = self.socks.get_mut(&conn) else {
            return Err(EngineError::UnknownToken(conn));
        };
        queue.push(conn, frame, &self.limits)?;
        self.set_out(conn, true);
        Ok(())
    }

    fn queued(&self, conn: Token) -> usize {
        match self.socks.get(&conn) {
            Some(Sock::Stream { queue, .. }) => queue.frames.len(),
            _ => 0,
        }
    }

    fn close(&mut self, token: Token) {
        if let Some(sock) = self.socks.remove(&token) {
            self.unwatch(&sock);
        }
        self.frozen.remove(&token);
    }

    fn unread(&self, token: Token) -> usize {
        let fd = match self.socks.get(&token).or_else(|| self.frozen.get(&token)) {
            Some(Sock::Listener(l)) => l.as_raw_fd(),
            Some(Sock::Stream { stream, .. }) => stream.as_raw_fd(),
            Some(Sock::Udp(u)) => u.as_raw_fd(),
            None => return 0,
        };
        super::fionread(fd)
    }

    fn freeze(&mut self, token: Token) {
        if let Some(sock) = self.socks.remove(&token) {
            self.unwatch(&sock);
            self.frozen.insert(token, sock);
        }
    }

    fn poll(
        &mut self,
        timeout: Option<Duration>,
        on: &mut dyn FnMut(Completion<'_>),
    ) -> io::Result<()> {
        let mut events = [EpollEvent::empty(); 256];
        let ms = timeout.map_or(-1, |t| t.as_millis().min(60_000) as i32);
        let ms = EpollTimeout::try_from(ms).unwrap_or(EpollTimeout::NONE);
        let n = match self.epoll.wait(&mut events, ms) {
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => 0,
            Err(e) => return Err(e.into()),
        };
        for ev in &events[..n] {
            let token = ev.data();
            let flags = ev.events();
            match self.socks.get_mut(&token) {
                None => {}
                Some(Sock::Listener(l)) => loop {
                    match l.accept() {
                        Ok((stream, from)) => on(Completion::Accepted {
                            listener: token,
                            stream,
                            from,
                        }),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(_) => break,
                    }
                },
                Some(Sock::Udp(u)) => {
                    for _ in 0..READ_BURST {
                        match u.recv_from(&mut self.scratch) {
                            Ok((len, from)) => {
                                self.stats.bytes_received += len as u64;
                                on(Completion::Datagram {
                                    sock: token,
                                    from,
                                    bytes: &self.scratch[..len],
                                })
                            }
                            Err(_) => break,
                        }
                    }
                }
                Some(Sock::Stream { .. }) => self.stream_ready(token, flags, on),
            }
        }
        self.cut_stalled(on);
        Ok(())
    }

    fn stats(&self) -> EngineStats {
        self.stats.clone()
    }
}

impl PollReactor {
    /// Takes a socket out of the epoll set (it stays open).
    fn unwatch(&self, sock: &Sock) {
        let _ = match sock {
            Sock::Listener(l) => self.epoll.delete(l),
            Sock::Stream { stream, .. } => self.epoll.delete(stream),
            Sock::Udp(u) => self.epoll.delete(u),
        };
    }

    /// A stream's readiness: finish a connect, flush what is queued, read what arrived.
    fn stream_ready(
        &mut self,
        token: Token,
        flags: EpollFlags,
        on: &mut dyn FnMut(Completion<'_>),
    ) {
        let Some(Sock::Stream {
            stream, connecting, ..
        }) = self.socks.get_mut(&token)
        else {
            return;
        };
        if *connecting {
            if !flags.intersects(EpollFlags::EPOLLOUT | EpollFlags::EPOLLERR) {
                return;
            }
            *connecting = false;
            let result = match stream.take_error() {
                Ok(None) => Ok(()),
                Ok(Some(e)) | Err(e) => Err(e),
            };
            let failed = result.is_err();
            on(Completion::Connected {
                conn: token,
                result,
            });
            if failed {
                self.close(token);
                return;
            }
        }
        if flags.contains(EpollFlags::EPOLLOUT) {
            let (frames, err) = self.flush(token);
            if frames > 0 {
                on(Completion::Sent {
                    conn: token,
                    frames,
                });
            }
            if let Some(e) = err {
                self.close(token);
                on(Completion::Closed {
                    conn: token,
                    error: Some(e),
                });
                return;
            }
        }
        if !flags.intersects(
            EpollFlags::EPOLLIN
                | EpollFlags::EPOLLRDHUP
                | EpollFlags::EPOLLHUP
                | EpollFlags::EPOLLERR,
        ) {
            return;
        }
        for _ in 0..READ_BURST {
            let Some(Sock::Stream { stream, .. }) = self.socks.get_mut(&token) else {
                break;
            };
            match stream.read(&mut self.scratch) {
                Ok(0) => {
                    self.close(token);
                    on(Completion::Closed {
                        conn: token,
                        error: None,
                    });
                    break;
                }
                Ok(len) => {
                    self.stats.bytes_received += len as u64;
                    on(Completion::Data {
                        conn: token,
                        bytes: &self.scratch[..len],
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.close(token);
                    on(Completion::Closed {
                        conn: token,
                        error: Some(e),
                    });
                    break;
                }
            }
        }
    }

    /// Cuts off connections that took nothing for too long, so their siblings keep going.
    fn cut_stalled(&mut self, on: &mut dyn FnMut(Completion<'_>)) {
        let now = Instant::now();
        let stalled: Vec<Token> = self
            .socks
            .iter()
            .filter_map(|(t, s)| match s {
                Sock::Stream { queue, .. } if queue.stalled(now, self.limits.stall) => Some(*t),
                _ => None,
            })
            .collect();
        for token in stalled {
            self.stats.stalled_cutoffs += 1;
            self.close(token);
            on(Completion::Closed {
                conn: token,
                error: Some(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no send progress: cut off",
                )),
            });
        }
    }
}
