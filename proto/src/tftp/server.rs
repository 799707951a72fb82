//! Sans-IO read-only transfer session (one RRQ): option negotiation, windowed sending,
//! bounded retransmission with exponential backoff. In lock-step (window 1) duplicate ACKs never cause sends, so a
//! delayed ACK cannot start the Sorcerer's Apprentice duplication of RFC 1350. With a window,
//! a duplicate ACK of the last acknowledged block is the receiver asking for a rewind after a
//! loss (RFC 7440 section 4); it is honoured at most once per transmitted window, so duplicates
//! can never multiply.

use super::{DEFAULT_BLKSIZE, MAX_BLKSIZE, Options, absolute_block, backoff, wire_block};
use crate::time::Time;

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub max_blksize: u16,
    pub max_window: u16,
    /// Cap on the bytes of one window, so a burst fits the receiver's socket buffer.
    pub max_window_bytes: u64,
    /// Retransmission timeout when the client asks for none.
    pub timeout: Time,
    pub max_retries: u32,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_blksize: MAX_BLKSIZE,
            max_window: 64,
            max_window_bytes: 1 << 20,
            timeout: 1_000_000,
            max_retries: 5,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerAction {
    SendOack(Options),
    /// Send absolute block `block` (1-based): `len` bytes of the file from `offset`.
    SendData {
        block: u64,
        wire: u16,
        offset: u64,
        len: usize,
    },
    /// Wake up at this time (replaces any earlier timer).
    Timer(Time),
    /// The transfer ended; `Err` says why.
    Done(Result<(), String>),
}

#[derive(Debug)]
pub struct ServerSession {
    file_len: u64,
    blksize: u64,
    window: u64,
    timeout: Time,
    max_retries: u32,
    retries: u32,
    total_blocks: u64,
    acked: u64,
    oack: Option<Options>,
    deadline: Time,
    finished: bool,
    /// A duplicate ACK may trigger one rewind per transmitted window.
    rewind_allowed: bool,
    /// The ACK the receiver will repeat for a window we sent twice; ignored once.
    stale_ack: Option<u64>,
    /// Windows resent because the receiver reported a loss, and because it went silent.
    pub rewinds: u32,
    pub timeouts: u32,
    /// DATA blocks sent that had been sent before (every resend, whatever caused it).
    pub resent_blocks: u64,
    highest_sent: u64,
}

impl ServerSession {
    /// Negotiates `requested` against `cfg` for a file of `file_len` bytes.
    pub fn new(cfg: &ServerConfig, file_len: u64, requested: Options) -> Self {
        let mut accepted = Options::default();
        if let Some(b) = requested.blksize {
            // RFC 2348: 8..=65464; the codec refuses less, this keeps the session total.
            accepted.blksize = Some(b.min(cfg.max_blksize).max(8));
        }
        if requested.tsize.is_some() {
            accepted.tsize = Some(file_len);
        }
        // RFC 2349: 1..=255 s (the codec refuses 0; kept total here).
        accepted.timeout = requested.timeout.map(|t| t.max(1));
        let blksize = u64::from(accepted.blksize.unwrap_or(DEFAULT_BLKSIZE));
        if let Some(w) = requested.windowsize {
            let by_bytes = (cfg.max_window_bytes / blksize).clamp(1, u64::from(u16::MAX)) as u16;
            accepted.windowsize = Some(w.min(cfg.max_window).min(by_bytes).max(1));
        }
        ServerSession {
            file_len,
            blksize,
            window: u64::from(accepted.windowsize.unwrap_or(1)),
            timeout: accepted
                .timeout
                .map_or(cfg.timeout, |t| Time::from(t) * 1_000_000),
            max_retries: cfg.max_retries,
            retries: 0,
            // The last block is shorter than blksize, possibly empty.
            total_blocks: file_len / blksize + 1,
            acked: 0,
            oack: (!accepted.is_empty()).then_some(accepted),
            deadline: 0,
            finished: false,
            rewind_allowed: false,
            stale_ack: None,
            rewinds: 0,
            timeouts: 0,
            resent_blocks: 0,
            highest_sent: 0,
        }
    }

    pub fn total_blocks(&self) -> u64 {
        self.total_blocks
    }

