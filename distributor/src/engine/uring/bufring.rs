//! The provided-buffer rings (`IORING_REGISTER_PBUF_RING`) receives draw their buffers from.

use super::*;

/// A provided-buffer ring the kernel picks receive buffers from.
pub(super) struct BufRing {
    entries: *mut types::BufRingEntry,
    ring_bytes: usize,
    data: Vec<u8>,
    tail: u16,
    count: u16,
    size: usize,
}

impl BufRing {
    /// `count` buffers of `size` bytes as group `group` (`count` a power of two).
    pub(super) fn new(ring: &IoUring, group: u16, count: u16, size: usize) -> io::Result<Self> {
        assert!(count.is_power_of_two());
        let ring_bytes = usize::from(count) * std::mem::size_of::<types::BufRingEntry>();
        // SAFETY: an anonymous private mapping, page-aligned as the kernel requires.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                ring_bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_ANONYMOUS | libc::MAP_PRIVATE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let mut br = BufRing {
            entries: ptr.cast(),
            ring_bytes,
            data: vec![0; usize::from(count) * size],
            tail: 0,
            count,
            size,
        };
        // SAFETY: the mapping lives as long as `br`, which the reactor drops after the ring.
        unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(ptr as u64, count, group, 0)?
        };
        for bid in 0..count {
            br.add(bid);
        }
        br.commit();
        Ok(br)
    }

    pub(super) fn add(&mut self, bid: u16) {
        let idx = usize::from(self.tail & (self.count - 1));
        // SAFETY: idx < count entries of the mapping.
        let e = unsafe { &mut *self.entries.add(idx) };
        e.set_addr(self.data.as_ptr() as u64 + (usize::from(bid) * self.size) as u64);
        e.set_len(self.size as u32);
        e.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    pub(super) fn commit(&self) {
        // SAFETY: the tail field overlays the first entry's reserved field (kernel ABI).
        let tail = unsafe { types::BufRingEntry::tail(self.entries) } as *mut u16;
        // SAFETY: u16-aligned, shared with the kernel, which reads it with acquire ordering.
        unsafe { AtomicU16::from_ptr(tail) }.store(self.tail, Ordering::Release);
    }

    pub(super) fn buf(&self, bid: u16, len: usize) -> &[u8] {
        let start = usize::from(bid) * self.size;
        &self.data[start..start + len.min(self.size)]
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`.
        unsafe { libc::munmap(self.entries.cast(), self.ring_bytes) };
    }
}
