//! The election: claim timers with back-off, deferral and guard, and becoming root.

use super::*;

/// Whether a claim heard before our claim timer fired keeps us from claiming: a higher tier,
/// or the same tier and at least our class (the strength's high bits: data held, then
/// `PROMPT`), whatever the random draw below them. Once we have claimed, full strengths decide.
///
/// The back-off orders claims by strength only when every phone starts together (boot). Phones
/// that learn of a file at different times (the manifest reaches depth 9 over 1-2 s) fire in
/// the order they started: comparing the draw as well, every phone whose draw beat all claims
/// it had heard claimed too (59 tentative claims for one file in a 1000-phone lab).
pub(super) fn suppresses(heard: Claim, me: Claim) -> bool {
    const CLASS: u64 = !(PROMPT - 1);
    heard > me || (heard.tier == me.tier && heard.strength & CLASS >= me.strength & CLASS)
}

/// How often one election waits again because its claim or guard timer fired late (see
/// [`Phone::claim_timer`], [`Phone::guard_timer`]); after that the phone acts anyway.
pub(crate) const MAX_LATE_WAITS: u8 = 4;

impl Hierarchy {
    /// Arms this election's next timer (`Claim` or `Guard`) at `at`, remembered as
    /// `election_due` so the timer can tell how late it fires.
    fn arm_election(&mut self, kind: TimerKind, at: Time, out: &mut Vec<Action>) {
        self.election_due = at;
        out.push(Action::Timer {
            h: self.id,
            kind,
            at,
        });
    }
}

impl Phone {
    /// Arms the claim timer; `listen` µs are added before the back-off (a member that lost
    /// its root first listens for one root advert interval, so a root that was only late, as
    /// on an overloaded host, is heard before anyone claims its place).
    pub(super) fn arm_claim(
        &mut self,
        cfg: &Config,
        now: Time,
        i: usize,
        listen: Time,
        out: &mut Vec<Action>,
    ) {
        self.arm_claim_at(cfg, now, i, listen, false, out);
    }

    /// [`Self::arm_claim`]; `at_once`: the claim timer fires now (the strength is drawn as
    /// usual). The claim's guard is `busy_claim_guard`; the boot election shortens it.
    pub(super) fn arm_claim_at(
        &mut self,
        cfg: &Config,
        now: Time,
        i: usize,
        listen: Time,
        at_once: bool,
        out: &mut Vec<Action>,
    ) {
        let x: f64 = self.rng.random_range(f64::EPSILON..=1.0);
        let xid: u32 = self.rng.random();
        let hier = &mut self.hierarchies[i];
        let (mut delay, mut strength) = claim_draw(x, cfg.claim_window, cfg.n_max, hier.verified);
        // A phone on a slow port would fetch the whole file through it and feed the tree at
        // its rate (a 2 Mbit/s root held a 100-phone site to 2.4 x the WAN limit in the
        // simulator): it claims one claim window later and weaker than any phone that is not
        // slow, so it becomes root only if no such phone claims (data held still counts first).
        let low = strength & 0xffff_ffff;
        strength &= !0xffff_ffff;
        if self.link_kbit < cfg.leaf_below_kbit {
            delay += cfg.claim_window;
            strength |= low >> 1;
        } else {
            strength |= PROMPT | (low >> 1);
        }
        hier.role = Role::Waiting;
        hier.guard = cfg.busy_claim_guard;
        hier.late_waits = 0;
        hier.me = Claim {
            tier: Tier::Tentative,
            strength,
            peer: self.id,
            xid,
        };
        hier.arm_election(
            TimerKind::Claim,
            if at_once { now } else { now + listen + delay },
            out,
        );
    }

