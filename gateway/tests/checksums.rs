//! Checksums end to end, on s3s-fs and on Garage (which, like AWS S3,
//! verifies part checksums at CompleteMultipartUpload): the default
//! uploads of aws cli and boto3 with every checksum algorithm, the
//! checksums the client is answered (compared with Garage's own answers
//! for the same plaintext), pass-through buckets, and a byte corrupted
//! between gateway and backend.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::*;

fn cp(gw: &str, from: &str, to: &str) {
    aws_ok(gw, &["s3", "cp", "--only-show-errors", from, to]);
}

/// aws cli with its defaults (CRC32 checksums, 8 MiB parts over 8 MiB):
/// 0 B, 20 MB and 200 MB files up and down, byte-identical, exact sizes,
/// ciphertext stored.
#[test]
fn aws_cli_default_uploads_on_both_backends() {
    let work = tempfile::tempdir().unwrap();
    for backend in both_backends(&["demo"]) {
        let gw = encrypted_gateway(&*backend);
        let name = backend.name();
        for len in [0usize, 20_000_000, 200_000_000] {
            let data = test_bytes(len, len as u64 + 1);
            let src = work.path().join(format!("up{len}"));
            std::fs::write(&src, &data).unwrap();
            let key = format!("f{len}");
            cp(
                &gw.url(),
                src.to_str().unwrap(),
                &format!("s3://demo/{key}"),
            );
            let stored = backend.stored("demo", &key);
            assert!(stored.len() > len, "{name}: the envelope adds bytes");
            if len > 0 {
                assert!(
                    !stored.windows(64).any(|w| w == &data[1000..1064]),
                    "{name}: plaintext stored"
                );
            }
            let back = work.path().join(format!("down{len}"));
            cp(
                &gw.url(),
                &format!("s3://demo/{key}"),
                back.to_str().unwrap(),
            );
            assert!(std::fs::read(&back).unwrap() == data, "{name}: {len} bytes");
            std::fs::remove_file(&back).unwrap();
            let head = aws_ok(
                &gw.url(),
                &["s3api", "head-object", "--bucket", "demo", "--key", &key],
            );
            assert!(
                head.contains(&format!("\"ContentLength\": {len},")),
                "{name}: {head}"
            );
        }
    }
}

/// `aws s3 sync` of a tree with large files round-trips; on Garage (which
/// lists multipart ETags, as S3 does) a second sync finds nothing to do.
#[test]
fn aws_cli_sync_of_a_tree_with_large_files() {
    for backend in both_backends(&["demo"]) {
        let gw = encrypted_gateway(&*backend);
        let name = backend.name();
        let tree = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tree.path().join("sub")).unwrap();
        let files = [
            ("a.bin", 20_000_000usize),
            ("sub/b.bin", 9_000_001),
            ("sub/c.txt", 10),
        ];
        for (i, (f, len)) in files.iter().enumerate() {
            std::fs::write(tree.path().join(f), test_bytes(*len, i as u64 + 7)).unwrap();
        }
        let src = tree.path().to_str().unwrap();
        aws_ok(
            &gw.url(),
            &["s3", "sync", "--only-show-errors", src, "s3://demo/tree/"],
        );
        let back = tempfile::tempdir().unwrap();
        let dst = back.path().to_str().unwrap();
        aws_ok(
            &gw.url(),
            &["s3", "sync", "--only-show-errors", "s3://demo/tree/", dst],
        );
        for (f, _) in files {
            assert!(
                std::fs::read(tree.path().join(f)).unwrap()
                    == std::fs::read(back.path().join(f)).unwrap(),
                "{name}: {f}"
            );
        }
        if backend.name() == "garage" {
            let again = aws_ok(&gw.url(), &["s3", "sync", src, "s3://demo/tree/"]);
            assert_eq!(again.trim(), "", "{name}: a second sync uploads nothing");
        }
    }
}

/// boto3 with every checksum algorithm: managed transfers (upload_fileobj,
/// upload_file) and the low-level calls; prints each Complete's checksum
/// answer and the first part's, as JSON, for comparison between endpoints.
const BOTO3_CHECKSUMS: &str = r#"
import boto3, hashlib, io, json, os, sys, tempfile
from botocore.config import Config
endpoint, key_id, secret, bucket = sys.argv[1:5]
s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=key_id,
                  aws_secret_access_key=secret, region_name="us-east-1")
