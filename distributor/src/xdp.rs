//! User-space side of the XDP fast path: load the embedded program, attach it to an interface,
//! pin its link and counters under bpffs, read the counters back summed over CPUs, detach.
//!
//! Attachments outlive the `pfs xdp attach` process because the link is pinned; `detach`
//! removes the pins, which releases the link and with it the attachment.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use aya::{
    Ebpf,
    maps::{Map, MapData, PerCpuArray},
    programs::{Xdp, XdpMode, links::FdLink},
};
use pfs_common::{
    ALL_MAPS, CONFIG_FILTER_MODELS, CONFIG_MAP, Counter, MAX_MODELS, MODEL_KEY_LEN, MODELS_MAP,
    XDP_PROGRAM,
};

/// The XDP object built by `build.rs` (empty when the eBPF toolchain was missing).
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/pfs-xdp"));

/// Where pfs pins its BPF objects.
pub const PIN_ROOT: &str = "/sys/fs/bpf/pfs";
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
const LINK_PIN: &str = "link";

#[derive(Debug, thiserror::Error)]
pub enum XdpError {
    #[error(
        "this pfs was built without its XDP program (nightly rust-src or bpf-linker missing at build time); fix: cargo xtask setup && cargo build"
    )]
    NotBuilt,
    #[error("XDP needs root (CAP_BPF and CAP_NET_ADMIN); run pfs as root or without XDP")]
    NotRoot,
    #[error("no interface named {0}")]
    NoInterface(String),
    #[error("XDP is already attached to {iface} (pins at {pins}); run `pfs xdp detach` first")]
    AlreadyAttached { iface: String, pins: String },
    #[error("XDP is not attached to {iface} (no pins at {pins})")]
    NotAttached { iface: String, pins: String },
    #[error("cannot mount bpffs at /sys/fs/bpf: {0}")]
    Bpffs(String),
    #[error("cannot load the XDP program: {0}")]
    Load(String),
    #[error("cannot attach XDP to {iface} in {mode} mode: {reason}")]
    Attach {
        iface: String,
        mode: &'static str,
        reason: String,
    },
    #[error("model {0:?} must be 1 to 32 printable ASCII bytes (at most 64 models)")]
    BadModel(String),
    #[error("cannot read pinned counters at {path}: {reason}")]
    Counters { path: String, reason: String },
    #[error("cannot pin under {path}: {reason}")]
    Pin { path: String, reason: String },
    #[error(
        "the bpffs at /sys/fs/bpf is private to this process's mount namespace (`ip netns exec` \
         mounts its own /sys for every command): the pinned link would vanish when pfs exits and \
         XDP would detach at once. Run `pfs xdp attach --netns NS --iface IF` from the host's \
         namespace instead"
    )]
    PrivateBpffs,
    #[error(transparent)]
    Netns(#[from] crate::netns::NetnsError),
}

/// Requested attach mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AttachMode {
    /// Native (driver) mode if the driver supports it, else generic SKB mode.
    Auto,
    /// Native driver mode only.
    Native,
    /// Generic SKB mode only (works on every interface).
    Skb,
}

/// Where the interface lives and where its pins go.
#[derive(Clone, Debug)]
pub struct Target {
    pub iface: String,
    /// Named namespace (`ip netns`) holding the interface; `None` for the current one.
    pub netns: Option<String>,
}

impl Target {
    /// `/sys/fs/bpf/pfs/<iface>` or `/sys/fs/bpf/pfs/<netns>/<iface>`.
    pub fn pin_dir(&self) -> PathBuf {
        let mut dir = PathBuf::from(PIN_ROOT);
        if let Some(ns) = &self.netns {
            dir.push(ns);
        }
        dir.push(&self.iface);
        dir
    }
}

/// Whether this binary carries an XDP program.
pub fn is_built() -> bool {
    !OBJECT.is_empty()
}

/// What `attach` did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Attached {
    pub iface: String,
    pub mode: &'static str,
    pub pin_dir: String,
}

