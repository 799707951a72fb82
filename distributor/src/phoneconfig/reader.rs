//! The cnf.xml reader (quick-xml events): element by element, total over arbitrary bytes.

use quick_xml::{Reader, events::Event};

use super::{CnfXml, ConfigError, LoadEntry, MAX_XML_BYTES, Root, parse_bool};

/// An element being read: its name, its own text so far, and whether it is inside an add-on
/// module.
struct Frame {
    name: String,
    model: Option<String>,
    text: String,
    addon: bool,
    level: u8,
}

/// Reads everything a cnf.xml says; total over arbitrary bytes.
pub fn read_cnf_xml(bytes: &[u8]) -> Result<CnfXml, ConfigError> {
    if bytes.len() > MAX_XML_BYTES {
        return Err(ConfigError::TooLarge);
    }
    let mut reader = Reader::from_reader(bytes);
    reader.config_mut().check_end_names = true;
    let mut stack: Vec<Frame> = Vec::new();
    let mut root: Option<Root> = None;
    let mut closed = false;
    let mut cfg = CnfXml {
        root: Root::Device,
        loads: Vec::new(),
        addon_loads: Vec::new(),
        peer_firmware_sharing: false,
        load_server: None,
        log_server: None,
        ipv6_load_server: None,
        ipv6_log_server: None,
    };
    let mut pfs: [Option<bool>; 3] = [None; 3];
    let mut buf = Vec::new();
    let xml_err =
        |e: &dyn std::fmt::Display, at: u64| ConfigError::Xml(format!("{e} (at byte {at})"));
    loop {
        let at = reader.buffer_position();
        let event = reader
            .read_event_into(&mut buf)
            .map_err(|e| xml_err(&e, at))?;
        let (start, empty) = match &event {
            Event::Start(e) => (Some(e), false),
            Event::Empty(e) => (Some(e), true),
            _ => (None, false),
        };
        if let Some(e) = start {
            if stack.is_empty() && closed {
                let name = AsRef::<str>::as_ref(&e.local_name()).to_owned();
                return Err(ConfigError::Xml(format!(
                    "a second root element <{name}> (at byte {at})"
                )));
            }
            let frame = open_element(e, stack.last(), stack.len())?;
            if stack.is_empty() {
                root = Some(match frame.name.as_str() {
                    "device" => Root::Device,
                    "Default" | "default" => Root::Default,
                    _ => return Err(ConfigError::NotPhoneConfig(frame.name)),
                });
            }
            stack.push(frame);
            if !empty {
                buf.clear();
                continue;
            }
        }
        match event {
            Event::Start(_) => {}
            Event::Text(t) => {
                if let Some(f) = stack.last_mut() {
                    let text = quick_xml::escape::unescape(&t).map_err(|e| xml_err(&e, at))?;
                    f.text.push_str(&text);
                }
            }
            Event::CData(t) => {
                if let Some(f) = stack.last_mut() {
                    f.text.push_str(&t);
                }
            }
            Event::GeneralRef(r) => {
                let resolved = resolve_ref(&r, at)?;
                if let Some(f) = stack.last_mut() {
                    f.text.push_str(&resolved);
                }
            }
            Event::End(_) | Event::Empty(_) => {
                let Some(f) = stack.pop() else {
                    return Err(ConfigError::Xml(format!(
                        "unexpected end tag (at byte {at})"
                    )));
                };
                closed |= stack.is_empty();
                close_element(&mut cfg, &mut pfs, f, stack.len())?;
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    if let Some(f) = stack.last() {
        return Err(ConfigError::Xml(format!(
            "unclosed element <{}> at the end of the file",
            f.name
        )));
    }
    cfg.root = root.ok_or_else(|| ConfigError::Xml("no root element".into()))?;
    cfg.peer_firmware_sharing = pfs.iter().flatten().next().copied().unwrap_or(false);
    Ok(cfg)
}

/// A start (or empty) element: its frame, inheriting add-on and profile level from `parent`.
fn open_element(
    e: &quick_xml::events::BytesStart<'_>,
    parent: Option<&Frame>,
    depth: usize,
) -> Result<Frame, ConfigError> {
    if depth >= 64 {
        return Err(ConfigError::Xml("nesting deeper than 64".into()));
    }
    let name = AsRef::<str>::as_ref(&e.local_name()).to_owned();
    let lower = name.to_ascii_lowercase();
    let addon = parent.is_some_and(|p| p.addon) || lower.starts_with("addonmodule");
    let level = match lower.as_str() {
        "commonprofile" => 1,
        "enterpriseconfig" => 2,
        _ => parent.map_or(0, |p| p.level),
    };
    let model = e.try_get_attribute("model").ok().flatten().and_then(|a| {
        a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .ok()
            .map(|v| v.trim().to_owned())
    });
    Ok(Frame {
        name,
        model,
        text: String::new(),
        addon,
        level,
    })
}

/// An element ended at `depth` (0: the root): records what it says.
fn close_element(
    cfg: &mut CnfXml,
    pfs: &mut [Option<bool>; 3],
    f: Frame,
    depth: usize,
) -> Result<(), ConfigError> {
    let text = f.text.trim().to_owned();
    if let Some(num) = f.name.strip_prefix("loadInformation") {
        let device_type = if num.is_empty() {
            None
        } else if let Ok(n) = num.parse::<u32>() {
            Some(n)
        } else {
            return Ok(());
        };
        if f.addon {
            if !text.is_empty() {
                cfg.addon_loads.push(text);
            }
        } else if depth == 1 {
            cfg.loads.push(LoadEntry {
                device_type,
                model: f.model,
                load: text,
            });
        }
        return Ok(());
    }
    if f.addon {
        return Ok(());
    }
    let slot = match f.name.as_str() {
        "loadServer" => Some(&mut cfg.load_server),
        "logServer" => Some(&mut cfg.log_server),
        "ipv6LoadServer" => Some(&mut cfg.ipv6_load_server),
        "ipv6LogServer" => Some(&mut cfg.ipv6_log_server),
        _ => None,
    };
    if let Some(slot) = slot {
        if slot.is_none() {
            *slot = Some(text).filter(|s| !s.is_empty());
        }
    } else if f.name == "peerFirmwareSharing" {
        let v = parse_bool("peerFirmwareSharing", &text)?;
        let l = usize::from(f.level.min(2));
        pfs[l] = pfs[l].or(Some(v));
    }
    Ok(())
}

/// `&#NN;`, `&#xNN;` or one of XML's five predefined entities; anything else is refused.
fn resolve_ref(r: &quick_xml::events::BytesRef<'_>, at: u64) -> Result<String, ConfigError> {
    let xml_err = |e: &dyn std::fmt::Display| ConfigError::Xml(format!("{e} (at byte {at})"));
    let resolved = if r.is_char_ref() {
        r.resolve_char_ref()
            .map_err(|e| xml_err(&e))?
            .map(String::from)
    } else {
        quick_xml::escape::resolve_predefined_entity(r).map(str::to_owned)
    };
    resolved.ok_or_else(|| ConfigError::Xml(format!("unknown entity &{}; (at byte {at})", &**r)))
}
