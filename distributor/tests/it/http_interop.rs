//! HTTP interop with programs we did not write: curl and wget as clients of `pfs origin --http`
//! (GET, HEAD, Range, resume, path escapes, directories), and our client (`pfs fetch http://`)
//! against our origin, `python3 -m http.server` and nginx. Loopback only.

use crate::common;

use std::{
    io::Read,
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::{Guard, scratch, tool};
use pfs::{
    fetch::{fetch_http, resume_etag_path, resume_path},
    http::{self, HttpConfig, HttpUrl},
};

fn bytes(n: usize, mut x: u64) -> Vec<u8> {
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A root with a firmware-sized file, an empty one, a subdirectory and a symlink leading out.
fn fixture(tag: &str) -> (PathBuf, Vec<u8>) {
    let root = scratch(tag);
    let data = bytes(3_157_527, 0x2545_f491_4f6c_dd1d);
    std::fs::write(root.join("apps41.sbn"), &data).unwrap();
    std::fs::write(root.join("empty.bin"), b"").unwrap();
    std::fs::create_dir_all(root.join("sub")).unwrap();
    std::fs::write(root.join("sub/inner.bin"), b"inner").unwrap();
    let outside = root.with_extension("outside");
    std::fs::write(&outside, b"secret").unwrap();
    let _ = std::os::unix::fs::symlink(&outside, root.join("escape"));
    let _ = Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(&root)
        .status();
    (root, data)
}

fn start(root: &Path, max_connections: usize) -> http::HttpHandle {
    http::spawn(HttpConfig {
        root: root.to_owned(),
        listen: "127.0.0.1:0".parse().unwrap(),
        max_connections,
    })
    .unwrap()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// curl's status code and body for `args` (curl fails only on transport errors here).
fn curl(args: &[&str]) -> (u16, Vec<u8>) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "-w", "\n%{http_code}"])
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .expect("run curl");
    assert!(out.status.success(), "curl {args:?}");
    let at = out.stdout.iter().rposition(|&b| b == b'\n').unwrap();
    let code = std::str::from_utf8(&out.stdout[at + 1..])
        .unwrap()
        .parse()
        .unwrap();
    (code, out.stdout[..at].to_vec())
}

