//! Faults lose nothing: a backend that is down, cuts an upload or a
//! download, stalls past the read timeout or answers an error, and a client
//! that goes away mid-upload or mid-download. Each ends in an S3 error a
//! client can act on (or a visibly cut body), within a bounded time, with
//! no partial, plaintext or unreadable object at the backend, while other
//! clients are served; afterwards no request is in flight and no socket or
//! file descriptor is left behind.
//!
//! One test: it counts the process's file descriptors, which tests running
//! beside it in this binary would disturb.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::faults::{Fault, FaultRelay};
use common::raw::{signed_get, signed_head, signed_request};
use common::*;

/// The gateway's upstream read timeout here (a stalled backend is given up
/// on after it).
const READ_TIMEOUT: Duration = Duration::from_secs(2);
/// How long any fault may take to end in an answer.
const BOUND: Duration = Duration::from_secs(15);

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// `sealgate_requests_total` of one operation, result and status class.
fn requests(gw: &Gateway, operation: &str, result: &str, class: &str) -> Option<f64> {
    let (_, text) = gw.admin_get("/metrics");
    metric(
        &text,
        &format!(
            "sealgate_requests_total{{operation=\"{operation}\",result=\"{result}\",status_class=\"{class}\"}}"
        ),
    )
}

fn in_flight(gw: &Gateway) -> f64 {
    let (_, text) = gw.admin_get("/metrics");
    metric(&text, "sealgate_in_flight_requests").unwrap()
}

/// Another client, served while a fault is in force.
fn others_served(gw: &Gateway, data: &[u8]) {
    let r = signed_get(gw.port, "demo", "other", None);
    assert_eq!(r.status, 200, "another client was not served");
    assert!(r.body == data, "another client got other bytes");
}

/// Nothing of `key` at the backend, or (for a fault after the backend
/// answered) the whole object, readable: never a part of it.
fn whole_or_nothing(gw: &Gateway, backend: &dyn Upstream, key: &str, data: &[u8]) {
    if backend.has("demo", key) {
        let r = signed_get(gw.port, "demo", key, None);
        assert_eq!(r.status, 200, "{key}: stored but unreadable");
        assert!(r.body == data, "{key}: stored but not whole");
    }
}

