//! TFTP (RFC 1350) with option negotiation (2347), blksize (2348), tsize and timeout (2349)
//! and windowsize (7440): packet codec and sans-IO transfer sessions.
//!
//! Written here rather than taken from a crate because the sessions must be state machines
//! driven by `(now, event)`: the io_uring engine runs the root's origin fetch, and a lab origin
//! serves hundreds of transfers, without a thread per transfer. The codec is total over
//! arbitrary bytes.

pub mod client;
pub mod netascii;
pub mod packet;
pub mod server;

pub use packet::{ErrorCode, Options, Packet, TftpError};

/// Largest block size RFC 2348 allows.
pub const MAX_BLKSIZE: u16 = 65464;
pub const MIN_BLKSIZE: u16 = 8;
pub const DEFAULT_BLKSIZE: u16 = 512;
/// A blksize whose DATA datagram crosses a 1500-byte Ethernet MTU whole, with room to spare
/// for IP options or a tunnel header (1500 - 20 IP - 8 UDP - 4 TFTP = 1468 at most).
pub const UNFRAGMENTED_BLKSIZE: u16 = 1428;

/// The blksize whose DATA datagram fills `fragments` whole IPv4 fragments of an `mtu`-byte
/// link: every fragment but the last carries `mtu - 20` bytes (a multiple of 8 at 1500), and
/// the datagram is those bytes less 8 (UDP) and 4 (TFTP) of headers. On a 1500 MTU each
/// fragment costs 34 bytes of Ethernet and IP header, so a block of `fragments` fragments
/// costs `34 * fragments + 12` bytes of headers.
pub const fn fragment_filling_blksize(fragments: u16, mtu: u16) -> u16 {
    ((mtu - 20) & !7) * fragments - 12
}

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

/// Retransmission backoff cap: the wait doubles per unanswered retransmission up to this
/// multiple of the base timeout.
pub const MAX_BACKOFF: u32 = 8;

/// How long to wait after the `retries`-th retransmission (0: the first send). RFC 1123
/// 4.2.3.2 asks TFTP for exponential backoff: at a fixed timeout, hundreds of lock-step
/// transfers into one congested WAN queue time out together, retransmit together and give up
/// together (`pfs lab`, 40 traditional phones at 10 Mbit/s: no phone finished in 10 minutes).
pub fn backoff(base: crate::time::Time, retries: u32) -> crate::time::Time {
    let factor = 1u64 << retries.min(MAX_BACKOFF.trailing_zeros());
    base.saturating_mul(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let waits: Vec<_> = (0..6).map(|r| backoff(1_000, r)).collect();
        assert_eq!(waits, vec![1_000, 2_000, 4_000, 8_000, 8_000, 8_000]);
        assert_eq!(backoff(u64::MAX, 3), u64::MAX);
    }

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
