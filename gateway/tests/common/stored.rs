//! What a backend stores for an encrypted object, checked around the
//! gateway with an oracle that is not the gateway's code: the independent
//! reader (`py/format_reader.py`, written from docs/FORMAT.md) decrypts
//! every frame of every part and must get back exactly the plaintext the
//! test uploaded, and no 32-byte window of that plaintext appears anywhere
//! in the stored bytes.

use super::{aws_as, python_ok, Upstream, LOCAL_PROVIDER};

const READER: &str = include_str!("../py/format_reader.py");

/// The plaintext frame size of docs/FORMAT.md.
const FRAME: usize = 65_536;

/// The shortest run of plaintext that must not appear in the stored bytes.
/// Shorter runs turn up in random ciphertext by chance.
pub const WINDOW: usize = 32;
/// Plaintext is looked for by 8-byte prints taken every `STRIDE` bytes:
/// every `WINDOW`-byte window of the plaintext holds one print whole
/// (`STRIDE + PRINT - 1 = WINDOW`), so a stored body in which no print
/// starts a common run of `WINDOW` bytes holds no window of the plaintext.
const PRINT: usize = 8;
const STRIDE: usize = WINDOW - PRINT + 1;
/// The two print filters are at most 2^26 bits (8 MiB) each, so they stay
/// mostly in cache while every stored offset is looked up in them.
const MAX_FILTER_BITS: u32 = 26;
/// The bucket index is at most 2^24 entries (64 MiB).
const MAX_BUCKET_BITS: u32 = 24;

/// Asserts that `backend` stores `bucket/key` as ciphertext of
/// `plaintext`, written by a gateway with [`LOCAL_PROVIDER`]: the
/// independent reader unwraps the data key, checks the commitment and
/// decrypts every frame of every part of the stored bytes to exactly
/// `plaintext`, and no [`WINDOW`]-byte window of `plaintext` appears at
/// any offset of the stored bytes (use plaintexts without repeats, such
/// as `test_bytes`). Returns the stored bytes.
pub fn assert_ciphertext_of(
    backend: &dyn Upstream,
    bucket: &str,
    key: &str,
    plaintext: &[u8],
) -> Vec<u8> {
    let what = format!("{}: {bucket}/{key}", backend.name());
    let stored = backend.stored(bucket, key);
    let dir = tempfile::tempdir().unwrap();
    let meta = dir.path().join("meta.json");
    let body = dir.path().join("stored");
    let plain = dir.path().join("plaintext");
    std::fs::write(&meta, stored_metadata(backend, bucket, key)).unwrap();
    std::fs::write(&body, &stored).unwrap();
    std::fs::write(&plain, plaintext).unwrap();
    let out = python_ok(
        READER,
        &[
            "stored",
            meta.to_str().unwrap(),
            body.to_str().unwrap(),
            plain.to_str().unwrap(),
            local_master_key(),
        ],
    );
    // Every byte of the plaintext came out of a frame of at most 64 KiB.
    let frames = out
        .trim()
        .strip_prefix("ok ")
        .and_then(|rest| rest.split_once(" frames="))
        .and_then(|(_, n)| n.parse::<usize>().ok())
        .unwrap_or_else(|| panic!("{what}: the reader said {out}"));
    assert!(
        frames >= plaintext.len().div_ceil(FRAME).max(1),
        "{what}: {frames} frames for {} bytes",
        plaintext.len()
    );
    if let Some(at) = plaintext_window_in(&stored, plaintext) {
        panic!("{what}: {WINDOW} bytes of the plaintext are stored as they are, at offset {at}");
    }
    stored
}

