//! Moving to another tree: out of the old one before the new root's `Accept` lands.

use super::*;

/// `Recv` from `from`.
fn recv(from: u32, msg: Msg) -> Event {
    Event::Recv {
        from: PeerId(from),
        msg,
    }
}

fn sends(out: &[Action], to: u32, want: impl Fn(&Msg) -> bool) -> bool {
    out.iter()
        .any(|a| matches!(a, Action::Send { to: t, msg } if *t == PeerId(to) && want(msg)))
}

/// Regression (`pfs simulate --phones 100 --partition-fraction 0.3 --seed 1000`, and
/// `--crash-fraction 0.1 --loss 0.02`): a member joining another tree kept its old parent
/// and its old children. The new root, which knows nothing of the old tree's edges, placed
/// it under one of its own old-tree descendants, and the Accept closed a parent cycle.
#[test]
fn a_member_leaves_its_old_tree_before_joining_another() {
    let cfg = Config::default();
    let mut out = Vec::new();
    // Phone 2 in root 7's tree (xid 77) under 5, feeding 9.
    let (mut p, _) = member_of(
        &cfg,
        100_000,
        &[HierarchySpec {
            id: 0,
            chunks: 1000,
        }],
        PeerId(5),
        &mut out,
    );
    let request = |xid| Msg::Request { h: 0, from: 0, xid };
    p.handle(&cfg, 302_000, recv(9, request(77)), &mut out);
    assert_eq!(p.hierarchies[0].children().collect::<Vec<_>>(), [PeerId(9)]);
    // Root 7 steps down for root 8 (xid 88): phone 2 follows 8.
    let claim = |peer, tier, xid| Claim {
        tier,
        strength: u64::MAX,
        peer: PeerId(peer),
        xid,
    };
    let advert = |claim| Msg::Advert {
        h: 0,
        claim,
        seq: 9,
        verified: 1000,
        depth: 0,
        free_slots: 2,
    };
    let down = advert(claim(7, Tier::Tentative, 77));
    p.handle(&cfg, 400_000, recv(7, down), &mut out);
    let up = advert(claim(8, Tier::Confirmed, 88));
    p.handle(&cfg, 401_000, recv(8, up), &mut out);
    out.clear();
    let join = Event::Timer {
        h: 0,
        kind: TimerKind::Join,
    };
    p.handle(&cfg, 700_000, join, &mut out);
    let leave = |xid| move |m: &Msg| *m == Msg::Leave { h: 0, xid };
    assert!(sends(&out, 5, leave(77)), "the old parent is left: {out:?}");
    assert!(sends(&out, 9, leave(77)), "the old child is told: {out:?}");
    assert!(sends(&out, 8, |m| matches!(m, Msg::Join { xid: 88, .. })));
    let x = &p.hierarchies[0];
    assert_eq!((x.parent, x.children().count()), (None, 0));
    p.invariants(&cfg).unwrap();
    // Placed under 4 in tree 88; a child of tree 88 is taken.
    let accept = Msg::Accept {
        h: 0,
        xid: 88,
        parent: PeerId(4),
        depth: 2,
    };
    p.handle(&cfg, 701_000, recv(8, accept), &mut out);
    assert_eq!(p.hierarchies[0].parent, Some(PeerId(4)));
    p.handle(&cfg, 703_000, recv(6, request(88)), &mut out);
    assert_eq!(p.hierarchies[0].children().collect::<Vec<_>>(), [PeerId(6)]);
}

/// The old child's side: a `Leave` from its parent in its own tree drops the parent, with no
/// exclusion (the parent did nothing wrong), and it asks its root again at once. A `Leave`
/// with xid 0 (a stream's end) or of another tree does not.
#[test]
fn a_leave_from_the_parent_in_our_tree_drops_it_without_blame() {
    let cfg = Config::default();
    let mut out = Vec::new();
    let (mut p, _) = member_of(
        &cfg,
        100_000,
        &[HierarchySpec {
            id: 0,
            chunks: 1000,
        }],
        PeerId(5),
        &mut out,
    );
    for xid in [0, 55] {
        p.handle(&cfg, 302_000, recv(5, Msg::Leave { h: 0, xid }), &mut out);
        assert_eq!(p.hierarchies[0].parent, Some(PeerId(5)), "xid {xid}");
    }
    out.clear();
    p.handle(
        &cfg,
        303_000,
        recv(5, Msg::Leave { h: 0, xid: 77 }),
        &mut out,
    );
    let x = &p.hierarchies[0];
    assert_eq!(x.parent, None);
    assert_eq!(x.excludes.iter().count(), 0, "no blame");
    assert!(out.iter().any(|a| matches!(
        a,
        Action::Timer {
            kind: TimerKind::Join,
            at: 303_000,
            ..
        }
    )));
    p.invariants(&cfg).unwrap();
}
