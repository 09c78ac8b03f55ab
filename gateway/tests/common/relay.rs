//! A TCP relay between the gateway and its backend that counts what the
//! gateway sends, so a test can wait for a state ("the gateway has passed
//! on these bytes") instead of sleeping, and count the requests it made.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::Upstream;

/// Counters shared with the relay's threads.
#[derive(Default)]
struct Counts {
    /// Bytes of request bodies sent to the backend (after each header).
    body_bytes: AtomicU64,
    /// Requests sent to the backend (request lines seen).
    requests: AtomicU64,
    /// Their request lines, as sent, until [`Relay::take`] takes them.
    lines: Mutex<Vec<String>>,
}

/// Called with each request header the gateway sends, before the header's
/// last bytes go on: a test's chance to change the backend in between.
pub type Hook = Arc<dyn Fn(&str) + Send + Sync>;

/// A relay in front of `backend`; the gateway is pointed at it.
pub struct Relay<'a> {
    backend: &'a dyn Upstream,
    pub port: u16,
    counts: Arc<Counts>,
    stop: Arc<AtomicBool>,
}

impl<'a> Relay<'a> {
    pub fn start(backend: &'a dyn Upstream) -> Relay<'a> {
        Self::start_with_hook(backend, Arc::new(|_: &str| {}))
    }

    /// A relay that calls `hook` with every request header.
    pub fn start_with_hook(backend: &'a dyn Upstream, hook: Hook) -> Relay<'a> {
        let target = backend
            .url()
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let counts = Arc::new(Counts::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (counts.clone(), stop.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if s.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(&target) else {
                    continue;
                };
                pipe(client, server, c.clone(), hook.clone());
            }
        });
        Relay {
            backend,
            port,
            counts,
            stop,
        }
    }

    /// Request body bytes the gateway has sent to the backend so far.
    pub fn body_bytes(&self) -> u64 {
        self.counts.body_bytes.load(Ordering::SeqCst)
    }

    /// Requests the gateway has sent to the backend so far.
    pub fn requests(&self) -> u64 {
        self.counts.requests.load(Ordering::SeqCst)
    }

    /// Every request line since the last take; forgets them.
    pub fn take_all(&self) -> Vec<String> {
        std::mem::take(&mut *self.counts.lines.lock().unwrap())
    }

    /// The request lines for the object at `path` (`/bucket/key`, any
    /// query) since the last call; forgets every request seen so far. A
    /// request is noted before its header's last bytes go on, so by the
    /// time the gateway answers, every request it made is here.
    pub fn take(&self, path: &str) -> Vec<String> {
        let seen = std::mem::take(&mut *self.counts.lines.lock().unwrap());
        seen.into_iter()
            .filter(|line| {
                let target = line.split(' ').nth(1).unwrap_or("");
                target == path || target.starts_with(&format!("{path}?"))
            })
            .collect()
    }
}

impl Drop for Relay<'_> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// A relay on `port` in front of `backend` is that backend to a test: its
/// address, the backend's for everything else.
macro_rules! upstream_in_front {
    ($relay:ident) => {
        impl $crate::common::Upstream for $relay<'_> {
            fn url(&self) -> String {
                format!("http://127.0.0.1:{}", self.port)
            }

            fn credentials(&self) -> (&str, &str) {
                self.backend.credentials()
            }

            fn stored(&self, bucket: &str, key: &str) -> Vec<u8> {
                self.backend.stored(bucket, key)
            }

            fn has(&self, bucket: &str, key: &str) -> bool {
                self.backend.has(bucket, key)
            }

            fn keys(&self, bucket: &str) -> Vec<String> {
                self.backend.keys(bucket)
            }

            fn name(&self) -> &'static str {
                self.backend.name()
            }
        }
    };
}
pub(crate) use upstream_in_front;

upstream_in_front!(Relay);

