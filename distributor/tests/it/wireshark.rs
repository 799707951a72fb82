//! The Wireshark dissector (`contrib/wireshark/pfs.lua`) under tshark: it decodes every message
//! type with every field named as `docs/protocol.md` names it, and on a `pfs lab --pcap`
//! capture its counts per message type equal the phones' own `messages_sent`.

use crate::common;

use std::{collections::BTreeMap, net::Ipv4Addr, path::Path, process::Command};

use pfs::wire::{Exclusion, HierarchyId, HierarchyKey, Message, PeerId, Tier};

const DISSECTOR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../contrib/wireshark/pfs.lua");
const PROTOCOL: &str = include_str!("../../../docs/protocol.md");

/// tshark with the dissector on `pcap`; panics on a Lua error.
fn tshark(pcap: &Path, args: &[&str]) -> String {
    let out = Command::new("tshark")
        .arg("-X")
        .arg(format!("lua_script:{DISSECTOR}"))
        .arg("-r")
        .arg(pcap)
        .args(args)
        .output()
        .expect("run tshark");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "tshark failed: {err}");
    assert!(
        !err.contains("Lua") && !err.contains("lua:"),
        "the dissector failed: {err}"
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Message counts by type name, from tshark's `pfs.type_name` column (several per TCP
/// segment are comma-separated).
fn counts(pcap: &Path) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for name in tshark(pcap, &["-T", "fields", "-e", "pfs.type_name"])
        .lines()
        .flat_map(|l| l.split(','))
        .filter(|n| !n.trim().is_empty())
    {
        *m.entry(name.trim().to_owned()).or_default() += 1;
    }
    m
}

/// Frames carrying a malformed pfs message (the dissector's own check or Wireshark's).
fn malformed(pcap: &Path) -> usize {
    tshark(pcap, &["-Y", "pfs.malformed || _ws.malformed"])
        .lines()
        .count()
}

/// docs/protocol.md's message tables: (type name, field names) in order, `key` expanded.
fn documented_messages() -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for line in PROTOCOL.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 5 || !cells[1].starts_with("0x") {
            continue;
        }
        let name = cells[2].trim_matches('`').to_owned();
        // Split the body at top-level commas (not inside parentheses or brackets).
        let (mut fields, mut depth, mut cur) = (Vec::new(), 0, String::new());
        for c in cells[3].chars() {
            match c {
                '(' | '[' => depth += 1,
                ')' | ']' => depth -= 1,
                ',' if depth == 0 => {
                    fields.push(std::mem::take(&mut cur));
                    continue;
                }
                _ => {}
            }
            cur.push(c);
        }
        fields.push(cur);
        let mut names = Vec::new();
        for f in fields {
            let words: Vec<&str> = f
                .split_whitespace()
                .take_while(|w| {
                    !w.starts_with('(')
                        && !w.starts_with('[')
                        && !matches!(*w, "u8" | "u16" | "u32" | "u64")
                })
                .collect();
            let field = words.join(" ");
            if field == "key" {
                names
                    .extend(["model_len", "model", "file_len", "file", "digest"].map(String::from));
            } else {
                names.push(field);
            }
        }
        out.push((name, names));
    }
    out
}

/// The filter name the dissector gives a documented field.
fn abbrev(field: &str) -> String {
    match field {
        "model_len" | "model" | "file_len" | "file" | "digest" => format!("pfs.key.{field}"),
        "body length" => "pfs.length".into(),
        f => format!("pfs.{}", f.split_whitespace().next().unwrap()),
    }
}

/// A little pcap writer: raw IPv4 frames (LINKTYPE_IPV4).
struct Pcap(Vec<u8>);

impl Pcap {
    fn new() -> Pcap {
        let mut b = Vec::new();
        b.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        b.extend_from_slice(&2u16.to_le_bytes());
        b.extend_from_slice(&4u16.to_le_bytes());
        b.extend_from_slice(&[0; 8]);
        b.extend_from_slice(&262_144u32.to_le_bytes());
        b.extend_from_slice(&228u32.to_le_bytes());
        Pcap(b)
    }

    fn ip(&mut self, proto: u8, src: Ipv4Addr, dst: Ipv4Addr, l4: &[u8]) {
        let len = 20 + l4.len();
        let mut p = vec![
            0x45,
            0,
            (len >> 8) as u8,
            len as u8,
            0,
            0,
            0x40,
            0,
            64,
            proto,
            0,
            0,
        ];
        p.extend_from_slice(&src.octets());
        p.extend_from_slice(&dst.octets());
        p.extend_from_slice(l4);
        let n = (self.0.len() as u32).to_le_bytes();
        self.0.extend_from_slice(&n); // seconds: any increasing value
        self.0.extend_from_slice(&0u32.to_le_bytes());
        self.0.extend_from_slice(&(p.len() as u32).to_le_bytes());
        self.0.extend_from_slice(&(p.len() as u32).to_le_bytes());
        self.0.extend_from_slice(&p);
    }

