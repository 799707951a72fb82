//! Sans-IO read transfer (the root's origin fetch, `pfs fetch`): requests options, accepts a
//! server that ignores them, acknowledges per window, resynchronises after a gap, retries a
//! bounded number of times with exponential backoff.

use super::{
    DEFAULT_BLKSIZE, ErrorCode, Options, Packet, absolute_block, backoff,
    packet::{ack, error, request},
    wire_block,
};
use crate::phone::Time;

#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub blksize: u16,
    pub windowsize: u16,
    pub timeout: Time,
    pub max_retries: u32,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            blksize: 1428,
            windowsize: 16,
            timeout: 1_000_000,
            max_retries: 5,
        }
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
}

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
}

impl ClientSession {
    pub fn new(cfg: ClientConfig, filename: &str) -> Self {
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
        }
    }

    pub fn is_finished(&self) -> bool {
        self.finished
    }

    pub fn start(&mut self, now: Time, out: &mut Vec<ClientAction>) {
        let options = Options {
            blksize: (self.cfg.blksize != DEFAULT_BLKSIZE).then_some(self.cfg.blksize),
            tsize: Some(0),
            timeout: None,
            windowsize: (self.cfg.windowsize > 1).then_some(self.cfg.windowsize),
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
            Packet::Oack { options } if self.expected == 1 => {
                if options.blksize.is_some_and(|b| b > self.cfg.blksize)
                    || options.windowsize.is_some_and(|w| w > self.cfg.windowsize)
                {
                    return self.abort(ErrorCode::OptionNegotiation, "OACK exceeds request", out);
                }
                self.negotiated = true;
                self.blksize = u64::from(options.blksize.unwrap_or(DEFAULT_BLKSIZE));
                self.window = u64::from(options.windowsize.unwrap_or(1));
                if let Some(size) = options.tsize {
                    out.push(ClientAction::Size(size));
                }
                self.retries = 0;
                self.send(now, ack(0).to_vec(), out);
            }
            Packet::Data { block, data } => {
                if self.expected == 1 && !self.negotiated {
                    // The server ignored our options: plain RFC 1350.
                    self.negotiated = true;
                }
                let abs = absolute_block(block, self.expected);
                if abs != self.expected {
                    // A gap (a block lost) asks once for a rewind: acknowledge what we hold
                    // (RFC 7440 section 4). A copy of the last block we hold means the server
                    // missed our ACK: say it again. Any other copy is the rest of a resent
                    // window and says nothing; answering each would read as a fresh rewind
                    // request and duplicate every window after it.
                    let gap = abs > self.expected;
                    let answer = if gap {
                        self.gap_acked != Some(self.expected)
                    } else {
                        abs + 1 == self.expected
                    };
                    if answer {
                        if gap {
                            self.gap_acked = Some(self.expected);
                        }
                        self.since_ack = 0;
                        let resync = ack(wire_block(self.expected - 1)).to_vec();
                        self.send(now, resync, out);
                    }
                    return;
                }
                if data.len() as u64 > self.blksize {
                    return self.abort(
                        ErrorCode::IllegalOperation,
                        "DATA longer than blksize",
                        out,
                    );
                }
                out.push(ClientAction::Write {
                    offset: self.bytes,
                    data: data.to_vec(),
                });
                self.bytes += data.len() as u64;
                self.expected += 1;
                self.since_ack += 1;
                self.retries = 0;
                let last = (data.len() as u64) < self.blksize;
                if last || self.since_ack >= self.window {
                    self.since_ack = 0;
                    self.send(now, ack(block).to_vec(), out);
                } else {
                    self.deadline = now + self.cfg.timeout;
                    out.push(ClientAction::Timer(self.deadline));
                }
                if last {
                    self.finished = true;
                    out.push(ClientAction::Done(Ok(self.bytes)));
                }
            }
            Packet::Oack { .. } => {}
            Packet::Rrq { .. } | Packet::Wrq { .. } | Packet::Ack { .. } => self.abort(
                ErrorCode::IllegalOperation,
                "unexpected packet from server",
                out,
            ),
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
        self.retries += 1;
        if self.retries > self.cfg.max_retries {
            return self.fail(ClientError::Timeout(self.cfg.max_retries), out);
        }
        self.since_ack = 0;
        let again = self.last_sent.clone();
        self.send(now, again, out);
    }
}

