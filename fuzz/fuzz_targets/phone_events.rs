//! The phone state machine fed arbitrary event sequences (any message from any peer, spoofed
//! ones from itself included, timers at any time, origin answers out of turn), with
//! `Phone::invariants` checked after every event: the core's contract with both drivers.
#![no_main]
use arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use pfs_proto::{
    election::Claim,
    phone::{Config, Event, Excludes, HierarchySpec, LeaseOp, Mode, Msg, Phone, TimerKind},
    tree::Exclusion,
    wire::{PeerId, Tier},
};

const ME: PeerId = PeerId(3);

fn pick<T: Copy>(u: &mut Unstructured, items: &[T]) -> Result<T> {
    Ok(*u.choose(items)?)
}

/// One of the eight peers the run talks about (itself, `ME`, included).
fn peer(u: &mut Unstructured) -> Result<PeerId> {
    Ok(PeerId(u.int_in_range(0..=7)?))
}

fn msg(u: &mut Unstructured) -> Result<Msg> {
    let h = u.int_in_range(0..=2)?;
    let xid = u.int_in_range(0..=3)?;
    let small = |u: &mut Unstructured| u.int_in_range(0..=40u32);
    Ok(match u.int_in_range(0..=7)? {
        0 => Msg::Advert {
            h,
            claim: Claim {
                tier: pick(u, &[Tier::Tentative, Tier::Fetching, Tier::Confirmed])?,
                strength: u.arbitrary()?,
                peer: peer(u)?,
                xid,
            },
            seq: u.int_in_range(0..=5)?,
            verified: small(u)?,
            depth: u.arbitrary()?,
            free_slots: u.arbitrary()?,
        },
        1 => Msg::Join {
            h,
            xid,
            max_children: u.int_in_range(0..=3)?,
            verified: small(u)?,
            exclude: {
                let mut pairs = Vec::new();
                for p in 0..u.int_in_range(0..=5)? {
                    let why = pick(u, &[Exclusion::Dead, Exclusion::Corrupt, Exclusion::Slow])?;
                    pairs.push((PeerId(p % 8), why));
                }
                Excludes::from_pairs(pairs)
            },
        },
        2 => Msg::Accept {
            h,
            xid,
            parent: peer(u)?,
            depth: u.arbitrary()?,
        },
        3 => Msg::Reject { h, xid },
        4 => Msg::Request {
            h,
            from: small(u)?,
            xid,
        },
        5 => Msg::Chunk {
            h,
            index: small(u)?,
            have: small(u)?,
            ok: u.ratio(7, 8)?,
        },
        6 => Msg::Leave { h, xid },
        _ => Msg::Lease {
            h,
            xid,
            op: pick(u, &[LeaseOp::Request, LeaseOp::Grant, LeaseOp::Refuse, LeaseOp::Release])?,
        },
    })
}

fn event(u: &mut Unstructured) -> Result<Event> {
    let h = u.int_in_range(0..=2)?;
    Ok(match u.int_in_range(0..=7)? {
        0 => Event::Boot,
        1 => Event::Timer {
            h,
            kind: pick(
                u,
                &[
                    TimerKind::Claim,
                    TimerKind::Guard,
                    TimerKind::Advert,
                    TimerKind::Join,
                    TimerKind::OriginRetry,
                    TimerKind::Lease,
                    TimerKind::Watchdog,
                ],
            )?,
        },
        2 | 3 => Event::Recv {
            from: peer(u)?,
            msg: msg(u)?,
        },
        4 => Event::OriginReady { h },
        5 => Event::OriginBusy { h },
        6 => Event::OriginChunk {
            h,
            index: u.int_in_range(0..=40)?,
            ok: u.ratio(7, 8)?,
        },
        _ => Event::Added,
    })
}

fn run(u: &mut Unstructured) -> Result<()> {
    let cfg = Config {
        mode: pick(u, &Mode::ALL)?,
        fanout: u.int_in_range(1..=4)?,
        fallback_slots: u.int_in_range(0..=4)?,
        ..Config::default()
    };
    let specs = [
        HierarchySpec { id: 0, chunks: u.int_in_range(1..=30)? },
        HierarchySpec { id: 1, chunks: u.int_in_range(1..=30)? },
    ];
    let mut phone = Phone::new(ME, u.int_in_range(100..=100_000)?, u.arbitrary()?, &specs);
    phone.corrupt = u.ratio(1, 16)?;
    let mut out = Vec::new();
    let mut now = 0u64;
    phone.handle(&cfg, now, Event::Boot, &mut out);
    for _ in 0..u.int_in_range(0..=400)? {
        now += u.int_in_range(0..=4_000_000u64)?;
        // The load's third file, added after boot (as once the manifest arrives).
        if phone.hierarchies.len() < 3 && u.ratio(1, 64)? {
            phone.add_hierarchies(&[HierarchySpec { id: 2, chunks: u.int_in_range(1..=30)? }]);
        }
        let ev = event(u)?;
        out.clear();
        phone.handle(&cfg, now, ev, &mut out);
        if let Err(broken) = phone.invariants(&cfg) {
            panic!("after {ev:?} at {now}: {broken}");
        }
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});
