//! Where an HTTP/1 connection stands between "a request header has begun"
//! and "its header is complete", seen only from the bytes that cross it.
//!
//! Pingora bounds each read of a request header (60 s), not the header as
//! a whole: a client sending one byte every 59 s holds a connection, a task
//! and a header buffer forever without ever being authenticated. The
//! gateway therefore wraps each client connection and gives every request
//! header a total deadline, counted from its first byte. That wrapper sees
//! only bytes, so this watch tells it when the clock runs: from the first
//! byte read after the connection opened or after a final response began,
//! until the blank line that ends the header. Bodies never run on the
//! clock: a header ends the watch until the gateway answers, so slow
//! uploads of authenticated clients stay as slow as they like (each read
//! still bounded by Pingora).
//!
//! Errors go one way only: anything unclear ends the watch early (a
//! weaker deadline), never starts it on a body.

/// Where the connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for, or reading, a request header.
    Header {
        /// A byte of it has arrived (the clock runs).
        begun: bool,
        /// A byte other than CR or LF has arrived: blank lines before a
        /// request line (which HTTP/1.1 allows) do not end a header.
        text: bool,
        /// Line feeds in a row at the end of what arrived (CRs ignored).
        newlines: u8,
    },
    /// The header is complete; the gateway has not answered yet (the body
    /// may be arriving). Reads are not watched. `seen` bytes of the
    /// response's status line have been written (kept in `HeaderWatch::status`),
    /// until there are enough to tell an interim answer from the final one.
    Request { seen: u8 },
    /// An interim answer's header is being written; `newlines` as above.
    Interim { newlines: u8 },
}

/// The watch over one connection.
#[derive(Debug, Clone)]
pub struct HeaderWatch {
    phase: Phase,
    /// The start of the response's status line, gathered across writes.
    status: [u8; STATUS_DIGIT + 1],
}

impl Default for HeaderWatch {
    fn default() -> Self {
        Self::new()
    }
}

const AWAITING: Phase = Phase::Header {
    begun: false,
    text: false,
    newlines: 0,
};

/// The start of a response status line, `HTTP/1.x`; the status code's
/// first digit follows at [`STATUS_DIGIT`].
const STATUS_LINE_PREFIX: &[u8] = b"HTTP/1.";
const STATUS_DIGIT: usize = 9;

impl HeaderWatch {
    /// A new connection: the first request's header is awaited.
    pub fn new() -> Self {
        Self {
            phase: AWAITING,
            status: [0; STATUS_DIGIT + 1],
        }
    }

    /// Whether a request header's clock runs: one has begun and has not
    /// ended.
    pub fn header_open(&self) -> bool {
        matches!(self.phase, Phase::Header { begun: true, .. })
    }

    /// Bytes the client sent, in order.
    pub fn on_read(&mut self, bytes: &[u8]) {
        let Phase::Header {
            begun,
            text,
            newlines,
        } = &mut self.phase
        else {
            return;
        };
        if bytes.is_empty() {
            return;
        }
        *begun = true;
        for &b in bytes {
            match b {
                b'\n' => {
                    *newlines = newlines.saturating_add(1);
                    if *text && *newlines >= 2 {
                        self.phase = Phase::Request { seen: 0 };
                        return;
                    }
                }
                b'\r' => {}
                _ => {
                    *text = true;
                    *newlines = 0;
                }
            }
        }
    }

