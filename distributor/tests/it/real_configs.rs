//! Every real configuration file in `../shared/real/` (cnf.xml, XMLDefault) read as a phone
//! reads it, against a table read by hand; and the model names people write.

use crate::real_files::{corpus, is_loads, real_dir};

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
