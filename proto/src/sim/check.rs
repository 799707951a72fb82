//! What is measured from the phones' state (roots, children, depth) and what every run must show ([`check`]).

use super::*;

impl Sim {
    /// Logs (at debug level) the phones on a parent-pointer cycle, for diagnosing the core.
    pub(super) fn log_cycle(&self, now: Time, start: usize, k: usize) {
        if !tracing::enabled!(tracing::Level::DEBUG) {
            return;
        }
        let mut cur = Some(PeerId(start as u32));
        for _ in 0..8 {
            let Some(x) = cur else { break };
            let hx = &self.phones[x.0 as usize].hierarchies[k];
            tracing::debug!(
                t = now, h = hx.id, phone = x.0, cut = self.cut[x.0 as usize], role = ?hx.role,
                verified = hx.verified, parent = ?hx.parent, xid = ?hx.joined_xid(),
                kids = ?hx.children().collect::<Vec<_>>(), "on a parent cycle"
            );
            cur = hx.parent;
        }
    }

    /// `phone`'s parent in hierarchy `h`, and whether it still needs one (it lacks chunks).
    fn link_in(&self, phone: u32, h: u32) -> (Option<PeerId>, bool) {
        self.phones[phone as usize]
            .hierarchies
            .iter()
            .find(|x| x.id == h)
            .map_or((None, false), |x| (x.parent, !x.done()))
    }

    /// `phone`'s parent in hierarchy `h`.
    pub(super) fn parent_in(&self, phone: u32, h: u32) -> Option<PeerId> {
        self.link_in(phone, h).0
    }

    /// An Accept just gave `to` a new parent in hierarchy `h`: if the walk up from it comes
    /// back to it, and every phone on the way still lacks chunks of the file, the phones now
    /// form a parent cycle that no data can enter (counted in `parent_cycles`, which fails
    /// the run, and logged). A phone holding the whole file keeps its parent only as history
    /// (both drivers close its stream, and it never asks its parent again; it feeds the
    /// phone below it on the loop), and a crashed phone's parent is no edge either.
    pub(super) fn check_cycle(&mut self, now: Time, to: u32, h: u32) {
        let (mut cur, mut live) = self.link_in(to, h);
        for _ in 0..self.phones.len() {
            match cur {
                Some(p) if p.0 == to => {
                    if live {
                        self.report.parent_cycles += 1;
                    }
                    let k = self.phones[to as usize]
                        .hierarchies
                        .iter()
                        .position(|x| x.id == h);
                    if let Some(k) = k {
                        self.log_cycle(now, to as usize, k);
                    }
                    return;
                }
                Some(p) if self.alive[p.0 as usize] => {
                    let (next, needs) = self.link_in(p.0, h);
                    live &= needs;
                    cur = next;
                }
                _ => return,
            }
        }
    }

    /// Counts roots per hierarchy, children per parent and tree depth from the phones' state.
    pub(super) fn sample(&mut self, now: Time, last: bool) {
        let hierarchies = self.cfg.models as usize * self.files;
        let mut roots = vec![0u32; hierarchies];
        for (i, phone) in self.phones.iter().enumerate() {
            if !self.alive[i] {
                continue;
            }
            for x in &phone.hierarchies {
                // A corrupt root rejected by its members, a liar and a hung root stay root in
                // their own minds; the one root of the phones that still work is what is
                // counted (a cut-off side is a partition, counted apart).
                let faulted = phone.corrupt || phone.liar.is_some() || self.frozen[i];
                if x.role == Role::Root && !faulted {
                    roots[x.id as usize] += 1;
                }
                let kids = x.children().filter(|&c| self.alive[c.0 as usize]).count() as u32;
                self.report.max_children = self.report.max_children.max(kids);
                if self.slow[i] && kids > 0 {
                    self.report.slow_phones_with_children += 1;
                }
            }
        }
        let most = roots.iter().copied().max().unwrap_or(0);
        if last {
            self.report.final_roots_max = most;
        }
        let (start, end) = self.partition;
        if start < end && !last && (start..end + SETTLE).contains(&now) {
            self.report.roots_max_partitioned = self.report.roots_max_partitioned.max(most);
        } else if now >= SAMPLE_EVERY {
            self.report.roots_max = self.report.roots_max.max(most);
        }
        // Depth: follow parent pointers (bounded, so a cycle would show as a huge depth).
        for k in 0..self.files {
            for i in 0..self.phones.len() {
                if !self.alive[i] {
                    continue;
                }
                let mut depth = 0u32;
                // A phone still without its manifest has only that hierarchy.
                let mut cur = self.phones[i].hierarchies.get(k).and_then(|x| x.parent);
                while let Some(p) = cur {
                    depth += 1;
                    if depth > DEPTH_WALK {
                        self.log_cycle(now, i, k);
                        break;
                    }
                    cur = self.phones[p.0 as usize]
                        .hierarchies
                        .get(k)
                        .and_then(|x| x.parent);
                }
                self.report.max_depth = self.report.max_depth.max(depth);
                if last {
                    self.report.final_max_depth = self.report.final_max_depth.max(depth);
                }
            }
        }
    }
}

