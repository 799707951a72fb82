//! Tree placement by a hierarchy's root: any sequence of joins (any joiner, any capacity,
//! any exclusions, dead parents included) keeps the coordinator's invariants: at most
//! `fanout` children, no parent cycle, a consistent open set. A placement never names the
//! joiner itself, one of its exclusions or one of its descendants.
#![no_main]
use arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use pfs_proto::tree::{Coordinator, Exclusion, PeerId};

fn run(u: &mut Unstructured) -> Result<()> {
    let fanout = u.int_in_range(1..=4)?;
    let mut c = Coordinator::new(PeerId(0), fanout);
    for _ in 0..u.int_in_range(0..=120)? {
        let joiner = PeerId(u.int_in_range(0..=40)?);
        let max_children = u.int_in_range(0..=fanout)?;
        let mut exclude = Vec::new();
        for _ in 0..u.int_in_range(0..=4)? {
            let why = match u.int_in_range(0..=2)? {
                0 => Exclusion::Dead,
                1 => Exclusion::Corrupt,
                _ => Exclusion::Slow,
            };
            exclude.push((PeerId(u.int_in_range(0..=40)?), why));
        }
        if let Some((parent, depth)) = c.join(joiner, max_children, &exclude) {
            assert_ne!(parent, joiner);
            assert!(!exclude.iter().any(|&(p, _)| p == parent), "placed under an exclusion");
            assert!(depth >= 1);
        }
        if let Err(broken) = c.invariants() {
            panic!("after join({joiner:?}, {max_children}, {exclude:?}): {broken}");
        }
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});
