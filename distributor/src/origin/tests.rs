use super::*;

#[test]
fn the_read_ahead_returns_the_files_bytes_through_rewinds_and_the_end() {
    let path = std::env::temp_dir().join(format!("pfs-ahead-{}", std::process::id()));
    let data: Vec<u8> = (0..200_003u32).map(|i| (i * 31 % 251) as u8).collect();
    std::fs::write(&path, &data).unwrap();
    let mut src = Source::file(File::open(&path).unwrap());
    let mut check = |offset: u64, len: usize| {
        let mut buf = vec![0u8; len];
        src.read_at(&mut buf, offset).unwrap();
        assert_eq!(
            buf,
            data[offset as usize..offset as usize + len],
            "{offset}+{len}"
        );
    };
    let blk = 1428u64;
    for b in 0..100 {
        check(b * blk, blk as usize);
    }
    check(3 * blk, blk as usize); // a rewind
    check(199_000, 1003); // the short last block
    check(200_003, 0); // the empty block after an exact multiple
    check(0, 65_464); // a block larger than the read-ahead's refill point
    check(65_000, 65_464);
    let mut past = vec![0u8; 10];
    assert!(src.read_at(&mut past, 200_000).is_err(), "past the end");
    let _ = std::fs::remove_file(&path);
}

#[test]
fn leading_slashes_name_the_root_and_dotdot_stays_refused() {
    let dir = std::env::temp_dir().join(format!("pfs-resolve-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("boot")).unwrap();
    std::fs::write(dir.join("f.bin"), b"x").unwrap();
    std::fs::write(dir.join("boot/x.bin"), b"y").unwrap();
    let root = dir.canonicalize().unwrap();
    assert_eq!(resolve(&root, "/f.bin").unwrap(), root.join("f.bin"));
    assert_eq!(resolve(&root, "//f.bin").unwrap(), root.join("f.bin"));
    assert_eq!(
        resolve(&root, "/boot/x.bin").unwrap(),
        root.join("boot/x.bin")
    );
    assert_eq!(
        resolve(&root, "boot/x.bin").unwrap(),
        root.join("boot/x.bin")
    );
    for bad in ["/../x", "../x", "/boot/../../x", "/", "", "boot/../f.bin"] {
        assert_eq!(
            resolve(&root, bad).unwrap_err().0,
            ErrorCode::AccessViolation,
            "{bad:?}"
        );
    }
    assert_eq!(
        resolve(&root, "/nope.bin").unwrap_err().0,
        ErrorCode::FileNotFound
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A second origin on a port another server holds fails (SO_REUSEPORT alone would have let
/// both bind and split the requests between them), naming the address.
#[test]
fn a_port_in_use_is_refused_not_shared() {
    let root = std::env::temp_dir();
    let cfg = |listen: std::net::SocketAddr| OriginConfig {
        root: root.clone(),
        listen,
        max_sessions: 4,
        session: Default::default(),
    };
    let first = spawn(cfg("127.0.0.1:0".parse().unwrap())).unwrap();
    let second = spawn(cfg(first.addr));
    let err = second.err().expect("the port is taken");
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
    assert!(err.to_string().contains(&first.addr.to_string()), "{err}");
}

/// `--root` must be a directory that exists; the error names it.
#[test]
fn the_served_root_is_an_existing_directory() {
    let missing = served_root(Path::new("/nonexistent-pfs-root")).unwrap_err();
    assert!(
        missing.to_string().contains("/nonexistent-pfs-root"),
        "{missing}"
    );
    let file = served_root(&std::env::current_exe().unwrap()).unwrap_err();
    assert_eq!(file.kind(), std::io::ErrorKind::NotADirectory, "{file}");
    assert!(served_root(&std::env::temp_dir()).unwrap().is_dir());
}
