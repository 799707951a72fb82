//! `pfs fetch`: download one file over TFTP into `out`, atomically (temp file, fsync, rename).

use std::{
    fs::{self, File},
    io::{self, Write},
    net::{SocketAddr, ToSocketAddrs, UdpSocket},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use crate::tftp::{
    client::{ClientAction, ClientConfig, ClientError, ClientSession},
    packet::{ErrorCode, error},
};

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("tftp://{server}/{file}: manifest rejected")]
    Manifest {
        server: SocketAddr,
        file: String,
        #[source]
        source: crate::manifest::ManifestError,
    },
    #[error("tftp://{server}/{file}: not installed")]
    Store {
        server: SocketAddr,
        file: String,
        #[source]
        source: crate::store::StoreError,
    },
    #[error("tftp://{server}/{file}: {why}")]
    Loads {
        server: SocketAddr,
        file: String,
        why: String,
    },
    #[error("bad URL {0:?}: expected tftp://HOST[:PORT]/PATH or http://HOST[:PORT]/PATH")]
    Url(String),
    #[error("cannot resolve {0}")]
    Resolve(String),
    #[error("tftp://{server}/{file}")]
    Transfer {
        server: SocketAddr,
        file: String,
        #[source]
        source: ClientError,
    },
    #[error("{url}")]
    Http {
        url: String,
        #[source]
        source: crate::http::HttpError,
    },
    #[error("tftp://{server}/{file}")]
    Io {
        server: SocketAddr,
        file: String,
        #[source]
        source: io::Error,
    },
}

/// Parses `tftp://HOST[:PORT]/PATH`.
pub fn parse_url(url: &str) -> Result<(SocketAddr, String), FetchError> {
    match parse_base_url(url)? {
        (_, path) if path.is_empty() => Err(FetchError::Url(url.to_owned())),
        parsed => Ok(parsed),
    }
}

