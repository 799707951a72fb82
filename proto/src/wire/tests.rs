#[test]
fn chunk_head_matches_encode() {
    let data = vec![7u8; 1000];
    let full = Message::Chunk {
        hierarchy: HierarchyId(0x0102_0304_0506_0708),
        offset: 65536,
        have: 131072,
        data: data.clone(),
    }
    .encode()
    .unwrap();
    let head = chunk_head(
        HierarchyId(0x0102_0304_0506_0708),
        65536,
        131072,
        data.len(),
    );
    assert_eq!(&full[..head.len()], &head[..]);
    assert_eq!(&full[head.len()..], &data[..]);
}

use super::*;
use proptest::prelude::*;

proptest! {
    #[test]
    fn chunk_view_agrees_with_decode(h: u64, off: u64, have: u64, data in proptest::collection::vec(any::<u8>(), 0..300)) {
        let h = HierarchyId(h);
        let m = Message::Chunk { hierarchy: h, offset: off, have, data: data.clone() };
        let bytes = m.encode().unwrap();
        let (a, b, c, d) = chunk_view(&bytes).unwrap();
        prop_assert_eq!((a, b, c, d), (h, off, have, &data[..]));
    }

    #[test]
    fn chunk_view_is_total(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = chunk_view(&bytes);
    }
}

fn key() -> impl Strategy<Value = HierarchyKey> {
    (
        "[A-Z0-9-]{1,32}",
        "[A-Za-z0-9._-]{1,64}",
        proptest::array::uniform32(any::<u8>()),
    )
        .prop_map(|(model, file, digest)| HierarchyKey {
            model,
            file,
            digest,
        })
}

fn tier() -> impl Strategy<Value = Tier> {
    prop_oneof![
        Just(Tier::Tentative),
        Just(Tier::Fetching),
        Just(Tier::Confirmed)
    ]
}

/// Any Advert.
fn advert() -> impl Strategy<Value = Message> {
    (
        key(),
        any::<u32>(),
        any::<u64>(),
        tier(),
        any::<u32>(),
        any::<u8>(),
        any::<u8>(),
        any::<u32>(),
    )
        .prop_map(
            |(key, xid, strength, tier, seq, depth, free_slots, verified)| Message::Advert {
                key,
                xid,
                strength,
                tier,
                seq,
                depth,
                free_slots,
                verified,
            },
        )
}

fn exclusion() -> impl Strategy<Value = Exclusion> {
    prop_oneof![
        Just(Exclusion::Dead),
        Just(Exclusion::Corrupt),
        Just(Exclusion::Slow),
    ]
}

/// Any Join, excluding up to 8 peers, each with its reason.
fn join() -> impl Strategy<Value = Message> {
    (
        key(),
        any::<u32>(),
        any::<u8>(),
        any::<u32>(),
        any::<u32>(),
        proptest::collection::vec((any::<u32>().prop_map(PeerId), exclusion()), 0..=8),
    )
        .prop_map(
            |(key, xid, max_children, link_kbit, verified, exclude)| Message::Join {
                key,
                xid,
                max_children,
                link_kbit,
                verified,
                exclude,
            },
        )
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        advert(),
        join(),
        (
            key(),
            any::<u32>(),
            any::<u32>().prop_map(PeerId),
            any::<u16>(),
            any::<u8>()
        )
            .prop_map(|(key, xid, parent, port, depth)| Message::Accept {
                key,
                xid,
                parent,
                port,
                depth
            }),
        (key(), any::<u32>(), any::<u8>()).prop_map(|(key, xid, reason)| Message::Reject {
            key,
            xid,
            reason
        }),
        (key(), any::<u32>(), any::<u8>()).prop_map(|(key, xid, reason)| Message::Leave {
            key,
            xid,
            reason
        }),
        (key(), any::<u32>(), any::<u32>()).prop_map(|(key, xid, verified)| Message::Heartbeat {
            key,
            xid,
            verified
        }),
        (key(), any::<u32>(), any::<u8>()).prop_map(|(key, xid, op)| Message::Lease {
            key,
            xid,
            op
        }),
        (
            any::<u64>().prop_map(HierarchyId),
            any::<u64>(),
            any::<u32>()
        )
            .prop_map(|(hierarchy, offset, xid)| {
                Message::Request {
                    hierarchy,
                    offset,
                    xid,
                }
            }),
        (
            any::<u64>().prop_map(HierarchyId),
            any::<u64>(),
            any::<u64>(),
            proptest::collection::vec(any::<u8>(), 0..2048)
        )
            .prop_map(|(hierarchy, offset, have, data)| Message::Chunk {
                hierarchy,
                offset,
                have,
                data
            }),
        (any::<u64>().prop_map(HierarchyId), any::<u64>()).prop_map(|(hierarchy, verified)| {
            Message::Have {
                hierarchy,
                verified,
            }
        }),
        (any::<u16>(), "[ -~]{0,256}").prop_map(|(code, message)| Message::Error { code, message }),
    ]
}

