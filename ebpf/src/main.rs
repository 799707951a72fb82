//! XDP program on the phone-side LAN interface: the fast path for port-4051 election traffic.
//!
//! Everything not addressed to UDP 4051 passes untouched (counted as `other`). For 4051 it
//! validates the election header (magic, version, a UDP message type, declared length equal to
//! the datagram, key lengths inside the packet), counts per message type, and drops before the
//! kernel stack: malformed datagrams, adverts already seen (same sender, hierarchy, sequence;
//! LRU map) and adverts for models this host does not run (when user space enabled the filter).
//! Every packet read is bounds-checked against `data_end`, which is both what the verifier
//! demands and what makes the parser total over arbitrary frames.
// On the host (cargo build/clippy --workspace) this compiles as an ordinary binary so the
// program is still type-checked and linted; distributor/build.rs builds the real object for
// bpfel-unknown-none.
#![cfg_attr(target_arch = "bpf", no_std, no_main)]

use aya_ebpf::{
    bindings::xdp_action,
    macros::{map, xdp},
    maps::{Array, HashMap, LruHashMap, PerCpuArray},
    programs::XdpContext,
};
use pfs_common::{
    CONFIG_FILTER_MODELS, CONFIG_SLOTS, COUNTER_SLOTS, Counter, DEDUP_ENTRIES, DedupKey,
    MAX_MODELS, MODEL_KEY_LEN, PFS_PORT, WIRE_ADVERT_TAIL, WIRE_DIGEST_LEN, WIRE_HEADER_LEN,
    WIRE_MAGIC, WIRE_MAX_FILE, WIRE_MAX_MODEL, WIRE_MAX_UDP_BODY, WIRE_VERSION, msg_type,
};

#[map(name = "PFS_COUNTERS")]
static PFS_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_SLOTS, 0);
#[map(name = "PFS_MODELS")]
static PFS_MODELS: HashMap<[u8; MODEL_KEY_LEN], u8> = HashMap::with_max_entries(MAX_MODELS, 0);
#[map(name = "PFS_CONFIG")]
static PFS_CONFIG: Array<u32> = Array::with_max_entries(CONFIG_SLOTS, 0);
#[map(name = "PFS_DEDUP")]
static PFS_DEDUP: LruHashMap<DedupKey, u8> = LruHashMap::with_max_entries(DEDUP_ENTRIES, 0);

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_8021Q: u16 = 0x8100;
const IPPROTO_UDP: u8 = 17;
const UDP_HLEN: usize = 8;

#[xdp]
pub fn pfs_xdp(ctx: XdpContext) -> u32 {
    let (counter, action) = classify(&ctx);
    count(counter);
    action
}

