//! Constants shared by the XDP program (`ebpf/`) and user space (`distributor/`).
//!
//! Both sides must agree on map names, counter slots and the election wire header byte for
//! byte, so they live in one `no_std` crate that both compile.
#![no_std]

/// UDP and TCP port of peer firmware sharing (Cisco PFS uses 4051 for both).
pub const PFS_PORT: u16 = 4051;

/// Name of the XDP program inside the eBPF object.
pub const XDP_PROGRAM: &str = "pfs_xdp";
/// Per-CPU counter array.
pub const COUNTERS_MAP: &str = "PFS_COUNTERS";
/// Models this host takes part in: key = model name, NUL-padded to [`MODEL_KEY_LEN`].
pub const MODELS_MAP: &str = "PFS_MODELS";
/// Configuration words; see [`CONFIG_FILTER_MODELS`].
pub const CONFIG_MAP: &str = "PFS_CONFIG";
/// Adverts already seen: [`DedupKey`] -> 1.
pub const DEDUP_MAP: &str = "PFS_DEDUP";
/// Every map pinned under `/sys/fs/bpf/pfs/[NETNS/]IF/`.
pub const ALL_MAPS: [&str; 4] = [COUNTERS_MAP, MODELS_MAP, CONFIG_MAP, DEDUP_MAP];

/// `PFS_CONFIG[0] == 1`: drop adverts for models not in [`MODELS_MAP`].
pub const CONFIG_FILTER_MODELS: u32 = 0;
pub const CONFIG_SLOTS: u32 = 4;
pub const MODEL_KEY_LEN: usize = 32;
pub const MAX_MODELS: u32 = 64;
pub const DEDUP_ENTRIES: u32 = 65_536;

/// Election wire header (see docs/protocol.md): magic, version, type, u32 body length.
pub const WIRE_MAGIC: [u8; 2] = *b"PF";
pub const WIRE_VERSION: u8 = 1;
pub const WIRE_HEADER_LEN: usize = 8;
pub const WIRE_MAX_UDP_BODY: usize = 1024;
pub const WIRE_MAX_MODEL: usize = 32;
pub const WIRE_MAX_FILE: usize = 64;
pub const WIRE_DIGEST_LEN: usize = 32;
/// Advert body after the key: xid u32, strength u64, tier u8, seq u32, depth u8, free u8,
/// verified u32.
pub const WIRE_ADVERT_TAIL: usize = 4 + 8 + 1 + 4 + 1 + 1 + 4;

/// Message type codes: the wire header's fourth byte (docs/protocol.md, "Messages"). Defined
/// here once for the codec (`proto/src/wire.rs`) and the XDP program. UDP: 0x01-0x0f; TCP
/// stream frames: 0x10 and up.
pub mod msg_type {
    pub const ADVERT: u8 = 0x01;
    pub const JOIN: u8 = 0x02;
    pub const ACCEPT: u8 = 0x03;
    pub const REJECT: u8 = 0x04;
    pub const LEAVE: u8 = 0x05;
    pub const HEARTBEAT: u8 = 0x06;
    pub const LEASE: u8 = 0x07;
    pub const REQUEST: u8 = 0x10;
    pub const CHUNK: u8 = 0x11;
    pub const HAVE: u8 = 0x12;
    pub const ERROR: u8 = 0x13;
    /// The UDP (election and lease) types, which the XDP program counts.
    pub const fn is_udp(code: u8) -> bool {
        matches!(code, ADVERT..=LEASE)
    }
}

/// Key of the de-duplication map: one advert of one sender for one hierarchy.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DedupKey {
    /// IPv4 source address, network order.
    pub saddr: u32,
    pub seq: u32,
    /// The first 8 bytes of the file digest with the (zero-padded) model folded in.
    pub hierarchy: u64,
}

/// Slots of the per-CPU counter array. Each slot is a packet count; user space sums over CPUs.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// UDP datagrams (IPv4, optionally one 802.1Q tag) addressed to port 4051, all of them.
    Udp4051 = 0,
    /// Every other frame the program saw (passed untouched).
    Other = 1,
    /// Valid election messages passed, per type.
    Advert = 2,
    Join = 3,
    Accept = 4,
    Reject = 5,
    Leave = 6,
    Heartbeat = 7,
    /// Dropped: not a well-formed election datagram.
    DropMalformed = 8,
    /// Dropped: an advert already seen (same sender, hierarchy, sequence).
    DropDuplicate = 9,
    /// Dropped: an advert for a model this host does not run.
    DropOtherModel = 10,
    /// Valid fallback-lease messages passed (appended: slots keep their indexes).
    Lease = 11,
}

impl Counter {
    /// The slot counting valid messages of a UDP type code ([`msg_type`]), `None` for TCP or
    /// unknown codes.
    pub const fn for_type(code: u8) -> Option<Counter> {
        Some(match code {
            msg_type::ADVERT => Counter::Advert,
            msg_type::JOIN => Counter::Join,
            msg_type::ACCEPT => Counter::Accept,
            msg_type::REJECT => Counter::Reject,
            msg_type::LEAVE => Counter::Leave,
            msg_type::HEARTBEAT => Counter::Heartbeat,
            msg_type::LEASE => Counter::Lease,
            _ => return None,
        })
    }

    /// Every slot, in index order.
    pub const ALL: [Counter; 12] = [
        Counter::Udp4051,
        Counter::Other,
        Counter::Advert,
        Counter::Join,
        Counter::Accept,
        Counter::Reject,
        Counter::Leave,
        Counter::Heartbeat,
        Counter::DropMalformed,
        Counter::DropDuplicate,
        Counter::DropOtherModel,
        Counter::Lease,
    ];

    /// Stable name used in `pfs xdp stats` output.
    pub const fn name(self) -> &'static str {
        match self {
            Counter::Udp4051 => "udp_4051",
            Counter::Other => "other",
            Counter::Advert => "advert",
            Counter::Join => "join",
            Counter::Accept => "accept",
            Counter::Reject => "reject",
            Counter::Leave => "leave",
            Counter::Heartbeat => "heartbeat",
            Counter::DropMalformed => "drop_malformed",
            Counter::DropDuplicate => "drop_duplicate",
            Counter::DropOtherModel => "drop_other_model",
            Counter::Lease => "lease",
        }
    }
}

/// Number of slots in [`COUNTERS_MAP`].
pub const COUNTER_SLOTS: u32 = Counter::ALL.len() as u32;
