//! A tree whose root is alive and gets data at the WAN's shared rate: 24 transfers on
//! 1 Mbit/s give each root one 64 KiB chunk every 12.5 s. Its members starve between chunks
//! through no fault of their parents; only a parent that holds back what the root has is
//! left.

use super::*;

const WATCHDOG: Event = Event::Timer {
    h: 0,
    kind: TimerKind::Watchdog,
};

/// Whether `out` leaves `parent` (a `Leave` to it).
fn leaves(out: &[Action], parent: PeerId) -> bool {
    out.iter()
        .any(|a| matches!(a, Action::Send { to, msg: Msg::Leave { .. } } if *to == parent))
}

/// Phone 2 is placed by root 7 (holding nothing yet) under member 5 at depth 2. Root 7 adverts
/// every second; it holds its first chunk from 12 s, which reaches phone 2 through 5 at
/// 12.6 s, and its second from 25 s, which 5 (now hung) never relays. Returns when phone 2
/// left 5, if it did by 40 s.
fn left_at() -> Option<Time> {
    let cfg = Config::default();
    let mut out = Vec::new();
    let spec = HierarchySpec {
        id: 0,
        chunks: 1000,
    };
    let mut p = Phone::new(PeerId(2), 100_000, 9, &[spec]);
    p.handle(&cfg, 0, Event::Boot, &mut out);
    let from_root = |msg| Event::Recv {
        from: PeerId(7),
        msg,
    };
    let advert = |verified| from_root(advert_of(0, root_7(), verified));
    p.handle(&cfg, 1_000, advert(0), &mut out);
    let join = Event::Timer {
        h: 0,
        kind: TimerKind::Join,
    };
    p.handle(&cfg, 300_000, join, &mut out);
    let accept = Msg::Accept {
        h: 0,
        xid: 77,
        parent: PeerId(5),
        depth: 2,
    };
    p.handle(&cfg, 301_000, from_root(accept), &mut out);
    assert_eq!(p.hierarchies[0].parent, Some(PeerId(5)));
    for step in 4..=400u64 {
        let now = step * 100_000;
        out.clear();
        if now % cfg.root_advert_interval == 0 {
            let held = u32::from(now >= 12_000_000) + u32::from(now >= 25_000_000);
            p.handle(&cfg, now, advert(held), &mut out);
        }
        if now == 12_600_000 {
            let chunk = Msg::Chunk {
                h: 0,
                index: 0,
                have: 1,
                ok: true,
            };
            let ev = Event::Recv {
                from: PeerId(5),
                msg: chunk,
            };
            p.handle(&cfg, now, ev, &mut out);
        }
        if now % cfg.watchdog == 0 {
            p.handle(&cfg, now, WATCHDOG, &mut out);
        }
        if leaves(&out, PeerId(5)) {
            return Some(now);
        }
    }
    None
}

/// Regression (`pfs simulate --phones 40 --models 4 --wan-mbit 1`): the starvation clock ran
/// from the first unanswered probe, so when the root's advert said it held a new chunk after
/// 12 s of shared-WAN silence, a member whose parent was still relaying it (its chunk on the
/// LAN a few milliseconds) left that live parent at the next watchdog turn, reported it dead,
/// and the root evicted it with its subtree. The parent is judged from when the root held a
/// chunk we lack; a parent that holds it back is still left after the starvation limit.
#[test]
fn a_parent_is_judged_from_when_the_root_held_what_we_lack() {
    let cfg = Config::default();
    let left = left_at().expect("a hung parent is left");
    let limit = cfg.starve_timeout + 2 * cfg.watchdog;
    assert!(
        left > 25_000_000 + limit - cfg.watchdog && left <= 25_000_000 + limit + 2 * cfg.watchdog,
        "left at {left}"
    );
}
