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
    path::Path,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

/// What tcpdump said when it stopped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CaptureStats {
    pub captured: u64,
    pub dropped_by_kernel: u64,
}

/// A running tcpdump (stopped, and its summary read, by [`Capture::stop`]; killed on drop).
pub struct Capture {
    child: Option<Child>,
    lines: mpsc::Receiver<String>,
}

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

    /// Stops tcpdump (SIGINT: it flushes the file) and returns its counts.
    pub fn stop(mut self) -> std::io::Result<CaptureStats> {
        // What the phones last sent may still be on its way through the veths.
        std::thread::sleep(Duration::from_millis(300));
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
