//! `--metrics ADDR`: `/metrics` in the Prometheus text format (0.0.4), encoded by the
//! `prometheus-client` crate, served by a small HTTP responder on its own thread.
//!
//! The phones' event loops never wait on a scrape: every loop publishes a snapshot of its
//! phones ([`observe`], at most once a second, and at the end of a run) to a process-wide
//! board, and a scrape encodes the board. Counters of finished runs (`pfs lab --compare`) are
//! kept, so counters only grow; gauges (roles, children) describe the running phones.

use std::{
    collections::{BTreeMap, HashMap},
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{Arc, Mutex, OnceLock, atomic::Ordering},
    thread::ThreadId,
    time::{Duration, Instant},
};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{counter::ConstCounter, gauge::ConstGauge},
    registry::Registry,
};

use crate::{engine::EngineStats, origin::OriginStats};

/// One phone at one moment, what the metrics need of it.
#[derive(Debug, Clone, Default)]
pub struct PhoneSample {
    pub model: String,
    pub installed: bool,
    pub files: Vec<FileSample>,
    pub engine: EngineStats,
    pub messages_sent: BTreeMap<String, u64>,
    /// Datagrams received on the election socket, undecodable, for other hierarchies.
    pub udp: [u64; 3],
}

#[derive(Debug, Clone, Default)]
pub struct FileSample {
    pub file: String,
    pub role: &'static str,
    pub origin_bytes: u64,
    pub peer_bytes: u64,
    pub chunks_verified: u64,
    pub chunks_rejected: u64,
    /// Children it streams to now.
    pub children: u64,
    /// Fallbacks to the origin by reason.
    pub fallbacks: BTreeMap<String, u64>,
}

