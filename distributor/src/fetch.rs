//! `pfs fetch`: download one file over TFTP into `out`, atomically (temp file, fsync, rename).

use std::{
    fs::{self, File},
    io::{self, Write},
    net::{SocketAddr, ToSocketAddrs, UdpSocket},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use crate::tftp::{
    Packet,
    client::{ClientAction, ClientConfig, ClientError, ClientSession},
    packet::{ErrorCode, decode, error},
};

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("bad URL {0:?}: expected tftp://HOST[:PORT]/PATH")]
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
    let bad = || FetchError::Url(url.to_owned());
    let rest = url.strip_prefix("tftp://").ok_or_else(bad)?;
    let (host, path) = rest.split_once('/').ok_or_else(bad)?;
    if host.is_empty() || path.is_empty() {
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
    let bind: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0".parse().expect("literal")
    } else {
        "[::]:0".parse().expect("literal")
    };
    let socket = UdpSocket::bind(bind).map_err(io_err)?;
    grow_receive_buffer(&socket);
    let mut output = io::BufWriter::with_capacity(1 << 20, File::create(tmp).map_err(io_err)?);
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
                ClientAction::Write { data, .. } => output.write_all(&data).map_err(io_err)?,
                ClientAction::Size(_) => {}
                ClientAction::Timer(at) => deadline = at,
                ClientAction::Done(result) => {
                    let bytes = result.map_err(|source| FetchError::Transfer {
                        server,
                        file: file.to_owned(),
                        source,
                    })?;
                    let f = output.into_inner().map_err(|e| io_err(e.into_error()))?;
                    f.sync_all().map_err(io_err)?;
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
                // The server answers from a new port (its transfer id); lock onto it.
                let expected = *peer.get_or_insert(from);
                if from != expected || from.ip() != server.ip() {
                    let _ = socket.send_to(
                        &error(ErrorCode::UnknownTransferId, "unknown transfer id"),
                        from,
                    );
                    continue;
                }
                if let Ok(packet) = decode(&buf[..n])
                    && (matches!(packet, Packet::Error { .. }) || !session.is_finished())
                {
                    session.on_packet(now(), packet, &mut out);
                }
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

/// A window arrives as one burst: make room for it. As root the kernel's rmem_max does not
/// apply (SO_RCVBUFFORCE); otherwise take what the limit allows.
fn grow_receive_buffer(socket: &UdpSocket) {
    use nix::sys::socket::{setsockopt, sockopt};
    const WANT: usize = 4 << 20;
    if setsockopt(socket, sockopt::RcvBufForce, &WANT).is_err() {
        let _ = setsockopt(socket, sockopt::RcvBuf, &WANT);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