    /// Bytes the gateway sent, in order. The first write after a header
    /// is the response's start: an interim `1xx` (`100 Continue`) leaves
    /// the body to come; anything else is the final answer, after which
    /// the next bytes read start the next request.
    pub fn on_write(&mut self, mut bytes: &[u8]) {
        while let Phase::Request { seen } = &mut self.phase {
            if bytes.is_empty() {
                return;
            }
            // Gather the status line's start, however the writes cut it.
            let at = usize::from(*seen);
            let take = (self.status.len() - at).min(bytes.len());
            self.status[at..at + take].copy_from_slice(&bytes[..take]);
            *seen += take as u8;
            bytes = &bytes[take..];
            if usize::from(*seen) < self.status.len() {
                return;
            }
            let interim =
                self.status.starts_with(STATUS_LINE_PREFIX) && self.status[STATUS_DIGIT] == b'1';
            if !interim {
                self.phase = AWAITING;
                return;
            }
            // `100 Continue`: the body is still to come; the next status
            // line (after this one's header) is the next answer.
            self.phase = Phase::Interim { newlines: 0 };
        }
        if let Phase::Interim { newlines } = &mut self.phase {
            for (i, &b) in bytes.iter().enumerate() {
                match b {
                    b'\n' => {
                        *newlines = newlines.saturating_add(1);
                        if *newlines >= 2 {
                            self.phase = Phase::Request { seen: 0 };
                            return self.on_write(&bytes[i + 1..]);
                        }
                    }
                    b'\r' => {}
                    _ => *newlines = 0,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(w: &mut HeaderWatch, pieces: &[&[u8]]) {
        for p in pieces {
            w.on_read(p);
        }
    }

    #[test]
    fn the_clock_runs_from_the_first_byte_to_the_blank_line() {
        let mut w = HeaderWatch::new();
        assert!(!w.header_open(), "an idle connection is not on the clock");
        w.on_read(b"G");
        assert!(w.header_open());
        read_all(&mut w, &[b"ET / HTTP/1.1\r\nHost: a\r\n", b"\r"]);
        assert!(w.header_open());
        w.on_read(b"\nbody bytes");
        assert!(!w.header_open());
    }

    #[test]
    fn the_blank_line_may_be_split_across_reads_at_every_point() {
        let header = b"PUT /b/k HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc";
        let end = header.len() - 3;
        for split in 1..header.len() {
            let mut w = HeaderWatch::new();
            w.on_read(&header[..split]);
            assert_eq!(w.header_open(), split < end, "split at {split}");
            w.on_read(&header[split..]);
            assert!(!w.header_open(), "split at {split}");
        }
    }

    #[test]
    fn bare_line_feeds_end_a_header_too() {
        let mut w = HeaderWatch::new();
        w.on_read(b"GET / HTTP/1.1\nHost: a\n\n");
        assert!(!w.header_open());
    }

    #[test]
    fn blank_lines_before_the_request_line_do_not_stop_the_clock() {
        let mut w = HeaderWatch::new();
        w.on_read(b"\r\n\r\n\r\n");
        assert!(
            w.header_open(),
            "an attacker could otherwise end the watch for free"
        );
        w.on_read(b"GET / HTTP/1.1\r\n");
        assert!(w.header_open());
        w.on_read(b"\r\n");
        assert!(!w.header_open());
    }

    #[test]
    fn a_body_is_never_on_the_clock_until_the_final_answer() {
        let mut w = HeaderWatch::new();
        w.on_read(b"PUT /b/k HTTP/1.1\r\nExpect: 100-continue\r\n\r\n");
        w.on_write(b"HTTP/1.1 100 Continue\r\n\r\n");
        w.on_read(b"slow body");
        assert!(!w.header_open(), "100 Continue is not the answer");
        w.on_write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        assert!(!w.header_open(), "idle between requests");
        w.on_write(b"more of the response");
        w.on_read(b"GET /next");
        assert!(w.header_open(), "the next request is on the clock");
    }

    #[test]
    fn an_interim_answer_is_recognised_however_the_writes_cut_it() {
        let written =
            b"HTTP/1.1 100 Continue\r\nx-amz-request-id: 1\r\n\r\nHTTP/1.1 200 OK\r\n\r\n";
        let interim_end = written.len() - b"HTTP/1.1 200 OK\r\n\r\n".len();
        for cut in 1..written.len() {
            let mut w = HeaderWatch::new();
            w.on_read(b"PUT /b/k HTTP/1.1\r\nExpect: 100-continue\r\n\r\n");
            w.on_write(&written[..cut]);
            w.on_read(b"body");
            let answered = cut > interim_end + STATUS_DIGIT;
            assert_eq!(w.header_open(), answered, "cut at {cut}");
            if !answered {
                w.on_write(&written[cut..]);
                w.on_read(b"GET");
                assert!(w.header_open(), "cut at {cut}");
            }
        }
    }

    #[test]
    fn many_line_feeds_do_not_overflow() {
        let mut w = HeaderWatch::new();
        w.on_read(&[b'\n'; 1000]);
        assert!(w.header_open());
    }

    #[test]
    fn writes_while_a_header_is_awaited_change_nothing() {
        let mut w = HeaderWatch::new();
        w.on_read(b"GET /");
        w.on_write(b"HTTP/1.1 400 Bad Request\r\n\r\n");
        assert!(w.header_open());
    }

    #[test]
    fn anything_but_an_interim_status_line_is_the_answer() {
        for first in [
            &b"HTTP/1.1 404 Not Found\r\n"[..],
            b"xxxxxxxxxxxx",
            b"HTTP/1.0 200 OK\r\n",
        ] {
            let mut w = HeaderWatch::new();
            w.on_read(b"GET / HTTP/1.1\r\n\r\n");
            w.on_write(first);
            w.on_read(b"G");
            assert!(w.header_open(), "{first:?}");
        }
    }
}
