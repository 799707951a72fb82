//! What people would run instead of pfs, on the lab's own site (`pfs lab --compare --peers`):
//! udpcast and BitTorrent, on the same namespaces, the same shaping, the same loads and the same
//! phones, counted from the same power-on instant and verified against the same manifests.
//!
//! - **udpcast**: the site router (the one host at the site) fetches each model's load from
//!   the origin across the WAN with pfs's own client (what a pfs root uses), then multicasts
//!   each file with `udp-sender` on the site bridge to an `udp-receiver` in every phone's
//!   namespace. Both stages count.
//! - **BitTorrent**: `opentracker` and a seeding `aria2c` in hq, one torrent per model made
//!   with `mktorrent` from the origin's load folder, and an `aria2c` leecher in every phone's
//!   namespace (no DHT, local peer discovery on, no seeding after completion).
//! - **uftp** (multicast with a proxy; it fits this topology as its manual's figure 1 draws
//!   it): the `uftp` server in hq sends each model's load folder from the origin's own files,
//!   multicast on hq's loopback to a server proxy (`uftpproxyd -s`) beside it, which tunnels
//!   it by unicast across the WAN, once, to a client proxy (`uftpproxyd -c`) on the site
//!   router; that proxy multicasts it on the site bridge to a `uftpd` in every phone's
//!   namespace and aggregates their answers. No site host stores the load first: the WAN and
//!   the LAN stage overlap, as they do in pfs. A closed group (`-H` the phones' ids, `-j`
//!   the proxy) lets the session start as soon as every phone has registered.
//!
//! Every process runs under [`Procs`], which kills and reaps it when the run ends, also on an
//! error or a panic; every run is bounded by the lab's deadline.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::{
    lab::{Lab, LabError, LabReport},
    phone::Mode,
    topology::{BRIDGE, ORIGIN_ADDR, PHONE_IFACE},
};

mod bittorrent;
mod udpcast;
mod uftp;

/// An external system `--peers` can add to a comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Peer {
    /// udp-sender / udp-receiver (Debian `udpcast`) from the site router.
    Udpcast,
    /// opentracker + aria2c (Debian `opentracker`, `aria2`, `mktorrent`).
    Bittorrent,
    /// uftp server in hq, uftpproxyd tunnelling it to the site, uftpd per phone (Debian `uftp`).
    Uftp,
}

/// Which system a lab run measured: a pfs mode, or an external system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum System {
    Pfs(Mode),
    Udpcast,
    Bittorrent,
    Uftp,
}

impl Default for System {
    fn default() -> Self {
        System::Pfs(Mode::Pipelined)
    }
}

impl From<Mode> for System {
    fn from(m: Mode) -> Self {
        System::Pfs(m)
    }
}

impl From<Peer> for System {
    fn from(p: Peer) -> Self {
        match p {
            Peer::Udpcast => System::Udpcast,
            Peer::Bittorrent => System::Bittorrent,
            Peer::Uftp => System::Uftp,
        }
    }
}

impl PartialEq<Mode> for System {
    fn eq(&self, m: &Mode) -> bool {
        *self == System::Pfs(*m)
    }
}

impl System {
    /// The pfs mode, if this was pfs.
    pub fn mode(self) -> Option<Mode> {
        match self {
            System::Pfs(m) => Some(m),
            _ => None,
        }
    }
}

impl std::fmt::Display for System {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            System::Pfs(m) => m.fmt(f),
            System::Udpcast => f.write_str("udpcast"),
            System::Bittorrent => f.write_str("bittorrent"),
            System::Uftp => f.write_str("uftp"),
        }
    }
}

impl serde::Serialize for System {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            System::Pfs(m) => m.serialize(s),
            other => s.serialize_str(&other.to_string()),
        }
    }
}

