//! Test harness: real s3s-fs backends and in-process gateways on free
//! ports, real clients (aws cli, boto3) as subprocesses. Everything started
//! here is stopped when its handle drops.

#![allow(dead_code)]

pub mod faults;
pub mod raw;
pub mod relay;
pub mod stored;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Upstream credentials s3s-fs accepts; clients never see them.
pub const UPSTREAM_KEY: &str = "UPSTREAMKEY";
pub const UPSTREAM_SECRET: &str = "UPSTREAMSECRET0123456789";
/// Client credentials the gateway accepts.
pub const CLIENT_KEY: &str = "CLIENTKEY";
pub const CLIENT_SECRET: &str = "CLIENTSECRET0123456789";
/// A second client, limited to `team-*` buckets.
pub const TEAM_KEY: &str = "TEAMKEY";
pub const TEAM_SECRET: &str = "TEAMSECRET0123456789";
/// A client that may only read and list, in every bucket.
pub const READER_KEY: &str = "READERKEY";
pub const READER_SECRET: &str = "READERSECRET0123456789";

/// How long a server may take to start accepting connections.
const START_DEADLINE: Duration = Duration::from_secs(30);
/// Interval between readiness probes.
const PROBE_INTERVAL: Duration = Duration::from_millis(20);

/// Ports for test servers come from below the kernel's ephemeral range
/// (32768+ on Linux), so the client connections tests make (which take
/// ephemeral ports) can never grab a port between its check and its bind;
/// a counter keeps the tests of one process apart.
const TEST_PORTS: std::ops::Range<u16> = 20_000..32_000;

/// A port that was free a moment ago, not in the ephemeral range.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let span = TEST_PORTS.end - TEST_PORTS.start;
    // Spread concurrent test processes over the range.
    let offset = (std::process::id() % u32::from(span)) as u16;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = TEST_PORTS.start + (offset.wrapping_add(n.wrapping_mul(7))) % span;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Waits until `cond` holds, polling; panics with `what` after the deadline.
pub fn wait_until(what: &str, cond: impl FnMut() -> bool) {
    until(what, START_DEADLINE, cond)
}