    /// Every block has gone out at least once (what remains is the final ACK).
    pub fn all_sent(&self) -> bool {
        self.oack.is_none() && self.highest_sent >= self.total_blocks
    }

    pub fn start(&mut self, now: Time, out: &mut Vec<ServerAction>) {
        self.transmit(now, out);
    }

    pub fn on_ack(&mut self, now: Time, wire: u16, out: &mut Vec<ServerAction>) {
        if self.finished {
            return;
        }
        if self.oack.is_some() {
            if wire == 0 {
                self.oack = None;
                self.retries = 0;
                self.transmit(now, out);
            }
            return;
        }
        let abs = absolute_block(wire, self.acked);
        let sent_up_to = (self.acked + self.window).min(self.total_blocks);
        if abs == self.acked && self.stale_ack == Some(abs) {
            // The receiver's answer to the second copy of a window we sent twice, not a loss.
            self.stale_ack = None;
            return;
        }
        if abs == self.acked && self.window > 1 && self.rewind_allowed {
            // The receiver lost a block of the window we just sent: resend from there, once.
            self.rewind_allowed = false;
            self.rewinds += 1;
            self.resent_window();
            self.transmit_window(now, out);
            return;
        }
        if abs <= self.acked || abs > sent_up_to {
            return; // duplicate or stale: never triggers a send
        }
        self.acked = abs;
        self.retries = 0;
        if self.acked == self.total_blocks {
            self.finished = true;
            out.push(ServerAction::Done(Ok(())));
        } else {
            self.transmit(now, out);
        }
    }

    /// The client sent an ERROR: stop without answering (RFC 1350).
    pub fn on_error(&mut self, message: &str, out: &mut Vec<ServerAction>) {
        if !self.finished {
            self.finished = true;
            out.push(ServerAction::Done(Err(format!(
                "client aborted: {message}"
            ))));
        }
    }

    pub fn on_timer(&mut self, now: Time, out: &mut Vec<ServerAction>) {
        if self.finished {
            return;
        }
        if now < self.deadline {
            out.push(ServerAction::Timer(self.deadline));
            return;
        }
        self.retries += 1;
        if self.retries > self.max_retries {
            self.finished = true;
            out.push(ServerAction::Done(Err(format!(
                "no ACK after {} retransmissions (block {})",
                self.max_retries,
                self.acked + 1
            ))));
            return;
        }
        self.timeouts += 1;
        self.resent_window();
        self.transmit(now, out);
    }

    /// A window goes out a second time: its last block reaches the receiver twice, and the
    /// receiver acknowledges each copy (it cannot tell a rewind from a lost ACK).
    fn resent_window(&mut self) {
        if self.oack.is_none() && self.window > 1 {
            self.stale_ack = Some((self.acked + self.window).min(self.total_blocks));
        }
    }

    /// Sends the OACK, or the window after the last acknowledged block.
    fn transmit(&mut self, now: Time, out: &mut Vec<ServerAction>) {
        self.rewind_allowed = true;
        self.transmit_window(now, out);
    }

