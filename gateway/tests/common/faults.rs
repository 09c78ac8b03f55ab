//! A relay between the gateway and its backend that makes the backend
//! fail on cue: refuse connections, cut a request or a response part-way,
//! stall, or answer an error itself. The gateway is pointed at it; a rule
//! names the request it acts on (by the start of its request line), so
//! every other request, other clients' included, goes through untouched.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use super::Upstream;

/// What the backend does to the request a rule names.
#[derive(Clone, Copy, Debug)]
pub enum Fault {
    /// Every new connection is closed at once, unread (a backend that is
    /// down; the request never arrives).
    Refuse,
    /// The connection is cut after this many request body bytes reached the
    /// backend (mid-upload).
    CutUpload(u64),
    /// The connection is cut after this many response body bytes reached
    /// the gateway (mid-download).
    CutDownload(u64),
    /// The request reaches the backend; its answer never comes back.
    Stall,
    /// The backend answers this status and S3 error code itself, after
    /// reading the request's body.
    Answer(u16, &'static str),
}

/// The rule in force.
struct Rule {
    /// The start of the request lines it acts on (`PUT /demo/key`).
    request: String,
    fault: Fault,
}

struct Shared {
    rule: Mutex<Option<Rule>>,
    /// Every connection's sockets, to close them all at once (weak: a
    /// connection's sockets close when its threads end).
    sockets: Mutex<Vec<Weak<TcpStream>>>,
    /// Times a rule acted.
    hits: AtomicU32,
    stop: AtomicBool,
}

/// A relay in front of `backend` that fails on cue.
pub struct FaultRelay<'a> {
    backend: &'a dyn Upstream,
    pub port: u16,
    shared: Arc<Shared>,
}

impl<'a> FaultRelay<'a> {
    pub fn start(backend: &'a dyn Upstream) -> FaultRelay<'a> {
        let target = backend
            .url()
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            rule: Mutex::new(None),
            sockets: Mutex::new(Vec::new()),
            hits: AtomicU32::new(0),
            stop: AtomicBool::new(false),
        });
        let s = shared.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if s.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let refuse = matches!(
                    s.rule.lock().unwrap().as_ref().map(|r| r.fault),
                    Some(Fault::Refuse)
                );
                if refuse {
                    s.hits.fetch_add(1, Ordering::SeqCst);
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(&target) else {
                    continue;
                };
                relay(client, server, s.clone());
            }
        });
        FaultRelay {
            backend,
            port,
            shared,
        }
    }

    /// From now on, requests whose request line starts with `request` meet
    /// `fault`.
    pub fn fail(&self, request: &str, fault: Fault) {
        *self.shared.rule.lock().unwrap() = Some(Rule {
            request: request.to_string(),
            fault,
        });
        self.shared.hits.store(0, Ordering::SeqCst);
    }

    /// No more faults.
    pub fn heal(&self) {
        *self.shared.rule.lock().unwrap() = None;
    }

    /// Closes every connection through the relay (as a backend restart
    /// would): whoever holds the other end sees it closed.
    pub fn close_all(&self) {
        for s in self.shared.sockets.lock().unwrap().drain(..) {
            if let Some(s) = s.upgrade() {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
    }

    /// Times the fault in force acted.
    pub fn hits(&self) -> u32 {
        self.shared.hits.load(Ordering::SeqCst)
    }
}

impl Drop for FaultRelay<'_> {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        *self.shared.rule.lock().unwrap() = None;
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

super::relay::upstream_in_front!(FaultRelay);

/// What the response direction does with the next response.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Next {
    Pass,
    Cut(u64),
    Hold,
}