/// A model name as the XDP filter map keys it (NUL-padded).
fn model_key(model: &str) -> Result<[u8; MODEL_KEY_LEN], XdpError> {
    let bytes = model.as_bytes();
    if bytes.is_empty() || bytes.len() > MODEL_KEY_LEN || !bytes.iter().all(u8::is_ascii_graphic) {
        return Err(XdpError::BadModel(model.to_owned()));
    }
    let mut key = [0u8; MODEL_KEY_LEN];
    key[..bytes.len()].copy_from_slice(bytes);
    Ok(key)
}

/// Loads the program and attaches it to `target`, pinning the link and every map.
///
/// `models`: when non-empty, adverts for any other model are dropped in XDP.
/// Enters `target.netns` on a helper thread for the netlink/link work, so the calling thread's
/// namespace is unchanged; pins go to the caller's bpffs.
pub fn attach(target: &Target, mode: AttachMode, models: &[String]) -> Result<Attached, XdpError> {
    preflight()?;
    if models.len() > MAX_MODELS as usize {
        return Err(XdpError::BadModel(format!("{} models", models.len())));
    }
    let keys = models
        .iter()
        .map(|m| model_key(m))
        .collect::<Result<Vec<_>, _>>()?;
    let pin_dir = target.pin_dir();
    if pin_dir.join(LINK_PIN).exists() {
        return Err(XdpError::AlreadyAttached {
            iface: target.iface.clone(),
            pins: pin_dir.display().to_string(),
        });
    }
    ensure_bpffs()?;
    std::fs::create_dir_all(&pin_dir).map_err(|e| XdpError::Pin {
        path: pin_dir.display().to_string(),
        reason: e.to_string(),
    })?;
    let t = target.clone();
    let dir = pin_dir.clone();
    let result = match &target.netns {
        Some(ns) => crate::netns::run_in(ns, move || attach_here(&t, mode, &dir, &keys))?,
        None => attach_here(&t, mode, &dir, &keys),
    };
    if result.is_err() {
        let _ = remove_pins(&pin_dir);
    }
    result
}