    fn transmit_window(&mut self, now: Time, out: &mut Vec<ServerAction>) {
        if let Some(o) = self.oack {
            out.push(ServerAction::SendOack(o));
        } else {
            let last = (self.acked + self.window).min(self.total_blocks);
            self.resent_blocks += self.highest_sent.min(last).saturating_sub(self.acked);
            self.highest_sent = self.highest_sent.max(last);
            for block in self.acked + 1..=last {
                let offset = (block - 1) * self.blksize;
                let len = self.blksize.min(self.file_len - offset) as usize;
                out.push(ServerAction::SendData {
                    block,
                    wire: wire_block(block),
                    offset,
                    len,
                });
            }
        }
        self.deadline = now + backoff(self.timeout, self.retries);
        out.push(ServerAction::Timer(self.deadline));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sends(actions: &[ServerAction]) -> Vec<u64> {
        actions
            .iter()
            .filter_map(|a| match a {
                ServerAction::SendData { block, .. } => Some(*block),
                _ => None,
            })
            .collect()
    }

    /// Regression found by the fuzz target `tftp_server`: `blksize 0` (which the codec
    /// refuses, but the session took as given) divided by zero. Options are clamped to their
    /// RFC ranges (blksize 8.., timeout 1..) whoever builds the session.
    #[test]
    fn out_of_range_options_are_clamped_not_trusted() {
        let opts = Options {
            blksize: Some(0),
            timeout: Some(0),
            ..Options::default()
        };
        let mut s = ServerSession::new(&ServerConfig::default(), 20, opts);
        assert_eq!(s.total_blocks(), 3, "20 bytes in blocks of 8: 8, 8, 4");
        let mut out = Vec::new();
        s.start(0, &mut out);
        assert!(out.iter().any(|a| matches!(a, ServerAction::SendOack(o) if o.blksize == Some(8) && o.timeout == Some(1))), "{out:?}");
    }

    #[test]
    fn windowed_transfer_with_rollover_and_no_duplicate_sends() {
        let cfg = ServerConfig::default();
        let opts = Options {
            blksize: Some(8),
            windowsize: Some(4),
            ..Options::default()
        };
        // 70,000 blocks of 8 bytes: the wire block number wraps past 65535.
        let len = 8 * 70_000 + 3;
        let mut s = ServerSession::new(&cfg, len, opts);
        let mut out = Vec::new();
        s.start(0, &mut out);
        assert!(matches!(out[0], ServerAction::SendOack(_)));
        out.clear();
        s.on_ack(1, 0, &mut out);
        assert_eq!(sends(&out), vec![1, 2, 3, 4]);
        let mut acked = 4u64;
        let mut rewound = false;
        loop {
            out.clear();
            s.on_ack(2, wire_block(acked), &mut out);
            if rewound && !out.contains(&ServerAction::Done(Ok(()))) {
                // The window before went out twice: the receiver's answer to its second copy
                // is absorbed, not taken as a loss.
                let mut stale = Vec::new();
                s.on_ack(2, wire_block(acked), &mut stale);
                assert!(sends(&stale).is_empty(), "stale ACK rewound");
            }
            rewound = true;
            // A duplicate rewinds at most once per transmitted window; a third copy sends nothing.
            let mut dup = Vec::new();
            s.on_ack(2, wire_block(acked), &mut dup);
            if !out.contains(&ServerAction::Done(Ok(()))) {
                assert_eq!(sends(&dup), sends(&out), "one rewind");
            }
            let mut dup2 = Vec::new();
            s.on_ack(2, wire_block(acked), &mut dup2);
            assert!(sends(&dup2).is_empty(), "duplicates never multiply");
            if out.contains(&ServerAction::Done(Ok(()))) {
                break;
            }
            let blocks = sends(&out);
            assert_eq!(blocks[0], acked + 1);
            acked = *blocks.last().unwrap();
        }
        assert_eq!(acked, s.total_blocks());
    }

    #[test]
    fn retransmits_a_bounded_number_of_times() {
        let cfg = ServerConfig {
            max_retries: 3,
            ..ServerConfig::default()
        };
        let mut s = ServerSession::new(&cfg, 100, Options::default());
        let mut out = Vec::new();
        s.start(0, &mut out);
        let mut now = 0;
        for wait in [1, 2, 4] {
            // Not yet: the wait has doubled since the last retransmission.
            now += wait * cfg.timeout;
            out.clear();
            s.on_timer(now - 1, &mut out);
            assert!(sends(&out).is_empty(), "early at {now}");
            out.clear();
            s.on_timer(now, &mut out);
            assert_eq!(sends(&out), vec![1]);
        }
        out.clear();
        s.on_timer(now + 8 * cfg.timeout, &mut out);
        assert!(matches!(out.last(), Some(ServerAction::Done(Err(_)))));
    }

    #[test]
    fn exact_multiple_of_blksize_ends_with_an_empty_block() {
        let mut s = ServerSession::new(&ServerConfig::default(), 1024, Options::default());
        let mut out = Vec::new();
        s.start(0, &mut out);
        s.on_ack(0, 1, &mut out);
        out.clear();
        s.on_ack(0, 2, &mut out);
        assert!(out.contains(&ServerAction::SendData {
            block: 3,
            wire: 3,
            offset: 1024,
            len: 0
        }));
    }
}
