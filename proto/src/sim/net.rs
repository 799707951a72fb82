//! The network model: lossy links, partitions, the origin's transfers paced per TFTP window, delivery to the phones and what each action does on the wire.

use super::*;

impl Sim {
    pub(super) fn lossy(&mut self, packets: u64) -> bool {
        self.cfg.loss > 0.0 && {
            let p_ok = (1.0 - self.cfg.loss).powf(packets as f64);
            self.rng.random::<f64>() > p_ok
        }
    }

    pub(super) fn partitioned(&self, now: Time) -> bool {
        (self.partition.0..self.partition.1).contains(&now)
    }

    /// Whether the partition separates `a` from `b` at `now`.
    pub(super) fn blocked(&self, now: Time, a: u32, b: u32) -> bool {
        self.partitioned(now) && self.cut[a as usize] != self.cut[b as usize]
    }

    /// Whether `p` cannot reach the origin at `now`.
    pub(super) fn origin_blocked(&self, now: Time, p: u32) -> bool {
        self.partitioned(now) && self.cut[p as usize]
    }

    /// Ends the transfer of (phone, file) `t`, if one is open.
    pub(super) fn close_origin(&mut self, t: usize) {
        if std::mem::take(&mut self.origin_open[t]) {
            self.origin_gen[t] += 1;
            assert!(self.origin_sessions > 0, "origin session count underflow");
            self.origin_sessions -= 1;
        }
    }

    /// The origin sends chunk `index` of an open transfer: it queues on the WAN behind what
    /// is there, paced to one TFTP window per RTT; the next chunk follows when this one has
    /// left (transfers interleave chunk by chunk).
    pub(super) fn origin_send(&mut self, now: Time, p: u32, h: u32, index: u32, generation: u32) {
        let t = self.truth_index(p, h);
        if !self.origin_open[t] || self.origin_gen[t] != generation {
            return;
        }
        let bytes = self.chunk_bytes(h, index);
        self.count_wan(h, bytes);
        let start = now.max(self.wan_free);
        self.wan_free = start + (bytes as f64 / self.wan_rate).ceil() as Time;
        let mut arrive = self.wan_free + self.rtt / 2;
        let pi = p as usize;
        let occupy = (bytes as f64 / self.rate[pi]) as Time;
        let port_done = self.ingress_free[pi] + occupy;
        arrive = arrive.max(port_done);
        // The lab host's cores are charged now, not booked from the chunk's arrival: a core
        // is first come, first served, and one booked 12.5 s ahead (a WAN shared by many
        // transfers) held every LAN relay that came meanwhile behind that arrival. The cost
        // is the same; it can only come earlier than the real work, by the WAN's queue.
        arrive = arrive.max(self.host.handle(now, bytes));
        // TFTP's window is acknowledged by the client: the origin sends no further ahead of
        // what the phone's port has taken in (a slow port is the transfer's bottleneck, not a
        // queue the origin fills). Without this, the origin ran 7 s ahead of a 2 Mbit/s root,
        // whose port then held phantom chunks after it closed the transfer; a later parent's
        // chunks queued behind them and the phone called that honest root a liar.
        let acked = arrive - self.rtt / 2;
        if self.lossy(bytes.div_ceil(PACKET)) {
            arrive += self.rtt.max(1000);
        }
        arrive = arrive.max(self.origin_last[t]);
        self.origin_last[t] = arrive;
        // The port is held until the chunk is in only when the port is the bottleneck. When
        // the bytes come slower than it takes them (a WAN shared by many transfers: one 64 KiB
        // chunk per transfer each 12.5 s), they use `occupy` of that time, interleaved packet
        // by packet with whatever else the port carries, as on a real switch port; holding the
        // port until they were all in delayed a parent's LAN chunks behind them by seconds, and
        // the children left their live parents (`--models 4 --wan-mbit 1`).
        self.ingress_free[pi] = if arrive > port_done {
            self.ingress_free[pi].max(now) + occupy
        } else {
            arrive
        };
        self.push(
            arrive,
            SimEvent::OriginArrive {
                to: p,
                h,
                index,
                generation,
            },
        );
        if index + 1 < self.chunks_of(h as usize % self.files) {
            // Window-limited: at most `tftp_window_bytes` per RTT for one transfer; a phone
            // upgrading traditionally uses its own lock-step client (RFC 1350: one block per
            // RTT), as `pfs lab` does (`windowsize 1`; 100 ms measured there: 14 KB/s).
            let window = if self.cfg.mode == Mode::Traditional {
                u64::from(crate::tftp::UNFRAGMENTED_BLKSIZE)
            } else {
                self.cfg.tftp_window_bytes
            };
            let paced = if self.rtt > 0 {
                start + (bytes as f64 * self.rtt as f64 / window as f64) as Time
            } else {
                start
            };
            let next = SimEvent::OriginSend {
                to: p,
                h,
                index: index + 1,
                generation,
            };
            self.push(paced.max(self.wan_free).max(acked), next);
        }
    }

