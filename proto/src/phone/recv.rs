//! Messages from peers: adverts and the election, joins and placement, the tree's control.

use super::*;

impl Phone {
    pub(super) fn recv(
        &mut self,
        cfg: &Config,
        now: Time,
        i: usize,
        from: PeerId,
        msg: Msg,
        out: &mut Vec<Action>,
    ) {
        match msg {
            Msg::Advert {
                claim, verified, ..
            } => {
                self.advert(cfg, now, i, from, claim, out);
                // What the root we now follow holds (not the one followed before this advert).
                let x = &mut self.hierarchies[i];
                if x.best.is_some_and(|b| b.peer == from) {
                    x.root_verified = verified;
                    x.note_owed(now);
                }
            }
            Msg::Join {
                h,
                xid,
                max_children,
                exclude,
                ..
            } => self.on_join(i, from, h, xid, max_children, &exclude, out),
            Msg::Accept {
                h,
                xid,
                parent,
                depth,
            } => self.on_accept(now, i, from, h, xid, parent, depth, out),
            Msg::Reject { xid, .. } => {
                // From the root: the Join timer retries and adverts tell us if the root
                // changed. From our parent: it refused our Request, so re-attach elsewhere.
                let x = &mut self.hierarchies[i];
                if x.parent == Some(from) && x.role == Role::Member && x.joined_xid == Some(xid) {
                    x.parent = None;
                    Self::exclude(x, from, Exclusion::Slow);
                    self.rejoin(now, i, out);
                }
            }
            Msg::Request {
                h,
                from: start,
                xid,
            } => self.on_request(cfg, i, from, h, start, xid, out),
            Msg::Chunk {
                index, have, ok, ..
            } => self.chunk(cfg, now, i, from, index, have, ok, out),
            Msg::Lease { xid, op, .. } => self.lease(cfg, now, i, from, xid, op, out),
            Msg::Leave { xid, .. } => {
                let x = &mut self.hierarchies[i];
                x.children.retain(|c| c.peer != from);
                // From our parent, in the tree we joined: it left that tree for another (see
                // `leave_tree`). Not its fault: re-join without excluding it. (xid 0 is a
                // stream's end, which says nothing of a tree.)
                if xid != 0
                    && x.parent == Some(from)
                    && x.joined_xid == Some(xid)
                    && x.role == Role::Member
                {
                    x.parent = None;
                    self.rejoin(now, i, out);
                }
            }
        }
    }

    /// A Join: as root of tree `xid`, place the joiner (not under any of `exclude`) and
    /// answer Accept, else Reject.
    #[allow(clippy::too_many_arguments)]
    fn on_join(
        &mut self,
        i: usize,
        from: PeerId,
        h: u32,
        xid: u32,
        max_children: u8,
        exclude: &Excludes,
        out: &mut Vec<Action>,
    ) {
        let x = &mut self.hierarchies[i];
        let placed = match (&mut x.coordinator, x.role) {
            (Some(c), Role::Root) if xid == x.me.xid => {
                let ex: Vec<_> = exclude.iter().collect();
                c.join(from, max_children, &ex)
            }
            _ => None,
        };
        // A child of ours that the joiner caught sending corrupt chunks, or left as dead (a hung
        // phone keeps its stream open), holds one of the tree's only inlets: stop feeding it
        // and tell it to re-attach (elsewhere), so the joiner placed in its slot is fed.
        if let Some(c) = &mut x.coordinator {
            for bad in c.take_evicted() {
                x.children.retain(|c| c.peer != bad);
                out.push(Action::Send {
                    to: bad,
                    msg: Msg::Reject { h, xid: x.me.xid },
                });
            }
        }
        let msg = match placed {
            Some((parent, depth)) => Msg::Accept {
                h,
                xid,
                parent,
                depth,
            },
            None => Msg::Reject { h, xid },
        };
        out.push(Action::Send { to: from, msg });
    }

