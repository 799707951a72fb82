//! What a lab run reports (`pfs lab --json`; every field in docs/report.md).

use super::*;

/// One hierarchy's tree: (phone, parent) edges; the root has no parent.
/// Where the phones' manifests came from, counted from each phone's events.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ManifestCounts {
    /// Manifest transfers phones opened at the origin during the run (roots of a manifest's
    /// hierarchy and lease holders; retries count), plus one per keyless phone before power-on.
    pub manifest_origin_fetches: u32,
    /// Phones that fetched their manifest themselves before power-on: no key to verify a
    /// peer's (the `keyless` reason).
    pub manifest_keyless: u32,
    /// Phones whose manifest came from a peer over the LAN, verified with their key.
    pub manifest_from_peers: u32,
    /// Of `origin_fallbacks`, those on a manifest's hierarchy (a lease after `fallback_after`
    /// without a usable parent), also in `manifest_origin_fetches`.
    pub manifest_fallbacks: u32,
    /// Manifests from peers or the origin that failed verification (rejected, never used).
    pub manifest_rejected: u32,
}

impl ManifestCounts {
    /// Counts over the phones' reports (a phone without a manifest file fetched its own
    /// before power-on).
    pub fn of(reports: &[(usize, crate::peer::PeerReport, Option<Instant>)]) -> ManifestCounts {
        let mut c = ManifestCounts::default();
        for (_, r, _) in reports {
            match r.files.iter().find(|f| f.manifest) {
                None => c.manifest_keyless += 1,
                Some(f) => {
                    c.manifest_origin_fetches += f.origin_transfers;
                    c.manifest_from_peers += u32::from(f.peer_bytes > 0);
                    c.manifest_fallbacks += f.fallbacks;
                    c.manifest_rejected += f.corrupt_chunks as u32;
                }
            }
        }
        c.manifest_origin_fetches += c.manifest_keyless;
        c
    }

