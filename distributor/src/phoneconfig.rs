//! Phone configuration: `SEP<MAC>.cnf.xml` and `XMLDefault.cnf.xml` (what a phone downloads)
//! and the TOML an operator writes, where the Peer Firmware Sharing flag resolves with Cisco's
//! precedence: device > common phone profile > enterprise (default: off).
//!
//! Sources: the 44 real configuration files in `../shared/real/` and the usecallmanager.nz notes
//! that `../shared/real/FORMATS.md` cites. What we read from a cnf.xml:
//!
//! - The root is `<device>` (one phone) or `<Default>`/`<default>` (XMLDefault, for phones with
//!   no file of their own). Any other root is refused: it is not a phone configuration.
//! - `loadInformation` children of the root name the load (the `.loads` name without its
//!   suffix). In XMLDefault they are `loadInformationNNN model="..."`, where NNN is Cisco's device
//!   type number; the model text varies between files and is sometimes wrong, so the number
//!   decides ([`DEVICE_TYPES`]). A `loadInformation` inside `addOnModules` is the add-on module's
//!   load and never the phone's own.
//! - `peerFirmwareSharing` (`1`/`0`, `true`/`false`; in `vendorConfig` over `commonProfile` over
//!   `enterpriseConfig`), `loadServer`, `logServer`, `ipv6LoadServer`, `ipv6LogServer`,
//!   wherever they appear outside add-on modules (first one wins).
//! - Text is read whole: `a&amp;b` is `a&b`, and a comment inside text does not cut it.
//!
//! Unknown elements are ignored; input is capped at 1 MiB; the parser is total.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub const MAX_XML_BYTES: usize = 1 << 20;

mod reader;
pub use reader::read_cnf_xml;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cnf.xml larger than 1 MiB")]
    TooLarge,
    #[error("cnf.xml: not well-formed XML: {0}")]
    Xml(String),
    #[error(
        "cnf.xml: root element <{0}> is not a phone configuration (want <device> or <Default>)"
    )]
    NotPhoneConfig(String),
    #[error("cnf.xml: {field} has invalid value {value:?}")]
    BadValue { field: &'static str, value: String },
    #[error("config TOML: {0}")]
    Toml(String),
    #[error("config: device {mac} names unknown profile {profile:?}")]
    UnknownProfile { mac: String, profile: String },
    #[error("config: {0:?} is not a MAC address (12 hex digits)")]
    BadMac(String),
    #[error(
        "unknown model {0:?}: give a model such as CP-7942G or Cisco 7942, or the device type number"
    )]
    UnknownModel(String),
    #[error("cnf.xml: loadInformation{device_type} is given {} times with different loads: {}", loads.len(), loads.join(", "))]
    ConflictingLoads {
        device_type: u32,
        loads: Vec<String>,
    },
}

