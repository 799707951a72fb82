//! Signed manifests (JSON + ed25519): parsing is total with or without a key, and a
//! manifest accepted without a key is refused under a key that did not sign it.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pfs::manifest::Manifest;

fuzz_target!(|data: &[u8]| {
    let unsigned = Manifest::parse(data, None);
    let key = ed25519_key();
    if let Ok(m) = Manifest::parse(data, Some(&key)) {
        assert!(unsigned.is_ok(), "accepted with a key but not without: {m:?}");
    }
});

/// A key whose secret is public (seed 7s): nobody signs fuzz inputs with it by chance.
fn ed25519_key() -> ed25519_dalek::VerifyingKey {
    ed25519_dalek::SigningKey::from_bytes(&[7; 32]).verifying_key()
}
