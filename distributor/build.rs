//! Builds the XDP program (`ebpf/`, nightly, bpfel-unknown-none) and leaves it in OUT_DIR, where
//! `src/xdp.rs` embeds it with `include_bytes_aligned!`.
//!
//! When the eBPF toolchain is missing (no nightly rust-src or no bpf-linker) the build still
//! succeeds with an empty object, so `cargo build` works on a bare stable toolchain; `pfs xdp`
//! then says how to fix it. `PFS_REQUIRE_EBPF=1` (set by `cargo xtask test`) makes that a hard
//! error so CI can never ship a binary without its XDP program.
use std::{env, fs, path::PathBuf};

const OBJECT: &str = "pfs-xdp";
const NIGHTLY: &str = "nightly";

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-env-changed=PFS_REQUIRE_EBPF");
    println!("cargo:rerun-if-env-changed=PFS_SKIP_EBPF");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let required = env::var("PFS_REQUIRE_EBPF").is_ok_and(|v| v == "1");
    let skipped = env::var("PFS_SKIP_EBPF").is_ok_and(|v| v == "1");

    let manifest_dir = env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let ebpf_dir = PathBuf::from(&manifest_dir).join("../ebpf");
    let ebpf_dir = ebpf_dir.to_str().expect("utf-8 path");

    let result = if skipped {
        Err(anyhow::anyhow!("PFS_SKIP_EBPF=1"))
    } else {
        let package = aya_build::Package {
            name: "pfs-ebpf",
            root_dir: ebpf_dir,
            ..Default::default()
        };
        aya_build::build_ebpf([package], aya_build::Toolchain::Custom(NIGHTLY))
    };
    match result {
        Ok(()) => {
            println!("cargo:rustc-cfg=pfs_ebpf_built");
        }
        Err(err) if !required => {
            println!(
                "cargo:warning=XDP program not built ({err}); pfs xdp will be unavailable. \
                 Fix: cargo xtask setup"
            );
            fs::write(out_dir.join(OBJECT), [])?;
        }
        Err(err) => return Err(err.context("building the XDP program (PFS_REQUIRE_EBPF=1)")),
    }
    println!("cargo::rustc-check-cfg=cfg(pfs_ebpf_built)");
    git_commit(&manifest_dir);
    Ok(())
}

/// `PFS_GIT_COMMIT`: the commit checked out when this was built, for the lab report's head.
/// Unset outside a git checkout (the report then says `unknown`).
fn git_commit(dir: &str) {
    let git = |args: &[&str]| -> Option<String> {
        let out = std::process::Command::new("git")
            .args(args)
            .current_dir(dir)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let Some(commit) = git(&["rev-parse", "--short=12", "HEAD"]) else {
        return;
    };
    println!("cargo:rustc-env=PFS_GIT_COMMIT={commit}");
    // Rebuilt when HEAD moves: a checkout changes HEAD, a commit the branch's ref.
    for path in ["HEAD", "logs/HEAD"] {
        if let Some(p) = git(&["rev-parse", "--path-format=absolute", "--git-path", path]) {
            println!("cargo:rerun-if-changed={p}");
        }
    }
}
