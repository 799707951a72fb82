//! Empty library target: lets `distributor` depend on this crate at build time.
#![no_std]
