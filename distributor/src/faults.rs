//! Faults injected into real phones on real sockets (`pfs lab --crash-fraction ...`): a seeded
//! plan says which phones fail, how and when; the fleet's cores carry it out on their phones
//! (crash: every socket closed and the phone stops; freeze: the phone stops processing but its
//! sockets stay open; cut: its link goes down inside its namespace, no RST) and measure how long
//! the orphaned children take to receive a chunk again.

use std::{
    collections::{BTreeMap, HashSet},
    net::Ipv4Addr,
    sync::Mutex,
    time::{Duration, Instant},
};

use rand::{Rng, SeedableRng, seq::SliceRandom};
use rand_chacha::ChaCha8Rng;

/// What `pfs lab` injects; the simulator's flag names where they exist.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct FaultPlan {
    pub seed: u64,
    /// Phones that die abruptly (sockets closed by the kernel, the phone stops).
    pub crash_fraction: f64,
    /// When they crash (default: a seeded time within the first `limit` seconds).
    pub crash_at_s: Option<f64>,
    /// Phones that hang: sockets open, nothing processed.
    pub freeze_fraction: f64,
    /// Phones whose link goes down in their namespace (half-open connections, no RST).
    pub cut_fraction: f64,
    /// Bring a cut link back up after this long (default: never).
    pub cut_for_s: Option<f64>,
    /// Phones whose port is shaped to `slow_mbit`.
    pub slow_fraction: f64,
    pub slow_mbit: f64,
    /// Phones that relay chunks with flipped bytes.
    pub corrupt_peers: usize,
    /// Hostile phones claiming root with the strongest adverts, then feeding their children
    /// nothing (even-numbered liars) or a trickle (odd-numbered).
    pub liar_peers: usize,
    /// The root of every hierarchy crashes when it holds this fraction of its file.
    pub kill_root_at: Option<f64>,
    /// The root of every hierarchy has its link cut when it holds this fraction of its file.
    pub cut_root_at: Option<f64>,
    /// The first phone to confirm itself root of any file has its link cut this long after
    /// (the hand-made fault of issue 14).
    pub cut_first_root_after_s: Option<f64>,
    /// Random packet loss (0..1) on the site bridge and the WAN (nftables `numgen random`).
    pub loss: f64,
    /// The site router drops every IP fragment between the WAN and the site, as some
    /// firewalls do: fragment-filling TFTP blocks never arrive.
    pub drop_fragments: bool,
}

impl FaultPlan {
    pub fn is_empty(&self) -> bool {
        self.crash_fraction <= 0.0
            && self.freeze_fraction <= 0.0
            && self.cut_fraction <= 0.0
            && self.slow_fraction <= 0.0
            && self.corrupt_peers == 0
            && self.liar_peers == 0
            && self.kill_root_at.is_none()
            && self.cut_root_at.is_none()
            && self.cut_first_root_after_s.is_none()
            && self.loss <= 0.0
            && !self.drop_fragments
    }

