//! uftp: a server in hq, proxies across the WAN, a `uftpd` per phone (uftp's own figure 1).

use super::*;

/// hq's loopback carries the uftp server's multicast to the server proxy beside it; the
/// flag and the route go when the run ends.
struct HqLoopbackMcast<'a>(&'a Lab);

impl<'a> HqLoopbackMcast<'a> {
    fn add(lab: &'a Lab) -> Result<HqLoopbackMcast<'a>, LabError> {
        let hq = &lab.site.hq;
        hq.ip(&["link", "set", "lo", "multicast", "on"])
            .and_then(|_| hq.ip(&["route", "add", MCAST, "dev", "lo"]))
            .map_err(|e| LabError::Setup(format!("uftp: multicast on hq's loopback: {e}")))?;
        Ok(HqLoopbackMcast(lab))
    }
}

impl Drop for HqLoopbackMcast<'_> {
    fn drop(&mut self) {
        let hq = &self.0.site.hq;
        let _ = hq.ip(&["route", "del", MCAST, "dev", "lo"]);
        let _ = hq.ip(&["link", "set", "lo", "multicast", "off"]);
    }
}

/// A uftp member id: the address as 0xNNNNNNNN (what uftp derives by default).
fn uftp_id(a: std::net::Ipv4Addr) -> String {
    format!("0x{:08X}", u32::from(a))
}

