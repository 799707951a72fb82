//! `pfs key generate`, `pfs load synth`, `pfs manifest [--verify]` through the binary.

use crate::common;

use std::process::{Command, Output};

fn pfs(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pfs"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn signed_synthetic_load_verifies_and_corruption_is_named() {
    let _group = crate::common::group(module_path!());
    let base = common::scratch("load-cli");
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

    // Rebuilding a signed manifest without a key is refused (it would silently drop the
    // signature), and the signed one stays; `--force` drops it, and then a key-requiring
    // verify fails.
    let refused = pfs(&["manifest", d]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("holds a signed manifest"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert!(
        pfs(&["manifest", "--verify", d, "--public-key", &pubkey])
            .status
            .success()
    );
    assert!(pfs(&["manifest", d, "--force"]).status.success());
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

#[test]
fn inspect_and_config_show_print_plain_text_and_json() {
    let _group = crate::common::group(module_path!());
    let base = common::scratch("load-cli-inspect");
    let dir = base.join("tftp");
    let d = dir.to_str().unwrap();
    assert!(pfs(&["load", "synth", "--out", d]).status.success());

    let loads = dir.join("SCCP41.9-4-2SR3-1S.loads");
    let out = pfs(&["load", "inspect", loads.to_str().unwrap()]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("TLV signed header"), "{text}");
    assert!(text.contains("TEST PLACEHOLDER"), "{text}");
    assert!(text.contains("jar41sccp.9-4-2ES26.sbn"), "{text}");
    let out = pfs(&["load", "inspect", "--json", loads.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["header"]["kind"], "tlv");
    assert_eq!(v["header"]["header_len"], 412);
    assert_eq!(v["header"]["test_placeholder"], true);
    assert!(
        v["digest_ok"].is_null(),
        "RSA with Cisco's key: not checkable"
    );
    assert_eq!(v["components"].as_array().unwrap().len(), 5);
    // A component's own header, through the same parser.
    let sbn = dir.join("cnu41.9-4-2ES26.sbn");
    let out = pfs(&["load", "inspect", "--json", sbn.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["header"]["file_name"], "cnu41.9-4-2ES26.sbn");

    // A folder with a second load: the manifest needs the load named.
    std::fs::copy(&loads, dir.join("SCCP42.9-4-2SR3-1S.loads")).unwrap();
    let many = pfs(&["manifest", d]);
    assert!(!many.status.success());
    assert!(String::from_utf8_lossy(&many.stderr).contains("--load"));
    assert!(
        pfs(&["manifest", d, "--load", "SCCP41.9-4-2SR3-1S"])
            .status
            .success()
    );
    assert!(pfs(&["manifest", "--verify", d]).status.success());
    // Or one manifest per load.
    let all = pfs(&["manifest", d, "--all"]);
    assert!(
        all.status.success(),
        "{}",
        String::from_utf8_lossy(&all.stderr)
    );
    for l in ["SCCP41.9-4-2SR3-1S", "SCCP42.9-4-2SR3-1S"] {
        assert!(dir.join(format!("pfs-manifest.{l}.json")).is_file());
    }
    assert!(pfs(&["manifest", d, "--all", "--verify"]).status.success());

    let cnf = base.join("XMLDefault.cnf.xml");
    std::fs::write(
        &cnf,
        "<Default><loadInformation434 model=\"Cisco 7942\">SIP42.9-4-2SR3-1S</loadInformation434>\
         <vendorConfig><peerFirmwareSharing>1</peerFirmwareSharing>\
         <loadServer>a&amp;b</loadServer></vendorConfig></Default>",
    )
    .unwrap();
    let c = cnf.to_str().unwrap();
    let out = pfs(&["config", "show", c, "--model", "CP-7942G"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("load: SIP42.9-4-2SR3-1S"), "{text}");
    assert!(text.contains("load_server: a&b"), "{text}");
    assert!(!text.contains("Some("), "no debug syntax: {text}");
    let out = pfs(&["config", "show", c, "--model", "434", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for key in [
        "load",
        "peer_firmware_sharing",
        "load_server",
        "log_server",
        "ipv6_load_server",
        "ipv6_log_server",
        "device_type",
    ] {
        assert!(v.get(key).is_some(), "{key} missing: {v}");
    }
    assert_eq!(v["load"], "SIP42.9-4-2SR3-1S");
    assert_eq!(v["peer_firmware_sharing"], true);
    assert_eq!(v["device_type"], 434);
    let out = pfs(&["config", "show", c, "--model", "Cisco 7961"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("load: -"));
    std::fs::write(&cnf, "<displayInstance/>").unwrap();
    let out = pfs(&["config", "show", c]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a phone configuration"));
    let _ = std::fs::remove_dir_all(&base);
}
