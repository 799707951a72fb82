//! Every file in `../shared/real/` (real Cisco `.loads` and configuration files, see its
//! README.md and FORMATS.md): each `.loads` yields exactly the components listed here (read by
//! hand from the files), each configuration file the values listed here or a clear error.
//!
//! The folder sits beside the checkout (`../shared/real` from the repository root). Without it
//! the test skips, except when `CI=true`, where it fails.

use std::path::{Path, PathBuf};

use pfs::loads::{Layout, parse_loads_file};

fn real_dir() -> Option<PathBuf> {
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
fn corpus(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".src") && n != "README.md" && n != "FORMATS.md")
        .collect();
    names.sort();
    names
}

fn is_loads(name: &str) -> bool {
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

use pfs::phoneconfig::{Root, device_type, read_cnf_xml};

/// What a careful reader finds in a configuration file.
struct Cnf {
    root: Root,
    /// The load with no model given (a `<device>` file's own load).
    load: Option<&'static str>,
    pfs: bool,
    load_server: Option<&'static str>,
    log_server: Option<&'static str>,
    ipv6_load_server: Option<&'static str>,
    ipv6_log_server: Option<&'static str>,
    addon_loads: &'static [&'static str],
    /// `loadInformation[NNN]` children of the root.
    entries: usize,
    /// (model as a user gives it, the load a phone of that model reads).
    by_model: &'static [(&'static str, Option<&'static str>)],
}