/// One connection: requests read header by header (bodies by their
/// `Content-Length`), each checked against the rule.
fn relay(client: TcpStream, server: TcpStream, shared: Arc<Shared>) {
    let next = Arc::new(Mutex::new(Next::Pass));
    let (client, server) = (Arc::new(client), Arc::new(server));
    {
        let mut all = shared.sockets.lock().unwrap();
        all.retain(|s| s.strong_count() > 0);
        all.push(Arc::downgrade(&client));
        all.push(Arc::downgrade(&server));
    }
    let (from_gw, to_backend) = (client.clone(), server.clone());
    let (from_backend, to_gw) = (server, client);
    let cut: Arc<dyn Fn() + Send + Sync> = {
        let (a, b) = (to_gw.clone(), to_backend.clone());
        Arc::new(move || {
            let _ = a.shutdown(Shutdown::Both);
            let _ = b.shutdown(Shutdown::Both);
        })
    };
    let cut_up = cut.clone();
    let next_up = next.clone();
    let answer_to = to_gw.clone();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        let mut pending: Vec<u8> = Vec::new();
        loop {
            // A request header.
            let head_end = loop {
                if let Some(at) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                    break Some(at + 4);
                }
                match (&*from_gw).read(&mut buf) {
                    Ok(0) | Err(_) => break None,
                    Ok(n) => pending.extend_from_slice(&buf[..n]),
                }
            };
            let Some(head_end) = head_end else { break };
            let head: Vec<u8> = pending.drain(..head_end).collect();
            let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
            let line = String::from_utf8_lossy(&head)
                .lines()
                .next()
                .unwrap_or_default()
                .to_string();
            let mut body_left = text
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0);
            let fault = shared
                .rule
                .lock()
                .unwrap()
                .as_ref()
                .filter(|r| line.starts_with(&r.request))
                .map(|r| r.fault);
            if fault.is_some() {
                shared.hits.fetch_add(1, Ordering::SeqCst);
            }
            if let Some(Fault::Refuse) = fault {
                // A backend gone: the connection it had is closed too.
                cut_up();
                break;
            }
            if let Some(Fault::Answer(status, code)) = fault {
                // Read the body, answer, close.
                let mut left = body_left.saturating_sub(pending.len() as u64);
                while left > 0 {
                    match (&*from_gw).read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => left = left.saturating_sub(n as u64),
                    }
                }
                let body = format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>injected</Message><RequestId>fault</RequestId></Error>"
                );
                let answer = format!(
                    "HTTP/1.1 {status} Injected\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = (&*answer_to).write_all(answer.as_bytes());
                cut_up();
                break;
            }
            *next_up.lock().unwrap() = match fault {
                Some(Fault::CutDownload(n)) => Next::Cut(n),
                Some(Fault::Stall) => Next::Hold,
                _ => Next::Pass,
            };
            if (&*to_backend).write_all(&head).is_err() {
                break;
            }
            // The body, cut where the rule says.
            let mut cut_after = match fault {
                Some(Fault::CutUpload(n)) => Some(n),
                _ => None,
            };
            loop {
                if body_left == 0 {
                    break;
                }
                if pending.is_empty() {
                    match (&*from_gw).read(&mut buf) {
                        Ok(0) | Err(_) => {
                            cut_up();
                            return;
                        }
                        Ok(n) => pending.extend_from_slice(&buf[..n]),
                    }
                }
                let mut take = (body_left as usize).min(pending.len());
                if let Some(left) = cut_after {
                    take = take.min(left as usize);
                }
                if (&*to_backend).write_all(&pending[..take]).is_err() {
                    return;
                }
                pending.drain(..take);
                body_left -= take as u64;
                if let Some(left) = &mut cut_after {
                    *left -= take as u64;
                    if *left == 0 {
                        cut_up();
                        return;
                    }
                }
            }
        }
        let _ = to_backend.shutdown(Shutdown::Write);
    });
    std::thread::spawn(move || {
        let _ = to_gw.set_write_timeout(Some(Duration::from_secs(60)));
        let mut buf = vec![0u8; 64 * 1024];
        // Response body bytes still to pass before the cut, once the
        // response's header has gone by.
        let mut header: Option<Vec<u8>> = None;
        let mut cutting: Option<u64> = None;
        loop {
            let n = match (&*from_backend).read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let mut data = &buf[..n];
            let mode = *next.lock().unwrap();
            if mode == Next::Hold {
                // Never answered: keep reading so the backend is not
                // blocked, pass nothing on.
                continue;
            }
            if let (Next::Cut(after), None) = (mode, cutting) {
                let h = header.get_or_insert_with(Vec::new);
                let before = h.len();
                h.extend_from_slice(data);
                if let Some(at) = h.windows(4).position(|w| w == b"\r\n\r\n") {
                    let body_start = at + 4 - before;
                    if (&*to_gw).write_all(&data[..body_start]).is_err() {
                        break;
                    }
                    data = &data[body_start..];
                    cutting = Some(after);
                    header = None;
                } else {
                    if (&*to_gw).write_all(data).is_err() {
                        break;
                    }
                    continue;
                }
            }
            if let Some(left) = &mut cutting {
                let take = (*left as usize).min(data.len());
                let _ = (&*to_gw).write_all(&data[..take]);
                *left -= take as u64;
                if *left == 0 {
                    cut();
                    break;
                }
                continue;
            }
            if (&*to_gw).write_all(data).is_err() {
                break;
            }
        }
        let _ = to_gw.shutdown(Shutdown::Both);
    });
}
