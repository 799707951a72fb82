//! Hierarchies added after boot (the load's files, once the manifest's hierarchy delivered).

use super::tests::{advert_of, root_7};
use super::*;

fn spec(id: u32, chunks: u32) -> HierarchySpec {
    HierarchySpec { id, chunks }
}

/// Claim timers in `out` for `h`: their deadlines.
fn claims(out: &[Action], h: u32) -> Vec<Time> {
    out.iter()
        .filter_map(|a| match *a {
            Action::Timer {
                h: x,
                kind: TimerKind::Claim,
                at,
            } if x == h => Some(at),
            _ => None,
        })
        .collect()
}

/// Phone 5 that became root of the manifest's hierarchy 0 (one chunk) and verified it.
fn manifest_root(cfg: &Config, out: &mut Vec<Action>) -> Phone {
    let mut p = Phone::new(PeerId(5), 100_000, 3, &[spec(0, 1)]);
    p.handle(cfg, 0, Event::Boot, out);
    let at = claims(out, 0)[0];
    p.handle(
        cfg,
        at,
        Event::Timer {
            h: 0,
            kind: TimerKind::Claim,
        },
        out,
    );
    let guard = at + cfg.claim_guard;
    p.handle(
        cfg,
        guard,
        Event::Timer {
            h: 0,
            kind: TimerKind::Guard,
        },
        out,
    );
    assert!(out.contains(&Action::OriginOpen {
        h: 0,
        fallback: false
    }));
    p.handle(cfg, guard + 1, Event::OriginReady { h: 0 }, out);
    let chunk = Event::OriginChunk {
        h: 0,
        index: 0,
        ok: true,
    };
    p.handle(cfg, guard + 2, chunk, out);
    assert!(out.contains(&Action::Install { h: 0 }));
    p
}

#[test]
fn added_hierarchies_wait_for_the_event_then_claim_as_at_boot() {
    let cfg = Config::default();
    let mut out = Vec::new();
    let mut p = Phone::new(PeerId(2), 100_000, 9, &[spec(0, 1)]);
    p.handle(&cfg, 0, Event::Boot, &mut out);
    p.add_hierarchies(&[spec(1, 10), spec(2, 40), spec(1, 10)]);
    assert_eq!(p.hierarchies.len(), 3, "an id already present is skipped");
    out.clear();
    p.handle(
        &cfg,
        1_000,
        Event::Recv {
            from: PeerId(9),
            msg: Msg::Leave { h: 1, xid: 0 },
        },
        &mut out,
    );
    assert!(
        claims(&out, 1).is_empty(),
        "nothing starts before Event::Added"
    );
    p.handle(&cfg, 2_000, Event::Added, &mut out);
    // Not a root of anything: no claim at once. Added late, each listens first (the largest
    // file for a confirmed root's interval: the manifest's root leads it).
    let (small, large) = (claims(&out, 1), claims(&out, 2));
    assert_eq!((small.len(), large.len()), (1, 1), "{out:?}");
    // Added early in a fresh site: the lead listens a confirmed root's interval, the others
    // two advert intervals (no root of theirs can have confirmed yet).
    assert!(large[0] >= 2_000 + cfg.root_advert_interval + cfg.advert_interval);
    let short = 2_000 + 2 * cfg.advert_interval + cfg.claim_guard;
    assert!(
        (short..short + cfg.claim_window).contains(&small[0]),
        "{small:?}"
    );
    out.clear();
    p.handle(&cfg, 3_000, Event::Added, &mut out);
    assert!(
        claims(&out, 1).is_empty() && claims(&out, 2).is_empty(),
        "started once"
    );
    p.invariants(&cfg).unwrap();
}

