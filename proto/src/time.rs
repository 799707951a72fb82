//! Time in the core: microseconds since the driver's epoch (a phone's boot in the runtime, the
//! start of the run in the simulator). The core never reads a clock; drivers pass `now`.

/// Microseconds since the driver's epoch; never goes backwards within one driver.
pub type Time = u64;
