//! The fault plan's events: a crash (sockets reset), a hang or a cut link (silence on live
//! streams, noticed after the TCP timeouts), the start of a partition.

use super::*;

impl Sim {
    /// A crash: the phone stops; its peers see the reset after `peer_timeout_ms`.
    pub(super) fn crash(&mut self, now: Time, phone: u32) {
        let i = phone as usize;
        if self.completion[i].is_some() || !self.alive[i] || self.phones[i].liar.is_some() {
            return; // already upgraded: a later power loss does not undo it
        }
        self.alive[i] = false;
        self.report.crashed += 1;
        for h in 0..self.files {
            // Its transfers end when the origin's retransmissions run out; at once
            // here (the origin's session count is what is bounded).
            self.close_origin(i * self.files + h);
        }
        let peers = std::mem::take(&mut self.tcp_peers[i]);
        for q in peers {
            let ev = Event::PeerLost {
                peer: PeerId(phone),
            };
            self.push(
                now + self.cfg.peer_timeout_ms * 1000,
                SimEvent::Phone { to: q, ev },
            );
        }
    }

    /// A hang (`freeze`: the process stops, sockets stay open) or a cut link (half-open
    /// streams, noticed after `cut_notice_ms`).
    pub(super) fn hang(&mut self, now: Time, phone: u32, freeze: bool) {
        let i = phone as usize;
        if self.completion[i].is_some() || !self.alive[i] || self.phones[i].liar.is_some() {
            return;
        }
        self.alive[i] = false;
        for h in 0..self.files {
            // Nothing more crosses the WAN for it (the server's window waits for ACKs
            // that never come), but the session lasts until the server gives up.
            let t = i * self.files + h;
            if self.origin_open[t] {
                self.origin_gen[t] += 1;
                let generation = self.origin_gen[t];
                self.push(
                    now + origin_give_up(),
                    SimEvent::OriginGiveUp { t, generation },
                );
            }
        }
        if freeze {
            self.frozen[i] = true;
            self.report.frozen += 1;
        } else {
            self.report.cut += 1;
            let peers = std::mem::take(&mut self.tcp_peers[i]);
            for q in peers {
                let ev = Event::PeerLost {
                    peer: PeerId(phone),
                };
                self.push(
                    now + self.cfg.cut_notice_ms * 1000,
                    SimEvent::Phone { to: q, ev },
                );
            }
        }
    }

    /// Connections across the cut break; both ends notice after the TCP timeout.
    pub(super) fn partition_start(&mut self, now: Time) {
        // Connections across the cut break; both ends notice after the TCP timeout.
        let at = now + self.cfg.peer_timeout_ms * 1000;
        for a in 0..self.phones.len() {
            if !self.cut[a] {
                continue;
            }
            let peers = std::mem::take(&mut self.tcp_peers[a]);
            let (across, same): (Vec<u32>, Vec<u32>) =
                peers.into_iter().partition(|&q| !self.cut[q as usize]);
            self.tcp_peers[a] = same;
            for q in across {
                self.tcp_peers[q as usize].retain(|&x| x as usize != a);
                let lost_q = Event::PeerLost { peer: PeerId(q) };
                let lost_a = Event::PeerLost {
                    peer: PeerId(a as u32),
                };
                self.push(
                    at,
                    SimEvent::Phone {
                        to: a as u32,
                        ev: lost_q,
                    },
                );
                self.push(at, SimEvent::Phone { to: q, ev: lost_a });
            }
        }
    }
}