#[inline(always)]
fn count(counter: Counter) {
    if let Some(slot) = PFS_COUNTERS.get_ptr_mut(counter as u32) {
        // SAFETY: per-CPU slot, this CPU is the only writer while the program runs.
        unsafe { *slot += 1 };
    }
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
fn byte(ctx: &XdpContext, offset: usize) -> Option<u8> {
    Some(bytes::<1>(ctx, offset)?[0])
}

/// Reads `N` bytes at an offset computed from packet contents, through the kernel's
/// `bpf_xdp_load_bytes`, which checks the bounds itself: the verifier cannot follow a packet
/// pointer whose offset is the sum of several packet-derived lengths.
#[inline(always)]
fn load<const N: usize>(ctx: &XdpContext, offset: usize) -> Option<[u8; N]> {
    let mut buf = [0u8; N];
    // SAFETY: the helper writes at most N bytes into `buf`, and fails instead of reading past
    // the packet.
    let rc = unsafe {
        aya_ebpf::helpers::bpf_xdp_load_bytes(
            ctx.ctx,
            offset as u32,
            buf.as_mut_ptr() as *mut aya_ebpf::cty::c_void,
            N as u32,
        )
    };
    (rc == 0).then_some(buf)
}

struct Udp {
    l3: usize,
    payload: usize,
    payload_len: usize,
}

/// Finds an IPv4 UDP datagram to port 4051; `None` for anything else.
#[inline(always)]
fn udp_4051(ctx: &XdpContext) -> Option<Udp> {
    let mut l3 = ETH_HLEN;
    let mut ethertype = u16::from_be_bytes(bytes::<2>(ctx, 12)?);
    if ethertype == ETH_P_8021Q {
        ethertype = u16::from_be_bytes(bytes::<2>(ctx, 16)?);
        l3 += 4;
    }
    if ethertype != ETH_P_IP {
        return None;
    }
    let version_ihl = byte(ctx, l3)?;
    if version_ihl >> 4 != 4 {
        return None;
    }
    let ihl = ((version_ihl & 0x0f) as usize) * 4;
    if !(20..=60).contains(&ihl) {
        return None;
    }
    if byte(ctx, l3 + 9)? != IPPROTO_UDP {
        return None;
    }
    // Non-first fragments carry no UDP header.
    if u16::from_be_bytes(bytes::<2>(ctx, l3 + 6)?) & 0x1fff != 0 {
        return None;
    }
    let l4 = l3 + ihl;
    let udp = bytes::<UDP_HLEN>(ctx, l4)?;
    if u16::from_be_bytes([udp[2], udp[3]]) != PFS_PORT {
        return None;
    }
    let udp_len = u16::from_be_bytes([udp[4], udp[5]]) as usize;
    Some(Udp {
        l3,
        payload: l4 + UDP_HLEN,
        payload_len: udp_len.wrapping_sub(UDP_HLEN),
    })
}

#[inline(always)]
fn classify(ctx: &XdpContext) -> (Counter, u32) {
    let Some(udp) = udp_4051(ctx) else {
        return (Counter::Other, xdp_action::XDP_PASS);
    };
    count(Counter::Udp4051);
    match election(ctx, &udp) {
        Ok(counter) => (counter, xdp_action::XDP_PASS),
        Err(drop) => (drop, xdp_action::XDP_DROP),
    }
}

/// Validates one election datagram; `Err` names the drop reason.
#[inline(always)]
fn election(ctx: &XdpContext, udp: &Udp) -> Result<Counter, Counter> {
    const BAD: Counter = Counter::DropMalformed;
    let p = udp.payload;
    let total = udp.payload_len;
    if !(WIRE_HEADER_LEN..=WIRE_HEADER_LEN + WIRE_MAX_UDP_BODY).contains(&total) {
        return Err(BAD);
    }
    // The whole datagram must be in the frame (the UDP length is not trusted otherwise).
    if p + total > ctx.data_end() - ctx.data() {
        return Err(BAD);
    }
    let h = load::<WIRE_HEADER_LEN>(ctx, p).ok_or(BAD)?;
    if [h[0], h[1]] != WIRE_MAGIC || h[2] != WIRE_VERSION {
        return Err(BAD);
    }
    let declared = u32::from_be_bytes([h[4], h[5], h[6], h[7]]) as usize;
    if declared + WIRE_HEADER_LEN != total {
        return Err(BAD);
    }
    // TCP types or unknown codes are malformed on UDP.
    let counter = Counter::for_type(h[3]).ok_or(BAD)?;
    // Every UDP message starts with the hierarchy key: check its lengths fit.
    let body = p + WIRE_HEADER_LEN;
    let model_len = load::<1>(ctx, body).ok_or(BAD)?[0] as usize;
    if model_len == 0 || model_len > WIRE_MAX_MODEL {
        return Err(BAD);
    }
    let file_len = load::<1>(ctx, body + 1 + model_len).ok_or(BAD)?[0] as usize;
    if file_len == 0 || file_len > WIRE_MAX_FILE {
        return Err(BAD);
    }
    let key_len = 2 + model_len + file_len + WIRE_DIGEST_LEN;
    if key_len > declared {
        return Err(BAD);
    }
    if h[3] != msg_type::ADVERT {
        return Ok(counter);
    }
    if declared != key_len + WIRE_ADVERT_TAIL {
        return Err(BAD);
    }
    let digest = body + 2 + model_len + file_len;
    let model = model_key(ctx, body + 1, model_len).ok_or(BAD)?;
    if model_filtered(&model) {
        return Err(Counter::DropOtherModel);
    }
    // The hierarchy is (model, file, digest); the digest names the file, the model is folded in.
    let mut hierarchy = u64::from_be_bytes(load::<8>(ctx, digest).ok_or(BAD)?);
    let mut w = 0;
    while w < MODEL_KEY_LEN / 8 {
        let mut word = [0u8; 8];
        word.copy_from_slice(&model[w * 8..w * 8 + 8]);
        hierarchy = hierarchy.rotate_left(17) ^ u64::from_ne_bytes(word);
        w += 1;
    }
    // seq follows xid (4), strength (8), tier (1).
    let seq = u32::from_be_bytes(load::<4>(ctx, digest + WIRE_DIGEST_LEN + 13).ok_or(BAD)?);
    let saddr = u32::from_ne_bytes(load::<4>(ctx, udp.l3 + 12).ok_or(BAD)?);
    let key = DedupKey {
        saddr,
        seq,
        hierarchy,
    };
    if PFS_DEDUP.get_ptr(key).is_some() {
        return Err(Counter::DropDuplicate);
    }
    // A full LRU evicts the oldest entry; an insert failure only costs a duplicate passing.
    let _ = PFS_DEDUP.insert(key, 1, 0);
    Ok(counter)
}

/// The model at `offset` (length `len` <= 32), zero-padded to the filter map's key.
#[inline(always)]
fn model_key(ctx: &XdpContext, offset: usize, len: usize) -> Option<[u8; MODEL_KEY_LEN]> {
    // Copy the whole 32-byte window (the file name and digest follow the model, so it is
    // inside any well-formed advert), then clear what lies past the model.
    let mut key = load::<MODEL_KEY_LEN>(ctx, offset)?;
    let mut i = 0;
    while i < MODEL_KEY_LEN {
        if i >= len {
            key[i] = 0;
        }
        i += 1;
    }
    Some(key)
}

/// Whether adverts for `model` are filtered out (only when user space enabled the filter).
#[inline(always)]
fn model_filtered(model: &[u8; MODEL_KEY_LEN]) -> bool {
    let enabled = PFS_CONFIG
        .get(CONFIG_FILTER_MODELS)
        .is_some_and(|v| *v == 1);
    enabled && PFS_MODELS.get_ptr(*model).is_none()
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
