//! Browsers: CORS preflights answered from the bucket's rules, the rules'
//! headers on real responses, on every backend; the backend sees nothing
//! of a preflight but one read of the rules.

mod common;

use common::relay::Relay;
use common::*;

const PREFLIGHTS: &str = include_str!("py/cors_preflights.py");

#[test]
fn preflights_and_responses_follow_the_buckets_rules() {
    for backend in every_backend(&["demo"]) {
        let relay = Relay::start(&*backend);
        let gw = encrypted_gateway(&relay);
        let (id, secret) = backend.credentials();
        let name = backend.name();
        // s3s-fs keeps no CORS rules.
        let keeps = if name == "s3s-fs" { "none" } else { "rules" };
        assert_eq!(
            python_ok(PREFLIGHTS, &[&gw.url(), &backend.url(), id, secret, keeps]).trim(),
            "ok",
            "{name}"
        );
        // Bucket-level requests: the rules' reads and writes, never a
        // preflight; read once per change (then kept).
        let lines = relay.take("/demo");
        assert!(
            lines.iter().all(|l| !l.starts_with("OPTIONS")),
            "{name}: {lines:?}"
        );
        let reads = lines
            .iter()
            .filter(|l| l.starts_with("GET /demo?cors"))
            .count();
        let expected = if keeps == "rules" { 3 } else { 1 };
        assert_eq!(reads, expected, "{name}: {lines:?}");
    }
}