/// Parses `tftp://HOST[:PORT]/[DIR]`: like [`parse_url`], but the path may be empty (a load
/// at the server's root).
pub fn parse_base_url(url: &str) -> Result<(SocketAddr, String), FetchError> {
    let bad = || FetchError::Url(url.to_owned());
    let rest = url.strip_prefix("tftp://").ok_or_else(bad)?;
    let (host, path) = rest.split_once('/').ok_or_else(bad)?;
    if host.is_empty() {
        return Err(bad());
    }
    let with_port = if host.starts_with('[') {
        if host.contains("]:") {
            host.to_owned()
        } else {
            format!("{host}:69")
        }
    } else if host.contains(':') {
        host.to_owned()
    } else {
        format!("{host}:69")
    };
    let addr = with_port
        .to_socket_addrs()
        .map_err(|_| FetchError::Resolve(host.to_owned()))?
        .next()
        .ok_or_else(|| FetchError::Resolve(host.to_owned()))?;
    Ok((addr, path.to_owned()))
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct FetchReport {
    pub bytes: u64,
    pub seconds: f64,
}

/// Fetches `file` from `server` into `out`.
pub fn fetch(
    server: SocketAddr,
    file: &str,
    out: &Path,
    cfg: ClientConfig,
) -> Result<FetchReport, FetchError> {
    let io_err = |source| FetchError::Io {
        server,
        file: file.to_owned(),
        source,
    };
    let tmp = temp_path(out);
    let result = fetch_into(server, file, &tmp, cfg);
    match result {
        Ok(report) => {
            fs::rename(&tmp, out).map_err(io_err)?;
            if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
                File::open(dir).and_then(|d| d.sync_all()).map_err(io_err)?;
            }
            Ok(report)
        }
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// What [`fetch_http`] did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HttpFetchReport {
    /// Bytes received in this run.
    pub bytes: u64,
    pub seconds: f64,
    /// Bytes of an earlier partial download kept (0: started from the beginning).
    pub resumed_from: u64,
}

/// The partial file a resumable HTTP fetch keeps next to `out`.
pub fn resume_path(out: &Path) -> PathBuf {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    out.with_file_name(format!(".{name}.pfs-partial"))
}

/// Where a resumable HTTP fetch keeps the strong entity tag of the file its partial file holds
/// a prefix of (sent as `If-Range` on the resume).
pub fn resume_etag_path(out: &Path) -> PathBuf {
    let mut p = resume_path(out).into_os_string();
    p.push(".etag");
    PathBuf::from(p)
}

/// Fetches `url` into `out` over HTTP, atomically (temp file, fsync, rename), streaming the
/// body to disk. With `resume`, a partial file left by an earlier run is continued with
/// `Range: bytes=LEN-` and, when that run kept the file's strong entity tag
/// ([`resume_etag_path`]), `If-Range: TAG`: a file changed since comes whole and replaces the
/// partial one rather than being spliced onto it (as does a server that ignores the range);
/// a failed run leaves its partial file and tag for the next.
pub fn fetch_http(
    url: &crate::http::HttpUrl,
    out: &Path,
    resume: bool,
    timeout: Duration,
) -> Result<HttpFetchReport, crate::http::HttpError> {
    use crate::http::{HttpError, get_resume};
    let tag_path = resume_etag_path(out);
    let tmp = if resume {
        resume_path(out)
    } else {
        temp_path(out)
    };
    let started = Instant::now();
    let run = || -> Result<HttpFetchReport, HttpError> {
        use std::os::unix::fs::FileExt;
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(!resume)
            .write(true)
            .open(&tmp)?;
        let have = file.metadata()?.len();
        // Bytes gather in a buffer written at their file offset (a 200 to a range request
        // starts again at 0).
        let mut pending: Vec<u8> = Vec::with_capacity(1 << 20);
        let mut pending_at = have;
        let kept = if resume && have > 0 {
            fs::read_to_string(&tag_path).ok()
        } else {
            None
        };
        // The tag goes to disk before the first byte: a broken run leaves both for the next.
        let mut keep_tag = |tag: &str| -> Result<(), HttpError> {
            if resume && kept.as_deref().map(str::trim) != Some(tag) {
                fs::write(&tag_path, tag)?;
            }
            Ok(())
        };
        let if_range = kept.as_deref().map(str::trim);
        let mut sink = |at, data: &[u8]| -> Result<(), HttpError> {
            if at != pending_at + pending.len() as u64 || pending.len() >= 1 << 20 {
                file.write_all_at(&pending, pending_at)?;
                pending.clear();
                pending_at = at;
            }
            pending.extend_from_slice(data);
            Ok(())
        };
        let report = get_resume(url, have, if_range, &mut keep_tag, timeout, &mut sink)?;
        file.write_all_at(&pending, pending_at)?;
        let len = report.start + report.bytes;
        file.set_len(len)?;
        if let Some(total) = report.total.filter(|&t| t != len) {
            return Err(HttpError::Malformed(format!(
                "file is {total} bytes, have {len}"
            )));
        }
        file.sync_all()?;
        Ok(HttpFetchReport {
            bytes: report.bytes,
            seconds: started.elapsed().as_secs_f64(),
            resumed_from: report.start,
        })
    };
    match run() {
        Ok(report) => {
            fs::rename(&tmp, out)?;
            let _ = fs::remove_file(&tag_path);
            if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
                File::open(dir).and_then(|d| d.sync_all())?;
            }
            Ok(report)
        }
        Err(e) => {
            if !resume {
                let _ = fs::remove_file(&tmp);
            }
            Err(e)
        }
    }
}

fn temp_path(out: &Path) -> PathBuf {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    out.with_file_name(format!(".{name}.pfs-partial-{}", std::process::id()))
}

fn fetch_into(
    server: SocketAddr,
    file: &str,
    tmp: &Path,
    cfg: ClientConfig,
) -> Result<FetchReport, FetchError> {
    let io_err = |source| FetchError::Io {
        server,
        file: file.to_owned(),
        source,
    };
    let mut output = io::BufWriter::with_capacity(1 << 20, File::create(tmp).map_err(io_err)?);
    let report = transfer(server, file, cfg, &mut |data| {
        output.write_all(data).map_err(io_err)
    })?;
    let f = output.into_inner().map_err(|e| io_err(e.into_error()))?;
    f.sync_all().map_err(io_err)?;
    Ok(report)
}