    /// Which phone gets what: disjoint sets, drawn from `seed`. Phone 0 .. n-1.
    pub fn assign(&self, phones: usize, horizon: Duration) -> Assignment {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ 0x6661_756c_7473);
        let mut order: Vec<usize> = (0..phones).collect();
        order.shuffle(&mut rng);
        let mut take = |frac: f64| -> Vec<usize> {
            let k = ((phones as f64) * frac.clamp(0.0, 1.0)).round() as usize;
            let k = k.min(order.len());
            order.drain(..k).collect()
        };
        let crash = take(self.crash_fraction);
        let freeze = take(self.freeze_fraction);
        let cut = take(self.cut_fraction);
        let slow = take(self.slow_fraction);
        let corrupt = {
            let k = self.corrupt_peers.min(order.len());
            order.drain(..k).collect::<Vec<_>>()
        };
        let liars = {
            let k = self.liar_peers.min(order.len());
            order.drain(..k).collect::<Vec<_>>()
        };
        let h = horizon.as_secs_f64().max(1.0);
        let mut scheduled = vec![None; phones];
        let at = |rng: &mut ChaCha8Rng| Duration::from_secs_f64(rng.random_range(0.5..h));
        for &p in &crash {
            let t = self
                .crash_at_s
                .map_or_else(|| at(&mut rng), Duration::from_secs_f64);
            scheduled[p] = Some(PhoneFault {
                kind: FaultKind::Crash,
                at: t,
            });
        }
        for &p in &freeze {
            scheduled[p] = Some(PhoneFault {
                kind: FaultKind::Freeze,
                at: at(&mut rng),
            });
        }
        for &p in &cut {
            scheduled[p] = Some(PhoneFault {
                kind: FaultKind::Cut {
                    back_after: self.cut_for_s.map(Duration::from_secs_f64),
                },
                at: at(&mut rng),
            });
        }
        Assignment {
            scheduled,
            slow,
            corrupt,
            liars,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    Crash,
    Freeze,
    Cut { back_after: Option<Duration> },
}

#[derive(Debug, Clone, Copy)]
pub struct PhoneFault {
    pub kind: FaultKind,
    /// After the common boot instant.
    pub at: Duration,
}

/// A plan drawn for a site.
#[derive(Debug, Clone, Default)]
pub struct Assignment {
    pub scheduled: Vec<Option<PhoneFault>>,
    pub slow: Vec<usize>,
    pub corrupt: Vec<usize>,
    pub liars: Vec<usize>,
}

/// What happened to one phone.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FaultEvent {
    pub phone: Ipv4Addr,
    pub kind: &'static str,
    /// Why: "planned", or "root" for `--kill-root-at` / `--cut-root-at`.
    pub why: &'static str,
    pub at_s: f64,
    /// Direct children it had when it failed (over every hierarchy).
    pub orphans: u32,
}

/// A child orphaned by a fault, waiting for its next chunk.
#[derive(Debug, Clone)]
struct Orphan {
    child: Ipv4Addr,
    h: u32,
    verified: u32,
    since: Instant,
}

/// The run-time side of a plan, shared by the fleet's cores.
#[derive(Debug)]
pub struct FaultRuntime {
    pub plan: FaultPlan,
    pub assignment: Assignment,
    /// Hierarchies whose root was already killed (by name), so successors are spared.
    killed: Mutex<HashSet<(String, u32)>>,
    pub events: Mutex<Vec<FaultEvent>>,
    orphans: Mutex<Vec<Orphan>>,
    /// Seconds from a fault to the first chunk each orphaned child received again.
    pub recoveries: Mutex<Vec<f64>>,
    /// Cut links to bring back: (namespace, when).
    restore: Mutex<BTreeMap<String, Instant>>,
    /// Sockets of frozen phones holding unread data when the run ended (cores add theirs).
    pub frozen_unread_sockets: std::sync::atomic::AtomicU64,
}

impl FaultRuntime {
    /// The faults planned for these phones (`index`: their numbers in the plan): corrupt peers,
    /// liars, slow links.
    pub(crate) fn assign_to(&self, h: &mut crate::peer::Host, index: &[usize]) {
        for (k, &i) in index.iter().enumerate() {
            if self.is_corrupt(i)
                && let Some(p) = h.peers.get_mut(k)
            {
                p.set_corrupt();
            }
            if let Some(kind) = self.liar_of(i)
                && let Some(p) = h.peers.get_mut(k)
            {
                p.set_liar(kind);
            }
            if self.assignment.slow.contains(&i)
                && let Some(p) = h.peers.get_mut(k)
            {
                p.set_link_kbit((self.plan.slow_mbit * 1000.0) as u32);
            }
        }
    }

    pub fn new(plan: FaultPlan, phones: usize, horizon: Duration) -> FaultRuntime {
        let assignment = plan.assign(phones, horizon);
        FaultRuntime {
            plan,
            assignment,
            killed: Mutex::new(HashSet::new()),
            events: Mutex::new(Vec::new()),
            orphans: Mutex::new(Vec::new()),
            recoveries: Mutex::new(Vec::new()),
            restore: Mutex::new(BTreeMap::new()),
            frozen_unread_sockets: std::sync::atomic::AtomicU64::new(0),
        }
    }

    pub fn is_corrupt(&self, phone: usize) -> bool {
        self.assignment.corrupt.contains(&phone)
    }

    /// Phone `phone`'s liar kind, if it is one: the first liar is silent, the second trickles,
    /// and so on (as the simulator's).
    pub fn liar_of(&self, phone: usize) -> Option<crate::phone::Liar> {
        let k = self.assignment.liars.iter().position(|&i| i == phone)?;
        Some(if k % 2 == 0 {
            crate::phone::Liar::Silent
        } else {
            crate::phone::Liar::Trickle
        })
    }

