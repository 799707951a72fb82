//! TFTP packets (RFC 1350, options RFC 2347/2348/2349/7440) and netascii (RFC 764): the
//! decoder is total; an accepted request re-encodes to one that decodes to the same fields;
//! netascii decoding never grows the data and undoes encoding.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pfs_proto::tftp::{netascii, packet};

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = packet::decode(data) {
        if let packet::Packet::Rrq { filename, mode, options } = p {
            let again = packet::request_in_mode(true, filename, mode, &options);
            match packet::decode(&again) {
                Ok(packet::Packet::Rrq { filename: f2, mode: m2, options: o2 }) => {
                    assert_eq!((f2, m2), (filename, mode));
                    assert_eq!(o2, options);
                }
                other => panic!("re-encoded RRQ decodes as {other:?}"),
            }
        }
    }
    let decoded = netascii::decode(data);
    assert!(decoded.len() <= data.len());
    assert_eq!(netascii::decode(&netascii::encode(data)), data);
    assert_eq!(netascii::encoded_len(data), netascii::encode(data).len() as u64);
});