data = bytes((i * 7 + i // 65536) % 251 for i in range(20_000_000))
part = 8 * 1024 * 1024
answers = {}
path = os.path.join(tempfile.mkdtemp(), "src")
open(path, "wb").write(data)
for alg in [None, "CRC32", "CRC32C", "SHA1", "SHA256", "CRC64NVME"]:
    extra = {} if alg is None else {"ChecksumAlgorithm": alg}
    s3.upload_fileobj(io.BytesIO(data), bucket, f"obj-{alg}", ExtraArgs=extra)
    s3.upload_file(path, bucket, f"file-{alg}", ExtraArgs=extra)
    for key in (f"obj-{alg}", f"file-{alg}"):
        back = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        assert back == data, (alg, key, len(back))
    if alg is None:
        continue
    kinds = ["FULL_OBJECT"] if alg == "CRC64NVME" else ["COMPOSITE"]
    if alg in ("CRC32", "CRC32C"):
        kinds.append("FULL_OBJECT")
    for kind in kinds:
        key = f"ll-{alg}-{kind}"
        mp = s3.create_multipart_upload(Bucket=bucket, Key=key, ChecksumAlgorithm=alg, ChecksumType=kind)
        assert mp.get("ChecksumAlgorithm") == alg, mp
        parts = []
        for i, off in enumerate(range(0, len(data), part)):
            r = s3.upload_part(Bucket=bucket, Key=key, UploadId=mp["UploadId"], PartNumber=i + 1,
                               Body=data[off:off + part], ChecksumAlgorithm=alg)
            p = {"PartNumber": i + 1, "ETag": r["ETag"], "Checksum" + alg: r["Checksum" + alg]}
            parts.append(p)
        listed = sorted(s3.list_parts(Bucket=bucket, Key=key, UploadId=mp["UploadId"])["Parts"], key=lambda p: p["PartNumber"])
        assert [p["Size"] for p in listed] == [part, part, len(data) - 2 * part], listed
        args = {}
        if kind == "FULL_OBJECT":
            # The client's own full-object checksum goes along; it must match.
            from awscrt import checksums
            import base64
            if alg == "CRC32":
                v = checksums.crc32(data).to_bytes(4, "big")
            elif alg == "CRC32C":
                v = checksums.crc32c(data).to_bytes(4, "big")
            else:
                v = checksums.crc64nvme(data).to_bytes(8, "big")
            args["Checksum" + alg] = base64.b64encode(v).decode()
            args["ChecksumType"] = "FULL_OBJECT"
        c = s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=mp["UploadId"],
                                         MultipartUpload={"Parts": parts}, **args)
        answers[key] = {"complete": c.get("Checksum" + alg), "type": c.get("ChecksumType"),
                        "part1": parts[0]["Checksum" + alg]}
        back = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        assert back == data, key
print(json.dumps(answers, sort_keys=True))
"#;

#[test]
fn boto3_every_checksum_algorithm_answers_as_the_backend_would() {
    let garage = Garage::start(&["demo", "direct"]);
    let direct = python_ok(
        BOTO3_CHECKSUMS,
        &[&garage.url(), GARAGE_KEY, GARAGE_SECRET, "direct"],
    );
    assert!(
        direct.contains("-3\""),
        "Garage answers composite checksums: {direct}"
    );
    for backend in [
        Box::new(Backend::start(&["demo"])) as Box<dyn Upstream>,
        Box::new(garage),
    ] {
        let gw = encrypted_gateway(&*backend);
        let through = python_ok(
            BOTO3_CHECKSUMS,
            &[&gw.url(), CLIENT_KEY, CLIENT_SECRET, "demo"],
        );
        assert_eq!(
            through,
            direct,
            "{}: the gateway answers the checksums of the plaintext",
            backend.name()
        );
    }
}

/// A pass-through bucket (no encryption) keeps the client's checksums:
/// the backend verifies and answers them itself.
#[test]
fn pass_through_buckets_keep_client_checksums() {
    let garage = Garage::start(&["plain", "direct"]);
    let direct = python_ok(
        BOTO3_CHECKSUMS,
        &[&garage.url(), GARAGE_KEY, GARAGE_SECRET, "direct"],
    );
    let gw = Gateway::start(&garage);
    let through = python_ok(
        BOTO3_CHECKSUMS,
        &[&gw.url(), CLIENT_KEY, CLIENT_SECRET, "plain"],
    );
    assert_eq!(through, direct);
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("f");
    let data = test_bytes(20_000_000, 3);
    std::fs::write(&src, &data).unwrap();
    cp(&gw.url(), src.to_str().unwrap(), "s3://plain/f");
    assert!(garage.stored("plain", "f") == data, "stored as sent");
}

/// Encrypted multipart rules checked at Complete: parts of unequal size
/// (but the last) are refused before anything is stored; ListParts shows
/// plaintext sizes and no checksums of stored bytes.
const UNEQUAL_PARTS: &str = r#"
import boto3, sys
from botocore.exceptions import ClientError
s3 = boto3.client("s3", endpoint_url=sys.argv[1])
mp = s3.create_multipart_upload(Bucket="demo", Key="odd")
uid = mp["UploadId"]
parts = []
for n, size in [(1, 5 * 1024 * 1024), (2, 6 * 1024 * 1024), (3, 100)]:
    r = s3.upload_part(Bucket="demo", Key="odd", UploadId=uid, PartNumber=n, Body=b"x" * size)
    parts.append({"PartNumber": n, "ETag": r["ETag"]})
listed = sorted(s3.list_parts(Bucket="demo", Key="odd", UploadId=uid)["Parts"], key=lambda p: p["PartNumber"])
assert [p["Size"] for p in listed] == [5 * 1024 * 1024, 6 * 1024 * 1024, 100], listed
assert not any(k.startswith("Checksum") for p in listed for k in p), listed
try:
    s3.complete_multipart_upload(Bucket="demo", Key="odd", UploadId=uid, MultipartUpload={"Parts": parts})
    raise SystemExit("unequal parts completed")
except ClientError as e:
    assert e.response["Error"]["Code"] == "InvalidPart", e.response
if sys.argv[2] == "lists-etags":
    # Checked by the gateway where the backend lists part ETags (else the
    # backend checks them itself at Complete; s3s-fs does not).
    bad = [dict(parts[0], ETag='"0123456789abcdef0123456789abcdef"')]
    try:
        s3.complete_multipart_upload(Bucket="demo", Key="odd", UploadId=uid, MultipartUpload={"Parts": bad})
        raise SystemExit("a wrong ETag completed")
    except ClientError as e:
        assert e.response["Error"]["Code"] == "InvalidPart", e.response
try:
    s3.head_object(Bucket="demo", Key="odd")
    raise SystemExit("an object exists")
except ClientError as e:
    assert e.response["Error"]["Code"] == "404", e.response
# The same upload completes once the parts are equal.
r = s3.upload_part(Bucket="demo", Key="odd", UploadId=uid, PartNumber=2, Body=b"y" * 5 * 1024 * 1024)
parts[1]["ETag"] = r["ETag"]
s3.complete_multipart_upload(Bucket="demo", Key="odd", UploadId=uid, MultipartUpload={"Parts": parts})
body = s3.get_object(Bucket="demo", Key="odd")["Body"].read()
assert body == b"x" * 5 * 1024 * 1024 + b"y" * 5 * 1024 * 1024 + b"x" * 100
print("ok")
"#;

#[test]
fn unequal_parts_and_wrong_etags_are_refused_at_complete() {
    for backend in both_backends(&["demo"]) {
        let gw = encrypted_gateway(&*backend);
        assert_eq!(
            python_ok(
                UNEQUAL_PARTS,
                &[
                    &gw.url(),
                    if backend.name() == "garage" {
                        "lists-etags"
                    } else {
                        "-"
                    }
                ]
            )
            .trim(),
            "ok",
            "{}",
            backend.name()
        );
    }
}

/// A TCP relay to a backend that flips one byte of the first sealed frame
/// it sees going upstream (a full frame's aws-chunked header marks it),
/// as a faulty network or proxy between gateway and backend would.
struct Tamper<'a> {
    target: &'a dyn Upstream,
    port: u16,
    flipped: Arc<AtomicBool>,
}

