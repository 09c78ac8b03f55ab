//! Encrypted multipart uploads: aws cli's default transfers (multipart
//! above 8 MiB, parallel ranged downloads), boto3's low-level calls, and
//! listings with exact sizes.

mod common;

use common::*;

#[test]
fn aws_cli_default_multipart_transfers_round_trip() {
    for backend in every_backend(&["demo"]) {
        aws_cli_multipart_on(&*backend);
    }
}

fn aws_cli_multipart_on(backend: &dyn Upstream) {
    let gw = encrypted_gateway(backend);
    let work = tempfile::tempdir().unwrap();
    for len in [10 * 1024 * 1024 + 7, 25 * 1024 * 1024] {
        let data = test_bytes(len, len as u64);
        let name = format!("mp{len}");
        let src = work.path().join(&name);
        std::fs::write(&src, &data).unwrap();
        // Default cli config: multipart upload in 8 MiB parts, ranged parallel download.
        aws_ok(
            &gw.url(),
            &[
                "s3",
                "cp",
                "--only-show-errors",
                src.to_str().unwrap(),
                &format!("s3://demo/{name}"),
            ],
        );
        let stored = backend.stored("demo", &name);
        assert!(
            stored.len() > len,
            "stored bytes carry part headers and tags"
        );
        stored::assert_ciphertext_of(backend, "demo", &name, &data);
        let back = work.path().join(format!("{name}.back"));
        aws_ok(
            &gw.url(),
            &[
                "s3",
                "cp",
                "--only-show-errors",
                &format!("s3://demo/{name}"),
                back.to_str().unwrap(),
            ],
        );
        assert_eq!(std::fs::read(&back).unwrap(), data, "{name}");
        let head = aws_ok(
            &gw.url(),
            &["s3api", "head-object", "--bucket", "demo", "--key", &name],
        );
        assert!(
            head.contains(&format!("\"ContentLength\": {len},")),
            "{head}"
        );
        assert!(
            head.contains("\"ServerSideEncryption\": \"aws:kms\""),
            "{head}"
        );
        // Ranges inside a part, across a part boundary, and a suffix.
        let part = 8 * 1024 * 1024;
        for (first, last) in [
            (3usize, 70_000usize),
            (part - 5, part + 5),
            (part - 100_000, 2 * part + 100),
            (len - 9, len - 1),
        ] {
            let out = work.path().join("range");
            aws_ok(
                &gw.url(),
                &[
                    "s3api",
                    "get-object",
                    "--bucket",
                    "demo",
                    "--key",
                    &name,
                    "--range",
                    &format!("bytes={first}-{last}"),
                    out.to_str().unwrap(),
                ],
            );
            // S3 clamps a range that runs past the end.
            assert_eq!(
                std::fs::read(&out).unwrap(),
                &data[first..=last.min(len - 1)],
                "{name} {first}-{last}"
            );
        }
        let out = work.path().join("suffix");
        aws_ok(
            &gw.url(),
            &[
                "s3api",
                "get-object",
                "--bucket",
                "demo",
                "--key",
                &name,
                "--range",
                "bytes=-100000",
                out.to_str().unwrap(),
            ],
        );
        assert_eq!(std::fs::read(&out).unwrap(), &data[len - 100_000..]);
    }
}

const BOTO3_PARTS: &str = include_str!("py/multipart_boto3_parts.py");

#[test]
fn boto3_parts_retries_abort_and_transfers() {
    for backend in every_backend(&["demo"]) {
        let gw = encrypted_gateway(&*backend);
        let name = backend.name();
        assert_eq!(python_ok(BOTO3_PARTS, &[&gw.url()]).trim(), "ok", "{name}");
        assert!(!backend.has("demo", "gone"), "{name}");
        assert!(!backend.has("demo", "gappy"), "{name}");
    }
}

const RETRIED_COMPLETE: &str = include_str!("py/multipart_retried_complete.py");

/// A Complete retried after its first answer was lost (an SDK's retry on a
/// timeout) succeeds with the same ETag, as on S3, on every backend; one
/// for an upload that never finished, or whose object another upload
/// replaced, is `NoSuchUpload`.
#[test]
fn a_retried_complete_answers_the_object_it_made() {
    for backend in every_backend(&["demo"]) {
        let gw = encrypted_gateway(&*backend);
        let name = backend.name();
        assert_eq!(
            python_ok(RETRIED_COMPLETE, &[&gw.url(), name]).trim(),
            "ok",
            "{name}"
        );
    }
}

const LISTING: &str = include_str!("py/multipart_listing.py");

