//! Breadth-first placement of joiners, run by the root of a hierarchy.
//!
//! The root sees every `Join`; it answers with a parent: the shallowest parent-capable member
//! with a free slot (join order breaks ties; a leaf-only joiner gets the deepest instead),
//! never one the joiner excludes, never one of the joiner's own descendants (a re-attaching
//! phone keeps its subtree). Invariant: no member is given more than `fanout` children.

use std::collections::{BTreeSet, HashMap};

pub use crate::ids::PeerId;

#[derive(Debug, Clone)]
struct Member {
    parent: Option<PeerId>,
    depth: u8,
    /// Children as placed by this coordinator (a moved member keeps them).
    kids: Vec<PeerId>,
    capable: bool,
    /// Excluded by a joiner as slow (or full: its `Reject`): offered only when no other
    /// member has room. A joiner's exclusion is its own view; taken as final, every stale
    /// placement under faults took a healthy parent out for good, the root ran out of places
    /// and the orphans fell back to the origin one after another (`pfs lab`, issue 14's
    /// plan, seed 8: 4710 rejects, 40 fallbacks).
    suspect: bool,
    /// Position in `open` while it has free slots.
    order: u64,
}

/// Why a peer was excluded by a joiner; the discriminant is its code on the wire (the `Join`'s
/// `exclude_reason`, docs/protocol.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exclusion {
    /// Connection lost or silent: its slot at its parent is freed and it gets no children
    /// until it joins again.
    Dead = 0,
    /// Sent a chunk that failed its digest: never a parent again.
    Corrupt = 1,
    /// Too slow for its children (or full: its `Reject`): kept, and gets new children only
    /// when no other member has room.
    Slow = 2,
}

impl Exclusion {
    /// The reason a wire code stands for; `None` for a code no version defines.
    pub fn from_code(code: u8) -> Option<Exclusion> {
        match code {
            0 => Some(Exclusion::Dead),
            1 => Some(Exclusion::Corrupt),
            2 => Some(Exclusion::Slow),
            _ => None,
        }
    }
}

#[derive(Debug)]
pub struct Coordinator {
    root: PeerId,
    fanout: u8,
    members: HashMap<PeerId, Member>,
    /// (depth, order, peer) of capable members with free slots.
    open: BTreeSet<(u8, u64, PeerId)>,
    next_order: u64,
    /// Members excluded as dead, each with the parent it had: it is offered to nobody, but
    /// its children still point at it, and where it hangs is still where it hung (a silent
    /// phone excluded by one joiner is often alive, attached and feeding its other
    /// children). The walk up from its descendants goes on through here, so none of its
    /// ancestors is ever placed under one of them. Dropping the link (the member simply
    /// removed) made parent cycles: in `pfs simulate --phones 100 --corrupt-peers 2 --seed
    /// 8`, 40 excluded its starving parent 60 as dead, and the root then placed 94 under 50,
    /// a descendant of 60, which itself hung below 94 (98 phones of a file in a cycle, 194 x
    /// the limit).
    gone: HashMap<PeerId, Option<PeerId>>,
    /// Members (or members excluded as dead) some joiner excluded as corrupt: never a parent
    /// again, and never the root's own child. The root's `fanout` slots are the tree's only
    /// inlet: two corrupt peers in them fed nobody, and every other phone of the file starved
    /// (`pfs simulate --phones 100 --corrupt-peers 2 --seed 8`: 19 fallbacks, 6.5 x the limit).
    corrupt: BTreeSet<PeerId>,
    /// The root's own children taken out of its slots (excluded as corrupt, or as dead by a
    /// phone below them), until the root collects them ([`Coordinator::take_evicted`]) to
    /// stop feeding them and tell them to re-attach.
    evicted: Vec<PeerId>,
}

impl Coordinator {
    pub fn new(root: PeerId, fanout: u8) -> Self {
        assert!(fanout > 0, "fanout must be positive");
        let mut c = Coordinator {
            root,
            fanout,
            members: HashMap::new(),
            open: BTreeSet::new(),
            next_order: 0,
            gone: HashMap::new(),
            corrupt: BTreeSet::new(),
            evicted: Vec::new(),
        };
        c.members.insert(
            root,
            Member {
                parent: None,
                depth: 0,
                kids: Vec::new(),
                capable: true,
                suspect: false,
                order: 0,
            },
        );
        c.open.insert((0, 0, root));
        c.next_order = 1;
        c
    }

