//! The state machine's invariants, checked after every event.

use super::*;

impl Phone {
    /// The state machine's invariants, checked after every event by the simulator, by the
    /// engine's runtime in debug builds and by the fuzz target `phone_events`. `Err` names the
    /// first one broken (a bug in the core, never a property of the input).
    ///
    /// Per hierarchy: `verified <= chunks`; at most `fanout` children; a root has a
    /// coordinator and no parent, anything else no coordinator; a parent is never blacklisted
    /// and never this phone; nothing relayed beyond what is verified; at most one install,
    /// and only of a complete file; at most `fallback_slots` leases out.
    pub fn invariants(&self, cfg: &Config) -> Result<(), String> {
        if self.liar.is_some() {
            return Ok(()); // a hostile phone (fault injection) breaks the rules on purpose
        }
        for x in &self.hierarchies {
            let h = x.id;
            let fail = |what: String| Err(format!("phone {} hierarchy {h}: {what}", self.id));
            if x.verified > x.chunks {
                return fail(format!("verified {} > chunks {}", x.verified, x.chunks));
            }
            if x.children.len() > usize::from(cfg.fanout) {
                return fail(format!(
                    "{} children > fanout {}",
                    x.children.len(),
                    cfg.fanout
                ));
            }
            if x.role == Role::Root && (x.coordinator.is_none() || x.parent.is_some()) {
                return fail("a root without a coordinator, or with a parent".into());
            }
            if x.role != Role::Root && x.coordinator.is_some() {
                return fail(format!("{:?} holds a coordinator", x.role));
            }
            if let Some(p) = x.parent
                && (x.blacklist.contains(&p) || p == self.id)
            {
                return fail(format!("parent {p} is blacklisted or itself"));
            }
            if let Some(c) = x.children.iter().find(|c| c.relayed > x.verified) {
                return fail(format!(
                    "relayed {} to {} > verified {}",
                    c.relayed, c.peer, x.verified
                ));
            }
            if x.installs > 1 || (x.installs == 1 && !x.done()) {
                return fail(format!(
                    "{} installs, verified {}/{}",
                    x.installs, x.verified, x.chunks
                ));
            }
            if x.leases.len() > cfg.fallback_slots as usize {
                return fail(format!(
                    "{} leases > {}",
                    x.leases.len(),
                    cfg.fallback_slots
                ));
            }
        }
        Ok(())
    }
}
