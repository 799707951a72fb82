//! TFTP (RFC 1350) with option negotiation (2347), blksize (2348), tsize and timeout (2349)
//! and windowsize (7440): packet codec and sans-IO transfer sessions.
//!
//! Written here rather than taken from a crate because the sessions must be state machines
//! driven by `(now, event)`: the io_uring engine runs the root's origin fetch, and a lab origin
//! serves hundreds of transfers, without a thread per transfer. The codec is total over
//! arbitrary bytes.

pub mod client;
pub mod packet;
pub mod server;

pub use packet::{ErrorCode, Options, Packet, TftpError};

/// Largest block size RFC 2348 allows.
pub const MAX_BLKSIZE: u16 = 65464;
pub const MIN_BLKSIZE: u16 = 8;
pub const DEFAULT_BLKSIZE: u16 = 512;

/// The wire block number of absolute block `abs` (1-based); wraps to 0 after 65535, as
/// tftpd-hpa and curl do.
pub fn wire_block(abs: u64) -> u16 {
    (abs & 0xffff) as u16
}

/// The absolute block number of wire block `wire` that lies in `(base - 65536, base + 65536)`
/// nearest to `base`. Windows are far smaller than 2^15, so this is unambiguous.
pub fn absolute_block(wire: u16, base: u64) -> u64 {
    let base_low = wire_block(base);
    let diff = wire.wrapping_sub(base_low) as i16 as i64;
    (base as i64 + diff).max(0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_numbers_roll_over() {
        assert_eq!(wire_block(65535), 65535);
        assert_eq!(wire_block(65536), 0);
        assert_eq!(wire_block(65537), 1);
        assert_eq!(absolute_block(0, 65535), 65536);
        assert_eq!(absolute_block(65535, 65536), 65535);
        assert_eq!(absolute_block(3, 131_074), 131_075);
        assert_eq!(absolute_block(5, 3), 5);
    }
}
