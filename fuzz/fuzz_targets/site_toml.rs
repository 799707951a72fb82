//! The site file (`pfs config`, TOML): parsing and validation are total over any text.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = pfs::phoneconfig::SiteConfig::parse(text);
    }
});