/// Cisco device type numbers (the NNN of `loadInformationNNN`) and models, built from the
/// `XMLDefault.cnf.xml` files in `../shared/real/`: for each number the model most files give
/// (`8` is the 7940 in nine files, "7962" in one; `308` the 7961G-GE in six, "7962G-GE" in one;
/// `30018` the 7961 in seven, "7962" in one). One file gives `5` for the 7961, which no other
/// file confirms: it is left out.
pub const DEVICE_TYPES: &[(u32, &str)] = &[
    (6, "Cisco 7910"),
    (7, "Cisco 7960"),
    (8, "Cisco 7940"),
    (9, "Cisco 7935"),
    (12, "Cisco ATA 186"),
    (115, "Cisco 7941"),
    (119, "Cisco 7971"),
    (124, "Cisco 7914"),
    (227, "Cisco 7915 12-Button Line Expansion Module"),
    (228, "Cisco 7915 24-Button Line Expansion Module"),
    (229, "Cisco 7916 12-Button Line Expansion Module"),
    (230, "Cisco 7916 24-Button Line Expansion Module"),
    (302, "Cisco 7985"),
    (307, "Cisco 7911"),
    (308, "Cisco 7961G-GE"),
    (309, "Cisco 7941G-GE"),
    (348, "Cisco 7931"),
    (365, "Cisco 7921"),
    (369, "Cisco 7906"),
    (404, "Cisco 7962"),
    (412, "Cisco 3951"),
    (431, "Cisco 7937"),
    (434, "Cisco 7942"),
    (435, "Cisco 7945"),
    (436, "Cisco 7965"),
    (437, "Cisco 7975"),
    (446, "Cisco 3911"),
    (484, "Cisco 7925"),
    (493, "Cisco 9971"),
    (495, "Cisco 6921"),
    (496, "Cisco 6941"),
    (497, "Cisco 6961"),
    (537, "Cisco 9951"),
    (540, "Cisco 8961"),
    (547, "Cisco 6901"),
    (548, "Cisco 6911"),
    (550, "Cisco ATA 187"),
    (564, "Cisco 6945"),
    (577, "Cisco 7926"),
    (585, "Cisco 8945"),
    (586, "Cisco 8941"),
    (592, "Cisco 3905"),
    (621, "Cisco 7821"),
    (622, "Cisco 7841"),
    (623, "Cisco 7861"),
    (659, "Cisco 8831"),
    (680, "Cisco 8832"),
    (683, "Cisco 8841"),
    (684, "Cisco 8851"),
    (685, "Cisco 8861"),
    (20000, "Cisco 7905"),
    (30002, "Cisco 7920"),
    (30006, "Cisco 7970"),
    (30007, "Cisco 7912"),
    (30008, "Cisco 7902"),
    (30018, "Cisco 7961"),
    (30019, "Cisco 7936"),
    (36216, "Cisco 8821"),
    (36217, "Cisco 8811"),
];

/// `CP-7942G`, `Cisco 7942`, `SIP: Cisco IP Phone 7942` -> `7942`; `CP-7961G-GE` -> `7961G-GE`.
fn model_key(model: &str) -> String {
    let mut s = model.trim().to_ascii_uppercase();
    for p in ["SCCP:", "SIP:"] {
        if let Some(rest) = s.strip_prefix(p) {
            s = rest.to_owned();
        }
    }
    for w in ["CISCO", "UNIFIED", "IP PHONE", "PHONE"] {
        s = s.replace(w, " ");
    }
    let s = s.trim();
    let s = s.strip_prefix("CP-").unwrap_or(s);
    let mut k: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    if k.len() > 1 && k.ends_with('G') && k[..k.len() - 1].bytes().all(|b| b.is_ascii_digit()) {
        k.pop();
    }
    k
}

/// The device type number of a model (`CP-7942G`, `Cisco 7942`) or of a number (`434`). A
/// bare number is a device type when [`DEVICE_TYPES`] has it, else a model when one is called
/// that (`7940` is the 7940, type 8), else a device type pfs does not know.
pub fn device_type(model: &str) -> Option<u32> {
    let number = model.trim().parse::<u32>().ok();
    if let Some(n) = number
        && model_name(n).is_some()
    {
        return Some(n);
    }
    let key = model_key(model);
    if key.is_empty() {
        return None;
    }
    DEVICE_TYPES
        .iter()
        .find(|(_, m)| model_key(m) == key)
        .map(|(n, _)| *n)
        .or(number)
}

/// The model [`DEVICE_TYPES`] gives for a number.
pub fn model_name(device_type: u32) -> Option<&'static str> {
    DEVICE_TYPES
        .iter()
        .find(|(n, _)| *n == device_type)
        .map(|(_, m)| *m)
}

/// What a phone learns from its cnf.xml.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PhoneConfig {
    #[serde(rename = "load")]
    pub load_information: Option<String>,
    pub peer_firmware_sharing: bool,
    pub load_server: Option<String>,
    pub log_server: Option<String>,
    pub ipv6_load_server: Option<String>,
    pub ipv6_log_server: Option<String>,
    /// The device type the load was chosen for, where known.
    pub device_type: Option<u32>,
}

/// Root element of a phone configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Root {
    /// `<device>`: one phone's `SEP<MAC>.cnf.xml`.
    Device,
    /// `<Default>`/`<default>`: `XMLDefault.cnf.xml`.
    Default,
}

/// One `loadInformation[NNN]` child of the root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LoadEntry {
    /// NNN of `loadInformationNNN`.
    pub device_type: Option<u32>,
    /// The `model` attribute, as written.
    pub model: Option<String>,
    /// The load name (may be empty in templates).
    pub load: String,
}

