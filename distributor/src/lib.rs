//! pfs: peer firmware sharing.
//!
//! Layering (imports point one way): protocol core <- engine / simulator <- CLI. This crate is
//! the library behind the `pfs` binary; `src/main.rs` is only argument parsing and output.

pub mod demo;
pub mod netns;
pub mod traffic;
pub mod wire;
pub mod xdp;
