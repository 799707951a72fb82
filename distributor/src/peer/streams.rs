//! The peer side on the wire: UDP 4051 datagrams in and out, TCP stream frames in and out, chunks verified in place.

use super::*;

impl Peer {
    /// A stream ended: its peer is lost (as parent or child) for the core.
    pub(super) fn lost(&mut self, now: Time, t: Token) -> Result<(), PeerError> {
        let Some(c) = self.conns.remove(&t) else {
            return Ok(());
        };
        self.reactor.borrow_mut().close(t);
        if c.outgoing {
            self.to_parent.retain(|_, v| *v != t);
            return self.feed(now, Event::PeerLost { peer: c.peer });
        }
        self.from_child.retain(|_, v| *v != t);
        // A child's stream ended: it is no longer our child in any hierarchy. The same peer
        // may be our parent in another hierarchy, over our own stream to it, which stays.
        for h in 0..self.files.len() as u32 {
            // The stream's end says nothing of a tree: xid 0 (any).
            let msg = Msg::Leave { h, xid: 0 };
            self.feed(now, Event::Recv { from: c.peer, msg })?;
        }
        Ok(())
    }

    /// Cuts complete frames off a stream and handles them. Chunk data is verified and written
    /// straight from the stream buffer (no copy per frame), and the buffer is compacted once.
    pub(super) fn frames(&mut self, now: Time, t: Token) -> Result<(), PeerError> {
        let Some(c) = self.conns.get_mut(&t) else {
            return Ok(());
        };
        let (peer, outgoing) = (c.peer, c.outgoing);
        let buf = std::mem::take(&mut c.buf);
        let mut pos = 0;
        let result = loop {
            let rest = &buf[pos..];
            if rest.len() < wire::HEADER_LEN {
                break Ok(true);
            }
            let (kind, len) = match wire::decode_header(rest) {
                Ok((kind, len)) => (kind, wire::HEADER_LEN + len),
                Err(e) => {
                    warn!(peer = %Ipv4Addr::from(peer), "bad frame: {e}; closing");
                    break Ok(false);
                }
            };
            debug_assert!(len <= MAX_FRAME);
            if rest.len() < len {
                break Ok(true);
            }
            let frame = &rest[..len];
            pos += len;
            if kind == 0x11 && outgoing {
                match wire::chunk_view(frame) {
                    Ok((hierarchy, offset, have, data)) => {
                        if let Err(e) = self.chunk_in(now, peer, hierarchy, offset, have, data) {
                            break Err(e);
                        }
                    }
                    Err(e) => {
                        warn!(peer = %Ipv4Addr::from(peer), "bad frame: {e}; closing");
                        break Ok(false);
                    }
                }
                continue;
            }
            match wire::decode(frame) {
                Ok(Message::Request {
                    hierarchy,
                    offset,
                    xid,
                }) if !outgoing => {
                    let Some(h) = self.files.iter().position(|f| f.id == hierarchy) else {
                        continue;
                    };
                    let cs = u64::from(self.files[h].chunk_size);
                    if !offset.is_multiple_of(cs) {
                        warn!(peer = %Ipv4Addr::from(peer), "unaligned request; closing");
                        break Ok(false);
                    }
                    self.from_child.insert(peer, t);
                    self.last_child_activity = Instant::now();
                    let msg = Msg::Request {
                        h: h as u32,
                        from: (offset / cs).min(u64::from(u32::MAX)) as u32,
                        xid,
                    };
                    if let Err(e) = self.feed(now, Event::Recv { from: peer, msg }) {
                        break Err(e);
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    warn!(peer = %Ipv4Addr::from(peer), "bad frame: {e}; closing");
                    break Ok(false);
                }
            }
        };
        // Put the unparsed tail back, unless the connection went away meanwhile.
        let keep = matches!(result, Ok(true));
        if let Some(c) = self.conns.get_mut(&t) {
            let mut buf = buf;
            buf.drain(..pos);
            buf.extend_from_slice(&c.buf); // bytes routed while we parsed (none today)
            c.buf = buf;
        }
        match result {
            Ok(_) if keep => Ok(()),
            Ok(_) => self.lost(now, t),
            Err(e) => Err(e),
        }
    }

    pub(super) fn chunk_in(
        &mut self,
        now: Time,
        from: PeerId,
        hierarchy: HierarchyId,
        offset: u64,
        have: u64,
        data: &[u8],
    ) -> Result<(), PeerError> {
        let Some(h) = self.files.iter().position(|f| f.id == hierarchy) else {
            return Ok(());
        };
        if self.files[h].is_manifest {
            return match offset {
                0 => self.manifest_chunk_in(now, from, h, data),
                _ => Ok(()),
            };
        }
        let cs = u64::from(self.files[h].chunk_size);
        let f = &mut self.files[h];
        if !offset.is_multiple_of(cs) || offset >= f.entry.size.max(1) {
            return Ok(());
        }
        let index = (offset / cs) as u32;
        let have = if have >= f.entry.size {
            f.chunks
        } else {
            (have / cs) as u32
        };
        let verified = self.phone.hierarchies[h].verified;
        let mut ok = true;
        if index == verified && !f.installed {
            ok = write_verified(f, index, data)?;
            if ok {
                f.report.peer_bytes += data.len() as u64;
            } else {
                f.report.corrupt_chunks += 1;
                warn!(file = %f.entry.name, chunk = index, from = %Ipv4Addr::from(from), "chunk failed verification: dropped");
            }
        }
        let msg = Msg::Chunk {
            h: h as u32,
            index,
            have,
            ok,
        };
        self.feed(now, Event::Recv { from, msg })
    }

    pub(super) fn datagram(
        &mut self,
        now: Time,
        from: SocketAddr,
        bytes: &[u8],
    ) -> Result<(), PeerError> {
        let SocketAddr::V4(from) = from else {
            return Ok(());
        };
        let peer = PeerId::from(*from.ip());
        if *from.ip() == self.me {
            return Ok(()); // our own broadcast
        }
        self.udp[0] += 1;
        let m = match wire::decode(bytes) {
            Ok(m) => m,
            Err(e) => {
                self.udp[1] += 1;
                debug!(%from, "undecodable datagram: {e}");
                return Ok(());
            }
        };
        let Some(key) = m.key() else { return Ok(()) };
        let Some(h) = self.files.iter().position(|f| &f.key == key) else {
            debug!(%from, model = %key.model, file = %key.file, "not one of our hierarchies");
            self.udp[2] += 1;
            return Ok(()); // another model or load
        };
        let h = h as u32;
        let msg = match m {
            Message::Advert {
                xid,
                strength,
                tier,
                seq,
                verified,
                depth,
                free_slots,
                ..
            } => Msg::Advert {
                h,
                claim: Claim {
                    tier,
                    strength,
                    peer,
                    xid,
                },
                seq,
                verified,
                depth,
                free_slots,
            },
            Message::Join {
                xid,
                max_children,
                verified,
                exclude,
                ..
            } => Msg::Join {
                h,
                xid,
                max_children,
                verified,
                exclude: Excludes::from_pairs(exclude),
            },
            Message::Accept {
                xid, parent, depth, ..
            } => Msg::Accept {
                h,
                xid,
                parent,
                depth,
            },
            Message::Reject { xid, .. } => Msg::Reject { h, xid },
            Message::Leave { xid, .. } => Msg::Leave { h, xid },
            Message::Lease { xid, op, .. } => {
                let op = match op {
                    wire::LEASE_REQUEST => LeaseOp::Request,
                    wire::LEASE_GRANT => LeaseOp::Grant,
                    wire::LEASE_REFUSE => LeaseOp::Refuse,
                    wire::LEASE_RELEASE => LeaseOp::Release,
                    _ => {
                        self.udp[1] += 1;
                        return Ok(());
                    }
                };
                Msg::Lease { h, xid, op }
            }
            _ => return Ok(()),
        };
        trace!(from = %from.ip(), file = %self.files[h as usize].entry.name, "rx {msg:?}");
        self.feed(now, Event::Recv { from: peer, msg })
    }

    pub(super) fn send_udp(&mut self, to: SocketAddrV4, msg: Msg) {
        let h = msg.hierarchy() as usize;
        let key = self.files[h].key.clone();
        let m = match msg {
            Msg::Advert {
                claim,
                seq,
                verified,
                depth,
                free_slots,
                ..
            } => Message::Advert {
                key,
                xid: claim.xid,
                strength: claim.strength,
                tier: claim.tier,
                seq,
                depth,
                free_slots,
                verified,
            },
            Msg::Join {
                xid,
                max_children,
                verified,
                exclude,
                ..
            } => Message::Join {
                key,
                xid,
                max_children,
                link_kbit: self.phone.link_kbit,
                verified,
                exclude: exclude.iter().collect(),
            },
            Msg::Accept {
                xid, parent, depth, ..
            } => Message::Accept {
                key,
                xid,
                parent,
                port: self.opts.port,
                depth,
            },
            Msg::Reject { xid, .. } => Message::Reject {
                key,
                xid,
                reason: 0,
            },
            Msg::Leave { xid, .. } => Message::Leave {
                key,
                xid,
                reason: 0,
            },
            Msg::Lease { xid, op, .. } => Message::Lease {
                key,
                xid,
                op: match op {
                    LeaseOp::Request => wire::LEASE_REQUEST,
                    LeaseOp::Grant => wire::LEASE_GRANT,
                    LeaseOp::Refuse => wire::LEASE_REFUSE,
                    LeaseOp::Release => wire::LEASE_RELEASE,
                },
            },
            Msg::Request { .. } | Msg::Chunk { .. } => unreachable!("stream messages"),
        };
        match m.encode() {
            Ok(bytes) => {
                if let Err(e) = self.reactor.borrow_mut().send_to(
                    self.base | UDP_TOKEN,
                    SocketAddr::V4(to),
                    &bytes,
                ) {
                    debug!("datagram to {to}: {e}");
                } else {
                    *self.sent.entry(m.name()).or_default() += 1;
                }
            }
            Err(e) => warn!("cannot encode {msg:?}: {e}"),
        }
    }

    pub(super) fn send(&mut self, now: Time, to: PeerId, msg: Msg) -> Result<(), PeerError> {
        match msg {
            Msg::Request { h, from, xid } => self.send_request(now, to, h, from, xid),
            Msg::Chunk { h, index, have, .. } => self.send_chunk(now, to, h, index, have),
            other => {
                let peer = SocketAddrV4::new(Ipv4Addr::from(to), self.opts.port);
                self.send_udp(peer, other);
                Ok(())
            }
        }
    }

    /// Asks parent `to` for file `h` from chunk `from` in tree `xid`, on the stream to it
    /// (opened first if there is none).
    fn send_request(
        &mut self,
        now: Time,
        to: PeerId,
        h: u32,
        from: u32,
        xid: u32,
    ) -> Result<(), PeerError> {
        let peer = SocketAddrV4::new(Ipv4Addr::from(to), self.opts.port);
        let t = match self.to_parent.get(&to) {
            Some(t) => *t,
            None => match self.connect_parent(to, peer) {
                Some(t) => t,
                None => return self.feed(now, Event::PeerLost { peer: to }),
            },
        };
        let x = &self.phone.hierarchies[h as usize];
        let f = &mut self.files[h as usize];
        f.report.parent = Some(Ipv4Addr::from(to));
        f.report.depth = x.depth;
        info!(
            "XID{:08X} {} joined under {} depth {}, from chunk {}",
            xid,
            f.entry.name,
            Ipv4Addr::from(to),
            x.depth,
            from
        );
        let offset = u64::from(from) * u64::from(f.chunk_size);
        let frame = Message::Request {
            hierarchy: f.id,
            offset,
            xid,
        }
        .encode()
        .expect("request encodes");
        if let Err(e) = self.reactor.borrow_mut().send(t, Payload::Owned(frame)) {
            debug!("request to {peer}: {e}");
        } else {
            *self.sent.entry("Request").or_default() += 1;
        }
        Ok(())
    }

    /// Opens a stream to parent `to` at `peer` from this phone's place; `None` when the
    /// connect failed (logged).
    fn connect_parent(&mut self, to: PeerId, peer: SocketAddrV4) -> Option<Token> {
        let t = self.token();
        let connected = self
            .place
            .run(engine::tcp_socket)
            .map_err(|e| io::Error::other(e.to_string()))
            .and_then(|r| r)
            .and_then(|fd| self.reactor.borrow_mut().connect(t, fd, peer));
        if let Err(e) = connected {
            warn!("connect {peer}: {e}");
            return None;
        }
        self.conns.insert(
            t,
            Conn {
                peer: to,
                buf: Vec::new(),
                outgoing: true,
            },
        );
        self.to_parent.insert(to, t);
        Some(t)
    }

    /// Relays chunk `index` of file `h` to child `to` (which holds `have` chunks) on the
    /// child's stream; a child over its bound is cut off.
    fn send_chunk(
        &mut self,
        now: Time,
        to: PeerId,
        h: u32,
        index: u32,
        have: u32,
    ) -> Result<(), PeerError> {
        let Some(&t) = self.from_child.get(&to) else {
            return Ok(()); // the child's stream is gone; it will ask again
        };
        let f = &self.files[h as usize];
        debug_assert!(index < self.phone.hierarchies[h as usize].verified);
        let cs = u64::from(f.chunk_size);
        let (start, end) = f.entry.chunk_range(f.chunk_size, index);
        let have_bytes = (u64::from(have) * cs).min(f.entry.size);
        let head = wire::chunk_head(f.id, start, have_bytes, (end - start) as usize);
        let frame = match &f.map {
            // A corrupt peer (fault injection) relays the chunk with one byte flipped.
            Some(map) if self.phone.corrupt => {
                let mut v = head.to_vec();
                v.extend_from_slice(&map[start as usize..end as usize]);
                if let Some(b) = v.get_mut(wire::HEADER_LEN + 24) {
                    *b ^= 0x5a;
                }
                Payload::Owned(v)
            }
            Some(map) => Payload::Mapped {
                head: head.to_vec(),
                map: map.clone(),
                off: start as usize,
                len: (end - start) as usize,
            },
            None => Payload::Owned(head.to_vec()),
        };
        self.last_child_activity = Instant::now();
        let sent = self.reactor.borrow_mut().send(t, frame);
        if let Err(e) = sent {
            // Over its bound: cut the child off; it re-attaches and resumes.
            warn!(child = %Ipv4Addr::from(to), "{e}: cutting it off");
            self.lost(now, t)?;
        } else {
            *self.sent.entry("Chunk").or_default() += 1;
            let r = &mut self.files[h as usize].report;
            if index == 0 {
                r.children_served += 1;
            }
        }
        Ok(())
    }
}
