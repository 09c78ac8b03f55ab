//! docs/FORMAT.md is enough to read what the gateway stores: an
//! independent reader written from it (Python `cryptography`) decrypts
//! single and multipart objects fetched straight from the backend, and
//! refuses them with one bit flipped.

mod common;

use common::stored::{assert_ciphertext_of, plaintext_window_in, WINDOW};
use common::*;

const READER: &str = include_str!("py/format_reader.py");

#[test]
fn an_independent_reader_decrypts_stored_objects_from_the_document() {
    let garage = Garage::start(&["demo"]);
    let gw = encrypted_gateway(&garage);
    let (id, secret) = garage.credentials();
    let plaintexts = tempfile::tempdir().unwrap();
    let out = python_ok(
        READER,
        &[
            &gw.url(),
            &garage.url(),
            id,
            secret,
            "dGVzdGtleQ==",
            "demo",
            plaintexts.path().to_str().unwrap(),
        ],
    );
    assert_eq!(out.trim(), "ok");
    // The same objects through the shared check: every frame of every
    // part, and no window of the plaintext anywhere in the stored bytes.
    for key in ["single", "multi"] {
        let plaintext = std::fs::read(plaintexts.path().join(key)).unwrap();
        assert_ciphertext_of(&garage, "demo", key, &plaintext);
    }
}

/// The plaintext window search the ciphertext checks rely on finds a
/// window of exactly `WINDOW` bytes at every alignment and offset, and
/// nothing shorter (which random ciphertext holds by chance).
#[test]
fn the_plaintext_window_search_finds_every_stored_window() {
    let plaintext = test_bytes(300_000, 11);
    for shift in 0..2 * WINDOW {
        for len in [WINDOW - 1, WINDOW, WINDOW + 9] {
            for at in [0, 70_000 + shift, 100_000 - len] {
                let mut stored = test_bytes(100_000, 12);
                let from = 123_456 + shift;
                stored[at..at + len].copy_from_slice(&plaintext[from..from + len]);
                // Exactly `len` bytes in common: the neighbours differ.
                if at > 0 {
                    stored[at - 1] = !plaintext[from - 1];
                }
                if at + len < stored.len() {
                    stored[at + len] = !plaintext[from + len];
                }
                let found = plaintext_window_in(&stored, &plaintext);
                assert_eq!(
                    found.is_some(),
                    len >= WINDOW,
                    "{len} bytes of plaintext from {from} stored at {at}: {found:?}"
                );
                if let Some(f) = found {
                    assert!(f >= at && f < at + len, "found at {f}, stored at {at}");
                }
            }
        }
        // The plaintext's own first and last windows.
        let last = plaintext.len() - WINDOW - shift;
        for from in [shift, last] {
            let window = &plaintext[from..from + WINDOW];
            assert!(plaintext_window_in(window, &plaintext).is_some(), "{from}");
        }
    }
    assert!(plaintext_window_in(&test_bytes(1_000_000, 13), &plaintext).is_none());
}