    pub fn members(&self) -> usize {
        self.members.len()
    }

    /// Applies a joiner's exclusions, then places it. Returns (parent, depth of the joiner), or
    /// `None` when no member can take it now.
    pub fn join(
        &mut self,
        joiner: PeerId,
        max_children: u8,
        exclude: &[(PeerId, Exclusion)],
    ) -> Option<(PeerId, u8)> {
        if joiner == self.root {
            return None;
        }
        let parent_of_joiner = self.members.get(&joiner).and_then(|m| m.parent);
        // The joiner left its parent as dead: the slot that frees, at that parent's own parent,
        // is the last one to offer it. A phone starves when anything above it stops, and a
        // parent starving below a hung phone looks dead to its child: in the plan of the
        // comment below with `--max-site-phones 100000`, 83 hung at 12.3 s; 103, starving
        // below 83's child 1, left 1 at 20.0 s and was placed in 1's slot under 83, and 35,
        // starving below 103, was placed under 83 next (2.08 x the limit). The root's own
        // slots are exempt: the root is alive, it answers.
        let above_dead_parent = parent_of_joiner
            .filter(|&p| exclude.contains(&(p, Exclusion::Dead)))
            .and_then(|p| self.parent_of(p))
            .filter(|&g| g != self.root);
        self.apply_exclusions(max_children, parent_of_joiner, exclude);
        // Leaving the old parent frees its slot.
        if let Some(old) = self.members.get(&joiner).and_then(|m| m.parent) {
            self.release_slot(old, joiner);
        }
        let excluded = |p: PeerId| exclude.iter().any(|&(e, _)| e == p);
        let corrupt = self.corrupt.contains(&joiner);
        let capable = max_children > 0 && !corrupt;
        // A joiner that may take children gets the shallowest free slot; a leaf-only one the
        // deepest: a leaf in a shallow slot narrows the tree's trunk for good. In `pfs
        // simulate --seed 10 --phones 123 --models 2 --wan-rtt-ms 0 --freeze-fraction 0.02
        // --slow-fraction 0.05 --corrupt-peers 2 --max-site-phones 123`, two slow leaves took
        // a slot of the root and one of its other child, a corrupt peer the last one there:
        // every other member hung below the corrupt one's single child, which, once it
        // excluded it, found free slots only in its own subtree and was refused until it fell
        // back; its subtree starved after it (17 fallbacks, 3.4 x the limit).
        let unusable = |peer: PeerId| {
            peer == joiner
                || excluded(peer)
                || self.is_descendant(peer, joiner)
                || (corrupt && peer == self.root)
        };
        let pick_with = |avoid: Option<PeerId>| {
            let usable =
                |&&(_, _, peer): &&(u8, u64, PeerId)| !unusable(peer) && avoid != Some(peer);
            if capable {
                self.open.iter().find(usable)
            } else {
                self.open.iter().rev().find(usable)
            }
            .copied()
        };
        // The dead parent's parent only when nothing else has room (refused, the joiner would
        // ask again with the same exclusion and be refused again until it fell back).
        let pick = pick_with(above_dead_parent).or_else(|| pick_with(None));
        let (depth, order, parent) = pick.or_else(|| self.reopen_suspect(joiner, exclude))?;
        let fills_last_slot = self.members[&parent].kids.len() + 1 >= usize::from(self.fanout)
            && self.open.len() <= 1;
        if !capable && fills_last_slot {
            // The last free slot is kept for a joiner that can take children: a leaf in it
            // would leave nobody to place anyone under. Found twice: by `pfs simulate
            // --swarm` (two slow phones under the root, 193 of 200 stuck) and by the chaos
            // plans (each member then fell back, K at a time: 339 s and 4.4 loads over the
            // WAN for a 13 s limit). The leaf asks again; a capable joiner opens two slots.
            return None;
        }
        Some((parent, self.attach(joiner, (depth, order, parent), capable)))
    }

