//! The engine's [`Reactor`] contract on io_uring.

use super::*;

impl Reactor for UringReactor {
    fn listen(&mut self, token: Token, listener: TcpListener) -> io::Result<()> {
        self.socks.insert(
            token,
            Sock {
                kind: Kind::Listener(listener),
                ops: 0,
                frozen: false,
            },
        );
        self.arm_recv(token);
        Ok(())
    }

    fn register(&mut self, token: Token, stream: TcpStream) -> io::Result<()> {
        stream.set_nodelay(true)?;
        self.socks.insert(
            token,
            Sock {
                kind: Kind::Stream {
                    stream,
                    queue: SendQueue::new(Instant::now()),
                    sending: false,
                    waiting: false,
                    connecting: false,
                },
                ops: 0,
                frozen: false,
            },
        );
        self.arm_recv(token);
        Ok(())
    }

    fn connect(&mut self, token: Token, socket: OwnedFd, to: SocketAddrV4) -> io::Result<()> {
        let stream = TcpStream::from(socket);
        let fd = stream.as_raw_fd();
        stream.set_nodelay(true)?;
        let addr = Box::new(to_sockaddr(to));
        let e = opcode::Connect::new(
            types::Fd(fd),
            (&*addr as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as u32,
        )
        .build();
        self.socks.insert(
            token,
            Sock {
                kind: Kind::Stream {
                    stream,
                    queue: SendQueue::new(Instant::now()),
                    sending: false,
                    waiting: false,
                    connecting: true,
                },
                ops: 0,
                frozen: false,
            },
        );
        let ud = self.slot(Op::Connect(token, addr));
        self.op_started(token);
        self.push(e.user_data(ud));
        Ok(())
    }

    fn udp(&mut self, token: Token, socket: UdpSocket) -> io::Result<()> {
        self.socks.insert(
            token,
            Sock {
                kind: Kind::Udp(socket),
                ops: 0,
                frozen: false,
            },
        );
        self.arm_recv(token);
        Ok(())
    }

    fn send_to(&mut self, sock: Token, to: SocketAddr, bytes: &[u8]) -> Result<(), EngineError> {
        let Some(s) = self.socks.get(&sock) else {
            return Err(EngineError::UnknownToken(sock));
        };
        let SocketAddr::V4(to) = to else {
            return Err(EngineError::Io(io::Error::new(
                io::ErrorKind::InvalidInput,
                "IPv4 only",
            )));
        };
        let fd = types::Fd(s.fd());
        // SAFETY: zeroed msghdr is valid; fields set below.
        let mut st = Box::new(SendState {
            hdr: unsafe { std::mem::zeroed() },
            iov: Vec::with_capacity(1),
            addr: to_sockaddr(to),
            keep: vec![Payload::Owned(bytes.to_vec())],
        });
        let (data, _) = st.keep[0].parts();
        let iov = libc::iovec {
            iov_base: data.as_ptr() as *mut _,
            iov_len: data.len(),
        };
        st.iov.push(iov);
        st.hdr.msg_iov = st.iov.as_mut_ptr();
        st.hdr.msg_iovlen = 1;
        st.hdr.msg_name = (&mut st.addr as *mut libc::sockaddr_in).cast();
        st.hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
        let e = opcode::SendMsg::new(fd, &st.hdr).build();
        let ud = self.slot(Op::Datagram(sock, st));
        self.op_started(sock);
        self.push(e.user_data(ud));
        self.stats.sends += 1;
        self.stats.bytes_sent += bytes.len() as u64;
        Ok(())
    }

    fn send(&mut self, conn: Token, frame: Payload) -> Result<(), EngineError> {
        let limits = self.limits.clone();
        let Some(Sock {
            kind: Kind::Stream { queue, .. },
            ..
        }) = self.socks.get_mut(&conn)
        else {
            return Err(EngineError::UnknownToken(conn));
        };
        queue.push(conn, frame, &limits)?;
        self.start_send(conn);
        Ok(())
    }

    fn queued(&self, conn: Token) -> usize {
        match self.socks.get(&conn) {
            Some(Sock {
                kind: Kind::Stream { queue, .. },
                ..
            }) => queue.frames.len(),
            _ => 0,
        }
    }

    fn close(&mut self, token: Token) {
        self.retire(token);
    }

    fn unread(&self, token: Token) -> usize {
        self.socks
            .get(&token)
            .map_or(0, |s| crate::engine::fionread(s.fd()))
    }

    fn freeze(&mut self, token: Token) {
        self.freeze_socket(token);
    }

    fn poll(
        &mut self,
        timeout: Option<Duration>,
        on: &mut dyn FnMut(Completion<'_>),
    ) -> io::Result<()> {
        self.flush_overflow();
        let ready = !self.ring.completion().is_empty();
        let ts;
        let waited = if ready {
            self.ring.submitter().submit()
        } else if let Some(t) = timeout {
            ts = types::Timespec::from(t);
            let args = types::SubmitArgs::new().timespec(&ts);
            self.ring.submitter().submit_with_args(1, &args)
        } else {
            self.ring.submitter().submit_and_wait(1)
        };
        match waited {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY)
                ) => {}
            Err(e) => return Err(e),
        }
        // Drain every completion before running any callback.
        self.cqes.clear();
        for cqe in self.ring.completion() {
            self.cqes.push((cqe.user_data(), cqe.result(), cqe.flags()));
        }
        let cqes = std::mem::take(&mut self.cqes);
        for &(ud, res, flags) in &cqes {
            self.complete(ud, res, flags, on);
        }
        self.cqes = cqes;
        let now = Instant::now();
        if now.duration_since(self.last_stall_check) >= Duration::from_millis(100) {
            self.last_stall_check = now;
            let stalled: Vec<Token> = self
                .socks
                .iter()
                .filter_map(|(t, s)| match &s.kind {
                    Kind::Stream { queue, .. }
                        if !s.frozen && queue.stalled(now, self.limits.stall) =>
                    {
                        Some(*t)
                    }
                    _ => None,
                })
                .collect();
            for token in stalled {
                self.stats.stalled_cutoffs += 1;
                self.retire(token);
                on(Completion::Closed {
                    conn: token,
                    error: Some(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no send progress: cut off",
                    )),
                });
            }
        }
        Ok(())
    }

    fn stats(&self) -> EngineStats {
        self.stats.clone()
    }
}