/// A phone that learns the files more than a root advert interval after its boot, or whose
/// manifest root has already confirmed, listens a confirmed root's whole interval for every
/// file: a root of it may be confirmed and advertising only once a second.
#[test]
fn files_learned_late_or_in_a_settled_site_listen_a_whole_root_interval() {
    let cfg = Config::default();
    let long = cfg.root_advert_interval + cfg.advert_interval;
    // Late after boot.
    let mut out = Vec::new();
    let mut p = Phone::new(PeerId(2), 100_000, 9, &[spec(0, 1)]);
    p.handle(&cfg, 0, Event::Boot, &mut out);
    p.add_hierarchies(&[spec(1, 10), spec(2, 40)]);
    let at = cfg.root_advert_interval + 1;
    p.handle(&cfg, at, Event::Added, &mut out);
    for h in [1, 2] {
        assert!(claims(&out, h)[0] >= at + long, "{h}");
    }
    // Early, but the manifest's root was heard confirmed (we booted into a running site).
    let mut out = Vec::new();
    let mut p = Phone::new(PeerId(2), 100_000, 9, &[spec(0, 1)]);
    p.handle(&cfg, 0, Event::Boot, &mut out);
    let advert = advert_of(0, root_7(), 1);
    p.handle(
        &cfg,
        1_000,
        Event::Recv {
            from: PeerId(7),
            msg: advert,
        },
        &mut out,
    );
    p.add_hierarchies(&[spec(1, 10), spec(2, 40)]);
    out.clear();
    p.handle(&cfg, 2_000, Event::Added, &mut out);
    for h in [1, 2] {
        assert!(claims(&out, h)[0] >= 2_000 + long, "{h}");
    }
    p.invariants(&cfg).unwrap();
}

#[test]
fn the_manifest_root_claims_the_largest_file_at_once() {
    let cfg = Config::default();
    let mut out = Vec::new();
    let mut p = manifest_root(&cfg, &mut out);
    p.add_hierarchies(&[spec(1, 10), spec(2, 40), spec(3, 40)]);
    out.clear();
    p.handle(&cfg, 500_000, Event::Added, &mut out);
    assert_eq!(
        claims(&out, 2),
        vec![500_000],
        "the first of the largest, at once"
    );
    assert!(claims(&out, 1)[0] > 500_000 && claims(&out, 3)[0] > 500_000);
    p.invariants(&cfg).unwrap();
}

#[test]
fn added_before_boot_start_at_boot_and_traditional_phones_fetch_one_at_a_time() {
    let cfg = Config {
        mode: Mode::Traditional,
        ..Config::default()
    };
    let mut out = Vec::new();
    let mut p = Phone::new(PeerId(2), 100_000, 9, &[spec(0, 1)]);
    p.handle(&cfg, 0, Event::Added, &mut out);
    assert!(out.is_empty(), "Added before Boot is ignored");
    p.handle(&cfg, 0, Event::Boot, &mut out);
    assert_eq!(
        out,
        vec![Action::OriginOpen {
            h: 0,
            fallback: false
        }]
    );
    p.add_hierarchies(&[spec(1, 2)]);
    out.clear();
    p.handle(&cfg, 10, Event::Added, &mut out);
    assert!(
        out.is_empty(),
        "file 0 is still open: file 1 waits its turn"
    );
    p.handle(&cfg, 20, Event::OriginReady { h: 0 }, &mut out);
    p.handle(
        &cfg,
        30,
        Event::OriginChunk {
            h: 0,
            index: 0,
            ok: true,
        },
        &mut out,
    );
    assert!(
        out.contains(&Action::OriginOpen {
            h: 1,
            fallback: false
        }),
        "{out:?}"
    );
    p.invariants(&cfg).unwrap();
}

/// A claim and guard timer for a hierarchy added but not started make no root: the core
/// armed no timer for it, and the start that follows would leave a waiting phone holding a
/// coordinator (the phone_events fuzz target's crash "Waiting holds a coordinator").
#[test]
fn timers_before_the_start_of_an_added_hierarchy_are_ignored() {
    let cfg = Config::default();
    let mut out = Vec::new();
    let mut p = Phone::new(PeerId(3), 100_000, 7, &[spec(0, 4)]);
    p.handle(&cfg, 0, Event::Boot, &mut out);
    p.add_hierarchies(&[spec(2, 4)]);
    for (at, kind) in [(1_000, TimerKind::Claim), (2_000_000, TimerKind::Guard)] {
        out.clear();
        p.handle(&cfg, at, Event::Timer { h: 2, kind }, &mut out);
        assert!(out.is_empty(), "{kind:?} acted: {out:?}");
        p.invariants(&cfg).unwrap();
    }
    assert_eq!(p.hierarchies[1].role, Role::Waiting);
    out.clear();
    p.handle(&cfg, 3_000_000, Event::Added, &mut out);
    p.invariants(&cfg).unwrap();
    assert_eq!(
        claims(&out, 2).len(),
        1,
        "started as at boot: one claim timer"
    );
}

