//! The simulator driving the sans-IO core: determinism, invariants over many seeds, and one
//! regression test per bug the simulator found (with its seed).

use pfs_proto::{
    phone::Mode,
    sim::{self, Report, SimConfig},
};

/// A WAN of 10 ms RTT: the simulator paces each origin transfer to one TFTP window (16 x
/// 1428 B, the phones' client) per RTT, as real windowed TFTP is, so at the default 50 ms a
/// single file's fetch is capped at 3.7 Mbit/s and the makespan targets below (which are about
/// the tree, not the TFTP window) would measure the window instead.
fn cfg(phones: u32, seed: u64) -> SimConfig {
    SimConfig {
        phones,
        seed,
        wan_rtt_ms: 10.0,
        ..SimConfig::default()
    }
}

fn without_wall(r: &Report) -> String {
    let mut v = serde_json::to_value(r).unwrap();
    v.as_object_mut().unwrap().remove("wall_s");
    v.to_string()
}

fn depth_bound(phones: u32) -> u32 {
    // ceil(log2(N+1)) levels below the root, plus one level of slack for re-attachments.
    (f64::from(phones) + 1.0).log2().ceil() as u32 + 1
}

#[test]
fn same_seed_same_report() {
    let mut c = cfg(300, 42);
    c.crash_fraction = 0.05;
    c.loss = 0.01;
    c.corrupt_peers = 1;
    let a = sim::run(&c);
    let b = sim::run(&c);
    assert_eq!(without_wall(&a), without_wall(&b));
    c.seed = 43;
    assert_ne!(without_wall(&a), without_wall(&sim::run(&c)));
}

#[test]
fn invariants_hold_over_hundreds_of_seeds() {
    for seed in 0..200u64 {
        let phones = 20 + (seed as u32 * 37) % 130;
        let mode = if seed % 3 == 0 {
            Mode::StoreAndForward
        } else {
            Mode::Pipelined
        };
        let faulty = seed % 2 == 1;
        let partitioned = seed % 4 == 3;
        let c = SimConfig {
            partition_fraction: if partitioned { 0.3 } else { 0.0 },
            partition_at_s: 1.0,
            partition_for_s: 3.0,
            mode,
            models: 1 + (seed % 2) as u32,
            crash_fraction: if faulty { 0.1 } else { 0.0 },
            corrupt_peers: if faulty { 1 } else { 0 },
            loss: if faulty { 0.01 } else { 0.0 },
            ..cfg(phones, seed)
        };
        let r = sim::run(&c);
        let ctx = format!("seed {seed}: {}", without_wall(&r));
        assert!(!r.timed_out, "{ctx}");
        assert_eq!(r.completed + r.crashed, r.phones, "{ctx}");
        assert_eq!(r.corrupt_installs, 0, "{ctx}");
        assert!(r.max_children <= u32::from(c.fanout), "{ctx}");
        // The origin counts its own sessions: one per root and K leases per root.
        let hierarchies = c.models * sim::LOAD_7961.len() as u32;
        let bound = hierarchies * (1 + c.fallback_slots) * r.roots_elected_max.max(1);
        assert!(r.origin_peak_sessions <= bound, "{ctx}");
        if !faulty {
            assert_eq!(r.roots_elected_max, 1, "{ctx}");
            assert_eq!(r.roots_max, 1, "{ctx}");
            assert_eq!(r.origin_fallbacks, 0, "{ctx}");
            assert_eq!(r.wan_bytes, u64::from(c.models) * r.load_bytes, "{ctx}");
            let per_model = phones.div_ceil(c.models);
            assert!(r.max_depth <= depth_bound(per_model), "{ctx}");
        }
    }
}

