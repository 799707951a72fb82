//! One JSON schema for the `lab`, `simulate`, `fleet` and `peer` reports.
//!
//! Every report object starts with `schema_version` and `kind`; `docs/report.md` documents every
//! field with its type and unit, in one table per kind. [`doc_fields`] reads those tables and
//! [`field_paths`] lists what a serialized report holds, so a test can hold the two together.

use std::collections::{BTreeMap, BTreeSet};

/// Bumped when a field changes meaning or unit, or goes away (adding a field does not).
pub const SCHEMA_VERSION: u32 = 1;

/// The report kinds, as `kind` spells them (and the `##` headings of `docs/report.md`).
pub const KINDS: [&str; 4] = ["lab", "simulate", "fleet", "peer"];

/// `report` as one JSON line that starts with `schema_version` and `kind`, the report's own
/// fields after them in their declared order.
pub fn to_json_line<T: serde::Serialize>(kind: &str, report: &T) -> serde_json::Result<String> {
    let body = serde_json::to_string(report)?;
    let head = format!(
        "{{\"schema_version\":{SCHEMA_VERSION},\"kind\":{}",
        serde_json::to_string(kind)?
    );
    Ok(match body.strip_prefix('{') {
        Some("}") => format!("{head}}}"),
        Some(rest) => format!("{head},{rest}"),
        None => {
            return Err(serde::ser::Error::custom(
                "a report must serialize as a JSON object",
            ));
        }
    })
}

/// One documented field: its path (`files[].role`, `trees.*[].phone`), type and unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocField {
    pub path: String,
    pub ty: String,
    pub unit: String,
    pub meaning: String,
}

/// The documented fields per kind, from `docs/report.md`'s text: every table row whose first
/// cell is a backticked path, under a `## ` heading naming a kind (`## \`lab\``) or
/// `## Every report` (fields every kind has).
pub fn doc_fields(markdown: &str) -> BTreeMap<String, Vec<DocField>> {
    let mut out: BTreeMap<String, Vec<DocField>> = BTreeMap::new();
    let mut section: Option<String> = None;
    for line in markdown.lines() {
        if let Some(h) = line.strip_prefix("## ") {
            let h = h.trim().trim_matches('`').to_lowercase();
            section = if h.starts_with("every report") {
                Some("*".into())
            } else if KINDS.contains(&h.as_str()) {
                Some(h)
            } else {
                None
            };
            continue;
        }
        let Some(kind) = &section else { continue };
        let cells: Vec<&str> = line
            .trim()
            .trim_matches('|')
            .split('|')
            .map(str::trim)
            .collect();
        if !line.trim_start().starts_with('|') || cells.len() < 4 {
            continue;
        }
        let Some(path) = cells[0].strip_prefix('`').and_then(|c| c.strip_suffix('`')) else {
            continue;
        };
        out.entry(kind.clone()).or_default().push(DocField {
            path: path.to_owned(),
            ty: cells[1].to_owned(),
            unit: cells[2].to_owned(),
            meaning: cells[3..].join("|"),
        });
    }
    if let Some(common) = out.remove("*") {
        for k in KINDS {
            out.entry(k.to_owned()).or_default().extend(common.clone());
        }
    }
    out
}

/// Every field path in `v`: object keys joined with `.`, array items as `[]`; under a path in
/// `maps` (objects keyed by data, e.g. hierarchy names) the keys read `*`.
pub fn field_paths(v: &serde_json::Value, maps: &BTreeSet<String>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack: Vec<(String, &serde_json::Value)> = vec![(String::new(), v)];
    while let Some((path, v)) = stack.pop() {
        match v {
            serde_json::Value::Object(m) => {
                for (k, child) in m {
                    let key = if maps.contains(&path) {
                        "*"
                    } else {
                        k.as_str()
                    };
                    let p = if path.is_empty() {
                        key.to_owned()
                    } else {
                        format!("{path}.{key}")
                    };
                    out.insert(p.clone());
                    stack.push((p, child));
                }
            }
            serde_json::Value::Array(items) => {
                for item in items.iter().filter(|i| i.is_object() || i.is_array()) {
                    stack.push((format!("{path}[]"), item));
                }
            }
            _ => {}
        }
    }
    out.retain(|p| !p.is_empty());
    out
}

