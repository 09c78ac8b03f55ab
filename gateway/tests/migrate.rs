//! `sealgate migrate` encrypts a bucket's plaintext objects in place:
//! metadata, tags and part counts kept, every object byte-identical through
//! the gateway afterwards, a run killed midway finished by running it
//! again, and a client's write during the run never overwritten.

mod common;

use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use common::relay::Relay;
use common::*;

/// The bucket is encrypted, not mandatory (its plaintext stays readable
/// while it is migrated).
const POLICY: &str = "encryption:
  key_providers:
    own:
      type: local
      config: {master_key: b3dua2V5}
  policies:
    - bucket_pattern: \"demo\"
      key_provider: own
      mandatory: false
";

/// Writes the plaintext objects straight to the backend (as before the
/// gateway): `empty`, `small.csv` with descriptive headers, metadata and
/// tags where the backend keeps them, `dir/nested`, `big` in three parts
/// of 5 MiB, 5 MiB and 1 MiB + 7, `odd` in parts of 6, 5, 7 and 6 MiB, and
/// `zcontested` (listed last).
const SEED: &str = r#"
import sys, boto3
from botocore.config import Config
ep, key, sec = sys.argv[1:4]
s3 = boto3.client('s3', endpoint_url=ep, aws_access_key_id=key, aws_secret_access_key=sec,
    region_name='us-east-1', config=Config(s3={'addressing_style': 'path'}))
def data(n, seed):
    x = seed
    out = bytearray()
    while len(out) < n:
        x = (x * 6364136223846793005 + 1442695040888963407) % (1 << 64)
        out += x.to_bytes(8, 'little')
    return bytes(out[:n])
s3.put_object(Bucket='demo', Key='empty', Body=b'')
s3.put_object(Bucket='demo', Key='small.csv', Body=data(70001, 1), ContentType='text/csv',
    CacheControl='max-age=60', ContentDisposition='attachment; filename="s.csv"',
    Metadata={'owner': 'ann'})
try:
    s3.put_object_tagging(Bucket='demo', Key='small.csv',
        Tagging={'TagSet': [{'Key': 'team', 'Value': 'blue'}]})
    print('tags')
except Exception:
    print('no-tags')
s3.put_object(Bucket='demo', Key='dir/nested', Body=data(100000, 2))
s3.put_object(Bucket='demo', Key='zcontested', Body=data(1000, 3))
# Own part sizes the gateway's reads would take for a regular layout of
# 6 MiB parts: encrypted with regular sizes instead.
up = s3.create_multipart_upload(Bucket='demo', Key='odd')['UploadId']
parts = []
for i, n in enumerate([6 << 20, 5 << 20, 7 << 20, 6 << 20]):
    e = s3.upload_part(Bucket='demo', Key='odd', UploadId=up, PartNumber=i + 1,
        Body=data(n, 20 + i))['ETag']
    parts.append({'PartNumber': i + 1, 'ETag': e})
s3.complete_multipart_upload(Bucket='demo', Key='odd', UploadId=up,
    MultipartUpload={'Parts': parts})
up = s3.create_multipart_upload(Bucket='demo', Key='big', ContentType='application/x-big',
    Metadata={'kind': 'parts'})['UploadId']
parts = []
for i, n in enumerate([5 << 20, 5 << 20, (1 << 20) + 7]):
    e = s3.upload_part(Bucket='demo', Key='big', UploadId=up, PartNumber=i + 1,
        Body=data(n, 10 + i))['ETag']
    parts.append({'PartNumber': i + 1, 'ETag': e})
s3.complete_multipart_upload(Bucket='demo', Key='big', UploadId=up,
    MultipartUpload={'Parts': parts})
"#;

/// The plaintext the seed wrote, as the gateway must serve it afterwards.
const READ_ALL: &str = r#"
import sys, boto3, hashlib, json
from botocore.config import Config
ep, key, sec = sys.argv[1:4]
s3 = boto3.client('s3', endpoint_url=ep, aws_access_key_id=key, aws_secret_access_key=sec,
    region_name='us-east-1', config=Config(s3={'addressing_style': 'path'}))
out = {}
for k in ['empty', 'small.csv', 'dir/nested', 'big', 'odd', 'zcontested', 'enc']:
    r = s3.get_object(Bucket='demo', Key=k)
    h = {n: r.get(n) for n in ['ContentType', 'CacheControl', 'ContentDisposition']}
    out[k] = {'sha': hashlib.sha256(r['Body'].read()).hexdigest(), 'meta': r['Metadata'], **h}
