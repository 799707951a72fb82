//! `pfs fleet --peer-sharing`: every virtual phone gets its own address and MAC on an existing
//! LAN, as a real phone has: a macvlan (or ipvlan) child of `--iface`, moved into a namespace
//! of its own, addressed from `--addresses CIDR`. The phones then elect, build trees and share
//! with each other and with phones of other hosts on the same LAN (several load generators form
//! one site, with no coordinator). Every namespace, and the link inside it, is deleted when the
//! [`PhoneNets`] drops.

use std::net::Ipv4Addr;

use crate::netns::{Netns, NetnsError, ip, ip_in};

/// The kind of child link each phone gets on `--iface`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LinkKind {
    /// Own MAC per phone (bridge mode: phones on one host reach each other directly).
    Macvlan,
    /// The parent's MAC, own address (for switches that limit MACs per port; L2 mode).
    Ipvlan,
}

/// A pool of addresses: `base/prefix`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub base: Ipv4Addr,
    pub prefix: u8,
}

impl std::str::FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Cidr, String> {
        let (a, p) = s
            .split_once('/')
            .ok_or_else(|| format!("{s}: want ADDRESS/PREFIX, e.g. 198.18.1.0/24"))?;
        let base: Ipv4Addr = a.parse().map_err(|e| format!("{a}: {e}"))?;
        let prefix: u8 = p.parse().map_err(|e| format!("{p}: {e}"))?;
        if !(8..=30).contains(&prefix) {
            return Err(format!("/{prefix}: the prefix must be 8..=30"));
        }
        Ok(Cidr { base, prefix })
    }
}

impl Cidr {
    fn mask(&self) -> u32 {
        u32::MAX << (32 - u32::from(self.prefix))
    }

    /// The `i`th usable address (network and broadcast addresses skipped).
    pub fn nth(&self, i: usize) -> Option<Ipv4Addr> {
        let net = u32::from(self.base) & self.mask();
        let hosts = (!self.mask()).saturating_sub(1) as usize;
        (i < hosts).then(|| Ipv4Addr::from(net + 1 + i as u32))
    }
}

/// A phone's MAC from its address (locally administered, 02:50:a:b:c:d): unique on the LAN
/// whenever addresses are, so hosts need not agree on anything.
pub fn mac_of(addr: Ipv4Addr) -> String {
    let [a, b, c, d] = addr.octets();
    format!("02:50:{a:02x}:{b:02x}:{c:02x}:{d:02x}")
}

/// The phones' namespaces and addresses.
#[derive(Debug)]
pub struct PhoneNets {
    pub phones: Vec<Netns>,
    pub addrs: Vec<Ipv4Addr>,
}

/// The interface every phone's link is called inside its namespace.
pub const PHONE_IFACE: &str = "eth0";

/// The prefix length of `iface`'s own IPv4 subnet (in namespace `netns`), when it has one
/// that holds `pool`: the phones must share the LAN's broadcast address with every other host.
fn lan_prefix(iface: &str, netns: Option<&str>, pool: Cidr) -> u8 {
    let args = ["-j", "-4", "addr", "show", "dev", iface];
    let out = match netns {
        Some(ns) => ip_in(ns, &args),
        None => ip(&args),
    };
    let Ok(out) = out else {
        return pool.prefix;
    };
    let Ok(v) = serde_json::from_str::<serde_json::Value>(&out) else {
        return pool.prefix;
    };
    for info in v
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l["addr_info"].as_array())
        .flatten()
    {
        let (Some(local), Some(len)) = (
            info["local"]
                .as_str()
                .and_then(|a| a.parse::<Ipv4Addr>().ok()),
            info["prefixlen"].as_u64(),
        ) else {
            continue;
        };
        let lan = Cidr {
            base: local,
            prefix: len as u8,
        };
        if len as u8 <= pool.prefix
            && (u32::from(pool.base) & lan.mask()) == (u32::from(local) & lan.mask())
        {
            return len as u8;
        }
    }
    pool.prefix
}

/// Builds `n` phones on `iface` (in namespace `netns`, or this one): a namespace each, with a
/// `kind` child of `iface` named `eth0`, its own address from `pool` and (macvlan) its own MAC.
pub fn build(
    iface: &str,
    netns: Option<&str>,
    pool: Cidr,
    n: usize,
    kind: LinkKind,
) -> Result<PhoneNets, NetnsError> {
    let prefix = lan_prefix(iface, netns, pool);
    let mut nets = PhoneNets {
        phones: Vec::with_capacity(n),
        addrs: Vec::with_capacity(n),
    };
    let host = |args: &[&str]| match netns {
        Some(ns) => ip_in(ns, args),
        None => ip(args),
    };
    for i in 0..n {
        let addr = pool.nth(i).ok_or_else(|| NetnsError::Ip {
            args: format!("--addresses {}/{}", pool.base, pool.prefix),
            stderr: format!("holds fewer than {n} addresses"),
        })?;
        let ns = Netns::create(&format!("fp{i}"))?;
        ns.sysctl("net.ipv6.conf.all.disable_ipv6", "1")?;
        ns.sysctl("net.ipv6.conf.default.disable_ipv6", "1")?;
        // Made in the host namespace (the parent's), moved at once into the phone's.
        let tmp = format!("pv{}x{i}", std::process::id() % 100_000);
        let mac = mac_of(addr);
        let mut args = vec!["link", "add", "link", iface, "name", &tmp];
        match kind {
            LinkKind::Macvlan => {
                args.extend(["address", &mac, "type", "macvlan", "mode", "bridge"])
            }
            LinkKind::Ipvlan => args.extend(["type", "ipvlan", "mode", "l2"]),
        }
        host(&args)?;
        if let Err(e) = host(&["link", "set", &tmp, "netns", ns.name()]) {
            let _ = host(&["link", "del", &tmp]);
            return Err(e);
        }
        ns.ip(&["link", "set", &tmp, "name", PHONE_IFACE])?;
        ns.ip(&[
            "addr",
            "add",
            &format!("{addr}/{prefix}"),
            "dev",
            PHONE_IFACE,
        ])?;
        ns.ip(&["link", "set", PHONE_IFACE, "up"])?;
        nets.phones.push(ns);
        nets.addrs.push(addr);
    }
    Ok(nets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_skip_network_and_broadcast() {
        let c: Cidr = "198.18.1.0/30".parse().unwrap();
        assert_eq!(c.nth(0), Some(Ipv4Addr::new(198, 18, 1, 1)));
        assert_eq!(c.nth(1), Some(Ipv4Addr::new(198, 18, 1, 2)));
        assert_eq!(c.nth(2), None);
        let c: Cidr = "198.18.1.77/24".parse().unwrap();
        assert_eq!(c.nth(0), Some(Ipv4Addr::new(198, 18, 1, 1)));
        assert!("198.18.1.0".parse::<Cidr>().is_err());
        assert!("198.18.1.0/31".parse::<Cidr>().is_err());
        assert_eq!(mac_of(Ipv4Addr::new(198, 18, 1, 2)), "02:50:c6:12:01:02");
    }
}
