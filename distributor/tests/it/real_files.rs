//! Every file in `../shared/real/` (real Cisco `.loads` and configuration files, see its
//! README.md and FORMATS.md): each `.loads` yields exactly the components listed here (read by
//! hand from the files), each configuration file the values listed here or a clear error.
//!
//! The folder sits beside the checkout (`../shared/real` from the repository root). Without it
//! the test skips, except when `CI=true`, where it fails.

use crate::common;

use std::path::{Path, PathBuf};

use pfs::loads::{Layout, parse_loads_file};

pub(crate) fn real_dir() -> Option<PathBuf> {
    let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/real")).to_owned();
    if dir.is_dir() {
        return Some(dir);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{} is missing, and CI=true: the real-file corpus must be there",
        dir.display()
    );
    eprintln!("skipping: {} not found", dir.display());
    None
}

/// Files of the corpus, without the `.src` notes and the two documents.
pub(crate) fn corpus(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".src") && n != "README.md" && n != "FORMATS.md")
        .collect();
    names.sort();
    names
}

pub(crate) fn is_loads(name: &str) -> bool {
    name.to_ascii_lowercase().ends_with(".loads")
}

/// (file, header kind, layout, version, components as `NAME[:SIZE][:MD5][@PLATFORM]`).
type LoadsCase = (
    &'static str,
    &'static str,
    Layout,
    Option<&'static str>,
    &'static [&'static str],
);

const SCCP41_ES9: &[&str] = &[
    "jar41sccp.9-4-2ES9.sbn",
    "cnu41.9-4-2ES9.sbn",
    "apps41.9-4-2ES9.sbn",
    "dsp41.9-4-2ES9.sbn",
    "cvm41sccp.9-4-2ES9.sbn",
];

