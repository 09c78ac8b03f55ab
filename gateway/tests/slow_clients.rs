//! Slow clients: a request header has a total deadline
//! (`server.request_header_timeout`), counted from its first byte, so a
//! client dripping a header holds nothing for long before it must
//! authenticate; bodies and idle keep-alive connections are not on that
//! clock.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::raw::{parse_one, signed_head, RawResponse};
use common::*;

/// The deadline these gateways run with.
const LIMIT: Duration = Duration::from_secs(2);
const LIMIT_YAML: &str = "  request_header_timeout: 2s\n";
/// How often a dripping client sends its next piece: far inside Pingora's
/// 60 s per read, so only a total deadline can cut it.
const DRIP: Duration = Duration::from_millis(200);
/// Longer than any test here should take to see what it waits for.
const PATIENCE: Duration = Duration::from_secs(15);

fn gateway(backend: &Backend) -> Gateway {
    Gateway::start_with(
        backend,
        &Options {
            server_extra: LIMIT_YAML,
            ..Default::default()
        },
    )
}

/// One client connection, read as responses arrive.
struct Conn {
    s: TcpStream,
    got: Vec<u8>,
    host: String,
}

enum Seen {
    Open,
    Closed,
}

impl Conn {
    fn open(port: u16) -> Conn {
        Conn {
            s: TcpStream::connect(("127.0.0.1", port)).unwrap(),
            got: Vec::new(),
            host: format!("127.0.0.1:{port}"),
        }
    }

    /// Sends bytes; false when the gateway has closed the connection.
    fn send(&mut self, bytes: &[u8]) -> bool {
        self.s.write_all(bytes).is_ok()
    }