/// Copies both ways; the gateway-to-backend direction is read as HTTP/1.1
/// requests (a header, then a `Content-Length` or chunked body, whose data
/// bytes count as body) to count requests and body bytes.
fn pipe(client: TcpStream, server: TcpStream, counts: Arc<Counts>, hook: Hook) {
    let (mut c_read, mut s_write) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    let (mut s_read, mut c_write) = (server, client);
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        let mut scan = RequestScan::default();
        loop {
            let n = match c_read.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            for header in scan.feed(&buf[..n], &counts) {
                hook(&header);
            }
            if s_write.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = s_write.shutdown(Shutdown::Write);
    });
    std::thread::spawn(move || {
        let _ = c_write.set_write_timeout(Some(Duration::from_secs(60)));
        let _ = std::io::copy(&mut s_read, &mut c_write);
        let _ = c_write.shutdown(Shutdown::Both);
    });
}

/// Where the reader of the request stream is.
#[derive(Default)]
struct RequestScan {
    /// Header bytes of the request being read.
    header: Vec<u8>,
    body: Body,
}

/// The body being read, by its framing.
#[derive(Default)]
enum Body {
    /// In a request header.
    #[default]
    None,
    /// `Content-Length` bytes still to come.
    Length(u64),
    /// `Transfer-Encoding: chunked`, at a size line (bytes so far).
    ChunkSize(Vec<u8>),
    /// Chunk data still to come, then its CRLF.
    ChunkData(u64),
    /// The CRLF after a chunk's data: bytes of it still to come.
    ChunkEnd(u8),
    /// The trailer after the last chunk, up to an empty line.
    Trailer(Vec<u8>),
}

impl RequestScan {
    /// Counts `data`; returns the request headers it completed.
    fn feed(&mut self, mut data: &[u8], counts: &Counts) -> Vec<String> {
        let mut headers = Vec::new();
        while let Some((&byte, rest)) = data.split_first() {
            match &mut self.body {
                Body::Length(left) => {
                    let take = (*left as usize).min(data.len());
                    counts.body_bytes.fetch_add(take as u64, Ordering::SeqCst);
                    data = &data[take..];
                    *left -= take as u64;
                    if *left == 0 {
                        self.body = Body::None;
                    }
                    continue;
                }
                Body::ChunkData(left) => {
                    let take = (*left as usize).min(data.len());
                    counts.body_bytes.fetch_add(take as u64, Ordering::SeqCst);
                    data = &data[take..];
                    *left -= take as u64;
                    if *left == 0 {
                        self.body = Body::ChunkEnd(2);
                    }
                    continue;
                }
                Body::ChunkEnd(left) => {
                    *left -= 1;
                    if *left == 0 {
                        self.body = Body::ChunkSize(Vec::new());
                    }
                }
                Body::ChunkSize(line) => {
                    line.push(byte);
                    if line.ends_with(b"\r\n") {
                        let text = String::from_utf8_lossy(&line[..line.len() - 2]).into_owned();
                        let size = text.split(';').next().unwrap_or("").trim();
                        let size = u64::from_str_radix(size, 16).unwrap_or(0);
                        self.body = if size == 0 {
                            Body::Trailer(Vec::new())
                        } else {
                            Body::ChunkData(size)
                        };
                    }
                }
                Body::Trailer(line) => {
                    line.push(byte);
                    if line.ends_with(b"\r\n") {
                        if line.len() == 2 {
                            self.body = Body::None;
                        } else {
                            line.clear();
                        }
                    }
                }
                Body::None => {
                    self.header.push(byte);
                    if self.header.ends_with(b"\r\n\r\n") {
                        counts.requests.fetch_add(1, Ordering::SeqCst);
                        let original = String::from_utf8_lossy(&self.header);
                        let line = original.lines().next().unwrap_or_default().to_string();
                        counts.lines.lock().unwrap().push(line);
                        let text = original.to_ascii_lowercase();
                        let length = text
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<u64>().ok());
                        let chunked = text.lines().any(|l| {
                            l.strip_prefix("transfer-encoding:")
                                .is_some_and(|v| v.contains("chunked"))
                        });
                        self.body = match length {
                            _ if chunked => Body::ChunkSize(Vec::new()),
                            Some(n) if n > 0 => Body::Length(n),
                            _ => Body::None,
                        };
                        self.header.clear();
                        headers.push(text);
                    }
                }
            }
            data = rest;
        }
        headers
    }
}