/// The programs a system needs, each with the Debian package that has it.
pub fn needs(p: Peer) -> &'static [(&'static str, &'static str)] {
    match p {
        Peer::Udpcast => &[("udp-sender", "udpcast"), ("udp-receiver", "udpcast")],
        Peer::Bittorrent => &[
            ("opentracker", "opentracker"),
            ("aria2c", "aria2"),
            ("mktorrent", "mktorrent"),
        ],
        Peer::Uftp => &[("uftp", "uftp"), ("uftpd", "uftp"), ("uftpproxyd", "uftp")],
    }
}

/// The first program of `p` that is not on PATH, as an error naming its package.
pub fn check_installed(p: Peer) -> Result<(), LabError> {
    for (prog, pkg) in needs(p) {
        if which(prog).is_none() {
            return Err(LabError::Setup(format!(
                "{prog} not found: the {} comparison needs the Debian package {pkg} \
                 (cargo xtask setup, or apt-get install {pkg})",
                System::from(p)
            )));
        }
    }
    Ok(())
}

pub fn which(prog: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(prog))
        .find(|p| p.is_file())
}

/// Child processes of one run: killed and reaped on drop, whatever happened.
#[derive(Default)]
pub struct Procs {
    kids: Vec<Child>,
}

impl Procs {
    /// Starts `argv` in namespace `ns`, its output appended to `log`; returns its index.
    pub fn spawn(&mut self, ns: &str, argv: &[String], log: &Path) -> Result<usize, LabError> {
        self.spawn_in(ns, argv, log, Path::new("/"))
    }

    /// [`Procs::spawn`] with the working directory `cwd`.
    pub fn spawn_in(
        &mut self,
        ns: &str,
        argv: &[String],
        log: &Path,
        cwd: &Path,
    ) -> Result<usize, LabError> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| LabError::Setup(format!("{}: {e}", log.display())))?;
        let err = out
            .try_clone()
            .map_err(|e| LabError::Setup(format!("{}: {e}", log.display())))?;
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .args(argv)
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| LabError::Setup(format!("ip netns exec {ns} {}: {e}", argv[0])))?;
        self.kids.push(child);
        Ok(self.kids.len() - 1)
    }

    /// `Some(success)` once child `i` has exited.
    pub fn poll(&mut self, i: usize) -> Option<bool> {
        match self.kids[i].try_wait() {
            Ok(Some(st)) => Some(st.success()),
            Ok(None) => None,
            Err(_) => Some(false),
        }
    }

    /// Kills and reaps every child; the pids of any still alive after (none expected).
    pub fn stop(&mut self) -> Vec<u32> {
        for c in &mut self.kids {
            if let Ok(None) = c.try_wait() {
                let _ = c.kill();
            }
            let _ = c.wait();
        }
        let stray = self
            .kids
            .iter()
            .map(Child::id)
            .filter(|&pid| Path::new(&format!("/proc/{pid}")).exists() && !is_zombie_or_reused(pid))
            .collect();
        self.kids.clear();
        stray
    }
}

/// Polls every process of `running` (phone, process index) that has not ended yet, calling
/// `ended(phone, success)` for each that has and marking it ended (`usize::MAX`); how many
/// ended now.
pub(super) fn poll_ended(
    procs: &mut Procs,
    running: &mut [(usize, usize)],
    mut ended: impl FnMut(usize, bool),
) -> usize {
    let mut n = 0;
    for (i, k) in running.iter_mut() {
        if *k == usize::MAX {
            continue;
        }
        if let Some(ok) = procs.poll(*k) {
            ended(*i, ok);
            *k = usize::MAX;
            n += 1;
        }
    }
    n
}

/// After `wait`, a pid that exists again belongs to someone else (or is gone); only a
/// process still named like ours counts as stray.
fn is_zombie_or_reused(pid: u32) -> bool {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    !matches!(
        comm.trim(),
        "udp-sender"
            | "udp-receiver"
            | "aria2c"
            | "opentracker"
            | "uftp"
            | "uftpd"
            | "uftpproxyd"
            | "ip"
    )
}

impl Drop for Procs {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Multicast routes for the run: the site router (no default route) on its bridge, and every
/// phone on its port (udpcast's rendezvous, aria2's local peer discovery); removed on drop.
pub(super) struct McastRoutes<'a>(&'a Lab);

