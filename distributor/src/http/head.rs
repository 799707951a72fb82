//! A response head as the HTTP client reads it (httparse), and `Content-Range`.

use super::*;

/// A response head, parsed with httparse, as far as [`get_with`] needs it.
pub(super) struct Head {
    pub(super) status: u16,
    /// Bytes of `buf` the head takes, and bytes read so far (the body's start follows).
    pub(super) head_len: usize,
    pub(super) filled: usize,
    pub(super) length: Option<u64>,
    pub(super) content_range: Option<String>,
    /// A strong entity tag, if the server gave one.
    pub(super) etag: Option<String>,
}

/// Reads until the response head is complete (at most `MAX_HEAD` bytes) into `buf`.
pub(super) fn read_head(stream: &mut TcpStream, buf: &mut [u8]) -> Result<Head, HttpError> {
    let mut filled = 0;
    loop {
        let n = stream.read(&mut buf[filled..])?;
        if n == 0 {
            return Err(HttpError::Malformed(
                "connection closed before the response head".into(),
            ));
        }
        filled += n;
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(&buf[..filled]) {
            Ok(httparse::Status::Complete(used)) => {
                let mut length = None;
                let mut content_range = None;
                let mut etag = None;
                for h in resp.headers.iter() {
                    let value = std::str::from_utf8(h.value).unwrap_or("").trim();
                    if h.name.eq_ignore_ascii_case("content-length") {
                        length = Some(value.parse::<u64>().map_err(|_| {
                            HttpError::Malformed(format!("Content-Length {value:?}"))
                        })?);
                    } else if h.name.eq_ignore_ascii_case("content-range") {
                        content_range = Some(value.to_owned());
                    } else if h.name.eq_ignore_ascii_case("etag") {
                        etag = strong_etag(value).map(str::to_owned);
                    } else if h.name.eq_ignore_ascii_case("transfer-encoding")
                        && !value.eq_ignore_ascii_case("identity")
                    {
                        return Err(HttpError::Chunked);
                    }
                }
                return Ok(Head {
                    status: resp.code.unwrap_or(0),
                    head_len: used,
                    filled,
                    length,
                    content_range,
                    etag,
                });
            }
            Ok(httparse::Status::Partial) if filled < MAX_HEAD => {}
            Ok(httparse::Status::Partial) => {
                return Err(HttpError::Malformed("response head too large".into()));
            }
            Err(e) => return Err(HttpError::Malformed(e.to_string())),
        }
    }
}

/// `bytes A-B/LEN` -> (A, LEN if known).
pub(super) fn parse_content_range(v: &str) -> Option<(u64, Option<u64>)> {
    let rest = v.strip_prefix("bytes ")?;
    let (span, total) = rest.split_once('/')?;
    let (a, _) = span.split_once('-')?;
    Some((a.trim().parse().ok()?, total.trim().parse().ok()))
}