enum Want {
    Read(Cnf),
    /// Refused; the error contains this.
    Refused(&'static str),
}

const DEVICE: Cnf = Cnf {
    root: Root::Device,
    load: None,
    pfs: false,
    load_server: None,
    log_server: None,
    ipv6_load_server: None,
    ipv6_log_server: None,
    addon_loads: &[],
    entries: 1,
    by_model: &[],
};

const DEFAULT: Cnf = Cnf {
    root: Root::Default,
    ..DEVICE
};

const fn device(load: &'static str) -> Want {
    Want::Read(Cnf {
        load: Some(load),
        ..DEVICE
    })
}

const MISMATCHED: &str = "not well-formed XML";

const CONFIGS: &[(&str, Want)] = &[
    (
        "3nd0y__firmware-7911G__XMLDefault.cnf.xml",
        Want::Read(Cnf {
            load: Some("SIP11.9-2-1S"),
            by_model: &[("CP-7911G", Some("SIP11.9-2-1S"))],
            ..DEFAULT
        }),
    ),
    (
        "Cynjut__SCCP_Manager__XMLDefault.cnf.xml",
        Want::Read(Cnf {
            entries: 25,
            by_model: &[
                ("CP-7942G", Some("P00308000600")),
                ("Cisco 7961", Some("SCCP41.8-3-1S")),
                ("CP-7961G-GE", Some("SCCP41.8-3-1S")),
                ("7940", Some("P00308000500")),
                ("8", Some("P00308000500")),
                ("Cisco 7914", Some("S00105000300")),
                ("CP-8841", None),
            ],
            ..DEFAULT
        }),
    ),
    (
        "DenisaCureu__Connect-Cisco-IP-Phones-to-a-Unified-Communications-System-in-the-Cloud__XMLDefault.cnf.xml",
        Want::Read(Cnf {
            entries: 13,
            by_model: &[("CP-7970G", Some("term70.default")), ("CP-7961G", None)],
            ..DEFAULT
        }),
    ),
    (
        "andreibleortu__cisco7942-freepbx__tftpboot_SEPMACADDRESS.cnf.xml",
        device("SIP42.9-4-2SR3-1S"),
    ),
    // `<loadInformation model="Cisco 7942">...</loadInformation434>`
    (
        "andreibleortu__cisco7942-freepbx__tftpboot_XMLDefault.cnf.xml",
        Want::Refused(MISMATCHED),
    ),
    (
        "bhdicaire__Cisco88xxSetup__XMLDefault.cnf.xml",
        Want::Read(Cnf {
            entries: 4,
            by_model: &[
                ("CP-8811", Some("sip88xx.11-2-3MSR1-1")),
                ("Cisco 8861", Some("sip88xx.11-2-3MSR1-1")),
                ("CP-7942G", None),
            ],
            ..DEFAULT
        }),
    ),
    (
        "chan-sccp__chan-sccp__conf_tftp_SEP0000000000.cnf.xml_7925_template",
        Want::Read(Cnf {
            load: Some("CP7925G-1.4.8.4"),
            // What the template writes there (a placeholder user name).
            load_server: Some("MyAdminUsername"),
            ..DEVICE
        }),
    ),
    (
        "chan-sccp__chan-sccp__conf_tftp_SEP0000000000.cnf.xml_792x_vendorConfig_entries.xml",
        Want::Refused("root element <displayInstance> is not a phone configuration"),
    ),
    // The add-on module's loadInformation is commented out.
    (
        "chan-sccp__chan-sccp__conf_tftp_SEP0000000000.cnf.xml_797x_extended_template",
        Want::Read(Cnf {
            load: Some("term71.default"),
            pfs: true,
            ..DEVICE
        }),
    ),
    (
        "chan-sccp__chan-sccp__conf_tftp_SEP0000000000.cnf.xml_797x_template",
        Want::Read(Cnf {
            log_server: Some("x.x.x.x:9001"),
            entries: 0,
            ..DEVICE
        }),
    ),
    // `<WlanProfile2>0</WlanProfile1>`
    (
        "chan-sccp__chan-sccp__conf_tftp_SEP0000000000.cnf.xml_annotated",
        Want::Refused(MISMATCHED),
    ),
    (
        "chan-sccp__chan-sccp__conf_tftp_SEP0000000000.cnf.xml_ipv6_template",
        Want::Read(Cnf {
            load: Some("SCCP70.8-5-4S"),
            pfs: true,
            ipv6_load_server: Some("2002:123:5::1233"),
            ipv6_log_server: Some("2002:123:5::1233"),
            ..DEVICE
        }),
    ),
    (
        "chan-sccp__chan-sccp__conf_tftp_XMLDefault.cnf.xml",
        Want::Read(Cnf {
            entries: 142,
            by_model: &[
                ("CP-7942G", Some("SCCP42.9-3-1SR4-1S")),
                ("Cisco 7940", Some("P0030801SR02")),
                ("CP-7925G", Some("CP7925G-1.4.5.3")),
                // The file says model="Cisco 7961" for number 5; the 7961 is 30018.
                ("CP-7961G", Some("SCCP41.9-3-1SR4-1S")),
                ("5", Some("SCCP41.8-3-3S")),
                ("CP-8841", None),
            ],
            ..DEFAULT
        }),
    ),
    // chan-sccp's property schema: a <device> root with every value empty.
    (
        "chan-sccp__chan-sccp__conf_tftp_properties.xml",
        Want::Read(Cnf {
            entries: 0,
            ..DEVICE
        }),
    ),
    (
        "chan-sccp__sccp_manager__conf_SEP0000000000.cnf.xml_79df_sip_template",
        Want::Read(DEVICE),
    ),
    (
        "chan-sccp__sccp_manager__conf_SEP0000000000.cnf.xml_99xx_sip_template",
        Want::Read(DEVICE),
    ),
    // A second `</line>` closes `<sipLines>`.
    (
        "dbaldree__cisco_sip_voipfone__SEP0014638ADF5E.cnf.xml",
        Want::Refused(MISMATCHED),
    ),
    (
        "dbaldree__cisco_sip_voipfone__XMLDefault.cnf.xml",
        Want::Read(Cnf {
            entries: 2,
            by_model: &[
                ("CP-7940G", Some("P0S3-8-12-00")),
                ("Cisco 7960", Some("P0S3-8-12-00")),
                ("CP-7942G", None),
            ],
            ..DEFAULT
        }),
    ),
    (
        "ddowse__cisco-8841-sip__tftpboot_XMLDefault.cnf.xml",
        Want::Read(Cnf {
            load: Some("sip88xx.14-0-1-0101-145"),
            by_model: &[
                ("CP-8841", Some("sip88xx.14-0-1-0101-145")),
                ("683", Some("sip88xx.14-0-1-0101-145")),
                ("CP-7942G", None),
            ],
            ..DEFAULT
        }),
    ),
    (
        "fasterclouds__cisco_provision__SEP_base_6900.cnf.xml",
        device("ActiveLoad"),
    ),
    (
        "fasterclouds__cisco_provision__SEP_base_8900.cnf.xml",
        device("ActiveLoad"),
    ),
    // Named XMLDefault, but a <device> file.
    (
        "fasterclouds__cisco_provision__XMLDefault.cnf.xml",
        device("SIP69xx.9-4-1-3"),
    ),
    (
        "julianhead__CiscoPhones__SEPBASE.cnf.xml",
        device("SIP41.9-4-2SR3-1S"),
    ),
    (
        "julianhead__CiscoPhones__XMLDefault.cnf.xml",
        Want::Read(Cnf {
            entries: 2,
            by_model: &[
                ("CP-7940G", Some("P0S3-8-12-00")),
                ("CP-7960G", Some("P0S3-8-12-00")),
            ],
            ..DEFAULT
        }),
    ),
    (
        "lrcamargo__cisco-ip-phone-sip__SEPMAC.cnf.xml",
        Want::Read(Cnf {
            entries: 0,
            ..DEVICE
        }),
    ),
    // `loadInformation8 model="Cisco IP Phone 7962"`: 8 is the 7940; the number decides.
    (
        "lrcamargo__cisco-ip-phone-sip__XMLDefault.cnf.xml",
        Want::Read(Cnf {
            entries: 1,
            by_model: &[("CP-7940G", Some("SIP42.9-4-2SR3-1S")), ("CP-7962G", None)],
            ..DEFAULT
        }),
    ),
    (
        "niaproxy__sccp_manager__SEP-Master.cnf.xml",
        Want::Read(Cnf {
            load: Some("PUTFIRMWARE"),
            addon_loads: &["PUTFIRMWAREADDON", "PUTFIRMWAREADDON"],
            ..DEVICE
        }),
    ),
    (
        "niaproxy__sccp_manager__XMLDefault.cnf.xml",
        Want::Read(Cnf {
            entries: 25,
            by_model: &[
                ("CP-7942G", Some("SCCP42.8-4-2S")),
                ("CP-7945G", Some("P00308000600")),
                ("Cisco 7960", Some("P00308010100")),
            ],
            ..DEFAULT
        }),
    ),
    (
        "staskobzar__cisco_prov__sccp_6921_TEMPL.cfg.xml",
        device("SCCP69xx.9-4-1-3SR2"),
    ),
    (
        "staskobzar__cisco_prov__sccp_7911_TEMPL.cnf.xml",
        device("SCCP11.9-4-2SR1-1S"),
    ),
    (
        "staskobzar__cisco_prov__sccp_7912_TEMPL.cnf.xml",
        device("CP7912080004SCCP080108A"),
    ),
    // `<WlanProfile2>0</WlanProfile1>`
    (
        "staskobzar__cisco_prov__sccp_7921_TEMPL.cnf.xml",
        Want::Refused(MISMATCHED),
    ),
    (
        "staskobzar__cisco_prov__sccp_7945_TEMPL.cnf.xml",
        device("SCCP45.9-4-2SR1-1S"),
    ),
    (
        "staskobzar__cisco_prov__sccp_XMLDefault.cnf.xml",
        Want::Read(Cnf {
            entries: 15,
            by_model: &[
                ("CP-7942G", Some("SCCP42.9-4-2SR1-1S")),
                ("CP-7925G", Some("CP7925G-1.4.7.3")),
                ("Cisco 6921", Some("SCCP69xx.9-4-1-3SR2")),
                ("CP-7961G", Some("SCCP41.9-4-2SR1-1S")),
                ("CP-7911G", Some("SCCP11.9-4-2-1S")),
            ],
            ..DEFAULT
        }),
    ),
    (
        "staskobzar__cisco_prov__sip_7821_TEMPL.cnf.xml",
        device("sip78xx.11-0-1-11"),
    ),
    (
        "staskobzar__cisco_prov__sip_7911_TMPL.cfg.xml",
        device("SIP11.8-5-4S"),
    ),
    (
        "staskobzar__cisco_prov__sip_7941_7961_TEMPL.cnf.xml",
        device("SIP41.8-5-4S"),
    ),
    (
        "staskobzar__cisco_prov__sip_XMLDefault.cnf.xml",
        Want::Read(Cnf {
            entries: 14,
            by_model: &[
                ("CP-7942G", Some("SIP42.8-5-4S")),
                ("CP-7965G", Some("SIP45.8-5-4S")),
                ("Cisco 7940", Some("P0S3-8-12-00")),
            ],
            ..DEFAULT
        }),
    ),
    (
        "undone37__Cisco-7962G-3rd-Party-Config__SEPMAC.cnf.xml",
        device("SIP42.9-4-2SR3-1S"),
    ),
    (
        "undone37__Cisco-7962G-3rd-Party-Config__XMLDefault.cnf.xml",
        Want::Read(Cnf {
            entries: 2,
            by_model: &[
                ("CP-7961G", Some("SIP42.9-4-2SR3-1S")),
                ("CP-7961G-GE", Some("SIP42.9-4-2SR3-1S")),
                ("CP-7962G", None),
            ],
            ..DEFAULT
        }),
    ),
    (
        "waynemerricks__Cisco7942FreePBX__tftpboot_SEPMACADDRESS.cnf.xml",
        device("SIP42.9-4-2SR3-1S"),
    ),
    (
        "waynemerricks__Cisco7942FreePBX__tftpboot_XMLDefault.cnf.xml",
        Want::Refused(MISMATCHED),
    ),
    (
        "weslleycsil__provisionamento-cisco__SEP{MAC}.cnf.xml",
        Want::Read(Cnf {
            entries: 0,
            ..DEVICE
        }),
    ),
    // loadInformation683 (the 8841) three times with three loads: see the test.
    (
        "weslleycsil__provisionamento-cisco__XMLDefault.cnf.xml",
        Want::Read(Cnf {
            entries: 23,
            by_model: &[
                ("CP-7942G", Some("SIP42.8-5-4S")),
                ("CP-8851", Some("sip88xx.14-1-1-0001-125")),
                ("CP-8832", Some("sip8832.12-5-1SR3-74")),
                ("CP-7961G", Some("SIP41.9-2-1S")),
            ],
            ..DEFAULT
        }),
    ),
];

#[test]
fn every_real_configuration_file_reads_right_or_is_refused() {
    let _group = crate::common::group(module_path!());
    let Some(dir) = real_dir() else { return };
    let files: Vec<String> = corpus(&dir).into_iter().filter(|n| !is_loads(n)).collect();
    assert_eq!(files.len(), 44, "{files:?}");
    let (mut read, mut refused) = (0, 0);
    for name in &files {
        let (_, want) = CONFIGS
            .iter()
            .find(|c| c.0 == name)
            .unwrap_or_else(|| panic!("{name}: no expectation"));
        let bytes = std::fs::read(dir.join(name)).unwrap();
        let got = read_cnf_xml(&bytes);
        match want {
            Want::Refused(why) => {
                let err = got.expect_err(name).to_string();
                assert!(err.contains(why), "{name}: {err}");
                refused += 1;
            }
            Want::Read(w) => {
                let cnf = got.unwrap_or_else(|e| panic!("{name}: {e}"));
                let c = cnf.for_device(None).unwrap();
                // What pfs writes for a phone reads back the same (the fuzz target cnf_xml
                // found the device type dropped on a real XMLDefault.cnf.xml).
                let rendered = pfs::phoneconfig::render_cnf_xml(&c);
                let again = pfs::phoneconfig::parse_cnf_xml(rendered.as_bytes()).unwrap();
                assert_eq!(again, c, "{name}: rendered as {rendered}");
                assert_eq!(cnf.root, w.root, "{name}");
                assert_eq!(c.load_information.as_deref(), w.load, "{name}");
                assert_eq!(c.peer_firmware_sharing, w.pfs, "{name}");
                assert_eq!(c.load_server.as_deref(), w.load_server, "{name}");
                assert_eq!(c.log_server.as_deref(), w.log_server, "{name}");
                assert_eq!(c.ipv6_load_server.as_deref(), w.ipv6_load_server, "{name}");
                assert_eq!(c.ipv6_log_server.as_deref(), w.ipv6_log_server, "{name}");
                assert_eq!(cnf.addon_loads, w.addon_loads, "{name}");
                assert_eq!(cnf.loads.len(), w.entries, "{name}");
                for (model, load) in w.by_model {
                    let dt = device_type(model).unwrap_or_else(|| panic!("model {model}"));
                    let c = cnf.for_device(Some(dt)).unwrap();
                    assert_eq!(
                        c.load_information.as_deref(),
                        *load,
                        "{name} --model {model}"
                    );
                    assert_eq!(c.device_type, Some(dt));
                }
                read += 1;
            }
        }
    }
    assert_eq!((read, refused), (38, 6));
    // weslleycsil's XMLDefault gives the 8841 three different loads: refused for that model.
    let cnf = read_cnf_xml(
        &std::fs::read(dir.join("weslleycsil__provisionamento-cisco__XMLDefault.cnf.xml")).unwrap(),
    )
    .unwrap();
    let err = cnf
        .for_device(device_type("CP-8841"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("loadInformation683 is given 3 times"), "{err}");
}

#[test]
fn models_are_read_the_ways_people_write_them() {
    let _group = crate::common::group(module_path!());
    for m in [
        "CP-7942G",
        "Cisco 7942",
        "cisco 7942",
        "SIP: Cisco IP Phone 7942",
        "434",
    ] {
        assert_eq!(device_type(m), Some(434), "{m}");
    }
    assert_eq!(device_type("CP-7961G-GE"), Some(308));
    assert_eq!(device_type("CP-7961G"), Some(30018));
    assert_eq!(device_type("Cisco 7914"), Some(124));
    assert_eq!(device_type("CP-8841"), Some(683));
    assert_eq!(device_type("Cisco ATA 186"), Some(12));
    assert_eq!(device_type("CP-9999"), None);
    assert_eq!(device_type(""), None);
}

/// A TFTP folder as people publish them: several real `.loads` side by side. The manifest is
/// built for the load a configuration names, never a guessed one; sizes and MD5s the `.loads`
/// lists are checked against the components.
#[test]
fn a_real_tftp_folder_with_many_loads() {
    let _group = crate::common::group(module_path!());
    use pfs::manifest::{ManifestError, manifest_for_dir};
    let Some(dir) = real_dir() else { return };
    let tftp = std::env::temp_dir().join(format!("pfs-real-tftp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tftp);
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