    /// Applies a joiner's exclusions (`parent_of_joiner`: where it hung until now).
    fn apply_exclusions(
        &mut self,
        max_children: u8,
        parent_of_joiner: Option<PeerId>,
        exclude: &[(PeerId, Exclusion)],
    ) {
        for &(peer, why) in exclude {
            // The joiner left its own parent, a child of the root, as dead (it starved under
            // it, or lost its stream): that root slot is freed for the next joiner, so the root
            // must stop streaming to the silent child too, or it refuses the Request of the
            // phone it places there (a hung child, sockets open, holds its stream until the
            // transport gives up). Only the joiner's current parent: a `Join` repeats older
            // exclusions, and a peer left long ago may since have moved under the root, alive.
            // Only a joiner that may take children: a leaf-only one is on a slow port, whose
            // backlog starves it behind a parent that sends on time (seed 57 of the plan in
            // `the_root_drops_a_child_reported_dead_and_feeds_the_reporter`: a 2 Mbit/s leaf got
            // its chunks 3.7 s late, and evicting its live parent with its subtree sent 34
            // phones to the origin).
            let evict = why == Exclusion::Dead
                && max_children > 0
                && parent_of_joiner == Some(peer)
                && self.members.get(&peer).and_then(|m| m.parent) == Some(self.root);
            self.exclude(peer, why);
            if evict {
                self.evicted.push(peer);
            }
        }
        if exclude.iter().any(|&(_, why)| why == Exclusion::Corrupt) {
            self.evict_corrupt_root_kids();
        }
    }

    /// Hangs `joiner` under the open slot `(depth, order, parent)`; returns its depth.
    fn attach(
        &mut self,
        joiner: PeerId,
        (depth, order, parent): (u8, u64, PeerId),
        capable: bool,
    ) -> u8 {
        let p = self.members.get_mut(&parent).expect("open members exist");
        p.kids.push(joiner);
        debug_assert!(p.kids.len() <= usize::from(self.fanout));
        if p.kids.len() >= usize::from(self.fanout) {
            self.open.remove(&(depth, order, parent));
        }
        let child_depth = depth.saturating_add(1);
        let child_order = self.next_order;
        self.next_order += 1;
        // Back from the dead: it takes up the children that still point at it.
        let kids = if self.gone.remove(&joiner).is_some() {
            self.orphans_of(joiner)
        } else {
            Vec::new()
        };
        let entry = self.members.entry(joiner).or_insert(Member {
            parent: None,
            depth: child_depth,
            kids,
            capable,
            suspect: false,
            order: child_order,
        });
        // A re-attaching member keeps its children; re-key it in `open` at its new depth.
        self.open.remove(&(entry.depth, entry.order, joiner));
        entry.parent = Some(parent);
        entry.depth = child_depth;
        entry.capable &= capable;
        entry.suspect = false; // it joined: alive
        entry.order = child_order;
        if entry.capable && entry.kids.len() < usize::from(self.fanout) {
            self.open.insert((child_depth, child_order, joiner));
        }
        self.reindex_subtree(joiner);
        child_depth
    }

    /// A member that moved keeps its subtree: give its descendants their new depths, so the
    /// shallowest-first placement keeps seeing the real shape of the tree. Cost: subtree size.
    fn reindex_subtree(&mut self, top: PeerId) {
        let mut stack: Vec<PeerId> = self
            .members
            .get(&top)
            .map(|m| m.kids.clone())
            .unwrap_or_default();
        let mut visited = 0usize;
        while let Some(node) = stack.pop() {
            visited += 1;
            if visited > self.members.len() {
                break; // a cycle cannot exist (join refuses descendants); bound it anyway
            }
            let Some(parent_depth) = self
                .members
                .get(&node)
                .and_then(|m| m.parent)
                .and_then(|p| self.members.get(&p))
                .map(|p| p.depth)
            else {
                continue;
            };
            let fanout = self.fanout;
            let m = self
                .members
                .get_mut(&node)
                .expect("listed kids are members");
            let new_depth = parent_depth.saturating_add(1);
            if m.depth == new_depth {
                continue;
            }
            let was_open = self.open.remove(&(m.depth, m.order, node));
            m.depth = new_depth;
            // A suspect (excluded as slow) stays out of `open` while it moves with its parent.
            if was_open || (m.capable && !m.suspect && m.kids.len() < usize::from(fanout)) {
                self.open.insert((new_depth, m.order, node));
            }
            stack.extend(m.kids.iter().copied());
        }
    }

