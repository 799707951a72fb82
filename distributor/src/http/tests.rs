use super::*;

#[test]
fn ranges() {
    assert_eq!(parse_range("bytes=0-9", 100), RangeAsk::Part(0, 10));
    assert_eq!(parse_range("bytes=90-", 100), RangeAsk::Part(90, 100));
    assert_eq!(parse_range("bytes=90-1000", 100), RangeAsk::Part(90, 100));
    assert_eq!(parse_range("bytes=-10", 100), RangeAsk::Part(90, 100));
    assert_eq!(parse_range("bytes=-1000", 100), RangeAsk::Part(0, 100));
    assert_eq!(parse_range("bytes=100-", 100), RangeAsk::Unsatisfiable);
    assert_eq!(parse_range("bytes=-0", 100), RangeAsk::Unsatisfiable);
    assert_eq!(parse_range("bytes=0-", 0), RangeAsk::Unsatisfiable);
    assert_eq!(parse_range("bytes=5-1", 100), RangeAsk::Whole);
    assert_eq!(parse_range("bytes=0-1,5-6", 100), RangeAsk::Whole);
    assert_eq!(parse_range("items=0-1", 100), RangeAsk::Whole);
    assert_eq!(parse_range("bytes=a-", 100), RangeAsk::Whole);
}

#[test]
fn paths() {
    assert_eq!(request_path("/a/b.bin?x=1").as_deref(), Some("/a/b.bin"));
    assert_eq!(request_path("/%2e%2e/etc").as_deref(), Some("/../etc"));
    assert_eq!(request_path("/a%00b"), None);
    assert_eq!(request_path("/a%zz"), None);
    assert_eq!(request_path("http://h/a"), None);
    assert_eq!(request_path("*"), None);
}

#[test]
fn urls() {
    let u = HttpUrl::parse("http://127.0.0.1:6970/dir/f.bin").unwrap();
    assert_eq!(u.addr, "127.0.0.1:6970".parse().unwrap());
    assert_eq!(u.path, "dir/f.bin");
    assert_eq!(u.to_string(), "http://127.0.0.1:6970/dir/f.bin");
    assert_eq!(HttpUrl::parse("http://127.0.0.1").unwrap().addr.port(), 80);
    assert_eq!(HttpUrl::parse("http://[::1]:81/x").unwrap().addr.port(), 81);
    assert_eq!(
        HttpUrl::parse("http://127.0.0.1/")
            .unwrap()
            .join("a.loads")
            .path,
        "a.loads"
    );
    assert_eq!(
        HttpUrl::parse("http://127.0.0.1/d/")
            .unwrap()
            .join("a")
            .path,
        "d/a"
    );
    // A URL's escapes are decoded once and encoded once on the request line: `%2e%2e`
    // reaches the server as `..` (refused there), `%20` stays a space in the name.
    let esc = HttpUrl::parse("http://127.0.0.1/%2e%2e/a%20b.bin").unwrap();
    assert_eq!(esc.path, "../a b.bin");
    assert_eq!(encode_path(&esc.path), "/../a%20b.bin");
    for bad in [
        "tftp://h/f",
        "http://",
        "http:///f",
        "http://u@h/f",
        "http://h/%zz",
        "http://h/a%00b",
    ] {
        assert!(HttpUrl::parse(bad).is_err(), "{bad}");
    }
    assert_eq!(encode_path("a b/c%.bin"), "/a%20b/c%25.bin");
    assert_eq!(parse_content_range("bytes 5-9/10"), Some((5, Some(10))));
    assert_eq!(parse_content_range("bytes 5-9/*"), Some((5, None)));
}

#[test]
fn listen_addresses() {
    assert_eq!(parse_listen("127.0.0.1").unwrap().port(), DEFAULT_PORT);
    assert_eq!(parse_listen("127.0.0.1:80").unwrap().port(), 80);
    assert_eq!(parse_listen("::1").unwrap().port(), DEFAULT_PORT);
    assert!(parse_listen("nope").is_err());
}
