//! `--metrics`: a real Prometheus server scrapes a running `pfs serve` on loopback, and a
//! counter reads back through its query API; `promtool check metrics` accepts the exposition.

use crate::common;

use std::{
    io::{Read, Write},
    net::TcpStream,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

/// A free loopback port (bound and released; the race is harmless in a test).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// GET `path` from 127.0.0.1:`port`: (status line, body).
fn get(port: u16, path: &str) -> std::io::Result<(String, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    Ok((
        head.lines().next().unwrap_or("").to_owned(),
        body.to_owned(),
    ))
}

/// Retries `f` every 250 ms for up to `secs`.
fn eventually<T>(secs: u64, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn prometheus_scrapes_a_serving_peer() {
    let _group = crate::common::group(module_path!());
    if !common::tool("prometheus") || !common::tool("promtool") {
        return;
    }
    let dir = common::scratch("metrics");
    let load = dir.join("load");
    let st = Command::new(env!("CARGO_BIN_EXE_pfs"))
        .args(["-q", "load", "synth", "--out"])
        .arg(&load)
        .status()
        .unwrap();
    assert!(st.success());
    let (metrics, prom, pfs_port) = (free_port(), free_port(), free_port());
    let _serve = common::Guard(
        Command::new(env!("CARGO_BIN_EXE_pfs"))
            .args(["-q", "serve", "--iface", "lo", "--load"])
            .arg(&load)
            .args(["--port", &pfs_port.to_string()])
            .args(["--metrics", &format!("127.0.0.1:{metrics}")])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // The peer's own answer, checked by promtool.
    let body = eventually(20, || {
        get(metrics, "/metrics")
            .ok()
            .filter(|(status, b)| status.contains("200") && b.contains("pfs_messages_sent_total"))
            .map(|(_, b)| b)
    })
    .expect("pfs serve answers /metrics with its adverts counted");
    assert!(
        body.contains("# TYPE pfs_chunks_verified_total counter"),
        "{body}"
    );
    assert!(body.contains("pfs_role{model=\"CP-7961G\""), "{body}");
    assert_promtool_accepts(&body);
    assert_eq!(
        get(metrics, "/nothing").unwrap().0.split(' ').nth(1),
        Some("404")
    );

    // A real Prometheus scraping it every second.
    let _prometheus = start_prometheus(&dir, metrics, prom);
    let query = "/api/v1/query?query=pfs_messages_sent_total%7Btype%3D%22Advert%22%7D";
    let adverts = eventually(40, || {
        let (_, body) = get(prom, query).ok()?;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        let n: f64 = v["data"]["result"][0]["value"][1].as_str()?.parse().ok()?;
        (n > 0.0).then_some(n)
    })
    .expect("Prometheus scraped the peer and answers for its Advert counter");
    assert!(adverts >= 1.0);
    let up = get(prom, "/api/v1/query?query=up%7Bjob%3D%22pfs%22%7D")
        .unwrap()
        .1;
    assert!(up.contains("\"1\""), "the scrape target is up: {up}");
    drop(_prometheus);
    drop(_serve);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `promtool check metrics` accepts `body`.
fn assert_promtool_accepts(body: &str) {
    let mut check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    check
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Prometheus on 127.0.0.1:`prom`, its data under `dir`, scraping 127.0.0.1:`metrics` every
/// second.
fn start_prometheus(dir: &std::path::Path, metrics: u16, prom: u16) -> common::Guard {
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  \
             - job_name: pfs\n    static_configs:\n      - targets: ['127.0.0.1:{metrics}']\n"
        ),
    )
    .unwrap();
    common::Guard(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}
