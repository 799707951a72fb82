use super::*;

mod merge;
mod root_silence;
mod shared_wan;

/// Root 7's claim: confirmed, the strongest, tree xid 77.
pub(super) fn root_7() -> Claim {
    Claim {
        tier: Tier::Confirmed,
        strength: u64::MAX,
        peer: PeerId(7),
        xid: 77,
    }
}

/// An advert of `claim` for hierarchy `h`, its sender holding `verified` chunks, 2 slots free.
pub(super) fn advert_of(h: u32, claim: Claim, verified: u32) -> Msg {
    Msg::Advert {
        h,
        claim,
        seq: 9,
        verified,
        depth: 0,
        free_slots: 2,
    }
}

/// Phone 2 with one 1000-chunk hierarchy, booted, that heard confirmed root 7 (xid 77, whole
/// file) at 1 ms, sent its Join at 300 ms and was accepted under 7 at 301 ms. Returns the
/// phone and the root's advert.
fn member_of_root_7(cfg: &Config, out: &mut Vec<Action>) -> (Phone, Msg) {
    let spec = HierarchySpec {
        id: 0,
        chunks: 1000,
    };
    member_of(cfg, 100_000, &[spec], PeerId(7), out)
}

/// As [`member_of_root_7`], for phone 2 on a `link_kbit` port taking part in `specs` (it
/// joins hierarchy 0 only), placed by root 7 under `parent`.
fn member_of(
    cfg: &Config,
    link_kbit: u32,
    specs: &[HierarchySpec],
    parent: PeerId,
    out: &mut Vec<Action>,
) -> (Phone, Msg) {
    let mut p = Phone::new(PeerId(2), link_kbit, 9, specs);
    p.handle(cfg, 0, Event::Boot, out);
    let root = Claim {
        tier: Tier::Confirmed,
        strength: u64::MAX,
        peer: PeerId(7),
        xid: 77,
    };
    let advert = Msg::Advert {
        h: 0,
        claim: root,
        seq: 9,
        verified: 1000,
        depth: 0,
        free_slots: 0,
    };
    p.handle(
        cfg,
        1_000,
        Event::Recv {
            from: PeerId(7),
            msg: advert,
        },
        out,
    );
    let join = Event::Timer {
        h: 0,
        kind: TimerKind::Join,
    };
    p.handle(cfg, 300_000, join, out);
    let accept = Msg::Accept {
        h: 0,
        xid: 77,
        parent,
        depth: 1,
    };
    p.handle(
        cfg,
        301_000,
        Event::Recv {
            from: PeerId(7),
            msg: accept,
        },
        out,
    );
    (p, advert)
}

#[test]
fn modes_display_parse_and_serialize_alike() {
    for m in Mode::ALL {
        assert_eq!(m.to_string().parse::<Mode>(), Ok(m));
        assert_eq!(serde_json::to_string(&m).unwrap(), format!("\"{m}\""));
    }
    assert_eq!(Mode::StoreAndForward.to_string(), "store-and-forward");
    assert!(
        "store_and_forward"
            .parse::<Mode>()
            .unwrap_err()
            .contains("pipelined")
    );
}

/// Regressions found by the fuzz target `phone_events` (each was a broken invariant or a
/// failed assertion): a second `Boot` left a root's coordinator on a waiting phone; an
/// `Accept` naming ourselves as parent was taken; a chunk past the file's end was counted.
#[test]
fn fuzz_regressions_phone_events() {
    let cfg = Config {
        claim_window: 1,
        ..Config::default()
    };
    let spec = [HierarchySpec { id: 0, chunks: 2 }];
    let mut out = Vec::new();
    a_second_boot_keeps_the_root(&cfg, &spec, &mut out);
    let mut p = an_accept_naming_ourselves_is_ignored(&cfg, &spec, &mut out);
    chunks_past_the_end_are_not_counted(&cfg, &mut p, &mut out);
}