/// The object's user metadata as the backend holds it (JSON, names
/// without `x-amz-meta-`), read around the gateway.
fn stored_metadata(backend: &dyn Upstream, bucket: &str, key: &str) -> String {
    let (id, secret) = backend.credentials();
    let out = aws_as(
        id,
        secret,
        &backend.url(),
        &[
            "s3api",
            "head-object",
            "--bucket",
            bucket,
            "--key",
            key,
            "--query",
            "Metadata",
            "--output",
            "json",
        ],
    );
    assert!(
        out.status.success(),
        "{}: HEAD {bucket}/{key}: {}",
        backend.name(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The master key of [`LOCAL_PROVIDER`] (base64).
fn local_master_key() -> &'static str {
    LOCAL_PROVIDER
        .split_once("master_key:")
        .map(|(_, rest)| rest.trim())
        .expect("LOCAL_PROVIDER names its master key")
}

/// Where `stored` holds a [`WINDOW`]-byte window of `plaintext`, if
/// anywhere: the offset of the first print of the plaintext found with a
/// common run of at least [`WINDOW`] bytes through it.
pub fn plaintext_window_in(stored: &[u8], plaintext: &[u8]) -> Option<usize> {
    if plaintext.len() < WINDOW || stored.len() < WINDOW {
        return None;
    }
    let prints = Prints::new(plaintext);
    // Every offset where a print can start; split between threads (the
    // tests run unoptimised, and stored objects go up to 200 MB).
    let ends = stored.len() - PRINT + 1;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    let span = ends.div_ceil(threads);
    std::thread::scope(|s| {
        let prints = &prints;
        let scans: Vec<_> = (0..ends)
            .step_by(span)
            .map(|from| s.spawn(move || prints.find(stored, from, (from + span).min(ends))))
            .collect();
        scans
            .into_iter()
            .filter_map(|scan| scan.join().unwrap())
            .min()
    })
}

/// The prints of a plaintext: two bit filters (by the high and by the low
/// bits of a print) that pass few stored offsets by chance, and the print
/// offsets bucketed by their high bits to confirm the rest.
struct Prints<'a> {
    plaintext: &'a [u8],
    filter_bits: u32,
    high: Vec<u8>,
    low: Vec<u8>,
    bucket_bits: u32,
    /// Where each bucket starts in `entries` (one more than buckets).
    starts: Vec<u32>,
    /// Print numbers (offset / `STRIDE`), by bucket.
    entries: Vec<u32>,
}

fn print_at(bytes: &[u8], at: usize) -> u64 {
    let mut print = [0u8; PRINT];
    print.copy_from_slice(&bytes[at..at + PRINT]);
    u64::from_le_bytes(print)
}

fn bit_set(map: &[u8], i: usize) -> bool {
    (map[i >> 3] >> (i & 7)) & 1 != 0
}

fn set_bit(map: &mut [u8], i: usize) {
    map[i >> 3] |= 1 << (i & 7);
}

impl<'a> Prints<'a> {
    /// `plaintext` is at least `PRINT` bytes long.
    fn new(plaintext: &'a [u8]) -> Self {
        let count = (plaintext.len() - PRINT) / STRIDE + 1;
        let log = count.next_power_of_two().trailing_zeros();
        // About one bit in 16 set: each filter passes ~6% of random offsets.
        let filter_bits = (log + 4).clamp(6, MAX_FILTER_BITS);
        let bucket_bits = log.clamp(1, MAX_BUCKET_BITS);
        let mut high = vec![0u8; 1 << (filter_bits - 3)];
        let mut low = vec![0u8; 1 << (filter_bits - 3)];
        let mut starts = vec![0u32; (1 << bucket_bits) + 1];
        let low_mask = (1u64 << filter_bits) - 1;
        for n in 0..count {
            let print = print_at(plaintext, n * STRIDE);
            set_bit(&mut high, (print >> (64 - filter_bits)) as usize);
            set_bit(&mut low, (print & low_mask) as usize);
            starts[(print >> (64 - bucket_bits)) as usize + 1] += 1;
        }
        let mut sum = 0;
        for start in starts.iter_mut() {
            sum += *start;
            *start = sum;
        }
        let mut next = starts.clone();
        let mut entries = vec![0u32; count];
        for n in 0..count {
            let bucket = (print_at(plaintext, n * STRIDE) >> (64 - bucket_bits)) as usize;
            entries[next[bucket] as usize] = n as u32;
            next[bucket] += 1;
        }
        Prints {
            plaintext,
            filter_bits,
            high,
            low,
            bucket_bits,
            starts,
            entries,
        }
    }

    /// The first offset in `from..to` of `stored` where a print of the
    /// plaintext starts a common run of at least `WINDOW` bytes (`to` at
    /// most `stored.len() - PRINT + 1`).
    fn find(&self, stored: &[u8], from: usize, to: usize) -> Option<usize> {
        let shift = 64 - self.filter_bits;
        let low_mask = (1u64 << self.filter_bits) - 1;
        let mut at = from;
        let mut print = print_at(stored, at);
        loop {
            if bit_set(&self.high, (print >> shift) as usize)
                && bit_set(&self.low, (print & low_mask) as usize)
            {
                let bucket = (print >> (64 - self.bucket_bits)) as usize;
                let (first, end) = (self.starts[bucket], self.starts[bucket + 1]);
                for &n in &self.entries[first as usize..end as usize] {
                    let p = n as usize * STRIDE;
                    if print_at(self.plaintext, p) == print
                        && common_run(stored, at, self.plaintext, p) >= WINDOW
                    {
                        return Some(at);
                    }
                }
            }
            at += 1;
            if at == to {
                return None;
            }
            print = (print >> 8) | (u64::from(stored[at + PRINT - 1]) << 56);
        }
    }
}

/// The length of the longest run of equal bytes through `a[i]` and `b[j]`.
fn common_run(a: &[u8], i: usize, b: &[u8], j: usize) -> usize {
    let back = (1..=i.min(j)).take_while(|&d| a[i - d] == b[j - d]).count();
    let ahead = (0..(a.len() - i).min(b.len() - j))
        .take_while(|&d| a[i + d] == b[j + d])
        .count();
    back + ahead
}
