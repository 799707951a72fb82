//! Helpers shared by the integration tests.
#![allow(dead_code)]

/// Whether an external program is installed. Under `CI=true` a missing one is a failure.
pub fn tool(name: &str) -> bool {
    let found = std::process::Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!(
                "{name} is missing and CI=true forbids skipping (cargo xtask setup installs it)"
            );
        }
        eprintln!("SKIPPED: {name} not installed (cargo xtask setup installs it)");
    }
    found
}

/// Whether a test that needs root, namespaces and BPF can run here. Under `CI=true` a missing
/// privilege is a failure, never a skip.
pub fn privileged(test: &str) -> bool {
    if pfs::netns::can_create() {
        return true;
    }
    let why = "needs root and iproute2 (network namespaces, XDP)";
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: {why}, and CI=true forbids skipping");
    }
    eprintln!("SKIPPED {test}: {why}");
    false
}

/// Kills the process when the test ends however it ends.
pub struct Guard(pub std::process::Child);
impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An empty scratch directory for this test process.
pub fn scratch(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("pfs-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The real tftpd-hpa serving `root` in the site's `hq` namespace.
pub fn start_tftpd(site: &pfs::topology::Site, root: &std::path::Path) -> Guard {
    use std::process::{Command, Stdio};
    let child = Command::new("ip")
        .args(["netns", "exec", site.hq.name(), "in.tftpd", "--foreground"])
        .args(["--listen", "--address"])
        .arg(format!("{}:69", pfs::topology::ORIGIN_ADDR))
        .arg("--secure")
        .arg(root)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start in.tftpd");
    Guard(child)
}

/// The `<text>` elements of an SVG: (x, y, content).
pub fn svg_texts(svg: &str) -> Vec<(f64, f64, String)> {
    let attr = |tag: &str, name: &str| -> Option<f64> {
        let at = tag.find(&format!(" {name}=\""))? + name.len() + 3;
        tag[at..].split('"').next()?.parse().ok()
    };
    let mut out = Vec::new();
    let mut rest = svg;
    while let Some(start) = rest.find("<text") {
        rest = &rest[start..];
        let Some(open_end) = rest.find('>') else {
            break;
        };
        let Some(close) = rest.find("</text>") else {
            break;
        };
        let tag = &rest[..open_end];
        let body = rest[open_end + 1..close].trim().to_owned();
        if let (Some(x), Some(y)) = (attr(tag, "x"), attr(tag, "y")) {
            out.push((x, y, body));
        }
        rest = &rest[close..];
    }
    out
}

/// Whether `s` reads as a tick label: a number or an IPv4 address.
pub fn is_tick_label(s: &str) -> bool {
    s.parse::<f64>().is_ok() || s.parse::<std::net::Ipv4Addr>().is_ok()
}

/// Axes in an SVG plot: (x axes, y axes). An x axis is a row (same y) of at least three tick
/// labels; a panel's y axis is a column (same x) of at least three tick labels between its x
/// axis and the x axis above it (stacked panels share their columns).
pub fn svg_axes(svg: &str) -> (usize, usize) {
    use std::collections::BTreeMap;
    let ticks: Vec<(i64, i64)> = svg_texts(svg)
        .into_iter()
        .filter(|(_, _, t)| is_tick_label(t))
        .map(|(x, y, _)| (x.round() as i64, y.round() as i64))
        .collect();
    let mut rows: BTreeMap<i64, usize> = BTreeMap::new();
    for (_, y) in &ticks {
        *rows.entry(*y).or_default() += 1;
    }
    let x_axes: Vec<i64> = rows
        .into_iter()
        .filter(|&(_, n)| n >= 3)
        .map(|(y, _)| y)
        .collect();
    let mut y_axes = 0;
    let mut above = i64::MIN;
    for &row in &x_axes {
        let mut cols: BTreeMap<i64, usize> = BTreeMap::new();
        for (x, y) in &ticks {
            if *y > above && *y < row {
                *cols.entry(*x).or_default() += 1;
            }
        }
        y_axes += usize::from(cols.values().any(|&n| n >= 3));
        above = row;
    }
    (x_axes.len(), y_axes)
}

/// Renders `svg` to PNG with rsvg-convert (a real SVG renderer); returns the PNG's size in
/// pixels. Panics with the renderer's message when it rejects the file.
pub fn render_svg(svg: &std::path::Path) -> (u32, u32) {
    let png = svg.with_extension("png");
    let out = std::process::Command::new("rsvg-convert")
        .arg("-o")
        .arg(&png)
        .arg(svg)
        .output()
        .expect("run rsvg-convert");
    assert!(
        out.status.success(),
        "rsvg-convert rejected {}: {}",
        svg.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(&png).expect("the PNG");
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    let be = |i: usize| u32::from_be_bytes(bytes[i..i + 4].try_into().unwrap());
    (be(16), be(20))
}

/// Every SVG the lab wrote into `dir` renders, and every plot's axes carry tick labels: at
/// least `panels` x axes and as many y axes (one panel per run for the per-run plots).
pub fn check_lab_report(dir: &std::path::Path, runs: usize) {
    let md = std::fs::read_to_string(dir.join("report.md")).expect("report.md");
    for plot in pfs::report::LAB_PLOTS {
        let path = dir.join(plot);
        let svg = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{plot}: {e}"));
        assert!(md.contains(&format!("({plot})")), "report.md shows {plot}");
        let (w, h) = render_svg(&path);
        assert!(w >= 400 && h >= 100, "{plot} renders at {w}x{h}");
        let panels = match plot {
            "cdf.svg" => 1,
            "wan.svg" | "timeline.svg" => runs,
            _ => 0,
        };
        let (xs, ys) = svg_axes(&svg);
        assert!(
            xs >= panels && ys >= panels,
            "{plot}: {xs} x axes and {ys} y axes with tick labels, want {panels} each"
        );
        for debug_name in ["StoreAndForward", "Pipelined", "Traditional", "Some("] {
            assert!(!svg.contains(debug_name), "{plot} shows {debug_name}");
        }
    }
    assert!(
        !md.contains("StoreAndForward") && !md.contains("Some("),
        "{md}"
    );
}

/// Runs `pfs lab ARGS --json`, which must succeed; its report (the last line), checked
/// against docs/report.md.
pub fn lab_json(args: &[&str]) -> serde_json::Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pfs"))
        .arg("lab")
        .args(args)
        .arg("--json")
        .output()
        .expect("run pfs lab");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "pfs lab {args:?} failed:\n{stdout}\n{stderr}"
    );
    let r: serde_json::Value = serde_json::from_str(stdout.lines().last().expect("a report"))
        .unwrap_or_else(|e| panic!("{e}: {stdout}"));
    check_against_doc("lab", &r);
    r
}

/// `json` (one report of `kind`) holds exactly the fields `docs/report.md` documents for it.
pub fn check_against_doc(kind: &str, json: &serde_json::Value) {
    use pfs::report::schema;
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/report.md"))
        .expect("docs/report.md");
    let fields = schema::doc_fields(&doc).remove(kind).unwrap_or_default();
    let documented: std::collections::BTreeSet<String> =
        fields.iter().map(|f| f.path.clone()).collect();
    let seen = schema::field_paths(json, &schema::map_paths(&fields));
    let undocumented: Vec<_> = seen.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "{kind}: not in docs/report.md: {undocumented:?}"
    );
    assert_eq!(json["schema_version"], schema::SCHEMA_VERSION);
    assert_eq!(json["kind"], kind);
    // Fields a report may leave out (skipped when empty or unset) are documented but may be
    // absent; everything a full report has is checked by the crate's own schema test.
}

/// Which module's tests run now, and how many of them.
static GROUP: std::sync::Mutex<(Option<&'static str>, usize)> = std::sync::Mutex::new((None, 0));
static GROUP_CHANGED: std::sync::Condvar = std::sync::Condvar::new();

/// Held by a test while it runs.
pub struct GroupGuard;

/// Waits until no other module's test runs, then lets this one run beside its own module's
/// (`group` is the module path). Never deadlocks: a waiting test only waits for running ones.
pub fn group(group: &'static str) -> GroupGuard {
    let mut g = GROUP.lock().unwrap_or_else(|p| p.into_inner());
    while g.1 > 0 && g.0 != Some(group) {
        g = GROUP_CHANGED.wait(g).unwrap_or_else(|p| p.into_inner());
    }
    *g = (Some(group), g.1 + 1);
    GroupGuard
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        let mut g = GROUP.lock().unwrap_or_else(|p| p.into_inner());
        assert!(g.1 > 0, "a group guard without a count");
        g.1 -= 1;
        if g.1 == 0 {
            g.0 = None;
            GROUP_CHANGED.notify_all();
        }
    }
}
