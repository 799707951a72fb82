//! `pfs lab`: a fleet of virtual phones upgraded over a shaped WAN, on real sockets.
//!
//! The topology is [`crate::topology::Site`]: `hq` with the origin behind a tbf-shaped WAN
//! veth, a site bridge, and one namespace per phone with its own MAC, address, shaped port and
//! store. All phones run in this process on the engine, one [`Host`] (reactor) per core; each
//! phone's sockets are made inside its namespace, so every byte between phones crosses a veth
//! and the bridge. A phone reads its `SEP<MAC>.cnf.xml` (from the config resolver) for its load
//! and whether peer sharing is on, as a Cisco phone does.

use std::{
    collections::BTreeMap,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use crate::{
    engine::Backend,
    fleet::{self, FleetError},
    manifest::Manifest,
    netns::NetnsError,
    peer::{PeerError, PeerOptions, PeerReport, Place, Source},
    phone::Mode,
    phoneconfig::{Device, Level, SiteConfig},
    tftp::client::ClientConfig,
    topology::{ORIGIN_ADDR, PHONE_IFACE, Site, SiteSpec, phone_mac},
};

mod origin;
mod report;
mod summary;
use origin::OriginGuard;
pub use report::{LabReport, ManifestCounts, TreeNode};
pub use summary::text_trees;
use summary::{cpu_seconds, status_kib};

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error(transparent)]
    Peer(#[from] PeerError),
    #[error(transparent)]
    Fleet(#[from] FleetError),
    #[error(transparent)]
    Netstat(#[from] crate::netstat::NetstatError),
    #[error("{0}")]
    Setup(String),
}

fn setup(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> LabError {
    let what = what.to_string();
    move |e| LabError::Setup(format!("{what}: {e}"))
}

/// Which server runs in `hq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OriginKind {
    /// The embedded `pfs origin` (TFTP, and HTTP on port 6970 with `--origin-proto http`).
    Pfs,
    /// tftpd-hpa's in.tftpd (must be installed; TFTP only).
    TftpdHpa,
    /// nginx (must be installed; HTTP only, port 6970).
    Nginx,
}

/// How phones fetch from the origin.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OriginProto {
    /// TFTP (port 69).
    #[default]
    Tftp,
    /// HTTP on port 6970, as newer Cisco phones fetch firmware; with `--origin pfs` the phones
    /// also name TFTP, which they fall back to when HTTP fails.
    Http,
}

/// The port the lab's HTTP origin listens on (where Cisco phones look).
pub const HTTP_PORT: u16 = crate::http::DEFAULT_PORT;

#[derive(Debug, Clone)]
pub struct LabConfig {
    pub phones: usize,
    pub models: Vec<String>,
    pub wan_mbit: f64,
    /// WAN tbf bucket in KiB (`None`: 10 ms at the rate, at least 32 KiB).
    pub wan_burst_kib: Option<u32>,
    /// The roots' WAN fetch (TFTP; the traditional baseline uses a phone's lock-step client).
    pub tftp: ClientConfig,
    pub lan_mbit: Option<f64>,
    pub fanout: u8,
    pub origin: OriginKind,
    pub origin_proto: OriginProto,
    pub backend: Backend,
    pub xdp: bool,
    pub seed: u64,
    /// A run that has not finished by then stops and reports what it has.
    pub deadline: Duration,
    /// Draw progress bars on stderr.
    pub progress: bool,
    /// Capture port-4051 traffic on the site bridge into this file during each run
    /// (`--pcap`; see [`crate::capture`]).
    pub pcap: Option<PathBuf>,
    /// Bytes kept of each captured frame (0: whole frames).
    pub pcap_snaplen: u32,
    /// Faults to inject (crashes, freezes, cuts, slow ports, corrupt peers, loss).
    pub faults: crate::faults::FaultPlan,
    /// Phones resolve each other with ARP broadcasts instead of static neighbour entries
    /// (see [`Site::static_neighbours`]).
    pub dynamic_arp: bool,
    /// WAN round trip (ms), made by a delay line in this process (`None`: a plain veth).
    pub wan_rtt_ms: Option<f64>,
}

impl Default for LabConfig {
    fn default() -> Self {
        LabConfig {
            phones: 60,
            models: vec!["CP-7961G".into(), "CP-7941G".into()],
            wan_mbit: 50.0,
            wan_burst_kib: None,
            tftp: ClientConfig::default(),
            lan_mbit: Some(100.0),
            fanout: crate::phone::Config::default().fanout,
            origin: OriginKind::Pfs,
            origin_proto: OriginProto::Tftp,
            backend: Backend::Auto,
            xdp: false,
            seed: 1,
            deadline: Duration::from_secs(600),
            progress: true,
            pcap: None,
            pcap_snaplen: 0,
            faults: crate::faults::FaultPlan::default(),
            dynamic_arp: false,
            wan_rtt_ms: None,
        }
    }
}

pub use crate::fleet::Progress;

/// A built lab: topology, loads, origin. Runs any mode on it, one after another.
pub struct Lab {
    cfg: LabConfig,
    pub site: Site,
    root: PathBuf,
    manifests: Vec<(String, String, Manifest)>,
    origin: OriginGuard,
    setup_s: f64,
    /// With `--wan-rtt-ms`: the median round trip ping measured once the site was up (ms).
    wan_rtt_ping_ms: Option<f64>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Refuses a site that cannot be built, before the host lock is waited for or anything is
/// built: no phones or models, rates that are not positive, fractions outside 0..=1 (loss
/// below 1), more hostile phones than phones, or an origin asked for a protocol it does not
/// serve.
pub fn check_config(cfg: &LabConfig) -> Result<(), LabError> {
    let bad = |why: String| Err(LabError::Setup(why));
    if cfg.phones == 0 || cfg.models.is_empty() {
        return bad("need at least one phone and one model".into());
    }
    let f = &cfg.faults;
    let rates = [
        ("wan-mbit", Some(cfg.wan_mbit)),
        ("lan-mbit", cfg.lan_mbit),
        ("slow-mbit", (f.slow_fraction > 0.0).then_some(f.slow_mbit)),
        ("wan-rtt-ms", cfg.wan_rtt_ms),
    ];
    for (name, r) in rates {
        if let Some(r) = r
            && !(r > 0.0 && r.is_finite())
        {
            return bad(format!("--{name} must be positive, not {r}"));
        }
    }
    let fractions = [
        ("crash-fraction", Some(f.crash_fraction)),
        ("freeze-fraction", Some(f.freeze_fraction)),
        ("cut-fraction", Some(f.cut_fraction)),
        ("slow-fraction", Some(f.slow_fraction)),
        ("kill-root-at", f.kill_root_at),
        ("cut-root-at", f.cut_root_at),
    ];
    for (name, x) in fractions {
        if let Some(x) = x
            && !(0.0..=1.0).contains(&x)
        {
            return bad(format!("--{name} must be within 0..=1, not {x}"));
        }
    }
    if !(0.0..1.0).contains(&f.loss) {
        return bad(format!("--loss must be within 0..1, not {}", f.loss));
    }
    if f.corrupt_peers + f.liar_peers > cfg.phones {
        return bad(format!(
            "--corrupt-peers {} and --liar-peers {} are more than the {} phones",
            f.corrupt_peers, f.liar_peers, cfg.phones
        ));
    }
    match (cfg.origin, cfg.origin_proto) {
        (OriginKind::TftpdHpa, OriginProto::Http) => {
            return Err(LabError::Setup(
                "--origin tftpd-hpa serves TFTP only: use --origin-proto tftp".into(),
            ));
        }
        (OriginKind::Nginx, OriginProto::Tftp) => {
            return Err(LabError::Setup(
                "--origin nginx serves HTTP only: use --origin-proto http".into(),
            ));
        }
        _ => {}
    }
    Ok(())
}

/// With `--wan-rtt-ms`: the WAN round trip ping measures from the first phone to the origin
/// (the delay is real only if ping sees it).
fn measure_wan_rtt(cfg: &LabConfig, site: &Site) -> Option<f64> {
    cfg.wan_rtt_ms.and_then(|set| {
        let got = crate::delayline::ping_rtt_ms(site.phones[0].name(), ORIGIN_ADDR, 5)
            .map(|(_min, median)| median);
        match got {
            Some(ms) => tracing::info!("WAN round trip set {set} ms, ping measured {ms} ms"),
            None => tracing::warn!(
                "could not measure the WAN round trip with ping (apt-get install iputils-ping)"
            ),
        }
        got
    })
}

/// One synthetic load per model under `origin_root`, each in its load directory; (model,
/// directory, manifest) per model.
fn synth_loads(
    cfg: &LabConfig,
    origin_root: &Path,
) -> Result<Vec<(String, String, Manifest)>, LabError> {
    let mut manifests = Vec::new();
    for (m, model) in cfg.models.iter().enumerate() {
        let tmp = origin_root.join(format!("tmp-{m}"));
        let manifest = synth_signed(&tmp, cfg.seed, m)?;
        let dir = load_name(&manifest.load, model);
        std::fs::rename(&tmp, origin_root.join(&dir)).map_err(setup("load dir"))?;
        manifests.push((model.clone(), dir, manifest));
    }
    Ok(manifests)
}

/// The lab's load signer (the vendor's key a phone checks signed loads with), derived from the
/// seed: the synthetic loads' manifests are signed with it, and every phone is given its public
/// half (a keyless phone could not verify a manifest a peer hands it; see docs/protocol.md).
fn signer(seed: u64) -> ed25519_dalek::SigningKey {
    let d = blake3::hash(format!("pfs lab signer {seed}").as_bytes());
    ed25519_dalek::SigningKey::from_bytes(d.as_bytes())
}

/// Model `m`'s synthetic load in `dir`, its manifest signed by the lab's [`signer`].
fn synth_signed(dir: &Path, seed: u64, m: usize) -> Result<Manifest, LabError> {
    crate::manifest::synth_load(dir, seed + m as u64 * 101, Some(&signer(seed)))
        .map_err(|e| LabError::Setup(format!("synthesising the load: {e}")))
}

/// The load directory of `model` on the origin (also the cnf.xml's loadInformation).
fn load_name(load: &str, model: &str) -> String {
    format!("{load}.{model}")
}

fn mac_hex(i: usize) -> String {
    phone_mac(i).iter().map(|b| format!("{b:02X}")).collect()
}

impl Lab {
    /// Removes what a crashed run left, then builds the site, the loads and the origin.
    pub fn build(cfg: LabConfig) -> Result<Lab, LabError> {
        check_config(&cfg)?;
        // Descriptors first: at 1000 phones the default limit ran out halfway through setup.
        ensure_nofile(cfg.phones, LAB_FILES, cfg.fanout)?;
        let t0 = Instant::now();
        for stale in crate::netns::sweep_stale() {
            tracing::info!("removed stale namespace {stale} from an earlier run");
        }
        let site = Site::build(&SiteSpec {
            phones: cfg.phones,
            wan_kbit: Some((cfg.wan_mbit * 1000.0) as u32),
            wan_burst: cfg.wan_burst_kib.map(|k| k.saturating_mul(1024)),
            lan_kbit: cfg.lan_mbit.map(|m| (m * 1000.0) as u32),
            wan_rtt_ms: cfg.wan_rtt_ms,
        })?;
        if !cfg.dynamic_arp {
            site.static_neighbours()?;
        }
        // The delay is real only if ping sees it: from the first phone to the origin.
        let wan_rtt_ping_ms = measure_wan_rtt(&cfg, &site);
        // tmpfs when there is one: stores and the origin root stay in memory.
        let root = crate::store::scratch_base().join(format!("pfs-lab-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let origin_root = root.join("origin");
        let manifests = synth_loads(&cfg, &origin_root)?;
        // tftpd-hpa drops privileges: let it read the tree.
        let _ = std::process::Command::new("chmod")
            .args(["-R", "a+rX"])
            .arg(&root)
            .status();
        let origin = OriginGuard::start(cfg.origin, cfg.origin_proto, &site, &root, &origin_root)?;
        Ok(Lab {
            cfg,
            site,
            root,
            manifests,
            origin,
            setup_s: t0.elapsed().as_secs_f64(),
            wan_rtt_ping_ms,
        })
    }

    /// The embedded origin's counters (`None` with tftpd-hpa).
    pub fn origin_stats(&self) -> Option<Arc<crate::origin::OriginStats>> {
        match &self.origin {
            OriginGuard::Pfs(h, _) => Some(h.stats.clone()),
            OriginGuard::Process(_) => None,
        }
    }

    /// The embedded origin's HTTP counters (with `--origin pfs --origin-proto http`).
    pub fn origin_http_stats(&self) -> Option<Arc<crate::http::HttpStats>> {
        match &self.origin {
            OriginGuard::Pfs(_, Some(w)) => Some(w.stats.clone()),
            _ => None,
        }
    }

    pub fn config(&self) -> &LabConfig {
        &self.cfg
    }

    /// The run's scratch folder (tmpfs when there is one), removed with the lab.
    pub fn work_dir(&self) -> &Path {
        &self.root
    }

    /// The origin's root: one folder per model's load.
    pub fn origin_root(&self) -> PathBuf {
        self.root.join("origin")
    }

    /// (model, load folder on the origin, manifest), one per model.
    pub fn manifests(&self) -> &[(String, String, Manifest)] {
        &self.manifests
    }

    fn model_of(&self, i: usize) -> usize {
        i % self.manifests.len()
    }

    /// Writes every phone's `SEP<MAC>.cnf.xml` for `mode` into its store, via the resolver.
    fn configs(&self, mode: Mode, stores: &Path) -> Result<(), LabError> {
        let site = SiteConfig {
            enterprise: Level {
                peer_firmware_sharing: Some(mode != Mode::Traditional),
                load_server: Some(ORIGIN_ADDR.to_string()),
                log_server: None,
            },
            profiles: BTreeMap::new(),
            devices: (0..self.cfg.phones)
                .map(|i| Device {
                    mac: mac_hex(i),
                    model: self.manifests[self.model_of(i)].0.clone(),
                    profile: None,
                    load: None,
                    settings: Level::default(),
                })
                .collect(),
            loads: self
                .manifests
                .iter()
                .map(|(model, dir, _)| (model.clone(), dir.clone()))
                .collect(),
        };
        for (i, (name, xml)) in site.render_all().into_iter().enumerate() {
            let dir = stores.join(format!("phone{i}"));
            std::fs::create_dir_all(&dir).map_err(setup(dir.display()))?;
            std::fs::write(dir.join(name), xml).map_err(setup("cnf.xml"))?;
        }
        Ok(())
    }

    /// A phone's options, from the cnf.xml the resolver wrote into its store.
    fn phone_opts(&self, i: usize, mode: Mode, stores: &Path) -> Result<PeerOptions, LabError> {
        let store = stores.join(format!("phone{i}"));
        let cnf = crate::phoneconfig::parse_cnf_xml(
            &std::fs::read(store.join(format!("SEP{}.cnf.xml", mac_hex(i))))
                .map_err(setup("cnf.xml"))?,
        )
        .map_err(|e| LabError::Setup(format!("cnf.xml: {e}")))?;
        let load = cnf
            .load_information
            .ok_or_else(|| LabError::Setup(format!("phone {i}: no load in its cnf.xml")))?;
        let server = cnf.load_server.unwrap_or_else(|| ORIGIN_ADDR.to_string());
        let mode = if cnf.peer_firmware_sharing {
            mode
        } else {
            Mode::Traditional
        };
        // A phone's own TFTP client is lock-step (RFC 1350), one file after another: the
        // baseline is what phones really do, not a windowed client they do not have.
        let tftp = if mode == Mode::Traditional {
            ClientConfig {
                windowsize: 1,
                ..ClientConfig::unfragmented()
            }
        } else {
            self.cfg.tftp.clone()
        };
        Ok(PeerOptions {
            iface: PHONE_IFACE.into(),
            model: self.manifests[self.model_of(i)].0.clone(),
            source: Source::Origin(match (self.cfg.origin, self.cfg.origin_proto) {
                (_, OriginProto::Tftp) => format!("tftp://{server}/{load}"),
                // HTTP first, TFTP when HTTP fails, as a phone does.
                (OriginKind::Pfs, OriginProto::Http) => {
                    format!("http://{server}:{HTTP_PORT}/{load},tftp://{server}/{load}")
                }
                (_, OriginProto::Http) => format!("http://{server}:{HTTP_PORT}/{load}"),
            }),
            store,
            mode,
            fanout: self.cfg.fanout,
            backend: self.cfg.backend,
            // The verifiable configuration: the phones check the loads' signer, so a manifest
            // from a peer is as good as the origin's and crosses the WAN once per load.
            public_key: Some(signer(self.cfg.seed).verifying_key()),
            tftp,
            linger: None,
            deadline: None,
            seed: self.cfg.seed.wrapping_mul(1_000_003).wrapping_add(i as u64),
            port: pfs_common::PFS_PORT,
            // The rig's size is known: every phone of the lab shares one broadcast domain.
            max_site_phones: self.cfg.phones as u64,
        })
    }

    /// Upgrades every phone in `mode` from empty stores; returns the report.
    pub fn run(&self, mode: Mode, progress: Option<Arc<Progress>>) -> Result<LabReport, LabError> {
        let stores = self.root.join(format!("stores-{mode:?}"));
        let _ = std::fs::remove_dir_all(&stores);
        self.configs(mode, &stores)?;
        let wan0 = self.site.wan_tx_bytes()?;
        let resends0 = self.origin_resends();
        let sampler = crate::report::sample::Sampler::start(
            self.site.hq.name(),
            crate::topology::HQ_WAN_IFACE,
            Duration::from_millis(100),
            self.cfg.deadline * 2 + Duration::from_secs(600),
        );
        let capture = self.start_capture()?;
        let t0 = Instant::now();
        let ready = self.prepare_phones(mode, &stores)?;
        let prepare_s = t0.elapsed().as_secs_f64();
        let wan_manifest_bytes = self.site.wan_tx_bytes()? - wan0;
        // The origin's peak counts from power-on: manifest fetches while preparing are over.
        self.origin.reset_peaks();
        let faults = (!self.cfg.faults.is_empty()).then(|| {
            Arc::new(crate::faults::FaultRuntime::new(
                self.cfg.faults.clone(),
                self.cfg.phones,
                Duration::from_secs_f64(self.limit_s().max(1.0)),
            ))
        });
        if let Some(f) = &faults {
            self.apply_site_faults(f)?;
        }
        let (cpu0, udp0) = (cpu_seconds(), self.site.phone_udp()?);
        let mut run = fleet::run_with(
            ready,
            self.cfg.backend,
            self.cfg.deadline,
            progress,
            faults.clone(),
        )?;
        let cpu_s = cpu_seconds() - cpu0;
        let udp = self.site.phone_udp()?.since(udp0);
        let (start, results) = (run.start, std::mem::take(&mut run.phones));
        let wan_link_bytes = self.site.wan_tx_bytes()? - wan0;
        let wan_samples_source = sampler.source.clone();
        let wan_samples = sampler.stop(start);
        let mut r = self.summarise(mode, start, results, wan_link_bytes, &stores);
        self.fault_summary(&mut r, faults.as_deref());
        if let Some(f) = &faults {
            self.clear_site_faults(f);
        }
        r.wan_samples = wan_samples;
        r.wan_samples_source = wan_samples_source;
        r.prepare_s = prepare_s;
        add_engine_counters(&mut r, &run);
        (r.udp_in_datagrams, r.udp_rcvbuf_errors) = (udp.in_datagrams, udp.rcvbuf_errors);
        r.wan_manifest_bytes += wan_manifest_bytes;
        r.wan_overhead_bytes = wan_link_bytes.saturating_sub(r.wan_manifest_bytes + r.wan_bytes);
        self.add_host_usage(&mut r, (run.fds_at_end, run.fds_peak), cpu_s);
        if let Some(peak) = self.origin.peak_sessions() {
            r.origin_peak_sessions = Some(peak);
        }
        if let Some(c) = capture {
            let stats = c.stop().map_err(setup("stopping the capture"))?;
            r.pcap_frames = Some(stats.captured);
            r.pcap_dropped = Some(stats.lost());
            if stats.lost() > 0 {
                tracing::warn!(
                    "the capture is incomplete: {} frames passed the filter but are not in the file",
                    stats.lost()
                );
            }
        }
        r.wan_rtt_ms = self.cfg.wan_rtt_ms;
        r.wan_rtt_ping_ms = self.wan_rtt_ping_ms;
        if let Some(d) = &self.site.wan_delay {
            use std::sync::atomic::Ordering::Relaxed;
            r.wan_delay_late_max_ms = Some(d.stats.late_max_us.load(Relaxed) as f64 / 1e3);
            r.wan_delay_dropped = Some(d.stats.dropped.iter().map(|x| x.load(Relaxed)).sum());
        }
        r.violations = r.cross_check();
        r.host_tuning = self.site.tuning.changed().to_vec();
        if let (Some(before), Some(after)) = (resends0, self.origin_resends()) {
            r.origin_resent_blocks = Some(after - before);
        }
        Ok(r)
    }

    /// With `--pcap`: the capture on the site bridge, for one run.
    fn start_capture(&self) -> Result<Option<crate::capture::Capture>, LabError> {
        let Some(file) = &self.cfg.pcap else {
            return Ok(None);
        };
        crate::capture::Capture::start(
            self.site.router.name(),
            crate::topology::BRIDGE,
            file,
            self.cfg.pcap_snaplen,
        )
        .map(Some)
        .map_err(setup("the capture on the site bridge"))
    }

    /// Every phone's options and place, read from its cnf.xml, prepared (manifests fetched)
    /// for power-on.
    fn prepare_phones(&self, mode: Mode, stores: &Path) -> Result<Vec<fleet::Ready>, LabError> {
        let phones = (0..self.cfg.phones)
            .map(|i| {
                let place = Place::netns(self.site.phones[i].name())?;
                Ok((self.phone_opts(i, mode, stores)?, place))
            })
            .collect::<Result<Vec<_>, LabError>>()?;
        Ok(fleet::prepare_all(phones)?)
    }

    /// What the run cost this process: descriptors (`fds_at_end` when it ended), memory,
    /// threads, `cpu_s` CPU seconds (also per delivered GB).
    fn add_host_usage(&self, r: &mut LabReport, (fds_at_end, peak): (usize, usize), cpu_s: f64) {
        let n = self.cfg.phones as f64;
        r.fds_at_end = fds_at_end as u64;
        r.fds_per_phone = fds_at_end as f64 / n;
        r.fds_peak = peak as u64;
        r.fds_peak_per_phone = peak as f64 / n;
        r.fds_budget = nofile_budget(self.cfg.phones, LAB_FILES, self.cfg.fanout);
        r.nofile_limit = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .map_or(0, |l| l.0);
        r.peak_rss_mib = status_kib("VmHWM:") as f64 / 1024.0;
        r.rss_per_phone_kib = status_kib("VmHWM:") as f64 / n;
        r.threads = status_kib("Threads:");
        r.cpu_s = cpu_s;
        let delivered_gb = f64::from(r.completed) * r.load_bytes as f64 / 1e9;
        r.cpu_s_per_gb = if delivered_gb > 0.0 {
            cpu_s / delivered_gb
        } else {
            0.0
        };
    }

    /// `models x load` over the WAN rate (the report's `limit_s`).
    fn limit_s(&self) -> f64 {
        let load = self.manifests[0].2.load_bytes() as f64;
        self.manifests.len() as f64 * load * 8.0 / (self.cfg.wan_mbit * 1e6)
    }

    /// Slow ports and packet loss, for the run.
    fn apply_site_faults(&self, f: &crate::faults::FaultRuntime) -> Result<(), LabError> {
        let kbit = (f.plan.slow_mbit.max(0.1) * 1000.0) as u32;
        for &i in &f.assignment.slow {
            crate::faults::shape(&self.site, i, kbit)
                .map_err(|e| LabError::Setup(format!("slow port of phone {i}: {e}")))?;
        }
        if f.plan.loss > 0.0 {
            crate::faults::loss_on(&self.site, f.plan.loss)
                .map_err(|e| LabError::Setup(format!("packet loss: {e}")))?;
        }
        if f.plan.drop_fragments {
            crate::faults::drop_fragments_on(&self.site)
                .map_err(|e| LabError::Setup(format!("dropping fragments: {e}")))?;
        }
        Ok(())
    }

    /// Undoes [`Self::apply_site_faults`] and brings cut links back, for the next run.
    fn clear_site_faults(&self, f: &crate::faults::FaultRuntime) {
        for &i in &f.assignment.slow {
            let kbit = self.cfg.lan_mbit.map(|m| (m * 1000.0) as u32);
            let _ = crate::faults::unshape(&self.site, i, kbit);
        }
        if f.plan.loss > 0.0 {
            crate::faults::loss_off(&self.site);
        }
        if f.plan.drop_fragments {
            crate::faults::drop_fragments_off(&self.site);
        }
        for e in f.events.lock().expect("lock").iter() {
            if e.kind == "cut"
                && let Some(i) = self.site.phone_addrs.iter().position(|a| *a == e.phone)
            {
                crate::faults::link_up(self.site.phones[i].name());
            }
        }
    }

    /// Live counters for `run`, one bar per (model, file).
    pub fn progress(&self) -> Arc<Progress> {
        Progress::new(
            self.manifests
                .iter()
                .enumerate()
                .flat_map(|(m, (model, _, man))| {
                    let phones = (m..self.cfg.phones).step_by(self.manifests.len()).count() as u64;
                    man.files
                        .iter()
                        .map(move |f| (model.clone(), f.name.clone(), f.size * phones))
                })
                .collect(),
        )
    }
}

/// The run's event-loop turns and every core's engine counters.
fn add_engine_counters(r: &mut LabReport, run: &fleet::FleetRun) {
    r.max_turn_ms = run.max_turn.as_secs_f64() * 1e3;
    r.turns = run.turns;
    r.long_turns = run.long_turns;
    r.max_timer_late_ms = run.timer_late_max.as_secs_f64() * 1e3;
    for e in &run.engines {
        r.engine_overflowed += e.overflowed;
        r.engine_recv_no_buffers += e.recv_no_buffers;
        r.engine_recv_truncated += e.recv_truncated;
        r.engine_stalled_cutoffs += e.stalled_cutoffs;
    }
}

/// Descriptors a virtual phone holds on average: its two election sockets and chunk listener,
/// per file a stream to its parent and, on average, one from a child (a tree of N phones has
/// N - 1 edges per file; streams to a parent close once the file is installed), and 2 for
/// what is opened per use (partial files, a root's origin socket). The peak measured at 1000
/// phones (`fds_peak_per_phone`) was 12.2 against the 17 budgeted here for 6 files.
pub fn fds_per_phone(files: usize, _fanout: u8) -> u64 {
    3 + 2 * files as u64 + 2
}

/// Files of a lab load: the synthetic load's components plus its .loads file.
const LAB_FILES: usize = crate::sim::LOAD_7961.len() + 1;

/// The descriptors a lab of `phones` is budgeted: [`fds_per_phone`] each, and 1024 for the
/// lab itself (origin, delay line, capture, logs).
pub fn nofile_budget(phones: usize, files: usize, fanout: u8) -> u64 {
    phones as u64 * fds_per_phone(files, fanout) + 1024
}

/// Raises RLIMIT_NOFILE to what `phones` need (and the hard limit with it when allowed, as
/// root), before anything is built. Errors, naming the number, when it cannot.
pub fn ensure_nofile(phones: usize, files: usize, fanout: u8) -> Result<u64, LabError> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let need = nofile_budget(phones, files, fanout);
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)
        .map_err(|e| LabError::Setup(format!("getrlimit(RLIMIT_NOFILE): {e}")))?;
    if soft >= need {
        return Ok(soft);
    }
    if need <= hard {
        setrlimit(Resource::RLIMIT_NOFILE, need, hard)
            .map_err(|e| LabError::Setup(format!("setrlimit(RLIMIT_NOFILE, {need}): {e}")))?;
        return Ok(need);
    }
    // Above the hard limit: root may raise it (up to fs.nr_open).
    match setrlimit(Resource::RLIMIT_NOFILE, need, need) {
        Ok(()) => {
            tracing::info!("raised the descriptor limit from {soft}/{hard} to {need}");
            Ok(need)
        }
        Err(e) => Err(LabError::Setup(format!(
            "{phones} phones need {need} open files ({} per phone + 1024), but the hard limit \
             is {hard} and raising it failed ({e}); raise it (ulimit -Hn {need} as root, or \
             LimitNOFILE=) or run fewer phones",
            fds_per_phone(files, fanout)
        ))),
    }
}