/// Runs one TFTP read, handing the file's bytes to `sink` in order.
pub fn transfer(
    server: SocketAddr,
    file: &str,
    cfg: ClientConfig,
    sink: &mut dyn FnMut(&[u8]) -> Result<(), FetchError>,
) -> Result<FetchReport, FetchError> {
    transfer_with(server, file, cfg, sink, &mut |_, _| {})
}

/// [`transfer`], telling `restarted` when the transfer falls back to a smaller blksize
/// (fragments that never arrive; see [`ClientAction::Restart`]). The fallback is logged here.
pub fn transfer_with(
    server: SocketAddr,
    file: &str,
    cfg: ClientConfig,
    sink: &mut dyn FnMut(&[u8]) -> Result<(), FetchError>,
    restarted: &mut dyn FnMut(u16, &'static str),
) -> Result<FetchReport, FetchError> {
    let io_err = |source| FetchError::Io {
        server,
        file: file.to_owned(),
        source,
    };
    let bind: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0".parse().expect("literal")
    } else {
        "[::]:0".parse().expect("literal")
    };
    let open = || -> io::Result<UdpSocket> {
        let socket = UdpSocket::bind(bind)?;
        grow_receive_buffer(&socket);
        Ok(socket)
    };
    let mut socket = open().map_err(io_err)?;
    let mut session = ClientSession::new(cfg, file);
    let start = Instant::now();
    let now = || start.elapsed().as_micros() as u64;
    let mut out = Vec::new();
    let mut peer: Option<SocketAddr> = None;
    let mut deadline = 0;
    let mut buf = vec![0u8; 65_536 + 4];
    session.start(now(), &mut out);
    loop {
        for action in out.drain(..) {
            match action {
                ClientAction::Send(bytes) => {
                    socket
                        .send_to(&bytes, peer.unwrap_or(server))
                        .map_err(io_err)?;
                }
                ClientAction::Write { data, .. } => sink(&data)?,
                ClientAction::Size(_) => {}
                ClientAction::Restart { blksize, why } => {
                    tracing::warn!(%server, file, blksize, "tftp: {why}; starting over unfragmented");
                    restarted(blksize, why);
                    // A fresh transfer id: the old transfer's datagrams cannot reach us.
                    socket = open().map_err(io_err)?;
                    peer = None;
                }
                ClientAction::Timer(at) => deadline = at,
                ClientAction::Done(result) => {
                    let bytes = result.map_err(|source| FetchError::Transfer {
                        server,
                        file: file.to_owned(),
                        source,
                    })?;
                    return Ok(FetchReport {
                        bytes,
                        seconds: start.elapsed().as_secs_f64(),
                    });
                }
            }
        }
        let wait = deadline.saturating_sub(now()).max(1_000);
        socket
            .set_read_timeout(Some(Duration::from_micros(wait)))
            .map_err(io_err)?;
        match socket.recv_from(&mut buf) {
            Ok((n, from)) => {
                if !accept_tid(&mut peer, server, from) {
                    let _ = socket.send_to(
                        &error(ErrorCode::UnknownTransferId, "unknown transfer id"),
                        from,
                    );
                    continue;
                }
                session.on_datagram(now(), &buf[..n], &mut out);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                session.on_timer(now(), &mut out);
            }
            Err(e) => return Err(io_err(e)),
        }
    }
}

/// Whether a datagram from `from` belongs to the transfer. The server answers from a new port
/// (its transfer id) and the client locks onto it, but only once the answer is known to come
/// from the server's address: a stray datagram from elsewhere must not become the peer.
pub(crate) fn accept_tid(
    peer: &mut Option<SocketAddr>,
    server: SocketAddr,
    from: SocketAddr,
) -> bool {
    if peer.is_none() && from.ip() == server.ip() {
        *peer = Some(from);
    }
    *peer == Some(from)
}