    pub(super) fn deliver(&mut self, now: Time, to: u32, ev: Event) {
        if !self.alive[to as usize] {
            return;
        }
        match ev {
            Event::Recv {
                msg: Msg::Chunk { h, index, ok, .. },
                ..
            }
            | Event::OriginChunk { h, index, ok } => {
                let t = self.truth_index(to, h);
                if ok && index == self.truth[t] {
                    self.truth[t] += 1;
                }
            }
            _ => {}
        }
        let mut actions = std::mem::take(&mut self.actions);
        actions.clear();
        // An Accept is the only event that gives a phone a parent, so the only one that can
        // close a parent cycle: checked when it moved the phone.
        let accepted = match ev {
            Event::Recv {
                msg: Msg::Accept { h, .. },
                ..
            } => Some((h, self.parent_in(to, h))),
            _ => None,
        };
        self.phones[to as usize].handle(&self.core, now, ev, &mut actions);
        if let Some((h, before)) = accepted
            && self.parent_in(to, h) != before
        {
            self.check_cycle(now, to, h);
        }
        if let Err(broken) = self.phones[to as usize].invariants(&self.core) {
            panic!("invariant broken at t={now} µs after {ev:?}: {broken}");
        }
        for a in actions.drain(..) {
            self.act(now, to, a);
        }
        self.actions = actions;
        self.close_idle_parent_streams(now, to);
    }

    /// The runtime closes its stream to a peer that is no longer its parent in any unfinished
    /// hierarchy (`Peer::drop_idle_parents`), and the parent's side sees the close (a FIN)
    /// whether or not the `Leave` datagram arrived: it stops streaming to that child. Without
    /// this a parent whose child had left kept filling the child's link with stale chunks.
    pub(super) fn close_idle_parent_streams(&mut self, now: Time, p: u32) {
        let mut parents: Vec<u32> = self.phones[p as usize]
            .hierarchies
            .iter()
            .filter(|x| !x.done())
            .filter_map(|x| x.parent.map(|p| p.0))
            .collect();
        parents.sort_unstable();
        parents.dedup();
        let before = std::mem::replace(&mut self.parents_of[p as usize], parents);
        for old in before {
            if self.parents_of[p as usize].contains(&old) {
                continue;
            }
            // The closed stream's queued bytes are discarded (RST): they no longer hold the
            // phone's link, though their already scheduled arrivals are ignored as stale.
            self.ingress_free[p as usize] = self.ingress_free[p as usize].min(now);
            if self.alive[old as usize] {
                // The parent sees its child's stream end: that child leaves it in every
                // hierarchy (the same pair may be the other way round in another one).
                let at = now + self.cfg.lan_latency_us;
                for x in 0..self.phones[p as usize].hierarchies.len() {
                    let h = self.phones[p as usize].hierarchies[x].id;
                    let ev = Event::Recv {
                        from: PeerId(p),
                        msg: Msg::Leave { h, xid: 0 },
                    };
                    self.push(at, SimEvent::Phone { to: old, ev });
                }
            }
        }
    }