#[cfg(test)]
mod tests {
    use super::super::packet::{data_header, decode, oack};
    use super::super::server::{ServerAction, ServerConfig, ServerSession};
    use super::*;

    /// Runs a client and a server against each other in memory, dropping the `n`-th datagram
    /// (counted over both directions) when `drop(n)`; returns the bytes the client wrote and
    /// how many DATA packets the server sent.
    fn transfer(
        file: &[u8],
        cfg: ClientConfig,
        drop: impl Fn(usize) -> bool,
    ) -> Result<(Vec<u8>, usize), ClientError> {
        let mut data_sent = 0usize;
        let mut client = ClientSession::new(cfg, "f");
        let mut c_out = Vec::new();
        client.start(0, &mut c_out);
        let mut server: Option<ServerSession> = None;
        let mut got = Vec::new();
        let mut now = 0;
        let mut sent = 0usize;
        let mut s_timer = 0;
        let mut c_timer = 0;
        for _ in 0..2_000_000 {
            let mut to_server = Vec::new();
            for a in c_out.drain(..) {
                match a {
                    ClientAction::Send(b) => to_server.push(b),
                    ClientAction::Write { offset, data } => {
                        assert_eq!(offset as usize, got.len());
                        got.extend_from_slice(&data);
                    }
                    ClientAction::Timer(t) => c_timer = t,
                    ClientAction::Size(s) => assert_eq!(s as usize, file.len()),
                    ClientAction::Done(r) => return r.map(|_| (got, data_sent)),
                }
            }
            let mut s_out = Vec::new();
            for b in to_server {
                sent += 1;
                if drop(sent) {
                    continue;
                }
                match decode(&b).unwrap() {
                    Packet::Rrq { options, .. } => {
                        let mut s = ServerSession::new(
                            &ServerConfig::default(),
                            file.len() as u64,
                            options,
                        );
                        s.start(now, &mut s_out);
                        server = Some(s);
                    }
                    Packet::Ack { block } => {
                        server.as_mut().unwrap().on_ack(now, block, &mut s_out)
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
            let mut to_client = Vec::new();
            for a in s_out {
                match a {
                    ServerAction::SendOack(o) => to_client.push(oack(&o)),
                    ServerAction::SendData {
                        wire, offset, len, ..
                    } => {
                        data_sent += 1;
                        let mut d = data_header(wire).to_vec();
                        d.extend_from_slice(&file[offset as usize..offset as usize + len]);
                        to_client.push(d);
                    }
                    ServerAction::Timer(t) => s_timer = t,
                    ServerAction::Done(_) => {}
                }
            }
            let quiet = to_client.is_empty() && c_out.is_empty();
            for b in to_client {
                sent += 1;
                if drop(sent) {
                    continue;
                }
                client.on_packet(now, decode(&b).unwrap(), &mut c_out);
            }
            if quiet && c_out.is_empty() {
                now = c_timer.min(s_timer).max(now + 1);
                client.on_timer(now, &mut c_out);
                let mut s_out = Vec::new();
                if let Some(s) = server.as_mut() {
                    s.on_timer(now, &mut s_out);
                }
                // Server retransmissions go through the same lossy path next round.
                for a in s_out {
                    if let ServerAction::SendData {
                        wire, offset, len, ..
                    } = a
                    {
                        data_sent += 1;
                        let mut d = data_header(wire).to_vec();
                        d.extend_from_slice(&file[offset as usize..offset as usize + len]);
                        client.on_packet(now, decode(&d).unwrap(), &mut c_out);
                    } else if let ServerAction::SendOack(o) = a {
                        client.on_packet(now, decode(&oack(&o)).unwrap(), &mut c_out);
                    }
                }
            }
        }
        panic!("transfer did not finish");
    }

    #[test]
    fn in_memory_transfers_are_byte_identical_even_with_loss() {
        let file: Vec<u8> = (0..200_003u32).map(|i| (i * 7 % 251) as u8).collect();
        for (blksize, windowsize) in [(512, 1), (1428, 8), (8192, 64), (65464, 4)] {
            for drop_every in [0, 7] {
                let cfg = ClientConfig {
                    blksize,
                    windowsize,
                    max_retries: 50,
                    ..ClientConfig::default()
                };
                let lossy = |n: usize| drop_every > 0 && n.is_multiple_of(drop_every);
                let (got, _) = transfer(&file, cfg, lossy).expect("transfer");
                assert!(
                    got == file,
                    "blksize {blksize} window {windowsize} drop {drop_every}"
                );
            }
        }
    }

    /// One lost block costs a resend of about one window, not a duplicate of every window
    /// after it: the rest of a resent window must not read as fresh rewind requests (this
    /// doubled a root's WAN traffic for the rest of its transfer after a single loss).
    #[test]
    fn one_lost_block_costs_about_one_window() {
        let file: Vec<u8> = (0..2_000_000u32).map(|i| (i % 251) as u8).collect();
        let blocks = file.len() / 1428 + 1;
        for window in [4u16, 16, 64] {
            let cfg = ClientConfig {
                windowsize: window,
                ..ClientConfig::default()
            };
            for lost in [5, 40, 301] {
                let (got, sent) = transfer(&file, cfg.clone(), |n| n == lost).expect("transfer");
                assert!(got == file);
                assert!(
                    sent <= blocks + 2 * usize::from(window),
                    "window {window}, datagram {lost} lost: {sent} DATA for {blocks} blocks"
                );
            }
        }
    }

    /// An OACK the client cannot accept is answered with ERROR 8 (RFC 2347), so the server
    /// stops instead of retransmitting it until its retries run out.
    #[test]
    fn an_unacceptable_oack_is_answered_with_error_8() {
        let cfg = ClientConfig {
            blksize: 1428,
            windowsize: 4,
            ..ClientConfig::default()
        };
        for bad in [
            Options {
                blksize: Some(8192),
                ..Options::default()
            },
            Options {
                windowsize: Some(64),
                ..Options::default()
            },
        ] {
            let mut c = ClientSession::new(cfg.clone(), "f");
            let mut out = Vec::new();
            c.start(0, &mut out);
            out.clear();
            let bytes = oack(&bad);
            c.on_packet(1, decode(&bytes).unwrap(), &mut out);
            let sent: Vec<_> = out
                .iter()
                .filter_map(|a| match a {
                    ClientAction::Send(b) => Some(b.clone()),
                    _ => None,
                })
                .collect();
            assert_eq!(sent.len(), 1, "{out:?}");
            assert!(
                matches!(decode(&sent[0]), Ok(Packet::Error { code: 8, .. })),
                "{:?}",
                decode(&sent[0])
            );
            assert!(matches!(
                out.last(),
                Some(ClientAction::Done(Err(ClientError::Protocol(_))))
            ));
            assert!(c.is_finished());
        }
    }

    #[test]
    fn an_unanswered_request_backs_off_then_gives_up() {
        let cfg = ClientConfig {
            max_retries: 4,
            ..ClientConfig::default()
        };
        let mut c = ClientSession::new(cfg.clone(), "f");
        let mut out = Vec::new();
        c.start(0, &mut out);
        let timer = |out: &[ClientAction]| {
            out.iter().rev().find_map(|a| match a {
                ClientAction::Timer(t) => Some(*t),
                _ => None,
            })
        };
        let mut at = timer(&out).expect("armed");
        let mut waits = vec![at];
        for _ in 0..4 {
            out.clear();
            c.on_timer(at, &mut out);
            assert!(matches!(out[0], ClientAction::Send(_)), "{out:?}");
            let next = timer(&out).expect("re-armed");
            waits.push(next - at);
            at = next;
        }
        let t = cfg.timeout;
        assert_eq!(waits, vec![t, 2 * t, 4 * t, 8 * t, 8 * t]);
        out.clear();
        c.on_timer(at, &mut out);
        assert_eq!(out, vec![ClientAction::Done(Err(ClientError::Timeout(4)))]);
    }
}