/// What `fetch_load` did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LoadReport {
    pub load: String,
    pub files: usize,
    pub bytes: u64,
    pub seconds: f64,
}

/// The root's origin fetch: the manifest from `dir/pfs-manifest.json` (signature checked when
/// `key` is set), then every file, each chunk verified before it is written; files are
/// installed atomically and the load activated only when all of it verified. As a real phone
/// does, it fetches `<load>.loads` first (the manifest lists it first) and reads it: every
/// other file the manifest names must be a component the `.loads` lists. Chunks a previous
/// attempt already verified are not written again (TFTP has no offset, so they are re-read).
pub fn fetch_load(
    server: SocketAddr,
    dir: &str,
    store: &crate::store::Store,
    key: Option<&ed25519_dalek::VerifyingKey>,
    cfg: ClientConfig,
) -> Result<LoadReport, FetchError> {
    fetch_named_load(server, dir, None, store, key, cfg)
}

/// [`fetch_load`] of the load a phone's configuration names (`loadInformation`), from a folder
/// that may hold many: its manifest is `pfs-manifest.<LOAD>.json`
/// ([`crate::manifest::manifest_file_for`]), and a manifest for another load is refused.
pub fn fetch_named_load(
    server: SocketAddr,
    dir: &str,
    load: Option<&str>,
    store: &crate::store::Store,
    key: Option<&ed25519_dalek::VerifyingKey>,
    cfg: ClientConfig,
) -> Result<LoadReport, FetchError> {
    let mut cfg = cfg;
    let mut read = |path: &str, _offset: u64, sink: &mut crate::http::Sink<'_, FetchError>| {
        // TFTP cannot start mid-file: the whole file, from 0.
        let mut at = 0u64;
        let mut fell_back = false;
        let r = transfer_with(
            server,
            path,
            cfg.clone(),
            &mut |d| {
                sink(at, d)?;
                at += d.len() as u64;
                Ok(())
            },
            &mut |_, _| fell_back = true,
        );
        // The path drops fragments: the next files start unfragmented.
        if let Some(unfragmented) = cfg.fallback().filter(|_| fell_back) {
            cfg = unfragmented;
        }
        r.map(|_| ())
    };
    load_from(server, dir, load, store, key, &mut read)
}

/// [`fetch_named_load`] from `tftp://HOST[:PORT]/DIR` or `http://HOST[:PORT]/DIR`. Over HTTP a
/// file already partly in the store (verified prefix) continues with `Range`.
pub fn fetch_named_load_url(
    url: &str,
    load: Option<&str>,
    store: &crate::store::Store,
    key: Option<&ed25519_dalek::VerifyingKey>,
    cfg: ClientConfig,
) -> Result<LoadReport, FetchError> {
    if !url.starts_with("http://") {
        let (server, dir) = parse_base_url(url)?;
        return fetch_named_load(server, &dir, load, store, key, cfg);
    }
    let base = crate::http::HttpUrl::parse(url).map_err(|source| FetchError::Http {
        url: url.to_owned(),
        source,
    })?;
    let timeout = Duration::from_secs(10);
    let mut read = |path: &str, offset: u64, sink: &mut crate::http::Sink<'_, FetchError>| {
        let at = crate::http::HttpUrl {
            path: path.to_owned(),
            ..base.clone()
        };
        crate::http::get(&at, offset, timeout, sink)
            .map(|_| ())
            .map_err(|e| match e {
                FetchError::Http { source, .. } => FetchError::Http {
                    url: at.to_string(),
                    source,
                },
                other => other,
            })
    };
    load_from(base.addr, &base.path.clone(), load, store, key, &mut read)
}

impl From<crate::http::HttpError> for FetchError {
    fn from(source: crate::http::HttpError) -> FetchError {
        FetchError::Http {
            url: String::new(),
            source,
        }
    }
}

