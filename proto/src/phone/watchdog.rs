//! The phone-wide watchdog: silence, starvation, stalls and the lease request of an orphan.

use super::*;

impl Phone {
    pub(super) fn watchdog(&mut self, cfg: &Config, now: Time, out: &mut Vec<Action>) {
        if self.liar.is_some() {
            self.liar_watchdog(now, out);
            out.push(Action::Timer {
                h: 0,
                kind: TimerKind::Watchdog,
                at: now + cfg.watchdog,
            });
            return;
        }
        // Time the driver did not run this phone is not silence: a phone that could not
        // listen (its host's turn took seconds) heard nothing because it did not look, not
        // because its root or parent died. Its silence clocks skip that time. At 1000 phones
        // on 2 cores turns of 1-7 s made every member presume its root dead at once, and the
        // re-election's broadcasts made the turns longer still (`pfs lab`).
        let deaf = self.watchdog_due.map_or(0, |due| now.saturating_sub(due));
        if deaf > 0 {
            self.last_chunk = self.last_chunk.saturating_add(deaf).min(now);
            for x in &mut self.hierarchies {
                x.skip_deaf(now, deaf);
            }
        }
        for i in 0..self.hierarchies.len() {
            self.watch_root(cfg, now, i, out);
            if self.watch_parent(cfg, now, i, out) {
                continue;
            }
            self.watch_origin(cfg, now, i, out);
            self.watch_orphan(cfg, now, i, out);
        }
        self.watchdog_due = Some(now + cfg.watchdog);
        out.push(Action::Timer {
            h: 0,
            kind: TimerKind::Watchdog,
            at: now + cfg.watchdog,
        });
    }

    /// Hierarchy `i`'s root: presumed dead after `root_timeout` of silence (a member still fed
    /// by its parent excepted), and a claim never followed by a root forgotten; both re-elect.
    fn watch_root(&mut self, cfg: &Config, now: Time, i: usize, out: &mut Vec<Action>) {
        let x = &mut self.hierarchies[i];
        match x.role {
            // A member still fed by its parent has a live tree: on a saturated link the
            // root's adverts are what gets dropped, not the data (seen in `pfs lab`).
            Role::Member
                if now.saturating_sub(x.root_seen_at) > cfg.root_timeout
                    && now.saturating_sub(x.last_progress) > cfg.root_timeout =>
            {
                // Root presumed dead: re-elect. Phones holding more data claim stronger.
                out.push(Action::RootLost {
                    h: x.id,
                    silent: now.saturating_sub(x.root_seen_at.max(x.last_progress)),
                    corrupt: false,
                    stalled: false,
                });
                x.wants_lease = false;
                x.lease_asked_at = None;
                if let Some(dead) = x.best.take() {
                    Self::exclude(x, dead.peer, Exclusion::Dead);
                }
                x.orphan_since.get_or_insert(now);
                x.join_pending = false;
                self.arm_claim(
                    cfg,
                    now,
                    i,
                    cfg.root_advert_interval + cfg.advert_interval,
                    out,
                );
            }
            // A claim heard but never followed by a root (its claimant died or was cut off
            // before passing its guard) suppresses nobody for ever: forget it and claim.
            Role::Waiting
                if x.best.is_some_and(|b| b.tier == Tier::Tentative)
                    && now.saturating_sub(x.root_seen_at) > cfg.root_timeout =>
            {
                x.best = None;
                self.arm_claim(cfg, now, i, 0, out);
            }
            _ => {}
        }
    }

    /// A member's parent: probed with a Request when silent, left when it starves us while
    /// its root has the data (blacklisted when it is the root itself). True when the member
    /// left its parent: hierarchy `i`'s other checks wait for the next turn.
    fn watch_parent(&mut self, cfg: &Config, now: Time, i: usize, out: &mut Vec<Action>) -> bool {
        let (link_kbit, idle) = (self.link_kbit, now.saturating_sub(self.last_chunk));
        let x = &mut self.hierarchies[i];
        let probe_due = now.saturating_sub(x.last_rx) > cfg.stall_timeout;
        if x.role == Role::Member
            && !x.done()
            && let Some(parent) = x.parent
            && (probe_due || x.starved_since.is_some())
        {
            // Nothing from the parent for a while: ask again from our verified offset
            // (every `stall_timeout`), and judge the starvation on every watchdog turn, not
            // only when a probe is due (that added up to a probe interval to every rescue:
            // a depth-5 member under a hung parent waited 9.5 s in the simulator).
            if probe_due {
                x.last_rx = now;
            }
            if x.starved_since.is_none() {
                x.starved_since = Some(now);
                x.starved_root_mark = x.root_verified;
            }
            let since = x.starved_since.unwrap_or(now);
            // Deeper members wait longer: when a parent dies, its own children (the
            // shallowest starving) move first and their subtrees are fed again before
            // they would blame their own, live, parents.
            let limit = if cfg.mode == Mode::StoreAndForward {
                cfg.starve_timeout_store_and_forward
            } else {
                cfg.starve_timeout
            } + Time::from(x.depth) * cfg.watchdog;
            let root_fed = x.root_verified > x.starved_root_mark || x.root_verified == x.chunks;
            let starving = x.root_verified > x.verified && root_fed;
            // A parent is judged from when the root first held a chunk we lack, not from when
            // we began to starve: until then it owed us nothing. A slow root behind its fast
            // child called a liar 0.5 s after its first chunk for the child arrived (two
            // working roots to the end, `pfs simulate --swarm`); on a WAN shared by many
            // transfers (one chunk per root each 12.5 s at 24 transfers on 1 Mbit/s) every
            // member starves between chunks, and one whose parent was still relaying a new
            // chunk when the root's advert announced it left that live parent, which the
            // root then evicted with its subtree (`--models 4 --wan-mbit 1`: 90 fallbacks).
            // Where the root gets data often, it is ahead of us when the starvation begins
            // and nothing changes: a hung parent is left after the same limit.
            let owed = now.saturating_sub(x.owed_since.map_or(since, |t| t.max(since)));
            if starving
                && x.placed_under_root(parent)
                && owed > root_silence_limit(cfg, limit, link_kbit, idle)
            {
                // Our parent is the root itself: it adverts data it does not send us. No
                // other placement can help (it places us under itself again), so it is
                // blacklisted and the members it starves elect a root among themselves.
                let silent = now.saturating_sub(x.last_progress.max(since));
                self.reject_stalled_root(cfg, now, i, parent, silent, out);
                return true;
            }
            if starving && owed > limit {
                // The chain above us leads to no data (a stale placement, possibly a
                // cycle across two trees): leave it and get a fresh place from the root.
                out.push(Action::Send {
                    to: parent,
                    msg: x.leave(),
                });
                x.parent = None;
                x.starved_since = None;
                // Tell the root not to place us under it again: without this the root,
                // which still counts the silent parent as a member with a free slot, put
                // the child straight back under a phone whose cable was pulled (30 s and
                // more in `pfs lab`). Presumed dead, not blacklisted: heard again later.
                Self::exclude(x, parent, Exclusion::Dead);
                self.rejoin(now, i, out);
                return true;
            }
            if probe_due {
                out.push(Action::Send {
                    to: parent,
                    msg: Msg::Request {
                        h: x.id,
                        from: x.verified,
                        xid: x.joined_xid.unwrap_or(0),
                    },
                });
            }
        }
        false
    }