/// Booted twice, the second time as root: still root, invariants hold.
fn a_second_boot_keeps_the_root(cfg: &Config, spec: &[HierarchySpec], out: &mut Vec<Action>) {
    let timer = |kind| Event::Timer { h: 0, kind };
    let mut p = Phone::new(PeerId(3), 100_000, 1, spec);
    p.handle(cfg, 0, Event::Boot, out);
    p.handle(cfg, 10, timer(TimerKind::Claim), out);
    p.handle(cfg, cfg.claim_guard + 20, timer(TimerKind::Guard), out);
    assert_eq!(p.hierarchies[0].role, Role::Root);
    p.handle(cfg, cfg.claim_guard + 30, Event::Boot, out);
    p.invariants(cfg).unwrap();
    assert_eq!(p.hierarchies[0].role, Role::Root);
}

/// An Accept that names us as our own parent is ignored; a sane one still counts. Returns
/// the phone, a member under phone 0.
fn an_accept_naming_ourselves_is_ignored(
    cfg: &Config,
    spec: &[HierarchySpec],
    out: &mut Vec<Action>,
) -> Phone {
    let timer = |kind| Event::Timer { h: 0, kind };
    let mut p = Phone::new(PeerId(3), 100_000, 1, spec);
    p.handle(cfg, 0, Event::Boot, out);
    let root = Claim {
        tier: Tier::Confirmed,
        strength: u64::MAX,
        peer: PeerId(0),
        xid: 0,
    };
    let advert = Msg::Advert {
        h: 0,
        claim: root,
        seq: 1,
        verified: 2,
        depth: 0,
        free_slots: 0,
    };
    p.handle(
        cfg,
        1,
        Event::Recv {
            from: PeerId(0),
            msg: advert,
        },
        out,
    );
    p.handle(cfg, 300_000, timer(TimerKind::Join), out);
    let accept = |parent: u32| Msg::Accept {
        h: 0,
        xid: 0,
        parent: PeerId(parent),
        depth: 1,
    };
    p.handle(
        cfg,
        300_001,
        Event::Recv {
            from: PeerId(0),
            msg: accept(3),
        },
        out,
    );
    p.invariants(cfg).unwrap();
    assert_eq!(p.hierarchies[0].parent, None);
    p.handle(
        cfg,
        300_002,
        Event::Recv {
            from: PeerId(0),
            msg: accept(0),
        },
        out,
    );
    assert_eq!(
        p.hierarchies[0].parent,
        Some(PeerId(0)),
        "a sane Accept still counts"
    );
    p
}

/// Chunks 0, 1, then a "chunk 2" of a 2-chunk file from the parent: two verified.
fn chunks_past_the_end_are_not_counted(cfg: &Config, p: &mut Phone, out: &mut Vec<Action>) {
    for index in 0..3 {
        let chunk = Msg::Chunk {
            h: 0,
            index,
            have: 3,
            ok: true,
        };
        p.handle(
            cfg,
            300_010 + u64::from(index),
            Event::Recv {
                from: PeerId(0),
                msg: chunk,
            },
            out,
        );
        p.invariants(cfg).unwrap();
    }
    assert_eq!(p.hierarchies[0].verified, 2);
}

/// Phone 2 with one 1000-chunk hierarchy, booted, that heard confirmed root 7 (xid 77, 10
/// chunks verified) at 1 ms, sent its Join at 300 ms and was refused at 301 ms. Returns the
/// phone and the root's advert.
fn refused_by_root_7(cfg: &Config, out: &mut Vec<Action>) -> (Phone, Event) {
    let mut p = Phone::new(
        PeerId(2),
        100_000,
        9,
        &[HierarchySpec {
            id: 0,
            chunks: 1000,
        }],
    );
    p.handle(cfg, 0, Event::Boot, out);
    let root = Claim {
        tier: Tier::Confirmed,
        strength: u64::MAX,
        peer: PeerId(7),
        xid: 77,
    };
    let advert = Event::Recv {
        from: PeerId(7),
        msg: Msg::Advert {
            h: 0,
            claim: root,
            seq: 9,
            verified: 10,
            depth: 0,
            free_slots: 0,
        },
    };
    let timer = |kind| Event::Timer { h: 0, kind };
    p.handle(cfg, 1_000, advert, out);
    p.handle(cfg, 300_000, timer(TimerKind::Join), out);
    let reject = Event::Recv {
        from: PeerId(7),
        msg: Msg::Reject { h: 0, xid: 77 },
    };
    p.handle(cfg, 301_000, reject, out);
    (p, advert)
}

