//! UDP wire messages (adverts, joins, accepts, leases): `wire::decode` is total, and whatever
//! it accepts encodes back to a message that decodes to the same value.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pfs_proto::wire;

fuzz_target!(|data: &[u8]| {
    let _ = wire::decode_header(data);
    if let Ok(m) = wire::decode(data) {
        let _ = m.name();
        let bytes = m.encode().expect("a decoded message encodes");
        assert_eq!(wire::decode(&bytes).expect("re-decodes"), m);
    }
});