#[test]
fn curl_against_pfs_origin() {
    let _group = crate::common::group(module_path!());
    if !tool("curl") {
        return;
    }
    let (root, data) = fixture("http-curl");
    let origin = start(&root, 16);
    let base = format!("http://{}", origin.addr);
    let url = |p: &str| format!("{base}{p}");

    let (code, body) = curl(&[&url("/apps41.sbn")]);
    assert_eq!((code, body == data), (200, true), "whole file");
    let (code, body) = curl(&[&url("/empty.bin")]);
    assert_eq!((code, body.len()), (200, 0), "empty file");
    let (code, body) = curl(&[&url("/sub/inner.bin")]);
    assert_eq!((code, body.as_slice()), (200, &b"inner"[..]));

    // HEAD: the size, no body.
    let (code, head) = curl(&["-I", &url("/apps41.sbn")]);
    let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
    assert_eq!(code, 200);
    assert!(
        head.contains(&format!("content-length: {}", data.len())),
        "{head}"
    );
    assert!(head.contains("accept-ranges: bytes"), "{head}");

    // Ranges: a middle slice, an open end, a suffix, past the end.
    let (code, body) = curl(&["-r", "1000-1999", &url("/apps41.sbn")]);
    assert_eq!((code, body.as_slice()), (206, &data[1000..2000]));
    let (code, body) = curl(&["-r", "3000000-", &url("/apps41.sbn")]);
    assert_eq!((code, body.as_slice()), (206, &data[3_000_000..]));
    let (code, body) = curl(&["-r", "-100", &url("/apps41.sbn")]);
    assert_eq!((code, body.as_slice()), (206, &data[data.len() - 100..]));
    let (code, _) = curl(&["-r", "4000000-", &url("/apps41.sbn")]);
    assert_eq!(code, 416);
    // Several ranges: the whole file (one range per request is all we serve).
    let (code, body) = curl(&["-r", "0-1,5-6", &url("/apps41.sbn")]);
    assert_eq!((code, body == data), (200, true));
    // curl resuming a partial download (-C -).
    let out = root.with_extension("resumed");
    std::fs::write(&out, &data[..1_234_567]).unwrap();
    let (code, _) = curl(&["-C", "-", "-o", out.to_str().unwrap(), &url("/apps41.sbn")]);
    assert_eq!(code, 206);
    assert!(std::fs::read(&out).unwrap() == data, "curl -C - resumed");

    // Escapes, directories, listings, methods.
    for (path, want) in [
        ("/../../../../etc/passwd", 403),
        ("/sub/../../etc/passwd", 403),
        ("/%2e%2e/%2e%2e/etc/passwd", 403),
        ("/sub/%2E%2E/apps41.sbn", 403),
        ("/escape", 403),
        ("/", 404),
        ("/sub", 404),
        ("/sub/", 404),
        ("/missing.bin", 404),
        ("/a%00b", 400),
    ] {
        let (code, body) = curl(&["--path-as-is", &url(path)]);
        assert_eq!(code, want, "{path}");
        assert!(!body.windows(6).any(|w| w == b"secret"), "{path} leaked");
    }
    let (code, _) = curl(&["-X", "POST", "-d", "x", &url("/apps41.sbn")]);
    assert_eq!(code, 405);
    let (code, _) = curl(&["-X", "PUT", "-d", "x", &url("/new.bin")]);
    assert_eq!(code, 405);
    assert!(!root.join("new.bin").exists());

    // Persistent connections: curl fetches three URLs over one (a 404 does not end it).
    let out = Command::new("curl")
        .args([
            "-sS",
            "-v",
            "-o",
            "/dev/null",
            "-o",
            "/dev/null",
            "-o",
            "/dev/null",
        ])
        .args([
            url("/missing.bin"),
            url("/sub/inner.bin"),
            url("/apps41.sbn"),
        ])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    let reused = log.matches("Re-using existing").count() + log.matches("Reusing existing").count();
    assert_eq!(reused, 2, "{log}");
    drop(origin);
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn wget_against_pfs_origin() {
    let _group = crate::common::group(module_path!());
    if !tool("wget") {
        return;
    }
    let (root, data) = fixture("http-wget");
    let origin = start(&root, 16);
    let out = root.with_extension("wget");
    let _ = std::fs::remove_file(&out);
    let wget = |extra: &[&str], path: &str| {
        Command::new("wget")
            .args(["-q", "--tries=1", "--timeout=10", "-O"])
            .arg(&out)
            .args(extra)
            .arg(format!("http://{}{path}", origin.addr))
            .status()
            .unwrap()
            .success()
    };
    assert!(wget(&[], "/apps41.sbn"));
    assert!(std::fs::read(&out).unwrap() == data);
    // wget -c continues a partial file with Range.
    std::fs::write(&out, &data[..777_777]).unwrap();
    assert!(wget(&["-c"], "/apps41.sbn"));
    assert!(std::fs::read(&out).unwrap() == data, "wget -c");
    assert!(
        origin
            .stats
            .partial
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
    // Refused paths fail.
    assert!(!wget(&[], "/sub/"));
    assert!(!wget(&[], "/%2e%2e/etc/passwd"));
    drop(origin);
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn connections_are_bounded() {
    let _group = crate::common::group(module_path!());
    let (root, _) = fixture("http-bound");
    let origin = start(&root, 2);
    let idle: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(origin.addr).unwrap())
        .collect();
    // Both are accepted (and counted) before the third arrives.
    let deadline = Instant::now() + Duration::from_secs(5);
    while origin
        .stats
        .active_connections
        .load(std::sync::atomic::Ordering::Relaxed)
        < 2
    {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut third = TcpStream::connect(origin.addr).unwrap();
    third
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    // The answer comes at once, before any request (sending one could make the close a reset).
    let mut reply = String::new();
    let _ = third.read_to_string(&mut reply);
    assert!(reply.starts_with("HTTP/1.1 503"), "{reply:?}");
    drop(idle);
    // Slots free again once the idle connections close.
    let url = HttpUrl::parse(&format!("http://{}/sub/inner.bin", origin.addr)).unwrap();
    let ok = (0..50).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        let out = root.with_extension("bound-out");
        fetch_http(&url, &out, false, Duration::from_secs(5)).is_ok()
    });
    assert!(ok);
    let _ = std::fs::remove_dir_all(&root);
}

/// The strong entity tag `server` gives `path` now, if any.
fn etag_of(server: SocketAddr, path: &str) -> Option<String> {
    let url = HttpUrl::parse(&format!("http://{server}/{path}")).unwrap();
    http::get::<http::HttpError>(&url, 0, Duration::from_secs(5), &mut |_, _| Ok(()))
        .unwrap()
        .etag
}

/// `pfs fetch http://` against `server`: whole, resumed from a partial file, missing file;
/// with a server that gives entity tags, a resume sends `If-Range` and a file changed since
/// the partial one was written comes whole (not spliced).
fn fetch_from(server: SocketAddr, root: &Path, data: &[u8], ranges: bool) {
    let url = HttpUrl::parse(&format!("http://{server}/apps41.sbn")).unwrap();
    let out = root.with_extension(format!("fetched-{}", server.port()));
    let r = fetch_http(&url, &out, false, Duration::from_secs(10)).unwrap();
    assert_eq!(r.bytes, data.len() as u64);
    assert!(std::fs::read(&out).unwrap() == data);
    std::fs::remove_file(&out).unwrap();

    // A partial file left by an earlier run, with a wrong tail a server ignoring Range
    // must replace.
    let partial = resume_path(&out);
    let mut prefix = data[..1_000_000].to_vec();
    if !ranges {
        prefix[999_999] ^= 0xff;
    }
    std::fs::write(&partial, &prefix).unwrap();
    let r = fetch_http(&url, &out, true, Duration::from_secs(10)).unwrap();
    assert!(std::fs::read(&out).unwrap() == data, "resumed file differs");
    if ranges {
        assert_eq!(
            (r.resumed_from, r.bytes),
            (1_000_000, data.len() as u64 - 1_000_000)
        );
    } else {
        assert_eq!((r.resumed_from, r.bytes), (0, data.len() as u64));
    }
    assert!(!partial.exists());
    // Already complete: a resume of the whole file is an empty success (416 */LEN).
    if ranges {
        std::fs::write(&partial, data).unwrap();
        let r = fetch_http(&url, &out, true, Duration::from_secs(10)).unwrap();
        assert_eq!(r.bytes, 0);
        assert!(std::fs::read(&out).unwrap() == data);
    }
    if let Some(tag) = etag_of(server, "apps41.sbn") {
        assert!(ranges);
        // The tag kept with the partial file still matches: the range holds.
        std::fs::write(&partial, &data[..1_000_000]).unwrap();
        std::fs::write(resume_etag_path(&out), &tag).unwrap();
        let r = fetch_http(&url, &out, true, Duration::from_secs(10)).unwrap();
        assert_eq!(r.resumed_from, 1_000_000, "If-Range {tag} matched");
        assert!(std::fs::read(&out).unwrap() == data);
        assert!(
            !resume_etag_path(&out).exists(),
            "the tag goes with the partial file"
        );
        // The file changes on the server (same size, a later time: nginx's tag is seconds and
        // size): the old prefix with the old tag must not be continued.
        let changed = bytes(data.len(), 0x9e37_79b9_7f4a_7c15);
        let file = root.join("apps41.sbn");
        std::fs::write(&file, &changed).unwrap();
        let later = std::time::SystemTime::now() + Duration::from_secs(10);
        std::fs::File::options()
            .write(true)
            .open(&file)
            .unwrap()
            .set_modified(later)
            .unwrap();
        assert_ne!(etag_of(server, "apps41.sbn").as_deref(), Some(tag.as_str()));
        std::fs::write(&partial, &data[..1_000_000]).unwrap();
        std::fs::write(resume_etag_path(&out), &tag).unwrap();
        let r = fetch_http(&url, &out, true, Duration::from_secs(10)).unwrap();
        assert_eq!(
            (r.resumed_from, r.bytes),
            (0, data.len() as u64),
            "changed file"
        );
        assert!(
            std::fs::read(&out).unwrap() == changed,
            "a spliced file: old prefix, new tail"
        );
        std::fs::write(&file, data).unwrap();
    }
    let missing = HttpUrl::parse(&format!("http://{server}/missing.bin")).unwrap();
    let e = fetch_http(
        &missing,
        &out.with_extension("m"),
        false,
        Duration::from_secs(5),
    );
    assert!(matches!(e, Err(http::HttpError::Status(404))), "{e:?}");
    let _ = std::fs::remove_file(&out);
}

fn wait_listening(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {addr}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn pfs_fetch_from_pfs_origin() {
    let _group = crate::common::group(module_path!());
    let (root, data) = fixture("http-fetch-pfs");
    let origin = start(&root, 16);
    fetch_from(origin.addr, &root, &data, true);
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn pfs_fetch_from_python_http_server() {
    let _group = crate::common::group(module_path!());
    if !tool("python3") {
        return;
    }
    let (root, data) = fixture("http-fetch-python");
    let port = free_port();
    let child = Command::new("python3")
        .args(["-m", "http.server", "--bind", "127.0.0.1", "--directory"])
        .arg(&root)
        .arg(port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start python3 -m http.server");
    let _guard = Guard(child);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_listening(addr);
    // Python's server before 3.14 ignores Range: our client must notice and start over.
    let ranges = {
        let url = HttpUrl::parse(&format!("http://{addr}/sub/inner.bin")).unwrap();
        let mut start = None;
        let _ = http::get::<http::HttpError>(&url, 1, Duration::from_secs(5), &mut |at, _| {
            start.get_or_insert(at);
            Ok(())
        });
        start == Some(1)
    };
    fetch_from(addr, &root, &data, ranges);
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn pfs_fetch_from_nginx() {
    let _group = crate::common::group(module_path!());
    if !tool("nginx") {
        return;
    }
    let (root, data) = fixture("http-fetch-nginx");
    let prefix = root.with_extension("nginx");
    let _ = std::fs::remove_dir_all(&prefix);
    std::fs::create_dir_all(prefix.join("logs")).unwrap();
    let port = free_port();
    let conf = format!(
        "daemon off;\nmaster_process off;\nerror_log {p}/logs/error.log;\npid {p}/nginx.pid;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n access_log off;\n client_body_temp_path {p}/body;\n proxy_temp_path {p}/proxy;\n\
         fastcgi_temp_path {p}/fastcgi;\n uwsgi_temp_path {p}/uwsgi;\n scgi_temp_path {p}/scgi;\n\
         server {{ listen 127.0.0.1:{port}; root {r}; autoindex off; }}\n}}\n",
        p = prefix.display(),
        r = root.display()
    );
    std::fs::write(prefix.join("nginx.conf"), conf).unwrap();
    let child = Command::new("nginx")
        .arg("-p")
        .arg(&prefix)
        .arg("-c")
        .arg(prefix.join("nginx.conf"))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start nginx");
    let _guard = Guard(child);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_listening(addr);
    fetch_from(addr, &root, &data, true);
    let _ = std::fs::remove_dir_all(&root);
    let _ = std::fs::remove_dir_all(&prefix);
}

/// `pfs origin --http`: a strong `ETag` that changes with the file, and `If-Range` as RFC 9110
/// 13.1.5 says, seen by curl: the range only for a strongly matching tag; another tag, a weak
/// one or a date gets the whole file with 200.
#[test]
fn etag_and_if_range_with_curl() {
    let _group = crate::common::group(module_path!());
    if !tool("curl") {
        return;
    }
    let (root, data) = fixture("http-etag");
    let origin = start(&root, 16);
    let url = format!("http://{}/apps41.sbn", origin.addr);
    let head = Command::new("curl")
        .args(["-sSI", "--max-time", "10", &url])
        .output()
        .unwrap();
    let head = String::from_utf8(head.stdout).unwrap();
    let tag = head
        .lines()
        .find_map(|l| l.strip_prefix("ETag: "))
        .unwrap_or_else(|| panic!("no ETag in:\n{head}"))
        .trim()
        .to_owned();
    assert!(tag.starts_with('"') && tag.ends_with('"'), "strong: {tag}");
    let if_range = |v: &str| curl(&["-r", "1000-", "-H", &format!("If-Range: {v}"), &url]);
    let (code, body) = if_range(&tag);
    assert_eq!((code, body == data[1000..]), (206, true));
    for other in [
        "\"other\"".to_owned(),
        format!("W/{tag}"),
        "Sun, 29 Nov 2026 12:00:00 GMT".to_owned(),
    ] {
        let (code, body) = if_range(&other);
        assert_eq!((code, body == data), (200, true), "If-Range: {other}");
    }
    // Without If-Range the range is served as before.
    assert_eq!(curl(&["-r", "1000-", &url]).0, 206);
    // The file replaced: the old tag no longer matches.
    std::fs::write(root.join("new.sbn"), b"another load").unwrap();
    std::fs::rename(root.join("new.sbn"), root.join("apps41.sbn")).unwrap();
    let (code, body) = if_range(&tag);
    assert_eq!((code, body.as_slice()), (200, &b"another load"[..]));
    let _ = std::fs::remove_dir_all(&root);
}

/// `pfs origin --http` from the command line serves TFTP and HTTP at once, and `/metrics`
/// counts the HTTP requests by result.
#[test]
fn pfs_origin_cli_serves_http_and_counts_it() {
    let _group = crate::common::group(module_path!());
    if !tool("curl") {
        return;
    }
    let (root, data) = fixture("http-cli");
    let (web, metrics) = (free_port(), free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_pfs"))
        .args(["origin", "--listen", "127.0.0.1:0", "--root"])
        .arg(&root)
        .args(["--http", &format!("127.0.0.1:{web}")])
        .args(["--metrics", &format!("127.0.0.1:{metrics}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start pfs origin");
    let _guard = Guard(child);
    wait_listening(format!("127.0.0.1:{web}").parse().unwrap());
    wait_listening(format!("127.0.0.1:{metrics}").parse().unwrap());
    let url = |p: &str| format!("http://127.0.0.1:{web}{p}");
    let (code, body) = curl(&[&url("/apps41.sbn")]);
    assert_eq!((code, body == data), (200, true));
    assert_eq!(curl(&["-r", "0-9", &url("/apps41.sbn")]).0, 206);
    assert_eq!(curl(&["--path-as-is", &url("/../etc/passwd")]).0, 403);
    let (_, scrape) = curl(&[&format!("http://127.0.0.1:{metrics}/metrics")]);
    let scrape = String::from_utf8(scrape).unwrap();
    for line in [
        "pfs_origin_http_requests_total{result=\"ok\"} 1",
        "pfs_origin_http_requests_total{result=\"partial\"} 1",
        "pfs_origin_http_requests_total{result=\"refused\"} 1",
        &format!("pfs_origin_http_bytes_sent_total {}", data.len() + 10),
    ] {
        assert!(
            scrape.lines().any(|l| l == line),
            "{line} not in:\n{scrape}"
        );
    }
    let _ = std::fs::remove_dir_all(&root);
}

/// The packaged service turns HTTP on with PFS_ORIGIN_HTTP (its /etc/default file): `pfs
/// origin` takes it as `--http`; set empty, as the unit's default, HTTP stays off.
#[test]
fn pfs_origin_takes_http_from_pfs_origin_http() {
    let _group = crate::common::group(module_path!());
    if !tool("curl") {
        return;
    }
    let (root, data) = fixture("http-env");
    let (web, metrics) = (free_port(), free_port());
    let spawn = |http: &str| {
        Command::new(env!("CARGO_BIN_EXE_pfs"))
            .args(["origin", "--listen", "127.0.0.1:0", "--root"])
            .arg(&root)
            .args(["--metrics", &format!("127.0.0.1:{metrics}")])
            .env("PFS_ORIGIN_HTTP", http)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start pfs origin")
    };
    let guard = Guard(spawn(&format!("127.0.0.1:{web}")));
    wait_listening(format!("127.0.0.1:{web}").parse().unwrap());
    let (code, body) = curl(&[&format!("http://127.0.0.1:{web}/apps41.sbn")]);
    assert_eq!((code, body == data), (200, true));
    drop(guard);
    let mut child = spawn("");
    wait_listening(format!("127.0.0.1:{metrics}").parse().unwrap());
    assert!(
        child.try_wait().unwrap().is_none(),
        "an empty PFS_ORIGIN_HTTP is not an error"
    );
    assert!(
        TcpStream::connect(format!("127.0.0.1:{web}")).is_err(),
        "HTTP is off"
    );
    drop(Guard(child));
    let _ = std::fs::remove_dir_all(&root);
}