    fn exclude(&mut self, peer: PeerId, why: Exclusion) {
        if peer == self.root {
            return;
        }
        let Some(m) = self.members.get_mut(&peer) else {
            if why == Exclusion::Corrupt && self.gone.contains_key(&peer) {
                self.corrupt.insert(peer);
            }
            return;
        };
        self.open.remove(&(m.depth, m.order, peer));
        if why == Exclusion::Corrupt {
            m.capable = false;
            self.corrupt.insert(peer);
            return;
        }
        if why == Exclusion::Slow {
            m.suspect = true;
            return;
        }
        // Dead: offered to nobody until it joins again (offering it again made parent cycles
        // in `pfs simulate --swarm`), its slot at its parent freed. Its link up is kept in
        // `gone` for the descendant walk.
        let parent = m.parent;
        self.members.remove(&peer);
        self.gone.insert(peer, parent);
        if let Some(p) = parent {
            self.release_slot(p, peer);
        }
    }

    /// Whether some joiner excluded `peer` as corrupt.
    pub fn is_corrupt(&self, peer: PeerId) -> bool {
        self.corrupt.contains(&peer)
    }

    /// The root's own children excluded as corrupt leave its slots (before the joiner that
    /// reported them is placed, so it can take one); listed in `evicted` for the root.
    fn evict_corrupt_root_kids(&mut self) {
        let root = self.root;
        let bad: Vec<PeerId> = self.members[&root]
            .kids
            .iter()
            .copied()
            .filter(|k| self.corrupt.contains(k))
            .collect();
        for k in bad {
            self.release_slot(root, k);
            self.evicted.push(k);
        }
    }

    /// The root's children taken out of its slots since the last call, as corrupt or dead:
    /// the root stops feeding them and tells them to re-attach (a corrupt one is placed below
    /// another member as a leaf; one that was alive after all, as any joiner).
    pub fn take_evicted(&mut self) -> Vec<PeerId> {
        std::mem::take(&mut self.evicted)
    }

    /// The members that still point at `peer` as their parent (at most `fanout`: nobody is
    /// placed under a dead member, so no more than it had). Cost: the member count, once per
    /// return of a member excluded as dead.
    fn orphans_of(&self, peer: PeerId) -> Vec<PeerId> {
        let mut kids: Vec<(u64, PeerId)> = self
            .members
            .iter()
            .filter(|(_, m)| m.parent == Some(peer))
            .map(|(&id, m)| (m.order, id))
            .collect();
        kids.sort_unstable();
        kids.into_iter()
            .map(|(_, id)| id)
            .take(usize::from(self.fanout))
            .collect()
    }

    /// The parent `node` has as far as this coordinator knows: a member's, or the one a
    /// member excluded as dead had.
    fn parent_of(&self, node: PeerId) -> Option<PeerId> {
        match self.members.get(&node) {
            Some(m) => m.parent,
            None => self.gone.get(&node).copied().flatten(),
        }
    }

    /// No member in good standing has room for `joiner`: the shallowest suspect with room
    /// that the joiner does not exclude itself (nor one of its descendants) is offered again,
    /// as (depth, order, peer) back in `open`.
    fn reopen_suspect(
        &mut self,
        joiner: PeerId,
        exclude: &[(PeerId, Exclusion)],
    ) -> Option<(u8, u64, PeerId)> {
        let fanout = usize::from(self.fanout);
        let pick = self
            .members
            .iter()
            .filter(|&(&id, m)| m.suspect && m.capable && m.kids.len() < fanout && id != joiner)
            .filter(|&(&id, _)| !exclude.iter().any(|&(e, _)| e == id))
            .map(|(&id, m)| (m.depth, m.order, id))
            .filter(|&(_, _, id)| !self.is_descendant(id, joiner))
            .min()?;
        if let Some(m) = self.members.get_mut(&pick.2) {
            m.suspect = false;
        }
        self.open.insert(pick);
        Some(pick)
    }

    /// `child` leaves `parent`: the parent's slot opens again (if it may still take children).
    fn release_slot(&mut self, parent: PeerId, child: PeerId) {
        let fanout = usize::from(self.fanout);
        if let Some(p) = self.members.get_mut(&parent) {
            p.kids.retain(|&k| k != child);
            if p.capable && !p.suspect && p.kids.len() < fanout {
                self.open.insert((p.depth, p.order, parent));
            }
        }
    }

