//! Sans-IO read transfer (the root's origin fetch, `pfs fetch`): requests options, accepts a
//! server that ignores them, acknowledges per window, resynchronises after a gap, retries a
//! bounded number of times with exponential backoff.
//!
//! Congestion control (RFC 7440 leaves the policy open). The window is negotiated once and an
//! RFC 7440 server sends a whole window after every ACK, so the only lever a client has over
//! any standard server is *when* it asks for the next window. An early ACK would not shrink
//! the burst: the server has sent the rest of the window already and would send it again.
//! So the client keeps a congestion window `cwnd` (blocks per round, at most the negotiated
//! window) and paces its window requests: the next window is asked for no sooner than
//! `round_min * window / cwnd` after the previous request, `round_min` being the fastest round
//! (request to last block of the window) seen. AIMD: a round without a gap adds one block,
//! a gap or a timeout halves `cwnd` (once per round). At `cwnd == window` this is plain
//! ACK clocking, so an uncongested path loses nothing; after a loss the root gives the
//! bottleneck queue time to drain instead of refilling it with a window that go-back-N would
//! then resend whole.
//!
//! Fragmented blocks. A blksize above [`UNFRAGMENTED_BLKSIZE`] makes every DATA datagram
//! several IP fragments on a 1500-byte MTU: fewer headers on the WAN, but some paths
//! (firewalls, NATs) drop fragments. With [`ClientConfig::fallback_blksize`] set, a transfer
//! whose server granted the larger blksize and then delivered no DATA within
//! [`FALLBACK_AFTER`] retransmissions, or stopped making progress for all of its retries,
//! starts over once with the unfragmented blksize (and a window of as many bytes): the
//! client sends ERROR 0 to the old transfer, emits [`ClientAction::Restart`] (the driver
//! opens a fresh transfer id) and a new request. Bytes already written are not written
//! again: TFTP cannot seek, so the new transfer re-reads the prefix and the client skips it.

use super::{
    DEFAULT_BLKSIZE, ErrorCode, Options, Packet, UNFRAGMENTED_BLKSIZE, absolute_block, backoff,
    fragment_filling_blksize,
    packet::{ack, error, request},
    wire_block,
};
use crate::time::Time;

#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub blksize: u16,
    /// When `blksize` is above this, a transfer granted it that gets no DATA (or stops making
    /// progress) starts over once with this blksize; `None`: never (see the module docs).
    pub fallback_blksize: Option<u16>,
    pub windowsize: u16,
    pub timeout: Time,
    pub max_retries: u32,
    /// Pace window requests by an AIMD congestion window (see the module docs); `false` asks
    /// for each window as soon as the last one is in (plain RFC 7440).
    pub adaptive: bool,
}

/// Whole 1500-MTU IP fragments per DATA datagram of the WAN fetch (see [`WAN_BLKSIZE`]).
pub const WAN_FRAGMENTS: u16 = 3;
/// blksize of the WAN fetch (a root's, `pfs fetch`): 4428, three whole fragments of a 1500
/// MTU, 114 bytes of Ethernet, IP, UDP and TFTP headers per block (2.6 %; a 1428-byte block
/// costs 46, 3.2 %; six fragments, 8868, 2.4 %). Measured in `pfs lab` (WAN link bytes over
/// firmware and manifests, 200 phones at 10 Mbit/s, and 60 phones with 1 % loss on every
/// packet): 1428 x16 1.032 / 1.150; 2948 x8 1.027 / 1.127; 4428 x5 1.026 / 1.132;
/// 5908 x4 1.025 / 1.172; 8868 x3 1.024 / 1.165. A lost fragment loses its whole block, so
/// past three fragments loss costs more than the headers save. Falls back to
/// [`UNFRAGMENTED_BLKSIZE`] where fragments do not pass.
pub const WAN_BLKSIZE: u16 = fragment_filling_blksize(WAN_FRAGMENTS, 1500);
/// windowsize of the WAN fetch, in blocks: about the bytes of the unfragmented client's 16
/// blocks (22.1 KB against 22.8 KB). The window's bytes are what matter: a server sends a
/// whole window back to back, so it must fit a shaped WAN's queue (`pfs lab`: 16 blocks of
/// 8868 overflowed the 10 Mbit/s tbf and resent 299 blocks), and one lost fragment costs the
/// rest of its window (go-back-N).
pub const WAN_WINDOWSIZE: u16 = 5;