const LOADS: &[LoadsCase] = &[
    (
        "3nd0y__firmware-7911G__SIP11.9-4-2SR1-1S.loads",
        "tlv",
        Layout::NameList,
        Some("9-4-2ES9"),
        &[
            "jar11sip.9-4-2ES9.sbn",
            "cnu11.9-4-2ES9.sbn",
            "apps11.9-4-2ES9.sbn",
            "dsp11.9-4-2ES9.sbn",
            "cvm11sip.9-4-2ES9.sbn",
        ],
    ),
    (
        "DenisaCureu__Connect-Cisco-IP-Phones-to-a-Unified-Communications-System-in-the-Cloud__SCCP70.8-3-3S.loads",
        "tlv",
        Layout::NameList,
        Some("8-3-2-27"),
        &[
            "jar70sccp.8-3-2-27.sbn",
            "cnu70.8-3-2-27.sbn",
            "apps70.8-3-2-27.sbn",
            "dsp70.8-3-2-27.sbn",
            "cvm70sccp.8-3-2-27.sbn",
        ],
    ),
    (
        "GarnetAlliance__Cisco-8861-mpp__sip88xx.12-0-7MPP0201-66.loads",
        "gen5",
        Layout::Ini,
        Some("12-0-7MPP0201-66"),
        &[
            "fbi88xx.BE-01-011P.sbn:100080@1",
            "kern88xx.12-0-7MPP0201-66.sbn:4248292@1",
            "rootfs88xx.12-0-7MPP0201-66.sbn:61907288@1",
            "sb288xx.BE-01-028P.sbn:429748@1",
            "vc488xx.12-0-7MPP0201-66.sbn:4162292@1",
            "boot1288xx.BE-01-007P.sbn:127104@2",
            "kernel288xx.12-0-7MPP0201-66.sbn:3299131@2",
            "m0patch288xx.BE-01-001P.sbn:15396@2",
            "rootfs288xx.12-0-7MPP0201-66.sbn:61313368@2",
            "sb2288xx.BE-01-015P.sbn:756304@2",
            "ssb288xx.BE-01-007P.sbn:129664@2",
            "kernel388xx.12-0-7MPP0201-66.sbn:2965337@3",
            "preloader88xx.BE-01-008P.sbn:40852@3",
            "rootfs388xx.12-0-7MPP0201-66.sbn:81396056@3",
            "sb2388xx.BE-01-032P.sbn:621588@3",
        ],
    ),
    (
        "fasterclouds__cisco_provision__sip8961.9-4-2SR4-1.loads",
        "tlv",
        Layout::Ini,
        Some("9-4-2SR4-1"),
        &[
            "kern8961.9-4-2SR4-1.sebn:1648608@1",
            "sboot8961.031610R1-9-4-2SR4-1.sebn:147256@1",
            "skern8961.022809R2-9-4-2SR4-1.sebn:67000@1",
            "dkern8961.100609R2-9-4-2SR4-1.sebn:10728@1",
            "rootfs8961.9-4-2SR4-1.sebn:35197696@1",
        ],
    ),
    (
        "julianhead__CiscoPhones__SIP41.8-5-4S.loads",
        "tlv",
        Layout::NameList,
        Some("8-5-4TH1-6"),
        &[
            "jar41sip.8-5-4TH1-6.sbn",
            "cnu41.8-5-4TH1-6.sbn",
            "apps41.8-5-4TH1-6.sbn",
            "dsp41.8-5-4TH1-6.sbn",
            "cvm41sip.8-5-4TH1-6.sbn",
        ],
    ),
    (
        "lrcamargo__cisco-ip-phone-sip__SIP42.9-4-2SR3-1S.loads",
        "tlv",
        Layout::NameList,
        Some("9-4-2ES26"),
        &[
            "jar42sip.9-4-2ES26.sbn",
            "cnu42.9-4-2ES26.sbn",
            "apps42.9-4-2ES26.sbn",
            "dsp42.9-4-2ES26.sbn",
            "cvm42sip.9-4-2ES26.sbn",
        ],
    ),
    (
        "staskobzar__cisco_prov__sccp_CP7921G-1.4.6.3.LOADS",
        "tlv",
        Layout::Columns,
        None,
        &[
            "TNUX-1.4.6.3.SBN:897037:e247e40d9cf20472c6c397e6e427a517",
            "TNUXR-1.4.6.3.SBN:2331650:3f0374847e9d062c2a7cf6e7e2f1a1f3",
            "SYS-1.4.6.3.SBN:2271622:83f2c9786f56f28f8214503d544e76fc",
            "WLAN-1.4.6.3.SBN:1385744:cdfdbcae0bee279705379299507ab206",
            "APPS-1.4.6.3.SBN:2633404:5f64dd6b81764b05d0f136e0ed1d74f9",
            "GUI-1.4.6.3.SBN:2090268:6db29c7fbaa3fbbdf4bae652556b84fa",
        ],
    ),
    (
        "staskobzar__cisco_prov__sccp_CP7925G-1.4.7.3.LOADS",
        "tlv",
        Layout::Columns,
        None,
        &[
            "TNUXH-1.4.7.3.SBN:940509:70a780825ffc5a22414a81ce39fd50b2",
            "TNUXRH-1.4.7.3.SBN:2339842:14baf95df3dd8f354163c12e38c22089",
            "SYSH-1.4.7.3.SBN:2307326:7e89fb3357139b274fec2765d4d9b9f0",
            "WLANH-1.4.7.3.SBN:1946357:1caf729559435480a4dd7a3090306532",
            "APPSH-1.4.7.3.SBN:2769605:0b2ff22e3c3617fb74a9ace27fcf739c",
            "GUIH-1.4.7.3.SBN:1910646:2b5078aabfdd783659ba9f6fe9550445",
            "JSYSH-1.4.7.3.SBN:716308:d7e524d4e2e2d423cb61e59e84a4ecdb",
            "JUIH-1.4.7.3.SBN:1073004:0cdc9f3b4a2284ef14c1fca1d3fbd2c7",
        ],
    ),
    (
        "staskobzar__cisco_prov__sccp_P0030801SR02.loads",
        "tlv",
        Layout::NameListWithVersion,
        Some("PAS30831"),
        &["P0030801SR02.sbn", "P0030801SR02.sb2"],
    ),
    (
        "staskobzar__cisco_prov__sccp_SCCP41.9-4-2SR1-1S.loads",
        "tlv",
        Layout::NameList,
        Some("9-4-2ES9"),
        SCCP41_ES9,
    ),
    (
        "staskobzar__cisco_prov__sccp_SCCP45.9-4-2SR1-1S.loads",
        "tlv",
        Layout::NameList,
        Some("9-4-2ES9"),
        &[
            "jar45sccp.9-4-2ES9.sbn",
            "cnu45.9-4-2ES9.sbn",
            "apps45.9-4-2ES9.sbn",
            "dsp45.9-4-2ES9.sbn",
            "cvm45sccp.9-4-2ES9.sbn",
        ],
    ),
    (
        "staskobzar__cisco_prov__sccp_SCCP69xx.9-4-1-3SR2.loads",
        "tlv",
        Layout::SgnList,
        None,
        &[
            "BOOT69xx.0-0-0-14.zz.sgn",
            "DSP69xx.12-4-122-99.131025.zz.sgn",
            "SCCP69xx.9-4-1-3SR2.zz.sgn",
        ],
    ),
    (
        "staskobzar__cisco_prov__sccp_term61.default.loads",
        "tlv",
        Layout::NameList,
        Some("9-4-2ES9"),
        SCCP41_ES9,
    ),
    (
        "staskobzar__cisco_prov__sip_sip78xx.11-0-1-11.loads",
        "gen5",
        Layout::Ini,
        Some("11-0-1-11"),
        &[
            "sboot78xx.11-0-1-11.sbn:370348@1",
            "kern78xx.11-0-1-11.sbn:3089488@1",
            "rootfs78xx.11-0-1-11.sbn:40239440@1",
            "sboot2.78xx.11-0-1-11.sbn:596540@2",
            "kern2.78xx.11-0-1-11.sbn:2505750@2",
            "rootfs2.78xx.11-0-1-11.sbn:41943380@2",
        ],
    ),
];