/// Regression (found by `pfs simulate --swarm`): a grant after a long run of refusals was
/// dated from the first request, had expired on arrival, and the member fell back and
/// stopped at once, again and again, while the root held the slot. A refusal answers the
/// requests before it; the grant lasts from a later one.
#[test]
fn a_grant_after_refusals_is_a_live_lease() {
    let cfg = Config::default();
    let mut out = Vec::new();
    let (mut p, advert) = refused_by_root_7(&cfg, &mut out);
    let lease = |op| Event::Recv {
        from: PeerId(7),
        msg: Msg::Lease { h: 0, xid: 77, op },
    };
    let timer = |kind| Event::Timer { h: 0, kind };
    // Orphaned past fallback_after, refused for three lease times, then granted.
    let refuse_until = 301_000 + cfg.fallback_after + 3 * cfg.lease_time;
    let mut now = 301_000;
    let mut requests = 0;
    let mut fell_back_at = None;
    let mut grants = 0;
    while now < refuse_until + 3_000_000 {
        now += 100_000;
        out.clear();
        p.handle(&cfg, now, advert, &mut out);
        p.handle(&cfg, now, timer(TimerKind::Watchdog), &mut out);
        p.handle(&cfg, now, timer(TimerKind::Lease), &mut out);
        let asked = out.iter().any(|a| {
            matches!(
                a,
                Action::Send {
                    msg: Msg::Lease {
                        op: LeaseOp::Request,
                        ..
                    },
                    ..
                }
            )
        });
        if !asked {
            continue;
        }
        requests += 1;
        let op = if now < refuse_until {
            LeaseOp::Refuse
        } else {
            LeaseOp::Grant
        };
        grants += u32::from(op == LeaseOp::Grant);
        out.clear();
        p.handle(&cfg, now + 100, lease(op), &mut out);
        if out.iter().any(|a| matches!(a, Action::Fallback { .. })) {
            fell_back_at = Some(now);
            break;
        }
    }
    assert_eq!(grants, 1, "the first grant was taken");
    assert!(requests > 3, "the member kept asking ({requests} requests)");
    let granted = fell_back_at.expect("the grant started a fallback");
    assert_eq!(p.hierarchies[0].role, Role::Fallback);
    // The lease runs for lease_time from the granted request: still fetching just before.
    out.clear();
    p.handle(
        &cfg,
        granted + cfg.lease_renew,
        timer(TimerKind::Lease),
        &mut out,
    );
    assert_eq!(p.hierarchies[0].role, Role::Fallback, "{out:?}");
    assert!(p.invariants(&cfg).is_ok());
}

/// A member fed by its parent keeps its tree although the root's adverts stop arriving
/// (a saturated uplink drops them, seen in `pfs lab`); once the data stops too, the root
/// is presumed dead and the member re-elects.
#[test]
fn a_fed_member_outlives_lost_adverts_but_not_a_dead_tree() {
    let cfg = Config::default();
    let mut out = Vec::new();
    let (mut p, _advert) = member_of_root_7(&cfg, &mut out);
    assert_eq!(p.hierarchies[0].role, Role::Member);
    assert_eq!(p.hierarchies[0].parent, Some(PeerId(7)));
    // Ten seconds of chunks every 100 ms and the watchdog every 500 ms; no advert at all.
    let mut now = 301_000;
    for k in 0..100u32 {
        now += 100_000;
        // A pipelined parent just ahead of us (not a slow one sitting on data).
        let chunk = Msg::Chunk {
            h: 0,
            index: k,
            have: k + 1,
            ok: true,
        };
        p.handle(
            &cfg,
            now,
            Event::Recv {
                from: PeerId(7),
                msg: chunk,
            },
            &mut out,
        );
        if k % 5 == 0 {
            out.clear();
            p.handle(
                &cfg,
                now,
                Event::Timer {
                    h: 0,
                    kind: TimerKind::Watchdog,
                },
                &mut out,
            );
            assert!(
                !out.iter().any(|a| matches!(
                    a,
                    Action::Timer {
                        kind: TimerKind::Claim,
                        ..
                    }
                )),
                "re-elected while fed, at {now}"
            );
        }
    }
    assert_eq!(p.hierarchies[0].role, Role::Member);
    assert_eq!(p.hierarchies[0].verified, 100);
    // Now nothing at all: within root_timeout plus a watchdog period it re-elects.
    let mut claimed = false;
    for _ in 0..10 {
        now += cfg.watchdog;
        out.clear();
        p.handle(
            &cfg,
            now,
            Event::Timer {
                h: 0,
                kind: TimerKind::Watchdog,
            },
            &mut out,
        );
        claimed |= out.iter().any(|a| {
            matches!(
                a,
                Action::Timer {
                    kind: TimerKind::Claim,
                    ..
                }
            )
        });
    }
    assert!(claimed, "a dead tree must trigger a re-election");
}