impl Default for ClientConfig {
    /// The WAN fetch: fragment-filling blocks, with the fallback to unfragmented ones.
    fn default() -> Self {
        ClientConfig {
            blksize: WAN_BLKSIZE,
            fallback_blksize: Some(UNFRAGMENTED_BLKSIZE),
            windowsize: WAN_WINDOWSIZE,
            timeout: 1_000_000,
            max_retries: 5,
            adaptive: true,
        }
    }
}

impl ClientConfig {
    /// A client whose blocks never fragment on a 1500 MTU: 1428-byte blocks, 16 per window
    /// (`pfs fleet`'s pullers; a phone's own lock-step client is this with windowsize 1).
    pub fn unfragmented() -> Self {
        ClientConfig {
            blksize: UNFRAGMENTED_BLKSIZE,
            fallback_blksize: None,
            windowsize: 16,
            ..ClientConfig::default()
        }
    }

    /// What a transfer falls back to where fragments do not pass: the fallback blksize, a
    /// window of about as many bytes, no further fallback; `None` if it never falls back.
    /// A driver that saw a fallback starts its later transfers to that server with this.
    pub fn fallback(&self) -> Option<ClientConfig> {
        let fb = self.fallback_blksize.filter(|&fb| self.blksize > fb)?;
        let bytes = u64::from(self.windowsize) * u64::from(self.blksize);
        Some(ClientConfig {
            blksize: fb,
            windowsize: bytes.div_ceil(u64::from(fb)).clamp(1, u64::from(u16::MAX)) as u16,
            fallback_blksize: None,
            ..self.clone()
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    #[error("server error {code}: {message}")]
    Server { code: u16, message: String },
    #[error("no answer after {0} retransmissions")]
    Timeout(u32),
    #[error("protocol violation: {0}")]
    Protocol(&'static str),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientAction {
    Send(Vec<u8>),
    /// File bytes at `offset`, in order.
    Write {
        offset: u64,
        data: Vec<u8>,
    },
    /// The server announced the file size (tsize).
    Size(u64),
    Timer(Time),
    /// Finished: total bytes, or why not.
    Done(Result<u64, ClientError>),
    /// The transfer starts over with a smaller blksize (why: [`FALLBACK_NO_DATA`] or
    /// [`FALLBACK_NO_PROGRESS`]). The driver sends the next `Send` (the new request) to
    /// the server's own port from a fresh transfer id (a new socket), so nothing of the
    /// old transfer reaches the session. Writes continue where they stopped.
    Restart {
        blksize: u16,
        why: &'static str,
    },
}

/// Retransmissions after an OACK granting a fragmented blksize, with no DATA at all, before
/// the client falls back to the unfragmented blksize (with the 1 s default timeout and its
/// backoff, about 3 s after the OACK).
pub const FALLBACK_AFTER: u32 = 2;
/// [`ClientAction::Restart`] reasons.
pub const FALLBACK_NO_DATA: &str = "no DATA after an OACK granting a fragmented blksize";
pub const FALLBACK_NO_PROGRESS: &str = "no progress with a fragmented blksize";

#[derive(Debug)]
pub struct ClientSession {
    cfg: ClientConfig,
    filename: String,
    negotiated: bool,
    blksize: u64,
    window: u64,
    /// Next absolute block expected.
    expected: u64,
    since_ack: u64,
    last_sent: Vec<u8>,
    retries: u32,
    /// The block we last asked a rewind to (a gap is reported once).
    gap_acked: Option<u64>,
    deadline: Time,
    bytes: u64,
    finished: bool,
    /// Congestion window in blocks per round (1..=window).
    cwnd: f64,
    /// When the last window was asked for (ACK sent), and the fastest round seen.
    asked_at: Time,
    round_min: Option<Time>,
    /// A gap or timeout already halved `cwnd` in this round.
    cut_this_round: bool,
    /// A window request held back by pacing: when it goes, when it was ready, and what.
    paced: Option<(Time, Time, Vec<u8>)>,
    /// Times the congestion window was halved, and microseconds window requests were held.
    pub cwnd_cuts: u32,
    pub paced_us: Time,
    /// Windows whose tail was reported lost before the server's timeout.
    pub stall_acks: u32,
    /// The absolute block our last ACK named.
    last_ack: u64,
    /// The blksize and windowsize this attempt asks for.
    ask_blksize: u16,
    ask_window: u16,
    /// The server answered this attempt with an OACK.
    oacked: bool,
    /// File bytes handed out in Writes over all attempts (a restart re-reads them).
    written: u64,
    /// Times the transfer started over with a smaller blksize (at most once).
    pub blksize_fallbacks: u32,
}

impl ClientSession {
    pub fn new(cfg: ClientConfig, filename: &str) -> Self {
        let (ask_blksize, ask_window) = (cfg.blksize, cfg.windowsize);
        ClientSession {
            cfg,
            filename: filename.to_owned(),
            negotiated: false,
            blksize: u64::from(DEFAULT_BLKSIZE),
            window: 1,
            expected: 1,
            since_ack: 0,
            last_sent: Vec::new(),
            retries: 0,
            gap_acked: None,
            deadline: 0,
            bytes: 0,
            finished: false,
            cwnd: 1.0,
            asked_at: 0,
            round_min: None,
            cut_this_round: false,
            paced: None,
            cwnd_cuts: 0,
            paced_us: 0,
            stall_acks: 0,
            last_ack: 0,
            ask_blksize,
            ask_window,
            oacked: false,
            written: 0,
            blksize_fallbacks: 0,
        }
    }

    /// An ACK of everything held so far (every ACK this client sends is one).
    fn ack_held(&mut self) -> Vec<u8> {
        self.last_ack = self.expected - 1;
        ack(wire_block(self.last_ack)).to_vec()
    }

    /// How long a window may stall after a block before its tail counts as lost: about one
    /// round (the blocks of a window arrive back to back), well inside the server's timeout.
    fn stall_wait(&self) -> Time {
        let t = self.cfg.timeout;
        if !self.cfg.adaptive || self.window <= 1 {
            return t;
        }
        self.round_min.map_or(t / 2, |r| r.clamp(t / 10, t / 2))
    }

    /// The congestion window, in blocks per round.
    pub fn cwnd(&self) -> f64 {
        self.cwnd
    }

    /// Halves the congestion window, at most once per round.
    fn congestion(&mut self) {
        if self.cfg.adaptive && !self.cut_this_round {
            self.cut_this_round = true;
            self.cwnd_cuts += 1;
            self.cwnd = (self.cwnd / 2.0).max(1.0);
        }
    }

    /// Asks for the next window with `ack`: now, or later when the congestion window says the
    /// bottleneck needs time. A wait never approaches the server's retransmission timeout.
    fn request_window(&mut self, now: Time, ack: Vec<u8>, out: &mut Vec<ClientAction>) {
        let at = match self.round_min {
            Some(round) if self.cfg.adaptive && self.cwnd < self.window as f64 => {
                let period = (round as f64 * self.window as f64 / self.cwnd) as Time;
                (self.asked_at + period).min(now + self.cfg.timeout / 4)
            }
            _ => now,
        };
        if at <= now {
            self.paced = None;
            self.asked_at = now;
            self.cut_this_round = false;
            self.send(now, ack, out);
        } else {
            self.paced = Some((at, now, ack));
            self.deadline = at;
            out.push(ClientAction::Timer(at));
        }
    }

    pub fn is_finished(&self) -> bool {
        self.finished
    }

    pub fn start(&mut self, now: Time, out: &mut Vec<ClientAction>) {
        let options = Options {
            blksize: (self.ask_blksize != DEFAULT_BLKSIZE).then_some(self.ask_blksize),
            tsize: Some(0),
            timeout: None,
            windowsize: (self.ask_window > 1).then_some(self.ask_window),
        };
        let rrq = request(true, &self.filename, &options);
        self.send(now, rrq, out);
    }

    fn send(&mut self, now: Time, bytes: Vec<u8>, out: &mut Vec<ClientAction>) {
        self.last_sent = bytes.clone();
        out.push(ClientAction::Send(bytes));
        self.deadline = now + backoff(self.cfg.timeout, self.retries);
        out.push(ClientAction::Timer(self.deadline));
    }

    fn fail(&mut self, err: ClientError, out: &mut Vec<ClientAction>) {
        self.finished = true;
        out.push(ClientAction::Done(Err(err)));
    }

    /// Ends the transfer on the server's fault and tells the server why (RFC 1350: an error
    /// that ends a transfer is signalled with an ERROR packet; RFC 2347: an OACK the client
    /// cannot accept is answered with ERROR 8), so it stops retransmitting at once.
    fn abort(&mut self, code: ErrorCode, why: &'static str, out: &mut Vec<ClientAction>) {
        out.push(ClientAction::Send(error(code, why)));
        self.fail(ClientError::Protocol(why), out);
    }

    /// A datagram from the server, decoded here: an OACK whose option values no client could
    /// accept (blksize below 8, timeout 0) is answered with ERROR 8 like any OACK we refuse;
    /// other undecodable datagrams are ignored.
    pub fn on_datagram(&mut self, now: Time, bytes: &[u8], out: &mut Vec<ClientAction>) {
        match super::packet::decode(bytes) {
            Ok(packet) => self.on_packet(now, packet, out),
            Err(super::TftpError::BadOption { .. })
                if bytes.starts_with(&[0, 6]) && !self.finished && self.expected == 1 =>
            {
                self.abort(
                    ErrorCode::OptionNegotiation,
                    "OACK option out of range",
                    out,
                )
            }
            Err(_) => {}
        }
    }

    pub fn on_packet(&mut self, now: Time, packet: Packet<'_>, out: &mut Vec<ClientAction>) {
        if self.finished {
            return;
        }
        match packet {
            Packet::Error { code, message } => self.fail(
                ClientError::Server {
                    code,
                    message: message.to_owned(),
                },
                out,
            ),
            Packet::Oack { options } if self.expected == 1 => self.on_oack(now, &options, out),
            Packet::Data { block, data } => self.on_data(now, block, data, out),
            Packet::Oack { .. } => {}
            Packet::Rrq { .. } | Packet::Wrq { .. } | Packet::Ack { .. } => self.abort(
                ErrorCode::IllegalOperation,
                "unexpected packet from server",
                out,
            ),
        }
    }

    /// The server's option acknowledgement: what it granted, unless it granted more than was
    /// asked; then the first ACK.
    fn on_oack(&mut self, now: Time, options: &Options, out: &mut Vec<ClientAction>) {
        if options.blksize.is_some_and(|b| b > self.ask_blksize)
            || options.windowsize.is_some_and(|w| w > self.ask_window)
        {
            return self.abort(ErrorCode::OptionNegotiation, "OACK exceeds request", out);
        }
        self.negotiated = true;
        self.oacked = true;
        self.blksize = u64::from(options.blksize.unwrap_or(DEFAULT_BLKSIZE));
        self.window = u64::from(options.windowsize.unwrap_or(1));
        self.cwnd = self.window as f64;
        if let Some(size) = options.tsize {
            out.push(ClientAction::Size(size));
        }
        self.retries = 0;
        self.asked_at = now;
        let held = self.ack_held();
        self.send(now, held, out);
    }

    /// A DATA block: written when it is the next one, then acknowledged at the window's end
    /// or the file's, or waited on.
    fn on_data(&mut self, now: Time, block: u16, data: &[u8], out: &mut Vec<ClientAction>) {
        if self.expected == 1 && !self.negotiated {
            // The server ignored our options: plain RFC 1350.
            self.negotiated = true;
        }
        let abs = absolute_block(block, self.expected);
        if abs != self.expected {
            return self.on_out_of_order(now, abs, out);
        }
        if data.len() as u64 > self.blksize {
            return self.abort(ErrorCode::IllegalOperation, "DATA longer than blksize", out);
        }
        // After a restart, the prefix already written is skipped.
        let end = self.bytes + data.len() as u64;
        if end > self.written {
            let skip = self.written.saturating_sub(self.bytes) as usize;
            out.push(ClientAction::Write {
                offset: self.written,
                data: data[skip..].to_vec(),
            });
            self.written = end;
        }
        self.bytes = end;
        self.expected += 1;
        self.since_ack += 1;
        self.retries = 0;
        let last = (data.len() as u64) < self.blksize;
        if last {
            self.since_ack = 0;
            self.paced = None;
            let held = self.ack_held();
            self.send(now, held, out);
        } else if self.since_ack >= self.window {
            self.since_ack = 0;
            // A whole window in order: a clean round, unless a gap cut it.
            let round = now.saturating_sub(self.asked_at).max(1);
            self.round_min = Some(self.round_min.map_or(round, |r| r.min(round)));
            if !self.cut_this_round {
                self.cwnd = (self.cwnd + 1.0).min(self.window as f64);
            }
            let held = self.ack_held();
            self.request_window(now, held, out);
        } else {
            self.deadline = now + self.stall_wait();
            out.push(ClientAction::Timer(self.deadline));
        }
        if last && self.bytes < self.written {
            // The file the restart reads is shorter than what the first attempt wrote.
            return self.abort(ErrorCode::NotDefined, "file shrank between attempts", out);
        }
        if last {
            self.finished = true;
            out.push(ClientAction::Done(Ok(self.bytes)));
        }
    }

    /// A block other than the next (`abs`, in absolute numbering): a gap or a copy.
    fn on_out_of_order(&mut self, now: Time, abs: u64, out: &mut Vec<ClientAction>) {
        // A gap (a block lost) asks once for a rewind: acknowledge what we hold
        // (RFC 7440 section 4). A copy of the last block we hold means the server
        // missed our ACK: say it again. Any other copy is the rest of a resent
        // window and says nothing; answering each would read as a fresh rewind
        // request and duplicate every window after it.
        let gap = abs > self.expected;
        let answer = if gap {
            self.gap_acked != Some(self.expected)
        } else {
            // Only the block our last ACK named: a copy of any other is
            // the server answering an ACK we sent since, and answering it
            // would put every later window out of step with the server's.
            abs + 1 == self.expected && abs == self.last_ack
        };
        if answer {
            self.since_ack = 0;
            let resync = self.ack_held();
            if gap {
                // A block of this window was lost: the path is congested.
                self.gap_acked = Some(self.expected);
                self.congestion();
                self.request_window(now, resync, out);
            } else {
                // The server resent: it heard nothing from us for a whole
                // timeout, a loss on the path. Answer at once.
                self.congestion();
                self.paced = None;
                self.asked_at = now;
                self.send(now, resync, out);
            }
        }
    }

    pub fn on_timer(&mut self, now: Time, out: &mut Vec<ClientAction>) {
        if self.finished {
            return;
        }
        if now < self.deadline {
            out.push(ClientAction::Timer(self.deadline));
            return;
        }
        if let Some((at, ready, ack)) = self.paced.take() {
            // A paced window request falls due.
            self.paced_us += at.saturating_sub(ready);
            self.asked_at = now;
            self.cut_this_round = false;
            return self.send(now, ack, out);
        }
        if self.cfg.adaptive && self.since_ack > 0 && self.negotiated && self.window > 1 {
            // Part of a window came and the rest stopped: its tail was lost (a window's blocks
            // queue back to back, so they arrive together or not at all). Say what we hold
            // now, before the server's timeout would resend the whole window: it resends only
            // the missing part.
            self.congestion();
            self.since_ack = 0;
            self.asked_at = now;
            self.cut_this_round = false;
            self.stall_acks += 1;
            let held = self.ack_held();
            return self.send(now, held, out);
        }
        self.retries += 1;
        if let Some(why) = self.fallback_due() {
            return self.fall_back(now, why, out);
        }
        if self.retries > self.cfg.max_retries {
            return self.fail(ClientError::Timeout(self.cfg.max_retries), out);
        }
        self.congestion();
        self.since_ack = 0;
        // Once the transfer runs, a timeout acknowledges what we hold (RFC 7440 section 4),
        // which may be more than the last ACK said: repeating that one would ask the server
        // for blocks we already have.
        let again = if self.negotiated {
            self.ack_held()
        } else {
            self.last_sent.clone()
        };
        self.asked_at = now;
        self.cut_this_round = false;
        self.send(now, again, out);
    }
}

impl ClientSession {
    /// Whether this timeout (the `retries`-th) calls for the fallback to the unfragmented
    /// blksize, and why: only when the server granted a blksize above it, once per transfer.
    fn fallback_due(&self) -> Option<&'static str> {
        let fb = self.cfg.fallback_blksize?;
        if self.blksize_fallbacks > 0 || !self.oacked || self.blksize <= u64::from(fb) {
            return None;
        }
        if self.expected == 1 && self.retries >= FALLBACK_AFTER.min(self.cfg.max_retries + 1) {
            Some(FALLBACK_NO_DATA)
        } else if self.retries > self.cfg.max_retries {
            Some(FALLBACK_NO_PROGRESS)
        } else {
            None
        }
    }

    /// Ends this attempt (ERROR 0 to the server's transfer, so it stops sending) and starts
    /// over with the fallback blksize, asking for a window of as many bytes as before.
    fn fall_back(&mut self, now: Time, why: &'static str, out: &mut Vec<ClientAction>) {
        let to = self.cfg.fallback().expect("checked by fallback_due");
        out.push(ClientAction::Send(error(
            ErrorCode::NotDefined,
            "falling back to a smaller blksize",
        )));
        let fb = to.blksize;
        self.ask_window = to.windowsize;
        self.ask_blksize = fb;
        self.blksize_fallbacks += 1;
        self.negotiated = false;
        self.oacked = false;
        self.blksize = u64::from(DEFAULT_BLKSIZE);
        self.window = 1;
        self.expected = 1;
        self.since_ack = 0;
        self.retries = 0;
        self.gap_acked = None;
        self.bytes = 0;
        self.cwnd = 1.0;
        self.round_min = None;
        self.cut_this_round = false;
        self.paced = None;
        self.last_ack = 0;
        out.push(ClientAction::Restart { blksize: fb, why });
        self.asked_at = now;
        self.start(now, out);
    }
}

#[cfg(test)]
mod tests;