    /// Waits up to `wait` for bytes; says whether the connection is open.
    fn wait(&mut self, wait: Duration) -> Seen {
        self.s.set_read_timeout(Some(wait)).unwrap();
        let mut buf = [0u8; 4096];
        match self.s.read(&mut buf) {
            Ok(0) => Seen::Closed,
            Ok(n) => {
                self.got.extend_from_slice(&buf[..n]);
                Seen::Open
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Seen::Open,
            Err(_) => Seen::Closed,
        }
    }

    /// Reads for all of `d` (collecting what arrives); says whether the
    /// connection is still open.
    fn idle(&mut self, d: Duration) -> Seen {
        let start = Instant::now();
        while let Some(left) = d.checked_sub(start.elapsed()).filter(|l| !l.is_zero()) {
            if let Seen::Closed = self.wait(left) {
                return Seen::Closed;
            }
        }
        Seen::Open
    }

    /// The next whole response, if one has arrived (consumed).
    fn take_response(&mut self) -> Option<RawResponse> {
        let r = parse_one(&self.got)?;
        let split = self.got.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        self.got.drain(..split + 4 + r.body.len());
        Some(r)
    }

    /// The next final (non-1xx) response; panics if none comes in time.
    fn response(&mut self) -> RawResponse {
        let start = Instant::now();
        loop {
            while let Some(r) = self.take_response() {
                if r.status >= 200 {
                    return r;
                }
            }
            assert!(start.elapsed() < PATIENCE, "no response");
            if let Seen::Closed = self.wait(DRIP) {
                if let Some(r) = self.take_response() {
                    return r;
                }
                panic!("closed without a response");
            }
        }
    }

    /// A signed request header, kept alive, with its blank line.
    fn head(&self, method: &str, path: &str, extra: &[(&str, &str)], len: usize) -> String {
        let mut h = signed_head((CLIENT_KEY, CLIENT_SECRET), &self.host, method, path, extra);
        h.push_str(&format!("content-length: {len}\r\n\r\n"));
        h
    }
}

/// A client that completes one request on a connection and then drips
/// its next header, a line every 200 ms, has the connection closed once
/// that header has taken the deadline, and not before. Without the
/// deadline the connection stays open as long as the client drips.
#[test]
fn a_header_slower_than_the_deadline_loses_its_connection() {
    let backend = Backend::start(&["demo"]);
    backend.put_direct("demo", "k", b"hello");
    let gw = gateway(&backend);
    let mut c = Conn::open(gw.port);
    let first = c.head("GET", "/demo/k", &[], 0);
    assert!(c.send(first.as_bytes()));
    let r = c.response();
    assert_eq!((r.status, r.body.as_slice()), (200, &b"hello"[..]));

    // The next request's header, a line at a time.
    assert!(c.send(b"GET /demo/k HTTP/1.1\r\n"));
    let began = Instant::now();
    let closed_after = loop {
        if let Seen::Closed = c.wait(DRIP) {
            break began.elapsed();
        }
        assert!(c.got.is_empty(), "answered an unfinished header");
        if !c.send(b"x-drip: 1\r\n") {
            break began.elapsed();
        }
        assert!(
            began.elapsed() < LIMIT + PATIENCE,
            "a dripping header kept its connection past the deadline"
        );
    };
    assert!(
        closed_after >= LIMIT,
        "closed after {closed_after:?}, before the deadline"
    );
    let (status, text) = gw.admin_get("/metrics");
    assert_eq!(status, 200);
    assert_eq!(
        metric(&text, "sealgate_request_header_timeouts_total"),
        Some(1.0)
    );
}

/// An upload whose body takes twice the header deadline (sent with
/// `Expect: 100-continue`, as SDKs send large PUTs) is stored; the
/// connection then idles past the deadline and serves the next request.
#[test]
fn slow_bodies_and_idle_connections_are_not_on_the_clock() {
    let backend = Backend::start(&["demo"]);
    let gw = gateway(&backend);
    let body = test_bytes(20 * 1024, 7);
    let pieces = body.chunks(body.len() / 20).collect::<Vec<_>>();
    let mut c = Conn::open(gw.port);
    let head = c.head(
        "PUT",
        "/demo/slow",
        &[("expect", "100-continue")],
        body.len(),
    );
    assert!(c.send(head.as_bytes()));
    let started = Instant::now();
    for (i, piece) in pieces.iter().enumerate() {
        assert!(c.send(piece));
        // The body's last byte brings the answer (and, after `100
        // Continue`, the gateway's close).
        if i + 1 < pieces.len() {
            assert!(matches!(c.idle(DRIP), Seen::Open), "cut mid-body");
        }
    }
    assert!(
        started.elapsed() >= 2 * LIMIT - DRIP,
        "the body was not slow"
    );
    let put = c.response();
    assert_eq!(put.status, 200, "{}", String::from_utf8_lossy(&put.body));

    // A kept-alive connection idles past the deadline and serves again.
    // (A new one: the gateway closes connections after `100 Continue`.)
    let mut c = Conn::open(gw.port);
    let get = c.head("GET", "/demo/slow", &[], 0);
    assert!(c.send(get.as_bytes()));
    assert_eq!(c.response().status, 200);
    let idle = Instant::now();
    assert!(
        matches!(c.idle(LIMIT + Duration::from_secs(1)), Seen::Open),
        "idle connection cut"
    );
    assert!(c.got.is_empty());
    assert!(idle.elapsed() > LIMIT);
    let get = c.head("GET", "/demo/slow", &[], 0);
    assert!(c.send(get.as_bytes()));
    let r = c.response();
    assert_eq!(r.status, 200);
    assert!(r.body == body, "read back differs");
    let (_, text) = gw.admin_get("/metrics");
    assert_eq!(
        metric(&text, "sealgate_request_header_timeouts_total"),
        Some(0.0)
    );
}

const SLOW_PUT: &str = include_str!("py/operations_slow_put.py");

/// `server.max_in_flight`: with one request held in flight (a PUT stopped
/// halfway), the next is answered `503 SlowDown` with `Retry-After`
/// before any work, and counted; once the held one ends, requests are
/// served again, and the held PUT was stored whole.
#[test]
fn a_full_instance_answers_slow_down_before_any_work() {
    use std::io::BufRead;
    let backend = Backend::start(&["demo"]);
    let gw = Gateway::start_with(
        &backend,
        &Options {
            server_extra: "  max_in_flight: 1\n",
            extra: LOCAL_PROVIDER,
            ..Default::default()
        },
    );
    let mut put = python_child(SLOW_PUT, &[&gw.url(), "demo", "held", "300000"]);
    let mut out = std::io::BufReader::new(put.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "started");
    // The PUT's bytes are sent, not yet read: wait until the gateway
    // counts it, or the GET could come first and the PUT be refused.
    until("the held PUT to be in flight", PATIENCE, || {
        let (_, text) = gw.admin_get("/metrics");
        metric(&text, "sealgate_in_flight_requests") == Some(1.0)
    });
    let refused = common::raw::signed_get(gw.port, "demo", "held", None);
    assert_eq!(
        (refused.status, refused.error_code().as_deref()),
        (503, Some("SlowDown"))
    );
    assert_eq!(refused.header("retry-after"), Some("1"));
    let (_, text) = gw.admin_get("/metrics");
    assert_eq!(metric(&text, "sealgate_load_refusals_total"), Some(1.0));
    writeln!(put.stdin.take().unwrap(), "go").unwrap();
    line.clear();
    out.read_line(&mut line).unwrap();
    assert!(line.starts_with("200"), "{line}");
    assert!(put.wait().unwrap().success());
    until("the held request to end", PATIENCE, || {
        let (_, text) = gw.admin_get("/metrics");
        metric(&text, "sealgate_in_flight_requests") == Some(0.0)
    });
    let served = common::raw::signed_get(gw.port, "demo", "held", None);
    assert_eq!(served.status, 200);
    assert_eq!(served.body.len(), 300_000);
}

/// `auth.clients[].rate_limit`: a key past its burst is answered `503
/// SlowDown` with `Retry-After`, before its request reaches the backend;
/// requests that fail authentication under the key's id take none of its
/// budget (an outsider cannot spend a victim's rate); other keys are
/// served meanwhile.
#[test]
fn an_access_key_over_its_rate_is_slowed_down_before_any_work() {
    const BURST: usize = 3;
    const TRIES: usize = 12;
    let backend = Backend::start(&["demo"]);
    let gw = Gateway::start_with(
        &backend,
        &Options {
            reader_extra: "      rate_limit: {requests_per_second: 1, burst: 3}\n",
            extra: LOCAL_PROVIDER,
            ..Default::default()
        },
    );
    let host = format!("127.0.0.1:{}", gw.port);
    let get = |secret: &str| {
        common::raw::signed_request_as(
            (READER_KEY, secret),
            gw.port,
            &host,
            "GET",
            "/demo/absent",
            &[],
            b"",
        )
    };
    // Forged under the reader's id: refused by the signature, not the rate.
    for _ in 0..2 * BURST {
        let r = get("not-the-reader-secret");
        assert_eq!(
            (r.status, r.error_code().as_deref()),
            (403, Some("SignatureDoesNotMatch"))
        );
    }
    let started = Instant::now();
    let answers: Vec<_> = (0..TRIES).map(|_| get(READER_SECRET)).collect();
    let elapsed = started.elapsed();
    // The burst is served first, whole.
    for r in &answers[..BURST] {
        assert_eq!(
            (r.status, r.error_code().as_deref()),
            (404, Some("NoSuchKey"))
        );
    }
    let refused: Vec<_> = answers.iter().filter(|r| r.status == 503).collect();
    for r in &refused {
        assert_eq!(r.error_code().as_deref(), Some("SlowDown"));
        assert_eq!(r.header("retry-after"), Some("1"));
    }
    let served = TRIES - refused.len();
    // At one a second, the time the tries took adds at most that many.
    assert!(
        served <= BURST + elapsed.as_secs() as usize + 1,
        "{served} served in {elapsed:?}"
    );
    assert!(!refused.is_empty());
    // Another key is not limited by the reader's rate.
    assert_eq!(
        common::raw::signed_get(gw.port, "demo", "absent", None).status,
        404
    );
    let (_, text) = gw.admin_get("/metrics");
    assert_eq!(
        metric(&text, "sealgate_rate_limited_requests_total"),
        Some(refused.len() as f64)
    );
    // The key's quota, not a failure of the service: outside the
    // availability objective's errors.
    assert_eq!(
        metric(
            &text,
            "sealgate_requests_total{operation=\"GetObject\",result=\"throttled\",status_class=\"5xx\"}"
        ),
        Some(refused.len() as f64)
    );
    assert!(
        !text.contains("result=\"error\""),
        "throttled requests counted as errors"
    );
    // Only the served requests reached the backend.
    assert_eq!(
        metric(
            &text,
            "sealgate_upstream_response_seconds_count{operation=\"GetObject\"}"
        ),
        Some(served as f64 + 1.0)
    );
}
