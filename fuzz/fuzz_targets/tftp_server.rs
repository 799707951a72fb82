//! The TFTP server session (RFC 1350/2347/7440) fed arbitrary ACKs, errors and timers in any
//! order: it never sends past the file, never sends a block beyond the last, reports `Done`
//! at most once and then stays quiet, and never arms a timer in the past.
#![no_main]
use arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use pfs_proto::tftp::{
    packet::Options,
    server::{ServerAction, ServerConfig, ServerSession},
};

fn run(u: &mut Unstructured) -> Result<()> {
    let file_len = u.int_in_range(0..=200_000u64)?;
    let requested = Options {
        blksize: u.arbitrary()?,
        tsize: u.arbitrary()?,
        timeout: u.arbitrary()?,
        windowsize: u.arbitrary()?,
    };
    let mut s = ServerSession::new(&ServerConfig::default(), file_len, requested);
    let mut out = Vec::new();
    let mut now = 0u64;
    let mut done = false;
    s.start(now, &mut out);
    for _ in 0..u.int_in_range(0..=500)? {
        check(&s, file_len, now, &mut out, &mut done);
        now += u.int_in_range(0..=3_000_000u64)?;
        match u.int_in_range(0..=2)? {
            0 => s.on_ack(now, u.arbitrary()?, &mut out),
            1 => s.on_timer(now, &mut out),
            _ => s.on_error("fuzz", &mut out),
        }
    }
    check(&s, file_len, now, &mut out, &mut done);
    Ok(())
}

fn check(s: &ServerSession, file_len: u64, now: u64, out: &mut Vec<ServerAction>, done: &mut bool) {
    for a in out.drain(..) {
        assert!(!*done, "acted after Done: {a:?}");
        match a {
            ServerAction::SendData { block, offset, len, .. } => {
                assert!(offset + len as u64 <= file_len, "past the file: {a:?}");
                assert!(block >= 1 && block <= s.total_blocks(), "block {block} of {}", s.total_blocks());
            }
            ServerAction::Timer(at) => assert!(at >= now, "timer in the past"),
            ServerAction::Done(_) => *done = true,
            _ => {}
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});
