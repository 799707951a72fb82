//! `SEP<MAC>.cnf.xml` phone configurations (quick-xml): parsing is total, and a parsed
//! configuration renders to XML that parses to the same configuration.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pfs::phoneconfig;

fuzz_target!(|data: &[u8]| {
    let _ = phoneconfig::read_cnf_xml(data);
    if let Ok(c) = phoneconfig::parse_cnf_xml(data) {
        let xml = phoneconfig::render_cnf_xml(&c);
        let again = phoneconfig::parse_cnf_xml(xml.as_bytes()).expect("rendered XML parses");
        assert_eq!(format!("{again:?}"), format!("{c:?}"));
    }
});