    /// Called by a core every turn with its phones and their indices.
    pub fn tick(&self, start: Instant, peers: &mut [crate::peer::Peer], index: &[usize]) {
        let now = Instant::now();
        let elapsed = now.duration_since(start);
        for (k, p) in peers.iter_mut().enumerate() {
            if p.fault() != crate::peer::Fault::None || p.liar().is_some() || p.is_installed() {
                // A liar is a fault of its own, never a root to kill. A phone that already
                // installed is upgraded: a later power loss does not undo it, and counting it
                // would count the phone twice (installed and faulted), as the simulator does not.
                continue;
            }
            let Some((kind, why)) = self.due_fault(p, index[k], elapsed) else {
                continue;
            };
            // Its children, before it goes.
            let orphans = self.note_orphans(p, now);
            let name = self.inject(p, kind, now);
            tracing::warn!(phone = %p.addr(), "fault injected: {name} ({why})");
            self.events.lock().expect("lock").push(FaultEvent {
                phone: p.addr(),
                kind: name,
                why,
                at_s: elapsed.as_secs_f64(),
                orphans,
            });
        }
        self.track_orphans(peers, now);
        self.restore_due_links(peers, now);
    }

    /// The fault phone `p` (number `index` in the plan) suffers now, `elapsed` into the run,
    /// and why: its planned fault once due, else the plan's root kill or cut once `p` is a root
    /// far enough into a file (once per model and hierarchy), else the cut of the first
    /// confirmed root (once per run).
    fn due_fault(
        &self,
        p: &crate::peer::Peer,
        index: usize,
        elapsed: Duration,
    ) -> Option<(FaultKind, &'static str)> {
        let planned = self
            .assignment
            .scheduled
            .get(index)
            .copied()
            .flatten()
            .filter(|f| elapsed >= f.at);
        let root_of = |at: f64| {
            p.core()
                .hierarchies
                .iter()
                .find(|x| {
                    x.role == crate::phone::Role::Root
                        && x.chunks > 0
                        && f64::from(x.verified) >= at * f64::from(x.chunks)
                        && !x.done()
                })
                .map(|x| x.id)
        };
        if let Some(f) = planned {
            Some((f.kind, "planned"))
        } else if let Some(h) = self.plan.kill_root_at.and_then(root_of)
            && self.first_kill((p.model().to_owned(), h))
        {
            Some((FaultKind::Crash, "root"))
        } else if let Some(h) = self.plan.cut_root_at.and_then(root_of)
            && self.first_kill((p.model().to_owned(), h))
        {
            Some((FaultKind::Cut { back_after: None }, "root"))
        } else if let Some(after) = self.plan.cut_first_root_after_s
            && let Some(c) = p.confirmed_root_s()
            && elapsed.as_secs_f64() >= c + after
            && self.first_kill((String::new(), u32::MAX))
        {
            Some((FaultKind::Cut { back_after: None }, "first root"))
        } else {
            None
        }
    }

    /// Records a kill of `target` (model, hierarchy); false when it was already killed.
    fn first_kill(&self, target: (String, u32)) -> bool {
        self.killed.lock().expect("lock").insert(target)
    }

    /// Notes `p`'s children as orphans (their recovery is timed from `now`); how many.
    fn note_orphans(&self, p: &crate::peer::Peer, now: Instant) -> u32 {
        let mut orphans = 0;
        let mut o = self.orphans.lock().expect("lock");
        for x in &p.core().hierarchies {
            for c in x.children() {
                orphans += 1;
                o.push(Orphan {
                    child: Ipv4Addr::from(c),
                    h: x.id,
                    verified: u32::MAX, // filled by the child's core
                    since: now,
                });
            }
        }
        orphans
    }

