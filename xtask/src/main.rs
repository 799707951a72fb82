//! `cargo xtask ...`: project automation. Every command that needs the eBPF toolchain or
//! Debian packages runs `setup` first, which is idempotent and says exactly what it cannot do.

use std::{
    path::{Path, PathBuf},
    process::{Command, ExitCode},
    time::Instant,
};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

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
    // `pfs lab --compare --peers udpcast,bittorrent` runs what people would pick instead.
    // `pfs lab --loss` drops packets with nftables `numgen random` in the site router.
    "nftables",
    // `pfs lab --wan-rtt-ms` checks its delay line with ping from a phone.
    "iputils-ping",
    "udpcast",
    "aria2",
    "opentracker",
    "mktorrent",
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

fn setup() -> Result<()> {
    let start = Instant::now();
    let mut missing: Vec<String> = Vec::new();

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
    let release = root().join("target/release");
    run(Command::new(release.join("pfs"))
        .arg("generate-assets")
        .arg(release.join("assets")))?;
    run(&mut cargo(&["deb", "-p", "pfs", "--no-build"]))
}

fn demo() -> Result<()> {
    run(&mut cargo(&["build", "--package", "pfs"]))?;
    let pfs = root().join("target/debug/pfs");
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
    let mut cmd = Command::new(root().join("target/release/pfs"));
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
