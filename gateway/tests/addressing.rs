//! Addressing: the bucket from every form of request is a valid bucket
//! name before anything uses it, and object keys never leave their
//! bucket: keys with dot segments are refused unless the backend reads
//! keys literally, where they are stored as the keys they are.

mod common;

use common::*;

/// `secure` is encrypted under a mandatory policy, `plain` under an optional one.
const POLICIES: &str = "encryption:
  local:
    master_key: dGVzdGtleQ==
  policies:
    - bucket_pattern: \"secure\"
      key_provider: local
      mandatory: true
    - bucket_pattern: \"plain\"
      key_provider: local
      mandatory: false
";

fn policy_gateway(backend: &dyn Upstream) -> Gateway {
    Gateway::start_with(
        backend,
        &Options {
            extra: POLICIES,
            ..Options::default()
        },
    )
}

/// The finding: a PUT whose virtual host held `/` and `?` was classified
/// as a bucket-level call and stored in plaintext in a mandatory bucket.
/// Now every such Host or path is refused before anything else, also
/// when a client with rights everywhere signs it.
#[test]
fn crafted_hosts_and_bucket_segments_are_refused_and_store_nothing() {
    let garage = Garage::start(&["secure"]);
    let gw = policy_gateway(&garage);
    let body = b"plaintext that must not be stored";
    for (host, path) in [
        ("secure/x?acl.s3.sealgate.test", "/k"),
        ("secure?x.s3.sealgate.test", "/k"),
        ("sec ure.s3.sealgate.test", "/k"),
        ("127.0.0.1", "/secure%2Fk/x"),
        ("127.0.0.1", "/%2E%2E/secure/k"),
        ("127.0.0.1", "/se%3Fcure/k"),
    ] {
        let r = raw::signed_request_as(
            (CLIENT_KEY, CLIENT_SECRET),
            gw.port,
            host,
            "PUT",
            path,
            &[],
            body,
        );
        assert_eq!(
            (r.status, r.error_code().as_deref()),
            (400, Some("InvalidBucketName")),
            "{host} {path}: {}",
            String::from_utf8_lossy(&r.body)
        );
    }
    assert!(garage.keys("secure").is_empty(), "nothing was stored");
    // The same client, the same signing: a well-formed request is stored
    // (the refusals above were the addressing check, not the signature).
    let r = raw::signed_request_as(
        (CLIENT_KEY, CLIENT_SECRET),
        gw.port,
        "secure.s3.sealgate.test",
        "PUT",
        "/k",
        &[],
        body,
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(garage.keys("secure"), ["k"]);
}

/// The finding: in front of a backend that maps keys to file paths
/// (s3s-fs), a client granted only `team-*` wrote into, read from and
/// deleted in bucket `secret` through `..` in a key it signed normally.
/// Every entry point that takes a key refuses such keys, however spelled,
/// and `secret` is untouched.
#[test]
fn dot_segments_never_leave_the_bucket_on_a_path_backend() {
    let fs = Backend::start(&["team-a", "secret"]);
    fs.put_direct("secret", "canary", b"canary bytes");
    fs.put_direct("team-a", "mine", b"team bytes");
    let gw = Gateway::start(&fs);
    let team = (TEAM_KEY, TEAM_SECRET);
    let host = format!("127.0.0.1:{}", gw.port);
    let send = |method: &str, path: &str, extra: &[(&str, &str)], body: &[u8]| {
        raw::signed_request_as(team, gw.port, &host, method, path, extra, body)
    };
    let refused = |r: raw::RawResponse, what: &str| {
        assert_eq!(
            (r.status, r.error_code().as_deref()),
            (400, Some("InvalidArgument")),
            "{what}: {}",
            String::from_utf8_lossy(&r.body)
        );
    };
    for path in [
        "/team-a/../secret/planted",
        "/team-a/%2E%2E/secret/planted",
        "/team-a/x/../../secret/planted",
        "/team-a/.%2e/secret/planted",
        "/team-a//secret/planted",
        "/team-a/./planted",
    ] {
        refused(send("PUT", path, &[], b"planted"), &format!("PUT {path}"));
        let canary = path.replace("planted", "canary");
        refused(send("GET", &canary, &[], b""), &format!("GET {canary}"));
        // A HEAD answer has no body to name the code in.
        assert_eq!(send("HEAD", &canary, &[], b"").status, 400, "HEAD {canary}");
        refused(
            send("DELETE", &canary, &[], b""),
            &format!("DELETE {canary}"),
        );
    }
    // A copy whose source climbs out of the bucket.
    for src in [
        "/team-a/../secret/canary",
        "team-a/%2E%2E/secret/canary",
        // A key a backend that decodes first reads whole.
        "/team-a/mine?x=/../../secret/canary",
    ] {
        refused(
            send("PUT", "/team-a/copied", &[("x-amz-copy-source", src)], b""),
            src,
        );
    }
    // A DeleteObjects list naming a key that climbs out.
    let list = b"<Delete><Object><Key>mine</Key></Object><Object><Key>../secret/canary</Key></Object></Delete>";
    refused(send("POST", "/team-a?delete", &[], list), "DeleteObjects");
    let entity = b"<Delete><Object><Key>&#46;&#46;/secret/canary</Key></Object></Delete>";
    refused(
        send("POST", "/team-a?delete", &[], entity),
        "DeleteObjects, entities",
    );
    // Text before a child element: one reader keeps `canary`, another the
    // whole `../secret/canary`.
    let mixed = b"<Delete><Object><Key>../secret/<i></i>canary</Key></Object></Delete>";
    let r = send("POST", "/team-a?delete", &[], mixed);
    assert_eq!(
        (r.status, r.error_code().as_deref()),
        (400, Some("MalformedXML")),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    // Refused by the gateway (s3s-fs refuses it too; a Go backend reads it).
    assert!(
        String::from_utf8_lossy(&r.body).contains("mixes text and elements"),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    // A listing of another bucket's names through the prefix.
    refused(
        send("GET", "/team-a?list-type=2&prefix=../secret/", &[], b""),
        "ListObjectsV2 prefix",
    );

    // Nothing reached `secret`, nothing was copied or deleted in `team-a`.
    assert_eq!(
        std::fs::read(fs.object_path("secret", "canary")).unwrap(),
        b"canary bytes"
    );
    let mut secret = fs.keys("secret");
    secret.sort();
    assert_eq!(secret, ["canary"]);
    assert_eq!(fs.keys("team-a"), ["mine"], "the list was refused whole");
    // The same client and signing do reach its own bucket.
    let r = send("GET", "/team-a/mine", &[], b"");
    assert_eq!((r.status, r.body.as_slice()), (200, &b"team bytes"[..]));
}

/// With `storage.s3.literal_keys: true` (a backend that reads keys as
/// opaque strings), keys with `.` and `..` segments are stored under
/// exactly that key, in their own bucket.
#[test]
fn literal_keys_keep_dot_segments_in_their_bucket() {
    let garage = Garage::start(&["demo", "other"]);
    let gw = Gateway::start_with(
        &garage,
        &Options {
            s3_extra: "    literal_keys: true\n",
            extra: LOCAL_PROVIDER,
            ..Options::default()
        },
    );
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("f");
    std::fs::write(&src, b"dots").unwrap();
    for key in ["a/../b", "./c", "../other/d"] {
        cp(
            &gw.url(),
            src.to_str().unwrap(),
            &format!("s3://demo/{key}"),
        );
        assert!(garage.has("demo", key), "{key} stored under its own name");
        let back = work.path().join("back");
        aws_ok(
            &gw.url(),
            &[
                "s3api",
                "get-object",
                "--bucket",
                "demo",
                "--key",
                key,
                back.to_str().unwrap(),
            ],
        );
        assert_eq!(std::fs::read(&back).unwrap(), b"dots", "{key}");
    }
    assert!(
        garage.keys("other").is_empty(),
        "nothing reached another bucket"
    );
}

const COPIES: &str = include_str!("py/addressing_copies.py");

/// Copies into a mandatory bucket fail closed and are pinned to the
/// source the gateway checked; nothing unencrypted lands there.
#[test]
fn copies_into_mandatory_buckets_fail_closed() {
    let garage = Garage::start(&["secure", "plain"]);
    let gw = policy_gateway(&garage);
    let (id, secret) = garage.credentials();
    assert_eq!(
        python_ok(COPIES, &[&gw.url(), &garage.url(), id, secret]).trim(),
        "ok"
    );
    let mut left = garage.keys("secure");
    left.sort();
    assert_eq!(left, ["dst", "dst2", "src"], "only the encrypted copies");
}
