//! TCP stream frames (chunks relayed parent to child): `chunk_view` is total, never reads
//! past the frame, and agrees with the general decoder.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pfs_proto::wire;

fuzz_target!(|data: &[u8]| {
    if let Ok((_h, _off, _have, payload)) = wire::chunk_view(data) {
        assert!(payload.len() <= data.len());
        assert!(wire::decode(data).is_ok(), "chunk_view accepted what decode refuses");
    }
    if let Ok((_code, len)) = wire::decode_header(data) {
        let _ = wire::decode(&data[..len.min(data.len())]);
    }
});