fn accepts(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// Starts a server on a free port (`command` builds its command line for a
/// port) and waits until it accepts connections; retries on a lost port race.
pub fn spawn_listening(what: &str, command: impl Fn(u16) -> Command) -> (Child, u16) {
    for _attempt in 0..3 {
        let port = free_port();
        let mut child = command(port)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {what}: {e}"));
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let start = Instant::now();
        while start.elapsed() < START_DEADLINE {
            if accepts(addr) {
                return (child, port);
            }
            if child.try_wait().unwrap().is_some() {
                break; // lost the port race; try another
            }
            std::thread::sleep(PROBE_INTERVAL);
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!("{what} did not start");
}

/// The `local` key provider block the encryption tests use.
pub const LOCAL_PROVIDER: &str = "encryption:\n  local:\n    master_key: dGVzdGtleQ==\n";

/// Encryption for the buckets matching `pattern` only (a `local` provider
/// named `dev`): every other bucket is passed through.
pub fn encrypting_only(pattern: &str) -> String {
    format!(
        "encryption:\n  key_providers:\n    dev:\n      type: local\n      config: {{master_key: dGVzdGtleQ==}}\n  policies:\n    - bucket_pattern: \"{pattern}\"\n      key_provider: dev\n"
    )
}

/// A gateway encrypting with the `local` provider in front of `backend`.
pub fn encrypted_gateway(backend: &dyn Upstream) -> Gateway {
    Gateway::start_with(
        backend,
        &Options {
            extra: LOCAL_PROVIDER,
            ..Options::default()
        },
    )
}

/// Finds the s3s-fs binary.
fn s3s_fs_binary() -> PathBuf {
    find_binary(
        "s3s-fs",
        "S3S_FS",
        "cargo install s3s-fs@0.14.1 --features binary --locked",
    )
}

/// A running s3s-fs with its data directory.
pub struct Backend {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

impl Backend {
    /// Starts s3s-fs with the given buckets already created.
    pub fn start(buckets: &[&str]) -> Backend {
        let dir = tempfile::tempdir().unwrap();
        for b in buckets {
            std::fs::create_dir_all(dir.path().join(b)).unwrap();
        }
        let bin = s3s_fs_binary();
        let (child, port) = spawn_listening("s3s-fs", |port| {
            let mut cmd = Command::new(&bin);
            cmd.args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .args([
                    "--access-key",
                    UPSTREAM_KEY,
                    "--secret-key",
                    UPSTREAM_SECRET,
                ])
                .arg(dir.path());
            cmd
        });
        Backend { child, port, dir }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Writes an object straight to the backend with the upstream key, as
    /// before the gateway existed (plaintext).
    pub fn put_direct(&self, bucket: &str, key: &str, data: &[u8]) {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("object");
        std::fs::write(&src, data).unwrap();
        let dst = format!("s3://{bucket}/{key}");
        let out = aws_as(
            UPSTREAM_KEY,
            UPSTREAM_SECRET,
            &self.url(),
            &[
                "s3",
                "cp",
                "--only-show-errors",
                src.to_str().unwrap(),
                &dst,
            ],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The file s3s-fs stores an object in.
    pub fn object_path(&self, bucket: &str, key: &str) -> PathBuf {
        self.dir.path().join(bucket).join(key)
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A backend a gateway can sit in front of.
pub trait Upstream {
    fn url(&self) -> String;

    /// The gateway's identity at the backend: (access key id, secret).
    fn credentials(&self) -> (&str, &str) {
        (UPSTREAM_KEY, UPSTREAM_SECRET)
    }

    /// The bytes the backend stores for an object (read around the gateway).
    fn stored(&self, bucket: &str, key: &str) -> Vec<u8> {
        let (id, secret) = self.credentials();
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("stored");
        let res = aws_as(
            id,
            secret,
            &self.url(),
            &[
                "s3api",
                "get-object",
                "--bucket",
                bucket,
                "--key",
                key,
                out.to_str().unwrap(),
            ],
        );
        assert!(
            res.status.success(),
            "{}",
            String::from_utf8_lossy(&res.stderr)
        );
        std::fs::read(out).unwrap()
    }

    /// True when the backend holds the object, false when it answers 404;
    /// any other answer (403, a crash) is no proof of either and fails.
    fn has(&self, bucket: &str, key: &str) -> bool {
        let (id, secret) = self.credentials();
        let out = aws_as(
            id,
            secret,
            &self.url(),
            &["s3api", "head-object", "--bucket", bucket, "--key", key],
        );
        if out.status.success() {
            return true;
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("An error occurred (404)"),
            "{}: HEAD {bucket}/{key} was neither found nor 404: {stderr}",
            self.name()
        );
        false
    }

    /// Every key the backend lists in a bucket (what a failed upload must
    /// not leave behind).
    fn keys(&self, bucket: &str) -> Vec<String> {
        let (id, secret) = self.credentials();
        let out = aws_as(
            id,
            secret,
            &self.url(),
            &[
                "s3api",
                "list-objects-v2",
                "--bucket",
                bucket,
                "--query",
                "Contents[].Key",
                "--output",
                "text",
            ],
        );
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter(|k| *k != "None")
            .map(str::to_string)
            .collect()
    }

    /// A short name for assertion messages.
    fn name(&self) -> &'static str;
}

/// s3s-fs, Garage and Ceph RGW with `buckets`: the backends the tests of
/// backend semantics run on.
pub fn every_backend(buckets: &[&str]) -> Vec<Box<dyn Upstream>> {
    vec![
        Box::new(Backend::start(buckets)),
        Box::new(Garage::start(buckets)),
        Box::new(Rgw::start(buckets)),
    ]
}

impl Upstream for Backend {
    fn url(&self) -> String {
        Backend::url(self)
    }

    fn stored(&self, bucket: &str, key: &str) -> Vec<u8> {
        std::fs::read(self.object_path(bucket, key)).unwrap()
    }

    fn has(&self, bucket: &str, key: &str) -> bool {
        self.object_path(bucket, key).exists()
    }

    /// Every entry in the bucket's directory that holds a file, temporary
    /// ones included (an empty directory, left by a deleted key such as the
    /// gateway's stored-checksum probe under `.sealgate/probe/`, holds no
    /// object: s3s-fs never lists one).
    fn keys(&self, bucket: &str) -> Vec<String> {
        fn holds_a_file(path: &Path) -> bool {
            !path.is_dir()
                || std::fs::read_dir(path)
                    .unwrap()
                    .any(|e| holds_a_file(&e.unwrap().path()))
        }
        std::fs::read_dir(self.dir.path().join(bucket))
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| holds_a_file(&e.path()))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    }

    fn name(&self) -> &'static str {
        "s3s-fs"
    }
}

/// Garage's access key id format (`GK` and 24 hex digits) and secret (64 hex digits).
pub const GARAGE_KEY: &str = "GK5ea15a7e0000000000000001";
pub const GARAGE_SECRET: &str = "5ea15a7e5ea15a7e5ea15a7e5ea15a7e5ea15a7e5ea15a7e5ea15a7e5ea15a7e";

/// Finds a binary: `$VAR`, then `PATH`, then `~/.cargo/bin`.
fn find_binary(name: &str, var: &str, install: &str) -> PathBuf {
    if let Ok(p) = std::env::var(var) {
        return p.into();
    }
    if let Ok(path) = std::env::var("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    let home = std::env::var("HOME").unwrap_or_default();
    let candidate = Path::new(&home).join(".cargo/bin").join(name);
    assert!(
        candidate.is_file(),
        "{name} not found: install it with `{install}` (scripts/test does)"
    );
    candidate
}

/// A running single-node Garage: the strictest local S3. Like AWS S3 it
/// verifies part checksums at CompleteMultipartUpload and lists multipart
/// ETags; it has no ListObjectVersions.
pub struct Garage {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
    bin: PathBuf,
}

impl Garage {
    /// Starts Garage (S3 API and RPC on free ports), lays out the single
    /// node, imports the gateway's key and creates `buckets` for it.
    pub fn start(buckets: &[&str]) -> Garage {
        let dir = tempfile::tempdir().unwrap();
        let bin = find_binary(
            "garage",
            "GARAGE",
            "cargo install garage@2.5.0 --locked --no-default-features --features bundled-libs,lmdb,sqlite",
        );
        let config = dir.path().join("garage.toml");
        // The RPC port of the last start attempt: the S3 API may listen
        // before RPC does, and the layout commands need RPC.
        let rpc_port = std::cell::Cell::new(0);
        let (child, port) = spawn_listening("garage", |port| {
            let rpc = free_port();
            rpc_port.set(rpc);
            std::fs::write(
                &config,
                format!(
                    r#"metadata_dir = "{root}/meta"
data_dir = "{root}/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:{rpc}"
rpc_public_addr = "127.0.0.1:{rpc}"
rpc_secret = "5ea15a7e00000000000000000000000000000000000000000000000000000001"
[s3_api]
s3_region = "us-east-1"
api_bind_addr = "127.0.0.1:{port}"
root_domain = ".s3.garage.test"
"#,
                    root = dir.path().display()
                ),
            )
            .unwrap();
            let mut cmd = Command::new(&bin);
            cmd.arg("-c").arg(&config).arg("server");
            cmd
        });
        let garage = Garage {
            child,
            port,
            dir,
            bin,
        };
        let rpc: SocketAddr = ([127, 0, 0, 1], rpc_port.get()).into();
        wait_until("garage RPC", || accepts(rpc));
        let id = garage.cli(&["node", "id", "-q"]);
        let id = id.trim().split('@').next().unwrap().to_string();
        garage.cli(&["layout", "assign", "-z", "dc1", "-c", "1G", &id]);
        garage.cli(&["layout", "apply", "--version", "1"]);
        garage.cli(&[
            "key",
            "import",
            "--yes",
            "-n",
            "gateway",
            GARAGE_KEY,
            GARAGE_SECRET,
        ]);
        for b in buckets {
            garage.create_bucket(b);
        }
        garage
    }

    pub fn create_bucket(&self, bucket: &str) {
        self.cli(&["bucket", "create", bucket]);
        self.cli(&[
            "bucket", "allow", "--read", "--write", "--owner", bucket, "--key", GARAGE_KEY,
        ]);
    }

    /// Runs the garage CLI against this node; asserts success.
    fn cli(&self, args: &[&str]) -> String {
        let out = Command::new(&self.bin)
            .arg("-c")
            .arg(self.dir.path().join("garage.toml"))
            .args(args)
            .output()
            .expect("run garage");
        assert!(
            out.status.success(),
            "garage {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Upstream for Garage {
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn credentials(&self) -> (&str, &str) {
        (GARAGE_KEY, GARAGE_SECRET)
    }

    fn name(&self) -> &'static str {
        "garage"
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The S3 user every test RGW has (fixed in `scripts/rgw-start`).
pub const RGW_KEY: &str = "testaccesskey0000000";
pub const RGW_SECRET: &str = "testsecretkey0000000000000000000000000000";

/// A running single-node Ceph RADOS Gateway (Debian's `radosgw` 16.2,
/// "Pacific": the most common self-hosted S3), started by
/// `scripts/rgw-start` (one monitor, one OSD on memstore, no manager) with
/// its state in a temporary directory. It does not read aws-chunked bodies
/// with trailers, answers a Complete with an empty ETag and compares
/// `If-Match` ETags without their quotes.
pub struct Rgw {
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Rgw {
    /// Starts RGW and creates `buckets` in it.
    pub fn start(buckets: &[&str]) -> Rgw {
        let script = rgw_script();
        for _attempt in 0..3 {
            // Short: Ceph's admin-socket paths under it must fit 107 bytes.
            let dir = tempfile::Builder::new()
                .prefix("rgw")
                .tempdir_in("/tmp")
                .unwrap();
            let port = free_port();
            let out = Command::new(&script)
                .arg(dir.path())
                .arg(port.to_string())
                .stdin(Stdio::null())
                .output()
                .unwrap_or_else(|e| panic!("start RGW ({}): {e}", script.display()));
            let rgw = Rgw { port, dir };
            if out.status.success() && String::from_utf8_lossy(&out.stdout).contains("ready") {
                for b in buckets {
                    rgw.create_bucket(b);
                }
                return rgw;
            }
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                err.contains("already in use"),
                "RGW did not start (install radosgw ceph-mon ceph-osd; scripts/test does): {err}"
            );
        }
        panic!("RGW did not start: no free port");
    }

    pub fn create_bucket(&self, bucket: &str) {
        let out = aws_as(
            RGW_KEY,
            RGW_SECRET,
            &Upstream::url(self),
            &["s3api", "create-bucket", "--bucket", bucket],
        );
        assert!(out.status.success(), "{out:?}");
    }
}

/// The script that starts (and stops) a test RGW.
fn rgw_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/rgw-start")
}

impl Upstream for Rgw {
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn credentials(&self) -> (&str, &str) {
        (RGW_KEY, RGW_SECRET)
    }

    fn name(&self) -> &'static str {
        "ceph-rgw"
    }
}

impl Drop for Rgw {
    fn drop(&mut self) {
        let _ = Command::new(rgw_script())
            .arg("--stop")
            .arg(self.dir.path())
            .status();
    }
}

/// A running moto server: a second, independent S3 implementation (it
/// implements conditional requests, which s3s-fs ignores). It accepts any
/// credentials, so it proves nothing about signing.
pub struct Moto {
    child: Child,
    pub port: u16,
    /// Serving HTTPS (as `https://localhost:PORT`).
    pub tls: bool,
}

impl Moto {
    /// Starts moto and creates `buckets` in it.
    pub fn start(buckets: &[&str]) -> Moto {
        Self::start_with_min_part(buckets, None)
    }

    /// As [`Moto::start`], with S3's 5 MiB least size of a part but the
    /// last lowered to `min_part` bytes (uploads of many parts in a test).
    pub fn start_with_min_part(buckets: &[&str], min_part: Option<u64>) -> Moto {
        let (child, port) = spawn_listening("moto_server (pip install 'moto[server]')", |port| {
            let mut cmd = Command::new("moto_server");
            cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
            if let Some(n) = min_part {
                cmd.env("S3_UPLOAD_PART_MIN_SIZE", n.to_string());
            }
            cmd
        });
        let moto = Moto {
            child,
            port,
            tls: false,
        };
        for b in buckets {
            let out = aws_as(
                UPSTREAM_KEY,
                UPSTREAM_SECRET,
                &Upstream::url(&moto),
                &["s3api", "create-bucket", "--bucket", b],
            );
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        moto
    }
}

impl Moto {
    /// Starts moto over HTTPS with cert.pem/key.pem from `certs` (no buckets).
    pub fn start_tls(certs: &Path) -> Moto {
        let (child, port) = spawn_listening("moto_server over TLS", |port| {
            let mut cmd = Command::new("moto_server");
            cmd.args(["-H", "127.0.0.1", "-p", &port.to_string(), "-s"])
                .arg("-c")
                .arg(certs.join("cert.pem"))
                .arg("-k")
                .arg(certs.join("key.pem"));
            cmd
        });
        Moto {
            child,
            port,
            tls: true,
        }
    }
}

impl Upstream for Moto {
    fn url(&self) -> String {
        if self.tls {
            format!("https://localhost:{}", self.port)
        } else {
            format!("http://127.0.0.1:{}", self.port)
        }
    }

    fn name(&self) -> &'static str {
        "moto"
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What differs between test gateways.
#[derive(Default)]
pub struct Options<'a> {
    /// Serve TLS too, with cert.pem and key.pem from this directory.
    pub tls_dir: Option<&'a Path>,
    /// YAML lines under `storage.s3` (indented four spaces).
    pub s3_extra: &'a str,
    /// Extra top-level YAML.
    pub extra: &'a str,
    /// YAML lines under `server` (indented two spaces).
    pub server_extra: &'a str,
    /// YAML lines of the read-only client's entry (indented six spaces).
    pub reader_extra: &'a str,
    /// YAML lines under `auth` (indented two spaces).
    pub auth_extra: &'a str,
}

/// A gateway running in this process.
pub struct Gateway {
    pub handle: Option<sealgate::GatewayHandle>,
    pub port: u16,
    pub admin_port: u16,
    pub tls_port: Option<u16>,
}

impl Gateway {
    /// The YAML every test gateway shares; `extra` is appended (top-level keys
    /// other than server/storage/auth).
    pub fn config_yaml(
        backend: &dyn Upstream,
        port: u16,
        admin_port: u16,
        tls: Option<(u16, &Path)>,
        opts: &Options,
    ) -> String {
        let tls = match tls {
            Some((p, dir)) => format!(
                "  tls:\n    listen: 127.0.0.1:{p}\n    cert_file: {}\n    key_file: {}\n",
                dir.join("cert.pem").display(),
                dir.join("key.pem").display()
            ),
            None => String::new(),
        };
        format!(
            r#"
server:
  listen: 127.0.0.1:{port}
  admin_listen: 127.0.0.1:{admin_port}
  threads: 2
  grace_period: 0s
  # Reloads only on SIGHUP, so tests count them exactly (the watch is
  # tested on its own).
  reload_on_change: false
  domains: ["s3.sealgate.test"]
{server_extra}{tls}storage:
  s3:
    endpoint: {endpoint}
    region: us-east-1
    credentials:
      access_key_id: {upstream_key}
      secret_access_key_env: TEST_UPSTREAM_SECRET
{s3_extra}
auth:
  clients:
    - access_key_id: {CLIENT_KEY}
      secret_access_key_env: TEST_CLIENT_SECRET
      buckets:
        - pattern: "*"
          permissions: [read, write, delete, admin]
    - access_key_id: {TEAM_KEY}
      secret_access_key_env: TEST_TEAM_SECRET
      buckets: ["team-*"]
    - access_key_id: {READER_KEY}
      secret_access_key_env: TEST_READER_SECRET
      buckets:
        - pattern: "*"
          permissions: [read]
{reader_extra}{auth_extra}{extra}
"#,
            endpoint = backend.url(),
            upstream_key = backend.credentials().0,
            s3_extra = opts.s3_extra,
            extra = opts.extra,
            server_extra = opts.server_extra,
            reader_extra = opts.reader_extra,
            auth_extra = opts.auth_extra,
        )
    }

    pub fn start(backend: &dyn Upstream) -> Gateway {
        Self::start_with(backend, &Options::default())
    }

    /// Starts a gateway in front of `backend`.
    pub fn start_with(backend: &dyn Upstream, opts: &Options) -> Gateway {
        Self::try_start_with(backend, opts)
            .unwrap_or_else(|e| panic!("the gateway did not start: {e}"))
    }

    /// Starts a gateway, or says why it refused to start.
    pub fn try_start_with(backend: &dyn Upstream, opts: &Options) -> Result<Gateway, String> {
        let tls_dir = opts.tls_dir;
        sealgate::install_crypto_provider();
        // Warnings of in-process gateways (and Pingora's errors, such as why
        // the backend could not be reached) go to the test's captured
        // output, which a failing test prints.
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_ansi(false)
            .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
            .try_init();
        let port = free_port();
        let admin_port = free_port();
        let tls_port = tls_dir.map(|_| free_port());
        let yaml = Self::config_yaml(backend, port, admin_port, tls_port.zip(tls_dir), opts);
        let upstream_secret = backend.credentials().1.to_string();
        let env = |k: &str| match k {
            "TEST_UPSTREAM_SECRET" => Some(upstream_secret.clone()),
            "TEST_CLIENT_SECRET" => Some(CLIENT_SECRET.to_string()),
            "TEST_TEAM_SECRET" => Some(TEAM_SECRET.to_string()),
            "TEST_READER_SECRET" => Some(READER_SECRET.to_string()),
            _ => None,
        };
        let loaded =
            sealgate_config::load_str(&yaml, &env).unwrap_or_else(|p| panic!("{p}\n{yaml}"));
        let handle = sealgate::start(loaded.config, sealgate::RunOptions::default())
            .map_err(|e| e.to_string())?;
        wait_until("the gateway to accept connections", || handle.is_ready());
        if let Some(p) = tls_port {
            wait_until("the TLS listener", || accepts(([127, 0, 0, 1], p).into()));
        }
        wait_until("the admin listener", || {
            accepts(([127, 0, 0, 1], admin_port).into())
        });
        Ok(Gateway {
            handle: Some(handle),
            port,
            admin_port,
            tls_port,
        })
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn tls_url(&self) -> String {
        format!("https://localhost:{}", self.tls_port.expect("TLS listener"))
    }

    /// GET on the admin listener: (status, body).
    pub fn admin_get(&self, path: &str) -> (u16, String) {
        http_get(&format!("127.0.0.1:{}", self.admin_port), path)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            h.stop();
        }
    }
}

/// A minimal HTTP/1.1 GET on a fresh connection: (status, body).
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).unwrap();
    let status = buf
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// An aws cli config that keeps uploads up to 64 MiB in one PUT, so a test
/// exercises PutObject rather than the cli's multipart path. One file per
/// call (removed on drop): parallel tests never share it.
pub fn aws_config_single_put() -> tempfile::TempPath {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        file.path(),
        "[default]\ns3 =\n    multipart_threshold = 64MB\n",
    )
    .unwrap();
    file.into_temp_path()
}

/// Environment for client subprocesses: no user config, no metadata service.
fn client_env(cmd: &mut Command, key: &str, secret: &str) {
    cmd.env("AWS_ACCESS_KEY_ID", key)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_CA_BUNDLE")
        .env_remove("AWS_ENDPOINT_URL");
}

/// Runs `sealgate <args>` with the configuration `config` (a file of its
/// own) and the test secrets in its environment, as an operator runs a
/// command against `backend`.
pub fn sealgate_command(backend: &dyn Upstream, config: &str, args: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sealgate.yaml");
    std::fs::write(&file, config).unwrap();
    let (command, rest) = args.split_first().expect("a subcommand");
    Command::new(env!("CARGO_BIN_EXE_sealgate"))
        .args([command, "--config"])
        .arg(&file)
        .args(rest)
        .env("TEST_UPSTREAM_SECRET", backend.credentials().1)
        .env("TEST_CLIENT_SECRET", CLIENT_SECRET)
        .env("TEST_TEAM_SECRET", TEAM_SECRET)
        .env("TEST_READER_SECRET", READER_SECRET)
        .output()
        .unwrap()
}

/// Runs a Node.js script of `tests/js` (its packages installed there by
/// the test command) as the full client; its stdout.
pub fn node_ok(script: &str, args: &[&str]) -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js");
    assert!(
        dir.join("node_modules").is_dir(),
        "tests/js has no node_modules (npm ci --prefix gateway/tests/js)"
    );
    let mut cmd = Command::new("node");
    client_env(&mut cmd, CLIENT_KEY, CLIENT_SECRET);
    // The SDK's notice about future Node.js versions is not a failure.
    let out = cmd
        .env("NODE_NO_WARNINGS", "1")
        .current_dir(&dir)
        .arg(script)
        .args(args)
        .output()
        .expect("run node");
    assert!(
        out.status.success(),
        "node {script} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs the aws cli as `key`.
pub fn aws_as(key: &str, secret: &str, endpoint: &str, args: &[&str]) -> Output {
    aws_with_config(key, secret, endpoint, None, args)
}

/// Runs the aws cli as `key` with an aws config file.
pub fn aws_with_config(
    key: &str,
    secret: &str,
    endpoint: &str,
    config: Option<&Path>,
    args: &[&str],
) -> Output {
    let mut cmd = Command::new("aws");
    client_env(&mut cmd, key, secret);
    if let Some(c) = config {
        cmd.env("AWS_CONFIG_FILE", c);
    }
    cmd.arg("--endpoint-url").arg(endpoint).args(args);
    cmd.output().expect("run aws cli (pip install awscli)")
}

/// Runs the aws cli with the main client key and asserts success.
pub fn aws_ok(endpoint: &str, args: &[&str]) -> String {
    let out = aws_as(CLIENT_KEY, CLIENT_SECRET, endpoint, args);
    assert!(
        out.status.success(),
        "aws {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The bucket names ListBuckets shows `key` (aws cli), in order.
pub fn listed_buckets(key: &str, secret: &str, endpoint: &str) -> Vec<String> {
    let out = aws_as(
        key,
        secret,
        endpoint,
        &[
            "s3api",
            "list-buckets",
            "--query",
            "Buckets[].Name",
            "--output",
            "text",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// `aws s3 cp` with the main client key; asserts success.
pub fn cp(endpoint: &str, from: &str, to: &str) {
    aws_ok(endpoint, &["s3", "cp", "--only-show-errors", from, to]);
}

/// Asserts that a client command failed with S3 error `code`.
pub fn assert_s3_error(out: &Output, code: &str) {
    assert!(
        !out.status.success(),
        "expected {code}, got success: {out:?}"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(code),
        "expected {code}: {out:?}"
    );
}

/// Runs a Python script (boto3 available) with `args`; asserts success and returns stdout.
/// A python script running with piped stdin and stdout (the client's
/// credentials in its environment), for tests that talk to it.
pub fn python_child(script: &str, args: &[&str]) -> std::process::Child {
    let mut cmd = Command::new("python3");
    client_env(&mut cmd, CLIENT_KEY, CLIENT_SECRET);
    cmd.arg("-E")
        .arg("-c")
        .arg(script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run python3")
}

pub fn python_ok(script: &str, args: &[&str]) -> String {
    let mut cmd = Command::new("python3");
    client_env(&mut cmd, CLIENT_KEY, CLIENT_SECRET);
    // -E: no PYTHON* variable (PYTHONOPTIMIZE) can switch asserts off.
    cmd.arg("-E").arg("-c").arg(script).args(args);
    let out = cmd.output().expect("run python3");
    assert!(
        out.status.success(),
        "python failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
pub fn test_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A self-signed certificate for localhost / 127.0.0.1 in `dir` (cert.pem, key.pem).
pub fn self_signed_cert(dir: &Path) {
    self_signed_cert_for_days(dir, 2)
}

/// [`self_signed_cert`] valid for `days`.
pub fn self_signed_cert_for_days(dir: &Path, days: u32) {
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ])
        .args(["-days", &days.to_string(), "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        // A leaf, not a CA: webpki (the gateway's TLS client) refuses a CA certificate as a server certificate.
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("cert.pem"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run openssl");
    assert!(status.success(), "openssl could not make a certificate");
}

/// rclone against the gateway at `endpoint` as the test client (remote
/// `sg:`, SSE-KMS as for any such bucket: ETags are not content MD5s):
/// (success, stderr).
pub fn rclone(endpoint: &str, args: &[&str]) -> (bool, String) {
    rclone_with(endpoint, Some("aws:kms"), args)
}

/// rclone with the remote's `server_side_encryption` set to `sse`, or
/// left at its default.
pub fn rclone_with(endpoint: &str, sse: Option<&str>, args: &[&str]) -> (bool, String) {
    let mut rclone = Command::new("rclone");
    if let Some(sse) = sse {
        rclone.env("RCLONE_CONFIG_SG_SERVER_SIDE_ENCRYPTION", sse);
    }
    let out = rclone
        .env_remove("AWS_CA_BUNDLE")
        .env("RCLONE_CONFIG", "/dev/null")
        .env("RCLONE_CONFIG_SG_TYPE", "s3")
        .env("RCLONE_CONFIG_SG_PROVIDER", "Other")
        .env("RCLONE_CONFIG_SG_ENDPOINT", endpoint)
        .env("RCLONE_CONFIG_SG_REGION", "us-east-1")
        .env("RCLONE_CONFIG_SG_ACCESS_KEY_ID", CLIENT_KEY)
        .env("RCLONE_CONFIG_SG_SECRET_ACCESS_KEY", CLIENT_SECRET)
        .args(["--retries", "1", "--low-level-retries", "1"])
        .args(args)
        .output()
        .expect("run rclone (apt-get install rclone)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// s3cmd against the gateway on `port` as the test client; asserts
/// success and returns its output.
pub fn s3cmd(port: u16, args: &[&str]) -> String {
    let host = format!("127.0.0.1:{port}");
    let out = Command::new("s3cmd")
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
}

/// The value of one sample in a /metrics text, e.g.
/// `sealgate_requests_total{operation="PutObject",result="ok",status_class="2xx"}`
/// (labels in the order the exporter writes them: sorted by name).
pub fn metric(text: &str, sample: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

// The binary, run as an operator runs it.

/// The binary with `yaml` (the test secrets in its environment), its log
/// written to `log`.
pub fn run_binary(
    yaml: &str,
    dir: &std::path::Path,
    backend: &dyn Upstream,
    log: Stdio,
) -> std::process::Child {
    let config = dir.join("sealgate.yaml");
    std::fs::write(&config, yaml).unwrap();
    Command::new(env!("CARGO_BIN_EXE_sealgate"))
        .args(["run", "--config", config.to_str().unwrap()])
        .env("TEST_UPSTREAM_SECRET", backend.credentials().1)
        .env("TEST_CLIENT_SECRET", CLIENT_SECRET)
        .env("TEST_TEAM_SECRET", TEAM_SECRET)
        .env("TEST_READER_SECRET", READER_SECRET)
        .stderr(log)
        .spawn()
        .unwrap()
}

/// `sealgate run --upgrade` with `yaml` (written to `dir`): a process that
/// takes the listeners over from the running one once it gets SIGQUIT.
pub fn run_upgrade(
    yaml: &str,
    dir: &std::path::Path,
    backend: &dyn Upstream,
    log: Stdio,
) -> std::process::Child {
    let config = dir.join("sealgate.yaml");
    std::fs::write(&config, yaml).unwrap();
    Command::new(env!("CARGO_BIN_EXE_sealgate"))
        .args(["run", "--upgrade", "--config", config.to_str().unwrap()])
        .env("TEST_UPSTREAM_SECRET", backend.credentials().1)
        .env("TEST_CLIENT_SECRET", CLIENT_SECRET)
        .env("TEST_TEAM_SECRET", TEAM_SECRET)
        .env("TEST_READER_SECRET", READER_SECRET)
        .stderr(log)
        .spawn()
        .unwrap()
}

/// Kills the binary when a test fails before it stopped it.
pub struct Running(pub std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn terminate(child: &mut std::process::Child) -> std::process::ExitStatus {
    assert!(Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    child.wait().unwrap()
}

/// Polls `check` until it holds, failing after `limit`.
pub fn until(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(PROBE_INTERVAL);
    }
}

pub fn readyz(admin: &str) -> Option<(u16, String)> {
    TcpStream::connect(admin).ok()?;
    Some(http_get(admin, "/readyz"))
}

/// The test YAML of a gateway binary on fresh ports, with `extra` (see
/// [`Gateway::config_yaml`]): (yaml, S3 port, admin port).
pub fn binary_yaml(
    backend: &dyn Upstream,
    extra: &str,
    tls: Option<(u16, &Path)>,
) -> (String, u16, u16) {
    let (port, admin_port) = (free_port(), free_port());
    let opts = Options {
        extra,
        ..Options::default()
    };
    let yaml = Gateway::config_yaml(backend, port, admin_port, tls, &opts);
    (yaml, port, admin_port)
}

/// Waits until the binary with this admin port answers `/readyz` with 200.
pub fn wait_ready(admin_port: u16) {
    let admin = format!("127.0.0.1:{admin_port}");
    wait_until("/readyz to answer 200", || {
        readyz(&admin).is_some_and(|(s, _)| s == 200)
    });
}