/// A member whose driver did not run it for seconds (a loaded host's late turn) heard
/// nothing because it did not listen: the watchdog's lateness is not counted as its
/// root's silence. Silence it was awake for still is.
#[test]
fn a_late_driver_is_not_a_dead_root() {
    let cfg = Config::default();
    let mut out = Vec::new();
    let (mut p, _advert) = member_of_root_7(&cfg, &mut out);
    assert_eq!(p.hierarchies[0].role, Role::Member);
    let watchdog = Event::Timer {
        h: 0,
        kind: TimerKind::Watchdog,
    };
    let claims = |out: &[Action]| {
        out.iter().any(|a| {
            matches!(
                a,
                Action::Timer {
                    kind: TimerKind::Claim,
                    ..
                }
            ) || matches!(a, Action::RootLost { .. })
        })
    };
    // The watchdog was due at 500 ms; the driver runs it 6 s later.
    out.clear();
    p.handle(&cfg, 6_500_000, watchdog, &mut out);
    assert!(!claims(&out), "a late turn presumed the root dead");
    // Then on time: more than root_timeout of silence it listened through.
    let (mut now, mut lost_at) = (6_500_000, None);
    while now < 12_000_000 && lost_at.is_none() {
        now += cfg.watchdog;
        out.clear();
        p.handle(&cfg, now, watchdog, &mut out);
        if claims(&out) {
            lost_at = Some(now);
        }
    }
    let lost_at = lost_at.expect("a root silent while the phone listened is lost");
    assert!(
        lost_at - 6_500_000 > cfg.root_timeout - cfg.watchdog
            && lost_at - 6_500_000 <= cfg.root_timeout + 2 * cfg.watchdog,
        "lost after {} µs of listening",
        lost_at - 6_500_000
    );
}

/// An unanswered `Join` is sent again after `join_timeout`, then twice, four and eight times
/// that (plus at most a quarter of jitter), never faster: a root whose loop runs late is not
/// flooded with copies of the same join.
#[test]
fn unanswered_joins_back_off() {
    let cfg = Config::default();
    let mut out = Vec::new();
    let mut p = Phone::new(
        PeerId(2),
        100_000,
        9,
        &[HierarchySpec { id: 0, chunks: 10 }],
    );
    p.handle(&cfg, 0, Event::Boot, &mut out);
    let advert = advert_of(0, root_7(), 10);
    let from = PeerId(7);
    p.handle(&cfg, 1_000, Event::Recv { from, msg: advert }, &mut out);
    let mut now = 300_000;
    for k in 0..6u32 {
        out.clear();
        let join = Event::Timer {
            h: 0,
            kind: TimerKind::Join,
        };
        p.handle(&cfg, now, join, &mut out);
        assert!(
            out.iter().any(|a| matches!(
                a,
                Action::Send {
                    to: PeerId(7),
                    msg: Msg::Join { .. }
                }
            )),
            "{k}: {out:?}"
        );
        let next = out
            .iter()
            .find_map(|a| match *a {
                Action::Timer {
                    kind: TimerKind::Join,
                    at,
                    ..
                } => Some(at),
                _ => None,
            })
            .expect("the retry is armed");
        let base = cfg.join_timeout << k.min(3);
        assert!(
            (now + base..=now + base + base / 4).contains(&next),
            "{k}: retry after {} µs",
            next - now
        );
        now = next;
    }
    p.invariants(&cfg).unwrap();
}

/// Phone 3, root of one 8-chunk hierarchy, fed messages one millisecond apart (its invariants
/// checked after each); `out` holds what it did with the latest.
struct RootUnderTest {
    cfg: Config,
    p: Phone,
    xid: u32,
    t: Time,
    out: Vec<Action>,
}

