//! `pfs origin`, `pfs fetch`, `pfs fetch-load`: origins and their clients.

use super::*;

#[derive(Args, Debug)]
pub(super) struct FetchLoadArgs {
    /// tftp://HOST[:PORT]/DIR or http://HOST[:PORT]/DIR (DIR holds pfs-manifest.json and the
    /// files; over HTTP a file partly in the store continues with Range)
    url: String,
    /// The phone's store directory.
    #[arg(long)]
    store: std::path::PathBuf,
    /// Require a manifest signed by this key.
    #[arg(long)]
    public_key: Option<std::path::PathBuf>,
    #[arg(long, default_value_t = pfs::tftp::client::ClientConfig::default().blksize, value_parser = clap::value_parser!(u16).range(8..=65464))]
    blksize: u16,
    #[arg(long, default_value_t = pfs::tftp::client::ClientConfig::default().windowsize, value_parser = clap::value_parser!(u16).range(1..))]
    windowsize: u16,
    /// The load the phone's configuration names: fetch pfs-manifest.<LOAD>.json (written by
    /// `pfs manifest DIR --all`) instead of pfs-manifest.json.
    #[arg(long)]
    load: Option<String>,
}

#[derive(Args, Debug)]
pub(super) struct OriginArgs {
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9464).
    #[arg(long, value_name = "ADDR")]
    metrics: Option<std::net::SocketAddr>,
    /// Directory served; nothing outside it is reachable.
    #[arg(long)]
    root: std::path::PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:6969")]
    listen: std::net::SocketAddr,
    /// Concurrent transfers; more are refused with "server busy".
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    max_sessions: u32,
    /// Largest windowsize granted.
    #[arg(long, default_value_t = pfs::tftp::server::ServerConfig::default().max_window, value_parser = clap::value_parser!(u16).range(1..))]
    max_window: u16,
    /// Also serve the root read-only over HTTP at IP[:PORT] (port 6970 when omitted, where
    /// Cisco phones look): GET, HEAD, one Range, the same path rules, no listing. The
    /// packaged service sets it from PFS_ORIGIN_HTTP in /etc/default/pfs-origin (empty: off).
    #[arg(long, value_name = "ADDR", value_parser = parse_http_listen, env = "PFS_ORIGIN_HTTP")]
    http: Option<HttpListen>,
    /// Concurrent HTTP connections; more get 503 with Retry-After.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    http_max_connections: u32,
}

/// `--http` / PFS_ORIGIN_HTTP: IP[:PORT], or empty for off (an unset setting in
/// /etc/default/pfs-origin reaches the program as an empty variable).
pub(super) fn parse_http_listen(s: &str) -> Result<HttpListen, String> {
    if s.trim().is_empty() {
        return Ok(HttpListen(None));
    }
    pfs::http::parse_listen(s.trim()).map(|a| HttpListen(Some(a)))
}

/// Where `pfs origin` serves HTTP; `None`: off.
#[derive(Debug, Clone, Copy)]
pub(super) struct HttpListen(Option<std::net::SocketAddr>);

#[derive(Args, Debug)]
pub(super) struct FetchArgs {
    /// tftp://HOST[:PORT]/PATH or http://HOST[:PORT]/PATH
    url: String,
    /// Output file (written atomically).
    #[arg(short, long)]
    output: std::path::PathBuf,
    #[arg(long, default_value_t = pfs::tftp::client::ClientConfig::default().blksize, value_parser = clap::value_parser!(u16).range(8..=65464))]
    blksize: u16,
    #[arg(long, default_value_t = pfs::tftp::client::ClientConfig::default().windowsize, value_parser = clap::value_parser!(u16).range(1..))]
    windowsize: u16,
    /// Retransmission timeout.
    #[arg(long, default_value_t = pfs::tftp::client::ClientConfig::default().timeout / 1000, value_parser = clap::value_parser!(u64).range(10..=255_000))]
    timeout_ms: u64,
    #[arg(long, default_value_t = pfs::tftp::client::ClientConfig::default().max_retries, value_parser = clap::value_parser!(u32).range(0..=100))]
    retries: u32,
    /// Ask for each window as soon as the last is in (plain RFC 7440), instead of pacing
    /// window requests by a congestion window that halves on loss.
    #[arg(long)]
    fixed_window: bool,
    /// http:// only: keep a partial download (.NAME.pfs-partial next to the output) when the
    /// transfer fails, and continue one found there with `Range` instead of starting over.
    #[arg(long)]
    resume: bool,
}

