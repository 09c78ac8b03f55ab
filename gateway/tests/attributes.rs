//! GetObjectAttributes on encrypted objects, against moto (the local
//! backends do not implement it): plaintext sizes, no stored checksums or
//! part sizes.

mod common;

use common::*;

const SIZES: &str = include_str!("py/attributes_sizes.py");

#[test]
fn object_attributes_describe_the_plaintext() {
    let moto = Moto::start(&["demo"]);
    let gw = encrypted_gateway(&moto);
    let (id, secret) = moto.credentials();
    assert_eq!(
        python_ok(SIZES, &[&gw.url(), &moto.url(), id, secret]).trim(),
        "ok"
    );
}