/// The chunk header of a full sealed frame (65,552 bytes) in the gateway's
/// upstream aws-chunked bodies.
const FRAME_CHUNK: &[u8] = b"\r\n10010\r\n";

impl<'a> Tamper<'a> {
    fn start(target: &'a dyn Upstream) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let upstream = target.url().trim_start_matches("http://").to_string();
        let flipped = Arc::new(AtomicBool::new(false));
        let flag = flipped.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(mut client) = client else { return };
                let Ok(mut server) = TcpStream::connect(&upstream) else {
                    return;
                };
                let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut s2, &mut c2);
                    let _ = c2.shutdown(std::net::Shutdown::Write);
                });
                let flag = flag.clone();
                std::thread::spawn(move || {
                    let mut tail: Vec<u8> = Vec::new();
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match client.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        let piece = &mut buf[..n];
                        if !flag.load(Ordering::SeqCst) {
                            let seen = [&tail[..], &piece[..]].concat();
                            if let Some(at) = seen
                                .windows(FRAME_CHUNK.len())
                                .position(|w| w == FRAME_CHUNK)
                            {
                                let target = at + FRAME_CHUNK.len() + 100;
                                if target >= tail.len() && target - tail.len() < piece.len() {
                                    piece[target - tail.len()] ^= 0x01;
                                    flag.store(true, Ordering::SeqCst);
                                }
                            }
                            let keep = piece.len().min(FRAME_CHUNK.len());
                            tail = piece[piece.len() - keep..].to_vec();
                        }
                        if server.write_all(piece).is_err() {
                            break;
                        }
                    }
                    let _ = server.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        Tamper {
            target,
            port,
            flipped,
        }
    }
}

