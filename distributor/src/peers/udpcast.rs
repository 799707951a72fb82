//! udpcast (`udp-sender` / `udp-receiver`): one site host fetches the load, then multicasts it.

use super::*;

/// Where udp-sender and udp-receivers find each other: the phones' addresses have no
/// broadcast address (as `ip addr add` leaves them), so the all-hosts group on the LAN.
const RDV: &str = "224.0.0.1";

pub(super) fn udpcast(
    lab: &Lab,
    dir: &Path,
    procs: &mut Procs,
    start: &mut Instant,
) -> Result<Outcome, LabError> {
    *start = Instant::now();
    let start = *start;
    let deadline = start + lab.config().deadline;
    let n = lab.config().phones;
    let router = lab.site.router.name().to_owned();
    let log = dir.join("udpcast.log");
    let mut commands = vec![format!(
        "stage 1, in {router}: pfs's TFTP client (windowed, as a pfs root) fetches each model's \
         load from tftp://{ORIGIN_ADDR}/<load folder> into the router's store"
    )];
    // Stage 1: the site host fetches every model's load across the WAN.
    let (origin_bytes, sources) = fetch_at_site(lab, dir)?;
    // Stage 2: one multicast session per file, to every phone of its model at once.
    let rate = lab.config().lan_mbit.map(|m| ((m * 0.95) as u64).max(1));
    let mut done = vec![None; n];
    let mut missed = vec![false; n];
    let dirs: Vec<PathBuf> = (0..n)
        .map(|i| {
            let m = &lab.manifests()[i % lab.manifests().len()].2;
            dir.join(format!("phone{i}")).join(&m.load)
        })
        .collect();
    for d in &dirs {
        std::fs::create_dir_all(d).map_err(|e| LabError::Setup(format!("{d:?}: {e}")))?;
    }
    let timeout = deadline
        .saturating_duration_since(Instant::now())
        .as_secs()
        .max(5)
        .to_string();
    for (m, (_, _, man)) in lab.manifests().iter().enumerate() {
        let phones = phones_of(lab, m);
        let portbase = (9000 + 2 * m).to_string();
        // One session for the whole load, as a lab sends an image: a session costs a fixed
        // ~2.5 s of rendezvous and teardown (measured: 2.5 s for a 1 KiB file), so one per
        // file would charge udpcast 6 of them. The site host packs the fetched load with tar
        // (counted), each receiver unpacks it as it arrives.
        let tarball = dir.join(format!("load-{m}.tar"));
        pack(&tarball, &sources[m], man)?;
        commands.push(format!(
            "in {router}: tar cf {} -C {} <the manifest's files>",
            tarball.display(),
            sources[m].display()
        ));
        let count = phones.len().to_string();
        let a = sender_argv(&portbase, &timeout, &count, &tarball, rate);
        commands.push(shown(&router, &a));
        // The sender first, as a lab scripts it: it waits for every receiver, and each
        // receiver's first hello finds it listening.
        let tx = procs.spawn(&router, &a, &log)?;
        std::thread::sleep(Duration::from_millis(20));
        let mut rx = Vec::new();
        for &i in &phones {
            let unpack = format!("tar x -C {}", dirs[i].display());
            let a = receiver_argv(&portbase, &timeout, &unpack);
            let ns = lab.site.phones[i].name().to_owned();
            if i == phones[0] {
                commands.push(shown(&ns, &a));
            }
            rx.push((i, procs.spawn(&ns, &a, &log)?));
        }
        let t_file = Instant::now();
        wait_session(
            procs,
            (tx, &mut rx),
            (start, deadline),
            (&mut done, &mut missed),
            &man.load,
        )?;
        note(
            &log,
            &format!(
                "pfs: {} took {:.2} s",
                man.load,
                t_file.elapsed().as_secs_f64()
            ),
        );
    }
    // A phone that missed an earlier file is not complete either.
    for (d, bad) in done.iter_mut().zip(&missed) {
        if *bad {
            *d = None;
        }
    }
    Ok(Outcome {
        done,
        dirs,
        origin_bytes: Some(origin_bytes),
        commands,
    })
}

