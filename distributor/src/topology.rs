//! A site on network namespaces: `hq` (the origin) behind a WAN veth shaped with tbf, a site
//! router with a bridge, and one namespace per phone on that bridge, so every byte between
//! phones crosses a veth and the bridge as on a LAN. All addresses are in 198.18.0.0/15; every
//! namespace (and with it every veth, bridge and qdisc) is deleted when the [`Site`] drops.

use std::net::Ipv4Addr;

use crate::netns::{HostTuning, Netns, NetnsError, check_lab_addr};

/// hq's end of the WAN link (the origin's address).
pub const ORIGIN_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// The site router's end of the WAN link.
pub const ROUTER_WAN: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
/// The site router on the phone LAN (198.19.0.0/16).
pub const ROUTER_LAN: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 1);
/// The site router's MAC on the phone LAN (locally administered).
const ROUTER_MAC: &str = "02:00:c6:13:ff:fe";
/// Interface name of every phone's LAN port inside its namespace.
pub const PHONE_IFACE: &str = "eth0";
/// The site bridge in the router namespace (every phone's port is on it).
pub const BRIDGE: &str = "br0";
/// hq's WAN interface (its transmit counter is the WAN traffic towards the site).
pub const HQ_WAN_IFACE: &str = "wan0";

#[derive(Debug, Clone)]
pub struct SiteSpec {
    pub phones: usize,
    /// WAN rate hq -> site (tbf); `None` leaves it unshaped.
    pub wan_kbit: Option<u32>,
    /// The WAN bucket in bytes (how much may leave back to back at line rate); `None`: one
    /// 10 ms timer tick at the rate, at least 32 KiB.
    pub wan_burst: Option<u32>,
    /// Each phone port's rate (tbf on both ends of its veth); `None` leaves it unshaped.
    pub lan_kbit: Option<u32>,
    /// WAN round-trip delay (ms): the WAN becomes a TUN pair with a delay line in this
    /// process ([`crate::delayline`]); `None`: a plain veth.
    pub wan_rtt_ms: Option<f64>,
}

#[derive(Debug)]
pub struct Site {
    // Dropped in order: the delay line (its TUN devices vanish with its descriptors), phones,
    // then the router, then hq.
    /// With `wan_rtt_ms`: the thread that carries the WAN's packets.
    pub wan_delay: Option<crate::delayline::DelayLine>,
    pub phones: Vec<Netns>,
    pub router: Netns,
    pub hq: Netns,
    pub phone_addrs: Vec<Ipv4Addr>,
    /// Restored after the namespaces are gone.
    pub tuning: HostTuning,
    /// Held while the site exists: one site per host at a time (see [`lock_host`]).
    _lock: std::fs::File,
}

/// Where sites take their host-wide lock.
pub const LOCK_PATH: &str = "/run/pfs-lab.lock";

/// Takes the host-wide site lock, waiting (and saying so once) while another site holds it.
/// Two sites on one host would tune the same host-wide tables (the ARP table that every
/// namespace shares, the backlog) and restore them under each other's feet: a 12-phone lab
/// ending in the middle of a 400-phone one shrank the ARP table and lost every phone.
pub fn lock_host() -> Result<std::fs::File, NetnsError> {
    use std::os::fd::AsRawFd;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(LOCK_PATH)
        .map_err(|source| NetnsError::Open {
            name: LOCK_PATH.into(),
            source,
        })?;
    // SAFETY: flock(2) on a descriptor this function owns.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        // The holder wrote who it is (below); say so, so a user knows what to wait for or stop.
        let holder = std::fs::read_to_string(LOCK_PATH).unwrap_or_default();
        let holder = holder.trim();
        let who = if holder.is_empty() {
            String::new()
        } else {
            format!(" ({holder})")
        };
        eprintln!("pfs: another pfs site{who} is running on this host: waiting for it");
        // SAFETY: as above, blocking.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(NetnsError::Open {
                name: LOCK_PATH.into(),
                source: std::io::Error::last_os_error(),
            });
        }
    }
    note_holder(&file);
    Ok(file)
}

/// Writes `pid N: ARGS` into the held lock file for whoever waits next (best effort: the
/// lock itself is the flock, not the text).
fn note_holder(file: &std::fs::File) {
    use std::io::Write;
    let args: Vec<String> = std::env::args().collect();
    let text: String = format!("pid {}: {}", std::process::id(), args.join(" "))
        .chars()
        .take(300)
        .collect();
    let mut f = file;
    let _ = file.set_len(0);
    let _ = f.write_all(text.as_bytes());
}

/// The `i`th phone's address: 198.19.x.y from 198.19.1.2 on, never .0/.255/the router.
pub fn phone_addr(i: usize) -> Ipv4Addr {
    let n = i as u32;
    Ipv4Addr::new(198, 19, (1 + n / 250) as u8, (2 + n % 250) as u8)
}