    pub(super) fn act(&mut self, now: Time, p: u32, action: Action) {
        let lat = self.cfg.lan_latency_us;
        match action {
            Action::Broadcast(msg) => {
                self.report.election_broadcasts += 1;
                if let Msg::Advert { claim, .. } = msg
                    && claim.tier == crate::wire::Tier::Tentative
                {
                    self.last_claim = self.last_claim.max(now);
                }
                self.push(now + lat, SimEvent::Broadcast { from: p, msg });
            }
            Action::Send { to, msg } if self.blocked(now, p, to.0) => {
                // Nothing crosses the cut; a connection attempt fails after the TCP timeout.
                if let Msg::Request { .. } = msg {
                    let ev = Event::PeerLost { peer: to };
                    let at = now + self.cfg.peer_timeout_ms * 1000;
                    self.push(at, SimEvent::Phone { to: p, ev });
                }
            }
            Action::Send {
                to,
                msg: msg @ Msg::Chunk { h, index, .. },
            } if self.frozen[to.0 as usize] => self.send_to_frozen(now, p, to.0, h, index, msg),
            Action::Send { to, msg } => self.send(now, p, to.0, msg),
            Action::OriginOpen { h, .. } if self.origin_blocked(now, p) => {
                // The RRQ goes unanswered; the client gives up after a TFTP timeout.
                let ev = Event::OriginBusy { h };
                self.push(now + 1_000_000, SimEvent::Phone { to: p, ev });
            }
            Action::OriginOpen { h, .. } => self.open_origin(now, p, h),
            Action::OriginClose { h } => {
                let t = self.truth_index(p, h);
                self.close_origin(t);
            }
            Action::Timer { h, kind, at } => {
                let g = self.timer_slot(p, h, kind);
                self.timer_gen[g] += 1;
                let generation = self.timer_gen[g];
                self.push(
                    at.max(now),
                    SimEvent::Timer {
                        to: p,
                        h,
                        kind,
                        generation,
                    },
                );
            }
            Action::Install { h } => self.install(now, p, h),
            Action::Fallback { reason, .. } => {
                self.report.origin_fallbacks += 1;
                match reason {
                    FallbackReason::NoPeer => self.report.fallbacks_no_peer += 1,
                }
            }
            Action::BecameRoot { .. } => self.last_claim = self.last_claim.max(now),
            Action::ConfirmedRoot { h, .. } => {
                let seen = &mut self.confirmed[h as usize];
                if !seen.contains(&p) {
                    seen.push(p);
                }
            }
            Action::RootLost {
                corrupt, stalled, ..
            } => {
                if corrupt {
                    self.report.roots_rejected_corrupt += 1;
                }
                if stalled {
                    self.report.roots_rejected_stalled += 1;
                }
            }
        }
    }

    /// Phone `p`'s message `msg` to phone `to` across the LAN (neither side cut off, `to`
    /// not hung for a chunk): a chunk through both links, a stream request (failing after
    /// the TCP timeout to a dead phone), a lossy control datagram.
    fn send(&mut self, now: Time, p: u32, to: u32, msg: Msg) {
        let lat = self.cfg.lan_latency_us;
        let ev = Event::Recv {
            from: PeerId(p),
            msg,
        };
        match msg {
            Msg::Chunk { h, index, .. } => self.send_chunk(now, p, to, h, index, ev),
            Msg::Request { .. } if self.frozen[to as usize] => {
                // A hung phone's kernel accepts the connection; nothing answers.
            }
            Msg::Request { .. } if !self.alive[to as usize] => {
                // Connecting to a dead phone fails after the TCP timeout.
                let ev = Event::PeerLost { peer: PeerId(to) };
                let at = now + self.cfg.peer_timeout_ms * 1000;
                self.push(at, SimEvent::Phone { to: p, ev });
            }
            Msg::Request { .. } => {
                if !self.tcp_peers[p as usize].contains(&to) {
                    self.tcp_peers[p as usize].push(to);
                    self.tcp_peers[to as usize].push(p);
                }
                self.push(now + lat, SimEvent::Phone { to, ev });
            }
            // Leave and Lease are UDP datagrams on real sockets too: lossy.
            Msg::Join { .. }
            | Msg::Accept { .. }
            | Msg::Reject { .. }
            | Msg::Leave { .. }
            | Msg::Lease { .. } => {
                self.report.unicast_control += 1;
                if !self.lossy(1) {
                    self.push(now + lat, SimEvent::Phone { to, ev });
                }
            }
            Msg::Advert { .. } => unreachable!("adverts are broadcast"),
        }
    }