fn timer(h: u32, kind: TimerKind) -> Event {
    Event::Timer { h, kind }
}

fn broadcasts(out: &[Action], h: u32) -> usize {
    out.iter()
        .filter(|a| matches!(a, Action::Broadcast(m) if m.hierarchy() == h))
        .count()
}

/// The manifest's root, fetching the lead file, is the busiest phone: its claim on another
/// file waits one claim window more and weaker, then (nobody else claimed) goes out and
/// waits `busy_claim_guard`, not the boot's `claim_guard` (1000 lab phones: the manifest's
/// root had passed its guard on five files after others had become their roots).
#[test]
fn a_busy_root_defers_its_claims_and_later_elections_guard_longer() {
    let cfg = Config::default();
    let mut out = Vec::new();
    let mut p = manifest_root(&cfg, &mut out);
    p.add_hierarchies(&[spec(1, 10), spec(2, 40)]);
    out.clear();
    p.handle(&cfg, 500_000, Event::Added, &mut out);
    let small = claims(&out, 1)[0];
    // The lead (2) at once: claim, guard (short: nobody else claims it yet), root, fetching.
    p.handle(&cfg, 500_000, timer(2, TimerKind::Claim), &mut out);
    p.handle(
        &cfg,
        500_000 + cfg.claim_guard,
        timer(2, TimerKind::Guard),
        &mut out,
    );
    assert_eq!(p.hierarchies[2].role, Role::Root);
    out.clear();
    p.handle(&cfg, small, timer(1, TimerKind::Claim), &mut out);
    assert_eq!(broadcasts(&out, 1), 0, "deferred, not claimed: {out:?}");
    assert_eq!(claims(&out, 1), vec![small + cfg.claim_window]);
    let weak = p.hierarchies[1].me.strength;
    assert_eq!(weak & PROMPT, 0, "weaker than any prompt claim");
    out.clear();
    let again = small + cfg.claim_window;
    p.handle(&cfg, again, timer(1, TimerKind::Claim), &mut out);
    assert_eq!(broadcasts(&out, 1), 1, "nobody claimed: it does");
    let guard = out.iter().find_map(|a| match *a {
        Action::Timer {
            h: 1,
            kind: TimerKind::Guard,
            at,
        } => Some(at),
        _ => None,
    });
    assert_eq!(guard, Some(again + cfg.busy_claim_guard));
    p.invariants(&cfg).unwrap();
}

/// A confirmed root adverts once a `root_advert_interval`, however many phones still join
/// (each advert reaches every phone of the site; a late phone listens that long instead).
#[test]
fn a_confirmed_root_adverts_at_the_root_interval_while_phones_join() {
    let cfg = Config::default();
    let mut out = Vec::new();
    let mut p = manifest_root(&cfg, &mut out);
    p.add_hierarchies(&[spec(1, 40)]);
    p.handle(&cfg, 500_000, Event::Added, &mut out);
    p.handle(&cfg, 500_000, timer(1, TimerKind::Claim), &mut out);
    let mut now = 500_000 + cfg.claim_guard;
    p.handle(&cfg, now, timer(1, TimerKind::Guard), &mut out);
    assert_eq!(p.hierarchies[1].role, Role::Root);
    let xid = p.hierarchies[1].me.xid;
    let next_advert = |out: &[Action]| {
        out.iter().find_map(|a| match *a {
            Action::Timer {
                h: 1,
                kind: TimerKind::Advert,
                at,
            } => Some(at),
            _ => None,
        })
    };
    // A joiner placed before every advert: fast until confirmed, then the settled cadence.
    for k in 0..cfg.confirm_adverts + 3 {
        let join = Msg::Join {
            h: 1,
            xid,
            max_children: 2,
            verified: 0,
            exclude: Excludes::default(),
        };
        let from = PeerId(100 + k);
        p.handle(&cfg, now + 1, Event::Recv { from, msg: join }, &mut out);
        out.clear();
        let confirmed = p.hierarchies[1].me.tier == Tier::Confirmed;
        now += if confirmed {
            cfg.root_advert_interval
        } else {
            cfg.advert_interval
        };
        p.handle(&cfg, now, timer(1, TimerKind::Advert), &mut out);
        let expect = if p.hierarchies[1].me.tier == Tier::Confirmed {
            cfg.root_advert_interval
        } else {
            cfg.advert_interval
        };
        assert_eq!(next_advert(&out), Some(now + expect), "{k}");
    }
    assert_eq!(p.hierarchies[1].me.tier, Tier::Confirmed);
    p.invariants(&cfg).unwrap();
}