fn attach_here(
    target: &Target,
    mode: AttachMode,
    pin_dir: &Path,
    models: &[[u8; MODEL_KEY_LEN]],
) -> Result<Attached, XdpError> {
    let iface = &target.iface;
    if nix::net::if_::if_nametoindex(iface.as_str()).is_err() {
        return Err(XdpError::NoInterface(iface.clone()));
    }
    let mut ebpf = load(models)?;
    let program: &mut Xdp = ebpf
        .program_mut(XDP_PROGRAM)
        .expect("program present: loaded")
        .try_into()
        .expect("program is XDP: loaded");

    let attempts: &[(XdpMode, &'static str)] = match mode {
        AttachMode::Auto => &[(XdpMode::Driver, "native"), (XdpMode::Skb, "skb")],
        AttachMode::Native => &[(XdpMode::Driver, "native")],
        AttachMode::Skb => &[(XdpMode::Skb, "skb")],
    };
    let mut last_err = String::new();
    let mut chosen = None;
    for &(xdp_mode, label) in attempts {
        match program.attach(iface, xdp_mode) {
            Ok(id) => {
                chosen = Some((id, label));
                break;
            }
            Err(e) => {
                tracing::debug!(%iface, mode = label, error = %e, "XDP attach attempt failed");
                last_err = e.to_string();
            }
        }
    }
    let Some((link_id, label)) = chosen else {
        let mode_name = match mode {
            AttachMode::Auto => "any",
            AttachMode::Native => "native",
            AttachMode::Skb => "skb",
        };
        return Err(XdpError::Attach {
            iface: iface.clone(),
            mode: mode_name,
            reason: last_err,
        });
    };

    let pin_err = |path: &Path, reason: String| XdpError::Pin {
        path: path.display().to_string(),
        reason,
    };
    for name in ALL_MAPS {
        let path = pin_dir.join(name);
        ebpf.map(name)
            .ok_or_else(|| XdpError::Load(format!("object has no map {name}")))?
            .pin(&path)
            .map_err(|e| pin_err(&path, e.to_string()))?;
    }

    let program: &mut Xdp = ebpf
        .program_mut(XDP_PROGRAM)
        .expect("program present: loaded above")
        .try_into()
        .expect("program is XDP: converted above");
    let link = program
        .take_link(link_id)
        .map_err(|e| XdpError::Load(e.to_string()))?;
    let link_path = pin_dir.join(LINK_PIN);
    let fd_link = FdLink::try_from(link).map_err(|e| {
        pin_err(
            &link_path,
            format!("kernel attached without a bpf_link, cannot pin it: {e}"),
        )
    })?;
    fd_link
        .pin(&link_path)
        .map_err(|e| pin_err(&link_path, e.to_string()))?;
    Ok(Attached {
        iface: iface.clone(),
        mode: label,
        pin_dir: pin_dir.display().to_string(),
    })
}

/// Loads the embedded program (verifier included) with its model filter filled in.
fn load(models: &[[u8; MODEL_KEY_LEN]]) -> Result<Ebpf, XdpError> {
    let mut ebpf = Ebpf::load(OBJECT).map_err(|e| XdpError::Load(e.to_string()))?;
    if !models.is_empty() {
        let load_err = |e: aya::maps::MapError| XdpError::Load(e.to_string());
        let mut filter: aya::maps::HashMap<_, [u8; MODEL_KEY_LEN], u8> =
            aya::maps::HashMap::try_from(
                ebpf.map_mut(MODELS_MAP)
                    .ok_or_else(|| XdpError::Load(format!("object has no map {MODELS_MAP}")))?,
            )
            .map_err(load_err)?;
        for key in models {
            filter.insert(key, 1, 0).map_err(load_err)?;
        }
        let mut config: aya::maps::Array<_, u32> = aya::maps::Array::try_from(
            ebpf.map_mut(CONFIG_MAP)
                .ok_or_else(|| XdpError::Load(format!("object has no map {CONFIG_MAP}")))?,
        )
        .map_err(load_err)?;
        config.set(CONFIG_FILTER_MODELS, 1, 0).map_err(load_err)?;
    }
    let program: &mut Xdp = ebpf
        .program_mut(XDP_PROGRAM)
        .ok_or_else(|| XdpError::Load(format!("object has no program {XDP_PROGRAM}")))?
        .try_into()
        .map_err(|e: aya::programs::ProgramError| XdpError::Load(e.to_string()))?;
    program.load().map_err(|e| XdpError::Load(e.to_string()))?;
    Ok(ebpf)
}

/// XDP verdicts (`enum xdp_action`).
pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;

/// The program loaded but not attached, fed single frames through `BPF_PROG_TEST_RUN`: packet
/// level tests of exactly the bytecode `attach` uses.
pub struct TestRun {
    ebpf: Ebpf,
}

impl TestRun {
    /// Loads the program; `models` fills the filter as `attach --model` would.
    pub fn load(models: &[String]) -> Result<TestRun, XdpError> {
        preflight()?;
        let keys = models
            .iter()
            .map(|m| model_key(m))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(TestRun { ebpf: load(&keys)? })
    }

    /// Runs the program once on `frame` (an Ethernet frame); returns its verdict.
    pub fn run(&mut self, frame: &[u8]) -> Result<u32, XdpError> {
        use std::os::fd::{AsFd, AsRawFd};
        let program: &Xdp = self
            .ebpf
            .program(XDP_PROGRAM)
            .expect("program present: loaded")
            .try_into()
            .expect("program is XDP: loaded");
        let fd = program
            .fd()
            .map_err(|e| XdpError::Load(e.to_string()))?
            .as_fd()
            .as_raw_fd();
        let mut out = vec![0u8; frame.len() + 256];
        // `union bpf_attr`, the `test` member (linux/bpf.h): prog_fd, retval, data_size_in,
        // data_size_out, data_in, data_out, repeat, duration, ...
        let mut attr = [0u8; 80];
        attr[0..4].copy_from_slice(&(fd as u32).to_ne_bytes());
        attr[8..12].copy_from_slice(&(frame.len() as u32).to_ne_bytes());
        attr[12..16].copy_from_slice(&(out.len() as u32).to_ne_bytes());
        attr[16..24].copy_from_slice(&(frame.as_ptr() as u64).to_ne_bytes());
        attr[24..32].copy_from_slice(&(out.as_mut_ptr() as u64).to_ne_bytes());
        attr[32..36].copy_from_slice(&1u32.to_ne_bytes());
        const BPF_PROG_TEST_RUN: libc::c_long = 10;
        // SAFETY: attr points at live buffers of the sizes it declares.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_PROG_TEST_RUN,
                attr.as_mut_ptr(),
                attr.len() as u32,
            )
        };
        if rc != 0 {
            return Err(XdpError::Load(format!(
                "BPF_PROG_TEST_RUN: {}",
                std::io::Error::last_os_error()
            )));
        }
        Ok(u32::from_ne_bytes(attr[4..8].try_into().expect("4 bytes")))
    }

    /// The counters so far, summed over CPUs.
    pub fn counters(&self) -> Result<BTreeMap<&'static str, u64>, XdpError> {
        let err = |reason: String| XdpError::Counters {
            path: "(loaded program)".into(),
            reason,
        };
        let map = self
            .ebpf
            .map(pfs_common::COUNTERS_MAP)
            .ok_or_else(|| err("no counters map".into()))?;
        let array: PerCpuArray<&MapData, u64> =
            PerCpuArray::try_from(map).map_err(|e| err(e.to_string()))?;
        let mut counters = BTreeMap::new();
        for counter in Counter::ALL {
            let per_cpu = array
                .get(&(counter as u32), 0)
                .map_err(|e| err(e.to_string()))?;
            counters.insert(counter.name(), per_cpu.iter().copied().sum());
        }
        Ok(counters)
    }
}

