//! Fragment-filling TFTP blocks across a real routed WAN: tftpd-hpa and `pfs origin` in `hq`,
//! `pfs fetch` in a phone's namespace, a 1500-byte MTU on every link, so each block of the
//! default blksize (4428) crosses as 3 IP fragments. A router that drops IP fragments (nftables, as some firewalls
//! do) must cost one fallback to unfragmented blocks, logged, never the file.

use crate::common;

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use pfs::topology::{ORIGIN_ADDR, Site, SiteSpec};

use common::{Guard, scratch, start_tftpd};

/// `pfs fetch` in the phone's namespace; (success, stderr).
fn fetch(site: &Site, url: &str, out: &std::path::Path) -> (bool, String) {
    let _ = std::fs::remove_file(out);
    let o = Command::new("ip")
        .args(["netns", "exec", site.phones[0].name()])
        .arg(env!("CARGO_BIN_EXE_pfs"))
        .args(["fetch", url, "-o"])
        .arg(out)
        .output()
        .expect("run pfs fetch");
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn nft_in_router(site: &Site, rules: &str) {
    use std::io::Write;
    let mut c = Command::new("ip")
        .args(["netns", "exec", site.router.name(), "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("nft");
    c.stdin.take().unwrap().write_all(rules.as_bytes()).unwrap();
    assert!(c.wait().unwrap().success(), "nft -f: {rules}");
}

#[test]
fn fragmented_blocks_cross_the_wan_and_fall_back_when_fragments_are_dropped() {
    let _group = common::group(module_path!());
    if !common::privileged("blksize_netns") || !common::tool("in.tftpd") || !common::tool("nft") {
        return;
    }
    const {
        assert!(
            pfs::tftp::client::WAN_BLKSIZE > 1500 - 28,
            "the default fragments"
        )
    };
    pfs::netns::sweep_stale();
    let site = Site::build(&SiteSpec {
        phones: 1,
        wan_kbit: None,
        wan_burst: None,
        lan_kbit: None,
        wan_rtt_ms: None,
    })
    .expect("build the site");
    let root = scratch("blksize-origin");
    let file: Vec<u8> = (0..400_001u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(root.join("f.bin"), &file).unwrap();
    Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(&root)
        .status()
        .unwrap();
    let _tftpd = start_tftpd(&site, &root);
    let _origin = Guard(
        Command::new("ip")
            .args(["netns", "exec", site.hq.name()])
            .arg(env!("CARGO_BIN_EXE_pfs"))
            .args(["origin", "--root"])
            .arg(&root)
            .arg("--listen")
            .arg(format!("{ORIGIN_ADDR}:6969"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start pfs origin"),
    );
    std::thread::sleep(Duration::from_millis(500));
    let out = scratch("blksize-got").join("f.bin");
    let servers = [
        ("tftpd-hpa", format!("tftp://{ORIGIN_ADDR}/f.bin")),
        ("pfs origin", format!("tftp://{ORIGIN_ADDR}:6969/f.bin")),
    ];
    for (what, url) in &servers {
        let (ok, err) = fetch(&site, url, &out);
        assert!(ok, "{what}: {err}");
        assert!(std::fs::read(&out).unwrap() == file, "{what}: bytes differ");
        assert!(!err.contains("starting over"), "{what}, clean path: {err}");
    }
    // Every fragment (MF set or a non-zero offset) dropped in the router, both ways.
    nft_in_router(
        &site,
        "table ip pfs_frag {\n chain fw {\n  type filter hook forward priority 0; policy accept;\n  \
         ip frag-off & 0x3fff != 0 drop\n }\n}\n",
    );
    for (what, url) in &servers {
        let (ok, err) = fetch(&site, url, &out);
        assert!(ok, "{what} without fragments: {err}");
        assert!(std::fs::read(&out).unwrap() == file, "{what}: bytes differ");
        assert!(
            err.contains("starting over unfragmented"),
            "{what}: the fallback is logged: {err}"
        );
    }
}
