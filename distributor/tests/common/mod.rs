//! Helpers shared by the integration tests.

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