/// Counter values summed over all CPUs, by counter name.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    pub iface: String,
    pub counters: BTreeMap<&'static str, u64>,
}

impl Stats {
    pub fn get(&self, counter: Counter) -> u64 {
        self.counters.get(counter.name()).copied().unwrap_or(0)
    }
}

/// Reads the pinned counters of `target`.
pub fn stats(target: &Target) -> Result<Stats, XdpError> {
    preflight_root()?;
    let pin_dir = target.pin_dir();
    let path = pin_dir.join(pfs_common::COUNTERS_MAP);
    if !path.exists() {
        return Err(XdpError::NotAttached {
            iface: target.iface.clone(),
            pins: pin_dir.display().to_string(),
        });
    }
    let counters_err = |reason: String| XdpError::Counters {
        path: path.display().to_string(),
        reason,
    };
    let data = MapData::from_pin(&path).map_err(|e| counters_err(e.to_string()))?;
    let array: PerCpuArray<MapData, u64> =
        PerCpuArray::try_from(Map::PerCpuArray(data)).map_err(|e| counters_err(e.to_string()))?;
    let mut counters = BTreeMap::new();
    for counter in Counter::ALL {
        let per_cpu = array
            .get(&(counter as u32), 0)
            .map_err(|e| counters_err(e.to_string()))?;
        counters.insert(counter.name(), per_cpu.iter().copied().sum());
    }
    Ok(Stats {
        iface: target.iface.clone(),
        counters,
    })
}

/// Removes the pins of `target`, which detaches the program.
pub fn detach(target: &Target) -> Result<(), XdpError> {
    preflight_root()?;
    let pin_dir = target.pin_dir();
    if !pin_dir.join(LINK_PIN).exists() {
        return Err(XdpError::NotAttached {
            iface: target.iface.clone(),
            pins: pin_dir.display().to_string(),
        });
    }
    remove_pins(&pin_dir)
}

fn remove_pins(pin_dir: &Path) -> Result<(), XdpError> {
    let pin_err = |reason: String| XdpError::Pin {
        path: pin_dir.display().to_string(),
        reason,
    };
    for name in std::iter::once(LINK_PIN).chain(ALL_MAPS) {
        match std::fs::remove_file(pin_dir.join(name)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(pin_err(e.to_string())),
        }
    }
    std::fs::remove_dir(pin_dir).map_err(|e| pin_err(e.to_string()))?;
    // Tidy empty parents up to PIN_ROOT (a netns directory, then pfs/ itself).
    let mut parent = pin_dir.parent();
    while let Some(dir) = parent {
        if !dir.starts_with(PIN_ROOT) || std::fs::remove_dir(dir).is_err() {
            break;
        }
        parent = dir.parent();
    }
    Ok(())
}

