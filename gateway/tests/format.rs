//! docs/FORMAT.md is enough to read what the gateway stores: an
//! independent reader written from it (Python `cryptography`) decrypts
//! single and multipart objects fetched straight from the backend.

mod common;

use common::*;

const READER: &str = include_str!("py/format_reader.py");

#[test]
fn an_independent_reader_decrypts_stored_objects_from_the_document() {
    let garage = Garage::start(&["demo"]);
    let gw = encrypted_gateway(&garage);
    let (id, secret) = garage.credentials();
    let out = python_ok(
        READER,
        &[&gw.url(), &garage.url(), id, secret, "dGVzdGtleQ==", "demo"],
    );
    assert_eq!(out.trim(), "ok");
}