/// Stage 1: the site host (the router) fetches every model's load across the WAN with pfs's
/// TFTP client. The bytes fetched and each model's fetched load directory.
fn fetch_at_site(lab: &Lab, dir: &Path) -> Result<(u64, Vec<PathBuf>), LabError> {
    let mut origin_bytes = 0;
    let mut sources = Vec::new();
    for (m, (_, folder, man)) in lab.manifests().iter().enumerate() {
        let store = crate::store::Store::new(&dir.join(format!("site-{m}")));
        let folder = folder.clone();
        let s2 = store.clone();
        let rep = lab
            .site
            .router
            .run(move || {
                crate::fetch::fetch_load(
                    (ORIGIN_ADDR, 69).into(),
                    &folder,
                    &s2,
                    None,
                    crate::tftp::client::ClientConfig::default(),
                )
            })?
            .map_err(|e| LabError::Setup(format!("udpcast stage 1 (WAN fetch): {e}")))?;
        origin_bytes += rep.bytes;
        sources.push(store.load_dir(&man.load));
    }
    Ok((origin_bytes, sources))
}

/// Packs the manifest's files of the fetched load in `source` into `tarball`.
fn pack(tarball: &Path, source: &Path, man: &crate::manifest::Manifest) -> Result<(), LabError> {
    let packed = Command::new("tar")
        .arg("cf")
        .arg(tarball)
        .arg("-C")
        .arg(source)
        .args(man.files.iter().map(|f| f.name.as_str()))
        .status()
        .map_err(|e| LabError::Setup(format!("tar: {e}")))?;
    if !packed.success() {
        return Err(LabError::Setup(
            "tar could not pack the fetched load".into(),
        ));
    }
    Ok(())
}

/// udp-sender of `file` on the bridge, once `count` receivers joined (or `timeout` seconds),
/// at `rate` Mbit/s when given.
fn sender_argv(
    portbase: &str,
    timeout: &str,
    count: &str,
    file: &Path,
    rate: Option<u64>,
) -> Vec<String> {
    let mut a = session_argv("udp-sender", BRIDGE, portbase);
    a.extend(argv(&[
        "--min-receivers",
        count,
        "--max-wait",
        timeout,
        "--file",
        &file.to_string_lossy(),
    ]));
    if let Some(mbit) = rate {
        a.extend(argv(&["--max-bitrate", &format!("{mbit}m")]));
    }
    a
}

/// udp-receiver on a phone's port, piping what arrives to `unpack`.
fn receiver_argv(portbase: &str, timeout: &str, unpack: &str) -> Vec<String> {
    let mut a = session_argv("udp-receiver", PHONE_IFACE, portbase);
    a.extend(argv(&[
        "--start-timeout",
        timeout,
        "--receive-timeout",
        "30",
        "--pipe",
        unpack,
    ]));
    a
}

/// What udp-sender and udp-receiver both take: the interface, the session's ports and
/// rendezvous group, no keyboard and no progress output.
fn session_argv(prog: &str, iface: &str, portbase: &str) -> Vec<String> {
    argv(&[
        prog,
        "--interface",
        iface,
        "--portbase",
        portbase,
        "--mcast-rdv-address",
        RDV,
        "--nokbd",
        "--no-progress",
    ])
}

/// Waits for the sender `tx` and every receiver of `rx` (phone, process) of `load` to end,
/// noting each phone's completion (seconds since `start`) in `done` and a failed receiver in
/// `missed`. An error, saying how far the session got, when every receiver failed or at
/// `deadline`.
fn wait_session(
    procs: &mut Procs,
    (tx, rx): (usize, &mut [(usize, usize)]),
    (start, deadline): (Instant, Instant),
    (done, missed): (&mut [Option<f64>], &mut [bool]),
    load: &str,
) -> Result<(), LabError> {
    let mut sender_done = false;
    let mut left = rx.len();
    let mut failed = 0;
    while left > 0 || !sender_done {
        if failed == rx.len() || Instant::now() > deadline {
            return Err(LabError::Setup(format!(
                "udpcast: of {} receivers of {}, {failed} failed and {left} still ran \
                 at the end (sender done: {sender_done})",
                rx.len(),
                load
            )));
        }
        if !sender_done && procs.poll(tx).is_some() {
            sender_done = true;
        }
        left -= poll_ended(procs, rx, |i, ok| {
            // The last file's end is the phone's completion; a failed receiver leaves the
            // phone incomplete (and its bytes unverified).
            done[i] = ok.then(|| start.elapsed().as_secs_f64());
            missed[i] |= !ok;
            failed += usize::from(!ok);
        });
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}