    /// Manifest bytes phones fetched from the origin during the run.
    pub fn run_bytes(reports: &[(usize, crate::peer::PeerReport, Option<Instant>)]) -> u64 {
        let files = reports.iter().flat_map(|(_, r, _)| &r.files);
        files.filter(|f| f.manifest).map(|f| f.origin_bytes).sum()
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct TreeNode {
    pub phone: Ipv4Addr,
    pub parent: Option<Ipv4Addr>,
    pub depth: u8,
    pub role: String,
}

/// The simulator's fields plus completion percentiles, for one mode on one topology.
/// Every field is documented in `docs/report.md`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct LabReport {
    /// The pfs mode, or the external system (`--peers`) this run measured.
    pub mode: crate::peers::System,
    pub phones: u32,
    pub completed: u32,
    pub corrupt_installs: u32,
    pub origin_fallbacks: u32,
    /// Fallbacks by reason (every one was leased by a live root), from the phones' events.
    pub fallbacks_by_reason: BTreeMap<String, u32>,
    /// Moves to the next origin of a phone's list after a failed HTTP transfer, by reason
    /// (`http_to_tftp`: HTTP first, then TFTP, as a phone does), over all phones and files.
    pub origin_switches: BTreeMap<String, u32>,
    /// Members that caught their root sending corrupt chunks and re-elected without it.
    pub roots_rejected_corrupt: u32,
    /// Members whose root, their parent, fed them nothing or a trickle of what it claimed to
    /// hold, and who re-elected without it.
    pub roots_rejected_stalled: u32,
    /// Confirmed roots of one hierarchy at the end of the run (a snapshot; see
    /// `roots_elected_max`, which it can never exceed).
    pub roots_max: u32,
    /// The most distinct phones that confirmed themselves root (`@@@HROOT`) of one hierarchy
    /// at any time in the run, counted from every phone's events.
    pub roots_elected_max: u32,
    /// The most distinct phones that became root of one hierarchy (passed the guard and
    /// fetched or served), confirmed or not: also roots that crashed or stepped down before
    /// they confirmed, which `roots_elected_max` cannot see. Never below it.
    pub roots_became_max: u32,
    /// The most concurrent transfers the origin served during the run, counted by the
    /// embedded origin itself (absent with tftpd-hpa, which does not say).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin_peak_sessions: Option<u64>,
    /// What the protocol promises the origin: one transfer per hierarchy's root plus the
    /// K fallback leases each root may grant.
    pub origin_session_bound: u64,
    pub max_children: u32,
    pub max_depth: u32,
    /// Firmware bytes fetched from the origin (over the WAN), by all phones.
    pub wan_bytes: u64,
    /// Everything hq sent over the WAN link (`ip -s link`): firmware, manifests, headers.
    pub wan_link_bytes: u64,
    /// Of that, manifests: what crossed while phones fetched theirs before power-on
    /// (keyless phones), plus the manifest bytes roots and lease holders fetched during the
    /// run (counted from their events).
    pub wan_manifest_bytes: u64,
    /// Where the phones' manifests came from (counted from their events).
    #[serde(flatten)]
    pub manifests: ManifestCounts,
    /// The rest beyond the firmware: TFTP and IP headers, resent blocks, ARP.
    pub wan_overhead_bytes: u64,
    /// DATA blocks the embedded origin sent more than once (after a loss, a reordering or a
    /// silence): most of what `wan_link_bytes` carries beyond the firmware and the manifests.
    /// Absent with tftpd-hpa.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin_resent_blocks: Option<u64>,
    /// One load's bytes (every model's load has the same size).
    pub load_bytes: u64,
    pub models: u32,
    pub makespan_s: f64,
    /// The makespan over phones with no fault (not crashed, frozen, cut, slow or corrupt).
    pub normal_makespan_s: f64,
    /// Phones crashed, frozen, cut, shaped slow, made corrupt by the fault plan.
    pub crashed: u32,
    pub frozen: u32,
    /// Sockets of the frozen phones (streams, election sockets) in which the kernel held
    /// unread data when the run ended: a hung phone's fill up (0 with frozen phones would
    /// mean something still read them).
    pub frozen_unread_sockets: u64,
    pub cut: u32,
    pub slow: u32,
    pub corrupt_peers: u32,
    /// Hostile phones (`--liar-peers`); neither completed nor stuck.
    pub liars: u32,
    /// Phones neither installed nor faulted (crashed, frozen or cut): must be 0.
    pub stuck: u32,
    /// From a fault to the first chunk each orphaned child received again.
    pub recoveries: u32,
    pub recovery_p50_s: f64,
    pub recovery_max_s: f64,
    /// Every injected fault: phone, kind, why, when, orphans.
    pub fault_events: Vec<crate::faults::FaultEvent>,
    /// models x load over the WAN rate: no distribution can finish sooner.
    pub limit_s: f64,
    pub completion_p50_s: f64,
    pub completion_p90_s: f64,
    pub completion_p99_s: f64,
    pub completion_max_s: f64,
    /// Setup (namespaces, shaping) time, not part of the makespan.
    pub setup_s: f64,
    /// Power-on: every phone reading its config and fetching its manifest, concurrently,
    /// before the common boot instant the makespan counts from.
    pub prepare_s: f64,
    /// The longest event-loop turn on any core: how late a phone could hear its network.
    pub max_turn_ms: f64,
    /// Event-loop turns on all cores, and how many took longer than 10 ms.
    pub turns: u64,
    pub long_turns: u64,
    /// The latest any phone's timer fired after its deadline (ms).
    pub max_timer_late_ms: f64,
    /// Engine counters summed over the cores: submissions queued because the ring was full,
    /// receives that found no buffer, datagrams dropped as too large, streams cut off.
    pub engine_overflowed: u64,
    pub engine_recv_no_buffers: u64,
    pub engine_recv_truncated: u64,
    pub engine_stalled_cutoffs: u64,
    /// UDP datagrams the phones' namespaces delivered during the run, and those the kernel
    /// dropped because a phone's socket receive buffer was full (`RcvbufErrors`): election and
    /// control messages lost to overload before any phone could see them.
    pub udp_in_datagrams: u64,
    pub udp_rcvbuf_errors: u64,
    /// The process's descriptors when the run ended (before phones closed theirs), and the
    /// per-phone average; the descriptor limit the lab set.
    pub fds_at_end: u64,
    pub fds_per_phone: f64,
    /// The most descriptors the process held at once during the run (sampled every 0.5 s),
    /// per phone, and the budget the lab raised the limit for (phones x
    /// `lab::fds_per_phone` + 1024); a peak above the budget is a violation.
    pub fds_peak: u64,
    pub fds_peak_per_phone: f64,
    pub fds_budget: u64,
    pub nofile_limit: u64,
    /// Peak resident memory of the process so far (MiB) and per phone (KiB).
    pub peak_rss_mib: f64,
    pub rss_per_phone_kib: f64,
    /// CPU the process used during the run (user + system, s), and per GB delivered to
    /// phones (the kernel's softirq work for the site's links is partly elsewhere).
    pub cpu_s: f64,
    pub cpu_s_per_gb: f64,
    /// Threads of the process at the end of the run (one per core plus helpers).
    pub threads: u64,
    /// Host-wide kernel settings raised for the run (and restored after): key, before, set.
    pub host_tuning: Vec<(String, u64, u64)>,
    pub wan_mbit: f64,
    /// With `--wan-rtt-ms`: the WAN round trip the delay line was set to (ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wan_rtt_ms: Option<f64>,
    /// With `--wan-rtt-ms`: the median round trip `ping` measured from a phone to the origin
    /// before the run (ms); more than 10% off the set value is a violation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wan_rtt_ping_ms: Option<f64>,
    /// With `--wan-rtt-ms`: the latest the delay line sent a packet after its due time
    /// since the site was built (ms), and the packets it dropped (queue full).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wan_delay_late_max_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wan_delay_dropped: Option<u64>,
    pub lan_mbit: Option<f64>,
    pub backend: String,
    pub zc_sends: u64,
    pub zc_copied: u64,
    /// Where the run's own counts disagree with each other or with a promise (empty when
    /// they agree); a run with any fails.
    pub violations: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub trees: BTreeMap<String, Vec<TreeNode>>,
    /// Per-phone completion times (s), for the report's CDF.
    #[serde(skip)]
    pub completions: Vec<f64>,
    /// The WAN link's byte counter during the run, for the throughput plot.
    pub wan_samples: Vec<crate::report::WanSample>,
    /// Where `wan_samples` come from.
    pub wan_samples_source: String,
    /// When each phone installed, for the timeline plot.
    pub phone_times: Vec<crate::report::PhoneTime>,
    /// pfs messages the phones sent, by type name, summed over phones.
    pub messages_sent: BTreeMap<String, u64>,
    /// With `--pcap`: frames the capture wrote and frames the kernel dropped before it could.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pcap_frames: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pcap_dropped: Option<u64>,
    /// An external system's exact command lines (`--peers`), for the report.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub commands: Vec<String>,
}

impl LabReport {
    /// Cross-checks figures that come from independent sources: the kernel's WAN counter
    /// against the phones' own byte counts, the origin's session count against the bound the
    /// protocol promises, and per-reason counts against their totals.
    pub fn cross_check(&self) -> Vec<String> {
        let mut v = Vec::new();
        if let Some(peak) = self.origin_peak_sessions
            && peak > self.origin_session_bound
            && self.mode.mode().is_some_and(|m| m != Mode::Traditional)
        {
            v.push(format!(
                "the origin served {peak} transfers at once, above the bound of {} (roots + K)",
                self.origin_session_bound
            ));
        }
        if self.fds_peak > self.fds_budget {
            v.push(format!(
                "the process held {} descriptors at its peak, above the {} the lab budgets",
                self.fds_peak, self.fds_budget
            ));
        }
        let by_reason: u32 = self.fallbacks_by_reason.values().sum();
        if by_reason != self.origin_fallbacks {
            v.push(format!(
                "{} fallbacks counted, {by_reason} with a reason",
                self.origin_fallbacks
            ));
        }
        if self.wan_bytes > self.wan_link_bytes {
            v.push(format!(
                "phones fetched {} firmware bytes from the origin, but the WAN link carried only {}",
                self.wan_bytes, self.wan_link_bytes
            ));
        }
        if self.wan_bytes + self.wan_manifest_bytes > self.wan_link_bytes {
            v.push(format!(
                "phones fetched {} firmware and {} manifest bytes, but the WAN link carried only {}",
                self.wan_bytes, self.wan_manifest_bytes, self.wan_link_bytes
            ));
        }
        if self.corrupt_installs > self.completed || self.completed > self.phones {
            v.push(format!(
                "{} installed of {} phones with {} corrupt",
                self.completed, self.phones, self.corrupt_installs
            ));
        }
        if let (Some(set), Some(got)) = (self.wan_rtt_ms, self.wan_rtt_ping_ms)
            && (got - set).abs() > 0.1 * set
        {
            v.push(format!(
                "the WAN was set to a {set} ms round trip, but ping measured {got} ms"
            ));
        }
        if self.roots_elected_max > self.roots_became_max {
            v.push(format!(
                "{} phones confirmed themselves root of one hierarchy but only {} became root",
                self.roots_elected_max, self.roots_became_max
            ));
        }
        if self.roots_max > self.roots_elected_max {
            v.push(format!(
                "{} confirmed roots of one hierarchy at the end, but at most {} ever confirmed",
                self.roots_max, self.roots_elected_max
            ));
        }
        if self.mode.mode().is_some_and(|m| m != Mode::Traditional)
            && self.completed > 0
            && self.roots_elected_max == 0
        {
            v.push("phones installed but no phone ever confirmed itself root".into());
        }
        v
    }
}
