//! pfs-proto: the sans-IO protocol core of pfs and the simulator that drives it.
//!
//! Codecs and state machines take `(now, event)` and return actions; nothing here opens a
//! socket, reads a clock, starts a thread or draws unseeded randomness (the dependency list
//! says so: no io-uring, aya, clap or libc). Two drivers use it through one contract
//! (`docs/ARCHITECTURE.md`): the simulator in [`sim`] and the engine runtime in the `pfs` crate.

pub mod election;
pub mod ids;
pub mod phone;
pub mod sim;
pub mod tftp;
pub mod time;
pub mod tree;
pub mod wire;