fn render(c: &pfs::loads::Component) -> String {
    let mut s = c.name.clone();
    if let Some(n) = c.size {
        s.push_str(&format!(":{n}"));
    }
    if let Some(m) = &c.md5 {
        s.push_str(&format!(":{m}"));
    }
    if let Some(p) = c.platform {
        s.push_str(&format!("@{p}"));
    }
    s
}

#[test]
fn every_real_loads_file_yields_its_components() {
    let _group = crate::common::group(module_path!());
    let Some(dir) = real_dir() else { return };
    let files: Vec<String> = corpus(&dir).into_iter().filter(|n| is_loads(n)).collect();
    assert_eq!(files.len(), 14, "{files:?}");
    let mut right = 0;
    for name in &files {
        let (_, kind, layout, version, want) = LOADS
            .iter()
            .find(|c| c.0 == name)
            .unwrap_or_else(|| panic!("{name}: no expectation"));
        let bytes = std::fs::read(dir.join(name)).unwrap();
        let l = parse_loads_file(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let got: Vec<String> = l.components.iter().map(render).collect();
        assert_eq!(got, *want, "{name}");
        assert_eq!(l.layout, *layout, "{name}");
        assert_eq!(l.version.as_deref(), *version, "{name}");
        let header = l.header.as_ref().expect("every real .loads is signed");
        let file_name = header.file_name().unwrap();
        assert!(
            name.ends_with(file_name),
            "{name}: header names {file_name}"
        );
        match header {
            pfs::loads::SignedHeader::Tlv(t) => {
                assert_eq!(*kind, "tlv", "{name}");
                assert_eq!(t.version, [1, 1]);
                assert!([404, 408, 412].contains(&t.header_len), "{name}");
                assert_eq!(t.signature_len, 256);
                assert!(!t.test_placeholder);
                assert_eq!(
                    t.signer.as_deref(),
                    Some("CN=someSigner;OU=someOrgUnit;O=someOrg")
                );
                assert_eq!(t.digest_algorithm, Some(1));
            }
            pfs::loads::SignedHeader::Gen5(g) => {
                assert_eq!(*kind, "gen5", "{name}");
                assert!(g.sha256_ok, "{name}");
                assert!([336, 344].contains(&g.header_len), "{name}");
                assert_eq!(
                    u64::from(g.header_len) + u64::from(g.payload_len),
                    bytes.len() as u64
                );
            }
        }
        right += 1;
    }
    assert_eq!(right, 14);
}

/// A TFTP folder as people publish them: several real `.loads` side by side. The manifest is
/// built for the load a configuration names, never a guessed one; sizes and MD5s the `.loads`
/// lists are checked against the components.
#[test]
fn a_real_tftp_folder_with_many_loads() {
    let _group = crate::common::group(module_path!());
    use pfs::manifest::{ManifestError, manifest_for_dir};
    let Some(dir) = real_dir() else { return };
    let tftp = common::scratch("real-tftp");
    std::fs::create_dir_all(&tftp).unwrap();
    for (src, name) in [
        (
            "staskobzar__cisco_prov__sccp_P0030801SR02.loads",
            "P0030801SR02.loads",
        ),
        (
            "staskobzar__cisco_prov__sccp_CP7921G-1.4.6.3.LOADS",
            "CP7921G-1.4.6.3.LOADS",
        ),
        (
            "staskobzar__cisco_prov__sccp_SCCP69xx.9-4-1-3SR2.loads",
            "SCCP69xx.9-4-1-3SR2.loads",
        ),
    ] {
        std::fs::copy(dir.join(src), tftp.join(name)).unwrap();
    }
    // The 7940 load's two components (stand-ins), and the 7921's first one at its listed
    // size but not its content.
    std::fs::write(tftp.join("P0030801SR02.sbn"), b"stand-in sbn").unwrap();
    std::fs::write(tftp.join("P0030801SR02.sb2"), b"stand-in sb2").unwrap();
    std::fs::File::create(tftp.join("TNUX-1.4.6.3.SBN"))
        .unwrap()
        .set_len(897_037)
        .unwrap();
    let err = manifest_for_dir(&tftp, pfs::manifest::DEFAULT_CHUNK, None).unwrap_err();
    assert!(err.to_string().contains("--load"), "{err}");
    // The configuration says <loadInformation8 ...>P0030801SR02</loadInformation8>.
    let m = manifest_for_dir(&tftp, pfs::manifest::DEFAULT_CHUNK, Some("P0030801SR02")).unwrap();
    let names: Vec<&str> = m.files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        ["P0030801SR02.loads", "P0030801SR02.sbn", "P0030801SR02.sb2"],
        "LA_VERSION is not a file"
    );
    let err =
        manifest_for_dir(&tftp, pfs::manifest::DEFAULT_CHUNK, Some("CP7921G-1.4.6.3")).unwrap_err();
    assert!(
        matches!(&err, ManifestError::Loads(why) if why.contains("TNUX-1.4.6.3.SBN: MD5")),
        "{err}"
    );
    let err = manifest_for_dir(
        &tftp,
        pfs::manifest::DEFAULT_CHUNK,
        Some("SCCP69xx.9-4-1-3SR2"),
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("BOOT69xx.0-0-0-14.zz.sgn is listed"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&tftp);
}

/// One changed byte in a 78xx/88xx `.loads` body breaks its SHA-256: refused.
#[test]
fn a_changed_5th_generation_load_is_refused() {
    let _group = crate::common::group(module_path!());
    let Some(dir) = real_dir() else { return };
    for name in [
        "staskobzar__cisco_prov__sip_sip78xx.11-0-1-11.loads",
        "GarnetAlliance__Cisco-8861-mpp__sip88xx.12-0-7MPP0201-66.loads",
    ] {
        let mut bytes = std::fs::read(dir.join(name)).unwrap();
        let at = bytes.len() - 10;
        bytes[at] ^= 0x01;
        assert!(
            matches!(
                parse_loads_file(&bytes),
                Err(pfs::loads::LoadsError::DigestMismatch { .. })
            ),
            "{name}"
        );
    }
}
