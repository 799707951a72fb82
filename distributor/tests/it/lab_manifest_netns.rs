//! The manifest over the LAN in `pfs lab` (signed loads, every phone given the signer's key):
//! each model's manifest crosses the WAN about once, not once per phone, and a manifest a peer
//! tampered with is rejected (the lab's corrupt peers flip a byte of everything they relay)
//! while every phone still installs a verified load.

use crate::common;

/// A 20-phone, one-model lab at 10 Mbit/s with `extra` flags; its JSON report, checked.
fn lab(extra: &[&str]) -> Option<serde_json::Value> {
    if !common::privileged("pfs lab") || !common::tool("tc") {
        return None;
    }
    let mut args = vec!["--phones", "20", "--models", "CP-7961G", "--wan-mbit", "10"];
    args.extend(["--seed", "5", "--deadline-s", "120"]);
    args.extend(extra);
    let r = common::lab_json(&args);
    assert_eq!(r["completed"], 20, "{r}");
    assert_eq!(r["corrupt_installs"], 0, "{r}");
    assert_eq!(r["violations"], serde_json::json!([]), "{r}");
    assert_eq!(r["manifest_keyless"], 0, "every lab phone has the key: {r}");
    Some(r)
}

fn n(r: &serde_json::Value, k: &str) -> u64 {
    r[k].as_u64().unwrap_or_else(|| panic!("{k} missing: {r}"))
}

#[test]
fn twenty_phones_fetch_the_manifest_from_the_origin_about_once() {
    let _group = crate::common::group(module_path!());
    let Some(r) = lab(&[]) else { return };
    // One root fetches it; a lease holder or a retry may add one, never one per phone.
    assert!((1..=2).contains(&n(&r, "manifest_origin_fetches")), "{r}");
    assert!(n(&r, "manifest_from_peers") >= 18, "{r}");
    // The 7961 load's signed manifest is about 12 KB: at most two copies crossed the WAN.
    assert!(
        (8_000..=2 * 16_000).contains(&n(&r, "wan_manifest_bytes")),
        "{r}"
    );
}

#[test]
fn a_manifest_tampered_with_by_peers_is_rejected() {
    let _group = crate::common::group(module_path!());
    // Six of twenty relay everything with a byte flipped: some relay the manifest.
    let Some(r) = lab(&["--corrupt-peers", "6"]) else {
        return;
    };
    assert!(n(&r, "manifest_rejected") >= 1, "{r}");
    // Each corrupt manifest root costs at most one more fetch, within the root's leases.
    assert!(n(&r, "manifest_origin_fetches") <= 1 + 6, "{r}");
}
