//! `cargo xtask ...`: project automation. Every command that needs the eBPF toolchain or
//! Debian packages runs `setup` first, which is idempotent and says exactly what it cannot do.

use std::{
    path::{Path, PathBuf},
    process::{Command, ExitCode},
    time::Instant,
};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

mod sizes;

/// bpf-linker 0.10.4 builds against the nightly's own LLVM; newer ones need a system LLVM.
const BPF_LINKER_VERSION: &str = "0.10.4";
const NIGHTLY: &str = "nightly";
/// Debian packages the tests and demos use: `ip` for namespaces, bpftool to cross-check pinned
/// maps, a real TFTP server and clients for interop tests.
const DEBIAN_PACKAGES: &[&str] = &[
    "iproute2",
    "bpftool",
    "curl",
    "tftpd-hpa",
    "tftp-hpa",
    // atftpd's libraries: its package conflicts with tftpd-hpa, so it is unpacked, not installed.
    "libwrap0",
    "libpcre2-8-0",
    // rsvg-convert: the report tests render every SVG the lab writes.
    "librsvg2-bin",
    // `pfs lab --pcap` captures with tcpdump; the dissector test decodes with tshark.
    "tcpdump",
    "tshark",
    // The metrics test scrapes a peer with a real Prometheus and checks it with promtool.
    "prometheus",
    // systemd-analyze verify checks the package's units.
    "systemd",
    // HTTP interop: nginx and `python3 -m http.server` as origins, wget (and curl) as clients
    // of `pfs origin --http`.
    "nginx",
    "python3",
    "wget",
    // `pfs lab --compare --peers udpcast,bittorrent,uftp` runs what people would pick instead.
    // `pfs lab --loss` drops packets with nftables `numgen random` in the site router.
    "nftables",
    // `pfs lab --wan-rtt-ms` checks its delay line with ping from a phone.
    "iputils-ping",
    "udpcast",
    "aria2",
    "opentracker",
    "mktorrent",
    "uftp",
];
/// Where atftpd is unpacked (its Debian package conflicts with tftpd-hpa's).
const ATFTPD: &str = "target/tools/atftpd/usr/sbin/atftpd";

#[derive(Parser)]
#[command(name = "xtask", about = "pfs project automation")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what building and testing need (idempotent): nightly rust-src, bpf-linker,
    /// Debian packages.
    Setup,
    /// Setup, then fmt check, clippy -D warnings and every test (the CI command).
    Test {
        /// Extra arguments for `cargo test` (e.g. a test name filter).
        #[arg(trailing_var_arg = true)]
        args: Vec<String>,
    },
    /// Setup, build (release), then run the main job: `pfs lab --compare` on its defaults
    /// (extra arguments go to `pfs lab`).
    Lab {
        #[arg(trailing_var_arg = true)]
        args: Vec<String>,
    },
    /// Setup, build, then the XDP demo (counts exact broadcasts on a veth).
    Demo,
    /// Setup, build (release), generate man pages and completions, then `cargo deb`: prints
    /// the path of the .deb.
    Deb,
    /// Setup, then fuzz every target in fuzz/ (or one) with cargo-fuzz (libFuzzer, nightly)
    /// for `--secs` each; prints executions per target and fails on the first crash, naming
    /// the input that reproduces it (fuzz/artifacts/TARGET/).
    Fuzz {
        /// Seconds per target (a cap when `--runs` is given).
        #[arg(long, default_value_t = 60)]
        secs: u64,
        /// Stop each target after this many executions (libFuzzer `-runs`).
        #[arg(long)]
        runs: Option<u64>,
        /// One target (default: all of them, see fuzz/Cargo.toml).
        target: Option<String>,
    },
    /// Check the size limits: no source file over 800 lines, no function over 100 (unless
    /// marked as a codec table), beyond the listed exceptions. Part of `test`.
    Sizes {
        /// Rewrite xtask/size-exceptions.txt with the current sizes (refused if any grew).
        #[arg(long)]
        update: bool,
    },
    /// Setup, then run a benchmark from benches/ in release mode.
    Bench {
        #[arg(trailing_var_arg = true)]
        args: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Setup => setup(),
        Cmd::Test { args } => setup().and_then(|()| test(&args)),
        Cmd::Lab { args } => setup().and_then(|()| lab(&args)),
        Cmd::Demo => setup().and_then(|()| demo()),
        Cmd::Deb => setup().and_then(|()| deb()),
        Cmd::Fuzz { secs, runs, target } => {
            setup().and_then(|()| fuzz(secs, runs, target.as_deref()))
        }
        Cmd::Sizes { update } => sizes::check(&root(), update),
        Cmd::Bench { args } => setup().and_then(|()| bench(&args)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// Where cargo puts what it builds: `CARGO_TARGET_DIR` (relative to the workspace root when
/// relative), else `target/` (found by a fresh-user trial: the lab ran a binary that was
/// never built there).
fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => root().join(dir),
        None => root().join("target"),
    }
}