/// A guard timer that fires more than half a guard late (the phone's loop was busy) is
/// extended, at most `MAX_LATE_WAITS` times; a claim heard meanwhile suppresses it,
/// and a phone that is always late still becomes root in the end.
#[test]
fn a_late_guard_listens_again_before_the_claim_stands() {
    use super::elect::MAX_LATE_WAITS;
    let cfg = Config::default();
    // The manifest's root (its hierarchy done) claims an added file at 500 ms.
    let claimant = |out: &mut Vec<Action>| {
        let mut p = manifest_root(&cfg, out);
        p.add_hierarchies(&[spec(1, 40)]);
        p.handle(&cfg, 500_000, Event::Added, out);
        out.clear();
        p.handle(&cfg, 500_000, timer(1, TimerKind::Claim), out);
        assert_eq!(p.hierarchies[1].role, Role::Claimant, "{out:?}");
        p
    };
    let guard_at = |out: &[Action]| {
        out.iter().find_map(|a| match *a {
            Action::Timer {
                h: 1,
                kind: TimerKind::Guard,
                at,
            } => Some(at),
            _ => None,
        })
    };
    let mut out = Vec::new();
    // Fired a quarter guard late: on time enough, the claim stands.
    let mut p = claimant(&mut out);
    let guard = p.hierarchies[1].guard;
    assert_eq!(guard_at(&out), Some(500_000 + guard));
    p.handle(
        &cfg,
        500_000 + guard + guard / 4,
        timer(1, TimerKind::Guard),
        &mut out,
    );
    assert_eq!(p.hierarchies[1].role, Role::Root);
    // Always late: extended MAX_LATE_WAITS times, then root.
    let mut p = claimant(&mut out);
    let mut now = 500_000;
    for k in 0..=MAX_LATE_WAITS {
        now += 2 * guard; // a whole guard late each time

        out.clear();
        p.handle(&cfg, now, timer(1, TimerKind::Guard), &mut out);
        if k < MAX_LATE_WAITS {
            assert_eq!(p.hierarchies[1].role, Role::Claimant, "{k}");
            assert_eq!(guard_at(&out), Some(now + guard), "{k}");
        } else {
            assert_eq!(p.hierarchies[1].role, Role::Root, "{k}");
        }
    }
    p.invariants(&cfg).unwrap();
    // Late, and a root's advert is heard during the extension: never root.
    let mut p = claimant(&mut out);
    p.handle(
        &cfg,
        500_000 + 2 * guard,
        timer(1, TimerKind::Guard),
        &mut out,
    );
    let mut root = p.hierarchies[1].me;
    (root.peer, root.tier) = (PeerId(77), Tier::Fetching);
    let advert = advert_of(1, root, 0);
    let from = PeerId(77);
    p.handle(
        &cfg,
        500_000 + 2 * guard + 1,
        Event::Recv { from, msg: advert },
        &mut out,
    );
    p.handle(
        &cfg,
        500_000 + 3 * guard,
        timer(1, TimerKind::Guard),
        &mut out,
    );
    assert_ne!(p.hierarchies[1].role, Role::Root);
    p.invariants(&cfg).unwrap();
}