    /// An Accept from the root we asked: attach under `parent` at `depth` (leaving the old
    /// parent) and ask it for the file from what we hold.
    #[allow(clippy::too_many_arguments)]
    fn on_accept(
        &mut self,
        now: Time,
        i: usize,
        from: PeerId,
        h: u32,
        xid: u32,
        parent: PeerId,
        depth: u8,
        out: &mut Vec<Action>,
    ) {
        let x = &mut self.hierarchies[i];
        let expected = x.best.is_some_and(|b| b.peer == from && b.xid == xid);
        if x.role != Role::Member || !x.join_pending || !expected {
            return;
        }
        if parent == self.id || x.blacklist.contains(&parent) {
            // A root that places us under ourselves or under a peer we caught sending
            // corrupt data (found by the fuzz target `phone_events`): ignored as if
            // lost; the Join timer asks again.
            return;
        }
        x.join_pending = false;
        if let Some(old) = x.parent.filter(|&p| p != parent) {
            out.push(Action::Send {
                to: old,
                msg: x.leave(),
            });
        }
        x.joined_xid = Some(xid);
        x.last_rx = now;
        x.parent = Some(parent);
        x.depth = depth;
        x.orphan_since = None;
        x.lag_since = None;
        // A new parent is judged by its own silence: a starvation clock left running from the
        // old one had a root that placed us under itself called a liar 0.8 s later, before its
        // first chunk could arrive (`pfs simulate --swarm`). The root is judged from the first
        // unanswered probe, as before; any other parent from now (the Request below is its
        // first probe): restarted only at the next probe, every move to another parent cost a
        // stall timeout more (chaos plans 14 and 20 at 2.31 x the limit, from 1.6 and 2.1).
        x.starved_since = (Some(parent) != x.best.map(|b| b.peer)).then_some(now);
        x.starved_root_mark = x.root_verified;
        out.push(Action::Send {
            to: parent,
            msg: Msg::Request {
                h,
                from: x.verified,
                xid,
            },
        });
    }

    /// A child's Request to stream from chunk `start` in tree `xid`: taken while there is a
    /// free slot or a child of an older tree to replace, else refused.
    #[allow(clippy::too_many_arguments)]
    fn on_request(
        &mut self,
        cfg: &Config,
        i: usize,
        from: PeerId,
        h: u32,
        start: u32,
        xid: u32,
        out: &mut Vec<Action>,
    ) {
        let x = &mut self.hierarchies[i];
        if x.role == Role::Traditional {
            return;
        }
        let current = x.joined_xid;
        if x.coordinator.as_ref().is_some_and(|c| c.is_corrupt(from)) {
            // As root: never feed a peer caught relaying corrupt chunks directly (a Request
            // it sent before our eviction reached it); it re-attaches elsewhere.
            x.children.retain(|c| c.peer != from);
            out.push(Action::Send {
                to: from,
                msg: Msg::Reject { h, xid },
            });
            return;
        }
        if let Some(c) = x.children.iter_mut().find(|c| c.peer == from) {
            // Already streaming to it: what is in the socket will arrive, so a repeat
            // Request (a stall probe) never rewinds and never duplicates.
            c.next = c.next.max(start);
            c.xid = xid;
        } else if x.children.len() < usize::from(cfg.fanout) {
            x.children.push(Child {
                peer: from,
                next: start,
                relayed: 0,
                xid,
            });
        } else if let Some(stale) = x.children.iter_mut().find(|c| Some(c.xid) != current) {
            // Full, but one child belongs to an older tree: it is rejoining anyway.
            out.push(Action::Send {
                to: stale.peer,
                msg: Msg::Reject { h, xid: stale.xid },
            });
            *stale = Child {
                peer: from,
                next: start,
                relayed: 0,
                xid,
            };
        } else {
            // Full (the root's bookkeeping was stale). Answer in the child's tree, so
            // it re-attaches elsewhere instead of waiting on us.
            out.push(Action::Send {
                to: from,
                msg: Msg::Reject { h, xid },
            });
            return;
        }
        assert!(x.children.len() <= usize::from(cfg.fanout));
        self.pump(cfg, i, out);
    }