/// Everything read from a cnf.xml, before choosing a device type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CnfXml {
    pub root: Root,
    /// The root's own `loadInformation[NNN]` children, in file order.
    pub loads: Vec<LoadEntry>,
    /// Loads of add-on modules (never the phone's).
    pub addon_loads: Vec<String>,
    pub peer_firmware_sharing: bool,
    pub load_server: Option<String>,
    pub log_server: Option<String>,
    pub ipv6_load_server: Option<String>,
    pub ipv6_log_server: Option<String>,
}

impl CnfXml {
    /// The configuration a phone of `device_type` reads from this file. With a number, the
    /// `loadInformationNNN` of that number, else a plain `loadInformation` whose `model` (if
    /// any) is that type. Without one, a plain `loadInformation` (a `<device>` file's load).
    /// Several `loadInformationNNN` of one number with different loads are refused.
    pub fn for_device(&self, device_type: Option<u32>) -> Result<PhoneConfig, ConfigError> {
        let plain = |e: &&LoadEntry| e.device_type.is_none();
        let entry = match device_type {
            Some(n) => {
                let mut numbered = self
                    .loads
                    .iter()
                    .filter(|e| e.device_type == Some(n) && !e.load.is_empty());
                let first = numbered.next();
                let mut distinct: Vec<String> = first.iter().map(|e| e.load.clone()).collect();
                for e in numbered {
                    if !distinct.contains(&e.load) {
                        distinct.push(e.load.clone());
                    }
                }
                if distinct.len() > 1 {
                    return Err(ConfigError::ConflictingLoads {
                        device_type: n,
                        loads: distinct,
                    });
                }
                first.or_else(|| {
                    self.loads.iter().filter(plain).find(|e| {
                        e.model
                            .as_deref()
                            .and_then(device_type_of_text)
                            .is_none_or(|m| m == n)
                    })
                })
            }
            None => self.loads.iter().find(plain),
        };
        Ok(PhoneConfig {
            load_information: entry.map(|e| e.load.clone()).filter(|l| !l.is_empty()),
            peer_firmware_sharing: self.peer_firmware_sharing,
            load_server: self.load_server.clone(),
            log_server: self.log_server.clone(),
            ipv6_load_server: self.ipv6_load_server.clone(),
            ipv6_log_server: self.ipv6_log_server.clone(),
            device_type: device_type
                .or_else(|| entry.and_then(|e| e.model.as_deref().and_then(device_type_of_text))),
        })
    }
}

/// A `model` attribute's device type (text only: a bare number there is not a type).
fn device_type_of_text(model: &str) -> Option<u32> {
    if model.trim().parse::<u32>().is_ok() {
        return None;
    }
    device_type(model)
}

pub(crate) fn parse_bool(field: &'static str, v: &str) -> Result<bool, ConfigError> {
    match v.trim() {
        "1" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "false" | "FALSE" | "False" | "" => Ok(false),
        other => Err(ConfigError::BadValue {
            field,
            value: other.to_owned(),
        }),
    }
}

/// Parses a cnf.xml as the phone would (no device type: a `<Default>` file then yields no load
/// unless it has a plain `loadInformation`); total over arbitrary bytes.
pub fn parse_cnf_xml(bytes: &[u8]) -> Result<PhoneConfig, ConfigError> {
    read_cnf_xml(bytes)?.for_device(None)
}

fn escape(s: &str) -> String {
    quick_xml::escape::escape(s).into_owned()
}