    fn udp(&mut self, src: Ipv4Addr, dst: Ipv4Addr, payload: &[u8]) {
        let len = 8 + payload.len();
        let mut u = Vec::new();
        u.extend_from_slice(&4051u16.to_be_bytes());
        u.extend_from_slice(&4051u16.to_be_bytes());
        u.extend_from_slice(&(len as u16).to_be_bytes());
        u.extend_from_slice(&[0, 0]);
        u.extend_from_slice(payload);
        self.ip(17, src, dst, &u);
    }

    #[allow(clippy::too_many_arguments)]
    fn tcp(
        &mut self,
        src: Ipv4Addr,
        sport: u16,
        dst: Ipv4Addr,
        dport: u16,
        seq: u32,
        ack: u32,
        payload: &[u8],
    ) {
        let mut t = Vec::new();
        t.extend_from_slice(&sport.to_be_bytes());
        t.extend_from_slice(&dport.to_be_bytes());
        t.extend_from_slice(&seq.to_be_bytes());
        t.extend_from_slice(&ack.to_be_bytes());
        t.extend_from_slice(&[0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0]);
        t.extend_from_slice(payload);
        self.ip(6, src, dst, &t);
    }
}

#[test]
fn protocol_md_tables_are_read() {
    let _group = crate::common::group(module_path!());
    let m = documented_messages();
    assert_eq!(m.len(), 11, "{m:?}");
    assert_eq!(m[0].0, "Advert");
    assert!(m[1].1.contains(&"exclude".to_owned()) && m[1].1.contains(&"n".to_owned()));
    assert!(m[1].1.contains(&"exclude_reason".to_owned()), "{:?}", m[1]);
    assert!(m[7].1.contains(&"hierarchy id".to_owned()), "{:?}", m[7]);
    assert_eq!(m[10].1, ["code", "message"]);
}