impl RootUnderTest {
    fn new() -> Self {
        let cfg = Config {
            claim_window: 1,
            ..Config::default()
        };
        let spec = [HierarchySpec { id: 0, chunks: 8 }];
        let mut out = Vec::new();
        let timer = |kind| Event::Timer { h: 0, kind };
        let mut p = Phone::new(PeerId(3), 100_000, 1, &spec);
        p.handle(&cfg, 0, Event::Boot, &mut out);
        p.handle(&cfg, 10, timer(TimerKind::Claim), &mut out);
        let guard = cfg.claim_guard + 20;
        p.handle(&cfg, guard, timer(TimerKind::Guard), &mut out);
        assert_eq!(p.hierarchies[0].role, Role::Root);
        let xid = p.hierarchies[0].me.xid;
        RootUnderTest {
            cfg,
            p,
            xid,
            t: 100_000,
            out,
        }
    }

    /// A Join asking for `max_children`, excluding `exclude`.
    fn join(&self, max_children: u8, exclude: &[(u32, Exclusion)]) -> Msg {
        Msg::Join {
            h: 0,
            xid: self.xid,
            max_children,
            verified: 0,
            exclude: Excludes::from_pairs(exclude.iter().map(|&(e, why)| (PeerId(e), why))),
        }
    }

    fn request(&self) -> Msg {
        Msg::Request {
            h: 0,
            from: 0,
            xid: self.xid,
        }
    }

    fn recv(&mut self, from: u32, msg: Msg) {
        self.t += 1_000;
        self.out.clear();
        let from = PeerId(from);
        let ev = Event::Recv { from, msg };
        self.p.handle(&self.cfg, self.t, ev, &mut self.out);
        self.p.invariants(&self.cfg).unwrap();
    }

    /// The parent `to` was placed under by the latest message, if it was.
    fn accepted(&self, to: u32) -> Option<u32> {
        self.out.iter().find_map(|a| match a {
            Action::Send {
                to: dst,
                msg: Msg::Accept { parent, .. },
            } if *dst == PeerId(to) => Some(parent.0),
            _ => None,
        })
    }

    fn rejected(&self, to: u32) -> bool {
        self.out.iter().any(|a| {
            matches!(a, Action::Send { to: dst, msg: Msg::Reject { .. } } if *dst == PeerId(to))
        })
    }

    fn kids(&self) -> Vec<PeerId> {
        let mut kids: Vec<_> = self.p.hierarchies[0].children().collect();
        kids.sort();
        kids
    }
}

/// The root's own children caught relaying corrupt chunks leave its slots (the tree's only
/// inlet): `pfs simulate --phones 100 --corrupt-peers 2 --seed 8` had both corrupt peers
/// under the root for good, and every other phone of the file starved (19 fallbacks,
/// 6.5 x the limit, once the parent cycle was gone).
#[test]
fn the_root_drops_a_child_caught_corrupt_and_takes_an_honest_one() {
    let mut r = RootUnderTest::new();
    // 11 (corrupt) and 14 fill the root's slots; 11's child 20 catches it.
    for kid in [11, 14] {
        r.recv(kid, r.join(2, &[]));
        assert_eq!(r.accepted(kid), Some(3));
        r.recv(kid, r.request());
    }
    r.recv(20, r.join(2, &[]));
    assert_eq!(r.accepted(20), Some(11));
    r.recv(20, r.join(2, &[(11, Exclusion::Corrupt)]));
    assert!(
        r.rejected(11),
        "the root tells 11 to re-attach: {:?}",
        r.out
    );
    assert_eq!(r.accepted(20), Some(3), "20 takes 11's slot");
    assert_eq!(r.kids(), vec![PeerId(14)], "11 is fed no more");
    // 11's Request from before it heard: refused. Joining again: placed below another member.
    r.recv(11, r.request());
    assert!(r.rejected(11));
    r.recv(20, r.request());
    r.recv(11, r.join(2, &[(3, Exclusion::Slow)]));
    let parent = r.accepted(11).expect("placed");
    assert!(parent != 3 && parent != 11, "under {parent}");
    // And it never comes back under the root, even excluding nobody.
    r.recv(14, r.join(2, &[]));
    r.recv(11, r.join(2, &[]));
    assert_ne!(r.accepted(11), Some(3));
}

