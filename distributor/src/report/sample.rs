//! Samples an interface's tx byte counter inside a network namespace while a run goes on.
//!
//! A thread enters the namespace and reads `/proc/thread-self/net/dev` (the counters of the
//! thread's own network namespace, the same the kernel shows in `ip -s link`) every interval:
//! no process is spawned per sample.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use super::WanSample;

/// A running sampler; [`Sampler::stop`] ends it and returns the readings.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Vec<(Instant, u64)>>>,
    /// Where the readings come from, for the report.
    pub source: String,
}

/// The tx byte counter of `iface` in a `/proc/net/dev` text.
pub fn tx_bytes(net_dev: &str, iface: &str) -> Option<u64> {
    net_dev.lines().skip(2).find_map(|l| {
        let (name, rest) = l.split_once(':')?;
        if name.trim() != iface {
            return None;
        }
        // Receive: bytes packets errs drop fifo frame compressed multicast; then transmit.
        rest.split_whitespace().nth(8)?.parse().ok()
    })
}

impl Sampler {
    /// Starts sampling `iface` in namespace `netns` every `every`, for at most `max` (bounded
    /// even if never stopped).
    pub fn start(netns: &str, iface: &str, every: Duration, max: Duration) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let source = format!(
            "tx_bytes of {iface} in namespace {netns} (/proc/net/dev), every {} ms",
            every.as_millis()
        );
        let (ns, dev, flag) = (netns.to_owned(), iface.to_owned(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("wan-sampler".into())
            .spawn(move || {
                let mut out = Vec::new();
                if let Err(e) = crate::netns::enter(&ns) {
                    tracing::warn!(%e, "WAN sampler could not enter {ns}: no throughput plot");
                    return out;
                }
                let t0 = Instant::now();
                let limit = (max.as_secs_f64() / every.as_secs_f64().max(1e-3)) as usize + 1;
                while !flag.load(Ordering::Relaxed) && out.len() < limit {
                    let now = Instant::now();
                    if let Some(b) = std::fs::read_to_string("/proc/thread-self/net/dev")
                        .ok()
                        .and_then(|s| tx_bytes(&s, &dev))
                    {
                        out.push((now, b));
                    }
                    let next = t0 + every * out.len().max(1) as u32;
                    std::thread::sleep(next.saturating_duration_since(Instant::now()));
                }
                if let Some(b) = std::fs::read_to_string("/proc/thread-self/net/dev")
                    .ok()
                    .and_then(|s| tx_bytes(&s, &dev))
                {
                    out.push((Instant::now(), b));
                }
                out
            })
            .ok();
        if thread.is_none() {
            tracing::warn!("could not start the WAN sampler: no throughput plot");
        }
        Sampler {
            stop,
            thread,
            source,
        }
    }

    /// Stops sampling; returns the readings with times relative to `start` and bytes relative
    /// to the first reading.
    pub fn stop(mut self, start: Instant) -> Vec<WanSample> {
        self.stop.store(true, Ordering::Relaxed);
        let raw = self
            .thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default();
        let b0 = raw.first().map_or(0, |&(_, b)| b);
        raw.into_iter()
            .map(|(at, b)| WanSample {
                t_s: if at >= start {
                    at.duration_since(start).as_secs_f64()
                } else {
                    -start.duration_since(at).as_secs_f64()
                },
                tx_bytes: b.saturating_sub(b0),
            })
            .collect()
    }
}

impl Drop for Sampler {
    /// A run that failed midway drops its sampler: the thread ends within one interval.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_tx_bytes_from_proc_net_dev() {
        let text = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:     100       1    0    0    0     0          0         0      200       2    0    0    0     0       0          0
  wan0: 5000000    4000    0    0    0     0          0         0 987654321  700000    0    0    0     0       0          0
";
        assert_eq!(tx_bytes(text, "wan0"), Some(987_654_321));
        assert_eq!(tx_bytes(text, "lo"), Some(200));
        assert_eq!(tx_bytes(text, "eth0"), None);
    }

    #[test]
    fn samples_this_namespace_when_asked_for_our_own() {
        // Reading our own namespace's loopback needs no privilege: the parser meets the kernel.
        let s = std::fs::read_to_string("/proc/thread-self/net/dev").unwrap();
        assert!(tx_bytes(&s, "lo").is_some(), "{s}");
    }
}
