//! Packet-level tests of the XDP program through `BPF_PROG_TEST_RUN`: the loaded (verified)
//! bytecode, fed one hand-built Ethernet frame at a time, with its verdict and counters checked.
//! Needs root and BPF; under CI=true their absence is a failure.

use crate::common;

use pfs::{
    wire::{HierarchyKey, Message, Tier},
    xdp::{TestRun, XDP_DROP, XDP_PASS},
};

fn advert_from(model: &str, seq: u32, xid: u32) -> Vec<u8> {
    Message::Advert {
        key: HierarchyKey {
            model: model.into(),
            file: "cvm41sccp.9-4-2SR3-1S.sbn".into(),
            digest: [7; 32],
        },
        xid,
        strength: 5,
        tier: Tier::Tentative,
        seq,
        depth: 0,
        free_slots: 2,
        verified: 0,
    }
    .encode()
    .unwrap()
}

fn advert(model: &str, seq: u32) -> Vec<u8> {
    advert_from(model, seq, 0x0800_27f8)
}

/// Ethernet (optionally 802.1Q) + IPv4 + UDP from `src` to port `dport`.
fn frame(vlan: bool, src: [u8; 4], dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, src[3]]);
    if vlan {
        f.extend_from_slice(&[0x81, 0x00, 0x00, 0x64]);
    }
    f.extend_from_slice(&[0x08, 0x00]);
    let total = (20 + 8 + payload.len()) as u16;
    let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0];
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&src);
    ip.extend_from_slice(&[198, 18, 0, 255]);
    let sum = ip
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum::<u32>();
    let sum = !(((sum & 0xffff) + (sum >> 16)) as u16);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&4051u16.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(payload);
    f
}

const A: [u8; 4] = [198, 18, 0, 2];
const B: [u8; 4] = [198, 18, 0, 3];

fn load(models: &[&str]) -> Option<TestRun> {
    if !common::privileged("xdp BPF_PROG_TEST_RUN") {
        return None;
    }
    let models: Vec<String> = models.iter().map(|m| (*m).to_owned()).collect();
    Some(TestRun::load(&models).expect("load the XDP program"))
}

#[test]
fn verdicts_and_counters_for_each_kind_of_frame() {
    let _group = crate::common::group(module_path!());
    let Some(mut p) = load(&["CP-7961G"]) else {
        return;
    };
    let good = advert("CP-7961G", 1);
    let cases: Vec<(&str, Vec<u8>, u32)> = vec![
        ("valid advert", frame(false, A, 4051, &good), XDP_PASS),
        ("same advert again", frame(false, A, 4051, &good), XDP_DROP),
        (
            "same advert, other sender",
            frame(false, B, 4051, &good),
            XDP_PASS,
        ),
        (
            "next sequence",
            frame(false, A, 4051, &advert("CP-7961G", 2)),
            XDP_PASS,
        ),
        (
            "VLAN-tagged advert",
            frame(true, A, 4051, &advert("CP-7961G", 3)),
            XDP_PASS,
        ),
        (
            "another model",
            frame(false, A, 4051, &advert("CP-7941G", 1)),
            XDP_DROP,
        ),
        ("not port 4051", frame(false, A, 5353, &good), XDP_PASS),
        (
            "bad magic",
            frame(false, A, 4051, &[b"XF".as_slice(), &good[2..]].concat()),
            XDP_DROP,
        ),
        (
            "truncated body",
            frame(false, A, 4051, &good[..good.len() - 1]),
            XDP_DROP,
        ),
        ("empty datagram", frame(false, A, 4051, &[]), XDP_DROP),
    ];
    for (what, f, want) in &cases {
        assert_eq!(p.run(f).expect("test run"), *want, "{what}");
    }
    let c = p.counters().unwrap();
    for (name, want) in [
        ("udp_4051", 9),
        ("other", 1),
        // Message-type counters count what passes: 4 adverts (the duplicate and the other
        // model are counted under their drop reasons).
        ("advert", 4),
        ("drop_duplicate", 1),
        ("drop_other_model", 1),
        ("drop_malformed", 3),
    ] {
        assert_eq!(c[name], want, "{name}: {c:?}");
    }
}

#[test]
fn without_a_model_filter_every_model_passes() {
    let _group = crate::common::group(module_path!());
    let Some(mut p) = load(&[]) else { return };
    for model in ["CP-7961G", "CP-7941G", "CP-8845"] {
        let f = frame(false, A, 4051, &advert(model, 1));
        assert_eq!(p.run(&f).unwrap(), XDP_PASS, "{model}");
    }
    assert_eq!(p.counters().unwrap()["drop_other_model"], 0);
}

#[test]
fn non_ipv4_and_short_frames_pass_untouched() {
    let _group = crate::common::group(module_path!());
    let Some(mut p) = load(&["CP-7961G"]) else {
        return;
    };
    let mut arp = frame(false, A, 4051, &advert("CP-7961G", 1));
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    assert_eq!(p.run(&arp).unwrap(), XDP_PASS, "ARP");
    // Shorter than an Ethernet header: nothing to parse, nothing to drop.
    assert_eq!(p.run(&[0u8; 20]).unwrap(), XDP_PASS, "runt");
    let c = p.counters().unwrap();
    assert_eq!(c["udp_4051"], 0, "{c:?}");
}