/// The root's own child that hangs (sockets open, nothing relayed) leaves its slot when a
/// phone below it reports it dead: the root's coordinator freed that slot and places the
/// reporter under the root, so the root's streams must follow, or it refuses the Request of
/// the very phone it just placed under itself. `pfs simulate --seed 14 --phones 152 --models 2
/// --wan-mbit 10 --wan-rtt-ms 0 --crash-fraction 0.1 --freeze-fraction 0.05 --slow-fraction
/// 0.05 --corrupt-peers 1`: both children of one file's root hung within 18 ms at 12.0 s;
/// every other phone of that file starved, and each one the root placed under itself after it
/// left its silent parent (from 19.0 s) was refused and sent under another starving member,
/// until the transport cut the hung streams (22.1 s): 2.24 x the limit.
#[test]
fn the_root_drops_a_child_reported_dead_and_feeds_the_reporter() {
    let mut r = RootUnderTest::new();
    // 11 and 14 fill the root's slots and stream; 20 and 21 go under 11, 22 under 14.
    for kid in [11, 14] {
        r.recv(kid, r.join(2, &[]));
        assert_eq!(r.accepted(kid), Some(3));
        r.recv(kid, r.request());
    }
    for (kid, parent) in [(20, 11), (21, 11), (22, 14)] {
        r.recv(kid, r.join(2, &[]));
        assert_eq!(r.accepted(kid), Some(parent));
    }
    // 11 and 14 hang (their sockets stay open: nothing tells the root). Their children starve,
    // leave them and join again, each reporting its parent dead: placed under the root, and
    // fed by it.
    for (kid, hung) in [(20, 11), (22, 14)] {
        r.recv(kid, r.join(2, &[(hung, Exclusion::Dead)]));
        assert_eq!(r.accepted(kid), Some(3), "{kid} takes {hung}'s slot");
        let told = r.rejected(hung);
        r.recv(kid, r.request());
        assert!(!r.rejected(kid), "{kid}'s Request refused: {:?}", r.out);
        assert!(told, "the root tells {hung} to re-attach");
        assert!(r.kids().contains(&PeerId(kid)), "{kid} is not fed");
    }
    assert_eq!(
        r.kids(),
        vec![PeerId(20), PeerId(22)],
        "the hung phones are fed no more"
    );
    // A Join repeats its sender's older exclusions: 21, placed under 20 after it left hung 11,
    // leaves 20 and still lists 22 as dead from some earlier placement. 22 is not its parent:
    // the root keeps feeding 22, which moved under it alive.
    r.recv(21, r.join(2, &[(11, Exclusion::Dead)]));
    assert_eq!(r.accepted(21), Some(20));
    r.recv(
        21,
        r.join(2, &[(22, Exclusion::Dead), (20, Exclusion::Slow)]),
    );
    assert!(!r.rejected(22), "22 evicted on a stale report: {:?}", r.out);
    assert!(r.kids().contains(&PeerId(22)));
    // A hung child that was alive after all asks again: placed below a member, as any joiner.
    r.recv(11, r.join(2, &[(3, Exclusion::Slow)]));
    let parent = r.accepted(11).expect("placed");
    assert!(parent != 3 && parent != 11, "under {parent}");
}

/// A leaf-only joiner (its port below `leaf_below_kbit`) that leaves its parent, a child of
/// the root, as dead does not get that child evicted: its own port's backlog starves it behind
/// a parent that sends on time (`pfs simulate --seed 57`, the plan of the test above).
#[test]
fn a_leaf_reporting_its_parent_dead_leaves_the_root_child_fed() {
    let mut r = RootUnderTest::new();
    for kid in [11, 14] {
        r.recv(kid, r.join(2, &[]));
        r.recv(kid, r.request());
    }
    r.recv(30, r.join(0, &[]));
    // A leaf takes the deepest free slot: the later of the root's two children.
    assert_eq!(r.accepted(30), Some(14));
    r.recv(30, r.join(0, &[(14, Exclusion::Dead)]));
    let told_14 = |a: &Action| matches!(a, Action::Send { to: PeerId(14), .. });
    assert!(!r.out.iter().any(told_14), "{:?}", r.out);
    assert_eq!(r.kids(), vec![PeerId(11), PeerId(14)]);
}
