//! Kernel drop counters of the lab's namespaces: where datagrams die under overload before any
//! phone sees them (a full socket receive buffer, a full qdisc), read from the kernel's own
//! counters (`/proc/net/snmp`, RFC 4113's UDP MIB names) rather than inferred from timeouts.

use crate::netns::{NetnsError, NsHandle};

/// UDP MIB counters of one namespace (or a sum), from the `Udp:` lines of `/proc/net/snmp`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct UdpCounters {
    pub in_datagrams: u64,
    /// Datagrams dropped because the socket's receive buffer was full (`RcvbufErrors`).
    pub rcvbuf_errors: u64,
    /// All datagrams that could not be delivered (`InErrors`, includes `RcvbufErrors`).
    pub in_errors: u64,
}

/// `/proc/net/snmp` text that has no well-formed `Udp:` header and value line pair.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("no well-formed Udp: lines in /proc/net/snmp")]
pub struct SnmpError;

impl UdpCounters {
    /// Parses the `Udp:` header line and the value line that follows it. Total over arbitrary
    /// text: anything else is an [`SnmpError`].
    pub fn parse(snmp: &str) -> Result<UdpCounters, SnmpError> {
        let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
        let (names, values) = (udp.next().ok_or(SnmpError)?, udp.next().ok_or(SnmpError)?);
        let mut c = UdpCounters::default();
        let mut found = 0;
        for (name, value) in names
            .split_whitespace()
            .zip(values.split_whitespace())
            .skip(1)
        {
            let slot = match name {
                "InDatagrams" => &mut c.in_datagrams,
                "RcvbufErrors" => &mut c.rcvbuf_errors,
                "InErrors" => &mut c.in_errors,
                _ => continue,
            };
            *slot = value.parse().map_err(|_| SnmpError)?;
            found += 1;
        }
        if found < 3 {
            return Err(SnmpError);
        }
        Ok(c)
    }

    fn add(self, o: UdpCounters) -> UdpCounters {
        UdpCounters {
            in_datagrams: self.in_datagrams + o.in_datagrams,
            rcvbuf_errors: self.rcvbuf_errors + o.rcvbuf_errors,
            in_errors: self.in_errors + o.in_errors,
        }
    }

    /// The counters accrued since `before` (kernel counters only grow; a smaller value means
    /// the namespace was replaced, which the lab never does while it runs).
    pub fn since(self, before: UdpCounters) -> UdpCounters {
        assert!(self.in_datagrams >= before.in_datagrams);
        UdpCounters {
            in_datagrams: self.in_datagrams - before.in_datagrams,
            rcvbuf_errors: self.rcvbuf_errors - before.rcvbuf_errors,
            in_errors: self.in_errors - before.in_errors,
        }
    }
}

/// Errors reading a namespace's counters.
#[derive(Debug, thiserror::Error)]
pub enum NetstatError {
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error("namespace {ns}: reading /proc/thread-self/net/snmp: {source}")]
    Read { ns: String, source: std::io::Error },
    #[error("namespace {ns}: {source}")]
    Parse { ns: String, source: SnmpError },
}

/// The UDP counters of every namespace in `names`, summed. Enters each one on this thread
/// (`setns`), about 20 µs each: 1000 phones take well under a second.
pub fn udp_sum<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<UdpCounters, NetstatError> {
    let mut sum = UdpCounters::default();
    for ns in names {
        let text = NsHandle::open(ns)?
            .run_here(|| std::fs::read_to_string("/proc/thread-self/net/snmp"))?
            .map_err(|source| NetstatError::Read {
                ns: ns.to_owned(),
                source,
            })?;
        let c = UdpCounters::parse(&text).map_err(|source| NetstatError::Parse {
            ns: ns.to_owned(),
            source,
        })?;
        sum = sum.add(c);
    }
    Ok(sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_kernels_udp_lines() {
        let text = "Ip: Forwarding DefaultTTL\nIp: 1 64\n\
            Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors\n\
            Udp: 1200 3 45 900 44 0 1 0 0\n\
            UdpLite: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors\n\
            UdpLite: 0 0 0 0 0 0 0 0 0\n";
        let c = UdpCounters::parse(text).unwrap();
        assert_eq!(
            c,
            UdpCounters {
                in_datagrams: 1200,
                rcvbuf_errors: 44,
                in_errors: 45
            }
        );
        assert_eq!(c.since(c), UdpCounters::default());
    }

    #[test]
    fn refuses_text_without_both_lines_or_with_bad_numbers() {
        for bad in [
            "",
            "Udp: InDatagrams RcvbufErrors InErrors\n",
            "Udp: InDatagrams RcvbufErrors InErrors\nUdp: 1 x 2\n",
            "Udp: InDatagrams NoPorts\nUdp: 1 2\n",
            "Udp:\nUdp:\n",
        ] {
            assert_eq!(UdpCounters::parse(bad), Err(SnmpError), "{bad:?}");
        }
    }

    #[test]
    fn this_namespace_has_udp_counters() {
        let text = std::fs::read_to_string("/proc/net/snmp").unwrap();
        UdpCounters::parse(&text).unwrap();
    }
}