    /// Applies `kind` to `p` (a cut that comes back is scheduled); the fault's name.
    fn inject(&self, p: &mut crate::peer::Peer, kind: FaultKind, now: Instant) -> &'static str {
        match kind {
            FaultKind::Crash => {
                p.crash();
                "crash"
            }
            FaultKind::Freeze => {
                p.freeze();
                "freeze"
            }
            FaultKind::Cut { back_after } => {
                p.cut();
                if let (Some(d), Some(ns)) = (back_after, p.netns()) {
                    self.restore
                        .lock()
                        .expect("lock")
                        .insert(ns.to_owned(), now + d);
                }
                "cut"
            }
        }
    }

    /// Orphans on this core: note their verified count, then wait for it to grow (a recovery).
    fn track_orphans(&self, peers: &[crate::peer::Peer], now: Instant) {
        let mut o = self.orphans.lock().expect("lock");
        if !o.is_empty() {
            let mut done = Vec::new();
            o.retain_mut(|orph| {
                let Some(p) = peers.iter().find(|p| p.addr() == orph.child) else {
                    return true;
                };
                if p.fault() != crate::peer::Fault::None {
                    return false; // the child failed too
                }
                let Some(x) = p.core().hierarchies.iter().find(|x| x.id == orph.h) else {
                    return false;
                };
                if orph.verified == u32::MAX {
                    orph.verified = x.verified;
                    return !x.done();
                }
                if x.verified > orph.verified {
                    done.push(now.duration_since(orph.since).as_secs_f64());
                    return false;
                }
                !x.done()
            });
            drop(o);
            self.recoveries.lock().expect("lock").extend(done);
        } else {
            drop(o);
        }
    }

    /// Cut links whose time has come back up.
    fn restore_due_links(&self, peers: &mut [crate::peer::Peer], now: Instant) {
        let mut r = self.restore.lock().expect("lock");
        let due: Vec<String> = r
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(n, _)| n.clone())
            .collect();
        for ns in due {
            r.remove(&ns);
            link_up(&ns);
            if let Some(p) = peers.iter_mut().find(|p| p.netns() == Some(ns.as_str())) {
                p.uncut();
            }
        }
    }

    /// Down for good: crashed, frozen, or cut with no restore due.
    pub fn gone(&self, p: &crate::peer::Peer) -> bool {
        use crate::peer::Fault;
        if p.liar().is_some() {
            return true; // never waited for: it is no phone
        }
        match p.fault() {
            Fault::Crashed | Fault::Frozen => true,
            Fault::Cut => p
                .netns()
                .is_none_or(|ns| !self.restore.lock().expect("lock").contains_key(ns)),
            Fault::None | Fault::Restored => false,
        }
    }

    pub fn counts(&self) -> BTreeMap<&'static str, u32> {
        let mut m = BTreeMap::new();
        for e in self.events.lock().expect("lock").iter() {
            *m.entry(e.kind).or_default() += 1;
        }
        m
    }
}

/// Takes a phone's port down inside its namespace: no RST, connections stay half-open.
pub fn link_down(ns: &str) {
    if let Err(e) = crate::netns::ip_in(ns, &["link", "set", crate::topology::PHONE_IFACE, "down"])
    {
        tracing::warn!("cutting {ns}: {e}");
    }
}

/// Brings a cut port back with its default route (a link going down drops it).
pub fn link_up(ns: &str) {
    let gw = crate::topology::ROUTER_LAN.to_string();
    for args in [
        vec!["link", "set", crate::topology::PHONE_IFACE, "up"],
        vec!["route", "replace", "default", "via", gw.as_str()],
    ] {
        if let Err(e) = crate::netns::ip_in(ns, &args) {
            tracing::warn!("restoring {ns}: {e}");
        }
    }
}