#[test]
fn listings_show_exact_sizes_of_multipart_objects() {
    // moto and Garage list ETags (s3s-fs does not), which carry the part
    // count; Garage has no ListObjectVersions.
    let moto = Moto::start(&["demo"]);
    let gw = encrypted_gateway(&moto);
    assert_eq!(python_ok(LISTING, &[&gw.url(), "versions"]).trim(), "ok");
    let garage = Garage::start(&["demo"]);
    let gw = encrypted_gateway(&garage);
    assert_eq!(python_ok(LISTING, &[&gw.url(), "-"]).trim(), "ok");
}

#[test]
fn s3cmd_put_get_info_through_the_encrypting_gateway() {
    let work = tempfile::tempdir().unwrap();
    for backend in every_backend(&["demo"]) {
        let gw = encrypted_gateway(&*backend);
        let on = backend.name();
        let s3cmd = |args: &[&str]| s3cmd(gw.port, args);
        // 20 MB: s3cmd uploads in 15 MiB parts.
        for (name, len) in [("small", 70_001usize), ("large", 20_000_007)] {
            let data = test_bytes(len, 5 + len as u64);
            let src = work.path().join(name);
            std::fs::write(&src, &data).unwrap();
            s3cmd(&["put", src.to_str().unwrap(), &format!("s3://demo/{name}")]);
            let back = work.path().join(format!("{name}.back"));
            s3cmd(&[
                "get",
                "--force",
                &format!("s3://demo/{name}"),
                back.to_str().unwrap(),
            ]);
            assert_eq!(std::fs::read(&back).unwrap(), data, "{on}: {name}");
            let info = s3cmd(&["info", &format!("s3://demo/{name}")]);
            assert!(info.contains(&format!("File size: {len}")), "{on}: {info}");
            assert!(info.contains("SSE:       aws:kms"), "{on}: {info}");
            common::stored::assert_ciphertext_of(&*backend, "demo", name, &data);
        }
    }
}

const PART_READS: &str = include_str!("py/multipart_part_reads.py");

/// `?partNumber=N` reads: each part's exact plaintext, Content-Range and
/// parts count; InvalidPartNumber beyond the parts.
#[test]
fn part_number_reads_return_each_part() {
    for backend in every_backend(&["demo"]) {
        let gw = encrypted_gateway(&*backend);
        assert_eq!(
            python_ok(PART_READS, &[&gw.url()]).trim(),
            "ok",
            "{}",
            backend.name()
        );
    }
}

const ANY_LAYOUT: &str = include_str!("py/multipart_any_layout.py");

/// Unequal parts, out of order, a re-uploaded part of another size, a
/// larger last part and 1,001 parts read back exactly (whole, ranges,
/// HEAD, part reads); the rare layout mistakable for a regular one is
/// refused at Complete and nothing is stored.
#[test]
fn every_part_layout_reads_back_exactly() {
    for backend in every_backend(&["demo"]) {
        let gw = encrypted_gateway(&*backend);
        assert_eq!(
            python_ok(ANY_LAYOUT, &[&gw.url(), backend.name()]).trim(),
            "ok",
            "{}",
            backend.name()
        );
    }
    // 1,001 parts: on moto with S3's 5 MiB least part size lowered (the
    // others refuse smaller parts, as S3 does, and 5 GiB is no test).
    let moto = Moto::start_with_min_part(&["demo"], Some(2048));
    let gw = encrypted_gateway(&moto);
    assert_eq!(python_ok(ANY_LAYOUT, &[&gw.url(), "many"]).trim(), "ok");
}

const LIST_UPLOADS: &str = include_str!("py/multipart_list_uploads.py");
const LIST_FLOOD: &str = include_str!("py/multipart_list_flood.py");

/// More unfinished uploads in a bucket than a listing reads records for in
/// bulk: each upload of the page answered is looked up by itself, so
/// another client's upload is still listed with its token (and resumes).
#[test]
fn a_flood_of_uploads_cannot_push_anothers_out_of_a_listing() {
    let garage = Garage::start(&["demo"]);
    let gw = encrypted_gateway(&garage);
    let (id, secret) = garage.credentials();
    assert_eq!(
        python_ok(LIST_FLOOD, &[&gw.url(), &garage.url(), id, secret]).trim(),
        "ok"
    );
}

/// ListMultipartUploads answers tokens that resume and abort the listed
/// uploads; the records behind them are hidden and removed when done.
#[test]
fn listed_uploads_can_be_resumed_with_their_listed_ids() {
    let garage = Garage::start(&["demo"]);
    let gw = encrypted_gateway(&garage);
    let (id, secret) = garage.credentials();
    assert_eq!(
        python_ok(LIST_UPLOADS, &[&gw.url(), &garage.url(), id, secret]).trim(),
        "ok"
    );
}
