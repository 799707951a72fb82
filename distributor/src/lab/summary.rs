//! A run's report counted from what happened: every phone's events, the origin's and the WAN's own counters, the fault plan.

use super::*;

/// Text drawing of every hierarchy's tree (`--tree`).
pub fn text_trees(r: &LabReport) -> String {
    let mut out = String::new();
    for (name, nodes) in &r.trees {
        out.push_str(&format!("{name}\n"));
        let kids = |p: Option<Ipv4Addr>| -> Vec<&TreeNode> {
            let mut v: Vec<&TreeNode> = nodes.iter().filter(|n| n.parent == p).collect();
            v.sort_by_key(|n| n.phone);
            v
        };
        let mut stack: Vec<(&TreeNode, usize)> = kids(None)
            .into_iter()
            .filter(|n| n.role == "root" || n.role == "fallback" || n.role == "traditional")
            .map(|n| (n, 0))
            .collect();
        let mut shown = 0;
        while let Some((n, d)) = stack.pop() {
            shown += 1;
            if shown > 10_000 {
                break; // bounded even if reports disagree
            }
            out.push_str(&format!("{}{} ({})\n", "  ".repeat(d + 1), n.phone, n.role));
            for k in kids(Some(n.phone)).into_iter().rev() {
                if d < 255 {
                    stack.push((k, d + 1));
                }
            }
        }
    }
    out
}

