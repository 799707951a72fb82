//! The Debian package: `cargo deb` packs the test's own `pfs` binary with its systemd units,
//! man pages and completions; `systemd-analyze verify` accepts the units once installed; the
//! installed `pfs --version` runs; the package is removed again, whatever happened.

use crate::common;

use std::process::Command;

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Purges the package when the test ends however it ends.
struct Installed;
impl Drop for Installed {
    fn drop(&mut self) {
        let _ = Command::new("dpkg").args(["--purge", "pfs"]).output();
    }
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn deb_builds_installs_runs_and_goes() {
    let _group = crate::common::group(module_path!());
    if !nix::unistd::geteuid().is_root() {
        assert!(
            !ci(),
            "installing a package needs root, and CI=true forbids skipping"
        );
        eprintln!("SKIPPED: installing a package needs root");
        return;
    }
    if !common::tool("cargo-deb") || !common::tool("dpkg") || !common::tool("systemd-analyze") {
        return;
    }
    let already = Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", "pfs"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"));
    if already || std::path::Path::new("/usr/bin/pfs").exists() {
        assert!(
            !ci(),
            "a pfs package or /usr/bin/pfs is already installed here"
        );
        eprintln!("SKIPPED: pfs is already installed on this host; not touching it");
        return;
    }
    // What cargo-deb packs, laid out as its assets name it (target/release/...), in a scratch
    // target directory: the binary under test, and the man pages and completions it writes.
    let dir = common::scratch("deb");
    let release = dir.join("release");
    std::fs::create_dir_all(&release).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_pfs"), release.join("pfs")).unwrap();
    run(Command::new(release.join("pfs"))
        .arg("generate-assets")
        .arg(release.join("assets")));
    let deb = dir.join("pfs.deb");
    run(Command::new("cargo")
        .args(["deb", "-p", "pfs", "--no-build", "--no-strip", "-o"])
        .arg(&deb)
        .env("CARGO_TARGET_DIR", &dir)
        .current_dir(env!("CARGO_MANIFEST_DIR")));
    let contents = run(Command::new("dpkg-deb").arg("-c").arg(&deb));
    for path in [
        "./usr/bin/pfs",
        "./lib/systemd/system/pfs-origin.service",
        "./lib/systemd/system/pfs-serve.service",
        "./etc/default/pfs-origin",
        "./usr/share/man/man1/pfs.1",
        "./usr/share/man/man1/pfs-origin.1",
        "./usr/share/man/man1/pfs-serve.1",
        "./usr/share/man/man1/pfs-peer.1",
        "./usr/share/man/man1/pfs-fleet.1",
        "./usr/share/man/man1/pfs-lab.1",
        "./usr/share/man/man1/pfs-xdp-attach.1",
        "./usr/share/bash-completion/completions/pfs",
        "./usr/share/zsh/vendor-completions/_pfs",
        "./usr/share/fish/vendor_completions.d/pfs.fish",
    ] {
        assert!(
            contents.contains(path),
            "{path} not in the package:\n{contents}"
        );
    }

    let _installed = Installed;
    run(Command::new("dpkg").arg("-i").arg(&deb));
    // Units: syntax, directives, and that ExecStart's binary exists (man pages are checked
    // above; this host may have no `man`).
    run(Command::new("systemd-analyze").args([
        "verify",
        "--man=no",
        "/lib/systemd/system/pfs-origin.service",
        "/lib/systemd/system/pfs-serve.service",
    ]));
    let origin = std::fs::read_to_string("/lib/systemd/system/pfs-origin.service").unwrap();
    assert!(origin.contains("DynamicUser=yes"));
    assert!(origin.contains("CapabilityBoundingSet=CAP_NET_BIND_SERVICE\n"));
    // HTTP is one setting away: the unit passes PFS_ORIGIN_HTTP (empty: off) and the shipped
    // /etc/default/pfs-origin (a conffile) documents it.
    assert!(origin.contains(" PFS_ORIGIN_HTTP= "), "{origin}");
    let defaults = std::fs::read_to_string("/etc/default/pfs-origin").unwrap();
    assert!(defaults.contains("#PFS_ORIGIN_HTTP=0.0.0.0"), "{defaults}");
    let conffiles = run(Command::new("dpkg-query").args(["-W", "-f=${Conffiles}", "pfs"]));
    assert!(conffiles.contains("/etc/default/pfs-origin"), "{conffiles}");
    let serve = std::fs::read_to_string("/lib/systemd/system/pfs-serve.service").unwrap();
    assert!(serve.contains("CapabilityBoundingSet=CAP_BPF CAP_NET_ADMIN\n"));
    let version = run(Command::new("/usr/bin/pfs").arg("--version"));
    assert_eq!(
        version.trim(),
        format!("pfs {}", env!("CARGO_PKG_VERSION")),
        "the installed binary runs"
    );
    drop(_installed);
    assert!(
        !std::path::Path::new("/usr/bin/pfs").exists(),
        "the package is removed again"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