type Labels = Vec<(&'static str, String)>;
type Series = BTreeMap<(&'static str, Labels), u64>;

/// Every metric: name (counters without `_total`, which the encoder adds), help, counter?
const METRICS: &[(&str, &str, bool)] = &[
    ("pfs_phones", "Phones running in this process.", false),
    (
        "pfs_phones_installed",
        "Phones that installed a verified load.",
        false,
    ),
    (
        "pfs_bytes_from_origin",
        "Firmware bytes fetched from the origin (TFTP), per hierarchy.",
        true,
    ),
    (
        "pfs_bytes_from_peers",
        "Firmware bytes received from parents (TCP 4051), per hierarchy.",
        true,
    ),
    (
        "pfs_chunks_verified",
        "Chunks verified against the manifest, per hierarchy.",
        true,
    ),
    (
        "pfs_chunks_rejected",
        "Chunks that failed verification (dropped, parent blacklisted), per hierarchy.",
        true,
    ),
    ("pfs_role", "Phones in each role, per hierarchy.", false),
    (
        "pfs_children",
        "Children being streamed to, per hierarchy.",
        false,
    ),
    ("pfs_fallbacks", "Fallbacks to the origin, by reason.", true),
    (
        "pfs_messages_sent",
        "pfs messages sent, by type (docs/protocol.md names).",
        true,
    ),
    (
        "pfs_udp_received",
        "Datagrams that reached the election socket.",
        true,
    ),
    (
        "pfs_udp_undecodable",
        "Datagrams on the election socket that were not valid pfs messages.",
        true,
    ),
    (
        "pfs_udp_foreign",
        "Election datagrams for other models' hierarchies.",
        true,
    ),
    ("pfs_engine_sends", "Sends issued by the I/O engine.", true),
    ("pfs_engine_zc_sends", "Zero-copy sends (SEND_ZC).", true),
    (
        "pfs_engine_zc_copied",
        "Zero-copy sends the kernel copied anyway.",
        true,
    ),
    ("pfs_engine_bytes_sent", "Bytes sent on streams.", true),
    (
        "pfs_engine_bytes_received",
        "Bytes received on streams.",
        true,
    ),
    (
        "pfs_engine_stalled_cutoffs",
        "Connections closed because the other end stopped reading.",
        true,
    ),
    (
        "pfs_origin_sessions",
        "Transfers the origin serves now.",
        false,
    ),
    (
        "pfs_origin_sessions_peak",
        "Most transfers the origin served at once.",
        false,
    ),
    (
        "pfs_origin_transfers",
        "Origin transfers ended, by result (ok, failed).",
        true,
    ),
    (
        "pfs_origin_refused",
        "Requests the origin refused (busy, not found, ...).",
        true,
    ),
    (
        "pfs_origin_timeouts",
        "Origin transfers abandoned after the client went silent.",
        true,
    ),
    (
        "pfs_origin_resent_blocks",
        "DATA blocks the origin sent more than once.",
        true,
    ),
    ("pfs_origin_bytes_sent", "Bytes the origin served.", true),
    (
        "pfs_origin_http_connections",
        "HTTP connections the origin has open now (`pfs origin --http`).",
        false,
    ),
    (
        "pfs_origin_http_connections_peak",
        "Most HTTP connections the origin had open at once.",
        false,
    ),
    (
        "pfs_origin_http_requests",
        "HTTP requests the origin answered, by result (ok, partial, refused, busy).",
        true,
    ),
    (
        "pfs_origin_http_bytes_sent",
        "Body bytes the origin served over HTTP.",
        true,
    ),
    (
        "pfs_xdp_packets",
        "Datagrams the XDP program counted, by counter.",
        true,
    ),
];

/// What a scrape reads.
#[derive(Default)]
struct Board {
    /// The last snapshot of each event loop (thread) running now.
    live: HashMap<ThreadId, Vec<PhoneSample>>,
    /// Counters of loops that finished.
    retired: Series,
    origin: Option<Arc<OriginStats>>,
    origin_http: Option<Arc<crate::http::HttpStats>>,
    xdp: Option<XdpSource>,
}

type XdpSource = Box<dyn Fn() -> BTreeMap<String, u64> + Send>;

static BOARD: OnceLock<Mutex<Board>> = OnceLock::new();

/// Whether `--metrics` is on in this process.
pub fn enabled() -> bool {
    BOARD.get().is_some()
}

fn board() -> Option<std::sync::MutexGuard<'static, Board>> {
    BOARD
        .get()
        .map(|b| b.lock().unwrap_or_else(|e| e.into_inner()))
}

/// Publishes this thread's phones (replacing its previous snapshot).
pub fn publish(samples: Vec<PhoneSample>) {
    if let Some(mut b) = board() {
        b.live.insert(std::thread::current().id(), samples);
    }
}

/// This thread's loop ended: its counters stay, its gauges go.
pub fn retire() {
    if let Some(mut b) = board()
        && let Some(samples) = b.live.remove(&std::thread::current().id())
    {
        let (counters, _) = aggregate(&samples);
        for (k, v) in counters {
            *b.retired.entry(k).or_default() += v;
        }
    }
}

/// Calls `sample` and publishes at most once a second (`last`: when this loop last did).
pub fn observe<T>(last: &mut Option<Instant>, items: &[T], sample: impl Fn(&T) -> PhoneSample) {
    if !enabled() || last.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
        return;
    }
    *last = Some(Instant::now());
    publish(items.iter().map(sample).collect());
}

/// The origin whose counters `/metrics` shows (`pfs origin`, the lab's embedded origin).
pub fn set_origin(stats: Arc<OriginStats>) {
    if let Some(mut b) = board() {
        b.origin = Some(stats);
    }
}

/// The HTTP side of the origin (`pfs origin --http`).
pub fn set_origin_http(stats: Arc<crate::http::HttpStats>) {
    if let Some(mut b) = board() {
        b.origin_http = Some(stats);
    }
}

/// Where `/metrics` reads XDP counters at each scrape (`--xdp`).
pub fn set_xdp(read: impl Fn() -> BTreeMap<String, u64> + Send + 'static) {
    if let Some(mut b) = board() {
        b.xdp = Some(Box::new(read));
    }
}

fn hier(model: &str, file: &str) -> Labels {
    vec![("model", model.to_owned()), ("file", file.to_owned())]
}

