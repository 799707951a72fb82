//! Network namespaces, veth pairs and bridges that pfs creates for tests, demos and labs.
//!
//! Every object created here is owned by a guard whose `Drop` removes it, so a panicking test or
//! an early return still tears the topology down. Names carry the creating process id
//! (`pfs<pid>-...`), which lets [`sweep_stale`] remove what a killed run left behind.
//!
//! Network safety: addresses handed out here are always inside 198.18.0.0/15 (RFC 2544
//! benchmarking range); [`check_lab_addr`] enforces it.

use std::{
    fs::File,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::Command,
    thread,
};

use nix::sched::{CloneFlags, setns};

/// Where `ip netns add` bind-mounts named namespaces.
const NETNS_RUN_DIR: &str = "/var/run/netns";
/// Prefix of every namespace and link pfs creates.
pub const NAME_PREFIX: &str = "pfs";

/// Errors from building or entering a topology.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("`ip {args}` failed: {stderr}")]
    Ip { args: String, stderr: String },
    #[error("cannot run `ip` (install iproute2): {0}")]
    IpMissing(std::io::Error),
    #[error("cannot open network namespace {name}: {source}")]
    Open {
        name: String,
        source: std::io::Error,
    },
    #[error("cannot enter network namespace {name}: {source}")]
    Enter { name: String, source: nix::Error },
    #[error("address {0} is outside 198.18.0.0/15; pfs only sends inside the benchmarking range")]
    UnsafeAddress(Ipv4Addr),
    #[error("the thread working inside network namespace {0} panicked")]
    ThreadPanicked(String),
}

/// Rejects any address outside 198.18.0.0/15.
pub fn check_lab_addr(addr: Ipv4Addr) -> Result<Ipv4Addr, NetnsError> {
    let [a, b, ..] = addr.octets();
    if a == 198 && (b == 18 || b == 19) {
        Ok(addr)
    } else {
        Err(NetnsError::UnsafeAddress(addr))
    }
}