proptest! {
    #[test]
    fn round_trip(msg in message()) {
        let bytes = msg.encode().expect("encodable");
        prop_assert_eq!(decode(&bytes), Ok(msg));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let _ = decode(&bytes);
    }

    #[test]
    fn valid_header_with_random_body_never_panics(
        type_code in prop_oneof![1u8..=6, 0x10u8..=0x13],
        body in proptest::collection::vec(any::<u8>(), 0..1100),
    ) {
        let mut bytes = vec![b'P', b'F', VERSION, type_code];
        bytes.extend_from_slice(&(body.len() as u32).to_be_bytes());
        bytes.extend_from_slice(&body);
        let _ = decode(&bytes);
    }

    #[test]
    fn every_strict_prefix_is_truncated(msg in message()) {
        let bytes = msg.encode().expect("encodable");
        for cut in 0..bytes.len() {
            prop_assert!(decode(&bytes[..cut]).is_err());
        }
    }
}

#[test]
fn typed_errors() {
    let msg = Message::Have {
        hierarchy: HierarchyId(1),
        verified: 2,
    };
    let good = msg.encode().unwrap();
    let mut bad = good.clone();
    bad[0] = b'X';
    assert!(matches!(decode(&bad), Err(DecodeError::BadMagic(_))));
    let mut bad = good.clone();
    bad[2] = 9;
    assert_eq!(decode(&bad), Err(DecodeError::BadVersion(9)));
    let mut bad = good.clone();
    bad[3] = 0x7f;
    assert_eq!(decode(&bad), Err(DecodeError::UnknownType(0x7f)));
    let mut bad = good.clone();
    bad[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(matches!(decode(&bad), Err(DecodeError::TooLong { .. })));
    let mut bad = good.clone();
    bad.push(0);
    assert_eq!(decode(&bad), Err(DecodeError::TrailingBytes(1)));
    // A body shorter than its type needs, with a length that says so.
    let short = [b'P', b'F', VERSION, 0x12, 0, 0, 0, 3, 1, 2, 3];
    assert!(matches!(decode(&short), Err(DecodeError::Truncated { .. })));
}

/// A key with these names (checked only when encoded) and a zero digest.
fn named_key(model: &str, file: &str) -> HierarchyKey {
    HierarchyKey {
        model: model.into(),
        file: file.into(),
        digest: [0; 32],
    }
}

/// Every exclusion's reason crosses the wire as itself (the root places by it), and a code no
/// version defines is a typed error, not read as some reason.
#[test]
fn join_exclusions_carry_their_reason() {
    let key = named_key("m", "f");
    let exclude = vec![
        (PeerId(1), Exclusion::Dead),
        (PeerId(2), Exclusion::Corrupt),
        (PeerId(3), Exclusion::Slow),
    ];
    let msg = Message::Join {
        key,
        xid: 1,
        max_children: 2,
        link_kbit: 1000,
        verified: 0,
        exclude,
    };
    let good = msg.encode().unwrap();
    assert_eq!(decode(&good), Ok(msg));
    // The last byte is the third exclusion's reason.
    assert_eq!(good[good.len() - 1], 2);
    for code in [3u8, 0x80, 0xff] {
        let mut bad = good.clone();
        *bad.last_mut().unwrap() = code;
        assert!(
            matches!(
                decode(&bad),
                Err(DecodeError::BadField {
                    field: "exclude_reason",
                    ..
                })
            ),
            "code {code}"
        );
    }
}

#[test]
fn invalid_keys_are_refused_not_truncated() {
    let key = named_key;
    for bad in [
        key("", "f"),
        key(&"M".repeat(33), "f"),
        key("m", &"f".repeat(65)),
        key("m\n", "f"),
    ] {
        let msg = Message::Leave {
            key: bad,
            xid: 1,
            reason: 0,
        };
        assert!(matches!(msg.encode(), Err(DecodeError::BadField { .. })));
    }
}

#[test]
fn hierarchy_ids_differ_by_model_file_and_digest() {
    let a = HierarchyKey {
        model: "CP-7961G".into(),
        file: "apps41.9-4-2ES26.sbn".into(),
        digest: [1; 32],
    };
    let mut b = a.clone();
    b.model = "CP-7941G".into();
    let mut c = a.clone();
    c.digest[0] = 2;
    assert_ne!(a.id(), b.id());
    assert_ne!(a.id(), c.id());
    assert_eq!(a.id(), a.clone().id());
}
