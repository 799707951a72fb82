//! docs/protocol.md against the code: the defaults table lists every field of the core's
//! `Config` with its default value, and nothing else.

use std::collections::BTreeMap;

use pfs_proto::phone::Config;

/// `Config { mode: Pipelined, fanout: 2, ... }` as field -> value text.
fn config_fields() -> BTreeMap<String, String> {
    let text = format!("{:?}", Config::default());
    let inner = text
        .strip_prefix("Config { ")
        .and_then(|t| t.strip_suffix(" }"))
        .expect("Config's derived Debug");
    inner
        .split(", ")
        .map(|kv| {
            let (k, v) = kv.split_once(": ").expect("field: value");
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

/// The defaults table: `| \`field\` | value | ...` rows.
fn doc_rows() -> BTreeMap<String, String> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/protocol.md"))
        .expect("docs/protocol.md");
    let section = doc.split("## Defaults").nth(1).expect("a Defaults section");
    section
        .lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let field = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
            Some((field.to_owned(), cells.get(2)?.to_string()))
        })
        .collect()
}

/// A documented value in the code's terms: times in µs, numbers bare, names lower-case.
fn normalise(doc: &str) -> String {
    let parse = |n: &str| n.parse::<f64>().unwrap_or_else(|_| panic!("value {doc:?}"));
    if let Some(ms) = doc.strip_suffix(" ms") {
        return format!("{}", (parse(ms) * 1e3) as u64);
    }
    if let Some(s) = doc.strip_suffix(" s") {
        return format!("{}", (parse(s) * 1e6) as u64);
    }
    doc.replace('-', "").to_ascii_lowercase()
}

#[test]
fn the_defaults_table_is_the_cores_config() {
    let code = config_fields();
    let doc = doc_rows();
    assert!(code.len() > 20, "{code:?}");
    let missing: Vec<_> = code.keys().filter(|k| !doc.contains_key(*k)).collect();
    assert!(
        missing.is_empty(),
        "Config fields missing from the table: {missing:?}"
    );
    let unknown: Vec<_> = doc.keys().filter(|k| !code.contains_key(*k)).collect();
    assert!(
        unknown.is_empty(),
        "table rows that are no Config field: {unknown:?}"
    );
    for (field, value) in &code {
        assert_eq!(
            normalise(&doc[field]),
            value.to_ascii_lowercase(),
            "docs/protocol.md says {field} = {}, the code {value}",
            doc[field]
        );
    }
}
