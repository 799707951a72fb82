//! Cisco `.loads` files and the signed headers of firmware components (see docs/loads.md):
//! every parser is total over arbitrary bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pfs::loads;

fuzz_target!(|data: &[u8]| {
    let _ = loads::parse_loads_file(data);
    let _ = loads::parse_signed_header(data);
    let _ = loads::parse_body(data);
    let _ = pfs::manifest::parse_loads(data);
});