pub(super) fn uftp(
    lab: &Lab,
    dir: &Path,
    procs: &mut Procs,
    start: &mut Instant,
) -> Result<Outcome, LabError> {
    let cfg = lab.config();
    let n = cfg.phones;
    let hq = lab.site.hq.name().to_owned();
    let log = dir.join("uftp.log");
    let mut commands = Vec::new();
    let _lo = HqLoopbackMcast::add(lab)?;
    commands.push(format!(
        "ip netns exec {hq} ip link set lo multicast on; \
         ip netns exec {hq} ip route add {MCAST} dev lo"
    ));
    // The tunnel, as hq and the site would already run it: a client proxy on the site
    // router multicasting on the bridge, a server proxy in hq sending to it across the WAN.
    let proxies = start_proxies(lab, dir, procs, &mut commands)?;
    *start = Instant::now();
    let start = *start;
    let deadline = start + cfg.deadline;
    let dirs = start_daemons(lab, dir, procs, &mut commands)?;
    // One session per model, from hq, at the slower of the WAN and a port (less 5%, as
    // udpcast is paced): the tunnel crosses the WAN and the bridge carries it to every port.
    // (uftp's own congestion control, `-C tfmcc:init=50000:max=95000`, did worse here: at 60
    // phones and 100 Mbit/s no phone finished within 9 minutes, and 124 MB crossed the WAN.)
    let kbit = (cfg.wan_mbit.min(cfg.lan_mbit.unwrap_or(f64::INFINITY)) * 950.0) as u64;
    let kbit = kbit.max(1).to_string();
    let mut done = vec![None; n];
    let mut left: Vec<usize> = (0..n).collect();
    for (m, (_, folder, man)) in lab.manifests().iter().enumerate() {
        let phones = phones_of(lab, m);
        let hosts = write_hosts(lab, dir, m, &phones)?;
        let a = argv(&[
            "uftp",
            "-I",
            "lo",
            "-U",
            &uftp_id(ORIGIN_ADDR),
            "-R",
            &kbit,
            "-H",
            &format!("@{}", hosts.display()),
            "-j",
            &proxies.to_string_lossy(),
            folder,
        ]);
        commands.push(format!(
            "(in {}) {}",
            lab.origin_root().display(),
            shown(&hq, &a)
        ));
        let tx = procs.spawn_in(&hq, &a, &log, &lab.origin_root())?;
        let mut ended: Option<Instant> = None;
        loop {
            let now = Instant::now();
            left.retain(|&i| {
                let complete = i % lab.manifests().len() != m
                    || man.files.iter().all(|f| {
                        std::fs::metadata(dirs[i].join(&f.name)).is_ok_and(|md| md.len() == f.size)
                    });
                if complete && i % lab.manifests().len() == m {
                    done[i] = Some(start.elapsed().as_secs_f64());
                }
                !complete
            });
            if left.iter().all(|&i| i % lab.manifests().len() != m) || now > deadline {
                break;
            }
            if ended.is_none() && procs.poll(tx).is_some() {
                ended = Some(now);
            }
            // The server has said DONE to everyone; a phone that has not moved its files in
            // by then is not going to.
            if ended.is_some_and(|t| now > t + Duration::from_secs(3)) {
                note(&log, &format!("pfs: uftp server for {} ended", man.load));
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        note(
            &log,
            &format!(
                "pfs: {} done at {:.2} s",
                man.load,
                start.elapsed().as_secs_f64()
            ),
        );
    }
    Ok(Outcome {
        done,
        dirs,
        origin_bytes: None,
        commands,
    })
}

/// uftp's proxies: a client proxy on the site router multicasting on the bridge, a server
/// proxy in hq sending to it across the WAN. The file naming the client proxy to the server.
fn start_proxies(
    lab: &Lab,
    dir: &Path,
    procs: &mut Procs,
    commands: &mut Vec<String>,
) -> Result<PathBuf, LabError> {
    let hq = lab.site.hq.name();
    let router = lab.site.router.name();
    let log = dir.join("uftp.log");
    let proxy_id = uftp_id(crate::topology::ROUTER_WAN);
    let a = argv(&["uftpproxyd", "-c", "-d", "-U", &proxy_id, "-O", BRIDGE]);
    commands.push(shown(router, &a));
    let client_proxy = procs.spawn(router, &a, &log)?;
    let dest = crate::topology::ROUTER_WAN.to_string();
    let a = argv(&["uftpproxyd", "-s", &dest, "-d", "-I", "lo"]);
    commands.push(shown(hq, &a));
    let server_proxy = procs.spawn(hq, &a, &log)?;
    std::thread::sleep(Duration::from_millis(300));
    if procs.poll(client_proxy).is_some() || procs.poll(server_proxy).is_some() {
        return Err(LabError::Setup("uftpproxyd exited at start".into()));
    }
    let proxies = dir.join("proxies");
    std::fs::write(&proxies, format!("{proxy_id}\n"))
        .map_err(|e| LabError::Setup(format!("{proxies:?}: {e}")))?;
    Ok(proxies)
}

/// Power-on: every phone starts its receiver daemon. Where each phone's load arrives.
fn start_daemons(
    lab: &Lab,
    dir: &Path,
    procs: &mut Procs,
    commands: &mut Vec<String>,
) -> Result<Vec<PathBuf>, LabError> {
    let n = lab.config().phones;
    let log = dir.join("uftp.log");
    let mut dirs = Vec::with_capacity(n);
    for i in 0..n {
        let m = i % lab.manifests().len();
        let base = dir.join(format!("phone{i}"));
        let (dst, tmp) = (base.join("dest"), base.join("tmp"));
        for d in [&dst, &tmp] {
            std::fs::create_dir_all(d).map_err(|e| LabError::Setup(format!("{d:?}: {e}")))?;
        }
        dirs.push(dst.join(&lab.manifests()[m].1));
        // -T: files arrive in tmp and move to dest when the session completes.
        let a = argv(&[
            "uftpd",
            "-d",
            "-q",
            "-U",
            &uftp_id(lab.site.phone_addrs[i]),
            "-I",
            PHONE_IFACE,
            "-D",
            &dst.to_string_lossy(),
            "-T",
            &tmp.to_string_lossy(),
        ]);
        let ns = lab.site.phones[i].name().to_owned();
        if i == 0 {
            commands.push(shown(&ns, &a));
        }
        procs.spawn(&ns, &a, &log)?;
    }
    Ok(dirs)
}

/// The file naming model `m`'s `phones` (their uftp ids), for the server's `-H`.
fn write_hosts(lab: &Lab, dir: &Path, m: usize, phones: &[usize]) -> Result<PathBuf, LabError> {
    let hosts = dir.join(format!("hosts-{m}"));
    let ids: String = phones
        .iter()
        .map(|&i| uftp_id(lab.site.phone_addrs[i]) + "\n")
        .collect();
    std::fs::write(&hosts, ids).map_err(|e| LabError::Setup(format!("{hosts:?}: {e}")))?;
    Ok(hosts)
}