const MCAST: &str = "224.0.0.0/4";

impl<'a> McastRoutes<'a> {
    fn add(lab: &'a Lab) -> McastRoutes<'a> {
        let _ = lab.site.router.ip(&["route", "add", MCAST, "dev", BRIDGE]);
        for ph in &lab.site.phones {
            let _ = ph.ip(&["route", "add", MCAST, "dev", PHONE_IFACE]);
        }
        McastRoutes(lab)
    }
}

impl Drop for McastRoutes<'_> {
    fn drop(&mut self) {
        let _ = self
            .0
            .site
            .router
            .ip(&["route", "del", MCAST, "dev", BRIDGE]);
        for ph in &self.0.site.phones {
            let _ = ph.ip(&["route", "del", MCAST, "dev", PHONE_IFACE]);
        }
    }
}

/// Appends a line of pfs's own to a tool's log.
pub(super) fn note(log: &Path, line: &str) {
    use std::io::Write as _;
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(log)
    {
        let _ = writeln!(f, "{line}");
    }
}

/// The words of a command line, and how it reads in the report.
pub(super) fn argv(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| (*w).to_owned()).collect()
}

pub(super) fn shown(ns: &str, argv: &[String]) -> String {
    let words: Vec<String> = argv
        .iter()
        .map(|w| {
            if w.contains(' ') {
                format!("'{w}'")
            } else {
                w.clone()
            }
        })
        .collect();
    format!("ip netns exec {ns} {}", words.join(" "))
}

