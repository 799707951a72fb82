//! `pfs simulate` as a user runs it.

/// `pfs simulate --swarm N`: passes on healthy settings; on a failure it names the seed and
/// prints the command line that reproduces it, and that line does reproduce it.
#[test]
fn swarm_reports_a_reproducible_failure() {
    let _group = crate::common::group(module_path!());
    let pfs = env!("CARGO_BIN_EXE_pfs");
    let ok = std::process::Command::new(pfs)
        .args(["simulate", "--phones", "60", "--swarm", "5"])
        .output()
        .unwrap();
    assert!(ok.status.success(), "{ok:?}");
    assert!(String::from_utf8_lossy(&ok.stdout).contains("swarm: 5 seeds passed"));
    // Half a second of virtual time is too short for anyone to install: every seed fails.
    let bad = std::process::Command::new(pfs)
        .args([
            "simulate",
            "--phones",
            "60",
            "--max-sim-s",
            "0.5",
            "--swarm",
            "5",
        ])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1), "{bad:?}");
    let out = String::from_utf8_lossy(&bad.stdout);
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix("reproduce: pfs "))
        .unwrap_or_else(|| panic!("no reproduce line in {out:?}"));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("stuck"),
        "{bad:?}"
    );
    let again = std::process::Command::new(pfs)
        .args(line.split_whitespace())
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(1), "{line}: {again:?}");
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("stuck"),
        "{again:?}"
    );
}
