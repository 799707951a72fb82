//! `pfs lab --pcap FILE`: tcpdump on the site bridge, port 4051 only (elections and chunk
//! streams; TFTP to the origin is left out).
//!
//! The capture runs on `br0` in the router namespace. tcpdump puts the bridge in promiscuous
//! mode, so the bridge hands every frame it forwards up once, as it arrives from the sending
//! phone's port: a broadcast `Advert` is captured once (not once per port it is flooded to),
//! and a unicast frame between two phones once. That is what the phones' `messages_sent`
//! counts: one per message sent.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

/// What tcpdump said when it stopped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CaptureStats {
    /// Frames written to the file.
    pub captured: u64,
    /// Frames that passed the filter (on Linux this includes the kernel's drops:
    /// `PACKET_STATISTICS` adds `tp_drops` to `tp_packets`).
    pub received_by_filter: u64,
    /// Frames the kernel dropped because tcpdump's ring was full.
    pub dropped_by_kernel: u64,
}

impl CaptureStats {
    /// Frames that passed the filter but are not in the file: dropped by the kernel, or still
    /// in the ring when tcpdump stopped (tcpdump counts neither as captured).
    pub fn lost(&self) -> u64 {
        self.received_by_filter
            .saturating_sub(self.captured)
            .max(self.dropped_by_kernel)
    }
}

/// A running tcpdump (stopped, and its summary read, by [`Capture::stop`]; killed on drop).
pub struct Capture {
    child: Option<Child>,
    lines: mpsc::Receiver<String>,
    file: PathBuf,
}

/// How long the file must stop growing before tcpdump is taken to have caught up.
const SETTLED: Duration = Duration::from_millis(750);
/// The most [`Capture::stop`] waits for that.
const DRAIN_LIMIT: Duration = Duration::from_secs(15);

/// The capture filter: pfs traffic only.
pub const FILTER: &str = "port 4051";

impl Capture {
    /// Starts tcpdump on `iface` in namespace `netns`, writing `file`, `snaplen` bytes of each
    /// frame (0: whole frames, which the dissector needs to follow chunk streams); returns
    /// once tcpdump is listening.
    pub fn start(netns: &str, iface: &str, file: &Path, snaplen: u32) -> std::io::Result<Capture> {
        let mut child = Command::new("ip")
            .args(["netns", "exec", netns, "tcpdump", "-i", iface])
            // --immediate-mode: hand each packet over at once (else the tail of the run waits
            // in the kernel's ring for a block timeout, and is lost when tcpdump stops);
            // -U: write it at once; -Z root: keep writing where root asked to.
            // -B: a 64 MiB kernel buffer, so a busy host does not drop the run's bursts.
            .args(["--immediate-mode", "-U", "-n", "-Z", "root", "-B", "65536"])
            .args(["-s", &snaplen.to_string(), "-w"])
            .arg(file)
            .arg(FILTER)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                std::io::Error::new(e.kind(), format!("tcpdump (apt-get install tcpdump): {e}"))
            })?;
        let stderr = child.stderr.take().expect("piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let cap = Capture {
            child: Some(child),
            lines,
            file: file.to_owned(),
        };
        // Bounded: tcpdump says "listening on" within a second or fails.
        let mut said = Vec::new();
        loop {
            match cap.lines.recv_timeout(Duration::from_secs(10)) {
                Ok(l) if l.contains("listening on") => return Ok(cap),
                Ok(l) => said.push(l),
                Err(_) => {
                    return Err(std::io::Error::other(format!(
                        "tcpdump did not start capturing on {iface} in {netns}: {}",
                        said.join("; ")
                    )));
                }
            }
        }
    }

    /// Stops tcpdump (SIGINT: it flushes the file) once it has caught up, and returns its
    /// counts.
    ///
    /// tcpdump writes each frame as it reads it from the kernel's ring (`-U`), but on a busy
    /// host it may lag the run by a second or more, and what is still in the ring at SIGINT
    /// never reaches the file (nor tcpdump's "dropped" count). So this waits until the file
    /// has not grown for [`SETTLED`] (at most [`DRAIN_LIMIT`]); [`CaptureStats::lost`] counts
    /// whatever it still missed.
    pub fn stop(mut self) -> std::io::Result<CaptureStats> {
        let started = Instant::now();
        let size = || std::fs::metadata(&self.file).map_or(0, |m| m.len());
        let (mut last, mut since) = (size(), Instant::now());
        while since.elapsed() < SETTLED && started.elapsed() < DRAIN_LIMIT {
            std::thread::sleep(Duration::from_millis(50));
            let now = size();
            if now != last {
                (last, since) = (now, Instant::now());
            }
        }
        let mut child = self.child.take().expect("running");
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
        let mut stats = CaptureStats::default();
        let number = |l: &str| -> u64 {
            l.split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0)
        };
        while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(10)) {
            if l.ends_with("packets captured") {
                stats.captured = number(&l);
            } else if l.ends_with("packets received by filter") {
                stats.received_by_filter = number(&l);
            } else if l.ends_with("packets dropped by kernel") {
                stats.dropped_by_kernel = number(&l);
            }
        }
        child.wait()?;
        Ok(stats)
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