    /// The placement's invariants (checked by tests and the fuzz target `tree`): no member has
    /// more than `fanout` children; the root has no parent; parent pointers form no cycle;
    /// a member's listed children point back at it; `open` holds exactly the capable members
    /// with a free slot, under their current depth and order. `Err` names the first broken.
    pub fn invariants(&self) -> Result<(), String> {
        let fanout = usize::from(self.fanout);
        if self
            .members
            .get(&self.root)
            .is_none_or(|r| r.parent.is_some())
        {
            return Err("the root is missing or has a parent".into());
        }
        for (&id, m) in &self.members {
            if m.kids.len() > fanout {
                return Err(format!(
                    "{id} has {} children > fanout {fanout}",
                    m.kids.len()
                ));
            }
            if let Some(&k) = m
                .kids
                .iter()
                .find(|&&k| self.members.get(&k).is_some_and(|c| c.parent != Some(id)))
            {
                return Err(format!(
                    "{id} lists {k} as a child, but {k} has another parent"
                ));
            }
            // A walk up, through members excluded as dead, ends at the root or at a peer
            // never placed: never loops.
            let mut cur = m.parent;
            let mut steps = 0;
            while let Some(p) = cur {
                steps += 1;
                if steps > self.members.len() + self.gone.len() {
                    return Err(format!("{id} is on a parent cycle"));
                }
                cur = self.parent_of(p);
            }
            let should_be_open = m.capable && !m.suspect && m.kids.len() < fanout;
            if should_be_open != self.open.contains(&(m.depth, m.order, id)) {
                return Err(format!(
                    "{id}: open set disagrees (capable {}, suspect {}, {} kids)",
                    m.capable,
                    m.suspect,
                    m.kids.len()
                ));
            }
        }
        if self.open.len() > self.members.len() {
            return Err("open set holds non-members".into());
        }
        Ok(())
    }