/// Runs `p` on `lab`'s site and reports it like a pfs run.
pub fn run(lab: &Lab, p: Peer) -> Result<LabReport, LabError> {
    check_installed(p)?;
    let dir = lab.work_dir().join(format!("peer-{}", System::from(p)));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| LabError::Setup(format!("{dir:?}: {e}")))?;
    let cfg = lab.config();
    let wan0 = lab.site.wan_tx_bytes()?;
    let sampler = crate::report::sample::Sampler::start(
        lab.site.hq.name(),
        crate::topology::HQ_WAN_IFACE,
        Duration::from_millis(100),
        cfg.deadline * 2 + Duration::from_secs(60),
    );
    let mut procs = Procs::default();
    // Each system sets up what hq and the site would already run (tracker, seed, routes),
    // then sets `start`: the phones' power-on, which every completion counts from.
    let mut start = Instant::now();
    let routes = McastRoutes::add(lab);
    let out = match p {
        Peer::Udpcast => udpcast::udpcast(lab, &dir, &mut procs, &mut start),
        Peer::Bittorrent => bittorrent::bittorrent(lab, &dir, &mut procs, &mut start),
        Peer::Uftp => uftp::uftp(lab, &dir, &mut procs, &mut start),
    };
    drop(routes);
    let stray = procs.stop();
    let wan_link_bytes = lab.site.wan_tx_bytes()? - wan0;
    let source = sampler.source.clone();
    let samples = sampler.stop(start);
    let out = out.map_err(|e| {
        let logs = LOGS
            .iter()
            .filter_map(|l| std::fs::read_to_string(dir.join(l)).ok())
            .collect::<String>();
        let tail: Vec<&str> = logs.lines().rev().take(12).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        LabError::Setup(format!(
            "{e}\nlast lines of its output:\n{}",
            tail.join("\n")
        ))
    })?;
    let mut r = summarise(lab, p, &dir, &out, wan_link_bytes);
    r.wan_samples = samples;
    r.wan_samples_source = source;
    for pid in stray {
        r.violations
            .push(format!("process {pid} still ran after the run"));
    }
    // PFS_PEER_LOGS=DIR keeps each tool's output (the lab's own folder goes with the lab).
    if let Some(keep) = std::env::var_os("PFS_PEER_LOGS") {
        let keep = PathBuf::from(keep);
        let _ = std::fs::create_dir_all(&keep);
        for l in LOGS {
            let _ = std::fs::copy(dir.join(l), keep.join(l));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(r)
}

/// Each system's log in its run folder (every process's output, and pfs's own notes).
const LOGS: [&str; 3] = ["udpcast.log", "bittorrent.log", "uftp.log"];

/// What a run produced: when each phone finished (from the common start), where its files
/// are, and the exact commands.
pub(super) struct Outcome {
    pub(super) done: Vec<Option<f64>>,
    /// Each phone's folder holding its model's files by their manifest names.
    pub(super) dirs: Vec<PathBuf>,
    /// Firmware bytes fetched from the origin, when the system says (udpcast's stage 1).
    pub(super) origin_bytes: Option<u64>,
    pub(super) commands: Vec<String>,
}

/// Phones of model `m` (phones take the models in turn).
pub(super) fn phones_of(lab: &Lab, m: usize) -> Vec<usize> {
    (m..lab.config().phones)
        .step_by(lab.manifests().len())
        .collect()
}

/// Waits until something listens on TCP `port` in `ns` (bounded).
pub(super) fn wait_listening(lab: &Lab, port: u16, max: Duration) -> Result<(), LabError> {
    let t0 = Instant::now();
    while t0.elapsed() < max {
        let up = lab
            .site
            .hq
            .run(move || {
                std::net::TcpStream::connect_timeout(
                    &(ORIGIN_ADDR, port).into(),
                    Duration::from_millis(200),
                )
                .is_ok()
            })
            .unwrap_or(false);
        if up {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(LabError::Setup(format!(
        "nothing listens on {ORIGIN_ADDR}:{port} after {max:?}"
    )))
}

fn summarise(lab: &Lab, p: Peer, _dir: &Path, out: &Outcome, wan_link_bytes: u64) -> LabReport {
    let cfg = lab.config();
    let manifests = lab.manifests();
    let load_bytes = manifests[0].2.load_bytes();
    let models = manifests.len() as u32;
    let mut completions = Vec::new();
    let mut corrupt = 0;
    let mut phone_times = Vec::new();
    let mut unverified = Vec::new();
    for i in 0..cfg.phones {
        let (model, _, man) = &manifests[i % manifests.len()];
        // Whatever the tool printed, a phone is done only when its bytes verify.
        let at = match out.done[i] {
            Some(at) => match man.verify_dir(&out.dirs[i]) {
                Ok(()) => Some(at),
                Err(e) => {
                    corrupt += 1;
                    unverified.push(format!("phone {i}: {e}"));
                    None
                }
            },
            None => None,
        };
        if let Some(at) = at {
            completions.push(at);
        }
        phone_times.push(crate::report::PhoneTime {
            phone: lab.site.phone_addrs[i],
            model: model.clone(),
            installed_s: at,
            fallbacks: 0,
        });
    }
    let c = crate::fleet::Completions::of(&completions);
    let wan_rate = cfg.wan_mbit * 1e6 / 8.0;
    let wan_bytes = out.origin_bytes.unwrap_or(wan_link_bytes);
    let mut r = LabReport {
        mode: p.into(),
        phones: cfg.phones as u32,
        completed: completions.len() as u32,
        corrupt_installs: corrupt,
        wan_bytes,
        wan_link_bytes,
        wan_overhead_bytes: wan_link_bytes.saturating_sub(wan_bytes),
        load_bytes,
        models,
        makespan_s: c.max_s,
        limit_s: f64::from(models) * load_bytes as f64 / wan_rate,
        completion_p50_s: c.p50_s,
        completion_p90_s: c.p90_s,
        completion_p99_s: c.p99_s,
        completion_max_s: c.max_s,
        wan_mbit: cfg.wan_mbit,
        lan_mbit: cfg.lan_mbit,
        backend: "external".into(),
        completions,
        phone_times,
        commands: out.commands.clone(),
        ..Default::default()
    };
    r.violations = r.cross_check();
    for u in unverified.into_iter().take(5) {
        r.violations
            .push(format!("delivered bytes do not verify: {u}"));
    }
    r
}
