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
                    if depth > 4096 {
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

/// Runs one simulation to completion (or `max_sim_s`).
/// What a run must show whatever its faults, as readable failures (empty: the run passed):
/// every phone installed or was faulted (none stuck), it ended before `max_sim_s`, nothing
/// corrupt was installed, and outside partitions no hierarchy ever had two roots at once.
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
        failures.push(format!("timed out at {:.1} s", r.makespan_s));
    }
    if r.corrupt_installs > 0 {
        failures.push(format!("{} corrupt installs", r.corrupt_installs));
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