#[test]
fn pipelined_approaches_the_wan_limit_and_beats_store_and_forward() {
    let p = sim::run(&cfg(1000, 7));
    assert!(p.makespan_s <= 1.10 * p.limit_s, "{}", without_wall(&p));
    assert!(p.election_converged_s <= 2.0, "{}", p.election_converged_s);
    let s = sim::run(&SimConfig {
        mode: Mode::StoreAndForward,
        ..cfg(1000, 7)
    });
    assert!(
        s.makespan_s > 1.3 * p.makespan_s,
        "no depth penalty: {}",
        without_wall(&s)
    );
    let t = sim::run(&SimConfig {
        mode: Mode::Traditional,
        ..cfg(20, 7)
    });
    assert_eq!(t.wan_bytes, 20 * t.load_bytes);
    assert!(t.makespan_s > 15.0 * t.limit_s);
}

#[test]
fn broadcasts_do_not_grow_with_the_fleet() {
    let small = sim::run(&cfg(100, 3)).election_broadcasts;
    let large = sim::run(&cfg(3000, 3)).election_broadcasts;
    assert!(
        large < 2 * small,
        "broadcasts {small} at 100 phones, {large} at 3000"
    );
}

#[test]
fn slow_phones_become_leaves_and_do_not_hold_others_back() {
    let r = sim::run(&SimConfig {
        slow_fraction: 0.05,
        slow_mbit: 2.0,
        ..cfg(1000, 5)
    });
    assert_eq!(r.completed, 1000);
    assert_eq!(r.slow_phones_with_children, 0);
    assert!(
        r.normal_makespan_s <= 1.25 * r.limit_s,
        "{}",
        without_wall(&r)
    );
    // Regression (seed 5): a stall probe made parents rewind and resend chunks already queued
    // for a slow child, doubling its time. A slow phone now finishes near its own link limit.
    let own_limit = r.load_bytes as f64 * 8.0 / 2e6;
    assert!(r.makespan_s <= 1.1 * own_limit, "{}", without_wall(&r));
}

/// Regression (seed 1): children placed under a parent that had already crashed waited
/// forever, because a Request to a dead phone was never answered by a connection failure.
#[test]
fn regression_seed_1_dead_parent_after_crash() {
    let r = sim::run(&SimConfig {
        crash_fraction: 0.1,
        ..cfg(2000, 1)
    });
    assert_eq!(r.completed + r.crashed, 2000, "{}", without_wall(&r));
}

/// Regression (seed 1): a parent cleared its child list when its own retried Accept arrived,
/// dropping children that had already joined it; with 1% loss that left cycles of stale parent
/// pointers and re-elections for thousands of seconds.
#[test]
fn regression_seed_1_loss_no_dropped_children() {
    let r = sim::run(&SimConfig {
        loss: 0.01,
        ..cfg(2000, 1)
    });
    assert_eq!(r.completed, 2000, "{}", without_wall(&r));
    assert!(r.max_depth <= depth_bound(2000), "{}", without_wall(&r));
    assert!(r.makespan_s <= 1.2 * r.limit_s, "{}", without_wall(&r));
}

#[test]
fn faults_complete_with_verified_loads() {
    let r = sim::run(&SimConfig {
        crash_fraction: 0.1,
        corrupt_peers: 2,
        loss: 0.01,
        ..cfg(3000, 11)
    });
    assert_eq!(r.completed + r.crashed, 3000, "{}", without_wall(&r));
    assert_eq!(r.corrupt_installs, 0);
}

/// Regression (seed 1): after a partition healed, a full parent refused a rejoining child with
/// a Reject carrying the parent's own claim xid instead of the child's tree xid; the child
/// ignored it and waited forever, so the cut side never finished.
#[test]
fn regression_seed_1_partition_heals() {
    let r = sim::run(&SimConfig {
        partition_fraction: 0.3,
        partition_at_s: 2.0,
        partition_for_s: 6.0,
        max_sim_s: 600.0,
        ..cfg(500, 1)
    });
    let ctx = without_wall(&r);
    assert_eq!(r.completed, 500, "{ctx}");
    assert_eq!(r.corrupt_installs, 0, "{ctx}");
    assert_eq!(
        r.roots_max_partitioned, 2,
        "each side elects its own root: {ctx}"
    );
    assert_eq!(r.roots_max, 1, "one root again after healing: {ctx}");
}

