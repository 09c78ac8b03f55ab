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

const FLOOD: &str = r#"
import sys, requests
s = requests.Session()
codes = {}
for i in range(300):
    r = s.options(sys.argv[1] + "/flood-%d/k" % i,
                  headers={"Origin": "http://evil.test", "Access-Control-Request-Method": "GET"})
    code = (r.status_code, r.text.split("<Code>")[1].split("<")[0])
    codes[code] = codes.get(code, 0) + 1
print(codes.get((403, "AccessForbidden"), 0), codes.get((503, "SlowDown"), 0), len(codes))
"#;

/// Anyone may send preflights, for any bucket name a grant pattern
/// matches: the rules reads they cost the backend are limited per
/// instance (a burst of 100, then 20 a second), past it `503 SlowDown`.
#[test]
fn a_preflight_flood_costs_the_backend_a_bounded_number_of_reads() {
    let backend = Backend::start(&["demo"]);
    let relay = Relay::start(&backend);
    let gw = encrypted_gateway(&relay);
    let out = python_ok(FLOOD, &[&gw.url()]);
    let counts: Vec<usize> = out.split_whitespace().map(|n| n.parse().unwrap()).collect();
    let [answered, slowed, kinds] = counts[..] else {
        panic!("{out}")
    };
    assert_eq!(kinds, 2, "only these two answers: {out}");
    assert!(answered >= 100 && slowed > 0, "{out}");
    // One backend request per answered preflight (distinct buckets), none
    // for a slowed one, and never the preflight itself.
    let lines = relay.take_all();
    let reads = lines
        .iter()
        .filter(|l| l.starts_with("GET /flood-") && l.contains("?cors "))
        .count();
    assert_eq!(reads, answered, "{out}\n{lines:?}");
    assert!(lines.iter().all(|l| !l.starts_with("OPTIONS")), "{lines:?}");
}