/// (counters, gauges) over `samples`.
fn aggregate(samples: &[PhoneSample]) -> (Series, Series) {
    let (mut c, mut g) = (Series::new(), Series::new());
    let add = |s: &mut Series, name: &'static str, labels: Labels, v: u64| {
        *s.entry((name, labels)).or_default() += v;
    };
    for p in samples {
        add(&mut g, "pfs_phones", vec![], 1);
        add(
            &mut g,
            "pfs_phones_installed",
            vec![],
            u64::from(p.installed),
        );
        for f in &p.files {
            let h = hier(&p.model, &f.file);
            add(&mut c, "pfs_bytes_from_origin", h.clone(), f.origin_bytes);
            add(&mut c, "pfs_bytes_from_peers", h.clone(), f.peer_bytes);
            add(&mut c, "pfs_chunks_verified", h.clone(), f.chunks_verified);
            add(&mut c, "pfs_chunks_rejected", h.clone(), f.chunks_rejected);
            add(&mut g, "pfs_children", h.clone(), f.children);
            let mut r = h;
            r.push(("role", f.role.to_owned()));
            add(&mut g, "pfs_role", r, 1);
            for (reason, n) in &f.fallbacks {
                add(
                    &mut c,
                    "pfs_fallbacks",
                    vec![("reason", reason.clone())],
                    *n,
                );
            }
        }
        for (ty, n) in &p.messages_sent {
            add(&mut c, "pfs_messages_sent", vec![("type", ty.clone())], *n);
        }
        for (name, v) in [
            ("pfs_udp_received", p.udp[0]),
            ("pfs_udp_undecodable", p.udp[1]),
            ("pfs_udp_foreign", p.udp[2]),
            ("pfs_engine_sends", p.engine.sends),
            ("pfs_engine_zc_sends", p.engine.zc_sends),
            ("pfs_engine_zc_copied", p.engine.zc_copied),
            ("pfs_engine_bytes_sent", p.engine.bytes_sent),
            ("pfs_engine_bytes_received", p.engine.bytes_received),
            ("pfs_engine_stalled_cutoffs", p.engine.stalled_cutoffs),
        ] {
            add(&mut c, name, vec![], v);
        }
    }
    (c, g)
}

/// Every series of a scrape: (counters, gauges).
fn snapshot() -> (Series, Series) {
    let Some(b) = board() else {
        return Default::default();
    };
    let live: Vec<PhoneSample> = b.live.values().flatten().cloned().collect();
    let (mut c, mut g) = aggregate(&live);
    for (k, v) in &b.retired {
        *c.entry(k.clone()).or_default() += v;
    }
    if let Some(o) = &b.origin {
        let n = |a: &std::sync::atomic::AtomicUsize| a.load(Ordering::Relaxed) as u64;
        g.insert(("pfs_origin_sessions", vec![]), n(&o.active_sessions));
        g.insert(("pfs_origin_sessions_peak", vec![]), n(&o.peak_sessions));
        for (result, v) in [("ok", &o.transfers_ok), ("failed", &o.transfers_failed)] {
            c.insert(
                ("pfs_origin_transfers", vec![("result", result.to_owned())]),
                n(v),
            );
        }
        c.insert(("pfs_origin_refused", vec![]), n(&o.refused));
        c.insert(("pfs_origin_timeouts", vec![]), n(&o.timeouts));
        c.insert(("pfs_origin_resent_blocks", vec![]), n(&o.resent_blocks));
        c.insert(("pfs_origin_bytes_sent", vec![]), n(&o.bytes));
    }
    if let Some(h) = &b.origin_http {
        let n = |a: &std::sync::atomic::AtomicUsize| a.load(Ordering::Relaxed) as u64;
        g.insert(
            ("pfs_origin_http_connections", vec![]),
            n(&h.active_connections),
        );
        g.insert(
            ("pfs_origin_http_connections_peak", vec![]),
            n(&h.peak_connections),
        );
        for (result, v) in [
            ("ok", &h.ok),
            ("partial", &h.partial),
            ("refused", &h.refused),
            ("busy", &h.busy),
        ] {
            c.insert(
                (
                    "pfs_origin_http_requests",
                    vec![("result", result.to_owned())],
                ),
                n(v),
            );
        }
        c.insert(("pfs_origin_http_bytes_sent", vec![]), n(&h.bytes));
    }
    if let Some(read) = &b.xdp {
        for (counter, v) in read() {
            c.insert(("pfs_xdp_packets", vec![("counter", counter)]), v);
        }
    }
    (c, g)
}

#[derive(Debug)]
struct PfsCollector;

