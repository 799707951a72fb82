//! `pfs xdp demo`: a self-contained, real XDP run. Two namespaces joined by a veth pair, the
//! program attached on the receiving side, a known number of broadcasts sent, counters read
//! back and compared, everything removed at the end (also on error, through the guards).

use std::{
    net::{Ipv4Addr, SocketAddrV4},
    time::Duration,
};

use pfs_common::{Counter, PFS_PORT};

use crate::{
    netns::{Netns, VethPair},
    traffic::{self, Burst},
    xdp::{self, AttachMode, Target},
};

/// Result of one demo run.
#[derive(Debug, serde::Serialize)]
pub struct DemoReport {
    pub mode: &'static str,
    pub sent_4051: u32,
    pub sent_other: u32,
    pub counted_4051: u64,
    pub counted_other: u64,
    pub exact: bool,
}

/// Runs the demo: `broadcasts` datagrams to 4051 and `others` to 4052.
pub fn run(broadcasts: u32, others: u32) -> anyhow::Result<DemoReport> {
    let swept = crate::netns::sweep_stale();
    if !swept.is_empty() {
        tracing::info!(?swept, "removed namespaces left by an earlier run");
    }
    let phone = Netns::create("demo-phone")?;
    let peer = Netns::create("demo-peer")?;
    let link = VethPair::create(
        &peer,
        "pfsd-tx",
        Ipv4Addr::new(198, 18, 0, 1),
        &phone,
        "pfsd-rx",
        Ipv4Addr::new(198, 18, 0, 2),
        24,
    )?;
    let target = Target {
        iface: link.b_name.clone(),
        netns: Some(phone.name().to_owned()),
    };
    let attached = xdp::attach(&target, AttachMode::Auto, &[])?;
    let guard = DetachOnDrop(target.clone());
    tracing::info!(iface = %attached.iface, mode = attached.mode, "XDP attached");

    let burst = |port: u16, count: u32| Burst {
        from: link.a_addr,
        to: SocketAddrV4::new(link.broadcast(), port),
        count,
        payload: b"pfs-demo".to_vec(),
        deadline: Duration::from_secs(30),
    };
    let sent_4051 = traffic::send_in(peer.name(), burst(PFS_PORT, broadcasts))?;
    let sent_other = traffic::send_in(peer.name(), burst(PFS_PORT + 1, others))?;
    // Frames cross the veth asynchronously; give the receiver a moment to drain.
    std::thread::sleep(Duration::from_millis(200));
    let stats = xdp::stats(&target)?;
    drop(guard);
    let counted_4051 = stats.get(Counter::Udp4051);
    let counted_other = stats.get(Counter::Other);
    Ok(DemoReport {
        mode: attached.mode,
        sent_4051,
        sent_other,
        counted_4051,
        counted_other,
        exact: counted_4051 == u64::from(sent_4051) && counted_other == u64::from(sent_other),
    })
}

/// Detaches on drop so an error between attach and detach leaves no attachment behind.
struct DetachOnDrop(Target);

impl Drop for DetachOnDrop {
    fn drop(&mut self) {
        if let Err(err) = xdp::detach(&self.0) {
            tracing::warn!(%err, "XDP detach failed");
        }
    }
}