/// Reads `path` from byte `offset` (or from 0: the sink is told where each piece starts).
type ReadFn<'a> =
    dyn FnMut(&str, u64, &mut crate::http::Sink<'_, FetchError>) -> Result<(), FetchError> + 'a;

/// Reads and checks the manifest at `mpath` (at most `MAX_MANIFEST_BYTES`, signed by `key`
/// when one is given).
fn read_manifest(
    server: SocketAddr,
    mpath: &str,
    key: Option<&ed25519_dalek::VerifyingKey>,
    read: &mut ReadFn<'_>,
) -> Result<crate::manifest::Manifest, FetchError> {
    let mut bytes = Vec::new();
    read(mpath, 0, &mut |_, d| {
        if bytes.len() + d.len() > crate::manifest::MAX_MANIFEST_BYTES {
            return Err(FetchError::Manifest {
                server,
                file: mpath.to_owned(),
                source: crate::manifest::ManifestError::Invalid("larger than 64 MiB".into()),
            });
        }
        bytes.extend_from_slice(d);
        Ok(())
    })?;
    crate::manifest::Manifest::parse(&bytes, key).map_err(|source| FetchError::Manifest {
        server,
        file: mpath.to_owned(),
        source,
    })
}

fn load_from(
    server: SocketAddr,
    dir: &str,
    load: Option<&str>,
    store: &crate::store::Store,
    key: Option<&ed25519_dalek::VerifyingKey>,
    read: &mut ReadFn<'_>,
) -> Result<LoadReport, FetchError> {
    let start = Instant::now();
    let dir = dir.trim_end_matches('/');
    let join = |name: &str| {
        if dir.is_empty() {
            name.to_owned()
        } else {
            format!("{dir}/{name}")
        }
    };
    let mpath = join(&load.map_or_else(
        || crate::manifest::MANIFEST_FILE.to_owned(),
        crate::manifest::manifest_file_for,
    ));
    let manifest = read_manifest(server, &mpath, key, read)?;
    if let Some(want) = load
        && !manifest.load.eq_ignore_ascii_case(want)
    {
        return Err(FetchError::Loads {
            server,
            file: mpath,
            why: format!("manifest is for load {}, not {want}", manifest.load),
        });
    }
    let chunk = manifest.chunk_size as usize;
    for entry in &manifest.files {
        let fpath = join(&entry.name);
        let store_err = |source| FetchError::Store {
            server,
            file: fpath.clone(),
            source,
        };
        let mut partial = store.partial(&manifest, entry).map_err(store_err)?;
        if partial.missing() > 0 {
            let mut buf: Vec<u8> = Vec::with_capacity(chunk);
            // From the verified prefix where the origin can (HTTP Range); bytes before it that
            // a server sends anyway are skipped.
            let first = partial.verified_prefix();
            let offset = entry
                .chunk_range(manifest.chunk_size, first)
                .0
                .min(entry.size);
            let mut index = first;
            read(&fpath, offset, &mut |at, mut d| {
                let skip = offset.saturating_sub(at).min(d.len() as u64) as usize;
                d = &d[skip..];
                while !d.is_empty() {
                    let take = (chunk - buf.len()).min(d.len());
                    buf.extend_from_slice(&d[..take]);
                    d = &d[take..];
                    if buf.len() == chunk {
                        if !partial.has(index) {
                            partial.write_chunk(index, &buf).map_err(store_err)?;
                        }
                        index += 1;
                        buf.clear();
                    }
                }
                Ok(())
            })?;
            if !buf.is_empty() && !partial.has(index) {
                partial.write_chunk(index, &buf).map_err(store_err)?;
            }
        }
        let installed = partial.install().map_err(store_err)?;
        if is_loads_of(&entry.name, &manifest.load) {
            check_loads(&installed, &manifest).map_err(|why| FetchError::Loads {
                server,
                file: fpath.clone(),
                why,
            })?;
        }
    }
    store
        .activate(&manifest)
        .map_err(|source| FetchError::Store {
            server,
            file: mpath.clone(),
            source,
        })?;
    Ok(LoadReport {
        load: manifest.load.clone(),
        files: manifest.files.len(),
        bytes: manifest.load_bytes(),
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// `name` is `<load>.loads` (compared case-insensitively, as phones do).
fn is_loads_of(name: &str, load: &str) -> bool {
    name.len() == load.len() + 6
        && name.is_char_boundary(load.len())
        && name[..load.len()].eq_ignore_ascii_case(load)
        && name[load.len()..].eq_ignore_ascii_case(".loads")
}

/// Reads an installed (already verified) `.loads` and checks that the manifest names only
/// its components (and itself).
fn check_loads(path: &Path, manifest: &crate::manifest::Manifest) -> Result<(), String> {
    let bytes = fs::read(path).map_err(|e| e.to_string())?;
    let parsed = crate::loads::parse_loads_file(&bytes).map_err(|e| e.to_string())?;
    for f in &manifest.files {
        if is_loads_of(&f.name, &manifest.load) {
            continue;
        }
        let Some(c) = parsed
            .components
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(&f.name))
        else {
            return Err(format!(
                "the manifest names {}, which this .loads does not list",
                f.name
            ));
        };
        if let Some(size) = c.size
            && size != f.size
        {
            return Err(format!(
                "{}: the .loads lists {size} bytes, the manifest {}",
                f.name, f.size
            ));
        }
    }
    Ok(())
}

/// A window arrives as one burst: make room for it (4 MiB).
pub(crate) fn grow_receive_buffer(socket: &UdpSocket) {
    receive_buffer(socket, 4 << 20);
}

/// Asks for a `bytes` receive buffer. As root the kernel's rmem_max does not apply
/// (SO_RCVBUFFORCE); otherwise take what the limit allows. Returns the size the kernel set
/// (it doubles the request for its bookkeeping), or `None` if it cannot be read.
pub(crate) fn receive_buffer(socket: &UdpSocket, bytes: usize) -> Option<usize> {
    use nix::sys::socket::{getsockopt, setsockopt, sockopt};
    if setsockopt(socket, sockopt::RcvBufForce, &bytes).is_err() {
        let _ = setsockopt(socket, sockopt::RcvBuf, &bytes);
    }
    getsockopt(socket, sockopt::RcvBuf).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_transfer_id_is_checked_before_it_is_pinned() {
        let server: SocketAddr = "127.0.0.1:69".parse().unwrap();
        let stray: SocketAddr = "127.0.0.9:40000".parse().unwrap();
        let tid: SocketAddr = "127.0.0.1:50000".parse().unwrap();
        let mut peer = None;
        assert!(!accept_tid(&mut peer, server, stray), "stray first packet");
        assert_eq!(peer, None, "a stray packet must not be pinned");
        assert!(accept_tid(&mut peer, server, tid));
        assert!(accept_tid(&mut peer, server, tid));
        assert!(!accept_tid(
            &mut peer,
            server,
            "127.0.0.1:50001".parse().unwrap()
        ));
        assert_eq!(peer, Some(tid));
    }

    #[test]
    fn base_urls_may_name_the_server_root() {
        assert_eq!(parse_base_url("tftp://127.0.0.1:70/").unwrap().1, "");
        assert_eq!(
            parse_base_url("tftp://127.0.0.1:70/load").unwrap().1,
            "load"
        );
        assert!(parse_url("tftp://127.0.0.1:70/").is_err());
    }

    #[test]
    fn urls() {
        let (a, p) = parse_url("tftp://127.0.0.1:6969/dir/f.bin").unwrap();
        assert_eq!(a, "127.0.0.1:6969".parse().unwrap());
        assert_eq!(p, "dir/f.bin");
        let (a, _) = parse_url("tftp://127.0.0.1/f").unwrap();
        assert_eq!(a.port(), 69);
        let (a, _) = parse_url("tftp://[::1]:70/f").unwrap();
        assert_eq!(a, "[::1]:70".parse().unwrap());
        for bad in [
            "http://x/f",
            "tftp://",
            "tftp://host",
            "tftp:///f",
            "tftp://h/",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }
}
