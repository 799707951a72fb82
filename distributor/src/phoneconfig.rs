//! Phone configuration: `SEP<MAC>.cnf.xml` (what a phone downloads) and the TOML an operator
//! writes, where the Peer Firmware Sharing flag resolves with Cisco's precedence:
//! device > common phone profile > enterprise (default: off).
//!
//! From a cnf.xml we read `device/loadInformation`, `device/vendorConfig/peerFirmwareSharing`
//! (`1`/`0`, `true`/`false`), `loadServer` and `logServer` (the PFS log server), wherever they
//! appear under `device` or `vendorConfig`. Unknown elements are ignored; input is capped.

use std::collections::BTreeMap;

use quick_xml::{Reader, events::Event};
use serde::Deserialize;

pub const MAX_XML_BYTES: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cnf.xml larger than 1 MiB")]
    TooLarge,
    #[error("cnf.xml: {0}")]
    Xml(String),
    #[error("cnf.xml: {field} has invalid value {value:?}")]
    BadValue { field: &'static str, value: String },
    #[error("config TOML: {0}")]
    Toml(String),
    #[error("config: device {mac} names unknown profile {profile:?}")]
    UnknownProfile { mac: String, profile: String },
    #[error("config: {0:?} is not a MAC address (12 hex digits)")]
    BadMac(String),
}

/// What a phone learns from its cnf.xml.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PhoneConfig {
    pub load_information: Option<String>,
    pub peer_firmware_sharing: bool,
    pub load_server: Option<String>,
    pub log_server: Option<String>,
}

fn parse_bool(field: &'static str, v: &str) -> Result<bool, ConfigError> {
    match v.trim() {
        "1" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "false" | "FALSE" | "False" | "" => Ok(false),
        other => Err(ConfigError::BadValue {
            field,
            value: other.to_owned(),
        }),
    }
}

/// Parses a cnf.xml; total over arbitrary bytes.
pub fn parse_cnf_xml(bytes: &[u8]) -> Result<PhoneConfig, ConfigError> {
    if bytes.len() > MAX_XML_BYTES {
        return Err(ConfigError::TooLarge);
    }
    let mut reader = Reader::from_reader(bytes);
    reader.config_mut().trim_text(true);
    let mut path: Vec<String> = Vec::new();
    let mut cfg = PhoneConfig::default();
    let mut buf = Vec::new();
    loop {
        let event = reader
            .read_event_into(&mut buf)
            .map_err(|e| ConfigError::Xml(e.to_string()))?;
        match event {
            Event::Start(e) => {
                if path.len() >= 64 {
                    return Err(ConfigError::Xml("nesting deeper than 64".into()));
                }
                path.push(e.local_name().as_ref().to_owned());
            }
            Event::End(_) => {
                path.pop();
            }
            Event::Text(t) => {
                let raw: &str = t.as_ref();
                let text = quick_xml::escape::unescape(raw)
                    .map_err(|e| ConfigError::Xml(e.to_string()))?
                    .into_owned();
                let under_device = path.first().is_some_and(|p| p == "device");
                match path.last().map(String::as_str) {
                    Some("loadInformation") if under_device => {
                        cfg.load_information = Some(text).filter(|s| !s.is_empty());
                    }
                    Some("peerFirmwareSharing") if under_device => {
                        cfg.peer_firmware_sharing = parse_bool("peerFirmwareSharing", &text)?;
                    }
                    Some("loadServer") if under_device => {
                        cfg.load_server = Some(text).filter(|s| !s.is_empty());
                    }
                    Some("logServer") if under_device => {
                        cfg.log_server = Some(text).filter(|s| !s.is_empty());
                    }
                    _ => {}
                }
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    if !path.is_empty() {
        return Err(ConfigError::Xml(format!(
            "unclosed element <{}>",
            path.join("/")
        )));
    }
    Ok(cfg)
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
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<device>\n{}  <vendorConfig>\n    <peerFirmwareSharing>{}</peerFirmwareSharing>\n{}{}  </vendorConfig>\n</device>\n",
        opt("loadInformation", &c.load_information).replacen("    ", "  ", 1),
        u8::from(c.peer_firmware_sharing),
        opt("loadServer", &c.load_server),
        opt("logServer", &c.log_server),
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

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
            let _ = parse_cnf_xml(&bytes);
            if let Ok(s) = std::str::from_utf8(&bytes) {
                let _ = SiteConfig::parse(s);
            }
        }
    }
}