/// User + system CPU seconds of this process so far.
pub(super) fn cpu_seconds() -> f64 {
    // SAFETY: getrusage(2) fills the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) } != 0 {
        return 0.0;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// A numeric field of /proc/self/status (kB for memory fields).
pub(super) fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

impl Lab {
    /// The fault plan's part of the report.
    pub(super) fn fault_summary(&self, r: &mut LabReport, f: Option<&crate::faults::FaultRuntime>) {
        let Some(f) = f else {
            r.normal_makespan_s = r.makespan_s;
            r.stuck = r.phones - r.completed;
            return;
        };
        let events = f.events.lock().expect("lock").clone();
        let faulted: std::collections::HashSet<Ipv4Addr> = events.iter().map(|e| e.phone).collect();
        let counts = f.counts();
        r.crashed = counts.get("crash").copied().unwrap_or(0);
        r.frozen = counts.get("freeze").copied().unwrap_or(0);
        r.frozen_unread_sockets = f
            .frozen_unread_sockets
            .load(std::sync::atomic::Ordering::Relaxed);
        r.cut = counts.get("cut").copied().unwrap_or(0);
        r.slow = f.assignment.slow.len() as u32;
        r.corrupt_peers = f.assignment.corrupt.len() as u32;
        r.liars = f.assignment.liars.len() as u32;
        let liars: std::collections::HashSet<Ipv4Addr> = f
            .assignment
            .liars
            .iter()
            .map(|&i| self.site.phone_addrs[i])
            .collect();
        let special: std::collections::HashSet<Ipv4Addr> = f
            .assignment
            .slow
            .iter()
            .chain(&f.assignment.corrupt)
            .chain(&f.assignment.liars)
            .map(|&i| self.site.phone_addrs[i])
            .collect();
        r.stuck = 0;
        r.normal_makespan_s = 0.0;
        for t in &r.phone_times {
            match t.installed_s {
                Some(s) => {
                    if !faulted.contains(&t.phone) && !special.contains(&t.phone) {
                        r.normal_makespan_s = r.normal_makespan_s.max(s);
                    }
                }
                None if faulted.contains(&t.phone) || liars.contains(&t.phone) => {}
                None => r.stuck += 1,
            }
        }
        let rec = f.recoveries.lock().expect("lock").clone();
        r.recoveries = rec.len() as u32;
        r.recovery_p50_s = crate::faults::quantile(&rec, 0.5);
        r.recovery_max_s = crate::faults::quantile(&rec, 1.0);
        r.fault_events = events;
    }

    /// DATA blocks the embedded origin has resent so far (counted as each transfer ends).
    pub(super) fn origin_resends(&self) -> Option<u64> {
        match &self.origin {
            OriginGuard::Pfs(h, _) => Some(
                h.stats
                    .resent_blocks
                    .load(std::sync::atomic::Ordering::Relaxed) as u64,
            ),
            OriginGuard::Process(_) => None,
        }
    }

    pub(super) fn summarise(
        &self,
        mode: Mode,
        start: Instant,
        results: Vec<(usize, PeerReport, Option<Instant>)>,
        wan_link_bytes: u64,
        stores: &Path,
    ) -> LabReport {
        let load_bytes = self.manifests[0].2.load_bytes();
        let models = self.manifests.len() as u32;
        let mut completions = Vec::new();
        let mut phone_times = Vec::new();
        let mut corrupt = 0;
        let mut files = FileTally::default();
        let (mut zc_sends, mut zc_copied) = (0, 0);
        let mut backend = String::new();
        let mut messages_sent: BTreeMap<String, u64> = BTreeMap::new();
        for (i, r, done) in &results {
            for (k, v) in &r.messages_sent {
                *messages_sent.entry(k.clone()).or_default() += v;
            }
            if let Some(at) = done {
                let s = at.duration_since(start).as_secs_f64();
                completions.push(s);
                if !self.install_verifies(*i, stores) {
                    corrupt += 1;
                }
            }
            phone_times.push(crate::report::PhoneTime {
                phone: r.peer,
                model: r.model.clone(),
                installed_s: done.map(|at| at.duration_since(start).as_secs_f64()),
                fallbacks: r.files.iter().map(|f| f.fallbacks).sum(),
            });
            backend = r.engine.backend.to_owned();
            zc_sends += r.engine.zc_sends;
            zc_copied += r.engine.zc_copied;
            files.add(r);
        }
        let c = crate::fleet::Completions::of(&completions);
        let wan_rate = self.cfg.wan_mbit * 1e6 / 8.0;
        // Everything not counted here (faults, the origin's and the engine's counters, the
        // host) is filled in by the run.
        LabReport {
            mode: mode.into(),
            phones: self.cfg.phones as u32,
            completed: completions.len() as u32,
            corrupt_installs: corrupt,
            origin_fallbacks: files.fallbacks,
            fallbacks_by_reason: files.fallbacks_by_reason,
            origin_switches: files.origin_switches,
            roots_rejected_corrupt: files.roots_rejected_corrupt,
            roots_rejected_stalled: files.roots_rejected_stalled,
            roots_max: files.roots.values().copied().max().unwrap_or(0),
            roots_elected_max: files.confirmed.values().copied().max().unwrap_or(0),
            roots_became_max: files.became.values().copied().max().unwrap_or(0),
            origin_session_bound: u64::from(models)
                * (self.manifests[0].2.files.len() as u64 + 1) // and the manifest's hierarchy
                * (1 + u64::from(crate::phone::Config::default().fallback_slots)),
            max_children: files.max_children,
            max_depth: files.max_depth,
            wan_bytes: files.wan,
            wan_link_bytes,
            wan_manifest_bytes: ManifestCounts::run_bytes(&results),
            manifests: ManifestCounts::of(&results),
            load_bytes,
            models,
            makespan_s: completions.iter().copied().fold(0.0, f64::max),
            limit_s: f64::from(models) * load_bytes as f64 / wan_rate,
            completion_p50_s: c.p50_s,
            completion_p90_s: c.p90_s,
            completion_p99_s: c.p99_s,
            completion_max_s: c.max_s,
            setup_s: self.setup_s,
            wan_mbit: self.cfg.wan_mbit,
            lan_mbit: self.cfg.lan_mbit,
            backend,
            zc_sends,
            zc_copied,
            trees: files.trees,
            completions,
            phone_times,
            messages_sent,
            ..Default::default()
        }
    }

    /// Whether what phone `i` installed verifies against its model's manifest, checked
    /// independently of the phone.
    fn install_verifies(&self, i: usize, stores: &Path) -> bool {
        let (_, _, m) = &self.manifests[self.model_of(i)];
        let dir = crate::store::Store::new(&stores.join(format!("phone{i}"))).load_dir(&m.load);
        m.verify_dir(&dir).is_ok()
    }
}

/// What the phones' per-file reports add up to, per hierarchy (`model/file`) and over all.
#[derive(Default)]
struct FileTally {
    /// Phones that were root of each hierarchy at the end.
    roots: BTreeMap<String, u32>,
    /// Phones that confirmed themselves root of each hierarchy.
    confirmed: BTreeMap<String, u32>,
    /// Per hierarchy: phones that ever became its root, confirmed or not.
    became: BTreeMap<String, u32>,
    trees: BTreeMap<String, Vec<TreeNode>>,
    max_children: u32,
    max_depth: u32,
    fallbacks: u32,
    fallbacks_by_reason: BTreeMap<String, u32>,
    origin_switches: BTreeMap<String, u32>,
    roots_rejected_corrupt: u32,
    roots_rejected_stalled: u32,
    /// Bytes the phones fetched from the origin.
    wan: u64,
}

impl FileTally {
    /// Adds every file of one phone's report.
    fn add(&mut self, r: &PeerReport) {
        for f in &r.files {
            let h = format!("{}/{}", r.model, f.file);
            // Confirmed roots at the end: a phone still in the fetching tier of a late claim
            // is not counted, as it is not in `roots_elected_max` (which `cross_check` holds
            // this snapshot below).
            if f.role == "root" && f.confirmed_root {
                *self.roots.entry(h.clone()).or_default() += 1;
            }
            self.max_children = self.max_children.max(f.max_children as u32);
            self.max_depth = self.max_depth.max(u32::from(f.depth));
            self.fallbacks += f.fallbacks;
            for reason in &f.fallback_reasons {
                let name = serde_json::to_value(reason)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                *self.fallbacks_by_reason.entry(name).or_default() += 1;
            }
            for (why, n) in &f.origin_switches {
                *self.origin_switches.entry(why.clone()).or_default() += n;
            }
            self.roots_rejected_corrupt += f.roots_rejected_corrupt;
            self.roots_rejected_stalled += f.roots_rejected_stalled;
            if f.confirmed_root {
                *self.confirmed.entry(h.clone()).or_default() += 1;
            }
            if f.became_root {
                *self.became.entry(h.clone()).or_default() += 1;
            }
            self.wan += f.origin_bytes * u64::from(!f.manifest); // firmware: the manifest apart
            self.trees.entry(h).or_default().push(TreeNode {
                phone: r.peer,
                parent: f.parent.filter(|_| f.role == "member"),
                depth: f.depth,
                role: f.role.clone(),
            });
        }
    }
}
