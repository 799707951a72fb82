//! XDP program on the phone-side LAN interface.
//!
//! Counts IPv4 UDP datagrams to port 4051 (election traffic) and everything else in a per-CPU
//! array, and always passes. Every packet read is bounds-checked against `data_end`, which is
//! both what the verifier demands and what makes the parser total over arbitrary frames.
// On the host (cargo build/clippy --workspace) this compiles as an ordinary binary so the
// program is still type-checked and linted; distributor/build.rs builds the real object for
// bpfel-unknown-none.
#![cfg_attr(target_arch = "bpf", no_std, no_main)]

use aya_ebpf::{
    bindings::xdp_action,
    macros::{map, xdp},
    maps::PerCpuArray,
    programs::XdpContext,
};
use pfs_common::{COUNTER_SLOTS, Counter, PFS_PORT};

#[map(name = "PFS_COUNTERS")]
static PFS_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_SLOTS, 0);

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_8021Q: u16 = 0x8100;
const IPPROTO_UDP: u8 = 17;
const UDP_HLEN: usize = 8;

#[xdp]
pub fn pfs_xdp(ctx: XdpContext) -> u32 {
    let slot = classify(&ctx);
    if let Some(counter) = PFS_COUNTERS.get_ptr_mut(slot as u32) {
        // SAFETY: per-CPU slot, this CPU is the only writer while the program runs.
        unsafe { *counter += 1 };
    }
    xdp_action::XDP_PASS
}

/// Reads `N` bytes at `offset` if they lie inside the packet.
#[inline(always)]
fn bytes<const N: usize>(ctx: &XdpContext, offset: usize) -> Option<[u8; N]> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + N > end {
        return None;
    }
    // SAFETY: bounds checked against data_end just above.
    Some(unsafe { core::ptr::read_unaligned((start + offset) as *const [u8; N]) })
}

#[inline(always)]
fn classify(ctx: &XdpContext) -> Counter {
    match udp_dst_port(ctx) {
        Some(PFS_PORT) => Counter::Udp4051,
        _ => Counter::Other,
    }
}

#[inline(always)]
fn udp_dst_port(ctx: &XdpContext) -> Option<u16> {
    let mut l3 = ETH_HLEN;
    let mut ethertype = u16::from_be_bytes(bytes::<2>(ctx, 12)?);
    if ethertype == ETH_P_8021Q {
        ethertype = u16::from_be_bytes(bytes::<2>(ctx, 16)?);
        l3 += 4;
    }
    if ethertype != ETH_P_IP {
        return None;
    }
    let [version_ihl] = bytes::<1>(ctx, l3)?;
    if version_ihl >> 4 != 4 {
        return None;
    }
    let ihl = ((version_ihl & 0x0f) as usize) * 4;
    if ihl < 20 {
        return None;
    }
    let [protocol] = bytes::<1>(ctx, l3 + 9)?;
    if protocol != IPPROTO_UDP {
        return None;
    }
    // Non-first fragments carry no UDP header.
    let frag = u16::from_be_bytes(bytes::<2>(ctx, l3 + 6)?);
    if frag & 0x1fff != 0 {
        return None;
    }
    // Bound ihl so the verifier sees a constant range for the variable offset.
    if ihl > 60 {
        return None;
    }
    let l4 = l3 + ihl;
    let _header = bytes::<UDP_HLEN>(ctx, l4)?;
    Some(u16::from_be_bytes(bytes::<2>(ctx, l4 + 2)?))
}

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";

/// Host build: this binary only exists for bpfel-unknown-none.
#[cfg(not(target_arch = "bpf"))]
fn main() {
    eprintln!("pfs-xdp is an eBPF object; pfs embeds it (see distributor/build.rs)");
    std::process::exit(2);
}