/// Regression (seed 1): the root kept stale depths for subtrees that moved with their parent,
/// so after merging half the fleet back the tree grew chains 350 deep.
#[test]
fn regression_seed_1_merge_keeps_the_tree_shallow() {
    let r = sim::run(&SimConfig {
        partition_fraction: 0.5,
        partition_at_s: 1.0,
        partition_for_s: 10.0,
        max_sim_s: 600.0,
        ..cfg(5000, 1)
    });
    let ctx = without_wall(&r);
    assert_eq!(r.completed, 5000, "{ctx}");
    assert!(!r.timed_out, "{ctx}");
    // The trees end shallow. While the two trees merge, parent pointers can form a transient
    // cycle across them (max_depth reaches the 4096 cap for this seed since the starvation
    // rule changed with the fault work; seeds 2-4 showed it on the earlier code too); the
    // starvation rule breaks it, and the makespan bounds how long it lasts. Open: see the
    // round's closing note.
    assert!(r.final_max_depth <= 3 * depth_bound(5000), "{ctx}");
    assert!(r.makespan_s <= 11.0 + 8.0 * r.limit_s, "{ctx}");
}

/// Regression (seed 63): after a partition healed under loss, members flapped between the two
/// roots (whose order kept changing with their progress), coordinators kept stale records and
/// parent pointers formed a cycle that never received data, so the run never finished. Root
/// strength is now frozen at election, members stay loyal to a live root, and a starved member
/// re-joins for a fresh placement.
#[test]
fn regression_seed_63_merge_under_loss_terminates() {
    let r = sim::run(&SimConfig {
        mode: Mode::StoreAndForward,
        models: 2,
        crash_fraction: 0.1,
        corrupt_peers: 1,
        loss: 0.01,
        partition_fraction: 0.3,
        partition_at_s: 1.0,
        partition_for_s: 3.0,
        max_sim_s: 600.0,
        ..cfg(141, 63)
    });
    let ctx = without_wall(&r);
    assert!(!r.timed_out, "{ctx}");
    assert_eq!(r.completed + r.crashed, 141, "{ctx}");
    assert_eq!(r.roots_max, 1, "{ctx}");
}

/// Every hierarchy's root crashes halfway through its file. The survivors re-elect and finish,
/// and the origin, counting its own sessions, never serves more than the roots and their K
/// leases at once (a dead root's leases lapse before a successor can grant new ones).
#[test]
fn killing_every_root_keeps_the_origin_within_roots_plus_k() {
    for seed in [3, 4, 5] {
        let c = SimConfig {
            kill_root_at: 0.5,
            ..cfg(1000, seed)
        };
        let r = sim::run(&c);
        let ctx = without_wall(&r);
        let hierarchies = sim::LOAD_7961.len() as u32;
        assert!(r.crashed >= 1, "{ctx}");
        assert_eq!(r.completed + r.crashed, 1000, "{ctx}");
        assert_eq!(r.corrupt_installs, 0, "{ctx}");
        assert!(r.roots_elected_max >= 2, "a successor was elected: {ctx}");
        assert!(
            r.origin_peak_sessions <= hierarchies * (1 + c.fallback_slots),
            "{ctx}"
        );
    }
}

/// The origin's own admission (busy answers) is honoured: with room for only two transfers
/// the five roots take turns and everyone still finishes.
#[test]
fn a_busy_origin_is_honoured() {
    let c = SimConfig {
        origin_max_sessions: 2,
        ..cfg(200, 9)
    };
    let r = sim::run(&c);
    let ctx = without_wall(&r);
    assert_eq!(r.completed, 200, "{ctx}");
    assert!(r.origin_busy > 0, "{ctx}");
    assert!(r.origin_peak_sessions <= 2, "{ctx}");
}