impl Upstream for Tamper<'_> {
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn credentials(&self) -> (&str, &str) {
        self.target.credentials()
    }

    fn name(&self) -> &'static str {
        "tampering relay"
    }
}

/// The backend verifies every byte the gateway stores: a byte flipped in
/// flight fails the part's (or object's) checksum at the backend, the
/// client sees the error, and nothing is stored.
#[test]
fn a_byte_corrupted_on_the_way_to_the_backend_is_refused_and_nothing_completes() {
    let garage = Garage::start(&["demo"]);
    let work = tempfile::tempdir().unwrap();
    for (key, len) in [("single", 1_000_000usize), ("multi", 20_000_000)] {
        let tamper = Tamper::start(&garage);
        let gw = encrypted_gateway(&tamper);
        let src = work.path().join(key);
        std::fs::write(&src, test_bytes(len, 5)).unwrap();
        let out = aws_as(
            CLIENT_KEY,
            CLIENT_SECRET,
            &gw.url(),
            &[
                "s3",
                "cp",
                "--only-show-errors",
                src.to_str().unwrap(),
                &format!("s3://demo/{key}"),
            ],
        );
        assert!(
            tamper.flipped.load(Ordering::SeqCst),
            "{key}: a byte was flipped"
        );
        // Garage's answer to a checksum that does not match what it received.
        assert_s3_error(&out, "InvalidDigest");
        let head = aws_as(
            GARAGE_KEY,
            GARAGE_SECRET,
            &garage.url(),
            &["s3api", "head-object", "--bucket", "demo", "--key", key],
        );
        assert!(
            !head.status.success(),
            "{key}: nothing may be stored: {head:?}"
        );
    }
}

/// `storage.s3.stored_checksum: none` (backends without aws-chunked
/// trailers): plain bodies upstream, and default multipart uploads still
/// complete on a backend that checks part checksums, because no checksum
/// it never received is named at Complete.
#[test]
fn without_stored_checksums_default_uploads_still_complete() {
    let garage = Garage::start(&["demo"]);
    let gw = Gateway::start_with(
        &garage,
        &Options {
            s3_extra: "    stored_checksum: none\n",
            extra: LOCAL_PROVIDER,
            ..Options::default()
        },
    );
    let work = tempfile::tempdir().unwrap();
    for len in [1_000usize, 20_000_000] {
        let data = test_bytes(len, 9);
        let src = work.path().join("src");
        std::fs::write(&src, &data).unwrap();
        cp(&gw.url(), src.to_str().unwrap(), "s3://demo/plain-length");
        let back = work.path().join("back");
        cp(&gw.url(), "s3://demo/plain-length", back.to_str().unwrap());
        assert!(std::fs::read(&back).unwrap() == data, "{len} bytes");
    }
}
