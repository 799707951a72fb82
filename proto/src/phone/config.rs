//! How files reach phones ([`Mode`]) and the core's tunables ([`Config`]); docs/protocol.md's
//! defaults table is checked against `Config::default()`.

use super::Time;

/// How files reach phones.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// A child gets each chunk as soon as its parent has verified it (pfs). The default.
    #[default]
    Pipelined,
    /// A parent relays a file only once it holds all of it (Cisco PFS).
    StoreAndForward,
    /// Every phone pulls every file from the origin (no peer sharing).
    Traditional,
}

impl Mode {
    /// Every mode, in the order the CLI lists them.
    pub const ALL: [Mode; 3] = [Mode::Pipelined, Mode::StoreAndForward, Mode::Traditional];

    /// The kebab-case name used on the command line and in JSON reports.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Pipelined => "pipelined",
            Mode::StoreAndForward => "store-and-forward",
            Mode::Traditional => "traditional",
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Mode {
    type Err = String;
    /// Parses a [`Mode::name`]; the error lists the valid names.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Mode::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Mode::ALL.iter().map(|m| m.name()).collect();
                format!("unknown mode {s:?} (one of: {})", names.join(", "))
            })
    }
}

/// Tunables; defaults follow Cisco where Cisco has one (see docs/protocol.md).
#[derive(Debug, Clone)]
pub struct Config {
    pub mode: Mode,
    pub fanout: u8,
    pub advert_interval: Time,
    pub confirm_adverts: u32,
    pub root_advert_interval: Time,
    pub claim_window: Time,
    pub claim_guard: Time,
    /// The guard of every election after boot (files added once the manifest arrived,
    /// re-elections). Two claimants become root together when neither hears the other
    /// within the guard; on a site busy with the manifest and the lead file's chunks a
    /// broadcast took longer than `claim_guard` to be heard (1000 lab phones: up to 6 roots
    /// per file fetching at once, 46 transfers at the origin against a bound of 35). These
    /// elections are not on the critical path (the lead file keeps the WAN busy meanwhile).
    pub busy_claim_guard: Time,
    /// Upper bound on phones per broadcast domain, for the suppression timer.
    pub n_max: u64,
    pub join_spread: Time,
    pub join_timeout: Time,
    pub root_timeout: Time,
    pub fallback_after: Time,
    /// K: fallback leases a root grants at once. With one root per hierarchy the origin serves
    /// at most roots + K transfers, whatever the origin is (tftpd-hpa has no admission).
    pub fallback_slots: u32,
    /// How long a granted lease lasts without renewal; shorter than `root_timeout`, so the
    /// leases of a dead root have lapsed before a successor can grant new ones.
    pub lease_time: Time,
    /// A lease holder renews (and a requester retries) this often.
    pub lease_renew: Time,
    pub origin_retry: Time,
    pub slow_lag_chunks: u32,
    pub slow_window: Time,
    pub leaf_below_kbit: u32,
    pub watchdog: Time,
    /// A member with no chunk from its parent for this long asks again (and re-attaches if
    /// the parent refuses).
    pub stall_timeout: Time,
    /// A backstop: an open origin transfer that delivers no chunk for this long is reopened.
    /// The transport's own client notices a dead origin first and says so (TFTP after its
    /// retransmissions, about 31 s, RFC 1350 section 2; HTTP by its read timeout), so this only
    /// catches a client that never reports. It is long because a chunk may take long: many
    /// transfers share a slow WAN (24 of them on 1 Mbit/s deliver a 64 KiB chunk each 12.5 s).
    /// At 10 s every such transfer was reopened before its first chunk and restarted from
    /// byte 0 for ever (`pfs lab --models` 4 at 1 Mbit/s: 0 of 40 installed in 500 s).
    pub origin_timeout: Time,
    /// A member starved this long although the root holds more than it does re-joins the
    /// root for a fresh placement (breaks any parent chain that no longer leads to data).
    pub starve_timeout: Time,
    /// The same for store-and-forward, where parents legitimately send nothing for a while.
    pub starve_timeout_store_and_forward: Time,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            mode: Mode::Pipelined,
            fanout: 2,
            advert_interval: 250_000,
            confirm_adverts: 4,
            root_advert_interval: 1_000_000,
            claim_window: 500_000,
            claim_guard: 30_000,
            busy_claim_guard: 250_000,
            n_max: 100_000,
            join_spread: 200_000,
            join_timeout: 500_000,
            root_timeout: 3_000_000,
            fallback_after: 10_000_000,
            fallback_slots: 4,
            lease_time: 2_000_000,
            lease_renew: 500_000,
            origin_retry: 1_000_000,
            slow_lag_chunks: 16,
            slow_window: 2_000_000,
            leaf_below_kbit: 10_000,
            watchdog: 500_000,
            stall_timeout: 2_000_000,
            origin_timeout: 120_000_000,
            starve_timeout: 3_000_000,
            starve_timeout_store_and_forward: 30_000_000,
        }
    }
}
