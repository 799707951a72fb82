//! pfs-proto's integration tests: one binary, a module per subject.

mod protocol_doc;
mod simulate;