print(json.dumps(out, sort_keys=True))
"#;

fn read_all(endpoint: &str, key: &str, secret: &str) -> serde_json::Value {
    let mut cmd = Command::new("python3");
    cmd.arg("-E")
        .arg("-c")
        .arg(READ_ALL)
        .args([endpoint, key, secret])
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null");
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Runs `sealgate migrate` with `config`; `kill_on` ends it (SIGKILL) as
/// soon as the backend sees a request line starting with it.
fn migrate(
    config: &str,
    relay_port: u16,
    extra: &[&str],
    upstream_secret: &str,
) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sealgate.yaml");
    std::fs::write(&file, config.replace("{relay}", &relay_port.to_string())).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sealgate"))
        .args(["migrate", "--config"])
        .arg(&file)
        .args(["--bucket", "demo", "--concurrency", "1"])
        .args(extra)
        .env("TEST_UPSTREAM_SECRET", upstream_secret)
        .env("TEST_CLIENT_SECRET", CLIENT_SECRET)
        .env("TEST_TEAM_SECRET", TEAM_SECRET)
        .env("TEST_READER_SECRET", READER_SECRET)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The whole story on one backend: see the file's doc.
fn migrates_in_place(backend: &dyn Upstream) {
    let gw = Gateway::start_with(
        backend,
        &Options {
            extra: POLICY,
            ..Options::default()
        },
    );
    let (id, secret) = backend.credentials();
    let tags = python_ok(SEED, &[&backend.url(), id, secret]);
    let work = tempfile::tempdir().unwrap();
    let enc = work.path().join("enc");
    std::fs::write(&enc, test_bytes(5000, 9)).unwrap();
    cp(&gw.url(), enc.to_str().unwrap(), "s3://demo/enc");
    let before = read_all(&backend.url(), id, secret);
    let plain = |key: &str| backend.stored("demo", key);
    let small_plain = plain("small.csv");

    // The relay in front of the backend lets the test act between two of
    // the tool's requests. The first run is killed while it uploads the
    // second part of `big`.
    let pid: Arc<Mutex<Option<u32>>> = Arc::new(Mutex::new(None));
    let contested_url = gw.url();
    let contested_src = work.path().join("contested-new");
    std::fs::write(&contested_src, test_bytes(777, 4)).unwrap();
    // (the second run has begun, zcontested was read, the client wrote)
    let armed = Arc::new(Mutex::new((false, false, false)));
    let (p, a, src, url) = (
        pid.clone(),
        armed.clone(),
        contested_src.clone(),
        contested_url.clone(),
    );
    let relay = Relay::start_with_hook(
        backend,
        Arc::new(move |header: &str| {
            // The relay hands request lines over lowercased.
            let line = header.lines().next().unwrap_or_default();
            let mut armed = a.lock().unwrap();
            if line.starts_with("put /demo/big?partnumber=2&") {
                if let Some(pid) = p.lock().unwrap().take() {
                    Command::new("kill")
                        .args(["-9", &pid.to_string()])
                        .status()
                        .unwrap();
                }
            }
            // `contested` was read; a client writes it through the gateway
            // before the tool's write of it goes on.
            if !armed.0 {
            } else if line.starts_with("get /demo/zcontested?tagging") {
                armed.1 = true;
            } else if armed.1 && !armed.2 && line.starts_with("put ") {
                armed.2 = true;
                cp(&url, src.to_str().unwrap(), "s3://demo/zcontested");
            }
        }),
    );
    let config = Gateway::config_yaml(
        &relay,
        free_port(),
        free_port(),
        None,
        &Options {
            extra: POLICY,
            ..Options::default()
        },
    );

    // A dry run changes nothing.
    let (code, out, err) = migrate(&config, relay.port, &["--dry-run"], secret);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("6 objects (") && out.contains("would be encrypted, 1 already"),
        "{out}{err}"
    );
    assert_eq!(plain("small.csv"), small_plain);

    // Killed midway through `big` (the first key listed).
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sealgate.yaml");
    std::fs::write(&file, &config).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_sealgate"))
        .args(["migrate", "--config"])
        .arg(&file)
        .args(["--bucket", "demo", "--concurrency", "3"])
        .env("TEST_UPSTREAM_SECRET", secret)
        .env("TEST_CLIENT_SECRET", CLIENT_SECRET)
        .env("TEST_TEAM_SECRET", TEAM_SECRET)
        .env("TEST_READER_SECRET", READER_SECRET)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    *pid.lock().unwrap() = Some(child.id());
    let killed = child.wait_with_output().unwrap();
    assert_eq!(killed.status.code(), None, "not killed: {killed:?}");
    assert!(
        pid.lock().unwrap().is_none(),
        "never reached big's second part"
    );
    // Nothing half-done: `big` is still the plaintext the client wrote.
    assert_eq!(
        read_all(&gw.url(), CLIENT_KEY, CLIENT_SECRET)["big"],
        before["big"]
    );

    armed.lock().unwrap().0 = true;
    // Run again: it finishes, and `zcontested`, written by a client between
    // the tool's read and its write, is left as the client wrote it.
    let (code, out, err) = migrate(&config, relay.port, &[], secret);
    assert_eq!(code, 0, "{out}{err}");
    assert!(armed.lock().unwrap().2, "the client's write never happened");
    assert!(out.contains("changed zcontested: "), "{out}{err}");
    assert!(out.contains("1 changed by a client"), "{out}{err}");

    // Every object reads back as it was, through the gateway, metadata
    // and descriptive headers included; `contested` is the client's.
    let after = read_all(&gw.url(), CLIENT_KEY, CLIENT_SECRET);
    for key in ["empty", "small.csv", "dir/nested", "big", "odd"] {
        assert_eq!(after[key], before[key], "{key}");
    }
    assert_eq!(after["small.csv"]["ContentType"], "text/csv");
    assert_eq!(after["small.csv"]["meta"]["owner"], "ann");
    assert_eq!(after["big"]["meta"]["kind"], "parts");
    let client = std::fs::read(&contested_src).unwrap();
    let mut tmp = work.path().join("back");
    cp(&gw.url(), "s3://demo/zcontested", tmp.to_str().unwrap());
    assert_eq!(std::fs::read(&tmp).unwrap(), client);
    cp(&gw.url(), "s3://demo/enc", tmp.to_str().unwrap());
    assert_eq!(std::fs::read(&tmp).unwrap(), test_bytes(5000, 9));
    tmp.pop();

    // Stored as ciphertext now; `big` still in three parts.
    assert_ne!(plain("small.csv"), small_plain);
    let head = aws_as(
        id,
        secret,
        &backend.url(),
        &["s3api", "head-object", "--bucket", "demo", "--key", "big"],
    );
    let head: serde_json::Value = serde_json::from_slice(&head.stdout).unwrap();
    assert!(head["ETag"].as_str().unwrap().ends_with("-3\""), "{head}");
    assert_eq!(head["Metadata"]["sealgate-layout"], "multipart", "{head}");
    if tags.trim() == "tags" {
        let t = aws_ok_as(
            id,
            secret,
            &backend.url(),
            &[
                "s3api",
                "get-object-tagging",
                "--bucket",
                "demo",
                "--key",
                "small.csv",
            ],
        );
        assert!(t.contains("\"blue\""), "{t}");
    }

    // The audit finds no plaintext, and a third run has nothing to do.
    let (code, out, err) = {
        let o = sealgate_command(
            backend,
            &Gateway::config_yaml(
                backend,
                free_port(),
                free_port(),
                None,
                &Options {
                    extra: POLICY,
                    ..Options::default()
                },
            ),
            &["audit", "--bucket", "demo", "--json"],
        );
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("\"plaintext\":0"), "{out}");
    let (code, out, err) = migrate(&config, relay.port, &[], secret);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("0 encrypted (0 bytes), 7 already encrypted"),
        "{out}{err}"
    );
}

fn aws_ok_as(id: &str, secret: &str, endpoint: &str, args: &[&str]) -> String {
    let out = aws_as(id, secret, endpoint, args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Garage ignores If-Match on writes: the tool stages each object and puts
/// it in place right after checking it again.
#[test]
fn migrate_encrypts_a_garage_bucket_in_place() {
    migrates_in_place(&Garage::start(&["demo"]));
}

/// s3s-fs enforces If-Match on PutObject and CompleteMultipartUpload: the
/// tool's writes are conditional there.
#[test]
fn migrate_encrypts_an_s3s_fs_bucket_in_place() {
    migrates_in_place(&Backend::start(&["demo"]));
}

/// RGW 16 refuses a PutObject naming the right ETag too: the tool finds
/// that out and stages.
#[test]
fn migrate_encrypts_an_rgw_bucket_in_place() {
    migrates_in_place(&Rgw::start(&["demo"]));
}
