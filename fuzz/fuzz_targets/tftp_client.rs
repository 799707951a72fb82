//! The TFTP client session fed arbitrary datagrams and timers: file bytes come out in order
//! and contiguous (each `Write` starts where the last ended), `Done` at most once and
//! nothing after it, and `Done(Ok(n))` only after exactly n bytes were written.
#![no_main]
use arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use pfs_proto::tftp::client::{ClientAction, ClientConfig, ClientSession};

fn run(u: &mut Unstructured) -> Result<()> {
    let cfg = ClientConfig {
        blksize: u.int_in_range(8..=1468)?,
        windowsize: u.int_in_range(1..=64)?,
        adaptive: u.arbitrary()?,
        ..ClientConfig::default()
    };
    let mut c = ClientSession::new(cfg, "f.bin");
    let mut out = Vec::new();
    let mut now = 0u64;
    let (mut written, mut done) = (0u64, false);
    c.start(now, &mut out);
    for _ in 0..u.int_in_range(0..=400)? {
        check(&mut out, &mut written, &mut done);
        now += u.int_in_range(0..=3_000_000u64)?;
        if u.ratio(1, 8)? {
            c.on_timer(now, &mut out);
        } else {
            let len = u.int_in_range(0..=1500)?;
            let datagram = u.bytes(len)?;
            c.on_datagram(now, datagram, &mut out);
        }
    }
    check(&mut out, &mut written, &mut done);
    Ok(())
}

fn check(out: &mut Vec<ClientAction>, written: &mut u64, done: &mut bool) {
    for a in out.drain(..) {
        assert!(!*done, "acted after Done: {a:?}");
        match a {
            ClientAction::Write { offset, data } => {
                assert_eq!(offset, *written, "out-of-order write");
                *written += data.len() as u64;
            }
            ClientAction::Done(Ok(n)) => {
                assert_eq!(n, *written, "Done({n}) after {written} bytes");
                *done = true;
            }
            ClientAction::Done(Err(_)) => *done = true,
            _ => {}
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});