/// Runs `ip ARGS`, returning stdout.
pub fn ip(args: &[&str]) -> Result<String, NetnsError> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(NetnsError::IpMissing)?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(NetnsError::Ip {
            args: args.join(" "),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

/// Runs `ip -n NS ARGS`.
pub fn ip_in(ns: &str, args: &[&str]) -> Result<String, NetnsError> {
    let mut full = vec!["-n", ns];
    full.extend_from_slice(args);
    ip(&full)
}

/// Whether this process may create namespaces (root with iproute2 present).
pub fn can_create() -> bool {
    nix::unistd::geteuid().is_root() && ip(&["-V"]).is_ok()
}

/// A named network namespace, deleted (with every interface inside it) on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates `pfs<pid>-<n><tag>` with loopback up (`n` counts namespaces made by this
    /// process, so concurrent users in one process never collide).
    pub fn create(tag: &str) -> Result<Self, NetnsError> {
        static SERIAL: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("{NAME_PREFIX}{}-{n}{tag}", std::process::id());
        // A leftover of the same name can only be ours from an earlier crash of this pid.
        let _ = ip(&["netns", "del", &name]);
        ip(&["netns", "add", &name])?;
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip -n <self> ARGS`.
    pub fn ip(&self, args: &[&str]) -> Result<String, NetnsError> {
        ip_in(&self.name, args)
    }

    /// Sets a sysctl inside the namespace (e.g. to disable IPv6 chatter on a test link).
    pub fn sysctl(&self, key: &str, value: &str) -> Result<(), NetnsError> {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        let value = value.to_owned();
        run_in(&self.name, move || std::fs::write(&path, value))?.map_err(|source| {
            NetnsError::Open {
                name: format!("sysctl {key}"),
                source,
            }
        })
    }

    /// Runs `f` on a fresh thread that has entered this namespace; sockets created there stay
    /// in the namespace when handed back to other threads.
    pub fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, NetnsError> {
        run_in(&self.name, f)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(err) = ip(&["netns", "del", &self.name]) {
            tracing::warn!(netns = %self.name, %err, "could not delete network namespace");
        }
    }
}

/// Path of a named namespace's handle.
pub fn netns_path(name: &str) -> PathBuf {
    Path::new(NETNS_RUN_DIR).join(name)
}

/// Moves the calling thread into namespace `name`. Only for threads that stay there (a CLI
/// process that works inside one namespace); use [`run_in`] otherwise.
pub fn enter(name: &str) -> Result<(), NetnsError> {
    let file = File::open(netns_path(name)).map_err(|source| NetnsError::Open {
        name: name.to_owned(),
        source,
    })?;
    setns(&file, CloneFlags::CLONE_NEWNET).map_err(|source| NetnsError::Enter {
        name: name.to_owned(),
        source,
    })
}

/// A named namespace in which sockets are made on the calling thread (setns there and back),
/// so a thread per phone and per socket is never needed: `pfs lab` at 1000 phones makes
/// thousands of sockets at power-on, and a thread each cost a turn of hundreds of
/// milliseconds. Holds no descriptor between uses (opened per use: at 1000 phones a held
/// handle each would be 1000 of the 20,000 descriptors a process may have here).
#[derive(Debug)]
pub struct NsHandle {
    name: String,
}

thread_local! {
    /// The namespace this thread started in, to return to after [`NsHandle::run_here`].
    static HOME: std::cell::OnceCell<Option<File>> = const { std::cell::OnceCell::new() };
}

impl NsHandle {
    /// Checks that `/var/run/netns/NAME` exists.
    pub fn open(name: &str) -> Result<NsHandle, NetnsError> {
        File::open(netns_path(name)).map_err(|source| NetnsError::Open {
            name: name.to_owned(),
            source,
        })?;
        Ok(NsHandle {
            name: name.to_owned(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `f` on this thread inside the namespace and returns to the thread's own namespace
    /// before returning. Sockets made by `f` stay in the namespace.
    ///
    /// Errors: the thread's own namespace cannot be opened, or `setns(2)` fails. If returning
    /// fails the thread would be left in the wrong namespace; that aborts the process (a
    /// thread silently sending from another namespace would break the network rules).
    pub fn run_here<T>(&self, f: impl FnOnce() -> T) -> Result<T, NetnsError> {
        HOME.with(|home| {
            let home = home
                .get_or_init(|| File::open("/proc/thread-self/ns/net").ok())
                .as_ref()
                .ok_or_else(|| NetnsError::Open {
                    name: "/proc/thread-self/ns/net".into(),
                    source: std::io::Error::last_os_error(),
                })?;
            let file = File::open(netns_path(&self.name)).map_err(|source| NetnsError::Open {
                name: self.name.clone(),
                source,
            })?;
            setns(&file, CloneFlags::CLONE_NEWNET).map_err(|source| NetnsError::Enter {
                name: self.name.clone(),
                source,
            })?;
            let out = f();
            if let Err(e) = setns(home, CloneFlags::CLONE_NEWNET) {
                eprintln!(
                    "pfs: cannot return from network namespace {}: {e}",
                    self.name
                );
                std::process::abort();
            }
            Ok(out)
        })
    }
}

/// Runs `f` on a new thread inside namespace `name` and returns its result.
pub fn run_in<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, NetnsError> {
    let owned = name.to_owned();
    let handle = thread::Builder::new()
        .name(format!("netns-{name}"))
        .spawn(move || -> Result<T, NetnsError> {
            enter(&owned)?;
            Ok(f())
        })
        .map_err(|source| NetnsError::Open {
            name: name.to_owned(),
            source,
        })?;
    handle
        .join()
        .map_err(|_| NetnsError::ThreadPanicked(name.to_owned()))?
}

/// A veth pair with one end in each of two namespaces, addressed inside 198.18.0.0/15.
#[derive(Debug)]
pub struct VethPair {
    pub a_name: String,
    pub b_name: String,
    pub a_addr: Ipv4Addr,
    pub b_addr: Ipv4Addr,
    pub prefix_len: u8,
}

impl VethPair {
    /// Creates `a_name` in `a` and `b_name` in `b`, addresses them, disables IPv6 on both (so
    /// the only frames on the link are the ones the caller sends) and brings them up. The pair
    /// disappears with either namespace.
    pub fn create(
        a: &Netns,
        a_name: &str,
        a_addr: Ipv4Addr,
        b: &Netns,
        b_name: &str,
        b_addr: Ipv4Addr,
        prefix_len: u8,
    ) -> Result<Self, NetnsError> {
        check_lab_addr(a_addr)?;
        check_lab_addr(b_addr)?;
        // Create inside `a` directly so the host namespace never holds the link.
        a.ip(&[
            "link",
            "add",
            a_name,
            "type",
            "veth",
            "peer",
            "name",
            b_name,
            "netns",
            b.name(),
        ])?;
        for (ns, dev, addr) in [(a, a_name, a_addr), (b, b_name, b_addr)] {
            ns.sysctl(&format!("net.ipv6.conf.{dev}.disable_ipv6"), "1")?;
            ns.ip(&["addr", "add", &format!("{addr}/{prefix_len}"), "dev", dev])?;
            ns.ip(&["link", "set", dev, "up"])?;
        }
        Ok(Self {
            a_name: a_name.to_owned(),
            b_name: b_name.to_owned(),
            a_addr,
            b_addr,
            prefix_len,
        })
    }

    /// Directed broadcast address of the pair's subnet.
    pub fn broadcast(&self) -> Ipv4Addr {
        let mask = u32::MAX
            .checked_shl(32 - u32::from(self.prefix_len))
            .unwrap_or(0);
        Ipv4Addr::from(u32::from(self.a_addr) | !mask)
    }
}

/// Where a run records the host settings it raised, so a later run can restore them if this
/// one is killed before it could.
const TUNING_DIR: &str = "/run/pfs";

/// Host-wide kernel settings that every namespace shares. The IPv4 neighbour table
/// (`gc_thresh3`, 1024 entries by default) and the per-CPU receive backlog
/// (`netdev_max_backlog`, 1000 packets) are sized for one host, not for hundreds of phones on
/// one bridge: past them the kernel drops datagrams (`neighbor table overflow`, ENOBUFS on
/// send) and elections stall. A site raises them for its lifetime; `Drop` puts back every
/// value it changed, unless someone else changed it since.
#[derive(Debug)]
pub struct HostTuning {
    /// (key, value before, value set)
    changed: Vec<(String, u64, u64)>,
    record: PathBuf,
}

fn sysctl_path(key: &str) -> PathBuf {
    Path::new("/proc/sys").join(key.replace('.', "/"))
}

fn read_sysctl(key: &str) -> Option<u64> {
    std::fs::read_to_string(sysctl_path(key))
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn write_sysctl(key: &str, value: u64) -> Result<(), NetnsError> {
    std::fs::write(sysctl_path(key), value.to_string()).map_err(|source| NetnsError::Open {
        name: format!("sysctl {key}"),
        source,
    })
}

impl HostTuning {
    /// Raises each `(key, at_least)` that is below it (never lowers anything).
    pub fn raise(wants: &[(&str, u64)]) -> Result<HostTuning, NetnsError> {
        let record = Path::new(TUNING_DIR).join(format!("sysctl-{}", std::process::id()));
        let mut tuning = HostTuning {
            changed: Vec::new(),
            record,
        };
        for &(key, want) in wants {
            let Some(before) = read_sysctl(key) else {
                continue; // not on this kernel
            };
            if before >= want {
                continue;
            }
            write_sysctl(key, want)?;
            tracing::info!("host setting {key}: {before} -> {want} for this run");
            tuning.changed.push((key.to_owned(), before, want));
            tuning.save();
        }
        Ok(tuning)
    }

    /// What this run changed: (key, before, set).
    pub fn changed(&self) -> &[(String, u64, u64)] {
        &self.changed
    }

    fn save(&self) {
        let text: String = self
            .changed
            .iter()
            .map(|(k, before, set)| format!("{k} {before} {set}\n"))
            .collect();
        let _ = std::fs::create_dir_all(TUNING_DIR);
        let _ = std::fs::write(&self.record, text);
    }
}

impl Drop for HostTuning {
    fn drop(&mut self) {
        restore(&self.changed);
        let _ = std::fs::remove_file(&self.record);
    }
}

fn restore(changed: &[(String, u64, u64)]) {
    for (key, before, set) in changed.iter().rev() {
        if read_sysctl(key) == Some(*set) {
            let _ = write_sysctl(key, *before);
        }
    }
}

/// Restores host settings recorded by runs that are no longer alive.
fn restore_stale_tuning() {
    let Ok(entries) = std::fs::read_dir(TUNING_DIR) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("sysctl-")
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if Path::new("/proc").join(pid.to_string()).exists() {
            continue;
        }
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        let changed: Vec<(String, u64, u64)> = text
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                Some((
                    w.next()?.to_owned(),
                    w.next()?.parse().ok()?,
                    w.next()?.parse().ok()?,
                ))
            })
            .collect();
        restore(&changed);
        let _ = std::fs::remove_file(entry.path());
    }
}

/// Deletes namespaces named `pfs<pid>-...` whose creating process no longer runs, and puts
/// back host settings such a run raised. Returns the names removed.
pub fn sweep_stale() -> Vec<String> {
    restore_stale_tuning();
    let mut removed = Vec::new();
    let Ok(entries) = std::fs::read_dir(NETNS_RUN_DIR) else {
        return removed;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = owner_pid(&name) else {
            continue;
        };
        let alive = Path::new("/proc").join(pid.to_string()).exists();
        if !alive && ip(&["netns", "del", &name]).is_ok() {
            removed.push(name);
        }
    }
    removed
}

/// The pid encoded in a namespace name made by [`Netns::create`].
fn owner_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(NAME_PREFIX)?;
    let (pid, _tag) = rest.split_once('-')?;
    pid.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lab_addresses_must_be_in_the_benchmarking_range() {
        assert!(check_lab_addr(Ipv4Addr::new(198, 18, 0, 1)).is_ok());
        assert!(check_lab_addr(Ipv4Addr::new(198, 19, 255, 254)).is_ok());
        for bad in [
            Ipv4Addr::new(198, 20, 0, 1),
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(192, 168, 1, 1),
            Ipv4Addr::new(8, 8, 8, 8),
        ] {
            assert!(matches!(
                check_lab_addr(bad),
                Err(NetnsError::UnsafeAddress(a)) if a == bad
            ));
        }
    }

    #[test]
    fn owner_pid_parses_only_our_names() {
        assert_eq!(owner_pid("pfs1234-hq"), Some(1234));
        assert_eq!(owner_pid("pfs1234-phone-7"), Some(1234));
        assert_eq!(owner_pid("pfsx-hq"), None);
        assert_eq!(owner_pid("other-1"), None);
        assert_eq!(owner_pid("pfs"), None);
    }

    #[test]
    fn broadcast_of_a_24() {
        let pair = VethPair {
            a_name: "a".into(),
            b_name: "b".into(),
            a_addr: Ipv4Addr::new(198, 18, 0, 1),
            b_addr: Ipv4Addr::new(198, 18, 0, 2),
            prefix_len: 24,
        };
        assert_eq!(pair.broadcast(), Ipv4Addr::new(198, 18, 0, 255));
    }
}
