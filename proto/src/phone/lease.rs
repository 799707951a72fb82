//! Fallback leases: a member asks its root before fetching from the origin; the root grants at most K.

use super::*;

impl Phone {
    /// Asks the live root for a fallback lease (retried by the lease timer). Without a live
    /// root nothing is sent: a dead root grants nothing, and the member re-elects instead.
    pub(super) fn request_lease(
        &mut self,
        cfg: &Config,
        now: Time,
        i: usize,
        out: &mut Vec<Action>,
    ) {
        let me = self.id;
        let x = &mut self.hierarchies[i];
        let live = x.best.filter(|b| {
            b.tier >= Tier::Fetching
                && b.peer != me
                && now.saturating_sub(x.root_seen_at) <= cfg.root_timeout
        });
        let Some(root) = live else {
            x.wants_lease = false;
            return;
        };
        x.wants_lease = x.role != Role::Fallback;
        x.lease_asked_at.get_or_insert(now);
        let h = x.id;
        out.push(Action::Send {
            to: root.peer,
            msg: Msg::Lease {
                h,
                xid: root.xid,
                op: LeaseOp::Request,
            },
        });
        out.push(Action::Timer {
            h,
            kind: TimerKind::Lease,
            at: now + cfg.lease_renew,
        });
    }

    /// The lease timer: a requester asks again, a holder renews, an expired holder stops.
    pub(super) fn lease_timer(&mut self, cfg: &Config, now: Time, i: usize, out: &mut Vec<Action>) {
        let x = &mut self.hierarchies[i];
        match x.role {
            Role::Fallback if !x.done() => {
                if now >= x.lease_until {
                    // Not renewed in time (the root died or moved on): stop fetching, so a
                    // successor root's leases never add to ours at the origin.
                    let h = x.id;
                    x.lease_until = 0;
                    x.lease_asked_at = None;
                    if x.origin_open {
                        x.origin_open = false;
                        out.push(Action::OriginClose { h });
                    }
                    x.role = Role::Member;
                    x.orphan_since = Some(now);
                    self.rejoin(now, i, out);
                } else {
                    let (h, until) = (x.id, x.lease_until);
                    self.request_lease(cfg, now, i, out);
                    out.push(Action::Timer {
                        h,
                        kind: TimerKind::Lease,
                        at: (now + cfg.lease_renew).min(until),
                    });
                }
            }
            Role::Member if x.wants_lease && x.parent.is_none() && !x.done() => {
                self.request_lease(cfg, now, i, out);
            }
            _ => {
                x.wants_lease = false;
                x.lease_asked_at = None;
            }
        }
    }

    /// A lease message: the root grants, refuses or takes back; a member starts or renews.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn lease(
        &mut self,
        cfg: &Config,
        now: Time,
        i: usize,
        from: PeerId,
        xid: u32,
        op: LeaseOp,
        out: &mut Vec<Action>,
    ) {
        let x = &mut self.hierarchies[i];
        let h = x.id;
        match op {
            LeaseOp::Request if x.role == Role::Root && xid == x.me.xid => {
                x.leases.retain(|&(_, until)| until > now);
                // The root's record outlasts the holder's own view by one renewal interval.
                let until = now + cfg.lease_time + cfg.lease_renew;
                let granted = if let Some(l) = x.leases.iter_mut().find(|l| l.0 == from) {
                    l.1 = until;
                    true
                } else if x.leases.len() < cfg.fallback_slots as usize {
                    x.leases.push((from, until));
                    true
                } else {
                    false
                };
                assert!(x.leases.len() <= cfg.fallback_slots as usize);
                let op = if granted {
                    LeaseOp::Grant
                } else {
                    LeaseOp::Refuse
                };
                out.push(Action::Send {
                    to: from,
                    msg: Msg::Lease { h, xid, op },
                });
            }
            LeaseOp::Release if x.role == Role::Root && xid == x.me.xid => {
                x.leases.retain(|l| l.0 != from);
            }
            LeaseOp::Grant if x.best.is_some_and(|b| b.peer == from && b.xid == xid) => {
                let Some(asked) = x.lease_asked_at.take() else {
                    return; // a duplicate grant: the first one counted
                };
                if asked + cfg.lease_time <= now {
                    // Answers a request so old that the lease has already run out (found by
                    // `pfs simulate --swarm`: taking it meant falling back and stopping at
                    // once, thousands of times, while the root held the slot): give it back
                    // and ask afresh.
                    out.push(Action::Send {
                        to: from,
                        msg: Msg::Lease {
                            h,
                            xid,
                            op: LeaseOp::Release,
                        },
                    });
                    return;
                }
                match x.role {
                    Role::Member if x.wants_lease && x.parent.is_none() && !x.done() => {
                        x.wants_lease = false;
                        x.lease_until = asked + cfg.lease_time;
                        self.fallback(i, FallbackReason::NoPeer, out);
                        out.push(Action::Timer {
                            h,
                            kind: TimerKind::Lease,
                            at: (now + cfg.lease_renew).min(asked + cfg.lease_time),
                        });
                    }
                    Role::Fallback => x.lease_until = x.lease_until.max(asked + cfg.lease_time),
                    _ => {
                        // Granted but no longer needed (a parent turned up): give it back.
                        x.wants_lease = false;
                        out.push(Action::Send {
                            to: from,
                            msg: Msg::Lease {
                                h,
                                xid,
                                op: LeaseOp::Release,
                            },
                        });
                    }
                }
            }
            LeaseOp::Refuse if x.best.is_some_and(|b| b.peer == from && b.xid == xid) => {
                // The requests so far are answered: a later grant lasts from a later request
                // (the timer asks again). Without this a grant after a long run of refusals
                // was dated from the first request and had expired on arrival.
                x.lease_asked_at = None;
            }
            _ => {} // not for us
        }
    }

    pub(super) fn fallback(&mut self, i: usize, reason: FallbackReason, out: &mut Vec<Action>) {
        let x = &mut self.hierarchies[i];
        x.role = Role::Fallback;
        x.parent = None;
        x.join_pending = false;
        x.orphan_since = None;
        out.push(Action::Fallback { h: x.id, reason });
        if !x.done() {
            out.push(Action::OriginOpen {
                h: x.id,
                fallback: true,
            });
        }
    }
}