/// A hung phone keeps its streams open (no peer is ever told): its children must notice the
/// silence themselves (stall probes, then starvation while the root holds more) and re-attach.
#[test]
fn children_of_frozen_phones_reattach() {
    for seed in [7, 8, 9] {
        let r = sim::run(&SimConfig {
            freeze_fraction: 0.05,
            models: 2,
            ..cfg(100, seed)
        });
        let ctx = without_wall(&r);
        assert_eq!(r.frozen, 5, "{ctx}");
        assert_eq!(r.completed, 95, "{ctx}");
        assert_eq!(r.corrupt_installs, 0, "{ctx}");
        assert!(!r.timed_out, "{ctx}");
        // The lab recovers faster (60 phones, 10% frozen: 12.3 s, 1.9 x limit) than this model
        // (100 phones, 2 models: 2.0-2.8 x limit): the model is wrong somewhere (issue 14,
        // open). This bound catches a phone left waiting on a hung parent for good.
        assert!(r.makespan_s <= 4.0 * r.limit_s, "{ctx}");
    }
}

/// A phone whose link goes down leaves half-open streams, noticed only after
/// `cut_notice_ms` (stall probe + TCP_USER_TIMEOUT, as measured in `pfs lab`).
#[test]
fn half_open_cuts_are_survived() {
    for seed in [7, 8, 9] {
        let r = sim::run(&SimConfig {
            cut_fraction: 0.05,
            models: 2,
            ..cfg(100, seed)
        });
        let ctx = without_wall(&r);
        assert_eq!(r.cut, 5, "{ctx}");
        assert_eq!(r.completed, 95, "{ctx}");
        assert_eq!(r.corrupt_installs, 0, "{ctx}");
        assert!(r.makespan_s <= r.limit_s + 2.0 * 3.0 + 2.0 + 5.0, "{ctx}");
    }
}

/// Issue 14's fault plan (without the liar) on `c`: 2 models, crashes, freezes, cuts, slow
/// phones, corrupt peers and loss.
fn issue_14_plan(c: SimConfig) -> SimConfig {
    SimConfig {
        crash_fraction: 0.1,
        freeze_fraction: 0.05,
        cut_fraction: 0.05,
        slow_fraction: 0.05,
        corrupt_peers: 2,
        loss: 0.01,
        models: 2,
        ..c
    }
}

/// Every fault kind at once, as the lab's seed-7 plan: nobody stuck, nothing corrupt, the
/// origin within its bound.
#[test]
fn the_seed_7_fault_plan_leaves_nobody_stuck() {
    let r = sim::run(&issue_14_plan(cfg(100, 7)));
    let ctx = without_wall(&r);
    assert_eq!(r.completed + r.crashed + r.frozen + r.cut, 100, "{ctx}");
    assert_eq!(r.corrupt_installs, 0, "{ctx}");
    assert!(r.origin_peak_sessions <= 2 * 5 * (1 + 4), "{ctx}");
}

/// Found by `pfs simulate --swarm`: two slow (leaf-only) phones took both of the root's slots
/// and every later join was refused (193 of 200 stuck; then, with leases, 197 fallbacks and
/// 55 x the load over the WAN). Slow phones cap the makespan at load / 2 Mbit/s here.
#[test]
fn regression_swarm_slow_leaves_under_the_root() {
    let c = SimConfig {
        slow_fraction: 0.1,
        ..SimConfig {
            phones: 200,
            seed: 15808194165533529868,
            ..SimConfig::default()
        }
    };
    let r = sim::run(&c);
    let ctx = without_wall(&r);
    assert!(sim::check(&r).is_empty(), "{:?} {ctx}", sim::check(&r));
    assert_eq!(r.completed, 200, "{ctx}");
    assert_eq!(r.origin_fallbacks, 0, "{ctx}");
    assert_eq!(r.wan_bytes, r.load_bytes, "{ctx}");
}

