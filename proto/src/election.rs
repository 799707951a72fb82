//! Root election: suppressed claims, ordered by (tier, strength, peer).
//!
//! Pure functions and one small value type; the phone state machine owns the timers.

use crate::{ids::PeerId, wire::Tier};

/// A claim heard on (or sent to) the broadcast domain. Ordered: a higher tier beats any
/// strength; then strength; then the peer id breaks exact ties, so every phone that has heard
/// the same claims agrees on one winner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Claim {
    pub tier: Tier,
    pub strength: u64,
    pub peer: PeerId,
    pub xid: u32,
}

/// Back-off before claiming, and the strength that goes with it.
///
/// The timer is the feedback-suppression timer of Nonnenmacher & Biersack:
/// `window * max(0, 1 + ln(x) / ln(n_max))` with `x` uniform in (0, 1]. Strength grows as the
/// delay shrinks, so the first phone to speak is the strongest of those that will speak and all
/// others can stay quiet once they hear it. `progress` (verified chunks) goes into the high bits
/// so that in a re-election the survivor holding most data wins.
pub fn claim_draw(x: f64, window_us: u64, n_max: u64, progress: u32) -> (u64, u64) {
    let x = x.clamp(f64::MIN_POSITIVE, 1.0);
    let ln_n = (n_max.max(2) as f64).ln();
    let frac = (1.0 + x.ln() / ln_n).clamp(0.0, 1.0);
    let delay = (window_us as f64 * frac) as u64;
    // x close to 1 -> long delay -> weak. Invert x into 32 bits of strength.
    let low = ((1.0 - x) * f64::from(u32::MAX)) as u64;
    let strength = (u64::from(progress) << 32) | low.min(u64::from(u32::MAX));
    (delay, strength)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tier_beats_strength_and_peer_breaks_ties() {
        let weak_fetching = Claim {
            tier: Tier::Fetching,
            strength: 1,
            peer: PeerId(1),
            xid: 1,
        };
        let strong_tentative = Claim {
            tier: Tier::Tentative,
            strength: u64::MAX,
            peer: PeerId(2),
            xid: 2,
        };
        assert!(weak_fetching > strong_tentative);
        let a = Claim {
            tier: Tier::Tentative,
            strength: 7,
            peer: PeerId(3),
            xid: 0,
        };
        let b = Claim {
            peer: PeerId(4),
            ..a
        };
        assert!(b > a);
    }

    #[test]
    fn earlier_timers_are_stronger_and_progress_dominates() {
        let (d1, s1) = claim_draw(0.001, 200_000, 1_000_000, 0);
        let (d2, s2) = claim_draw(0.9, 200_000, 1_000_000, 0);
        assert!(d1 < d2 && s1 > s2);
        let (_, with_data) = claim_draw(0.99, 200_000, 1_000_000, 5);
        assert!(with_data > s1, "more verified data must win a re-election");
        let (d, _) = claim_draw(0.0, 200_000, 1_000_000, 0);
        assert_eq!(d, 0);
        let (d, _) = claim_draw(1.0, 200_000, 1_000_000, 0);
        assert_eq!(d, 200_000);
    }
}
