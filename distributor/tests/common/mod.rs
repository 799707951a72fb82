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