/// A phone's own TFTP client is lock-step (one 1428 B block per round trip), as the lab's
/// traditional phones are: at 100 ms the lab measured 14.0 KB/s per phone on real sockets
/// (`lab_wan_rtt_netns`), so a load takes minutes however fast the WAN is; pfs's root fetches
/// with a 16-block window.
#[test]
fn traditional_over_a_long_wan_is_capped_at_a_block_per_round_trip() {
    let t = sim::run(&SimConfig {
        mode: Mode::Traditional,
        wan_mbit: 10.0,
        wan_rtt_ms: 100.0,
        ..cfg(4, 5)
    });
    let lock_step = t.load_bytes as f64 / (1428.0 / 0.1);
    assert!(
        (t.makespan_s - lock_step).abs() <= 0.1 * lock_step,
        "{} s, lock-step predicts {lock_step} s: {}",
        t.makespan_s,
        without_wall(&t)
    );
    let p = sim::run(&SimConfig {
        wan_mbit: 10.0,
        wan_rtt_ms: 100.0,
        ..cfg(4, 5)
    });
    assert!(p.makespan_s < t.makespan_s / 10.0, "{}", without_wall(&p));
}

/// Liars (`--liar-peers`): hostile phones claiming root with the strongest adverts. One silent
/// liar costs its victims one unanswered stall probe and a re-election (1.8 x the limit at 60
/// phones); two (one silent, one trickling, which also fetches its own copy over the WAN) are
/// caught one after the other (2.2 to 4.3 x). Everyone else installs, nothing corrupt.
#[test]
fn liars_claiming_root_stall_nobody() {
    for seed in 1..=5 {
        for liars in [1, 2] {
            let r = sim::run(&SimConfig {
                liar_peers: liars,
                ..cfg(60, seed)
            });
            let ctx = without_wall(&r);
            assert_eq!(r.liars, liars, "{ctx}");
            assert_eq!(r.completed, 60 - liars, "{ctx}");
            assert_eq!(r.corrupt_installs, 0, "{ctx}");
            assert!(r.roots_rejected_stalled > 0, "{ctx}");
            // Two liars also hold the manifest's hierarchy first (one more stage to catch
            // them in, serially, before any file is known): 4.25 x at seeds 4 and 5 (3.7 x
            // before the manifest came over the LAN), and a re-election's wasted partial
            // fetch (2.44 loads at seed 5).
            let (copies, bound, slack) = if liars == 1 { (1, 2.0, 5) } else { (2, 4.5, 2) };
            assert!(
                r.wan_bytes <= copies * r.load_bytes + r.load_bytes / slack,
                "{ctx}"
            );
            assert!(r.makespan_s <= bound * r.limit_s, "{ctx}");
        }
    }
}

/// Regression (issue 14, `pfs simulate --swarm`): on issue 14's fault plan 1-6% of seeds
/// ended with two working roots of one hierarchy. Each seed here did, each by one way a
/// member called an honest root a liar (the accusation is for good, the roots never merge):
/// a slow port's backlog taken for the root's silence (the first), chunks of one stream
/// overtaking each other in the model after the receiver closed another stream (306), a
/// starvation clock carried over from the previous parent (824, 1470), a parent of an older
/// tree judged as the new root before the member joined it (994), and, with a liar, a slow
/// root called a liar by a member that held more than it did, 0.5 s after the root first held
/// a chunk the member lacked (635340061525167378).
#[test]
fn issue_14_plans_end_with_one_root_per_hierarchy() {
    let seeds = [10_168_890_155_700_885_784, 306, 824, 994, 1470];
    let plans = seeds.map(|seed| (seed, 0)).into_iter();
    for (seed, liar_peers) in plans.chain([(635_340_061_525_167_378, 1)]) {
        let r = sim::run(&issue_14_plan(SimConfig {
            phones: 100,
            seed,
            liar_peers,
            ..SimConfig::default()
        }));
        let failures = sim::check(&r);
        assert!(failures.is_empty(), "seed {seed}: {failures:?}");
        assert_eq!(r.final_roots_max, 1, "seed {seed}: {}", without_wall(&r));
    }
}

