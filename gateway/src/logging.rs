//! Log output. Lines go to stderr from a writer thread of their own, so a
//! request never waits on a slow log consumer (a full pipe, a stalled
//! journald or log shipper): when `logging.buffer_lines` lines are waiting,
//! new ones are dropped and counted (`sealgate_log_lines_dropped_total`).
//! JSON lines carry the event's fields at the top level, where log shippers
//! index them. Refusals an outsider can repeat at will (connections
//! without a PROXY header, stalled headers) are logged through a
//! [`Throttle`], so a flood costs a few lines and a count.

use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use sealgate_config::{LogFormat, Logging};
use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};

/// The dropped-lines count of the process's log writer, once it exists.
static DROPPED: OnceLock<ErrorCounter> = OnceLock::new();

/// Starts the log writer for `logging`; lines still buffered are written
/// when the returned guard drops (keep it until the process ends).
pub fn init(logging: &Logging) -> WorkerGuard {
    let level = logging.level.as_str();
    let filter = tracing_subscriber::EnvFilter::try_from_env("SEALGATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("{level},pingora=warn")));
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(logging.buffer_lines)
        .thread_name("sealgate-log")
        .finish(std::io::stderr());
    let _ = DROPPED.set(writer.error_counter());
    // Colour only on a terminal: files, journald and log shippers get plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(writer);
    match logging.format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
        LogFormat::Text => builder.init(),
    }
    guard
}

/// Lines the log writer dropped since start (0 when logging was not set up
/// by [`init`], as in tests that run gateways in-process).
pub fn dropped_lines() -> u64 {
    DROPPED.get().map_or(0, |c| c.dropped_lines() as u64)
}

/// Lines one kind of repeated refusal may log per [`THROTTLE_WINDOW`].
const THROTTLE_LINES: u32 = 10;
/// The window [`THROTTLE_LINES`] are counted in.
const THROTTLE_WINDOW: Duration = Duration::from_secs(10);

/// A per-kind log budget: at most [`THROTTLE_LINES`] lines a window; the
/// rest are only counted (metrics count every refusal regardless), and the
/// next line logged says how many were left out.
pub struct Throttle {
    state: Mutex<ThrottleState>,
}

struct ThrottleState {
    window_start: Option<Instant>,
    logged: u32,
    suppressed: u64,
}

impl Throttle {
    pub const fn new() -> Self {
        Self {
            state: Mutex::new(ThrottleState {
                window_start: None,
                logged: 0,
                suppressed: 0,
            }),
        }
    }

    /// Whether to log one more line now: `Some(n)` with the lines left out
    /// since the last one logged, `None` to leave this one out.
    pub fn admit(&self) -> Option<u64> {
        self.admit_at(Instant::now())
    }

    fn admit_at(&self, now: Instant) -> Option<u64> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let fresh = s
            .window_start
            .is_none_or(|start| now.saturating_duration_since(start) >= THROTTLE_WINDOW);
        if fresh {
            s.window_start = Some(now);
            s.logged = 0;
        }
        if s.logged >= THROTTLE_LINES {
            s.suppressed += 1;
            return None;
        }
        s.logged += 1;
        Some(std::mem::take(&mut s.suppressed))
    }
}

impl Default for Throttle {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_logs_its_budget_then_says_how_many_were_left_out() {
        let t = Throttle::new();
        let start = Instant::now();
        let logged: Vec<_> = (0..25).map(|_| t.admit_at(start)).collect();
        assert_eq!(logged.iter().filter(|l| l.is_some()).count(), 10);
        assert!(logged[..10].iter().all(|l| *l == Some(0)));
        assert!(logged[10..].iter().all(Option::is_none));
        // Still within the window: left out.
        assert_eq!(t.admit_at(start + THROTTLE_WINDOW / 2), None);
        // A new window: logged, with the 16 left out before it.
        assert_eq!(t.admit_at(start + THROTTLE_WINDOW), Some(16));
        assert_eq!(t.admit_at(start + THROTTLE_WINDOW), Some(0));
    }
}
