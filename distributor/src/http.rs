//! HTTP for firmware: `pfs origin --http` (a read-only server) and an HTTP/1.1 client for
//! `pfs fetch http://...`.
//!
//! Newer Cisco phones fetch firmware over HTTP from the TFTP server's port 6970 and fall back
//! to TFTP only when HTTP fails; HTTP also lets any web server, cache or CDN be the origin.
//!
//! Server: GET and HEAD, one `Range` per request (206, 416; a request for several ranges gets
//! the whole file, which RFC 9110 allows), a strong `ETag` on every file (size, modification
//! time and inode) and `If-Range` (RFC 9110 13.1.5: the range only while the entity tag still
//! matches, strongly; otherwise, or for a date or a weak tag, the whole file), the same path rules as TFTP ([`crate::origin::resolve`]:
//! `..` and symlinks leading out are refused, directories are not found, nothing is listed),
//! persistent connections with an idle timeout. One thread per connection, bounded by
//! `max_connections`; a connection beyond it gets 503 with `Retry-After`. Bodies go out with
//! `io::copy` from the file (sendfile on Linux). Requests are parsed by `httparse`.
//!
//! Client: one GET per transfer (`Connection: close`), `Range: bytes=OFFSET-` to resume from a
//! verified prefix (with `If-Range: ETAG` when the caller kept the file's strong entity tag,
//! so a file changed since is sent whole rather than spliced), the body streamed to a sink as it arrives; responses parsed by `httparse`.
//! Chunked transfer coding is refused (static file servers send `Content-Length`).

use std::{
    fs::File,
    io::{self, Read, Seek, SeekFrom, Write},
    net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs},
    os::fd::AsRawFd,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use crate::tftp::ErrorCode;

/// The port Cisco phones fetch firmware from over HTTP (the TFTP server's host).
pub const DEFAULT_PORT: u16 = 6970;
/// Largest request or response head accepted.
const MAX_HEAD: usize = 16 << 10;
const MAX_HEADERS: usize = 64;
/// A connection idle this long between requests is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// A client that accepts no body bytes for this long is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub root: PathBuf,
    pub listen: SocketAddr,
    pub max_connections: usize,
}

#[derive(Debug, Default)]
pub struct HttpStats {
    pub requests: AtomicUsize,
    /// 200 and 206 answers.
    pub ok: AtomicUsize,
    pub partial: AtomicUsize,
    /// 4xx answers (bad request, refused path, not found, bad range).
    pub refused: AtomicUsize,
    /// Connections turned away with 503 because `max_connections` were open.
    pub busy: AtomicUsize,
    /// Body bytes sent.
    pub bytes: AtomicUsize,
    pub active_connections: AtomicUsize,
    pub peak_connections: AtomicUsize,
}

/// A running HTTP origin; dropping it stops accepting (open connections end by their idle
/// timeout).
pub struct HttpHandle {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    pub stats: Arc<HttpStats>,
}

impl Drop for HttpHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Parses `--http ADDR`: `HOST:PORT`, or `HOST` alone for port 6970.
pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    let host = s.trim_start_matches('[').trim_end_matches(']');
    host.parse::<std::net::IpAddr>()
        .map(|ip| SocketAddr::new(ip, DEFAULT_PORT))
        .map_err(|_| format!("{s:?}: expected IP[:PORT] (port {DEFAULT_PORT} when omitted)"))
}

/// Binds and starts serving `cfg.root` read-only.
pub fn spawn(cfg: HttpConfig) -> io::Result<HttpHandle> {
    let root = crate::origin::served_root(&cfg.root)?;
    let listener = TcpListener::bind(cfg.listen)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {}: {e}", cfg.listen)))?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let stop = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(HttpStats::default());
    let (stop2, stats2) = (stop.clone(), stats.clone());
    let max = cfg.max_connections.max(1);
    let thread = std::thread::Builder::new()
        .name("pfs-http-accept".into())
        .spawn(move || accept_loop(listener, root, max, &stop2, stats2))?;
    Ok(HttpHandle {
        addr,
        stop,
        thread: Some(thread),
        stats,
    })
}

