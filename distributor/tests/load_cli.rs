//! `pfs key generate`, `pfs load synth`, `pfs manifest [--verify]` through the binary.

use std::process::{Command, Output};

fn pfs(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pfs"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn signed_synthetic_load_verifies_and_corruption_is_named() {
    let base = std::env::temp_dir().join(format!("pfs-load-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).unwrap();
    let key = base.join("signer");
    let dir = base.join("load");
    let (k, d) = (key.to_str().unwrap(), dir.to_str().unwrap());
    assert!(pfs(&["key", "generate", "--out", k]).status.success());
    let synth = pfs(&[
        "load",
        "synth",
        "--out",
        d,
        "--sign-key",
        &format!("{k}.key"),
    ]);
    assert!(
        synth.status.success(),
        "{}",
        String::from_utf8_lossy(&synth.stderr)
    );
    let sizes: Vec<u64> = ["apps41", "cnu41", "cvm41sccp", "dsp41", "jar41sccp"]
        .iter()
        .map(|p| {
            std::fs::metadata(dir.join(format!("{p}.9-4-2ES26.sbn")))
                .unwrap()
                .len()
        })
        .collect();
    assert_eq!(
        sizes,
        vec![1_630_052, 556_833, 3_157_527, 562_693, 2_219_477]
    );
    let pubkey = format!("{k}.pub");
    assert!(
        pfs(&["manifest", "--verify", d, "--public-key", &pubkey])
            .status
            .success()
    );

    // Rebuilding the manifest unsigned makes it fail when a key is required.
    assert!(pfs(&["manifest", d]).status.success());
    let unsigned = pfs(&["manifest", "--verify", d, "--public-key", &pubkey]);
    assert!(!unsigned.status.success());
    assert!(String::from_utf8_lossy(&unsigned.stderr).contains("not signed"));
    assert!(
        pfs(&["manifest", d, "--sign-key", &format!("{k}.key")])
            .status
            .success()
    );

    let victim = dir.join("jar41sccp.9-4-2ES26.sbn");
    let mut bytes = std::fs::read(&victim).unwrap();
    bytes[5 * 65536 + 1] ^= 0x40;
    std::fs::write(&victim, bytes).unwrap();
    let bad = pfs(&["manifest", "--verify", d, "--public-key", &pubkey]);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("jar41sccp.9-4-2ES26.sbn") && err.contains("chunk 5"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&base);
}
