//! Chunks: from the parent and from the origin, verified in order, relayed to children.

use super::*;

impl Phone {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn chunk(
        &mut self,
        cfg: &Config,
        now: Time,
        i: usize,
        from: PeerId,
        index: u32,
        have: u32,
        ok: bool,
        out: &mut Vec<Action>,
    ) {
        self.last_chunk = now;
        let x = &mut self.hierarchies[i];
        if x.parent != Some(from) || x.role != Role::Member {
            return; // stale: from a parent we already left
        }
        let h = x.id;
        if !ok {
            // Verification failed: never relay or install it; drop and blacklist the parent.
            out.push(Action::Send {
                to: from,
                msg: x.leave(),
            });
            x.parent = None;
            Self::exclude(x, from, Exclusion::Corrupt);
            if x.best.is_some_and(|b| b.peer == from) {
                // The root itself is corrupt: it is blacklisted (its adverts are ignored from
                // now on) and the phones that caught it elect a new root among themselves. No
                // fallback: that would bypass the bound on origin transfers.
                x.best = None;
                x.joined_xid = None;
                x.join_pending = false;
                x.orphan_since.get_or_insert(now);
                out.push(Action::RootLost {
                    h,
                    silent: 0,
                    corrupt: true,
                    stalled: false,
                });
                self.arm_claim(cfg, now, i, 0, out);
            } else {
                self.rejoin(now, i, out);
            }
            return;
        }
        x.last_rx = now;
        x.starved_since = None;
        if index != x.verified || x.done() {
            // A duplicate after a re-attach, or past the file's end (found by the fuzz target
            // `phone_events`; a driver marks such a chunk !ok, the core need not rely on it).
            return;
        }
        x.last_progress = now;
        self.verified_one(cfg, i, out);
        // A phone whose own link is the bottleneck cannot blame its parent for the lag.
        let own_link_ok = self.link_kbit >= cfg.leaf_below_kbit;
        let x = &mut self.hierarchies[i];
        // What the root owes us is owed from now on (what it held before just arrived).
        x.owed_since = None;
        x.note_owed(now);
        // A parent that falls far behind what it holds itself is slow: re-attach elsewhere.
        // The root as our parent streams each chunk as it verifies it, so it is held to a
        // small lag (a trickling liar on a short file never falls 16 chunks behind).
        // Only a root that claims the whole file is held to it: one still fetching may lag a
        // little behind its own verified count under loss, and is not a liar for it.
        let root_is_parent = x.placed_under_root(from) && have == x.chunks;
        let lag = if root_is_parent {
            ROOT_LAG_CHUNKS
        } else {
            cfg.slow_lag_chunks
        };
        if own_link_ok && !x.done() && have > x.verified + lag {
            let since = *x.lag_since.get_or_insert(now);
            if now - since > 2 * cfg.slow_window && root_is_parent {
                // The root itself trickles far behind what it claims: as a silent root.
                self.reject_stalled_root(cfg, now, i, from, now - since, out);
            } else if now - since > cfg.slow_window && !root_is_parent {
                // (Leaving the root for a fresh place would land under it again.)
                out.push(Action::Send {
                    to: from,
                    msg: x.leave(),
                });
                x.parent = None;
                x.lag_since = None;
                Self::exclude(x, from, Exclusion::Slow);
                self.rejoin(now, i, out);
            }
        } else {
            x.lag_since = None;
        }
    }

    pub(super) fn origin_chunk(
        &mut self,
        cfg: &Config,
        now: Time,
        i: usize,
        index: u32,
        ok: bool,
        out: &mut Vec<Action>,
    ) {
        self.last_chunk = now;
        let x = &mut self.hierarchies[i];
        if !x.fetching() || !x.origin_open {
            return; // a deposed root's last in-flight chunks
        }
        x.last_origin_rx = now;
        if !ok {
            // The transfer delivered bytes that fail verification: reopen it (it restarts
            // from the file's start; the verified prefix is skipped).
            x.origin_open = false;
            let h = x.id;
            out.push(Action::OriginClose { h });
            out.push(Action::OriginOpen {
                h,
                fallback: x.role == Role::Fallback,
            });
            return;
        }
        if index == x.verified && !x.done() {
            self.verified_one(cfg, i, out);
        }
        let x = &mut self.hierarchies[i];
        if x.done() {
            x.origin_open = false;
            let h = x.id;
            out.push(Action::OriginClose { h });
            if x.role == Role::Traditional {
                self.open_next_traditional(out);
                return;
            }
            if x.role == Role::Fallback {
                x.lease_until = 0;
                if let Some(root) = x.best {
                    out.push(Action::Send {
                        to: root.peer,
                        msg: Msg::Lease {
                            h,
                            xid: root.xid,
                            op: LeaseOp::Release,
                        },
                    });
                }
            }
        }
    }

    /// A phone on its own pulls its files one after another, as the Cisco technote describes
    /// ("one by one"): every file of every phone at once would put phones x files lock-step
    /// transfers into the WAN queue, which overflows it and turns losses into timeouts.
    pub(super) fn open_next_traditional(&mut self, out: &mut Vec<Action>) {
        if let Some(x) = self
            .hierarchies
            .iter()
            .find(|x| x.role == Role::Traditional && !x.done())
        {
            out.push(Action::OriginOpen {
                h: x.id,
                fallback: false,
            });
        }
    }

    /// The next chunk in order passed verification: count it, relay it, maybe install.
    pub(super) fn verified_one(&mut self, cfg: &Config, i: usize, out: &mut Vec<Action>) {
        let x = &mut self.hierarchies[i];
        debug_assert!(x.verified < x.chunks);
        x.verified += 1;
        if x.done() {
            x.installs += 1;
            out.push(Action::Install { h: x.id });
        }
        self.pump(cfg, i, out);
    }

    /// Sends every child the verified chunks it lacks (all of them once the file is complete in
    /// store-and-forward mode). Only verified chunks are ever relayed.
    pub(super) fn pump(&mut self, cfg: &Config, i: usize, out: &mut Vec<Action>) {
        if self.liar.is_some() {
            return; // it feeds its children from the watchdog, if at all
        }
        let corrupt = self.corrupt;
        let x = &mut self.hierarchies[i];
        let limit = match cfg.mode {
            Mode::Pipelined => x.verified,
            Mode::StoreAndForward if x.done() => x.chunks,
            _ => 0,
        };
        for c in &mut x.children {
            while c.next < limit {
                debug_assert!(c.next < x.verified, "relaying an unverified chunk");
                out.push(Action::Send {
                    to: c.peer,
                    msg: Msg::Chunk {
                        h: x.id,
                        index: c.next,
                        have: x.verified,
                        ok: !corrupt,
                    },
                });
                c.next += 1;
                c.relayed = c.next;
            }
        }
    }
}
