//! What a transfer reads: the file itself (octet), or its netascii translation held in memory.

use super::*;

/// The file a transfer serves: read in place through a small read-ahead (one `pread` per
/// 64 KiB rather than per block: a lock-step transfer pays a system call per block for
/// everything else already), or its netascii form in memory.
pub(super) enum Source {
    File {
        file: File,
        ahead: Vec<u8>,
        ahead_at: u64,
    },
    Text(Vec<u8>),
}

/// Largest file served in netascii (it is translated in memory).
pub(super) const MAX_NETASCII: u64 = 64 << 20;
/// Bytes read ahead per transfer.
pub(super) const READ_AHEAD: usize = 64 << 10;

impl Source {
    pub(super) fn file(file: File) -> Source {
        Source::File {
            file,
            ahead: Vec::new(),
            ahead_at: 0,
        }
    }

    pub(super) fn read_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        match self {
            Source::File {
                file,
                ahead,
                ahead_at,
            } => {
                let end = offset + buf.len() as u64;
                let cached = offset >= *ahead_at && end <= *ahead_at + ahead.len() as u64;
                if !cached {
                    // Refill from `offset` (a rewind reads again from where it goes back to).
                    ahead.resize(READ_AHEAD.max(buf.len()), 0);
                    let mut got = 0;
                    while got < ahead.len() {
                        match file.read_at(&mut ahead[got..], offset + got as u64) {
                            Ok(0) => break,
                            Ok(n) => got += n,
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            Err(e) => return Err(e),
                        }
                    }
                    ahead.truncate(got);
                    *ahead_at = offset;
                    if got < buf.len() {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                }
                let start = (offset - *ahead_at) as usize;
                buf.copy_from_slice(&ahead[start..start + buf.len()]);
                Ok(())
            }
            Source::Text(t) => {
                let start = offset as usize;
                let src = t
                    .get(start..start + buf.len())
                    .ok_or(io::ErrorKind::UnexpectedEof)?;
                buf.copy_from_slice(src);
                Ok(())
            }
        }
    }
}

pub(super) fn open_source(path: &Path, netascii_mode: bool) -> Result<Source, (ErrorCode, String)> {
    let denied = |_| (ErrorCode::AccessViolation, "cannot open file".to_owned());
    let file = File::open(path).map_err(denied)?;
    if !netascii_mode {
        return Ok(Source::file(file));
    }
    let len = file.metadata().map_err(denied)?.len();
    if len > MAX_NETASCII {
        return Err((
            ErrorCode::NotDefined,
            format!("larger than {MAX_NETASCII} bytes: fetch it in octet mode"),
        ));
    }
    let mut local = Vec::with_capacity(len as usize);
    (&file)
        .take(MAX_NETASCII + 1)
        .read_to_end(&mut local)
        .map_err(denied)?;
    Ok(Source::Text(netascii::encode(&local)))
}