impl Collector for PfsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let (counters, gauges) = snapshot();
        for &(name, help, is_counter) in METRICS {
            let series = if is_counter { &counters } else { &gauges };
            let mut rows = series
                .range((name, Labels::new())..)
                .take_while(|((n, _), _)| *n == name);
            let Some(first) = rows.next() else {
                continue;
            };
            let ty = if is_counter {
                ConstCounter::new(0u64).metric_type()
            } else {
                ConstGauge::new(0i64).metric_type()
            };
            let mut family = encoder.encode_descriptor(name, help, None, ty)?;
            for ((_, labels), v) in std::iter::once(first).chain(rows) {
                let m = family.encode_family(labels)?;
                if is_counter {
                    ConstCounter::new(*v).encode(m)?;
                } else {
                    ConstGauge::new(*v as i64).encode(m)?;
                }
            }
        }
        Ok(())
    }
}

/// The `/metrics` body now.
pub fn render() -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(PfsCollector));
    let mut out = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)
        .expect("encoding into a String");
    out
}

/// Turns `--metrics` on and serves `/metrics` on `addr` from a thread for the life of the
/// process; returns the bound address.
pub fn serve(addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    let _ = BOARD.set(Mutex::new(Board::default()));
    std::thread::Builder::new()
        .name("pfs-metrics".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                if let Err(e) = answer(stream) {
                    tracing::debug!("metrics request: {e}");
                }
            }
        })?;
    Ok(bound)
}

/// Reads one request (at most 8 KiB, 5 s) and answers it; the connection then closes.
fn answer(mut s: TcpStream) -> std::io::Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut buf = vec![0u8; 8192];
    let mut have = 0;
    let path = loop {
        let n = s.read(&mut buf[have..])?;
        if n == 0 {
            return Ok(());
        }
        have += n;
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf[..have]) {
            Ok(httparse::Status::Complete(_)) => {
                break (
                    req.method.unwrap_or("").to_owned(),
                    req.path.unwrap_or("").to_owned(),
                );
            }
            Ok(httparse::Status::Partial) if have < buf.len() => continue,
            _ => {
                return respond(&mut s, "400 Bad Request", "text/plain", "bad request\n");
            }
        }
    };
    match (path.0.as_str(), path.1.split('?').next().unwrap_or("")) {
        ("GET", "/metrics") => respond(
            &mut s,
            "200 OK",
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            &render(),
        ),
        ("GET", _) => respond(&mut s, "404 Not Found", "text/plain", "try /metrics\n"),
        _ => respond(&mut s, "405 Method Not Allowed", "text/plain", "GET only\n"),
    }
}

fn respond(s: &mut TcpStream, status: &str, ty: &str, body: &str) -> std::io::Result<()> {
    write!(
        s,
        "HTTP/1.1 {status}\r\nContent-Type: {ty}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    s.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregates_per_hierarchy_and_role() {
        let f = |role, children| FileSample {
            file: "a.sbn".into(),
            role,
            origin_bytes: 10,
            peer_bytes: 5,
            chunks_verified: 2,
            chunks_rejected: 0,
            children,
            fallbacks: BTreeMap::from([("no_peer".into(), 1)]),
        };
        let p = |role, children| PhoneSample {
            model: "CP-7961G".into(),
            installed: true,
            files: vec![f(role, children)],
            messages_sent: BTreeMap::from([("Advert".into(), 3)]),
            ..Default::default()
        };
        let (c, g) = aggregate(&[p("root", 2), p("member", 0)]);
        let h = hier("CP-7961G", "a.sbn");
        assert_eq!(c[&("pfs_bytes_from_origin", h.clone())], 20);
        assert_eq!(
            c[&("pfs_messages_sent", vec![("type", "Advert".into())])],
            6
        );
        assert_eq!(c[&("pfs_fallbacks", vec![("reason", "no_peer".into())])], 2);
        assert_eq!(g[&("pfs_children", h.clone())], 2);
        let mut r = h;
        r.push(("role", "root".into()));
        assert_eq!(g[&("pfs_role", r)], 1);
        assert_eq!(g[&("pfs_phones", vec![])], 2);
    }

    #[test]
    fn every_metric_has_help_and_a_unique_name() {
        let names: std::collections::BTreeSet<_> = METRICS.iter().map(|m| m.0).collect();
        assert_eq!(names.len(), METRICS.len());
        assert!(
            METRICS
                .iter()
                .all(|m| m.0.starts_with("pfs_") && !m.1.is_empty())
        );
    }
}