/// Fields documented as `map`: their keys are data, not names.
pub fn map_paths(fields: &[DocField]) -> BTreeSet<String> {
    fields
        .iter()
        .filter(|f| f.ty.starts_with("map"))
        .map(|f| f.path.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::{
        fleet::{Completions, FleetReport},
        lab::{LabReport, TreeNode},
        peer::{FileReport, PeerReport},
        phone::Mode,
        report::{PhoneTime, WanSample},
    };

    const DOC: &str = include_str!("../../../docs/report.md");

    fn lab_sample() -> LabReport {
        let a = Ipv4Addr::new(198, 19, 0, 2);
        let mut trees = BTreeMap::new();
        trees.insert(
            "CP-7961G/app.bin".to_owned(),
            vec![TreeNode {
                phone: a,
                parent: Some(a),
                depth: 1,
                role: "member".into(),
            }],
        );
        LabReport {
            mode: Mode::Pipelined.into(),
            origin_resent_blocks: Some(3),
            origin_peak_sessions: Some(12),
            fallbacks_by_reason: BTreeMap::from([("no_peer".to_owned(), 1)]),
            origin_switches: BTreeMap::from([("http_to_tftp".to_owned(), 1)]),
            lan_mbit: Some(100.0),
            wan_rtt_ms: Some(100.0),
            wan_rtt_ping_ms: Some(100.4),
            wan_delay_late_max_ms: Some(0.3),
            wan_delay_dropped: Some(0),
            host_tuning: vec![("net.core.rmem_max".into(), 1, 2)],
            trees,
            completions: vec![1.0],
            wan_samples: vec![WanSample {
                t_s: 0.1,
                tx_bytes: 10,
            }],
            phone_times: vec![PhoneTime {
                phone: a,
                model: "CP-7961G".into(),
                installed_s: Some(1.0),
                fallbacks: 0,
            }],
            messages_sent: BTreeMap::from([("Advert".to_owned(), 3)]),
            pcap_frames: Some(3),
            pcap_dropped: Some(0),
            fault_events: vec![crate::faults::FaultEvent {
                phone: a,
                kind: "cut",
                why: "planned",
                at_s: 1.0,
                orphans: 2,
            }],
            commands: vec!["udp-sender --file x".into()],
            ..LabReport::default()
        }
    }

    fn sim_sample() -> crate::sim::Report {
        crate::sim::run(&crate::sim::SimConfig {
            phones: 8,
            ..crate::sim::SimConfig::default()
        })
    }

    fn fleet_sample() -> FleetReport {
        FleetReport {
            phones: 2,
            completed: 2,
            corrupt_installs: 0,
            load_bytes: 1,
            origin_bytes: 2,
            elapsed_s: 1.0,
            goodput_mbit: 1.0,
            completion: Completions::default(),
            origin_refused: 0,
            origin_timeouts: 0,
            origin_errors: 0,
            origin_switches: BTreeMap::from([("http_to_tftp".to_owned(), 1)]),
            prepare_s: 0.1,
            max_turn_ms: 1.0,
            backend: "io_uring".into(),
            peer_bytes: 3,
            roots: BTreeMap::from([(
                "CP-7961G/app.bin".to_owned(),
                vec![Ipv4Addr::new(198, 18, 1, 1)],
            )]),
            completions: vec![1.0],
        }
    }

    fn peer_sample() -> PeerReport {
        PeerReport {
            peer: Ipv4Addr::new(198, 19, 0, 2),
            model: "CP-7961G".into(),
            load: "SIP41.9-4-2SR3-1S".into(),
            mode: Mode::Pipelined,
            installed: true,
            seconds: 1.0,
            files: vec![FileReport {
                parent: Some(Ipv4Addr::new(198, 19, 0, 3)),
                installed_s: Some(1.0),
                origin_switches: BTreeMap::from([("http_to_tftp".to_owned(), 1)]),
                ..FileReport::default()
            }],
            engine: Default::default(),
            udp_received: 1,
            udp_undecodable: 0,
            udp_foreign: 0,
            xdp: Some(serde_json::json!({"claim_root": 1})),
            messages_sent: BTreeMap::from([("Advert".to_owned(), 3)]),
        }
    }

    /// What the binary prints for each kind: the real serializer on a sample report.
    fn emitted() -> BTreeMap<&'static str, serde_json::Value> {
        let line = |kind, s: String| (kind, serde_json::from_str(&s).unwrap());
        BTreeMap::from([
            line("lab", to_json_line("lab", &lab_sample()).unwrap()),
            line("simulate", to_json_line("simulate", &sim_sample()).unwrap()),
            line("fleet", to_json_line("fleet", &fleet_sample()).unwrap()),
            line("peer", to_json_line("peer", &peer_sample()).unwrap()),
        ])
    }

    #[test]
    fn every_emitted_field_is_documented_and_every_documented_field_emitted() {
        let doc = doc_fields(DOC);
        let mut problems = Vec::new();
        for (kind, json) in emitted() {
            let fields = doc.get(kind).cloned().unwrap_or_default();
            let documented: BTreeSet<String> = fields.iter().map(|f| f.path.clone()).collect();
            let seen = field_paths(&json, &map_paths(&fields));
            for p in seen.difference(&documented) {
                problems.push(format!(
                    "{kind}: `{p}` is emitted but not in docs/report.md"
                ));
            }
            for p in documented.difference(&seen) {
                problems.push(format!("{kind}: `{p}` is documented but not emitted"));
            }
            for f in &fields {
                if f.ty.is_empty() || f.unit.is_empty() || f.meaning.trim().is_empty() {
                    problems.push(format!(
                        "{kind}: `{}` lacks a type, unit or meaning",
                        f.path
                    ));
                }
            }
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    #[test]
    fn reports_start_with_the_schema_version_and_kind() {
        for (kind, json) in emitted() {
            assert_eq!(json["schema_version"], SCHEMA_VERSION, "{kind}");
            assert_eq!(json["kind"], kind);
        }
        let line = to_json_line("peer", &peer_sample()).unwrap();
        assert!(line.starts_with("{\"schema_version\":1,\"kind\":\"peer\",\"peer\":"));
        assert_eq!(
            to_json_line("x", &serde_json::json!({})).unwrap(),
            "{\"schema_version\":1,\"kind\":\"x\"}"
        );
        assert!(to_json_line("x", &1).is_err());
    }

    #[test]
    fn documented_types_match_what_is_emitted() {
        // A field documented as a number, string, bool or array must hold one (or null when
        // its type says `or null`).
        let doc = doc_fields(DOC);
        let mut problems = Vec::new();
        for (kind, json) in emitted() {
            for f in doc.get(kind).into_iter().flatten() {
                if f.path.contains('[') || f.path.contains('*') || f.path.contains('.') {
                    continue; // nested: the key check above covers them
                }
                let v = &json[f.path.as_str()];
                let ty = f.ty.to_lowercase();
                let ok = (v.is_null() && ty.contains("null"))
                    || (v.is_u64() && (ty.starts_with("integer") || ty.starts_with("number")))
                    || (v.is_f64() && ty.starts_with("number"))
                    || (v.is_string() && ty.starts_with("string"))
                    || (v.is_boolean() && ty.starts_with("boolean"))
                    || (v.is_array() && ty.starts_with("array"))
                    || (v.is_object() && (ty.starts_with("object") || ty.starts_with("map")));
                if !ok {
                    problems.push(format!(
                        "{kind}: `{}` is {v} but documented as {}",
                        f.path, f.ty
                    ));
                }
            }
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    #[test]
    fn paths_walk_objects_arrays_and_maps() {
        let v = serde_json::json!({
            "a": 1, "files": [{"role": "root"}], "trees": {"m/f": [{"phone": "x"}]}, "t": [[1, 2]]
        });
        let maps = BTreeSet::from(["trees".to_owned()]);
        let got: Vec<String> = field_paths(&v, &maps).into_iter().collect();
        assert_eq!(
            got,
            [
                "a",
                "files",
                "files[].role",
                "t",
                "trees",
                "trees.*",
                "trees.*[].phone"
            ]
        );
    }
}
