//! Bounded test traffic: send a fixed number of UDP datagrams from inside a namespace.
//!
//! Every loop here is bounded in count and in time, and every destination is checked to be
//! inside 198.18.0.0/15 (see [`crate::netns::check_lab_addr`]).

use std::{
    net::{Ipv4Addr, SocketAddrV4, UdpSocket},
    time::{Duration, Instant},
};

use crate::netns::{NetnsError, check_lab_addr};

/// Datagrams sent back to back before the sender pauses; keeps veth's 256-slot XDP ring and
/// the receiver's backlog from overflowing, so counts are exact.
const BURST: u32 = 32;
const PAUSE: Duration = Duration::from_millis(1);

#[derive(Debug, thiserror::Error)]
pub enum TrafficError {
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error("socket error while sending to {dest}: {source}")]
    Io {
        dest: SocketAddrV4,
        source: std::io::Error,
    },
    #[error("sent only {sent} of {wanted} datagrams to {dest} before the {limit:?} deadline")]
    Deadline {
        dest: SocketAddrV4,
        sent: u32,
        wanted: u32,
        limit: Duration,
    },
}

/// What to send.
#[derive(Clone, Debug)]
pub struct Burst {
    pub from: Ipv4Addr,
    pub to: SocketAddrV4,
    pub count: u32,
    pub payload: Vec<u8>,
    /// Hard limit on the whole send.
    pub deadline: Duration,
}

/// Sends `count` datagrams, the i-th being `payload(i)`, from `from` to `to`, paced in bursts
/// and bounded by `deadline`. Returns the number sent (always `count` on Ok).
fn send_paced<'a>(
    from: Ipv4Addr,
    to: SocketAddrV4,
    count: u32,
    payload: impl Fn(u32) -> &'a [u8],
    deadline: Duration,
) -> Result<u32, TrafficError> {
    check_lab_addr(from)?;
    check_lab_addr(*to.ip())?;
    let io = |source| TrafficError::Io { dest: to, source };
    let socket = UdpSocket::bind(SocketAddrV4::new(from, 0)).map_err(io)?;
    socket.set_broadcast(true).map_err(io)?;
    let start = Instant::now();
    for sent in 0..count {
        if start.elapsed() > deadline {
            return Err(TrafficError::Deadline {
                dest: to,
                sent,
                wanted: count,
                limit: deadline,
            });
        }
        socket.send_to(payload(sent), to).map_err(io)?;
        if (sent + 1).is_multiple_of(BURST) {
            std::thread::sleep(PAUSE);
        }
    }
    Ok(count)
}

/// Sends `burst` from the current namespace; returns the number sent (always `count` on Ok).
pub fn send(burst: &Burst) -> Result<u32, TrafficError> {
    send_paced(
        burst.from,
        burst.to,
        burst.count,
        |_| &burst.payload,
        burst.deadline,
    )
}

/// Sends each payload once, in order, from `from` to `to` inside namespace `netns`; paced
/// like [`send`] and bounded by `deadline`. Returns the number sent.
pub fn send_payloads_in(
    netns: &str,
    from: Ipv4Addr,
    to: SocketAddrV4,
    payloads: Vec<Vec<u8>>,
    deadline: Duration,
) -> Result<u32, TrafficError> {
    crate::netns::run_in(netns, move || {
        send_paced(
            from,
            to,
            payloads.len() as u32,
            |i| &payloads[i as usize],
            deadline,
        )
    })?
}

/// Sends `burst` from inside namespace `netns`.
pub fn send_in(netns: &str, burst: Burst) -> Result<u32, TrafficError> {
    crate::netns::run_in(netns, move || send(&burst))?
}

/// Sends `count` copies of `payload` from `from` to `to` inside namespace `netns` as fast as
/// the socket takes them (a flood), bounded by `deadline`. Returns (sent, seconds).
pub fn flood_in(
    netns: &str,
    from: Ipv4Addr,
    to: SocketAddrV4,
    count: u64,
    payload: Vec<u8>,
    deadline: Duration,
) -> Result<(u64, f64), TrafficError> {
    check_lab_addr(from)?;
    check_lab_addr(*to.ip())?;
    crate::netns::run_in(netns, move || {
        let io = |source| TrafficError::Io { dest: to, source };
        let s = UdpSocket::bind(SocketAddrV4::new(from, 0)).map_err(io)?;
        s.set_broadcast(true).map_err(io)?;
        let start = Instant::now();
        let mut sent = 0u64;
        while sent < count && start.elapsed() < deadline {
            // ENOBUFS under a flood is expected: try again (still bounded by the deadline).
            if s.send_to(&payload, to).is_ok() {
                sent += 1;
            }
        }
        Ok((sent, start.elapsed().as_secs_f64()))
    })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_destinations_outside_the_lab_range() {
        let burst = Burst {
            from: Ipv4Addr::new(198, 18, 0, 1),
            to: SocketAddrV4::new(Ipv4Addr::new(192, 168, 0, 255), 4051),
            count: 1,
            payload: vec![0],
            deadline: Duration::from_secs(1),
        };
        assert!(matches!(
            send(&burst),
            Err(TrafficError::Netns(NetnsError::UnsafeAddress(_)))
        ));
    }
}