fn preflight_root() -> Result<(), XdpError> {
    if nix::unistd::geteuid().is_root() {
        Ok(())
    } else {
        Err(XdpError::NotRoot)
    }
}

fn preflight() -> Result<(), XdpError> {
    if !is_built() {
        return Err(XdpError::NotBuilt);
    }
    preflight_root()
}

/// Mounts bpffs at /sys/fs/bpf when nothing is mounted there (pins need it).
/// Whether pins made now outlive this process. Under `ip netns exec` the process runs in a
/// mount namespace of its own with a fresh /sys, so a bpffs there (found or mounted) goes away
/// with the process, and the pinned link with it: `pfs xdp attach` printed "attached" and exited
/// 0 while nothing stayed attached. The pins persist when another process (not one of ours or
/// our ancestors) lives in this mount namespace, or when the nearest ancestor outside it sees
/// the same bpffs.
pub fn pins_persist() -> Result<(), XdpError> {
    use std::os::unix::fs::MetadataExt;
    let ns = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/mnt")).ok();
    let Some(mine) = ns("self") else {
        return Ok(());
    };
    let parent_of = |pid: u32| -> Option<u32> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        stat.rsplit_once(')')?
            .1
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    // Our ancestry, and the nearest ancestor in another mount namespace.
    let mut chain = vec![std::process::id()];
    let mut outside = None;
    while let Some(pp) = chain.last().and_then(|&p| parent_of(p)) {
        if pp == 0 || chain.len() > 64 {
            break;
        }
        match ns(&pp.to_string()) {
            Some(n) if n == mine => chain.push(pp),
            Some(_) => {
                outside = Some(pp);
                break;
            }
            None => break,
        }
    }
    let Some(outside) = outside else {
        return Ok(()); // no ancestor in another namespace: this is the host's (or container's)
    };
    // Someone else keeps this mount namespace alive?
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if !chain.contains(&pid) && ns(&pid.to_string()).as_ref() == Some(&mine) {
                return Ok(());
            }
        }
    }
    let bpffs = |p: &str| {
        nix::sys::statfs::statfs(p)
            .ok()
            .filter(|fs| fs.filesystem_type().0 == BPF_FS_MAGIC)
            .and_then(|_| std::fs::metadata(p).ok())
            .map(|m| m.dev())
    };
    let here = bpffs("/sys/fs/bpf");
    if here.is_some() && here == bpffs(&format!("/proc/{outside}/root/sys/fs/bpf")) {
        return Ok(());
    }
    Err(XdpError::PrivateBpffs)
}

fn ensure_bpffs() -> Result<(), XdpError> {
    let mount_point = Path::new("/sys/fs/bpf");
    if let Ok(fs) = nix::sys::statfs::statfs(mount_point)
        && fs.filesystem_type().0 == BPF_FS_MAGIC
    {
        return Ok(());
    }
    nix::mount::mount(
        Some("bpf"),
        mount_point,
        Some("bpf"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .map_err(|e| XdpError::Bpffs(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_dirs_are_per_interface_and_namespace() {
        let plain = Target {
            iface: "eth0".into(),
            netns: None,
        };
        assert_eq!(plain.pin_dir(), PathBuf::from("/sys/fs/bpf/pfs/eth0"));
        let in_ns = Target {
            iface: "veth1".into(),
            netns: Some("pfs12-site".into()),
        };
        assert_eq!(
            in_ns.pin_dir(),
            PathBuf::from("/sys/fs/bpf/pfs/pfs12-site/veth1")
        );
    }

    #[test]
    fn the_embedded_object_is_an_ebpf_elf_when_built() {
        if cfg!(pfs_ebpf_built) {
            assert!(OBJECT.starts_with(b"\x7fELF"), "embedded object is not ELF");
            // e_machine (offset 18, little endian) must be EM_BPF = 247.
            assert_eq!(u16::from_le_bytes([OBJECT[18], OBJECT[19]]), 247);
        } else {
            assert!(OBJECT.is_empty());
            assert!(matches!(preflight(), Err(XdpError::NotBuilt)));
        }
    }
}