#[test]
fn every_message_type_and_field_decodes_by_its_documented_name() {
    let _group = crate::common::group(module_path!());
    if !common::tool("tshark") {
        return;
    }
    let pcap = every_message_pcap();
    let dir = common::scratch("wireshark-types");
    let file = dir.join("types.pcap");
    std::fs::write(&file, &pcap.0).unwrap();

    let want: BTreeMap<String, u64> = documented_messages()
        .into_iter()
        .map(|(n, _)| (n, 1))
        .collect();
    assert_eq!(counts(&file), want);
    assert_eq!(malformed(&file), 0);

    // Every documented field, under its documented name, in the message of its type.
    let pdml = tshark(&file, &["-T", "pdml"]);
    let by_type = pfs_parts_by_type(&pdml);
    let missing = undocumented_fields(&by_type);
    assert!(missing.is_empty(), "not decoded as documented: {missing:?}");
    // Values read back, not only names.
    assert!(by_type["Accept"].contains("showname=\"parent: 198.19.1.9\""));
    assert!(by_type["Advert"].contains("showname=\"strength: 99\""));
    assert!(
        by_type["Join"].contains("showname=\"exclude_reason: corrupt (1)\""),
        "{}",
        by_type["Join"]
    );
    assert!(by_type["Error"].contains("showname=\"message: busy\""));
    assert!(
        by_type["Chunk"].contains("show=\"3000\""),
        "the chunk is reassembled"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn lab_capture_counts_equal_what_the_phones_sent() {
    let _group = crate::common::group(module_path!());
    if !common::privileged("pfs lab --pcap")
        || !common::tool("tc")
        || !common::tool("tcpdump")
        || !common::tool("tshark")
    {
        return;
    }
    let dir = common::scratch("wireshark-lab");
    let pcap = dir.join("lab.pcap");
    let out = Command::new(env!("CARGO_BIN_EXE_pfs"))
        .args(["lab", "--phones", "6", "--models", "CP-7961G"])
        .args(["--json", "--deadline-s", "60", "--pcap"])
        .arg(&pcap)
        .output()
        .expect("run pfs lab");
    assert!(
        out.status.success(),
        "pfs lab failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().next().unwrap()).unwrap();
    common::check_against_doc("lab", &report);
    assert_eq!(report["completed"], 6);
    assert_eq!(report["pcap_dropped"], 0, "the capture is incomplete");
    let sent: BTreeMap<String, u64> =
        serde_json::from_value(report["messages_sent"].clone()).unwrap();
    for ty in ["Advert", "Join", "Accept", "Request", "Chunk"] {
        assert!(
            sent.get(ty).copied().unwrap_or(0) > 0,
            "no {ty} sent: {sent:?}"
        );
    }
    let seen = counts(&pcap);
    assert_eq!(
        seen, sent,
        "the capture's messages by type (left) and the phones' own counts (right)"
    );
    assert_eq!(malformed(&pcap), 0);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A capture holding every message type once: the UDP ones broadcast, a request, a chunk
/// split over two TCP segments, then two messages in one segment.
fn every_message_pcap() -> Pcap {
    let udp = every_udp_message();
    let (a, b) = (Ipv4Addr::new(198, 19, 1, 2), Ipv4Addr::new(198, 19, 1, 3));
    let mut pcap = Pcap::new();
    for m in &udp {
        pcap.udp(a, Ipv4Addr::new(198, 19, 255, 255), &m.encode().unwrap());
    }
    let request = Message::Request {
        hierarchy: HierarchyId(0x0102_0304_0506_0708),
        offset: 65536,
        xid: 1,
    }
    .encode()
    .unwrap();
    pcap.tcp(a, 40000, b, 4051, 1, 1, &request);
    let chunk = Message::Chunk {
        hierarchy: HierarchyId(0x0102_0304_0506_0708),
        offset: 65536,
        have: 131_072,
        data: vec![0xab; 3000],
    }
    .encode()
    .unwrap();
    // A chunk split over two segments, then two messages in one segment.
    pcap.tcp(
        b,
        4051,
        a,
        40000,
        1,
        1 + request.len() as u32,
        &chunk[..1400],
    );
    pcap.tcp(
        b,
        4051,
        a,
        40000,
        1401,
        1 + request.len() as u32,
        &chunk[1400..],
    );
    let mut two = Message::Have {
        hierarchy: HierarchyId(0x0102_0304_0506_0708),
        verified: 131_072,
    }
    .encode()
    .unwrap();
    two.extend(
        Message::Error {
            code: 1,
            message: "busy".into(),
        }
        .encode()
        .unwrap(),
    );
    let seq = 1 + chunk.len() as u32;
    pcap.tcp(b, 4051, a, 40000, seq, 1 + request.len() as u32, &two);
    pcap
}

/// Each message type's `pfs` protocol part of tshark's PDML, by type name.
fn pfs_parts_by_type(pdml: &str) -> BTreeMap<String, String> {
    let packets: Vec<&str> = pdml.split("<packet>").skip(1).collect();
    let mut by_type: BTreeMap<String, String> = BTreeMap::new();
    for p in &packets {
        for part in p.split("<proto name=\"pfs\"").skip(1) {
            let end = part.find("</proto>").unwrap_or(part.len());
            let part = &part[..end];
            let name = part
                .split("name=\"pfs.type_name\"")
                .nth(1)
                .and_then(|s| s.split("show=\"").nth(1))
                .and_then(|s| s.split('"').next())
                .expect("a type name")
                .to_owned();
            by_type.insert(name, part.to_owned());
        }
    }
    by_type
}

/// Every documented field (and the header's) that the dissector did not decode under its
/// documented name, as `type.field (what was looked for)`.
fn undocumented_fields(by_type: &BTreeMap<String, String>) -> Vec<String> {
    let mut missing = Vec::new();
    for (ty, fields) in documented_messages() {
        let part = by_type
            .get(&ty)
            .unwrap_or_else(|| panic!("no {ty} decoded"));
        for field in ["magic", "version", "type", "body length"]
            .iter()
            .map(|s| s.to_string())
            .chain(fields)
        {
            let want = format!("name=\"{}\" showname=\"{field}: ", abbrev(&field));
            if !part.contains(&want) {
                missing.push(format!("{ty}.{field} ({want})"));
            }
        }
    }
    missing
}

/// One message of every UDP type, with distinct field values.
fn every_udp_message() -> Vec<Message> {
    let key = HierarchyKey {
        model: "CP-7961G".into(),
        file: "apps41.9-4-2ES26.sbn".into(),
        digest: [7; 32],
    };
    vec![
        Message::Advert {
            key: key.clone(),
            xid: 0x1234_5678,
            strength: 99,
            tier: Tier::Fetching,
            seq: 3,
            depth: 0,
            free_slots: 2,
            verified: 5,
        },
        Message::Join {
            key: key.clone(),
            xid: 1,
            max_children: 2,
            link_kbit: 100_000,
            verified: 0,
            exclude: vec![(
                PeerId::from(Ipv4Addr::new(198, 19, 1, 5)),
                Exclusion::Corrupt,
            )],
        },
        Message::Accept {
            key: key.clone(),
            xid: 1,
            parent: PeerId::from(Ipv4Addr::new(198, 19, 1, 9)),
            port: 4051,
            depth: 1,
        },
        Message::Reject {
            key: key.clone(),
            xid: 1,
            reason: 0,
        },
        Message::Leave {
            key: key.clone(),
            xid: 1,
            reason: 0,
        },
        Message::Heartbeat {
            key: key.clone(),
            xid: 1,
            verified: 4,
        },
        Message::Lease {
            key,
            xid: 1,
            op: pfs::wire::LEASE_GRANT,
        },
    ]
}