/// Renders the cnf.xml a phone with this configuration downloads.
pub fn render_cnf_xml(c: &PhoneConfig) -> String {
    let opt = |tag: &str, v: &Option<String>| match v {
        Some(v) => format!("    <{tag}>{}</{tag}>\n", escape(v)),
        None => String::new(),
    };
    // The device type rides on the load's `model` attribute, as in Cisco's files (found by
    // the fuzz target `cnf_xml` on a real XMLDefault.cnf.xml: it was dropped).
    let model = c.device_type.and_then(model_name);
    let load = match (&c.load_information, model) {
        (None, None) => String::new(),
        (load, model) => format!(
            "  <loadInformation{}>{}</loadInformation>\n",
            model
                .map(|m| format!(" model=\"{}\"", escape(m)))
                .unwrap_or_default(),
            escape(load.as_deref().unwrap_or(""))
        ),
    };
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<device>\n{}  <vendorConfig>\n    <peerFirmwareSharing>{}</peerFirmwareSharing>\n{}{}{}{}  </vendorConfig>\n</device>\n",
        load,
        u8::from(c.peer_firmware_sharing),
        opt("loadServer", &c.load_server),
        opt("logServer", &c.log_server),
        opt("ipv6LoadServer", &c.ipv6_load_server),
        opt("ipv6LogServer", &c.ipv6_log_server),
    )
}

/// One level of settings; every field optional so levels can override each other.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Level {
    pub peer_firmware_sharing: Option<bool>,
    pub load_server: Option<String>,
    pub log_server: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Device {
    pub mac: String,
    pub model: String,
    #[serde(default)]
    pub profile: Option<String>,
    #[serde(default)]
    pub load: Option<String>,
    #[serde(flatten)]
    pub settings: Level,
}

/// The operator's TOML: `[enterprise]`, `[profiles.NAME]`, `[[devices]]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteConfig {
    #[serde(default)]
    pub enterprise: Level,
    #[serde(default)]
    pub profiles: BTreeMap<String, Level>,
    #[serde(default)]
    pub devices: Vec<Device>,
    /// Load per model, when a device names none.
    #[serde(default)]
    pub loads: BTreeMap<String, String>,
}