pub(super) fn run_origin(a: OriginArgs) -> anyhow::Result<ExitCode> {
    start_metrics(a.metrics)?;
    let handle = pfs::origin::spawn(pfs::origin::OriginConfig {
        root: a.root.clone(),
        listen: a.listen,
        max_sessions: a.max_sessions as usize,
        session: pfs::tftp::server::ServerConfig {
            max_window: a.max_window,
            ..Default::default()
        },
    })?;
    pfs::metrics::set_origin(handle.stats.clone());
    eprintln!("serving {} read-only on {}", a.root.display(), handle.addr);
    let _http = match a.http.and_then(|h| h.0) {
        Some(listen) => {
            let h = pfs::http::spawn(pfs::http::HttpConfig {
                root: a.root.clone(),
                listen,
                max_connections: a.http_max_connections as usize,
            })?;
            pfs::metrics::set_origin_http(h.stats.clone());
            eprintln!(
                "serving {} read-only on http://{}/",
                a.root.display(),
                h.addr
            );
            Some(h)
        }
        None => None,
    };
    loop {
        std::thread::park();
    }
}

pub(super) fn run_fetch(a: FetchArgs) -> anyhow::Result<ExitCode> {
    if a.url.starts_with("http://") {
        let url = pfs::http::HttpUrl::parse(&a.url)?;
        let timeout = std::time::Duration::from_millis(a.timeout_ms.max(1000) * 10);
        let report = pfs::fetch::fetch_http(&url, &a.output, a.resume, timeout)
            .map_err(|e| anyhow::anyhow!("{url}: {e}"))?;
        eprintln!(
            "{} bytes in {:.3} s ({:.1} Mbit/s){}",
            report.bytes,
            report.seconds,
            report.bytes as f64 * 8.0 / report.seconds.max(1e-9) / 1e6,
            if report.resumed_from > 0 {
                format!(", resumed from byte {}", report.resumed_from)
            } else {
                String::new()
            }
        );
        return Ok(ExitCode::SUCCESS);
    }
    anyhow::ensure!(!a.resume, "--resume is for http:// URLs");
    let (server, path) = pfs::fetch::parse_url(&a.url)?;
    let cfg = pfs::tftp::client::ClientConfig {
        blksize: a.blksize,
        windowsize: a.windowsize,
        timeout: a.timeout_ms * 1000,
        max_retries: a.retries,
        adaptive: !a.fixed_window,
        ..Default::default()
    };
    let report = pfs::fetch::fetch(server, &path, &a.output, cfg)?;
    eprintln!(
        "{} bytes in {:.3} s ({:.1} Mbit/s)",
        report.bytes,
        report.seconds,
        report.bytes as f64 * 8.0 / report.seconds.max(1e-9) / 1e6
    );
    Ok(ExitCode::SUCCESS)
}

/// `pfs fetch-load`: what a root does, the `.loads` first, then every file, verified.
pub(super) fn run_fetch_load(a: FetchLoadArgs) -> anyhow::Result<ExitCode> {
    let key = a
        .public_key
        .as_deref()
        .map(pfs::manifest::read_verifying_key)
        .transpose()?;
    let cfg = pfs::tftp::client::ClientConfig {
        blksize: a.blksize,
        windowsize: a.windowsize,
        ..Default::default()
    };
    let store = pfs::store::Store::new(&a.store);
    let r = pfs::fetch::fetch_named_load_url(&a.url, a.load.as_deref(), &store, key.as_ref(), cfg)?;
    println!(
        "{}: {} files, {} bytes verified and active in {:.2} s",
        r.load, r.files, r.bytes, r.seconds
    );
    Ok(ExitCode::SUCCESS)
}