/// The `i`th phone's MAC (locally administered): 02:00:c6:13:hi:lo.
pub fn phone_mac(i: usize) -> [u8; 6] {
    [0x02, 0x00, 0xc6, 0x13, (i >> 8) as u8, i as u8]
}

/// tbf needs a bucket of at least one MTU and enough for the timer tick at the rate.
fn tbf_args(kbit: u32, burst: Option<u32>) -> Vec<String> {
    let burst = burst
        .map(|b| u64::from(b).max(2048))
        .unwrap_or((u64::from(kbit) * 1000 / 8 / 100).max(32 * 1024));
    vec![
        "root".into(),
        "tbf".into(),
        "rate".into(),
        format!("{kbit}kbit"),
        "burst".into(),
        burst.to_string(),
        "latency".into(),
        "100ms".into(),
    ]
}

fn tc(ns: &Netns, dev: &str, kbit: u32, burst: Option<u32>) -> Result<(), NetnsError> {
    let mut args: Vec<String> = vec![
        "-n".into(),
        ns.name().into(),
        "qdisc".into(),
        "add".into(),
        "dev".into(),
        dev.into(),
    ];
    args.extend(tbf_args(kbit, burst));
    let out = std::process::Command::new("tc")
        .args(&args)
        .output()
        .map_err(|source| NetnsError::Open {
            name: "tc".into(),
            source,
        })?;
    if !out.status.success() {
        return Err(NetnsError::Ip {
            args: format!("tc {}", args.join(" ")),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(())
}

/// IPv6 off in `ns`: the lab speaks IPv4 only.
fn no_ipv6(ns: &Netns) -> Result<(), NetnsError> {
    ns.sysctl("net.ipv6.conf.all.disable_ipv6", "1")?;
    ns.sysctl("net.ipv6.conf.default.disable_ipv6", "1")?;
    Ok(())
}

/// The WAN between `hq` and the site `router`: a veth, or with `spec.wan_rtt_ms` a TUN pair
/// joined by a delay line (returned); addressed, routed and shaped to `spec.wan_kbit`.
fn link_wan(
    hq: &Netns,
    router: &Netns,
    spec: &SiteSpec,
) -> Result<Option<crate::delayline::DelayLine>, NetnsError> {
    let wan_delay = match spec.wan_rtt_ms {
        None => {
            hq.ip(&[
                "link",
                "add",
                HQ_WAN_IFACE,
                "type",
                "veth",
                "peer",
                "name",
                "wan1",
                "netns",
                router.name(),
            ])?;
            hq.ip(&["link", "set", HQ_WAN_IFACE, "address", HQ_WAN_MAC])?;
            router.ip(&["link", "set", "wan1", "address", ROUTER_WAN_MAC])?;
            // One frame per TCP segment, as on a real link: with GSO the veth carried (and
            // counted) one set of headers per super-packet of up to 64 KiB, so HTTP origins
            // measured 1.02 x the firmware where an Ethernet link carries 1.046 x.
            hq.ip(&["link", "set", HQ_WAN_IFACE, "gso_max_segs", "1"])?;
            router.ip(&["link", "set", "wan1", "gso_max_segs", "1"])?;
            None
        }
        Some(rtt) => {
            let a = crate::delayline::open_tun(hq, HQ_WAN_IFACE)?;
            let b = crate::delayline::open_tun(router, "wan1")?;
            let one_way = std::time::Duration::from_secs_f64(rtt.max(0.0) / 2e3);
            Some(
                crate::delayline::DelayLine::start(a, b, one_way).map_err(|source| {
                    NetnsError::Open {
                        name: "the WAN delay line thread".into(),
                        source,
                    }
                })?,
            )
        }
    };
    hq.ip(&[
        "addr",
        "add",
        &format!("{ORIGIN_ADDR}/30"),
        "dev",
        HQ_WAN_IFACE,
    ])?;
    hq.ip(&["link", "set", HQ_WAN_IFACE, "up"])?;
    router.ip(&["addr", "add", &format!("{ROUTER_WAN}/30"), "dev", "wan1"])?;
    router.ip(&["link", "set", "wan1", "up"])?;
    if wan_delay.is_none() {
        wan_static_neighbours(hq, router)?;
    }
    hq.ip(&[
        "route",
        "add",
        "198.19.0.0/16",
        "via",
        &ROUTER_WAN.to_string(),
    ])?;
    if let Some(kbit) = spec.wan_kbit {
        tc(hq, HQ_WAN_IFACE, kbit, spec.wan_burst)?;
        tc(router, "wan1", kbit, spec.wan_burst)?;
    }
    Ok(wan_delay)
}

const HQ_WAN_MAC: &str = "02:00:c6:12:00:01";
const ROUTER_WAN_MAC: &str = "02:00:c6:12:00:02";

/// Fixed MACs and permanent neighbour entries at both ends of the WAN veth, so hq's `wan0`
/// transmits only the transfers' frames. With ARP, a neighbour entry going stale during a
/// run cost a 42-byte probe or reply now and then, and two runs that carried the same bytes
/// differed by 0-2 such frames (`bench peers`: 8,401,145 / 8,401,187 / 8,401,229 bytes for
/// pfs and udpcast alike). A real WAN link (PPP, MPLS) has no ARP either. The TUN delay line
/// is layer 3 and has none to begin with.
fn wan_static_neighbours(hq: &Netns, router: &Netns) -> Result<(), NetnsError> {
    let permanent = |ns: &Netns, addr: Ipv4Addr, mac: &str, dev: &str| {
        ns.ip(&[
            "neigh",
            "replace",
            &addr.to_string(),
            "lladdr",
            mac,
            "dev",
            dev,
            "nud",
            "permanent",
        ])
        .map(drop)
    };
    permanent(hq, ROUTER_WAN, ROUTER_WAN_MAC, HQ_WAN_IFACE)?;
    permanent(router, ORIGIN_ADDR, HQ_WAN_MAC, "wan1")
}

/// The site LAN's bridge in the `router`, with a fixed MAC and the router's LAN address.
fn site_bridge(router: &Netns) -> Result<(), NetnsError> {
    // A switch does not run the host's firewall on every frame it forwards; with
    // bridge-nf-call-iptables set (the default with br_netfilter) every frame between
    // phones went through the iptables hooks, a quarter of the lab's kernel time at 400
    // phones. Loss on the bridge uses nftables' own bridge family, unaffected.
    router.ip(&[
        "link",
        "add",
        "br0",
        "type",
        "bridge",
        "nf_call_iptables",
        "0",
        "nf_call_ip6tables",
        "0",
        "nf_call_arptables",
        "0",
    ])?;
    // The bridge's own flags only ever switch the hooks on: the kernel calls iptables for
    // bridged frames when either they or the namespace's sysctls say so, and the sysctls
    // default to 1 in every new namespace while br_netfilter is loaded. Measured at 1000
    // phones (perf): br_nf_* was still in every broadcast copy's path. Without the module
    // the keys are absent, and there is nothing to switch off.
    for key in [
        "net.bridge.bridge-nf-call-iptables",
        "net.bridge.bridge-nf-call-ip6tables",
        "net.bridge.bridge-nf-call-arptables",
    ] {
        let _ = router.sysctl(key, "0");
    }
    // A fixed address: a bridge otherwise takes the lowest of its ports' and changes it as
    // ports join, which static neighbour entries could not follow.
    router.ip(&["link", "set", "br0", "address", ROUTER_MAC])?;
    router.ip(&["addr", "add", &format!("{ROUTER_LAN}/16"), "dev", "br0"])?;
    router.ip(&["link", "set", "br0", "up"])?;
    Ok(())
}

impl Site {
    pub fn build(spec: &SiteSpec) -> Result<Site, NetnsError> {
        if spec.phones > 250 * 200 {
            return Err(NetnsError::Ip {
                args: "site".into(),
                stderr: "too many phones for 198.19.0.0/16".into(),
            });
        }
        // Each phone holds ARP entries for its router, roots, parents and children, all in the
        // one host-wide table; one broadcast becomes a packet per phone in the backlog.
        let lock = lock_host()?;
        let n = spec.phones as u64;
        let tuning = HostTuning::raise(&[
            ("net.ipv4.neigh.default.gc_thresh2", 32 * n + 512),
            ("net.ipv4.neigh.default.gc_thresh3", 32 * n + 1024),
            ("net.core.netdev_max_backlog", (32 * n).max(1000)),
        ])?;
        let hq = Netns::create("hq")?;
        let router = Netns::create("site")?;
        for ns in [&hq, &router] {
            no_ipv6(ns)?;
        }
        router.sysctl("net.ipv4.ip_forward", "1")?;
        let wan_delay = link_wan(&hq, &router, spec)?;
        site_bridge(&router)?;
        let mut site = Site {
            wan_delay,
            phones: Vec::with_capacity(spec.phones),
            router,
            hq,
            phone_addrs: Vec::with_capacity(spec.phones),
            tuning,
            _lock: lock,
        };
        for i in 0..spec.phones {
            site.add_phone(i, spec)?;
        }
        Ok(site)
    }

    /// Phone `i`'s namespace: its address and MAC on a veth to its own bridge port (shaped to
    /// `spec.lan_kbit` both ways), the router as its default route.
    fn add_phone(&mut self, i: usize, spec: &SiteSpec) -> Result<(), NetnsError> {
        let addr = check_lab_addr(phone_addr(i))?;
        let ns = Netns::create(&format!("ph{i}"))?;
        no_ipv6(&ns)?;
        let port = format!("p{i}");
        let mac = phone_mac(i)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":");
        ns.ip(&[
            "link",
            "add",
            PHONE_IFACE,
            "address",
            &mac,
            "type",
            "veth",
            "peer",
            "name",
            &port,
            "netns",
            self.router.name(),
        ])?;
        ns.ip(&["addr", "add", &format!("{addr}/16"), "dev", PHONE_IFACE])?;
        ns.ip(&["link", "set", PHONE_IFACE, "up"])?;
        ns.ip(&["route", "add", "default", "via", &ROUTER_LAN.to_string()])?;
        self.router
            .ip(&["link", "set", &port, "master", "br0", "up"])?;
        if let Some(kbit) = spec.lan_kbit {
            tc(&ns, PHONE_IFACE, kbit, None)?;
            tc(&self.router, &port, kbit, None)?;
        }
        self.phones.push(ns);
        self.phone_addrs.push(addr);
        Ok(())
    }

    /// Static neighbour entries in every phone's namespace (every phone and the router) and in
    /// the router's (every phone), as Mininet's `autoStaticArp` does: no ARP request is ever
    /// broadcast on the site LAN.
    ///
    /// On a real LAN each phone answers ARP on its own CPU; here a thousand phones share two
    /// cores, and every ARP request is flooded through the bridge to every port (a clone, the
    /// port's tbf, its veth, the phone's stack): measured at 1000 phones, ~7000 requests in
    /// the first 5 s after power-on (each phone asking for up to 6 roots and 6 parents), about
    /// 1.4 ms of kernel time each, which made the engines' turns last seconds in the middle of
    /// the election. Costs about 20 ms of setup and 0.7 MB of kernel memory per 1000 entries.
    pub fn static_neighbours(&self) -> Result<(), NetnsError> {
        let dir = std::env::temp_dir().join(format!("pfs-neigh-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|source| NetnsError::Open {
            name: dir.display().to_string(),
            source,
        })?;
        let mac = |m: [u8; 6]| {
            m.iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(":")
        };
        let mut phones = String::new();
        for (i, a) in self.phone_addrs.iter().enumerate() {
            phones.push_str(&format!(
                "neigh replace {a} lladdr {} dev {{dev}} nud permanent\n",
                mac(phone_mac(i))
            ));
        }
        let on_phone = format!(
            "{}neigh replace {ROUTER_LAN} lladdr {ROUTER_MAC} dev {PHONE_IFACE} nud permanent\n",
            phones.replace("{dev}", PHONE_IFACE)
        );
        let on_router = phones.replace("{dev}", BRIDGE);
        let (pf, rf) = (dir.join("phone"), dir.join("router"));
        let written = std::fs::write(&pf, on_phone).and_then(|()| std::fs::write(&rf, on_router));
        let result = written
            .map_err(|source| NetnsError::Open {
                name: dir.display().to_string(),
                source,
            })
            .and_then(|()| {
                let pf = pf.to_string_lossy();
                for ns in &self.phones {
                    ns.ip(&["-batch", &pf])?;
                }
                self.router.ip(&["-batch", &rf.to_string_lossy()])?;
                Ok(())
            });
        let _ = std::fs::remove_dir_all(&dir);
        result
    }

    /// Bytes hq has sent over the WAN link so far.
    /// The UDP MIB counters of every phone's namespace, summed (datagrams delivered, and
    /// dropped at a full socket receive buffer).
    pub fn phone_udp(&self) -> Result<crate::netstat::UdpCounters, crate::netstat::NetstatError> {
        crate::netstat::udp_sum(self.phones.iter().map(|p| p.name()))
    }

    pub fn wan_tx_bytes(&self) -> Result<u64, NetnsError> {
        let out = self.hq.ip(&["-s", "-j", "link", "show", HQ_WAN_IFACE])?;
        let v: serde_json::Value = serde_json::from_str(&out).map_err(|e| NetnsError::Ip {
            args: "ip -s -j link".into(),
            stderr: e.to_string(),
        })?;
        v[0]["stats64"]["tx"]["bytes"]
            .as_u64()
            .ok_or_else(|| NetnsError::Ip {
                args: "ip -s -j link".into(),
                stderr: "no tx byte counter".into(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_addresses_are_unique_and_in_range() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..10_000 {
            let a = phone_addr(i);
            assert!(check_lab_addr(a).is_ok());
            assert!(a != ROUTER_LAN && a.octets()[3] != 0 && a.octets()[3] != 255);
            assert!(seen.insert(a));
        }
    }
}
