//! `sealgate migrate`, the pure part: what an object's HEAD says about it,
//! the headers its encrypted copy is written with, how a backend answered
//! the conditional-write probe, and the run's summary.

use crate::ops::rewrap::copy_headers;

/// The part count of a multipart object from its ETag (`"…-N"`); `None`
/// for an object written by one PUT (or an ETag of another form).
pub fn part_count(etag: &str) -> Option<u32> {
    let (_, n) = etag.trim_matches('"').rsplit_once('-')?;
    n.parse()
        .ok()
        .filter(|&n| n > 0 && u64::from(n) <= sealgate_envelope::multipart::MAX_PARTS)
}

/// The part sizes a multipart object of `len` bytes in `parts` parts is
/// encrypted with: `told` (the object's own, as the backend answered
/// `HEAD ?partNumber=`) where they add up and the gateway's reads would
/// find them again, else [`regular_sizes`]; `Err` when no layout of that
/// count would read back as written.
pub fn choose_sizes(told: Option<Vec<u64>>, len: u64, parts: u32) -> Result<Vec<u64>, String> {
    use sealgate_envelope::multipart::mistakable_for_regular;
    if let Some(sizes) = told.filter(|s| {
        s.len() == parts as usize && s.iter().sum::<u64>() == len && !mistakable_for_regular(s)
    }) {
        return Ok(sizes);
    }
    let sizes = regular_sizes(len, parts);
    if mistakable_for_regular(&sizes) {
        return Err(format!(
            "no layout of {parts} parts of {len} bytes reads back as written"
        ));
    }
    Ok(sizes)
}

/// The request headers of the encrypted write (a PUT or a
/// CreateMultipartUpload): the object's own descriptive headers and user
/// metadata, with the envelope's fields.
pub fn write_headers<'a>(
    stored: impl Iterator<Item = (&'a str, &'a str)>,
    envelope: &[(String, String)],
) -> Vec<(String, String)> {
    copy_headers(stored, envelope)
        .into_iter()
        .filter(|(n, _)| n != "x-amz-metadata-directive")
        .collect()
}

/// Whether two ETags name the same version: as a header sends it or as
/// XML carries it (quotes written out, or as `&quot;`).
pub fn same_etag(a: &str, b: &str) -> bool {
    quoted_etag(a) == quoted_etag(b)
}

/// An ETag as a header carries it (an XML answer's may come unquoted, or
/// with its quotes as `&quot;`).
pub fn quoted_etag(e: &str) -> String {
    format!("\"{}\"", e.replace("&quot;", "\"").trim_matches('"'))
}

/// The smallest part but the last that S3 (and RGW, Garage) complete.
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;

/// Part sizes for `len` bytes in exactly `parts` parts, for a backend that
/// does not tell an object's own part sizes (`HEAD ?partNumber=` answered
/// with the whole object): every part but the last of one size, the last
/// not empty and not larger, and every part but the last at least
/// [`MIN_PART_SIZE`] where the count allows (it always does for an object
/// whose own parts met that minimum); where no one size makes that many
/// non-empty parts, sizes as even as they get. The sizes of a client that uploaded
/// in 5 MiB parts come out exactly.
pub fn regular_sizes(len: u64, parts: u32) -> Vec<u64> {
    let n = u64::from(parts.max(1));
    if n == 1 || len < n {
        return vec![len];
    }
    // Any size in lo..=hi makes exactly n parts with a non-empty last one.
    let lo = len.div_ceil(n);
    let hi = (len - 1) / (n - 1);
    if lo > hi {
        // No one size does: as even as it gets, larger parts first.
        let (q, r) = (len / n, len % n);
        return (0..n).map(|i| q + u64::from(i < r)).collect();
    }
    let size = lo.max(MIN_PART_SIZE).min(hi);
    let mut sizes = vec![size; (n - 1) as usize];
    sizes.push(len - size * (n - 1));
    sizes
}

/// The ETag no object has: what the probe's wrong `If-Match` names.
pub const NO_SUCH_ETAG: &str = "\"00000000000000000000000000000000\"";

