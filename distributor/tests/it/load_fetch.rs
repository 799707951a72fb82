//! The root's origin fetch of a whole load, on loopback: manifest first, every chunk verified
//! before it is written, nothing installed or activated unless all of it verified.

use crate::common;

use pfs::{
    fetch::{FetchError, fetch_load},
    manifest::{generate_key, synth_load},
    origin::{self, OriginConfig},
    store::{Store, StoreError},
    tftp::client::ClientConfig,
};

#[test]
fn load_fetch_verifies_signature_and_every_chunk_and_resumes() {
    let _group = crate::common::group(module_path!());
    let base = common::scratch("load-fetch");
    let srv = base.join("srv");
    let (sk, vk) = generate_key().unwrap();
    let manifest = synth_load(&srv.join("load"), 5, Some(&sk)).unwrap();
    let origin = origin::spawn(OriginConfig {
        root: srv.clone(),
        listen: "127.0.0.1:0".parse().unwrap(),
        max_sessions: 16,
        session: Default::default(),
    })
    .unwrap();
    let cfg = ClientConfig::default;

    // A good fetch installs and activates.
    let phone = Store::new(&base.join("phone1"));
    let r = fetch_load(origin.addr, "load", &phone, Some(&vk), cfg()).unwrap();
    // The five components and the .loads the phone fetched first.
    assert_eq!(r.bytes, 8_126_582 + manifest.files[0].size);
    assert_eq!(r.files, 6);
    assert_eq!(phone.current().as_deref(), Some(manifest.load.as_str()));
    manifest
        .verify_dir(&phone.load_dir(&manifest.load))
        .unwrap();

    // The wrong key: refused before any file is fetched.
    let (_, other) = generate_key().unwrap();
    let phone2 = Store::new(&base.join("phone2"));
    let err = fetch_load(origin.addr, "load", &phone2, Some(&other), cfg()).unwrap_err();
    assert!(matches!(err, FetchError::Manifest { .. }), "{err:#}");
    assert!(!phone2.load_dir(&manifest.load).exists());

    // A corrupted file at the origin: the bad chunk is refused, nothing installed or active.
    let v = manifest
        .files
        .iter()
        .position(|f| f.size > 21 * 65536)
        .unwrap();
    let victim = srv.join("load").join(&manifest.files[v].name);
    let good = std::fs::read(&victim).unwrap();
    let mut bad = good.clone();
    bad[20 * 65536 + 7] ^= 1;
    std::fs::write(&victim, &bad).unwrap();
    let phone3 = Store::new(&base.join("phone3"));
    let err = fetch_load(origin.addr, "load", &phone3, Some(&vk), cfg()).unwrap_err();
    match &err {
        FetchError::Store {
            source: StoreError::Rejected { file, chunk },
            ..
        } => {
            assert_eq!(file, &manifest.files[v].name);
            assert_eq!(*chunk, 20);
        }
        other => panic!("{other:#}"),
    }
    assert_eq!(phone3.current(), None);
    assert!(
        !phone3
            .load_dir(&manifest.load)
            .join(&manifest.files[v].name)
            .exists()
    );

    // Repaired origin: the retry completes, keeping the chunks verified before.
    std::fs::write(&victim, &good).unwrap();
    let kept = phone3
        .partial(&manifest, &manifest.files[v])
        .unwrap()
        .verified_prefix();
    assert_eq!(kept, 20, "chunks before the bad one stay verified");
    fetch_load(origin.addr, "load", &phone3, Some(&vk), cfg()).unwrap();
    assert_eq!(phone3.current().as_deref(), Some(manifest.load.as_str()));
    let _ = std::fs::remove_dir_all(&base);
}

/// A real TFTP folder holds many loads, one manifest each: a phone fetches the one its
/// configuration names, `.loads` first.
#[test]
fn a_phone_fetches_the_load_its_configuration_names_from_a_folder_of_loads() {
    let _group = crate::common::group(module_path!());
    use pfs::fetch::fetch_named_load;
    use pfs::manifest::{manifest_file_for, manifest_for_dir};
    let base = common::scratch("load-fetch-named");
    let tftp = base.join("srv").join("tftp");
    let manifest = synth_load(&tftp, 8, None).unwrap();
    std::fs::remove_file(tftp.join(pfs::manifest::MANIFEST_FILE)).unwrap();
    // A second load in the same folder, listing one component of the first.
    let mut other = pfs::loads::synth_tlv_header("SIP41.9-4-2SR3-1S.loads");
    other.extend_from_slice(b"cnu41.9-4-2ES26.sbn\r\n");
    std::fs::write(tftp.join("SIP41.9-4-2SR3-1S.loads"), other).unwrap();
    for load in ["SCCP41.9-4-2SR3-1S", "SIP41.9-4-2SR3-1S"] {
        let m = manifest_for_dir(&tftp, pfs::manifest::DEFAULT_CHUNK, Some(load)).unwrap();
        std::fs::write(
            tftp.join(manifest_file_for(load)),
            serde_json::to_vec(&m).unwrap(),
        )
        .unwrap();
    }
    // The manifest of one load, named as another's: refused.
    std::fs::copy(
        tftp.join(manifest_file_for("SIP41.9-4-2SR3-1S")),
        tftp.join(manifest_file_for("WRONG")),
    )
    .unwrap();
    let origin = origin::spawn(OriginConfig {
        root: base.join("srv"),
        listen: "127.0.0.1:0".parse().unwrap(),
        max_sessions: 16,
        session: Default::default(),
    })
    .unwrap();
    let phone = Store::new(&base.join("phone"));
    let r = fetch_named_load(
        origin.addr,
        "tftp",
        Some("SCCP41.9-4-2SR3-1S"),
        &phone,
        None,
        ClientConfig::default(),
    )
    .unwrap();
    assert_eq!(r.files, 6);
    assert_eq!(phone.current().as_deref(), Some(manifest.load.as_str()));
    let phone2 = Store::new(&base.join("phone2"));
    let r = fetch_named_load(
        origin.addr,
        "tftp",
        Some("SIP41.9-4-2SR3-1S"),
        &phone2,
        None,
        ClientConfig::default(),
    )
    .unwrap();
    assert_eq!(r.files, 2);
    let phone3 = Store::new(&base.join("phone3"));
    let err = fetch_named_load(
        origin.addr,
        "tftp",
        Some("WRONG"),
        &phone3,
        None,
        ClientConfig::default(),
    )
    .unwrap_err();
    assert!(format!("{err:#}").contains("not WRONG"), "{err:#}");
    assert_eq!(phone3.current(), None);
    let _ = std::fs::remove_dir_all(&base);
}