    /// Whether `node` lies in the subtree of `ancestor`, as far as this coordinator knows:
    /// the walk up goes on through members excluded as dead (see `gone`).
    fn is_descendant(&self, node: PeerId, ancestor: PeerId) -> bool {
        let mut cur = Some(node);
        // Bounded walk: a path visits each peer at most once unless there is a cycle, which
        // `join` prevents; the bound makes even that case terminate (answering "descendant").
        for _ in 0..=self.members.len() + self.gone.len() {
            match cur {
                Some(n) if n == ancestor => return true,
                Some(n) => cur = self.parent_of(n),
                None => return false,
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Coordinator::join` with peers by number.
    fn join(c: &mut Coordinator, j: u32, max: u8, ex: &[(u32, Exclusion)]) -> Option<(u32, u8)> {
        let ex: Vec<_> = ex.iter().map(|&(p, why)| (PeerId(p), why)).collect();
        c.join(PeerId(j), max, &ex).map(|(p, d)| (p.0, d))
    }

    #[test]
    fn breadth_first_binary_tree() {
        let mut c = Coordinator::new(PeerId(0), 2);
        let placed: Vec<_> = (1..=6).map(|j| join(&mut c, j, 2, &[]).unwrap()).collect();
        c.invariants().unwrap();
        assert_eq!(placed, vec![(0, 1), (0, 1), (1, 2), (1, 2), (2, 2), (2, 2)]);
        assert_eq!(join(&mut c, 7, 2, &[]), Some((3, 3)));
    }

    #[test]
    fn leaf_only_members_take_no_children() {
        let mut c = Coordinator::new(PeerId(0), 2);
        assert_eq!(join(&mut c, 1, 0, &[]), Some((0, 1)));
        assert_eq!(join(&mut c, 2, 2, &[]), Some((0, 1)));
        assert_eq!(join(&mut c, 3, 2, &[]), Some((2, 2)), "1 is leaf-only");
    }

    #[test]
    fn leaf_only_joiners_take_the_deepest_free_slot() {
        // Regression (the plan in `Coordinator::join`, seed 10): leaves in the root's slots
        // left one narrow trunk, and its cut left a whole subtree with nowhere to go.
        let mut c = Coordinator::new(PeerId(0), 2);
        assert_eq!(join(&mut c, 1, 2, &[]), Some((0, 1)));
        assert_eq!(join(&mut c, 2, 0, &[]), Some((1, 2)), "not the root's slot");
        assert_eq!(join(&mut c, 3, 2, &[]), Some((0, 1)));
        assert_eq!(join(&mut c, 4, 0, &[]), Some((3, 2)), "deepest, latest");
        assert_eq!(join(&mut c, 5, 2, &[]), Some((1, 2)));
        c.invariants().unwrap();
    }

    #[test]
    fn a_joiner_leaving_its_parent_dead_is_not_placed_under_the_parents_parent() {
        let mut c = Coordinator::new(PeerId(0), 2);
        for j in 1..=14 {
            join(&mut c, j, 2, &[]);
        }
        assert_eq!(join(&mut c, 15, 2, &[]), Some((7, 4)));
        // 15 starved under 7 (below 3, hung): 7's slot at 3 is free, and the shallowest.
        assert_eq!(join(&mut c, 15, 2, &[(7, Exclusion::Dead)]), Some((8, 4)));
        // When it alone has room, there rather than nowhere (a chain: 0 -> 1 -> 2 -> 3).
        let mut c = Coordinator::new(PeerId(0), 1);
        for j in 1..=3 {
            join(&mut c, j, 1, &[]);
        }
        assert_eq!(join(&mut c, 3, 1, &[(2, Exclusion::Dead)]), Some((1, 2)));
        // Below a child of the root, the root's freed slot is offered as any other.
        let mut c = Coordinator::new(PeerId(0), 2);
        for j in 1..=4 {
            join(&mut c, j, 2, &[]);
        }
        assert_eq!(join(&mut c, 3, 2, &[(1, Exclusion::Dead)]), Some((0, 1)));
        c.invariants().unwrap();
    }

    #[test]
    fn leaves_never_take_the_last_free_slot() {
        // Regression (`pfs simulate --phones 200 --slow-fraction 0.1 --seed
        // 15808194165533529868`): two slow phones under the root blocked every later join.
        let mut c = Coordinator::new(PeerId(0), 2);
        assert_eq!(join(&mut c, 1, 0, &[]), Some((0, 1)));
        assert_eq!(
            join(&mut c, 2, 0, &[]),
            None,
            "the root's last slot is kept"
        );
        assert_eq!(join(&mut c, 3, 2, &[]), Some((0, 1)));
        assert_eq!(
            join(&mut c, 2, 0, &[]),
            Some((3, 2)),
            "a capable member opened slots"
        );
        assert_eq!(join(&mut c, 4, 2, &[]), Some((3, 2)));
    }

    #[test]
    fn dead_parent_frees_and_never_reused_and_no_cycles() {
        let mut c = Coordinator::new(PeerId(0), 2);
        for j in 1..=6 {
            join(&mut c, j, 2, &[]);
        }
        // 3 (child of 1) loses 1; it must not be placed under itself or its own children.
        let (p, _) = join(&mut c, 3, 2, &[(1, Exclusion::Dead)]).unwrap();
        assert!(p != 1 && p != 3);
        for _ in 0..20 {
            let (p, _) = join(&mut c, 100, 2, &[]).unwrap();
            assert_ne!(p, 1);
            c.exclude(PeerId(100), Exclusion::Dead);
        }
    }

    /// An exclusion is one joiner's view: with no other member left with room, a member
    /// excluded as slow (or full) by someone else is offered again rather than nobody, and
    /// never to the joiner that excluded it. A corrupt one never is.
    #[test]
    fn excluded_members_are_a_last_resort_not_lost() {
        let mut c = Coordinator::new(PeerId(0), 1);
        assert_eq!(join(&mut c, 1, 1, &[]), Some((0, 1)));
        assert_eq!(join(&mut c, 2, 1, &[(1, Exclusion::Slow)]), None);
        assert_eq!(
            join(&mut c, 3, 1, &[]),
            Some((1, 2)),
            "1 was only slow for 2"
        );
        c.invariants().unwrap();
        let mut c = Coordinator::new(PeerId(0), 1);
        join(&mut c, 1, 1, &[]);
        // 1 leaves the root's slot (see `a_corrupt_member_stays_out_after_it_joins_again`).
        assert_eq!(join(&mut c, 2, 1, &[(1, Exclusion::Corrupt)]), Some((0, 1)));
        assert_eq!(join(&mut c, 3, 1, &[]), Some((2, 2)));
        assert_eq!(
            join(&mut c, 4, 1, &[]),
            Some((3, 3)),
            "a corrupt member is never a parent"
        );
    }

    /// Slow: skipped while any member in good standing has room, even a deeper one.
    #[test]
    fn a_slow_member_waits_behind_members_in_good_standing() {
        let mut c = Coordinator::new(PeerId(0), 2);
        join(&mut c, 1, 2, &[]);
        join(&mut c, 2, 2, &[]);
        assert_eq!(join(&mut c, 3, 2, &[(1, Exclusion::Slow)]), Some((2, 2)));
        assert_eq!(
            join(&mut c, 4, 2, &[]),
            Some((2, 2)),
            "1 is shallower, but slow"
        );
        assert_eq!(join(&mut c, 5, 2, &[]), Some((3, 3)));
        c.invariants().unwrap();
        // Joining again itself, it is heard alive: in good standing again.
        let (p, _) = join(&mut c, 1, 2, &[]).unwrap();
        assert_ne!(p, 1);
        c.invariants().unwrap();
        let d1 = c.members[&PeerId(1)].depth;
        assert!(c.open.iter().any(|&(d, _, id)| id == PeerId(1) && d == d1));
    }

    /// Dead: removed with its slot at its parent freed, and offered to nobody, not even as a
    /// last resort, until it joins again.
    #[test]
    fn a_dead_member_is_offered_to_nobody_until_it_joins_again() {
        let mut c = Coordinator::new(PeerId(0), 1);
        join(&mut c, 1, 1, &[]);
        assert_eq!(join(&mut c, 2, 1, &[]), Some((1, 2)));
        assert_eq!(
            join(&mut c, 3, 1, &[(2, Exclusion::Dead)]),
            Some((1, 2)),
            "2's slot under 1 is free"
        );
        assert!(!c.members.contains_key(&PeerId(2)));
        // Nobody but 3 has room; 4 refuses 3 as slow: no parent at all, 2 is not one.
        assert_eq!(join(&mut c, 4, 1, &[(3, Exclusion::Slow)]), None);
        assert_eq!(
            join(&mut c, 5, 1, &[]),
            Some((3, 3)),
            "the slow 3, last resort"
        );
        assert_eq!(join(&mut c, 2, 1, &[]), Some((5, 4)), "2 is back");
        assert_eq!(join(&mut c, 6, 1, &[]), Some((2, 5)), "and a parent again");
        c.invariants().unwrap();
    }

    /// Corrupt: never a parent again, even after it joins again (or is excluded as dead and
    /// comes back), and never the root's own child: the root's slots are the tree's inlet.
    #[test]
    fn a_corrupt_member_stays_out_after_it_joins_again() {
        let never_under_1 = |c: &mut Coordinator| {
            for j in 10..40 {
                let (p, _) = join(c, j, 2, &[]).unwrap();
                assert_ne!(p, 1, "1 is corrupt for good");
            }
            c.invariants().unwrap();
        };
        let mut c = Coordinator::new(PeerId(0), 2);
        join(&mut c, 1, 2, &[]);
        join(&mut c, 2, 2, &[]);
        assert_eq!(join(&mut c, 3, 2, &[]), Some((1, 2)));
        // 3 catches 1: 1 leaves the root's slot and 3 takes it.
        assert_eq!(join(&mut c, 3, 2, &[(1, Exclusion::Corrupt)]), Some((0, 1)));
        assert_eq!(c.take_evicted(), vec![PeerId(1)]);
        assert_eq!(
            join(&mut c, 1, 2, &[]),
            Some((3, 2)),
            "a leaf below 3, the deepest"
        );
        never_under_1(&mut c);
        // Excluded as dead meanwhile, and back: still corrupt.
        let mut c = Coordinator::new(PeerId(0), 2);
        join(&mut c, 1, 2, &[]);
        join(&mut c, 2, 2, &[]);
        assert_eq!(join(&mut c, 3, 2, &[(1, Exclusion::Corrupt)]), Some((0, 1)));
        assert_eq!(join(&mut c, 4, 2, &[(1, Exclusion::Dead)]), Some((2, 2)));
        assert_eq!(
            join(&mut c, 1, 2, &[]),
            Some((4, 3)),
            "a leaf, the deepest slot"
        );
        never_under_1(&mut c);
    }

    #[test]
    fn a_moved_subtree_gets_its_new_depths() {
        let mut c = Coordinator::new(PeerId(0), 2);
        for j in 1..=14 {
            join(&mut c, j, 2, &[]);
        }
        // 3 sits at depth 2 under 1, with children 7, 8 (depth 3). Move 3 under a deeper slot.
        c.exclude(PeerId(2), Exclusion::Slow);
        let depth_of = |c: &Coordinator, n: u32| c.members[&PeerId(n)].depth;
        let (_, d3) = join(&mut c, 3, 2, &[(1, Exclusion::Slow)]).unwrap();
        assert_eq!(depth_of(&c, 3), d3);
        for kid in [7, 8] {
            assert_eq!(depth_of(&c, kid), d3 + 1, "child {kid} of moved 3");
        }
    }

    #[test]
    fn never_more_than_fanout_children() {
        for fanout in [1u8, 2, 3, 64] {
            let mut c = Coordinator::new(PeerId(0), fanout);
            let mut kids: HashMap<u32, u8> = HashMap::new();
            for j in 1..500 {
                let (p, _) = join(&mut c, j, fanout, &[]).unwrap();
                let k = kids.entry(p).or_default();
                *k += 1;
                assert!(*k <= fanout);
            }
        }
    }

    /// Regression (`pfs simulate --phones 100 --corrupt-peers 2 --seed 8`, 194 x the limit):
    /// a member excluded as dead by one joiner is often alive and still feeding its other
    /// children. Removed with its link up, its children's walk up stopped at it, so one of
    /// its ancestors was placed under one of them: a parent cycle among the phones.
    #[test]
    fn an_ancestor_of_a_member_excluded_as_dead_never_lands_below_it() {
        let mut c = Coordinator::new(PeerId(0), 2);
        // 0: 1 2; 1: 3 4; 2: 5 6; 3: 7 8; 4: 9 10; 5: 11 12; 6: 13 14; 7: 15 16.
        for j in 1..=16 {
            join(&mut c, j, 2, &[]);
        }
        // 7 starves under 3 and leaves it, excluding it as dead; 3 lives on, still 8's parent.
        // Not in 3's slot under 1 (what starved 3 may be above it): the next shallowest.
        assert_eq!(join(&mut c, 7, 2, &[(3, Exclusion::Dead)]), Some((8, 4)));
        // 1 re-joins, refusing the root (slow to it). The shallowest free slot is 8's, but 8
        // hangs below 1 (8 -> 3 -> 1): placed there, 1 -> 8 -> 3 -> 1 would be a cycle.
        let (p, _) = join(&mut c, 1, 2, &[(0, Exclusion::Slow)]).unwrap();
        assert_ne!(p, 8, "1 placed under its own descendant 8 (8 -> 3 -> 1)");
        assert!(
            ![3, 4, 7, 8, 9, 10, 15, 16].contains(&p),
            "under its subtree: {p}"
        );
        c.invariants().unwrap();
        // 3 comes back: it takes up 8 again, at its new depth.
        let (_, d3) = join(&mut c, 3, 2, &[]).unwrap();
        assert_eq!(c.members[&PeerId(3)].kids, vec![PeerId(8)]);
        assert_eq!(c.members[&PeerId(8)].depth, d3 + 1);
        c.invariants().unwrap();
    }

    /// A member excluded as slow that moves with its parent stays out of the open set (the
    /// `tree` fuzz target: "open set disagrees (capable true, suspect true, 0 kids)").
    #[test]
    fn a_suspect_moved_with_its_parent_stays_closed() {
        let mut c = Coordinator::new(PeerId(0), 2);
        for j in 1..=4 {
            join(&mut c, j, 2, &[]);
        }
        // 3 sits under 1; 5 joins excluding 3 as slow, then 1 moves under 2.
        join(&mut c, 5, 2, &[(3, Exclusion::Slow)]);
        c.invariants().unwrap();
        let (p, _) = join(&mut c, 1, 2, &[(0, Exclusion::Slow)]).unwrap();
        assert_ne!(p, 0);
        c.invariants().unwrap();
        assert!(c.members[&PeerId(3)].suspect);
    }
}