/// Whether a backend makes a write conditional on `If-Match`: it refuses
/// the write naming another ETag with 412 (and keeps the object), and takes
/// the one naming the current ETag. Both must hold: a backend that refuses
/// every conditional write cannot be used conditionally either.
pub fn enforces_if_match(wrong: u16, wrong_kept: bool, right: u16) -> bool {
    wrong == 412 && wrong_kept && (200..300).contains(&right)
}

/// How each object went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Encrypted in place and read back exactly.
    Migrated { bytes: u64 },
    /// Already under an envelope (by the gateway, or an earlier run).
    Already,
    /// A key the gateway keeps for itself: never touched.
    Reserved,
    /// Written or deleted by someone else since the run read it: that
    /// write stands (why, for the report).
    Changed(String),
    /// Would be encrypted (`--dry-run`).
    WouldMigrate { bytes: u64 },
}

/// The run's tally.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub migrated: u64,
    pub migrated_bytes: u64,
    pub already: u64,
    pub reserved: u64,
    pub changed: u64,
    pub failed: u64,
    pub would_migrate: u64,
}

impl Summary {
    pub fn add(&mut self, outcome: &Outcome) {
        match outcome {
            Outcome::Migrated { bytes } => {
                self.migrated += 1;
                self.migrated_bytes += bytes;
            }
            Outcome::Already => self.already += 1,
            Outcome::Reserved => self.reserved += 1,
            Outcome::Changed(_) => self.changed += 1,
            Outcome::WouldMigrate { bytes } => {
                self.would_migrate += 1;
                self.migrated_bytes += bytes;
            }
        }
    }

    /// The run's one-line summary.
    pub fn line(&self, dry_run: bool) -> String {
        if dry_run {
            return format!(
                "{} objects ({} bytes) would be encrypted, {} already encrypted, {} failed (dry run: nothing was changed)",
                self.would_migrate, self.migrated_bytes, self.already, self.failed
            );
        }
        format!(
            "{} encrypted ({} bytes), {} already encrypted, {} changed by a client during the run (left as written), {} failed",
            self.migrated, self.migrated_bytes, self.already, self.changed, self.failed
        )
    }