/// How far [`Sim::sample`] follows parent pointers: deeper is a parent cycle.
const DEPTH_WALK: u32 = 4096;

/// What a run must show whatever its faults, as readable failures (empty: the run passed):
/// every phone installed or was faulted (none stuck), it ended before `max_sim_s`, nothing
/// corrupt was installed, outside partitions no hierarchy ever had two roots at once, and
/// no phones ever formed a parent cycle, even for a moment (counted when an Accept closes
/// one, and seen by the samples' bounded walk as a depth beyond [`DEPTH_WALK`]).
/// The phones' own invariants ([`Phone::invariants`]) are checked after every event by
/// [`run`] itself, which panics on the first one broken.
pub fn check(r: &Report) -> Vec<String> {
    let mut failures = Vec::new();
    let settled = r.completed + r.crashed + r.frozen + r.cut + r.liars;
    if settled < r.phones {
        failures.push(format!(
            "{} of {} phones neither installed nor faulted (stuck)",
            r.phones - settled,
            r.phones
        ));
    }
    if r.timed_out {
        failures.push(format!(
            "reached the virtual-time limit (--max-sim-s) with phones unsettled; the last \
             install was at {:.1} s",
            r.makespan_s
        ));
    }
    if r.corrupt_installs > 0 {
        failures.push(format!("{} corrupt installs", r.corrupt_installs));
    }
    if r.parent_cycles > 0 || r.max_depth > DEPTH_WALK {
        failures.push(format!(
            "{} parent cycles formed (max_depth {})",
            r.parent_cycles, r.max_depth
        ));
    }
    // Faults (a liar or corrupt root rejected, a root hung, crashed or cut off) make a second
    // root by design until the trees merge; at the end there must be one, and without faults
    // always.
    let faults = r.crashed
        + r.frozen
        + r.cut
        + r.liars
        + r.roots_rejected_corrupt
        + r.roots_rejected_stalled
        > 0;
    if r.final_roots_max > 1 || (r.roots_max > 1 && !faults) {
        failures.push(format!(
            "{} roots of one hierarchy at once ({} at the end)",
            r.roots_max, r.final_roots_max
        ));
    }
    failures
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run whose phones ever formed a parent cycle fails, even if every phone installed:
    /// `pfs simulate --phones 100 --corrupt-peers 2 --seed 8` ended with 100 installed,
    /// passed, and had held 98 phones of one file in a cycle for 20 minutes of virtual time.
    #[test]
    fn a_parent_cycle_fails_the_run() {
        let cfg = SimConfig {
            phones: 4,
            ..SimConfig::default()
        };
        let (mut sim, _) = Sim::build(&cfg);
        let h = sim.phones[0].hierarchies[0].id;
        let link = |sim: &mut Sim, child: usize, parent: u32| {
            sim.phones[child].hierarchies[0].parent = Some(PeerId(parent));
        };
        // 1 -> 2 -> 3 is a chain; 3 -> 1 closes it.
        link(&mut sim, 1, 2);
        link(&mut sim, 2, 3);
        sim.check_cycle(0, 2, h);
        assert_eq!(sim.report.parent_cycles, 0, "a chain is no cycle");
        link(&mut sim, 3, 1);
        sim.check_cycle(1, 3, h);
        assert_eq!(sim.report.parent_cycles, 1);
        sim.sample(2, false);
        assert_eq!(sim.report.max_depth, DEPTH_WALK + 1);
        // Through a phone that holds the whole file: its parent is history, no cycle counted.
        let x = &mut sim.phones[2].hierarchies[0];
        x.verified = x.chunks;
        sim.check_cycle(3, 3, h);
        assert_eq!(sim.report.parent_cycles, 1);
        // Every phone done, nothing else wrong: the cycle alone fails it.
        sim.report.completed = cfg.phones;
        let failures = check(&sim.finish());
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert!(failures[0].contains("1 parent cycles"), "{failures:?}");
        // Either sign alone is enough (a cycle some sample saw, or one an Accept made).
        let mut r = Sim::build(&cfg).0.finish();
        r.completed = cfg.phones;
        assert!(check(&r).is_empty());
        r.max_depth = DEPTH_WALK + 1;
        assert_eq!(check(&r).len(), 1);
        r.max_depth = 3;
        r.parent_cycles = 2;
        assert_eq!(check(&r).len(), 1);
    }
}