fn run(cmd: &str, args: &[&str], stdin: Option<&str>) -> Result<(), String> {
    use std::io::Write;
    let mut c = std::process::Command::new(cmd);
    c.args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().map_err(|e| format!("{cmd}: {e}"))?;
    if let (Some(text), Some(mut i)) = (stdin, child.stdin.take()) {
        i.write_all(text.as_bytes())
            .map_err(|e| format!("{cmd}: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("{cmd}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

fn tbf(ns: &str, dev: &str, kbit: u32) -> Result<(), String> {
    let rate = format!("{kbit}kbit");
    let burst = (u64::from(kbit) * 1000 / 8 / 100)
        .max(32 * 1024)
        .to_string();
    run(
        "tc",
        &[
            "-n", ns, "qdisc", "replace", "dev", dev, "root", "tbf", "rate", &rate, "burst",
            &burst, "latency", "100ms",
        ],
        None,
    )
}

/// Shapes phone `i`'s port (both ends of its veth) to `kbit`.
pub fn shape(site: &crate::topology::Site, i: usize, kbit: u32) -> Result<(), String> {
    tbf(site.phones[i].name(), crate::topology::PHONE_IFACE, kbit)?;
    tbf(site.router.name(), &format!("p{i}"), kbit)
}

/// Puts phone `i`'s port back to the site's rate (`None`: unshaped).
pub fn unshape(site: &crate::topology::Site, i: usize, kbit: Option<u32>) -> Result<(), String> {
    let port = format!("p{i}");
    for (ns, dev) in [
        (site.phones[i].name(), crate::topology::PHONE_IFACE),
        (site.router.name(), port.as_str()),
    ] {
        match kbit {
            Some(k) => tbf(ns, dev, k)?,
            None => run("tc", &["-n", ns, "qdisc", "del", "dev", dev, "root"], None)?,
        }
    }
    Ok(())
}

/// Real random loss in the kernel: nftables `numgen random` in the site router, in the bridge
/// family (every frame between phones, broadcasts included) and the ip family's forward hook
/// (everything between the WAN and the site). The tables go with the router's namespace.
pub fn loss_on(site: &crate::topology::Site, p: f64) -> Result<(), String> {
    let n = (p.clamp(0.0, 1.0) * 10_000.0).round() as u32;
    let mut rules = String::new();
    for family in ["bridge", "ip"] {
        rules.push_str(&format!(
            "table {family} pfs_loss {{\n chain lossy {{\n  type filter hook forward priority 0; \
             policy accept;\n  numgen random mod 10000 < {n} drop\n }}\n}}\n"
        ));
    }
    run(
        "ip",
        &["netns", "exec", site.router.name(), "nft", "-f", "-"],
        Some(&rules),
    )
    .map_err(|e| format!("{e} (apt-get install nftables)"))
}

/// Every IP fragment (more-fragments set or a non-zero offset) forwarded between the WAN and
/// the site is dropped in the site router, as a firewall that refuses fragments does.
pub fn drop_fragments_on(site: &crate::topology::Site) -> Result<(), String> {
    let rules = "table ip pfs_frag {\n chain fw {\n  type filter hook forward priority 0; \
                 policy accept;\n  ip frag-off & 0x3fff != 0 drop\n }\n}\n";
    run(
        "ip",
        &["netns", "exec", site.router.name(), "nft", "-f", "-"],
        Some(rules),
    )
    .map_err(|e| format!("{e} (apt-get install nftables)"))
}

pub fn drop_fragments_off(site: &crate::topology::Site) {
    delete_table(site, "ip", "pfs_frag");
}

/// Deletes nftables table `family name` in the site router (best effort: at teardown a table
/// that was never made, or is gone, is not an error).
fn delete_table(site: &crate::topology::Site, family: &str, name: &str) {
    let router = site.router.name();
    let args = [
        "netns", "exec", router, "nft", "delete", "table", family, name,
    ];
    let _ = run("ip", &args, None);
}

pub fn loss_off(site: &crate::topology::Site) {
    for fam in ["bridge", "ip"] {
        delete_table(site, fam, "pfs_loss");
    }
}

/// Quantiles of recovery times (seconds).
pub fn quantile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let i = ((s.len() - 1) as f64 * q).round() as usize;
    s[i]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_is_seeded_and_disjoint() {
        let plan = FaultPlan {
            seed: 7,
            crash_fraction: 0.1,
            freeze_fraction: 0.05,
            cut_fraction: 0.05,
            slow_fraction: 0.05,
            corrupt_peers: 2,
            ..FaultPlan::default()
        };
        let a = plan.assign(100, Duration::from_secs(10));
        let b = plan.assign(100, Duration::from_secs(10));
        let faulted: Vec<usize> = (0..100).filter(|&i| a.scheduled[i].is_some()).collect();
        assert_eq!(faulted.len(), 20);
        assert_eq!(
            faulted,
            (0..100)
                .filter(|&i| b.scheduled[i].is_some())
                .collect::<Vec<_>>()
        );
        assert_eq!(a.slow.len(), 5);
        assert_eq!(a.corrupt.len(), 2);
        for p in a.slow.iter().chain(&a.corrupt) {
            assert!(a.scheduled[*p].is_none());
        }
    }
}
