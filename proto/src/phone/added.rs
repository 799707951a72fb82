//! Hierarchies added after boot (the load's files, known once the manifest's hierarchy
//! delivered and the driver verified the manifest), and how every hierarchy starts.

use super::*;

impl Hierarchy {
    pub(super) fn new(id: PeerId, s: &HierarchySpec) -> Hierarchy {
        Hierarchy {
            id: s.id,
            chunks: s.chunks,
            verified: 0,
            role: Role::Waiting,
            parent: None,
            depth: 0,
            children: Vec::new(),
            me: Claim {
                tier: Tier::Tentative,
                strength: 0,
                peer: id,
                xid: 0,
            },
            best: None,
            root_seen_at: 0,
            seq: 0,
            joined_xid: None,
            join_pending: false,
            join_tries: 0,
            orphan_since: None,
            lag_since: None,
            last_rx: 0,
            last_progress: 0,
            starved_since: None,
            starved_root_mark: 0,
            guard: 0,
            election_due: 0,
            late_waits: 0,
            root_verified: 0,
            owed_since: None,
            excludes: Excludes::default(),
            blacklist: Vec::new(),
            coordinator: None,
            origin_open: false,
            last_origin_rx: 0,
            leases: Vec::new(),
            wants_lease: false,
            lease_until: 0,
            lease_asked_at: None,
            installs: 0,
            lies: false,
            trickle_at: 0,
        }
    }
}

impl Phone {
    /// Adds hierarchies (the load's files, known once the manifest hierarchy delivered and
    /// the driver verified the manifest). They start at the next [`Event::Added`] (or at
    /// `Boot`), which the driver queues after the current actions (no re-entrancy). Ids
    /// already present are skipped.
    pub fn add_hierarchies(&mut self, specs: &[HierarchySpec]) {
        for s in specs {
            if self.index(s.id).is_none() {
                self.hierarchies.push(Hierarchy::new(self.id, s));
            }
        }
    }

    /// Starts every hierarchy not started yet: a claim timer each (or, traditional, the next
    /// origin fetch).
    pub(super) fn start_added(
        &mut self,
        cfg: &Config,
        now: Time,
        late: bool,
        out: &mut Vec<Action>,
    ) {
        // Traditional phones fetch one file after another: the next starts now only if
        // every earlier one is done (otherwise when the open one completes).
        let idle = self.hierarchies[..self.started].iter().all(Hierarchy::done);
        // The largest new file leads: the root of an earlier hierarchy (the manifest's, which
        // it fetched first) claims it at once, so the WAN carries firmware from then on while
        // the manifest still spreads. Every other phone expects that root and listens for a
        // confirmed root's advert interval before its own back-off. The other files are
        // elected as usual (their roots stay spread over the phones), after a listen, since
        // adverts of roots elected before this phone knew the keys went unheard. A root
        // adverts every `advert_interval` until it confirms (one root advert interval after
        // its election), then every `root_advert_interval`. So a phone that learns the files
        // within a root advert interval of its boot, while its manifest's root has not
        // confirmed, hears any root of theirs in two advert intervals; any other phone listens
        // a confirmed root's whole interval. (Shorter: 30 late phones per file claimed roots
        // confirmed a second before, with the manifest 2 s deep into a 1000-phone lab. Longer
        // for everyone: the default lab, whose WAN limit is 2.6 s, went 1.18 -> 1.49 x.)
        let site_settled = self.hierarchies[..self.started]
            .iter()
            .any(|x| x.best.is_some_and(|b| b.tier == Tier::Confirmed));
        let long_listen =
            site_settled || now.saturating_sub(self.booted_at) > cfg.root_advert_interval;
        let lead = (self.started..self.hierarchies.len())
            .max_by_key(|&i| (self.hierarchies[i].chunks, std::cmp::Reverse(i)));
        let leader = late
            && self.hierarchies[..self.started]
                .iter()
                .any(|x| x.role == Role::Root);
        for i in self.started..self.hierarchies.len() {
            if cfg.mode == Mode::Traditional {
                self.hierarchies[i].role = Role::Traditional;
                continue;
            }
            let listen = match (late, lead == Some(i) || long_listen) {
                (false, _) => 0,
                (true, true) => cfg.root_advert_interval + cfg.advert_interval,
                (true, false) => 2 * cfg.advert_interval + cfg.claim_guard,
            };
            // Only the boot election (every phone idle, starting together) and the lead its
            // leader claims at once keep the short guard; an election while the manifest and
            // the lead's chunks flood the LAN waits `busy_claim_guard` (see Config).
            let at_once = leader && lead == Some(i);
            let guard = if !late || at_once {
                cfg.claim_guard
            } else {
                cfg.busy_claim_guard
            };
            self.hierarchies[i].orphan_since = Some(now);
            self.arm_claim_at(cfg, now, i, listen, at_once, out);
            self.hierarchies[i].guard = guard;
        }
        self.started = self.hierarchies.len();
        if cfg.mode == Mode::Traditional && idle {
            self.open_next_traditional(out);
        }
    }
}
