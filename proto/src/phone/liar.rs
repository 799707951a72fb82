//! A hostile phone (fault injection): claims root with the strongest advert, takes every joiner, sends nothing or a trickle.

use super::*;

impl Phone {
    /// A liar powers on already "root" of everything, with the strongest claim there is.
    pub(super) fn liar_boot(&mut self, cfg: &Config, now: Time, kind: Liar, out: &mut Vec<Action>) {
        self.liar_start(cfg, now, kind, out);
        out.push(Action::Timer {
            h: 0,
            kind: TimerKind::Watchdog,
            at: now + cfg.watchdog,
        });
    }

    /// Lies about every hierarchy not started yet (at boot, and those added later).
    pub(super) fn liar_start(
        &mut self,
        cfg: &Config,
        now: Time,
        kind: Liar,
        out: &mut Vec<Action>,
    ) {
        for i in self.started..self.hierarchies.len() {
            let xid: u32 = self.rng.random();
            let x = &mut self.hierarchies[i];
            x.role = Role::Root;
            x.lies = true;
            x.me = Claim {
                tier: Tier::Confirmed,
                strength: u64::MAX,
                peer: self.id,
                xid,
            };
            x.best = Some(x.me);
            x.joined_xid = Some(xid);
            x.seq = 1;
            out.push(Action::Broadcast(x.advert(cfg.fanout)));
            out.push(Action::Timer {
                h: x.id,
                kind: TimerKind::Advert,
                at: now + cfg.advert_interval,
            });
            if kind == Liar::Trickle && !x.done() {
                out.push(Action::OriginOpen {
                    h: x.id,
                    fallback: false,
                });
            }
        }
        self.started = self.hierarchies.len();
    }

    /// A liar answers every join with itself as the parent, takes every child, and ignores
    /// everything else (adverts, leases: it never steps down and never grants).
    pub(super) fn liar_recv(&mut self, i: usize, from: PeerId, msg: Msg, out: &mut Vec<Action>) {
        let me = self.id;
        let x = &mut self.hierarchies[i];
        match msg {
            Msg::Join { h, xid, .. } if xid == x.me.xid => out.push(Action::Send {
                to: from,
                msg: Msg::Accept {
                    h,
                    xid,
                    parent: me,
                    depth: 1,
                },
            }),
            Msg::Request {
                from: start, xid, ..
            } => {
                if let Some(c) = x.children.iter_mut().find(|c| c.peer == from) {
                    c.next = c.next.max(start);
                } else if x.children.len() < LIAR_MAX_CHILDREN {
                    x.children.push(Child {
                        peer: from,
                        next: start,
                        relayed: 0,
                        xid,
                    });
                }
            }
            Msg::Leave { .. } => x.children.retain(|c| c.peer != from),
            _ => {}
        }
    }

    /// A trickling liar sends each child one verified chunk per [`LIAR_TRICKLE`], claiming
    /// to hold the whole file.
    pub(super) fn liar_watchdog(&mut self, now: Time, out: &mut Vec<Action>) {
        if self.liar != Some(Liar::Trickle) {
            return;
        }
        for x in &mut self.hierarchies {
            if now < x.trickle_at {
                continue;
            }
            x.trickle_at = now + LIAR_TRICKLE;
            for c in &mut x.children {
                if c.next < x.verified {
                    out.push(Action::Send {
                        to: c.peer,
                        msg: Msg::Chunk {
                            h: x.id,
                            index: c.next,
                            have: x.chunks,
                            ok: true,
                        },
                    });
                    c.next += 1;
                    c.relayed = c.next;
                }
            }
        }
    }
}