fn accept_loop(
    listener: TcpListener,
    root: PathBuf,
    max: usize,
    stop: &AtomicBool,
    stats: Arc<HttpStats>,
) {
    let root = Arc::new(root);
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                let _ = stream.set_nonblocking(false);
                let _ = stream.set_nodelay(true);
                let active = stats.active_connections.fetch_add(1, Ordering::Relaxed) + 1;
                if active > max {
                    stats.active_connections.fetch_sub(1, Ordering::Relaxed);
                    stats.busy.fetch_add(1, Ordering::Relaxed);
                    let mut stream = stream;
                    let _ = stream.set_write_timeout(Some(Duration::from_millis(200)));
                    let _ = stream.write_all(
                        b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n\
                          Content-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                    continue;
                }
                stats.peak_connections.fetch_max(active, Ordering::Relaxed);
                let (root, stats2) = (root.clone(), stats.clone());
                let spawned = std::thread::Builder::new()
                    .name("pfs-http-conn".into())
                    .spawn(move || {
                        serve_connection(stream, &root, &stats2);
                        stats2.active_connections.fetch_sub(1, Ordering::Relaxed);
                    });
                if spawned.is_err() {
                    stats.active_connections.fetch_sub(1, Ordering::Relaxed);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let mut pfd = libc::pollfd {
                    fd: listener.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd, for the duration of the call.
                unsafe { libc::poll(&mut pfd, 1, 100) };
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                // EMFILE and the like: back off rather than spin.
                tracing::warn!(%e, "http accept failed");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// What one request asks for, once its head is parsed.
struct Ask {
    head_only: bool,
    keep_alive: bool,
    target: String,
    range: Option<String>,
    if_range: Option<String>,
}

fn serve_connection(mut stream: TcpStream, root: &Path, stats: &HttpStats) {
    let _ = stream.set_read_timeout(Some(IDLE_TIMEOUT));
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    loop {
        // Read until one request head is complete.
        let (ask, used) = loop {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut req = httparse::Request::new(&mut headers);
            match req.parse(&buf) {
                Ok(httparse::Status::Complete(used)) => break (parse_ask(&req), used),
                Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => {}
                Ok(httparse::Status::Partial) => {
                    let _ = respond_empty(&mut stream, 431, "Request Header Fields Too Large");
                    stats.refused.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Err(_) => {
                    let _ = respond_empty(&mut stream, 400, "Bad Request");
                    stats.refused.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        buf.drain(..used);
        stats.requests.fetch_add(1, Ordering::Relaxed);
        let ask = match ask {
            Ok(a) => a,
            Err((code, reason)) => {
                let _ = respond_empty(&mut stream, code, reason);
                stats.refused.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        match answer(&mut stream, root, &ask, stats) {
            Ok(true) if ask.keep_alive => {}
            _ => return,
        }
    }
}

/// The method, target and the headers that matter; a request with a body is refused (this
/// server takes none, and skipping one would mean framing it).
fn parse_ask(req: &httparse::Request) -> Result<Ask, (u16, &'static str)> {
    let head_only = match req.method {
        Some("GET") => false,
        Some("HEAD") => true,
        _ => return Err((405, "Method Not Allowed")),
    };
    let http10 = req.version == Some(0);
    let mut keep_alive = !http10;
    let mut range = None;
    let mut if_range = None;
    for h in req.headers.iter() {
        let value = std::str::from_utf8(h.value).unwrap_or("");
        if h.name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    keep_alive = false;
                } else if token.eq_ignore_ascii_case("keep-alive") && http10 {
                    keep_alive = true;
                }
            }
        } else if h.name.eq_ignore_ascii_case("range") {
            range = Some(value.trim().to_owned());
        } else if h.name.eq_ignore_ascii_case("if-range") {
            if_range = Some(value.trim().to_owned());
        } else if h.name.eq_ignore_ascii_case("transfer-encoding")
            || (h.name.eq_ignore_ascii_case("content-length") && value.trim() != "0")
        {
            return Err((400, "Bad Request"));
        }
    }
    Ok(Ask {
        head_only,
        keep_alive,
        target: req.path.unwrap_or("").to_owned(),
        range,
        if_range,
    })
}

/// Answers one request; `Ok(true)` when the connection may carry another.
fn answer(stream: &mut TcpStream, root: &Path, ask: &Ask, stats: &HttpStats) -> io::Result<bool> {
    // A refused request was well framed (no body): the connection may go on.
    let refuse = |stream: &mut TcpStream, code: u16, reason: &str| {
        stats.refused.fetch_add(1, Ordering::Relaxed);
        if !ask.keep_alive {
            return respond_empty(stream, code, reason).map(|()| false);
        }
        let head = format!("HTTP/1.1 {code} {reason}\r\nContent-Length: 0\r\n\r\n");
        stream.write_all(head.as_bytes()).map(|()| true)
    };
    let Some(path) = request_path(&ask.target) else {
        return refuse(stream, 400, "Bad Request");
    };
    if path.trim_start_matches('/').is_empty() {
        // The root itself: nothing is listed.
        return refuse(stream, 404, "Not Found");
    }
    let file = match crate::origin::resolve(root, &path) {
        Ok(f) => f,
        Err((ErrorCode::AccessViolation, why)) => {
            tracing::info!(%why, "http request refused");
            return refuse(stream, 403, "Forbidden");
        }
        Err(_) => return refuse(stream, 404, "Not Found"),
    };
    let Ok(mut file) = File::open(&file) else {
        return refuse(stream, 404, "Not Found");
    };
    let meta = file.metadata()?;
    let len = meta.len();
    let etag = entity_tag(&meta);
    // If-Range: the range holds only for the representation the client has (a strong match
    // of its entity tag); a date, a weak tag or another tag gets the whole file.
    let range = ask
        .range
        .as_deref()
        .filter(|_| ask.if_range.as_deref().is_none_or(|v| v == etag));
    let (status, start, end) = match range.map(|r| parse_range(r, len)) {
        None | Some(RangeAsk::Whole) => (200, 0, len),
        Some(RangeAsk::Part(s, e)) => (206, s, e),
        Some(RangeAsk::Unsatisfiable) => {
            stats.refused.fetch_add(1, Ordering::Relaxed);
            let head = format!(
                "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{len}\r\n\
                 Content-Length: 0\r\nAccept-Ranges: bytes\r\n\r\n"
            );
            stream.write_all(head.as_bytes())?;
            return Ok(true);
        }
    };
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: application/octet-stream\r\n\
         Accept-Ranges: bytes\r\nETag: {etag}\r\nContent-Length: {}\r\n",
        if status == 206 {
            "Partial Content"
        } else {
            "OK"
        },
        end - start
    );
    if status == 206 {
        head.push_str(&format!(
            "Content-Range: bytes {start}-{}/{len}\r\n",
            end - 1
        ));
    }
    if !ask.keep_alive {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    if status == 206 {
        stats.partial.fetch_add(1, Ordering::Relaxed);
    } else {
        stats.ok.fetch_add(1, Ordering::Relaxed);
    }
    if ask.head_only {
        return Ok(true);
    }
    file.seek(SeekFrom::Start(start))?;
    let sent = io::copy(&mut (&mut file).take(end - start), stream)?;
    stats.bytes.fetch_add(sent as usize, Ordering::Relaxed);
    // A file that shrank under us: the framing promised more, so the connection cannot go on.
    Ok(sent == end - start)
}

/// A strong entity tag for a file as it is now: its size, modification time (ns) and inode,
/// so a file rewritten or replaced (rename) gets a new tag.
fn entity_tag(meta: &std::fs::Metadata) -> String {
    use std::os::unix::fs::MetadataExt;
    let mtime_ns = meta.mtime() as i128 * 1_000_000_000 + i128::from(meta.mtime_nsec());
    format!("\"{:x}-{:x}-{:x}\"", meta.len(), mtime_ns, meta.ino())
}

/// The decoded path of an origin-form target (`/a/b?q`): query dropped, `%XX` decoded.
/// `None` for other forms, bad escapes, NUL or non-UTF-8 names.
fn request_path(target: &str) -> Option<String> {
    if !target.starts_with('/') {
        return None;
    }
    let raw = target.split(['?', '#']).next().unwrap_or("");
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    if out.contains(&0) {
        return None;
    }
    String::from_utf8(out).ok()
}

#[derive(Debug, PartialEq, Eq)]
enum RangeAsk {
    Whole,
    /// [start, end) bytes.
    Part(u64, u64),
    Unsatisfiable,
}

/// One `bytes=` range (RFC 9110 14.1.2). Several ranges, other units and bad syntax are
/// ignored: the whole file is sent.
fn parse_range(value: &str, len: u64) -> RangeAsk {
    let Some(spec) = value.strip_prefix("bytes=") else {
        return RangeAsk::Whole;
    };
    if spec.contains(',') {
        return RangeAsk::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeAsk::Whole;
    };
    let num = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match (first.is_empty(), num(first), num(last)) {
        // bytes=-N: the last N bytes.
        (true, _, Some(n)) => {
            if n == 0 || len == 0 {
                RangeAsk::Unsatisfiable
            } else {
                RangeAsk::Part(len - n.min(len), len)
            }
        }
        (false, Some(a), None) if last.is_empty() => {
            if a >= len {
                RangeAsk::Unsatisfiable
            } else {
                RangeAsk::Part(a, len)
            }
        }
        (false, Some(a), Some(b)) if a <= b => {
            if a >= len {
                RangeAsk::Unsatisfiable
            } else {
                RangeAsk::Part(a, b.min(len - 1) + 1)
            }
        }
        _ => RangeAsk::Whole,
    }
}

/// An answer that ends the connection. The write side closes first and what the client still
/// sends is read and dropped for a moment (bounded), so closing with unread bytes does not
/// reset the connection before the client has read the answer.
fn respond_empty(stream: &mut TcpStream, code: u16, reason: &str) -> io::Result<()> {
    let head =
        format!("HTTP/1.1 {code} {reason}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    stream.write_all(head.as_bytes())?;
    stream.shutdown(std::net::Shutdown::Write)?;
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let mut sink = [0u8; 4096];
    for _ in 0..16 {
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Client

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("bad URL {0:?}: expected http://HOST[:PORT]/PATH")]
    Url(String),
    #[error("cannot resolve {0}")]
    Resolve(String),
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("malformed response: {0}")]
    Malformed(String),
    #[error("server answered {0}")]
    Status(u16),
    #[error("connection closed after {got} of {want} body bytes")]
    Truncated { got: u64, want: u64 },
    #[error("chunked transfer coding is not supported")]
    Chunked,
}

/// `http://HOST[:PORT]/PATH`, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    pub addr: SocketAddr,
    /// What goes in `Host:` (as written in the URL).
    pub authority: String,
    /// The path after the authority, percent-decoded, without its leading `/`; may be empty
    /// (a base URL).
    pub path: String,
}

impl HttpUrl {
    /// Parses `http://HOST[:PORT]/[PATH]` (port 80 when omitted).
    pub fn parse(url: &str) -> Result<HttpUrl, HttpError> {
        let bad = || HttpError::Url(url.to_owned());
        let rest = url.strip_prefix("http://").ok_or_else(bad)?;
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        if authority.is_empty() || authority.contains('@') {
            return Err(bad());
        }
        let with_port = if authority.starts_with('[') {
            if authority.contains("]:") {
                authority.to_owned()
            } else {
                format!("{authority}:80")
            }
        } else if authority.contains(':') {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        let addr = with_port
            .to_socket_addrs()
            .map_err(|_| HttpError::Resolve(authority.to_owned()))?
            .next()
            .ok_or_else(|| HttpError::Resolve(authority.to_owned()))?;
        // The URL's path is percent-encoded; `path` holds the name it stands for, which
        // `encode_path` encodes once on the request line (sent as given, `%2e%2e` reaches
        // the server as `..`, as curl sends it, not as a file literally named `%2e%2e`).
        let path = request_path(&format!("/{path}")).ok_or_else(bad)?;
        Ok(HttpUrl {
            addr,
            authority: authority.to_owned(),
            path: path.trim_start_matches('/').to_owned(),
        })
    }

    /// The same server, another file: `path` joined under this URL's path (a directory).
    pub fn join(&self, name: &str) -> HttpUrl {
        let dir = self.path.trim_end_matches('/');
        let path = if dir.is_empty() {
            name.trim_start_matches('/').to_owned()
        } else {
            format!("{dir}/{}", name.trim_start_matches('/'))
        };
        HttpUrl {
            path,
            ..self.clone()
        }
    }
}

impl std::fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "http://{}/{}", self.authority, self.path)
    }
}

/// Where a GET's body goes: each piece with its offset in the file.
pub type Sink<'a, E> = dyn FnMut(u64, &[u8]) -> Result<(), E> + 'a;

/// What a GET delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetReport {
    /// Where the bytes handed to the sink start in the file: the offset asked for, or 0 when
    /// the server ignored the range (the sink then got the file from its start).
    pub start: u64,
    /// Body bytes handed to the sink.
    pub bytes: u64,
    /// The file's size, when the server said.
    pub total: Option<u64>,
    /// The file's strong entity tag, when the server gave one (for `If-Range` on a resume).
    pub etag: Option<String>,
}

/// Percent-encodes a path for the request line (unreserved characters and `/` as they are).
fn encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len() + 1);
    out.push('/');
    for &b in path.trim_start_matches('/').as_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One GET of `url` from byte `offset` (`Range: bytes=OFFSET-` when above 0), the body handed
/// to `sink` as it arrives, with the file offset of each piece (from 0 when the server ignored
/// the range and sent the whole file). A 416 whose `Content-Range` says the file is `offset` bytes long is
/// an empty success (the prefix was already the whole file).
pub fn get<E: From<HttpError>>(
    url: &HttpUrl,
    offset: u64,
    timeout: Duration,
    sink: &mut Sink<'_, E>,
) -> Result<GetReport, E> {
    let stream = TcpStream::connect_timeout(&url.addr, timeout).map_err(HttpError::from)?;
    get_on(stream, url, offset, timeout, sink)
}

/// [`get`] resuming a file whose strong entity tag the caller kept: `If-Range: if_range` with
/// the range, so a server whose file has changed sends it whole from 0 (the sink sees offset 0).
/// `on_etag` hears the response's strong entity tag before the first body byte reaches the
/// sink, so a caller can keep it with the bytes even if the transfer breaks.
pub fn get_resume<E: From<HttpError>>(
    url: &HttpUrl,
    offset: u64,
    if_range: Option<&str>,
    on_etag: &mut dyn FnMut(&str) -> Result<(), E>,
    timeout: Duration,
    sink: &mut Sink<'_, E>,
) -> Result<GetReport, E> {
    let stream = TcpStream::connect_timeout(&url.addr, timeout).map_err(HttpError::from)?;
    get_with(stream, url, offset, if_range, on_etag, timeout, sink)
}

/// [`get`] on a stream already connected to `url`'s server (made, for example, inside a
/// phone's network namespace).
pub fn get_on<E: From<HttpError>>(
    stream: TcpStream,
    url: &HttpUrl,
    offset: u64,
    timeout: Duration,
    sink: &mut Sink<'_, E>,
) -> Result<GetReport, E> {
    get_with(stream, url, offset, None, &mut |_| Ok(()), timeout, sink)
}

/// A strong entity tag (`"..."`, not `W/"..."`): the only kind `If-Range` may carry.
fn strong_etag(v: &str) -> Option<&str> {
    (v.len() >= 2 && v.starts_with('"') && v.ends_with('"')).then_some(v)
}

fn get_with<E: From<HttpError>>(
    mut stream: TcpStream,
    url: &HttpUrl,
    offset: u64,
    if_range: Option<&str>,
    on_etag: &mut dyn FnMut(&str) -> Result<(), E>,
    timeout: Duration,
    sink: &mut Sink<'_, E>,
) -> Result<GetReport, E> {
    send_get(&mut stream, url, offset, if_range, timeout)?;
    let mut buf = vec![0u8; 64 << 10];
    let Head {
        status,
        head_len,
        filled,
        length,
        content_range,
        etag,
    } = read_head(&mut stream, &mut buf)?;
    let (start, total) = match status {
        200 => (0, length),
        206 => {
            let (s, t) = content_range
                .as_deref()
                .and_then(parse_content_range)
                .ok_or_else(|| {
                    HttpError::Malformed(format!("206 with Content-Range {content_range:?}"))
                })?;
            if s != offset {
                return Err(
                    HttpError::Malformed(format!("asked from {offset}, got from {s}")).into(),
                );
            }
            (s, t)
        }
        416 if offset > 0 => {
            let total = content_range
                .as_deref()
                .and_then(|v| v.strip_prefix("bytes */"))
                .and_then(|t| t.parse::<u64>().ok());
            if total == Some(offset) {
                return Ok(GetReport {
                    start: offset,
                    bytes: 0,
                    total,
                    etag,
                });
            }
            return Err(HttpError::Status(416).into());
        }
        s => return Err(HttpError::Status(s).into()),
    };
    if let Some(tag) = &etag {
        on_etag(tag)?;
    }
    let got = read_body(&mut stream, &mut buf, head_len..filled, length, start, sink)?;
    Ok(GetReport {
        start,
        bytes: got,
        total,
        etag,
    })
}

/// Sends the GET for `url` (from `offset`, `If-Range: if_range` when it is a strong tag), with
/// `timeout` on every read and write of `stream` from now on.
fn send_get(
    stream: &mut TcpStream,
    url: &HttpUrl,
    offset: u64,
    if_range: Option<&str>,
    timeout: Duration,
) -> Result<(), HttpError> {
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let _ = stream.set_nodelay(true);
    let mut req = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: pfs/{}\r\nAccept: */*\r\nConnection: close\r\n",
        encode_path(&url.path),
        url.authority,
        env!("CARGO_PKG_VERSION")
    );
    if offset > 0 {
        req.push_str(&format!("Range: bytes={offset}-\r\n"));
        if let Some(tag) = if_range.and_then(strong_etag) {
            req.push_str(&format!("If-Range: {tag}\r\n"));
        }
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes())?;
    Ok(())
}

/// Streams the body into `sink` (at `start` onwards): first what came with the head
/// (`buf[head]`), then reads until `length` bytes or, without a length, the end of the stream.
/// Returns the bytes delivered.
fn read_body<E: From<HttpError>>(
    stream: &mut TcpStream,
    buf: &mut [u8],
    head: std::ops::Range<usize>,
    length: Option<u64>,
    start: u64,
    sink: &mut Sink<'_, E>,
) -> Result<u64, E> {
    let mut got = 0u64;
    let mut pending = &buf[head];
    loop {
        if let Some(want) = length {
            let take = pending.len().min((want - got) as usize);
            pending = &pending[..take];
        }
        if !pending.is_empty() {
            sink(start + got, pending)?;
            got += pending.len() as u64;
        }
        if length.is_some_and(|want| got >= want) {
            break;
        }
        let n = stream.read(buf).map_err(HttpError::from)?;
        if n == 0 {
            if let Some(want) = length {
                return Err(HttpError::Truncated { got, want }.into());
            }
            break;
        }
        pending = &buf[..n];
    }
    Ok(got)
}

mod head;
use head::{Head, parse_content_range, read_head};

#[cfg(test)]
mod tests;
