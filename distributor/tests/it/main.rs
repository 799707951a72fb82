//! pfs's integration tests: one binary (the suite links once), a module per subject.
//!
//! Tests of one module run in parallel with each other, never beside another module's
//! ([`common::group`]): each module was its own binary before and its timings (lab makespans,
//! real servers on fixed ports) assume as much.

mod blksize_netns;
mod common;
mod deb_package;
mod engine;
mod fleet_loopback;
mod fleet_netns;
mod fleet_sharing;
mod http_interop;
mod http_origin;
mod lab_faults_netns;
mod lab_http;
mod lab_manifest_netns;
mod lab_netns;
mod lab_wan_rtt_netns;
mod load_cli;
mod load_fetch;
mod metrics_prometheus;
mod peer_netns;
mod peers_netns;
mod real_configs;
mod real_files;
mod report_svg;
mod simulate_cli;
mod tftp_cases;
mod tftp_interop;
mod wireshark;
mod xdp_netns;
mod xdp_prog;
