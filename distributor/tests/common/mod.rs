//! Helpers shared by the integration tests (each test binary uses a subset).
#![allow(dead_code)]

/// Whether an external program is installed. Under `CI=true` a missing one is a failure.
pub fn tool(name: &str) -> bool {
    let found = std::process::Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!(
                "{name} is missing and CI=true forbids skipping (cargo xtask setup installs it)"
            );
        }
        eprintln!("SKIPPED: {name} not installed (cargo xtask setup installs it)");
    }
    found
}

/// Whether a test that needs root, namespaces and BPF can run here. Under `CI=true` a missing
/// privilege is a failure, never a skip.
pub fn privileged(test: &str) -> bool {
    if pfs::netns::can_create() {
        return true;
    }
    let why = "needs root and iproute2 (network namespaces, XDP)";
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: {why}, and CI=true forbids skipping");
    }
    eprintln!("SKIPPED {test}: {why}");
    false
}

/// Kills the process when the test ends however it ends.
pub struct Guard(pub std::process::Child);
impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An empty scratch directory for this test process.
pub fn scratch(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("pfs-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The real tftpd-hpa serving `root` in the site's `hq` namespace.
pub fn start_tftpd(site: &pfs::topology::Site, root: &std::path::Path) -> Guard {
    use std::process::{Command, Stdio};
    let child = Command::new("ip")
        .args(["netns", "exec", site.hq.name(), "in.tftpd", "--foreground"])
        .args(["--listen", "--address"])
        .arg(format!("{}:69", pfs::topology::ORIGIN_ADDR))
        .arg("--secure")
        .arg(root)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start in.tftpd");
    Guard(child)
}
