//! pfs: peer firmware sharing.
//!
//! Layering (imports point one way): protocol core <- engine / simulator <- CLI. This crate is
//! the library behind the `pfs` binary; `src/main.rs` is only argument parsing and output.

pub mod capture;
pub mod delayline;
pub mod demo;
pub mod engine;
pub mod faults;
pub mod fetch;
pub mod fleet;
pub mod fleetnet;
pub mod http;
pub mod lab;
pub mod loads;
pub mod manifest;
pub mod metrics;
pub mod netns;
pub mod origin;
pub mod peer;
pub mod peers;
pub mod phoneconfig;
pub mod report;
pub mod store;
pub mod topology;
pub mod traffic;
pub mod xdp;

// The sans-IO core lives in its own crate (`proto/`); re-exported so `pfs::phone` etc. name it.
pub use pfs_proto::{election, phone, sim, tftp, tree, wire};
