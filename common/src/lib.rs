//! Constants shared by the XDP program (`ebpf/`) and user space (`distributor/`).
//!
//! Both sides must agree on map names and counter slots byte for byte, so they live in one
//! `no_std` crate that both compile.
#![no_std]

/// UDP and TCP port of peer firmware sharing (Cisco PFS uses 4051 for both).
pub const PFS_PORT: u16 = 4051;

/// Name of the XDP program inside the eBPF object.
pub const XDP_PROGRAM: &str = "pfs_xdp";
/// Name of the per-CPU counter array inside the eBPF object.
pub const COUNTERS_MAP: &str = "PFS_COUNTERS";

/// Slots of the per-CPU counter array. Each slot is a packet count; user space sums over CPUs.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// UDP datagrams (IPv4, optionally one 802.1Q tag) addressed to port 4051.
    Udp4051 = 0,
    /// Every other frame the program saw.
    Other = 1,
}

impl Counter {
    /// Every slot, in index order.
    pub const ALL: [Counter; 2] = [Counter::Udp4051, Counter::Other];

    /// Stable name used in `pfs xdp stats` output.
    pub const fn name(self) -> &'static str {
        match self {
            Counter::Udp4051 => "udp_4051",
            Counter::Other => "other",
        }
    }
}

/// Number of slots in [`COUNTERS_MAP`].
pub const COUNTER_SLOTS: u32 = Counter::ALL.len() as u32;
