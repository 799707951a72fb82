//! Typed identifiers. A bare integer meant different things in different drivers (an IPv4
//! address on real sockets, an index in the simulator, a BLAKE3 prefix on TCP); these types
//! keep one meaning each, so a peer cannot be passed where a hierarchy is expected.

use std::fmt;

/// A phone on the LAN. On real sockets its IPv4 address (`u32::from(Ipv4Addr)`, network
/// order as a number), in the simulator its index. The core only compares and orders peers
/// (lowest id breaks election ties, docs/protocol.md "Election").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct PeerId(pub u32);

/// The bare number (drivers print an address as an address: `Ipv4Addr::from(peer)`).
impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl From<std::net::Ipv4Addr> for PeerId {
    fn from(ip: std::net::Ipv4Addr) -> Self {
        PeerId(u32::from(ip))
    }
}

impl From<PeerId> for std::net::Ipv4Addr {
    fn from(p: PeerId) -> Self {
        std::net::Ipv4Addr::from(p.0)
    }
}

/// A hierarchy's 8-byte id on TCP: the first 8 bytes (big-endian) of the BLAKE3 hash of its
/// encoded key (model, file, digest); see [`crate::wire::HierarchyKey::id`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct HierarchyId(pub u64);

impl fmt::Display for HierarchyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}
