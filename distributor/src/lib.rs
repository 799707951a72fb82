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
pub mod netstat;
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

/// An error and its causes, `: `-joined, leaving out a cause whose text the message before it
/// already says (an error that prints its source, like an `io::Error` wrapped with a path,
/// would otherwise show it twice). What the CLI prints for any failure.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = String::new();
    let mut next = Some(err);
    while let Some(cause) = next {
        let text = cause.to_string();
        if !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
        next = cause.source();
    }
    out
}