/// A cargo command in the workspace root, with the eBPF object made mandatory.
fn cargo(args: &[&str]) -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root())
        .args(args)
        .env("PFS_REQUIRE_EBPF", "1");
    cmd
}

fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("xtask: running {cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

fn output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn is_root() -> bool {
    output("id", &["-u"]).is_some_and(|uid| uid.trim() == "0")
}

/// Setup's Rust side: nightly rust-src, the pinned bpf-linker, cargo-deb, cargo-fuzz. What
/// cannot be installed here is added to `missing`.
fn rust_tools(missing: &mut Vec<String>) -> Result<()> {
    // 1. Nightly with rust-src, for -Z build-std=core on bpfel-unknown-none.
    match output("rustup", &["component", "list", "--toolchain", NIGHTLY, "--installed"]) {
        Some(list) if list.lines().any(|l| l.starts_with("rust-src")) => {}
        Some(_) => run(Command::new("rustup").args([
            "component",
            "add",
            "rust-src",
            "--toolchain",
            NIGHTLY,
        ]))
        .context("adding rust-src to the nightly toolchain")?,
        None => missing.push(format!(
            "nightly toolchain: rustup toolchain install {NIGHTLY} --profile minimal --component rust-src"
        )),
    }

    // 2. bpf-linker, exactly the pinned version.
    let linker = output("bpf-linker", &["--version"]).unwrap_or_default();
    if !linker.contains(BPF_LINKER_VERSION) {
        if !linker.is_empty() {
            eprintln!("xtask: found {}, want {BPF_LINKER_VERSION}", linker.trim());
        }
        let spec = format!("bpf-linker@{BPF_LINKER_VERSION}");
        let plus = format!("+{NIGHTLY}");
        run(Command::new("cargo").args([&plus, "install", &spec, "--locked", "--force"]))
            .with_context(|| {
                format!("installing {spec} (fix: cargo {plus} install {spec} --locked)")
            })?;
    }

    // 2b. cargo-deb, for `cargo xtask deb` and the package test.
    if output("cargo", &["deb", "--version"]).is_none() {
        run(Command::new("cargo").args(["install", "cargo-deb", "--locked"]))
            .context("installing cargo-deb (fix: cargo install cargo-deb --locked)")?;
    }

    // 2c. cargo-fuzz, for `cargo xtask fuzz` (and the fuzz smoke run in `cargo xtask test`).
    if output("cargo", &["fuzz", "--version"]).is_none() {
        run(Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]))
            .context("installing cargo-fuzz (fix: cargo install cargo-fuzz --locked)")?;
    }
    Ok(())
}