/// The manifest over the LAN (the signed configuration): each model's manifest crosses the
/// WAN once, not once per phone, and the firmware makespan stays within 3% of a site whose
/// phones each fetched their own before power-on (keyless: `manifest_over_lan` off).
#[test]
fn the_manifest_crosses_the_wan_once_per_model() {
    for (phones, models, seed) in [(200, 1, 1), (300, 2, 2), (1000, 1, 3)] {
        let lan = SimConfig {
            models,
            ..cfg(phones, seed)
        };
        let r = sim::run(&lan);
        let ctx = without_wall(&r);
        assert_eq!(r.completed, phones, "{ctx}");
        assert_eq!(r.manifest_origin_fetches, models, "{ctx}");
        assert_eq!(
            r.wan_manifest_bytes,
            u64::from(models) * lan.manifest_bytes,
            "{ctx}"
        );
        assert_eq!(r.wan_bytes, u64::from(models) * r.load_bytes, "{ctx}");
        assert_eq!(r.roots_elected_max, 1, "{ctx}");
        let own = sim::run(&SimConfig {
            manifest_over_lan: false,
            ..lan
        });
        assert_eq!(own.manifest_origin_fetches, phones);
        assert_eq!(
            own.wan_manifest_bytes,
            u64::from(phones) * lan.manifest_bytes
        );
        assert!(
            r.makespan_s <= 1.03 * own.makespan_s,
            "{ctx} vs {}",
            without_wall(&own)
        );
    }
}

/// Traditional phones cut off from the origin mid-transfer by a partition: their TFTP client
/// gives up after its retransmissions and the phone fetches again (found by a break-it trial:
/// the simulator never failed the transfer, and 30 of 60 phones stayed stuck for good).
#[test]
fn traditional_phones_cut_off_by_a_partition_fetch_again() {
    for seed in [1, 2, 3] {
        let r = sim::run(&SimConfig {
            mode: Mode::Traditional,
            partition_fraction: 0.5,
            ..cfg(60, seed)
        });
        assert_eq!(r.completed, r.phones, "seed {seed}: {}", without_wall(&r));
        assert!(!r.timed_out, "seed {seed}");
        assert!(
            sim::check(&r).is_empty(),
            "seed {seed}: {:?}",
            sim::check(&r)
        );
    }
}

/// Many models on a slow WAN: every root fetches at once, so each gets a chunk only every
/// models x 6 x 64 KiB / WAN rate (12.5 s for 4 models on 1 Mbit/s). A root's own WAN chunk
/// used to hold its LAN port until it was all in, so the chunks it was sent as a member of
/// other files' trees waited behind it for seconds, and their children left live parents:
/// 6.6 x the limit and 90 fallbacks where `pfs lab` installs all 40 phones at 1.22 x with one
/// root and no fallback; 20 models on 2 Mbit/s never finished.
#[test]
fn many_models_on_a_slow_wan_keep_one_tree_each() {
    for (phones, models, wan_mbit, rtt) in
        [(40, 4, 1.0, 0.0), (200, 8, 2.0, 50.0), (200, 20, 2.0, 50.0)]
    {
        let r = sim::run(&SimConfig {
            models,
            wan_mbit,
            wan_rtt_ms: rtt,
            max_site_phones: u64::from(phones),
            max_sim_s: 3000.0,
            ..cfg(phones, 1)
        });
        let ctx = without_wall(&r);
        assert_eq!(r.completed, phones, "{ctx}");
        assert_eq!(r.origin_fallbacks, 0, "{ctx}");
        assert_eq!(r.roots_elected_max, 1, "{ctx}");
        assert!(r.makespan_s <= 1.2 * r.limit_s, "{ctx}");
    }
    // The same on one lab host of two cores (`pfs lab`: 40/40, 1 root, no fallback, 1.22 x);
    // a core booked from a WAN chunk's arrival 12.5 s ahead held every LAN relay behind it
    // (10.8 x, 167 fallbacks).
    let r = sim::run(&SimConfig {
        models: 4,
        wan_mbit: 1.0,
        wan_rtt_ms: 0.0,
        max_site_phones: 40,
        max_sim_s: 3000.0,
        host_cores: 2,
        host_cpu_s_per_gb: 2.7,
        ..cfg(40, 1)
    });
    let ctx = without_wall(&r);
    assert_eq!((r.completed, r.origin_fallbacks), (40, 0), "{ctx}");
    assert_eq!(r.roots_elected_max, 1, "{ctx}");
    assert!(r.makespan_s <= 1.2 * r.limit_s, "{ctx}");
}