    /// The summary as one JSON object.
    pub fn json(&self, dry_run: bool) -> String {
        serde_json::json!({
            "summary": true,
            "dry_run": dry_run,
            "migrated": self.migrated,
            "migrated_bytes": self.migrated_bytes,
            "would_migrate": self.would_migrate,
            "already_encrypted": self.already,
            "reserved": self.reserved,
            "changed": self.changed,
            "failed": self.failed,
        })
        .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_counts_come_from_multipart_etags_only() {
        assert_eq!(
            part_count("\"9b2cf535f27731c974343645a3985328-3\""),
            Some(3)
        );
        assert_eq!(part_count("9b2cf535f27731c974343645a3985328-12"), Some(12));
        assert_eq!(part_count("\"9b2cf535f27731c974343645a3985328\""), None);
        assert_eq!(part_count("\"abc-0\""), None);
        assert_eq!(part_count("\"abc-x\""), None);
    }

    #[test]
    fn written_headers_keep_the_objects_own_and_drop_stored_envelopes() {
        let stored = [
            ("content-type", "text/csv"),
            ("cache-control", "max-age=60"),
            ("x-amz-meta-owner", "ann"),
            ("x-amz-meta-sealgate-v", "forged"),
            ("etag", "\"abc\""),
            ("content-length", "3"),
        ];
        let envelope = vec![("x-amz-meta-sealgate-v".to_string(), "1".to_string())];
        let out = write_headers(stored.into_iter(), &envelope);
        let names: Vec<&str> = out.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "content-type",
                "cache-control",
                "x-amz-meta-owner",
                "x-amz-meta-sealgate-v"
            ]
        );
        assert_eq!(out[3].1, "1");
    }

    #[test]
    fn regular_sizes_keep_the_count_and_the_minimum() {
        const M: u64 = 1024 * 1024;
        assert_eq!(regular_sizes(11 * M + 7, 3), vec![5 * M, 5 * M, M + 7]);
        assert_eq!(
            regular_sizes(20 * M, 3),
            vec![
                20 * M / 3 + 1,
                20 * M / 3 + 1,
                20 * M - 2 * (20 * M / 3 + 1)
            ]
        );
        // Small parts (a backend without the minimum): still the count.
        assert_eq!(regular_sizes(10, 4), vec![3, 3, 3, 1]);
        // No one size makes four non-empty parts of 9: as even as it gets.
        assert_eq!(regular_sizes(9, 4), vec![3, 2, 2, 2]);
        for (len, parts) in [
            (11 * M + 7, 3),
            (9, 4),
            (100 * M, 7),
            (5, 1),
            (0, 1),
            (3, 5),
        ] {
            let sizes = regular_sizes(len, parts);
            assert_eq!(sizes.iter().sum::<u64>(), len, "{len} {parts}");
            if len >= u64::from(parts) {
                assert_eq!(sizes.len() as u32, parts, "{len} {parts}");
                assert!(sizes.iter().all(|&s| s > 0), "{sizes:?}");
                assert!(sizes.windows(2).all(|w| w[1] <= w[0]), "{sizes:?}");
            }
        }
    }

    #[test]
    fn sizes_the_gateway_would_misread_are_not_kept() {
        const F: u64 = sealgate_envelope::FRAME_SIZE;
        // Found while reviewing: these were copied as they were, and the
        // gateway's reads take them for a regular layout of 8F parts.
        let odd = vec![8 * F, 4 * F, 12 * F, 8 * F];
        assert!(sealgate_envelope::multipart::mistakable_for_regular(&odd));
        let sizes = choose_sizes(Some(odd), 32 * F, 4).unwrap();
        assert_eq!(sizes, regular_sizes(32 * F, 4));
        // Sizes that read back as written are kept, whatever they are.
        let own = vec![6 * F, 5 * F, F + 1];
        assert_eq!(choose_sizes(Some(own.clone()), 12 * F + 1, 3).unwrap(), own);
        // Answers that do not add up (the whole object for each part).
        assert_eq!(
            choose_sizes(Some(vec![10, 10]), 10, 2).unwrap(),
            regular_sizes(10, 2)
        );
        assert_eq!(part_count("\"abc-10001\""), None);
        assert_eq!(part_count("\"abc-10000\""), Some(10_000));
    }

    #[test]
    fn etags_compare_however_quoted() {
        assert!(same_etag("\"abc\"", "abc"));
        assert!(same_etag("&quot;abc&quot;", "\"abc\""));
        assert!(!same_etag("\"abc\"", "\"abd\""));
    }

    #[test]
    fn if_match_counts_only_when_both_answers_are_right() {
        assert!(enforces_if_match(412, true, 200));
        // Garage: the wrong ETag is stored over the object.
        assert!(!enforces_if_match(200, false, 200));
        // RGW 16: the right ETag is refused too.
        assert!(!enforces_if_match(412, true, 412));
        assert!(!enforces_if_match(412, false, 200));
    }

    #[test]
    fn the_summary_counts_each_outcome() {
        let mut s = Summary::default();
        for o in [
            Outcome::Migrated { bytes: 10 },
            Outcome::Migrated { bytes: 5 },
            Outcome::Already,
            Outcome::Reserved,
            Outcome::Changed("x".into()),
        ] {
            s.add(&o);
        }
        s.failed += 1;
        assert_eq!(
            (
                s.migrated,
                s.migrated_bytes,
                s.already,
                s.reserved,
                s.changed,
                s.failed
            ),
            (2, 15, 1, 1, 1, 1)
        );
        assert!(s.line(false).starts_with("2 encrypted (15 bytes)"));
        let v: serde_json::Value = serde_json::from_str(&s.json(false)).unwrap();
        assert_eq!(v["migrated"], 2);
        assert_eq!(v["changed"], 1);
    }
}