    pub(super) fn advert(
        &mut self,
        cfg: &Config,
        now: Time,
        i: usize,
        from: PeerId,
        claim: Claim,
        out: &mut Vec<Action>,
    ) {
        let x = &mut self.hierarchies[i];
        if x.blacklist.contains(&from) || claim.peer != from {
            return;
        }
        // A member stays with its live root: only roots compare themselves with other roots,
        // and the loser says so (a step-down advert) before its members move. Members judging
        // roots themselves would flap between two trees while the roots settle.
        let loyal = x.role == Role::Member
            && x.best.is_some_and(|b| {
                b.peer != from
                    && b.tier >= Tier::Fetching
                    && now.saturating_sub(x.root_seen_at) <= cfg.root_timeout
            });
        if loyal {
            return;
        }
        match x.best {
            Some(b) if b.peer == from => {
                x.best = Some(claim);
                x.root_seen_at = now;
            }
            Some(b) if b >= claim => return,
            _ => {
                x.best = Some(claim);
                x.root_seen_at = now;
            }
        }
        let best = x.best.expect("set above");
        match x.role {
            Role::Waiting => {
                if best.tier >= Tier::Fetching {
                    self.follow(cfg, now, i, out);
                }
            }
            Role::Claimant => {
                if best > x.me {
                    x.role = Role::Waiting;
                    if best.tier >= Tier::Fetching {
                        self.follow(cfg, now, i, out);
                    }
                }
            }
            Role::Root => {
                if best > x.me {
                    // A stronger root exists (only possible when two passed their guards at
                    // once): stop fetching, keep what is verified, join it.
                    let h = x.id;
                    x.me.tier = Tier::Tentative;
                    out.push(Action::Broadcast(x.advert(cfg.fanout)));
                    x.coordinator = None;
                    Self::leave_tree(x, None, out);
                    if x.origin_open {
                        x.origin_open = false;
                        out.push(Action::OriginClose { h });
                    }
                    self.follow(cfg, now, i, out);
                }
            }
            Role::Member => {
                if best.tier >= Tier::Fetching && x.joined_xid != Some(best.xid) && !x.join_pending
                {
                    self.follow(cfg, now, i, out);
                }
            }
            Role::Fallback | Role::Traditional => {}
        }
    }

    /// Starts joining the best root after a random spread (no join implosion at the root).
    pub(super) fn follow(&mut self, cfg: &Config, now: Time, i: usize, out: &mut Vec<Action>) {
        let spread = self.rng.random_range(0..=cfg.join_spread);
        let x = &mut self.hierarchies[i];
        x.role = Role::Member;
        x.join_pending = true;
        x.join_tries = 0;
        x.orphan_since.get_or_insert(now);
        out.push(Action::Timer {
            h: x.id,
            kind: TimerKind::Join,
            at: now + spread,
        });
    }

    /// Lost or dropped the parent: ask the root again at once, keeping children and data.
    pub(super) fn rejoin(&mut self, now: Time, i: usize, out: &mut Vec<Action>) {
        let x = &mut self.hierarchies[i];
        if x.role != Role::Member || x.done() {
            return;
        }
        x.orphan_since.get_or_insert(now);
        x.join_pending = true;
        x.join_tries = 0;
        let h = x.id;
        out.push(Action::Timer {
            h,
            kind: TimerKind::Join,
            at: now,
        });
    }

    /// Leaving the tree we were in for tree `next` (or, `None`, for none yet): our parent is
    /// told (`Leave`) and dropped, and so is every child not already placed under us in
    /// `next`, told by a `Leave` in its own tree. Done before the first `Join` reaches the
    /// new root, so when its `Accept` lands no edge of the old tree still leads up to us:
    /// the new root knows nothing of those edges, and placed a phone under one of its own
    /// old-tree descendants (`pfs simulate --phones 100 --partition-fraction 0.3 --seed 1000`,
    /// and `--crash-fraction 0.1 --loss 0.02`: parent cycles while the trees merged).
    pub(super) fn leave_tree(x: &mut Hierarchy, next: Option<u32>, out: &mut Vec<Action>) {
        if let Some(old) = x.parent.take() {
            out.push(Action::Send {
                to: old,
                msg: x.leave(),
            });
        }
        let h = x.id;
        x.children.retain(|c| {
            let stays = next == Some(c.xid);
            if !stays {
                out.push(Action::Send {
                    to: c.peer,
                    msg: Msg::Leave { h, xid: c.xid },
                });
            }
            stays
        });
    }

    pub(super) fn exclude(x: &mut Hierarchy, peer: PeerId, why: Exclusion) {
        x.excludes.push(peer, why);
        // Only corrupt peers are ignored for good: a peer presumed dead may come back (a healed
        // partition, a reboot) and must be heard again.
        if why == Exclusion::Corrupt && !x.blacklist.contains(&peer) && x.blacklist.len() < 64 {
            x.blacklist.push(peer);
        }
    }
}
