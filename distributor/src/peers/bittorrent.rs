//! BitTorrent: opentracker and a seeding aria2c in hq, an aria2c leecher per phone.

use super::*;

const TRACKER_PORT: u16 = 6969;

pub(super) fn bittorrent(
    lab: &Lab,
    dir: &Path,
    procs: &mut Procs,
    start: &mut Instant,
) -> Result<Outcome, LabError> {
    let n = lab.config().phones;
    let hq = lab.site.hq.name().to_owned();
    let log = dir.join("bittorrent.log");
    let announce = format!("http://{ORIGIN_ADDR}:{TRACKER_PORT}/announce");
    let mut commands = Vec::new();
    // One torrent per model, of the origin's load folder (256 KiB pieces).
    let torrents = make_torrents(lab, dir, &announce, &mut commands)?;
    start_tracker(lab, dir, procs, &torrents, &mut commands)?;
    let timeout = lab.config().deadline.as_secs().max(5).to_string();
    let common = [
        "--enable-dht=false",
        "--enable-dht6=false",
        "--bt-enable-lpd=true",
        "--file-allocation=none",
        "--summary-interval=0",
        "--console-log-level=warn",
        "--allow-overwrite=true",
        "--auto-file-renaming=false",
        "--bt-tracker-connect-timeout=10",
        "--bt-tracker-interval=5",
        "--timeout=30",
    ];
    // The seed in hq: the origin's own files, hashed once before it seeds.
    let seed_dir = lab.origin_root();
    for t in &torrents {
        let mut a = argv(&["aria2c", "--check-integrity=true", "--seed-ratio=0.0"]);
        a.extend(argv(&common));
        a.push(format!("--dir={}", seed_dir.display()));
        a.push(format!("--stop={timeout}"));
        a.push(t.to_string_lossy().into_owned());
        commands.push(shown(&hq, &a));
        procs.spawn(&hq, &a, &log)?;
    }
    // Power-on: the tracker and the seed are up, as they would be at hq.
    *start = Instant::now();
    let start = *start;
    let deadline = start + lab.config().deadline;
    let mut done = vec![None; n];
    let mut dirs = Vec::with_capacity(n);
    let mut leechers = Vec::with_capacity(n);
    for i in 0..n {
        let m = i % lab.manifests().len();
        let out = dir.join(format!("phone{i}"));
        std::fs::create_dir_all(&out).map_err(|e| LabError::Setup(e.to_string()))?;
        dirs.push(out.join(&lab.manifests()[m].1));
        let mut a = argv(&["aria2c", "--seed-time=0"]);
        a.extend(argv(&common));
        a.push(format!("--bt-stop-timeout={timeout}"));
        a.push(format!("--stop={timeout}"));
        a.push(format!("--dir={}", out.display()));
        a.push(torrents[m].to_string_lossy().into_owned());
        let ns = lab.site.phones[i].name().to_owned();
        if i < lab.manifests().len() {
            commands.push(shown(&ns, &a));
        }
        leechers.push((i, procs.spawn(&ns, &a, &log)?));
    }
    let mut left = n;
    while left > 0 {
        if Instant::now() > deadline {
            break;
        }
        left -= poll_ended(procs, &mut leechers, |i, ok| {
            done[i] = ok.then(|| start.elapsed().as_secs_f64());
        });
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(Outcome {
        done,
        dirs,
        origin_bytes: None,
        commands,
    })
}

/// One torrent per model of the origin's load folder (256 KiB pieces, announced to
/// `announce`), written under `dir`.
fn make_torrents(
    lab: &Lab,
    dir: &Path,
    announce: &str,
    commands: &mut Vec<String>,
) -> Result<Vec<PathBuf>, LabError> {
    let mut torrents = Vec::new();
    for (m, (_, folder, _)) in lab.manifests().iter().enumerate() {
        let t = dir.join(format!("model{m}.torrent"));
        let src = lab.origin_root().join(folder);
        let a = argv(&[
            "mktorrent",
            "-l",
            "18",
            "-a",
            announce,
            "-o",
            &t.to_string_lossy(),
            &src.to_string_lossy(),
        ]);
        let st = Command::new(&a[0])
            .args(&a[1..])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|e| LabError::Setup(format!("mktorrent: {e}")))?;
        if !st.success() {
            return Err(LabError::Setup(format!(
                "mktorrent failed: {}",
                a.join(" ")
            )));
        }
        commands.push(a.join(" "));
        torrents.push(t);
    }
    Ok(torrents)
}

/// opentracker in hq, serving only `torrents`, up and listening.
fn start_tracker(
    lab: &Lab,
    dir: &Path,
    procs: &mut Procs,
    torrents: &[PathBuf],
    commands: &mut Vec<String>,
) -> Result<(), LabError> {
    let hq = lab.site.hq.name();
    let log = dir.join("bittorrent.log");
    // Debian's opentracker serves only the torrents its whitelist names (by info hash); it
    // chroots to -d, so the list is named relative to it (and to the working directory).
    let tracker_dir = dir.join("tracker");
    std::fs::create_dir_all(&tracker_dir).map_err(|e| LabError::Setup(e.to_string()))?;
    let mut hashes = String::new();
    for t in torrents {
        hashes.push_str(&info_hash(t)?);
        hashes.push('\n');
    }
    std::fs::write(tracker_dir.join("whitelist"), hashes)
        .map_err(|e| LabError::Setup(format!("the tracker's whitelist: {e}")))?;
    let port = TRACKER_PORT.to_string();
    let a = argv(&[
        "opentracker",
        "-i",
        &ORIGIN_ADDR.to_string(),
        "-p",
        &port,
        "-P",
        &port,
        "-d",
        &tracker_dir.to_string_lossy(),
        "-u",
        "nobody",
        "-w",
        "whitelist",
    ]);
    commands.push(format!("(in {}) {}", tracker_dir.display(), shown(hq, &a)));
    let tracker = procs.spawn_in(hq, &a, &log, &tracker_dir)?;
    wait_listening(lab, TRACKER_PORT, Duration::from_secs(5))?;
    if procs.poll(tracker).is_some() {
        return Err(LabError::Setup("opentracker exited at start".into()));
    }
    Ok(())
}

/// A torrent's info hash in hex, as `aria2c --show-files` prints it.
fn info_hash(torrent: &Path) -> Result<String, LabError> {
    let out = Command::new("aria2c")
        .arg("--show-files=true")
        .arg(torrent)
        .output()
        .map_err(|e| LabError::Setup(format!("aria2c --show-files: {e}")))?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.trim().strip_prefix("Info Hash: ").map(str::to_owned))
        .filter(|h| h.len() == 40)
        .ok_or_else(|| LabError::Setup(format!("no info hash in {}", torrent.display())))
}