impl SiteConfig {
    pub fn parse(text: &str) -> Result<SiteConfig, ConfigError> {
        let cfg: SiteConfig = toml::from_str(text).map_err(|e| ConfigError::Toml(e.to_string()))?;
        for d in &cfg.devices {
            if d.mac.len() != 12 || !d.mac.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(ConfigError::BadMac(d.mac.clone()));
            }
            if let Some(p) = &d.profile
                && !cfg.profiles.contains_key(p)
            {
                return Err(ConfigError::UnknownProfile {
                    mac: d.mac.clone(),
                    profile: p.clone(),
                });
            }
        }
        Ok(cfg)
    }

    /// Resolves one device: each setting from the device, else its profile, else enterprise.
    pub fn resolve(&self, d: &Device) -> PhoneConfig {
        let profile = d.profile.as_ref().and_then(|p| self.profiles.get(p));
        let levels = [Some(&d.settings), profile, Some(&self.enterprise)];
        let pick =
            |f: &dyn Fn(&Level) -> Option<String>| levels.iter().flatten().find_map(|l| f(l));
        PhoneConfig {
            load_information: d.load.clone().or_else(|| self.loads.get(&d.model).cloned()),
            peer_firmware_sharing: levels
                .iter()
                .flatten()
                .find_map(|l| l.peer_firmware_sharing)
                .unwrap_or(false),
            load_server: pick(&|l| l.load_server.clone()),
            log_server: pick(&|l| l.log_server.clone()),
            ipv6_load_server: None,
            ipv6_log_server: None,
            device_type: None,
        }
    }

    /// `SEP<MAC>.cnf.xml` name and contents for every device.
    pub fn render_all(&self) -> Vec<(String, String)> {
        self.devices
            .iter()
            .map(|d| {
                (
                    format!("SEP{}.cnf.xml", d.mac.to_ascii_uppercase()),
                    render_cnf_xml(&self.resolve(d)),
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SITE: &str = r#"
[enterprise]
peer_firmware_sharing = true
load_server = "198.18.0.10"

[profiles.lobby]
peer_firmware_sharing = false
log_server = "198.18.0.20"

[profiles.inherit]

[loads]
"CP-7961G" = "SCCP41.9-4-2SR3-1S"

[[devices]]
mac = "001122334455"
model = "CP-7961G"

[[devices]]
mac = "001122334466"
model = "CP-7961G"
profile = "lobby"

[[devices]]
mac = "001122334477"
model = "CP-7961G"
profile = "lobby"
peer_firmware_sharing = true

[[devices]]
mac = "001122334488"
model = "CP-7941G"
profile = "inherit"
load = "SCCP41.8-5-4S"
"#;

    #[test]
    fn precedence_is_device_then_profile_then_enterprise() {
        let site = SiteConfig::parse(SITE).unwrap();
        let r: Vec<PhoneConfig> = site.devices.iter().map(|d| site.resolve(d)).collect();
        assert!(
            r[0].peer_firmware_sharing,
            "enterprise on, nothing overrides"
        );
        assert!(
            !r[1].peer_firmware_sharing,
            "profile off beats enterprise on"
        );
        assert!(r[2].peer_firmware_sharing, "device on beats profile off");
        assert!(
            r[3].peer_firmware_sharing,
            "empty profile falls through to enterprise"
        );
        assert_eq!(r[1].log_server.as_deref(), Some("198.18.0.20"));
        assert_eq!(r[1].load_server.as_deref(), Some("198.18.0.10"));
        assert_eq!(r[0].load_information.as_deref(), Some("SCCP41.9-4-2SR3-1S"));
        assert_eq!(r[3].load_information.as_deref(), Some("SCCP41.8-5-4S"));
        let none =
            SiteConfig::parse("[[devices]]\nmac = \"00aabbccddee\"\nmodel = \"x\"\n").unwrap();
        assert!(
            !none.resolve(&none.devices[0]).peer_firmware_sharing,
            "default is off"
        );
    }

    #[test]
    fn rendered_cnf_xml_parses_back_to_the_same_settings() {
        let site = SiteConfig::parse(SITE).unwrap();
        for ((name, xml), d) in site.render_all().into_iter().zip(&site.devices) {
            assert!(name.starts_with("SEP") && name.ends_with(".cnf.xml"));
            assert_eq!(
                parse_cnf_xml(xml.as_bytes()).unwrap(),
                site.resolve(d),
                "{xml}"
            );
        }
    }

    #[test]
    fn reads_a_cisco_style_file_and_rejects_bad_input() {
        let xml = br#"<?xml version="1.0"?>
<device xsi:type="axl:XIPPhone" ctiid="12">
  <deviceProtocol>SCCP</deviceProtocol>
  <loadInformation model="IP Phone 7961">SCCP41.9-4-2SR3-1S</loadInformation>
  <vendorConfig>
    <disableSpeaker>false</disableSpeaker>
    <peerFirmwareSharing>1</peerFirmwareSharing>
    <loadServer>198.18.0.10</loadServer>
    <logServer>198.18.0.20:514</logServer>
  </vendorConfig>
</device>"#;
        let c = parse_cnf_xml(xml).unwrap();
        assert_eq!(c.load_information.as_deref(), Some("SCCP41.9-4-2SR3-1S"));
        assert!(c.peer_firmware_sharing);
        assert_eq!(c.log_server.as_deref(), Some("198.18.0.20:514"));
        assert!(matches!(
            parse_cnf_xml(b"<device><vendorConfig><peerFirmwareSharing>maybe</peerFirmwareSharing></vendorConfig></device>"),
            Err(ConfigError::BadValue { .. })
        ));
        assert!(parse_cnf_xml(b"<device><vendorConfig>").is_err());
        assert!(SiteConfig::parse("[[devices]]\nmac = \"xyz\"\nmodel = \"m\"\n").is_err());
        assert!(
            SiteConfig::parse(
                "[[devices]]\nmac = \"001122334455\"\nmodel = \"m\"\nprofile = \"nope\"\n"
            )
            .is_err()
        );
        assert!(SiteConfig::parse("[enterprise]\nbogus = 1\n").is_err());
    }

    #[test]
    fn text_is_read_whole_and_add_ons_never_replace_the_phones_load() {
        let xml = br#"<device>
  <addOnModules><addOnModule idx="1"><loadInformation>S00105000400</loadInformation></addOnModule></addOnModules>
  <loadInformation>SCCP<!-- c -->70.8-5-4S</loadInformation>
  <addOnModules><addOnModule idx="2"><loadInformation>S2</loadInformation></addOnModule></addOnModules>
  <vendorConfig>
    <loadServer>a&amp;b</loadServer>
    <logServer>x&#46;y</logServer>
    <ipv6LoadServer><![CDATA[2001:db8::1]]></ipv6LoadServer>
    <ipv6LogServer>2001:db8::2</ipv6LogServer>
  </vendorConfig>
</device>"#;
        let cnf = read_cnf_xml(xml).unwrap();
        assert_eq!(cnf.addon_loads, ["S00105000400", "S2"]);
        let c = cnf.for_device(None).unwrap();
        assert_eq!(c.load_information.as_deref(), Some("SCCP70.8-5-4S"));
        assert_eq!(c.load_server.as_deref(), Some("a&b"));
        assert_eq!(c.log_server.as_deref(), Some("x.y"));
        assert_eq!(c.ipv6_load_server.as_deref(), Some("2001:db8::1"));
        assert_eq!(c.ipv6_log_server.as_deref(), Some("2001:db8::2"));
        assert!(matches!(
            read_cnf_xml(b"<device><loadServer>&bogus;</loadServer></device>"),
            Err(ConfigError::Xml(_))
        ));
    }

    #[test]
    fn default_roots_are_read_per_device_type_and_other_roots_refused() {
        for root in ["Default", "default"] {
            let xml = format!(
                "<{root}><loadInformation434 model=\"Cisco 7961\">SIP42.9-4-2SR3-1S</loadInformation434>\
                 <loadInformation30018 model=\"Cisco 7961\">SIP41.9-4-2SR3-1S</loadInformation30018></{root}>"
            );
            let cnf = read_cnf_xml(xml.as_bytes()).unwrap();
            assert_eq!(cnf.root, Root::Default);
            assert_eq!(cnf.for_device(None).unwrap().load_information, None);
            // The number decides, not the model text.
            let c = cnf.for_device(device_type("CP-7942G")).unwrap();
            assert_eq!(c.load_information.as_deref(), Some("SIP42.9-4-2SR3-1S"));
            assert_eq!(c.device_type, Some(434));
            let c = cnf.for_device(device_type("Cisco 7961")).unwrap();
            assert_eq!(c.load_information.as_deref(), Some("SIP41.9-4-2SR3-1S"));
        }
        for bad in [
            &b"<displayInstance/>"[..],
            b"<html><body/></html>",
            b"<Device><loadInformation>x</loadInformation></Device>",
        ] {
            assert!(matches!(
                read_cnf_xml(bad),
                Err(ConfigError::NotPhoneConfig(_))
            ));
        }
        assert!(read_cnf_xml(b"").is_err());
        assert!(read_cnf_xml(b"<device/><device/>").is_err());
    }

    #[test]
    fn pfs_flag_prefers_vendor_config_over_common_profile_over_enterprise() {
        let xml = b"<device><enterpriseConfig><peerFirmwareSharing>0</peerFirmwareSharing></enterpriseConfig>\
            <commonProfile><peerFirmwareSharing>1</peerFirmwareSharing></commonProfile></device>";
        assert!(parse_cnf_xml(xml).unwrap().peer_firmware_sharing);
        let xml =
            b"<device><commonProfile><peerFirmwareSharing>1</peerFirmwareSharing></commonProfile>\
            <vendorConfig><peerFirmwareSharing>0</peerFirmwareSharing></vendorConfig></device>";
        assert!(!parse_cnf_xml(xml).unwrap().peer_firmware_sharing);
    }

    proptest! {
        #[test]
        fn arbitrary_text_in_a_real_shape_never_panics(
            a in ".{0,40}", b in ".{0,40}", n in any::<u32>(), m in ".{0,20}"
        ) {
            let xml = format!(
                "<Default><loadInformation{n} model=\"{m}\">{a}</loadInformation{n}>\
                 <addOnModules><addOnModule>{b}</addOnModule></addOnModules>\
                 <vendorConfig><loadServer>{b}</loadServer></vendorConfig></Default>"
            );
            if let Ok(c) = read_cnf_xml(xml.as_bytes()) {
                let _ = c.for_device(Some(n));
                let _ = c.for_device(device_type(&m));
            }
            let _ = device_type(&a);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
            let _ = parse_cnf_xml(&bytes);
            if let Ok(s) = std::str::from_utf8(&bytes) {
                let _ = SiteConfig::parse(s);
            }
        }
    }
}
