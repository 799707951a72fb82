//! `cargo xtask sizes`: no source file over [`MAX_FILE_LINES`] lines and no function over
//! [`MAX_FN_LINES`], except a function marked as a codec table (its doc comment, or a comment
//! just above it, says "codec table" and which table). Part of `cargo xtask test`.
//!
//! A ratchet: what was over the limits when they were introduced is listed in
//! `xtask/size-exceptions.txt` with its size then; a listed item may shrink, never grow, and an
//! item back within the limits must leave the list (`cargo xtask sizes --update` rewrites it,
//! refusing anything new or grown). Anything not listed must be within the limits.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use syn::visit::Visit;

pub const MAX_FILE_LINES: usize = 800;
pub const MAX_FN_LINES: usize = 100;
/// Where the project's Rust sources live (build outputs and fuzz corpora excluded).
const ROOTS: &[&str] = &[
    "common",
    "proto",
    "distributor",
    "ebpf",
    "xtask",
    "benches",
    "fuzz/fuzz_targets",
];

/// One function or method with its first and last line.
struct Span {
    name: String,
    start: usize,
    end: usize,
}

#[derive(Default)]
struct Functions(Vec<Span>);

impl Functions {
    fn push(&mut self, name: String, span: proc_macro2::Span) {
        self.0.push(Span {
            name,
            start: span.start().line,
            end: span.end().line,
        });
    }
}

impl<'ast> Visit<'ast> for Functions {
    fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
        let span = syn::spanned::Spanned::span(f);
        self.push(f.sig.ident.to_string(), span);
        syn::visit::visit_item_fn(self, f);
    }
    fn visit_impl_item_fn(&mut self, f: &'ast syn::ImplItemFn) {
        let span = syn::spanned::Spanned::span(f);
        self.push(f.sig.ident.to_string(), span);
        syn::visit::visit_impl_item_fn(self, f);
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = e?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path.is_dir() {
            if !matches!(name, "target" | "corpus" | "artifacts" | "coverage") {
                rust_files(&path, out)?;
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
    Ok(())
}

/// One item over a limit: (path, function or "-" for the file), its lines, and where.
struct Over {
    key: String,
    lines: usize,
    at: String,
}

/// Every item over a limit.
fn violations(root: &Path) -> Result<Vec<Over>> {
    let mut files = Vec::new();
    for r in ROOTS {
        rust_files(&root.join(r), &mut files)?;
    }
    files.sort();
    let mut found = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path)?;
        let shown = path
            .strip_prefix(root)
            .unwrap_or(&path)
            .display()
            .to_string();
        let lines: Vec<&str> = text.lines().collect();
        if lines.len() > MAX_FILE_LINES {
            found.push(Over {
                key: format!("{shown} -"),
                lines: lines.len(),
                at: format!("{shown}: {} lines (max {MAX_FILE_LINES})", lines.len()),
            });
        }
        let ast = syn::parse_file(&text).with_context(|| format!("parsing {shown}"))?;
        let mut fns = Functions::default();
        fns.visit_file(&ast);
        for f in fns.0 {
            let len = f.end + 1 - f.start;
            // The marker sits in the doc comment (part of the item's span) or just above it.
            let near = &lines[f.start.saturating_sub(4)..(f.start + 8).min(lines.len())];
            let table = near.iter().any(|l| l.contains("codec table"));
            if len > MAX_FN_LINES && !table {
                found.push(Over {
                    key: format!("{shown} {}", f.name),
                    lines: len,
                    at: format!(
                        "{shown}:{}: fn {} is {len} lines (max {MAX_FN_LINES})",
                        f.start, f.name
                    ),
                });
            }
        }
    }
    Ok(found)
}

const EXCEPTIONS: &str = "xtask/size-exceptions.txt";

fn exceptions(root: &Path) -> Result<std::collections::BTreeMap<String, usize>> {
    let text = std::fs::read_to_string(root.join(EXCEPTIONS)).unwrap_or_default();
    let mut map = std::collections::BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let (key, n) = line
            .rsplit_once(' ')
            .context("size-exceptions: `path item lines`")?;
        map.insert(
            key.to_owned(),
            n.parse().context("size-exceptions: a line count")?,
        );
    }
    Ok(map)
}

/// Checks the limits against the exceptions; with `update`, rewrites the exceptions with the
/// current sizes (only if nothing is new or grown).
pub fn check(root: &Path, update: bool) -> Result<()> {
    let found = violations(root)?;
    let allowed = exceptions(root)?;
    let mut errors = Vec::new();
    for o in &found {
        match allowed.get(&o.key) {
            None => errors.push(format!("{} (not an exception)", o.at)),
            Some(&max) if o.lines > max => errors.push(format!("{} (grew from {max})", o.at)),
            Some(_) => {}
        }
    }
    let stale: Vec<_> = allowed
        .keys()
        .filter(|k| !found.iter().any(|o| &o.key == *k))
        .collect();
    if update && (errors.is_empty() || !root.join(EXCEPTIONS).exists()) {
        let mut text = String::from(
            "# Over the size limits when `cargo xtask sizes` came in: may shrink, never grow.\n\
             # `path item lines`; item `-` is the whole file. Rewritten by `cargo xtask sizes --update`.\n",
        );
        for o in &found {
            text.push_str(&format!("{} {}\n", o.key, o.lines));
        }
        std::fs::write(root.join(EXCEPTIONS), text)?;
        eprintln!(
            "xtask sizes: {} exception(s) written to {EXCEPTIONS}",
            found.len()
        );
        return Ok(());
    }
    for s in &stale {
        errors.push(format!(
            "{s}: within the limits now; remove it from {EXCEPTIONS} (cargo xtask sizes --update)"
        ));
    }
    for e in &errors {
        eprintln!("xtask sizes: {e}");
    }
    if !errors.is_empty() {
        bail!("{} size problem(s), see above", errors.len());
    }
    eprintln!(
        "xtask sizes: files <= {MAX_FILE_LINES} lines, functions <= {MAX_FN_LINES}, {} listed exception(s)",
        found.len()
    );
    Ok(())
}