fn setup() -> Result<()> {
    let start = Instant::now();
    let mut missing: Vec<String> = Vec::new();

    rust_tools(&mut missing)?;

    // 3. Debian packages.
    let absent: Vec<&str> = DEBIAN_PACKAGES
        .iter()
        .copied()
        .filter(|p| {
            output("dpkg-query", &["-W", "-f=${Status}", p])
                .is_none_or(|s| !s.contains("install ok installed"))
        })
        .collect();
    if !absent.is_empty() {
        let fix = format!("apt-get update && apt-get install -y {}", absent.join(" "));
        if is_root() {
            run(Command::new("apt-get").arg("update"))?;
            run(Command::new("apt-get")
                .args(["install", "-y", "--no-install-recommends"])
                .args(&absent)
                .env("DEBIAN_FRONTEND", "noninteractive"))
            .with_context(|| format!("installing Debian packages (fix: {fix})"))?;
            // Debian's uftp enables uftpd on installation: a daemon on every interface that
            // accepts files from any sender. The lab runs its own in the phones' namespaces;
            // the host's is stopped and disabled (where systemd runs at all).
            if absent.contains(&"uftp") && Path::new("/run/systemd/system").exists() {
                run(Command::new("systemctl").args(["disable", "--now", "uftp.service"]))
                    .context("disabling the uftpd that Debian's uftp starts")?;
            }
        } else {
            missing.push(format!("Debian packages {absent:?}: sudo sh -c '{fix}'"));
        }
    }

    // 4. atftpd, unpacked beside the build (a second real TFTP server, with windowsize).
    let atftpd = root().join(ATFTPD);
    if !atftpd.exists() {
        let dir = root().join("target/tools");
        std::fs::create_dir_all(&dir)?;
        let fetched = Command::new("apt-get")
            .args(["download", "atftpd"])
            .current_dir(&dir)
            .status()
            .is_ok_and(|s| s.success());
        let deb = std::fs::read_dir(&dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.extension().is_some_and(|x| x == "deb"));
        match (fetched, deb) {
            (true, Some(deb)) => run(Command::new("dpkg-deb")
                .arg("-x")
                .arg(&deb)
                .arg(dir.join("atftpd")))?,
            _ => missing.push("atftpd: (cd target/tools && apt-get download atftpd && dpkg-deb -x atftpd_*.deb atftpd)".into()),
        }
    }

    if !missing.is_empty() {
        for m in &missing {
            eprintln!("xtask: missing {m}");
        }
        bail!(
            "setup incomplete: {} item(s) missing, see above",
            missing.len()
        );
    }
    eprintln!(
        "xtask: setup complete in {:.1}s",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

fn test(extra: &[String]) -> Result<()> {
    let start = Instant::now();
    run(&mut cargo(&["fmt", "--all", "--check"]))?;
    sizes::check(&root(), false)?;
    run(&mut cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    let mut cmd = cargo(&["test", "--workspace"]);
    cmd.args(extra);
    let (passed, failed) = run_counting_tests(&mut cmd)?;
    // A smoke run of every fuzz target: builds them (so they cannot rot) and replays the
    // corpus and regressions; the long runs are `cargo xtask fuzz`.
    fuzz(FUZZ_SMOKE_SECS, None, None)?;
    eprintln!(
        "xtask: all checks passed in {:.1}s",
        start.elapsed().as_secs_f64()
    );
    // One closing line over every test binary (cargo prints one per binary, the last often 0).
    println!("tests: {passed} passed, {failed} failed");
    if passed == 0 {
        bail!("no test ran");
    }
    Ok(())
}

/// Seconds per fuzz target in `cargo xtask test`.
const FUZZ_SMOKE_SECS: u64 = 4;
/// Every fuzz target (fuzz/fuzz_targets/NAME.rs), and which files of `../shared/real/` (real
/// Cisco files, never committed) seed its corpus when they are present.
const FUZZ_TARGETS: &[(&str, &[&str])] = &[
    ("wire_udp", &[]),
    ("wire_tcp", &[]),
    ("tftp_packet", &[]),
    ("manifest", &[]),
    ("loads", &[".loads", ".LOADS"]),
    ("cnf_xml", &[".xml"]),
    ("site_toml", &[]),
    ("phone_events", &[]),
    ("tree", &[]),
    ("tftp_server", &[]),
    ("tftp_client", &[]),
];

/// `cargo xtask fuzz`: each target for `secs` seconds, without a sanitizer (safe Rust: the
/// crashes looked for are panics, and libFuzzer runs several times faster without ASan).
fn fuzz(secs: u64, runs: Option<u64>, only: Option<&str>) -> Result<()> {
    use std::io::{BufRead, BufReader};
    let targets: Vec<_> = FUZZ_TARGETS
        .iter()
        .filter(|(t, _)| only.is_none_or(|o| o == *t))
        .collect();
    if targets.is_empty() {
        let names: Vec<_> = FUZZ_TARGETS.iter().map(|(t, _)| *t).collect();
        bail!("no fuzz target {only:?}; targets: {}", names.join(", "));
    }
    let fuzz_dir = root().join("fuzz");
    // Build first, so the time per target is fuzzing time (the build takes minutes).
    let mut build = Command::new("cargo");
    build
        .current_dir(&fuzz_dir)
        .args(["+nightly", "fuzz", "build", "--sanitizer", "none"])
        .args(only)
        .env("PFS_SKIP_EBPF", "1");
    run(&mut build)?;
    let mut table = Vec::new();
    for (target, seeds) in targets {
        let corpus = fuzz_dir.join("corpus").join(target);
        std::fs::create_dir_all(&corpus)?;
        let seed_dir = root().join("target/fuzz-seeds").join(target);
        let mut dirs = vec![corpus];
        if !seeds.is_empty()
            && let Ok(real) = std::fs::read_dir(root().join("../shared/real"))
        {
            std::fs::create_dir_all(&seed_dir)?;
            for e in real.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if seeds.iter().any(|s| name.ends_with(s)) {
                    std::fs::copy(e.path(), seed_dir.join(&name))?;
                }
            }
            dirs.push(seed_dir);
        }
        let mut cmd = Command::new("cargo");
        cmd.current_dir(&fuzz_dir)
            .args(["+nightly", "fuzz", "run", "--sanitizer", "none", target])
            .args(&dirs)
            .arg("--")
            .arg(format!("-max_total_time={secs}"))
            .args(runs.map(|n| format!("-runs={n}")))
            .arg("-print_final_stats=1")
            .env("PFS_SKIP_EBPF", "1")
            .stderr(std::process::Stdio::piped());
        eprintln!("xtask: running {cmd:?}");
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start {cmd:?}"))?;
        let stderr = child.stderr.take().expect("piped");
        let started = Instant::now();
        let (mut executed, mut tail) = (None, std::collections::VecDeque::new());
        for line in BufReader::new(stderr).lines() {
            let line = line?;
            // "stat::number_of_executed_units: N" (from -print_final_stats).
            if let Some(n) = line.strip_prefix("stat::number_of_executed_units:") {
                executed = n.trim().parse::<u64>().ok();
            }
            if tail.len() == 40 {
                tail.pop_front();
            }
            tail.push_back(line);
        }
        let status = child.wait()?;
        if !status.success() {
            for l in &tail {
                eprintln!("{l}");
            }
            bail!(
                "fuzz target {target} failed ({status}); the input is in fuzz/artifacts/{target}/ \
                 (replay: cd fuzz && cargo +nightly fuzz run -s none {target} fuzz/artifacts/{target}/<file>)"
            );
        }
        let executed = executed.with_context(|| format!("fuzz target {target}: no final stats"))?;
        table.push((*target, executed, started.elapsed().as_secs_f64()));
    }
    println!("fuzz: up to {secs} s per target, no crash");
    for (target, executed, took) in table {
        println!("  {target:<14} {executed:>12} executions in {took:>6.0} s");
    }
    Ok(())
}

/// Runs `cargo test`, echoing its output, and sums the `test result:` lines.
fn run_counting_tests(cmd: &mut Command) -> Result<(u64, u64)> {
    use std::io::{BufRead, BufReader};
    eprintln!("xtask: running {cmd:?}");
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    let stdout = child.stdout.take().expect("piped");
    let (mut passed, mut failed) = (0, 0);
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        println!("{line}");
        if let Some(rest) = line.strip_prefix("test result: ") {
            passed += count_of(rest, "passed");
            failed += count_of(rest, "failed");
        }
    }
    let status = child.wait()?;
    if !status.success() {
        println!("tests: {passed} passed, {} failed", failed.max(1));
        bail!("{cmd:?} failed with {status}");
    }
    Ok((passed, failed))
}

/// The number before `label` in "ok. 6 passed; 0 failed; ...".
fn count_of(text: &str, label: &str) -> u64 {
    text.split(';')
        .filter_map(|part| part.trim().rsplit_once(' '))
        .find(|(_, word)| *word == label)
        .and_then(|(head, _)| head.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

/// The release binary writes its own man pages and completions where the package's assets
/// say (target/release/assets), then cargo-deb packs what is built.
fn deb() -> Result<()> {
    run(&mut cargo(&["build", "--release", "-p", "pfs"]))?;
    let release = target_dir().join("release");
    run(Command::new(release.join("pfs"))
        .arg("generate-assets")
        .arg(release.join("assets")))?;
    run(&mut cargo(&["deb", "-p", "pfs", "--no-build"]))
}

fn demo() -> Result<()> {
    run(&mut cargo(&["build", "--package", "pfs"]))?;
    let pfs = target_dir().join("debug/pfs");
    let mut cmd = Command::new(pfs);
    cmd.args(["-v", "xdp", "demo"]);
    if !is_root() {
        bail!("the demo builds network namespaces and attaches XDP: run it as root");
    }
    run(&mut cmd)
}

fn lab(args: &[String]) -> Result<()> {
    if !is_root() {
        bail!("pfs lab builds network namespaces: run it as root");
    }
    run(&mut cargo(&["build", "--release", "--package", "pfs"]))?;
    let mut cmd = Command::new(target_dir().join("release/pfs"));
    cmd.args(["lab", "--compare", "--report"])
        .arg(root().join("target/lab-report"))
        .args(args);
    run(&mut cmd)
}

fn bench(args: &[String]) -> Result<()> {
    let mut cmd = cargo(&["run", "--release", "--package", "pfs-benches", "--"]);
    cmd.args(args);
    run(&mut cmd)
}