#[test]
fn backend_and_client_faults_lose_nothing_and_leak_nothing() {
    let garage = Garage::start(&["demo"]);
    let relay = FaultRelay::start(&garage);
    let gw = Gateway::start_with(
        &relay,
        &Options {
            s3_extra: "    read_timeout: 2s\n    connect_timeout: 2s\n",
            extra: LOCAL_PROVIDER,
            ..Options::default()
        },
    );
    let data = test_bytes(1_000_000, 21);
    let other = test_bytes(10_000, 22);
    // Warm up (lazily made state is not a leak), then count.
    assert_eq!(
        signed_request(gw.port, "PUT", "/demo/other", &[], &other).status,
        200
    );
    others_served(&gw, &other);
    relay.close_all();
    until("the warm-up's connections to close", BOUND, || {
        signed_get(gw.port, "demo", "other", None).status == 200
    });
    relay.close_all();
    let baseline = {
        let mut last = open_fds();
        until("the descriptors to settle", BOUND, || {
            let now = open_fds();
            let settled = now == last;
            last = now;
            settled
        });
        last
    };

    // Each fault: the request it hits, what the client must see.
    let put = |key: &str| signed_request(gw.port, "PUT", &format!("/demo/{key}"), &[], &data);

    // The backend is down: 503, nothing stored.
    relay.fail("", Fault::Refuse);
    let t = Instant::now();
    let r = put("down");
    assert_eq!(
        (r.status, r.error_code().as_deref()),
        (503, Some("ServiceUnavailable"))
    );
    assert!(t.elapsed() < BOUND);
    relay.heal();
    assert!(!garage.has("demo", "down"));
    others_served(&gw, &other);

    // The backend cuts an upload part-way: 503, nothing stored.
    relay.fail("PUT /demo/cut-up", Fault::CutUpload(300_000));
    let t = Instant::now();
    let r = put("cut-up");
    assert_eq!(
        (r.status, r.error_code().as_deref()),
        (503, Some("ServiceUnavailable"))
    );
    assert!(t.elapsed() < BOUND);
    assert_eq!(relay.hits(), 1);
    relay.heal();
    assert!(!garage.has("demo", "cut-up"));
    others_served(&gw, &other);

    // The backend answers SlowDown or an internal error: passed on (SDKs
    // retry both), nothing stored.
    for (status, code) in [(503, "SlowDown"), (500, "InternalError")] {
        relay.fail("PUT /demo/refused", Fault::Answer(status, code));
        let r = put("refused");
        assert_eq!((r.status, r.error_code().as_deref()), (status, Some(code)));
        relay.heal();
        assert!(!garage.has("demo", "refused"));
    }

    // The backend stalls on an upload's answer: 503 after the read
    // timeout; the object is whole or absent.
    relay.fail("PUT /demo/stall-up", Fault::Stall);
    let t = Instant::now();
    let r = put("stall-up");
    assert_eq!(
        (r.status, r.error_code().as_deref()),
        (503, Some("ServiceUnavailable"))
    );
    assert!(
        t.elapsed() >= READ_TIMEOUT && t.elapsed() < BOUND,
        "{:?}",
        t.elapsed()
    );
    relay.heal();
    whole_or_nothing(&gw, &garage, "stall-up", &data);

    // Downloads: stored whole first.
    assert_eq!(put("down-load").status, 200);
    // The backend cuts a download: the client sees the body cut short,
    // and every byte it got is the object's.
    relay.fail("GET /demo/down-load", Fault::CutDownload(300_000));
    let t = Instant::now();
    let r = signed_get(gw.port, "demo", "down-load", None);
    assert!(t.elapsed() < BOUND);
    relay.heal();
    assert_eq!(r.status, 200);
    assert!(!r.complete(), "a cut download must not look complete");
    assert!(
        data.starts_with(&r.body),
        "a cut download released other bytes"
    );
    // Counted as the failure it is, though its 200 went out.
    assert_eq!(
        requests(&gw, "GetObject", "error", "2xx"),
        Some(1.0),
        "a cut download must count as an error"
    );
    // The backend stalls before answering a download: 503.
    relay.fail("GET /demo/down-load", Fault::Stall);
    let t = Instant::now();
    let stalled = std::thread::scope(|s| {
        let waiting = s.spawn(|| signed_get(gw.port, "demo", "down-load", None));
        // Served meanwhile.
        others_served(&gw, &other);
        waiting.join().unwrap()
    });
    assert!(t.elapsed() < BOUND);
    relay.heal();
    assert_eq!(
        (stalled.status, stalled.error_code().as_deref()),
        (503, Some("ServiceUnavailable"))
    );

    // A client that goes away mid-upload: nothing stored.
    let mut c = TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
    let mut head = signed_head(
        (CLIENT_KEY, CLIENT_SECRET),
        &format!("127.0.0.1:{}", gw.port),
        "PUT",
        "/demo/left",
        &[],
    );
    head.push_str(&format!("content-length: {}\r\n\r\n", data.len()));
    c.write_all(head.as_bytes()).unwrap();
    c.write_all(&data[..400_000]).unwrap();
    drop(c);
    // A client that goes away mid-download.
    let mut c = TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
    let mut head = signed_head(
        (CLIENT_KEY, CLIENT_SECRET),
        &format!("127.0.0.1:{}", gw.port),
        "GET",
        "/demo/down-load",
        &[],
    );
    head.push_str("\r\n");
    c.set_read_timeout(Some(BOUND)).unwrap();
    c.write_all(head.as_bytes()).unwrap();
    let mut first = vec![0u8; 64 * 1024];
    c.read_exact(&mut first).unwrap();
    drop(c);
    until("the abandoned requests to end", BOUND, || {
        in_flight(&gw) == 0.0
    });
    // Neither counted as the gateway's failure: the upload is the
    // client's abort; the download too, unless the gateway had handed its
    // whole body to the socket before the client left (then it is `ok`).
    assert_eq!(requests(&gw, "GetObject", "error", "2xx"), Some(1.0));
    let text = gw.admin_get("/metrics").1;
    assert!(
        text.contains("operation=\"PutObject\",result=\"client_abort\""),
        "{text}"
    );
    assert!(!garage.has("demo", "left"));
    others_served(&gw, &other);

    // Nothing left behind: every object the backend holds reads back whole.
    let mut keys = garage.keys("demo");
    keys.sort();
    let mut expected = vec!["down-load".to_string(), "other".to_string()];
    if garage.has("demo", "stall-up") {
        expected.push("stall-up".to_string());
    }
    assert_eq!(keys, expected);
    assert_eq!(in_flight(&gw), 0.0);
    // No socket or descriptor leaked: once the backend's connections are
    // closed, the process holds what it held before the faults.
    relay.close_all();
    until("the descriptors to return to the baseline", BOUND, || {
        open_fds() <= baseline
    });
}