    /// The claim timer: claim (broadcast, then the guard) unless suppressed or deferred.
    pub(super) fn claim_timer(&mut self, cfg: &Config, now: Time, i: usize, out: &mut Vec<Action>) {
        // A phone already root of a file it is still fetching defers its claim by one
        // claim window, weaker, as a slow phone does: it is the busiest phone of the
        // site (origin transfer, relaying to its children), so the last to hear other
        // claims (1000 lab phones: the manifest's root passed its guard on five files
        // 170-400 ms after others had become their roots), and roots spread over
        // phones spread the upload. It still becomes root if nobody else claims.
        let busy_root = self
            .hierarchies
            .iter()
            .enumerate()
            .any(|(j, y)| j != i && y.role == Role::Root && !y.done());
        let x = &mut self.hierarchies[i];
        if x.role != Role::Waiting || x.best.is_some_and(|b| suppresses(b, x.me)) {
            return; // suppressed: a claim at least as good was heard
        }
        if busy_root && x.me.strength & PROMPT != 0 {
            x.me.strength &= !PROMPT;
            x.arm_election(TimerKind::Claim, now + cfg.claim_window, out);
            return;
        }
        // Fired late: the loop was busy, and phones whose timers fell due meanwhile fire in
        // this same turn, none having heard the others (1000 lab phones: 66 claimed one file
        // in one turn, and their 66,000 broadcast copies then took longer than any guard to
        // be delivered). Draw the back-off afresh from now, so the claims spread out again.
        if now > x.election_due + cfg.busy_claim_guard / 2 && x.late_waits < MAX_LATE_WAITS {
            x.late_waits += 1;
            x.arm_election(
                TimerKind::Claim,
                now + self.rng.random_range(0..=cfg.claim_window),
                out,
            );
            return;
        }
        x.role = Role::Claimant;
        x.seq = 1;
        out.push(Action::Broadcast(x.advert(cfg.fanout)));
        let guard_end = now + x.guard;
        x.arm_election(TimerKind::Guard, guard_end, out);
    }

    /// The guard timer: a claimant no stronger claim or root was heard against becomes root.
    ///
    /// A guard is only as good as the listening done during it. A timer that fires more than
    /// half a guard late means the phone's loop was busy elsewhere: claims and adverts sent
    /// during the guard may still wait in its socket or its network queue (1000 lab phones
    /// on 2 cores: 28 phones passed their guards on one file in the same turn, none having
    /// heard the others or the root elected 350 ms before them). Such a phone listens one
    /// guard more, at most [`MAX_LATE_WAITS`] times, so a phone that is always late
    /// still claims in the end. On time, as on a real phone's own CPU, this never happens.
    pub(super) fn guard_timer(&mut self, cfg: &Config, now: Time, i: usize, out: &mut Vec<Action>) {
        let x = &mut self.hierarchies[i];
        if x.role != Role::Claimant || x.best.is_some_and(|b| b > x.me) {
            return;
        }
        if now > x.election_due + x.guard / 2 && x.late_waits < MAX_LATE_WAITS {
            x.late_waits += 1;
            let guard_end = now + x.guard;
            x.arm_election(TimerKind::Guard, guard_end, out);
            return;
        }
        self.become_root(cfg, now, i, out);
    }

    pub(super) fn become_root(&mut self, cfg: &Config, now: Time, i: usize, out: &mut Vec<Action>) {
        let id = self.id;
        let x = &mut self.hierarchies[i];
        let h = x.id;
        if let Some(old) = x.parent.take() {
            out.push(Action::Send {
                to: old,
                msg: x.leave(),
            });
        }
        x.role = Role::Root;
        x.me.tier = Tier::Fetching;
        x.refresh_strength();
        x.best = Some(x.me);
        x.children.clear();
        x.coordinator = Some(Box::new(Coordinator::new(id, cfg.fanout)));
        x.orphan_since = None;
        x.join_pending = false;
        x.joined_xid = Some(x.me.xid);
        x.depth = 0;
        x.seq += 1;
        out.push(Action::BecameRoot {
            h,
            xid: x.me.xid,
            serving: x.done(),
        });
        out.push(Action::Broadcast(x.advert(cfg.fanout)));
        out.push(Action::Timer {
            h,
            kind: TimerKind::Advert,
            at: now + cfg.advert_interval,
        });
        if !x.done() {
            out.push(Action::OriginOpen { h, fallback: false });
        }
    }
}