    /// A chunk for a hung child: its kernel takes it (it crosses both links) while the
    /// stream's receive buffer has room, but nothing reads it. The chunk that fills the
    /// buffer closes the window; the parent's stream breaks [`ZERO_WINDOW_ABORT`] after that
    /// chunk arrived (`TCP_USER_TIMEOUT` on unanswered zero-window probes). Later chunks wait
    /// in the parent's buffers. A parent that runs out of chunks before the window closes
    /// never notices at the transport level (the hung phone's kernel still acknowledges and
    /// answers keepalives).
    fn send_to_frozen(&mut self, now: Time, p: u32, to: u32, h: u32, index: u32, msg: Msg) {
        let bytes = self.chunk_bytes(h, index);
        let unread = self.streams.unread.entry((p, to)).or_default();
        if *unread >= FROZEN_RCV_WINDOW {
            return;
        }
        *unread += bytes;
        let full = *unread >= FROZEN_RCV_WINDOW;
        let ev = Event::Recv {
            from: PeerId(p),
            msg,
        };
        self.send_chunk(now, p, to, h, index, ev);
        if full {
            let closed = self.streams.tail.get(&(p, to)).copied().unwrap_or(now);
            let ev = Event::PeerLost { peer: PeerId(to) };
            self.push(closed + ZERO_WINDOW_ABORT, SimEvent::Phone { to: p, ev });
        }
    }

    /// A chunk of `h` from `p` to `to`: it occupies `p`'s egress, then `to`'s ingress; a lost
    /// packet costs a retransmission round; it never arrives before the chunk sent ahead of it
    /// on the same stream.
    fn send_chunk(&mut self, now: Time, p: u32, to: u32, h: u32, index: u32, ev: Event) {
        let lat = self.cfg.lan_latency_us;
        let bytes = self.chunk_bytes(h, index) as f64;
        let (pi, ti) = (p as usize, to as usize);
        let start = now.max(self.egress_free[pi]);
        let end = start + (bytes / self.rate[pi]).ceil() as Time;
        self.egress_free[pi] = end;
        let in_start = (start + lat).max(self.ingress_free[ti]);
        let mut arrive = (in_start + (bytes / self.rate[ti]).ceil() as Time).max(end + lat);
        if self.lossy((bytes as u64).div_ceil(PACKET)) {
            arrive += 2 * lat + 1000;
        }
        // On one lab host the bytes also wait for a core to move them.
        arrive = arrive.max(self.host.handle(start, bytes as u64) + lat);
        let tail = self.streams.tail.entry((p, to)).or_default();
        arrive = arrive.max(*tail);
        *tail = arrive;
        self.ingress_free[ti] = arrive;
        self.push(arrive, SimEvent::Phone { to, ev });
    }

    /// Phone `p` opens an origin transfer of `h`: refused when the origin is at its bound,
    /// else ready after a round trip, streaming from the first chunk.
    fn open_origin(&mut self, now: Time, p: u32, h: u32) {
        let t = self.truth_index(p, h);
        self.close_origin(t);
        let max = self.cfg.origin_max_sessions;
        if max > 0 && self.origin_sessions >= max {
            self.report.origin_busy += 1;
            let ev = Event::OriginBusy { h };
            self.push(now + self.rtt, SimEvent::Phone { to: p, ev });
        } else {
            self.session_opened(h);
            self.origin_open[t] = true;
            self.origin_gen[t] += 1;
            let generation = self.origin_gen[t];
            let ev = Event::OriginReady { h };
            self.push(now + self.rtt, SimEvent::Phone { to: p, ev });
            let first = SimEvent::OriginSend {
                to: p,
                h,
                index: 0,
                generation,
            };
            self.push(now + self.rtt, first);
        }
    }

    /// Phone `p` installs `h`: corrupt unless the ground truth holds every chunk; the phone
    /// is complete with its last file (a manifest adds its load's files first).
    fn install(&mut self, now: Time, p: u32, h: u32) {
        let t = self.truth_index(p, h);
        let chunks = self.chunks_of(h as usize % self.files);
        if self.truth[t] != chunks {
            self.report.corrupt_installs += 1;
        }
        self.installed[p as usize] += 1;
        self.manifest_installed(now, p, h);
        if usize::from(self.installed[p as usize]) == self.files
            && self.phones[p as usize].liar.is_none()
        {
            self.completion[p as usize] = Some(now);
            self.report.completed += 1;
        }
    }
}
