//! Encrypted multipart uploads: aws cli's default transfers (multipart
//! above 8 MiB, parallel ranged downloads), boto3's low-level calls, and
//! listings with exact sizes.

mod common;

use common::*;

#[test]
fn aws_cli_default_multipart_transfers_round_trip() {
    for backend in both_backends(&["demo"]) {
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
        assert!(
            !stored.windows(64).any(|w| w == &data[1000..1064]),
            "plaintext stored"
        );
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

const BOTO3_PARTS: &str = r#"
import sys, boto3, botocore
from botocore.config import Config
s3 = boto3.client("s3", endpoint_url=sys.argv[1], config=Config(retries={"max_attempts": 1}))
MiB = 1024 * 1024
p1, p1b, p2 = b"1" * (5 * MiB), b"A" * (5 * MiB), b"tail-bytes" * 1000
up = s3.create_multipart_upload(Bucket="demo", Key="mp")
assert up["ServerSideEncryption"] == "aws:kms", up
uid = up["UploadId"]
# A part sent twice with different bytes: the last one wins, under a fresh salt.
s3.upload_part(Bucket="demo", Key="mp", UploadId=uid, PartNumber=1, Body=p1)
e1 = s3.upload_part(Bucket="demo", Key="mp", UploadId=uid, PartNumber=1, Body=p1b)["ETag"]
e2 = s3.upload_part(Bucket="demo", Key="mp", UploadId=uid, PartNumber=2, Body=p2)["ETag"]
sizes = sorted((p["PartNumber"], p["Size"]) for p in s3.list_parts(Bucket="demo", Key="mp", UploadId=uid)["Parts"])
assert sizes == [(1, len(p1b)), (2, len(p2))], sizes
s3.complete_multipart_upload(Bucket="demo", Key="mp", UploadId=uid,
    MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]})
body = p1b + p2
assert s3.get_object(Bucket="demo", Key="mp")["Body"].read() == body
r = s3.get_object(Bucket="demo", Key="mp", Range="bytes=%d-%d" % (5 * MiB - 3, 5 * MiB + 3))
assert r["Body"].read() == body[5 * MiB - 3 : 5 * MiB + 4], r["ContentRange"]
assert s3.head_object(Bucket="demo", Key="mp")["ContentLength"] == len(body)
# Aborting with the gateway's upload id works.
up2 = s3.create_multipart_upload(Bucket="demo", Key="gone")
s3.upload_part(Bucket="demo", Key="gone", UploadId=up2["UploadId"], PartNumber=1, Body=b"x" * 100)
s3.abort_multipart_upload(Bucket="demo", Key="gone", UploadId=up2["UploadId"])
# A forged upload id is refused.
try:
    s3.upload_part(Bucket="demo", Key="mp", UploadId="not-from-the-gateway", PartNumber=1, Body=b"x")
    raise SystemExit("accepted a foreign upload id")
except botocore.exceptions.ClientError as e:
    assert e.response["Error"]["Code"] == "InvalidArgument", e.response
# The high-level transfer with small parts.
import io
from boto3.s3.transfer import TransferConfig
data = bytes(range(256)) * (23 * 4096)
s3.upload_fileobj(io.BytesIO(data), "demo", "xfer", Config=TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB))
out = io.BytesIO()
s3.download_fileobj("demo", "xfer", out, Config=TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB))
assert out.getvalue() == data
# Parts must be numbered 1..n without gaps (the number is bound into each part).
up3 = s3.create_multipart_upload(Bucket="demo", Key="gappy")
g1 = s3.upload_part(Bucket="demo", Key="gappy", UploadId=up3["UploadId"], PartNumber=1, Body=b"g" * (5 * MiB))["ETag"]
g3 = s3.upload_part(Bucket="demo", Key="gappy", UploadId=up3["UploadId"], PartNumber=3, Body=b"h" * 10)["ETag"]
try:
    s3.complete_multipart_upload(Bucket="demo", Key="gappy", UploadId=up3["UploadId"],
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": g1}, {"PartNumber": 3, "ETag": g3}]})
    raise SystemExit("a gap in part numbers was accepted")
except botocore.exceptions.ClientError as e:
    assert e.response["Error"]["Code"] == "InvalidPartOrder", e.response
print("ok")
"#;

#[test]
fn boto3_parts_retries_abort_and_transfers() {
    for backend in both_backends(&["demo"]) {
        let gw = encrypted_gateway(&*backend);
        let name = backend.name();
        assert_eq!(python_ok(BOTO3_PARTS, &[&gw.url()]).trim(), "ok", "{name}");
        assert!(!backend.has("demo", "gone"), "{name}");
        assert!(!backend.has("demo", "gappy"), "{name}");
    }
}

const LISTING: &str = r#"
import sys, boto3
s3 = boto3.client("s3", endpoint_url=sys.argv[1])
MiB = 1024 * 1024
up = s3.create_multipart_upload(Bucket="demo", Key="mp")
parts = []
for n, chunk in enumerate([b"a" * (5 * MiB), b"b" * (5 * MiB), b"c" * 12345], start=1):
    e = s3.upload_part(Bucket="demo", Key="mp", UploadId=up["UploadId"], PartNumber=n, Body=chunk)["ETag"]
    parts.append({"PartNumber": n, "ETag": e})
s3.complete_multipart_upload(Bucket="demo", Key="mp", UploadId=up["UploadId"], MultipartUpload={"Parts": parts})
s3.put_object(Bucket="demo", Key="single", Body=b"s" * 70000)
sizes = {o["Key"]: o["Size"] for o in s3.list_objects_v2(Bucket="demo")["Contents"]}
assert sizes == {"mp": 10 * MiB + 12345, "single": 70000}, sizes
v1 = {o["Key"]: o["Size"] for o in s3.list_objects(Bucket="demo")["Contents"]}
assert v1 == sizes, v1
if sys.argv[2] == "versions":
    versions = {v["Key"]: v["Size"] for v in s3.list_object_versions(Bucket="demo")["Versions"]}
    assert versions == sizes, versions
print("ok")
"#;

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
    let backend = Backend::start(&["demo"]);
    let gw = encrypted_gateway(&backend);
    let work = tempfile::tempdir().unwrap();
    let host = format!("127.0.0.1:{}", gw.port);
    let s3cmd = |args: &[&str]| {
        let out = std::process::Command::new("s3cmd")
            .args(["--config=/dev/null", "--no-ssl", "--region=us-east-1"])
            .arg(format!("--access_key={CLIENT_KEY}"))
            .arg(format!("--secret_key={CLIENT_SECRET}"))
            .arg(format!("--host={host}"))
            .arg(format!("--host-bucket={host}"))
            .args(args)
            .output()
            .expect("run s3cmd (apt-get install s3cmd)");
        assert!(
            out.status.success(),
            "s3cmd {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
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
        assert_eq!(std::fs::read(&back).unwrap(), data, "{name}");
        let info = s3cmd(&["info", &format!("s3://demo/{name}")]);
        assert!(info.contains(&format!("File size: {len}")), "{info}");
        assert!(info.contains("SSE:       aws:kms"), "{info}");
        assert_ne!(
            std::fs::read(backend.object_path("demo", name))
                .unwrap()
                .get(..64),
            data.get(..64)
        );
    }
}
