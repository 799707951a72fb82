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
struct McastRoutes<'a>(&'a Lab);

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
fn note(log: &Path, line: &str) {
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
fn argv(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| (*w).to_owned()).collect()
}

fn shown(ns: &str, argv: &[String]) -> String {
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
        Peer::Udpcast => udpcast(lab, &dir, &mut procs, &mut start),
        Peer::Bittorrent => bittorrent(lab, &dir, &mut procs, &mut start),
        Peer::Uftp => uftp(lab, &dir, &mut procs, &mut start),
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
struct Outcome {
    done: Vec<Option<f64>>,
    /// Each phone's folder holding its model's files by their manifest names.
    dirs: Vec<PathBuf>,
    /// Firmware bytes fetched from the origin, when the system says (udpcast's stage 1).
    origin_bytes: Option<u64>,
    commands: Vec<String>,
}

/// Phones of model `m` (phones take the models in turn).
fn phones_of(lab: &Lab, m: usize) -> Vec<usize> {
    (m..lab.config().phones)
        .step_by(lab.manifests().len())
        .collect()
}

fn udpcast(
    lab: &Lab,
    dir: &Path,
    procs: &mut Procs,
    start: &mut Instant,
) -> Result<Outcome, LabError> {
    *start = Instant::now();
    let start = *start;
    let deadline = start + lab.config().deadline;
    let n = lab.config().phones;
    let router = lab.site.router.name().to_owned();
    let log = dir.join("udpcast.log");
    let mut commands = vec![format!(
        "stage 1, in {router}: pfs's TFTP client (windowed, as a pfs root) fetches each model's \
         load from tftp://{ORIGIN_ADDR}/<load folder> into the router's store"
    )];
    // Stage 1: the site host fetches every model's load across the WAN.
    let mut origin_bytes = 0;
    let mut sources = Vec::new();
    for (m, (_, folder, man)) in lab.manifests().iter().enumerate() {
        let store = crate::store::Store::new(&dir.join(format!("site-{m}")));
        let folder = folder.clone();
        let s2 = store.clone();
        let rep = lab
            .site
            .router
            .run(move || {
                crate::fetch::fetch_load(
                    (ORIGIN_ADDR, 69).into(),
                    &folder,
                    &s2,
                    None,
                    crate::tftp::client::ClientConfig::default(),
                )
            })?
            .map_err(|e| LabError::Setup(format!("udpcast stage 1 (WAN fetch): {e}")))?;
        origin_bytes += rep.bytes;
        sources.push(store.load_dir(&man.load));
    }
    // Stage 2: one multicast session per file, to every phone of its model at once.
    let rate = lab.config().lan_mbit.map(|m| ((m * 0.95) as u64).max(1));
    let mut done = vec![None; n];
    let mut missed = vec![false; n];
    let dirs: Vec<PathBuf> = (0..n)
        .map(|i| {
            let m = &lab.manifests()[i % lab.manifests().len()].2;
            dir.join(format!("phone{i}")).join(&m.load)
        })
        .collect();
    for d in &dirs {
        std::fs::create_dir_all(d).map_err(|e| LabError::Setup(format!("{d:?}: {e}")))?;
    }
    let timeout = deadline
        .saturating_duration_since(Instant::now())
        .as_secs()
        .max(5)
        .to_string();
    for (m, (_, _, man)) in lab.manifests().iter().enumerate() {
        let phones = phones_of(lab, m);
        let portbase = (9000 + 2 * m).to_string();
        // One session for the whole load, as a lab sends an image: a session costs a fixed
        // ~2.5 s of rendezvous and teardown (measured: 2.5 s for a 1 KiB file), so one per
        // file would charge udpcast 6 of them. The site host packs the fetched load with tar
        // (counted), each receiver unpacks it as it arrives.
        let tarball = dir.join(format!("load-{m}.tar"));
        let packed = Command::new("tar")
            .arg("cf")
            .arg(&tarball)
            .arg("-C")
            .arg(&sources[m])
            .args(man.files.iter().map(|f| f.name.as_str()))
            .status()
            .map_err(|e| LabError::Setup(format!("tar: {e}")))?;
        if !packed.success() {
            return Err(LabError::Setup(
                "tar could not pack the fetched load".into(),
            ));
        }
        commands.push(format!(
            "in {router}: tar cf {} -C {} <the manifest's files>",
            tarball.display(),
            sources[m].display()
        ));
        {
            let f = &man;
            let src = &tarball;
            let count = phones.len().to_string();
            let mut a = argv(&[
                "udp-sender",
                "--interface",
                BRIDGE,
                "--portbase",
                &portbase,
                "--mcast-rdv-address",
                RDV,
                "--nokbd",
                "--no-progress",
                "--min-receivers",
                &count,
                "--max-wait",
                &timeout,
                "--file",
                &src.to_string_lossy(),
            ]);
            if let Some(mbit) = rate {
                a.extend(argv(&["--max-bitrate", &format!("{mbit}m")]));
            }
            commands.push(shown(&router, &a));
            // The sender first, as a lab scripts it: it waits for every receiver, and each
            // receiver's first hello finds it listening.
            let tx = procs.spawn(&router, &a, &log)?;
            std::thread::sleep(Duration::from_millis(20));
            let mut rx = Vec::new();
            for &i in &phones {
                let unpack = format!("tar x -C {}", dirs[i].display());
                let a = argv(&[
                    "udp-receiver",
                    "--interface",
                    PHONE_IFACE,
                    "--portbase",
                    &portbase,
                    "--mcast-rdv-address",
                    RDV,
                    "--nokbd",
                    "--no-progress",
                    "--start-timeout",
                    &timeout,
                    "--receive-timeout",
                    "30",
                    "--pipe",
                    &unpack,
                ]);
                let ns = lab.site.phones[i].name().to_owned();
                if i == phones[0] {
                    commands.push(shown(&ns, &a));
                }
                rx.push((i, procs.spawn(&ns, &a, &log)?));
            }
            let t_file = Instant::now();
            let mut sender_done = false;
            let mut left = rx.len();
            let mut failed = 0;
            while left > 0 || !sender_done {
                if failed == rx.len() || Instant::now() > deadline {
                    return Err(LabError::Setup(format!(
                        "udpcast: of {} receivers of {}, {failed} failed and {left} still ran \
                         at the end (sender done: {sender_done})",
                        rx.len(),
                        f.load
                    )));
                }
                if !sender_done && procs.poll(tx).is_some() {
                    sender_done = true;
                }
                for (i, k) in rx.iter_mut() {
                    if *k == usize::MAX {
                        continue;
                    }
                    if let Some(ok) = procs.poll(*k) {
                        // The last file's end is the phone's completion; a failed receiver
                        // leaves the phone incomplete (and its bytes unverified).
                        done[*i] = ok.then(|| start.elapsed().as_secs_f64());
                        missed[*i] |= !ok;
                        failed += usize::from(!ok);
                        *k = usize::MAX;
                        left -= 1;
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            note(
                &log,
                &format!(
                    "pfs: {} took {:.2} s",
                    f.load,
                    t_file.elapsed().as_secs_f64()
                ),
            );
        }
    }
    // A phone that missed an earlier file is not complete either.
    for (d, bad) in done.iter_mut().zip(&missed) {
        if *bad {
            *d = None;
        }
    }
    Ok(Outcome {
        done,
        dirs,
        origin_bytes: Some(origin_bytes),
        commands,
    })
}

/// hq's loopback carries the uftp server's multicast to the server proxy beside it; the
/// flag and the route go when the run ends.
struct HqLoopbackMcast<'a>(&'a Lab);

impl<'a> HqLoopbackMcast<'a> {
    fn add(lab: &'a Lab) -> Result<HqLoopbackMcast<'a>, LabError> {
        let hq = &lab.site.hq;
        hq.ip(&["link", "set", "lo", "multicast", "on"])
            .and_then(|_| hq.ip(&["route", "add", MCAST, "dev", "lo"]))
            .map_err(|e| LabError::Setup(format!("uftp: multicast on hq's loopback: {e}")))?;
        Ok(HqLoopbackMcast(lab))
    }
}

impl Drop for HqLoopbackMcast<'_> {
    fn drop(&mut self) {
        let hq = &self.0.site.hq;
        let _ = hq.ip(&["route", "del", MCAST, "dev", "lo"]);
        let _ = hq.ip(&["link", "set", "lo", "multicast", "off"]);
    }
}

/// A uftp member id: the address as 0xNNNNNNNN (what uftp derives by default).
fn uftp_id(a: std::net::Ipv4Addr) -> String {
    format!("0x{:08X}", u32::from(a))
}

fn uftp(
    lab: &Lab,
    dir: &Path,
    procs: &mut Procs,
    start: &mut Instant,
) -> Result<Outcome, LabError> {
    let cfg = lab.config();
    let n = cfg.phones;
    let hq = lab.site.hq.name().to_owned();
    let router = lab.site.router.name().to_owned();
    let log = dir.join("uftp.log");
    let mut commands = Vec::new();
    let _lo = HqLoopbackMcast::add(lab)?;
    commands.push(format!(
        "ip netns exec {hq} ip link set lo multicast on; \
         ip netns exec {hq} ip route add {MCAST} dev lo"
    ));
    // The tunnel, as hq and the site would already run it: a client proxy on the site
    // router multicasting on the bridge, a server proxy in hq sending to it across the WAN.
    let proxy_id = uftp_id(crate::topology::ROUTER_WAN);
    let a = argv(&["uftpproxyd", "-c", "-d", "-U", &proxy_id, "-O", BRIDGE]);
    commands.push(shown(&router, &a));
    let client_proxy = procs.spawn(&router, &a, &log)?;
    let dest = crate::topology::ROUTER_WAN.to_string();
    let a = argv(&["uftpproxyd", "-s", &dest, "-d", "-I", "lo"]);
    commands.push(shown(&hq, &a));
    let server_proxy = procs.spawn(&hq, &a, &log)?;
    std::thread::sleep(Duration::from_millis(300));
    if procs.poll(client_proxy).is_some() || procs.poll(server_proxy).is_some() {
        return Err(LabError::Setup("uftpproxyd exited at start".into()));
    }
    let proxies = dir.join("proxies");
    std::fs::write(&proxies, format!("{proxy_id}\n"))
        .map_err(|e| LabError::Setup(format!("{proxies:?}: {e}")))?;
    // Power-on: every phone starts its receiver daemon.
    *start = Instant::now();
    let start = *start;
    let deadline = start + cfg.deadline;
    let mut dirs = Vec::with_capacity(n);
    for i in 0..n {
        let m = i % lab.manifests().len();
        let base = dir.join(format!("phone{i}"));
        let (dst, tmp) = (base.join("dest"), base.join("tmp"));
        for d in [&dst, &tmp] {
            std::fs::create_dir_all(d).map_err(|e| LabError::Setup(format!("{d:?}: {e}")))?;
        }
        dirs.push(dst.join(&lab.manifests()[m].1));
        // -T: files arrive in tmp and move to dest when the session completes.
        let a = argv(&[
            "uftpd",
            "-d",
            "-q",
            "-U",
            &uftp_id(lab.site.phone_addrs[i]),
            "-I",
            PHONE_IFACE,
            "-D",
            &dst.to_string_lossy(),
            "-T",
            &tmp.to_string_lossy(),
        ]);
        let ns = lab.site.phones[i].name().to_owned();
        if i == 0 {
            commands.push(shown(&ns, &a));
        }
        procs.spawn(&ns, &a, &log)?;
    }
    // One session per model, from hq, at the slower of the WAN and a port (less 5%, as
    // udpcast is paced): the tunnel crosses the WAN and the bridge carries it to every port.
    // (uftp's own congestion control, `-C tfmcc:init=50000:max=95000`, did worse here: at 60
    // phones and 100 Mbit/s no phone finished within 9 minutes, and 124 MB crossed the WAN.)
    let kbit = (cfg.wan_mbit.min(cfg.lan_mbit.unwrap_or(f64::INFINITY)) * 950.0) as u64;
    let kbit = kbit.max(1).to_string();
    let mut done = vec![None; n];
    let mut left: Vec<usize> = (0..n).collect();
    for (m, (_, folder, man)) in lab.manifests().iter().enumerate() {
        let phones = phones_of(lab, m);
        let hosts = dir.join(format!("hosts-{m}"));
        let ids: String = phones
            .iter()
            .map(|&i| uftp_id(lab.site.phone_addrs[i]) + "\n")
            .collect();
        std::fs::write(&hosts, ids).map_err(|e| LabError::Setup(format!("{hosts:?}: {e}")))?;
        let a = argv(&[
            "uftp",
            "-I",
            "lo",
            "-U",
            &uftp_id(ORIGIN_ADDR),
            "-R",
            &kbit,
            "-H",
            &format!("@{}", hosts.display()),
            "-j",
            &proxies.to_string_lossy(),
            folder,
        ]);
        commands.push(format!(
            "(in {}) {}",
            lab.origin_root().display(),
            shown(&hq, &a)
        ));
        let tx = procs.spawn_in(&hq, &a, &log, &lab.origin_root())?;
        let mut ended: Option<Instant> = None;
        loop {
            let now = Instant::now();
            left.retain(|&i| {
                let complete = i % lab.manifests().len() != m
                    || man.files.iter().all(|f| {
                        std::fs::metadata(dirs[i].join(&f.name)).is_ok_and(|md| md.len() == f.size)
                    });
                if complete && i % lab.manifests().len() == m {
                    done[i] = Some(start.elapsed().as_secs_f64());
                }
                !complete
            });
            if left.iter().all(|&i| i % lab.manifests().len() != m) || now > deadline {
                break;
            }
            if ended.is_none() && procs.poll(tx).is_some() {
                ended = Some(now);
            }
            // The server has said DONE to everyone; a phone that has not moved its files in
            // by then is not going to.
            if ended.is_some_and(|t| now > t + Duration::from_secs(3)) {
                note(&log, &format!("pfs: uftp server for {} ended", man.load));
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        note(
            &log,
            &format!(
                "pfs: {} done at {:.2} s",
                man.load,
                start.elapsed().as_secs_f64()
            ),
        );
    }
    Ok(Outcome {
        done,
        dirs,
        origin_bytes: None,
        commands,
    })
}

const TRACKER_PORT: u16 = 6969;

/// Where udp-sender and udp-receivers find each other: the phones' addresses have no
/// broadcast address (as `ip addr add` leaves them), so the all-hosts group on the LAN.
const RDV: &str = "224.0.0.1";

fn bittorrent(
    lab: &Lab,
    dir: &Path,
    procs: &mut Procs,
    start: &mut Instant,
) -> Result<Outcome, LabError> {
    let n = lab.config().phones;
    let hq = lab.site.hq.name().to_owned();
    let log = dir.join("bittorrent.log");
    let announce = format!("http://{ORIGIN_ADDR}:{TRACKER_PORT}/announce");
    let mut commands = Vec::new();
    // One torrent per model, of the origin's load folder (256 KiB pieces).
    let mut torrents = Vec::new();
    for (m, (_, folder, _)) in lab.manifests().iter().enumerate() {
        let t = dir.join(format!("model{m}.torrent"));
        let src = lab.origin_root().join(folder);
        let a = argv(&[
            "mktorrent",
            "-l",
            "18",
            "-a",
            &announce,
            "-o",
            &t.to_string_lossy(),
            &src.to_string_lossy(),
        ]);
        let st = Command::new(&a[0])
            .args(&a[1..])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|e| LabError::Setup(format!("mktorrent: {e}")))?;
        if !st.success() {
            return Err(LabError::Setup(format!(
                "mktorrent failed: {}",
                a.join(" ")
            )));
        }
        commands.push(a.join(" "));
        torrents.push(t);
    }
    // Debian's opentracker serves only the torrents its whitelist names (by info hash); it
    // chroots to -d, so the list is named relative to it (and to the working directory).
    let tracker_dir = dir.join("tracker");
    std::fs::create_dir_all(&tracker_dir).map_err(|e| LabError::Setup(e.to_string()))?;
    let mut hashes = String::new();
    for t in &torrents {
        hashes.push_str(&info_hash(t)?);
        hashes.push('\n');
    }
    std::fs::write(tracker_dir.join("whitelist"), hashes)
        .map_err(|e| LabError::Setup(format!("the tracker's whitelist: {e}")))?;
    let port = TRACKER_PORT.to_string();
    let a = argv(&[
        "opentracker",
        "-i",
        &ORIGIN_ADDR.to_string(),
        "-p",
        &port,
        "-P",
        &port,
        "-d",
        &tracker_dir.to_string_lossy(),
        "-u",
        "nobody",
        "-w",
        "whitelist",
    ]);
    commands.push(format!("(in {}) {}", tracker_dir.display(), shown(&hq, &a)));
    let tracker = procs.spawn_in(&hq, &a, &log, &tracker_dir)?;
    wait_listening(lab, TRACKER_PORT, Duration::from_secs(5))?;
    if procs.poll(tracker).is_some() {
        return Err(LabError::Setup("opentracker exited at start".into()));
    }
    let timeout = lab.config().deadline.as_secs().max(5).to_string();
    let common = [
        "--enable-dht=false",
        "--enable-dht6=false",
        "--bt-enable-lpd=true",
        "--file-allocation=none",
        "--summary-interval=0",
        "--console-log-level=warn",
        "--allow-overwrite=true",
        "--auto-file-renaming=false",
        "--bt-tracker-connect-timeout=10",
        "--bt-tracker-interval=5",
        "--timeout=30",
    ];
    // The seed in hq: the origin's own files, hashed once before it seeds.
    let seed_dir = lab.origin_root();
    for t in &torrents {
        let mut a = argv(&["aria2c", "--check-integrity=true", "--seed-ratio=0.0"]);
        a.extend(argv(&common));
        a.push(format!("--dir={}", seed_dir.display()));
        a.push(format!("--stop={timeout}"));
        a.push(t.to_string_lossy().into_owned());
        commands.push(shown(&hq, &a));
        procs.spawn(&hq, &a, &log)?;
    }
    // Power-on: the tracker and the seed are up, as they would be at hq.
    *start = Instant::now();
    let start = *start;
    let deadline = start + lab.config().deadline;
    let mut done = vec![None; n];
    let mut dirs = Vec::with_capacity(n);
    let mut leechers = Vec::with_capacity(n);
    for i in 0..n {
        let m = i % lab.manifests().len();
        let out = dir.join(format!("phone{i}"));
        std::fs::create_dir_all(&out).map_err(|e| LabError::Setup(e.to_string()))?;
        dirs.push(out.join(&lab.manifests()[m].1));
        let mut a = argv(&["aria2c", "--seed-time=0"]);
        a.extend(argv(&common));
        a.push(format!("--bt-stop-timeout={timeout}"));
        a.push(format!("--stop={timeout}"));
        a.push(format!("--dir={}", out.display()));
        a.push(torrents[m].to_string_lossy().into_owned());
        let ns = lab.site.phones[i].name().to_owned();
        if i < lab.manifests().len() {
            commands.push(shown(&ns, &a));
        }
        leechers.push(procs.spawn(&ns, &a, &log)?);
    }
    let mut left = n;
    while left > 0 {
        if Instant::now() > deadline {
            break;
        }
        for (i, k) in leechers.iter_mut().enumerate() {
            if *k == usize::MAX {
                continue;
            }
            if let Some(ok) = procs.poll(*k) {
                done[i] = ok.then(|| start.elapsed().as_secs_f64());
                *k = usize::MAX;
                left -= 1;
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(Outcome {
        done,
        dirs,
        origin_bytes: None,
        commands,
    })
}

/// A torrent's info hash in hex, as `aria2c --show-files` prints it.
fn info_hash(torrent: &Path) -> Result<String, LabError> {
    let out = Command::new("aria2c")
        .arg("--show-files=true")
        .arg(torrent)
        .output()
        .map_err(|e| LabError::Setup(format!("aria2c --show-files: {e}")))?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.trim().strip_prefix("Info Hash: ").map(str::to_owned))
        .filter(|h| h.len() == 40)
        .ok_or_else(|| LabError::Setup(format!("no info hash in {}", torrent.display())))
}

/// Waits until something listens on TCP `port` in `ns` (bounded).
fn wait_listening(lab: &Lab, port: u16, max: Duration) -> Result<(), LabError> {
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

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let k = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[k - 1]
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
    let mut sorted = completions.clone();
    sorted.sort_by(f64::total_cmp);
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
        makespan_s: sorted.last().copied().unwrap_or(0.0),
        limit_s: f64::from(models) * load_bytes as f64 / wan_rate,
        completion_p50_s: quantile(&sorted, 0.5),
        completion_p90_s: quantile(&sorted, 0.9),
        completion_p99_s: quantile(&sorted, 0.99),
        completion_max_s: quantile(&sorted, 1.0),
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
