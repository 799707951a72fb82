//! The lab host's CPU, for runs that mirror `pfs lab` (`host_cores` > 0).
//!
//! Real phones each have their own CPU, so by default the simulator charges nothing for
//! relaying. `pfs lab` runs every phone on one host: two event loops (one per core) move
//! every byte through veths and a bridge, and at 1000 phones that host, not any link, is the
//! bottleneck (its `cpu_s` equals cores x makespan). This models that host as `host_cores`
//! servers taking chunk deliveries first come, first served, each costing its bytes at
//! `host_cpu_s_per_gb`, the cost `pfs lab` reports as `cpu_s_per_gb` (CPU seconds of the
//! lab process per GB delivered to phones).

use super::*;

/// The host's cores: when each is next free.
#[derive(Debug, Default)]
pub(super) struct Host {
    cores: Vec<Time>,
    /// Microseconds of CPU per byte delivered.
    us_per_byte: f64,
    /// CPU microseconds charged, for the report.
    pub(super) busy_us: f64,
}

impl Host {
    pub(super) fn new(cfg: &SimConfig) -> Host {
        Host {
            cores: vec![0; cfg.host_cores as usize],
            us_per_byte: cfg.host_cpu_s_per_gb * 1e6 / 1e9,
            busy_us: 0.0,
        }
    }

    /// When a delivery of `bytes` that is ready at `ready` has been handled by the host:
    /// on the core free soonest, after what that core already has (`ready` when every phone
    /// has its own CPU).
    pub(super) fn handle(&mut self, ready: Time, bytes: u64) -> Time {
        let Some(core) = self.cores.iter_mut().min() else {
            return ready;
        };
        let cost = bytes as f64 * self.us_per_byte;
        self.busy_us += cost;
        let start = ready.max(*core);
        *core = start + cost.ceil() as Time;
        *core
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deliveries_queue_on_the_soonest_free_core() {
        let cfg = SimConfig {
            host_cores: 2,
            host_cpu_s_per_gb: 1.0, // 1 µs per kB
            ..SimConfig::default()
        };
        let mut h = Host::new(&cfg);
        // Two 1 MB deliveries at t=0 run side by side; the third waits for a core.
        assert_eq!(h.handle(0, 1_000_000), 1000);
        assert_eq!(h.handle(0, 1_000_000), 1000);
        assert_eq!(h.handle(0, 1_000_000), 2000);
        // Ready after both cores are idle again: no wait.
        assert_eq!(h.handle(5000, 1_000_000), 6000);
        assert!((h.busy_us - 4000.0).abs() < 1e-6);
    }

    #[test]
    fn phones_with_their_own_cpu_cost_nothing() {
        let mut h = Host::new(&SimConfig::default());
        assert_eq!(h.handle(7, u64::MAX), 7);
    }
}