    /// The origin went quiet (unreachable, or replies lost): reopen from the verified offset.
    fn watch_origin(&mut self, cfg: &Config, now: Time, i: usize, out: &mut Vec<Action>) {
        let x = &mut self.hierarchies[i];
        if x.fetching()
            && x.origin_open
            && !x.done()
            && now.saturating_sub(x.last_origin_rx) > cfg.origin_timeout
        {
            x.origin_open = false;
            out.push(Action::OriginClose { h: x.id });
            out.push(Action::OriginOpen {
                h: x.id,
                fallback: x.role == Role::Fallback,
            });
        }
    }

    /// An orphan for longer than `fallback_after` asks its root for a lease to fetch from the
    /// origin.
    fn watch_orphan(&mut self, cfg: &Config, now: Time, i: usize, out: &mut Vec<Action>) {
        let x = &self.hierarchies[i];
        let orphaned = matches!(x.role, Role::Member | Role::Waiting | Role::Claimant)
            && x.parent.is_none()
            && !x.done();
        if orphaned
            && !x.wants_lease
            && x.orphan_since
                .is_some_and(|t| now.saturating_sub(t) > cfg.fallback_after)
        {
            // Only the root may let a member fetch from the origin (a lease); without a
            // live root the member re-elects instead (the root-silence rule above).
            self.request_lease(cfg, now, i, out);
        }
    }

    /// Leaves a root that is our parent and feeds us nothing it claims to hold; blacklists it
    /// (its adverts are ignored from now on) and re-elects, as for a corrupt root. No fallback:
    /// that would bypass the bound on origin transfers.
    pub(super) fn reject_stalled_root(
        &mut self,
        cfg: &Config,
        now: Time,
        i: usize,
        root: PeerId,
        silent: Time,
        out: &mut Vec<Action>,
    ) {
        let x = &mut self.hierarchies[i];
        let h = x.id;
        out.push(Action::Send {
            to: root,
            msg: x.leave(),
        });
        x.parent = None;
        x.starved_since = None;
        x.lag_since = None;
        Self::exclude(x, root, Exclusion::Dead);
        if !x.blacklist.contains(&root) && x.blacklist.len() < 64 {
            x.blacklist.push(root);
        }
        x.best = None;
        x.joined_xid = None;
        x.join_pending = false;
        x.wants_lease = false;
        x.lease_asked_at = None;
        x.orphan_since.get_or_insert(now);
        out.push(Action::RootLost {
            h,
            silent,
            corrupt: false,
            stalled: true,
        });
        self.arm_claim(cfg, now, i, 0, out);
    }
}

/// How long a starving member waits on its root, which is also its parent, before calling it a
/// liar. The root answers a stall probe at once with what it holds (it pumps on every
/// `Request`), so in pipelined mode one unanswered probe (`stall_timeout`) is enough, and
/// `limit` (the starvation limit) in store-and-forward. Not so for a phone on a slow port
/// that is still receiving (`idle`, the time since any chunk of any hierarchy arrived, within
/// `stall_timeout`): its root's chunks queue behind every other stream's on the port, and
/// seconds without one are that backlog, no proof. Calling an honest root a liar for it
/// blacklisted the root for good and left two working roots of the hierarchy to the end
/// (`pfs simulate --swarm`). Such a phone leaves the silent root and re-joins for a fresh
/// placement (the starvation rule) and judges it once its port is idle: a liar costs it
/// what its other streams take, which its port had to carry anyway.
fn root_silence_limit(cfg: &Config, limit: Time, link_kbit: u32, idle: Time) -> Time {
    if cfg.mode == Mode::StoreAndForward {
        limit
    } else if link_kbit < cfg.leaf_below_kbit && idle <= cfg.stall_timeout {
        Time::MAX
    } else {
        cfg.stall_timeout
    }
}