/// A claim heard before our timer fires suppresses ours when it offers at least as much (data
/// held, a prompt claim), whatever the random draw: phones that start at different times would
/// otherwise each claim when their draw beat everything heard so far. Data held still wins.
#[test]
fn a_claim_as_good_as_ours_suppresses_whatever_the_draw() {
    use super::elect::suppresses;
    let claim = |strength: u64, tier: Tier| Claim {
        tier,
        strength,
        peer: PeerId(1),
        xid: 1,
    };
    let me = claim(PROMPT | 0x7000_0000, Tier::Tentative);
    // Same class (no data, prompt), a weaker draw: suppresses.
    assert!(suppresses(claim(PROMPT | 5, Tier::Tentative), me));
    // A deferred claim (a busy root, a slow port): does not.
    assert!(!suppresses(claim(0x7fff_ffff, Tier::Tentative), me));
    // Less data held: does not; more: does.
    let mine_with_data = claim((3 << 32) | PROMPT, Tier::Tentative);
    assert!(!suppresses(
        claim((2 << 32) | PROMPT | 0x7fff_ffff, Tier::Tentative),
        mine_with_data
    ));
    assert!(suppresses(claim(4 << 32, Tier::Tentative), mine_with_data));
    // A root (higher tier) always does.
    assert!(suppresses(claim(0, Tier::Fetching), mine_with_data));

    // Through the phone: the claim timer of a phone that heard a weaker-draw prompt claim.
    let cfg = Config::default();
    let mut out = Vec::new();
    let mut p = Phone::new(PeerId(2), 100_000, 3, &[spec(0, 10)]);
    p.handle(&cfg, 0, Event::Boot, &mut out);
    let mut heard = p.hierarchies[0].me;
    (heard.peer, heard.strength) = (PeerId(8), PROMPT); // the weakest prompt draw
    assert!(heard < p.hierarchies[0].me);
    let advert = advert_of(0, heard, 0);
    p.handle(
        &cfg,
        1_000,
        Event::Recv {
            from: PeerId(8),
            msg: advert,
        },
        &mut out,
    );
    out.clear();
    p.handle(&cfg, 2_000, timer(0, TimerKind::Claim), &mut out);
    assert!(claims(&out, 0).is_empty() && !out.iter().any(|a| matches!(a, Action::Broadcast(_))));
    assert_eq!(p.hierarchies[0].role, Role::Waiting);
    p.invariants(&cfg).unwrap();
}

/// A claim timer that fires more than half a busy guard late draws its back-off afresh
/// instead of claiming (phones whose timers fell due during one long turn would all claim in
/// it), at most `MAX_LATE_WAITS` times; on time it claims at once.
#[test]
fn a_late_claim_timer_draws_its_back_off_afresh() {
    use super::elect::MAX_LATE_WAITS;
    let cfg = Config::default();
    let claim_at = |out: &[Action]| {
        out.iter().find_map(|a| match *a {
            Action::Timer {
                h: 0,
                kind: TimerKind::Claim,
                at,
            } => Some(at),
            _ => None,
        })
    };
    let broadcast = |out: &[Action]| out.iter().any(|a| matches!(a, Action::Broadcast(_)));
    let mut out = Vec::new();
    let mut p = Phone::new(PeerId(2), 100_000, 3, &[spec(0, 10)]);
    p.handle(&cfg, 0, Event::Boot, &mut out);
    let mut due = claim_at(&out).expect("armed at boot");
    for k in 0..=MAX_LATE_WAITS {
        let now = due + cfg.busy_claim_guard;
        out.clear();
        p.handle(&cfg, now, timer(0, TimerKind::Claim), &mut out);
        if k < MAX_LATE_WAITS {
            assert!(!broadcast(&out), "{k}: claimed late");
            due = claim_at(&out).expect("drawn afresh");
            assert!((now..=now + cfg.claim_window).contains(&due), "{k}");
        } else {
            assert!(broadcast(&out), "claims in the end");
            assert_eq!(p.hierarchies[0].role, Role::Claimant);
        }
    }
    // On time (a quarter of a busy guard late): claims at once.
    let mut p = Phone::new(PeerId(2), 100_000, 3, &[spec(0, 10)]);
    out.clear();
    p.handle(&cfg, 0, Event::Boot, &mut out);
    let due = claim_at(&out).unwrap();
    out.clear();
    p.handle(
        &cfg,
        due + cfg.busy_claim_guard / 4,
        timer(0, TimerKind::Claim),
        &mut out,
    );
    assert!(broadcast(&out));
    p.invariants(&cfg).unwrap();
}
