//! netascii (RFC 764 via RFC 1350): lines end in CR LF on the wire, a bare CR is CR NUL.
//! The sender translates the local file (LF -> CR LF, CR -> CR NUL), as tftpd-hpa does; the
//! receiver undoes it. A file that already holds CR LF therefore arrives byte-identical: its
//! CR goes out as CR NUL and its LF as CR LF, and the receiver turns both back.

/// The netascii form of `local`.
pub fn encode(local: &[u8]) -> Vec<u8> {
    let extra = local.iter().filter(|&&b| b == b'\n' || b == b'\r').count();
    let mut out = Vec::with_capacity(local.len() + extra);
    for &b in local {
        match b {
            b'\n' => out.extend_from_slice(b"\r\n"),
            b'\r' => out.extend_from_slice(b"\r\0"),
            _ => out.push(b),
        }
    }
    out
}

/// Length of [`encode`]'s output, without building it.
pub fn encoded_len(local: &[u8]) -> u64 {
    local.len() as u64 + local.iter().filter(|&&b| b == b'\n' || b == b'\r').count() as u64
}

/// Undoes [`encode`] on a whole stream: CR LF -> LF, CR NUL -> CR; any other CR is kept.
pub fn decode(wire: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(wire.len());
    let mut i = 0;
    while i < wire.len() {
        match (wire[i], wire.get(i + 1)) {
            (b'\r', Some(b'\n')) => {
                out.push(b'\n');
                i += 2;
            }
            (b'\r', Some(0)) => {
                out.push(b'\r');
                i += 2;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The case from the report: 32 bytes in CR LF lines, fetched in the tftp-hpa client's
    /// default mode, must arrive as the same 32 bytes (it arrived as 30).
    #[test]
    fn crlf_lines_survive_the_round_trip() {
        let file = b"line one\r\nline two\r\nline 33333\r\n";
        assert_eq!(file.len(), 32);
        let wire = encode(file);
        assert_eq!(wire.len() as u64, encoded_len(file));
        assert!(wire.starts_with(b"line one\r\0\r\n"));
        assert_eq!(decode(&wire), file.to_vec());
        assert_eq!(encode(b"a\nb\rc"), b"a\r\nb\r\0c".to_vec());
    }

    proptest! {
        #[test]
        fn any_file_round_trips(file in proptest::collection::vec(any::<u8>(), 0..512)) {
            let wire = encode(&file);
            prop_assert_eq!(wire.len() as u64, encoded_len(&file));
            prop_assert_eq!(decode(&wire), file);
        }
    }
}
