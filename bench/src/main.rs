//! `sealgate-bench`: every contender on the same backend in one run, and a
//! table of ratios (absolute numbers on shared machines are noise).
//!
//! Contenders: direct to the backend; nginx as a plain reverse proxy tuned
//! for large bodies; sealgate passing through; sealgate encrypting. The
//! backend is an in-process sink (fast, so it does not hide the gateway).

mod copies;
mod crypto;
mod kms;
mod load;
mod sink;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use load::{Op, Outcome, Target};
use sealgate_envelope::aead::Backend;

/// Worker threads of nginx and of sealgate alike.
const PROXY_THREADS: usize = 2;
/// How long a contender may take to start.
const START_DEADLINE: Duration = Duration::from_secs(20);
/// Clock ticks per second in /proc (Linux: USER_HZ).
const TICKS_PER_SECOND: f64 = 100.0;

#[derive(Parser)]
#[command(about = "sealgate benchmarks: throughput, CPU per GB, latency and memory as ratios")]
struct Args {
    /// The sealgate binary (build with `cargo build --release -p sealgate`).
    #[arg(long, default_value = "target/release/sealgate")]
    sealgate: PathBuf,
    /// Another sealgate binary (e.g. a build of the previous commit) measured
    /// in the same run as "(before)" rows, for before/after comparisons; a
    /// `bare-proxy` beside it gets a row too.
    #[arg(long)]
    before: Option<PathBuf>,
    /// What the `--before` rows are called (e.g. "pingora patched").
    #[arg(long, default_value = "before")]
    before_label: String,
    /// Large-object size in MiB.
    #[arg(long, default_value_t = 64)]
    large_mib: usize,
    /// Large objects per measurement.
    #[arg(long, default_value_t = 16)]
    large_count: usize,
    /// Concurrent connections for large objects.
    #[arg(long, default_value_t = 4)]
    large_concurrency: usize,
    /// Small-object operations per measurement.
    #[arg(long, default_value_t = 3000)]
    small_count: usize,
    /// Concurrent connections for small objects.
    #[arg(long, default_value_t = 16)]
    small_concurrency: usize,
    /// 1 KiB GETs on one connection, one after another (moderate load),
    /// for the latency each contender adds.
    #[arg(long, default_value_t = 3000)]
    latency_count: usize,
    /// Object size in MiB for the peak-RSS measurement (64 concurrent uploads);
    /// 0 skips it (e.g. while profiling the other phases).
    #[arg(long, default_value_t = 256)]
    rss_mib: usize,
    /// Write the markdown table here too.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Backend: `sink` (in-process, fast) or `s3s-fs` (real, slower PUTs; no RSS row).
    #[arg(long, default_value = "sink")]
    backend: String,
    /// Measure only the contenders whose name contains this (e.g. `encrypting`).
    #[arg(long)]
    only: Option<String>,
    /// Run only the single-core envelope vs raw AEAD measurement.
    #[arg(long)]
    crypto_only: bool,
    /// Run only the copy rows, with an object of this many MiB (sink backend).
    #[arg(long)]
    copies_mib: Option<u64>,
}

/// Runs of each single-core crypto measurement; the best counts (the
/// machine's other load only ever slows a run down).
const CRYPTO_RUNS: usize = 3;

/// The envelope against its own AEAD, one core, best of [`CRYPTO_RUNS`]
/// interleaved runs so drifting machine load hits every column alike.
fn crypto_report(report: &mut String) {
    let total = 1 << 30;
    let frame = 64 * 1024;
    // Pingora reads bodies in pieces of up to 64 KiB that need not line up
    // with frames; an odd size measures frames split across pieces.
    let odd = 29 * 1024 + 7;
    let _ = writeln!(report, "\n| AEAD backend | raw seal GB/s | encrypt, 64 KiB pieces | encrypt, odd pieces | encrypt / raw | raw open GB/s | decrypt, 64 KiB pieces | decrypt, 256 KiB pieces | decrypt / raw |");
    let _ = writeln!(report, "|---|---|---|---|---|---|---|---|---|");
    for backend in [Backend::AwsLc, Backend::RustCrypto] {
        let mut best = [0f64; 6];
        for _ in 0..CRYPTO_RUNS {
            let runs = [
                crypto::raw_seal(backend, total),
                crypto::encrypt(backend, total, frame),
                crypto::encrypt(backend, total, odd),
                crypto::raw_open(backend, total),
                crypto::decrypt(backend, total, frame),
                crypto::decrypt(backend, total, 4 * frame),
            ];
            for (b, r) in best.iter_mut().zip(runs) {
                *b = b.max(r);
            }
        }
        let [seal, enc, enc_odd, open, dec, dec_big] = best;
        let _ = writeln!(
            report,
            "| {} | {seal:.2} | {enc:.2} | {enc_odd:.2} | {} | {open:.2} | {dec:.2} | {dec_big:.2} | {} |",
            backend.as_str(),
            ratio(enc, seal),
            ratio(dec.max(dec_big), open)
        );
    }
}

/// The `local` provider the encrypting contenders use.
const LOCAL_ENC: &str = "encryption: {local: {master_key: YmVuY2gta2V5}}\n";
/// The contender on `aws-kms` (moto's KMS server behind a counting front).
const KMS_CONTENDER: &str = "sealgate encrypting, aws-kms";
/// The same on a 1-second data-key TTL, for the cold-path rows only.
const KMS_TURNOVER: &str = "sealgate encrypting, aws-kms, short data-key TTL";
/// The re-signing floor (`sigv4-proxy`).
const SIGV4_PROXY: &str = "pingora sigv4 re-signing proxy";

/// Credentials clients sign with for the gateways (sealgate, `sigv4-proxy`).
const CLIENT_KEY: &str = "bench";
const CLIENT_SECRET: &str = "bench";
/// Credentials the s3s-fs backend checks (the sink checks none).
const BACKEND_KEY: &str = "benchbackend";
const BACKEND_SECRET: &str = "benchbackendsecret";

/// Starts s3s-fs on a free port with bucket `bench` under `dir`.
fn start_s3s_fs(dir: &Path) -> (SocketAddr, Child) {
    let data = dir.join("s3s");
    std::fs::create_dir_all(data.join("bench")).expect("s3s-fs data dir");
    let port = free_port();
    let child = Command::new("s3s-fs")
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--access-key",
            BACKEND_KEY,
            "--secret-key",
            BACKEND_SECRET,
        ])
        .arg(&data)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start s3s-fs (cargo install s3s-fs@0.14.1 --features binary --locked)");
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    wait_for(addr);
    (addr, child)
}

/// A contender process and its address.
struct Contender {
    name: &'static str,
    addr: SocketAddr,
    /// The credentials clients sign with for this contender.
    creds: (&'static str, &'static str),
    /// Processes whose CPU time is the contender's (none for direct).
    pids: Vec<u32>,
    child: Option<Child>,
}

impl Drop for Contender {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            // SIGTERM, so nginx's master stops its workers too.
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let _ = c.wait();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for(addr: SocketAddr) {
    let start = Instant::now();
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(start.elapsed() < START_DEADLINE, "{addr} did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// CPU seconds (user + system) of a process and its direct children.
fn cpu_seconds(pids: &[u32]) -> f64 {
    let mut all: Vec<u32> = pids.to_vec();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            if let Some(ppid) = stat_field(pid, 3) {
                if pids.contains(&(ppid as u32)) {
                    all.push(pid);
                }
            }
        }
    }
    all.iter()
        .map(|&p| {
            (stat_field(p, 13).unwrap_or(0) + stat_field(p, 14).unwrap_or(0)) as f64
                / TICKS_PER_SECOND
        })
        .sum()
}

/// Field `n` (0-based, after the command name) of /proc/PID/stat.
fn stat_field(pid: u32, n: usize) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = s.rsplit_once(')')?.1;
    // after[0] is the state (field 2); index from field 2.
    after.split_whitespace().nth(n - 2)?.parse().ok()
}

fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn start_nginx(dir: &Path, sink: SocketAddr) -> Option<Contender> {
    let nginx = ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|p| Path::new(p).exists())?;
    let port = free_port();
    let conf = format!(
        r#"worker_processes {PROXY_THREADS};
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  # nginx closes keep-alive connections after 1000 requests by default (both
  # sides); the load generator keeps one connection per worker for the run.
  keepalive_requests 10000000;
  upstream sink {{ server {sink}; keepalive 256; keepalive_requests 10000000; }}
  server {{
    listen 127.0.0.1:{port};
    client_max_body_size 0;
    # Read request bodies 1 MiB at a time (the default is 16 KiB): with
    # proxy_request_buffering off, this is nginx's upload read size.
    client_body_buffer_size 1m;
    location / {{
      proxy_pass http://sink;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
      proxy_request_buffering off;
      proxy_buffering off;
      proxy_buffer_size 256k;
      proxy_buffers 8 256k;
    }}
  }}
}}
"#,
        dir = dir.display()
    );
    std::fs::write(dir.join("nginx.conf"), conf).ok()?;
    let child = Command::new(nginx)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .args(["-g", "daemon off;"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    wait_for(addr);
    Some(Contender {
        name: "nginx (tuned)",
        addr,
        creds: (BACKEND_KEY, BACKEND_SECRET),
        pids: vec![child.id()],
        child: Some(child),
    })
}

/// Pingora with only an upstream peer (`bare-proxy`, built beside the
/// sealgate binary): the framework's own per-request floor.
fn start_bare_proxy(sealgate: &Path, sink: SocketAddr, name: &'static str) -> Option<Contender> {
    start_pingora_proxy(
        sealgate,
        "bare-proxy",
        sink,
        name,
        &[],
        (BACKEND_KEY, BACKEND_SECRET),
    )
}

/// `sigv4-proxy` (built beside the sealgate binary): the bare proxy plus
/// sealgate's upstream timeouts, the client's signature checked and the
/// request signed again, the floor of any re-signing S3 proxy on Pingora.
fn start_sigv4_proxy(sealgate: &Path, sink: SocketAddr, name: &'static str) -> Option<Contender> {
    let keys = [CLIENT_KEY, CLIENT_SECRET, BACKEND_KEY, BACKEND_SECRET];
    start_pingora_proxy(
        sealgate,
        "sigv4-proxy",
        sink,
        name,
        &keys,
        (CLIENT_KEY, CLIENT_SECRET),
    )
}

/// One of the bench's own Pingora proxies: `<listen> <upstream> <threads>`
/// and then `extra` on its command line.
fn start_pingora_proxy(
    sealgate: &Path,
    file_name: &str,
    sink: SocketAddr,
    name: &'static str,
    extra: &[&str],
    creds: (&'static str, &'static str),
) -> Option<Contender> {
    let bin = sealgate.with_file_name(file_name);
    if !bin.exists() {
        return None;
    }
    let port = free_port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let child = Command::new(bin)
        .args([
            addr.to_string(),
            sink.to_string(),
            PROXY_THREADS.to_string(),
        ])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    wait_for(addr);
    Some(Contender {
        name,
        addr,
        creds,
        pids: vec![child.id()],
        child: Some(child),
    })
}

fn start_sealgate(
    bin: &Path,
    dir: &Path,
    sink: SocketAddr,
    name: &'static str,
    enc: &str,
) -> Contender {
    let port = free_port();
    let cfg = dir.join(format!("{}.yaml", name.replace([' ', ','], "-")));
    let checksum = if name.contains("no stored checksum") {
        ", stored_checksum: none"
    } else {
        ""
    };
    std::fs::write(
        &cfg,
        format!(
            "server: {{listen: \"127.0.0.1:{port}\", threads: {PROXY_THREADS}}}\nstorage: {{s3: {{endpoint: \"http://{sink}\"{checksum}, credentials: {{access_key_id: {BACKEND_KEY}, secret_access_key: {BACKEND_SECRET}}}}}}}\nauth: {{clients: [{{access_key_id: {CLIENT_KEY}, secret_access_key: {CLIENT_SECRET}, buckets: [\"*\"]}}]}}\nlogging: {{level: error}}\n{enc}"
        ),
    )
    .expect("write config");
    let child = Command::new(bin)
        .args(["run", "--config"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "start {}: {e} (build it with cargo build --release -p sealgate)",
                bin.display()
            )
        });
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    wait_for(addr);
    Contender {
        name,
        addr,
        creds: (CLIENT_KEY, CLIENT_SECRET),
        pids: vec![child.id()],
        child: Some(child),
    }
}

/// Rounds each measurement is split into, contenders taking turns: the
/// machine's speed drifts during a run (shared, possibly burstable cores),
/// and a contender measured only at the end would carry all the drift.
const ROUNDS: usize = 3;

/// One contender's measurements, summed over rounds.
#[derive(Default, Clone)]
struct Row {
    name: String,
    put: Outcome,
    get: Outcome,
    put_cpu: f64,
    get_cpu: f64,
    /// Each small-object op's outcome and the contender's CPU seconds.
    small: Vec<(Op, Outcome, f64)>,
    /// Connections the sink accepted during the small-object runs.
    small_upstream_connections: u64,
    /// 1 KiB GETs one at a time (moderate load).
    latency: Outcome,
}

impl Row {
    fn put_mbs(&self) -> f64 {
        self.put.mb_per_s()
    }
    fn get_mbs(&self) -> f64 {
        self.get.mb_per_s()
    }
    fn put_cpu_per_gb(&self) -> f64 {
        self.put_cpu / (self.put.bytes as f64 / 1e9)
    }
    fn get_cpu_per_gb(&self) -> f64 {
        self.get_cpu / (self.get.bytes as f64 / 1e9)
    }
    fn errors(&self) -> u64 {
        self.put.errors
            + self.get.errors
            + self.latency.errors
            + self.small.iter().map(|(_, o, _)| o.errors).sum::<u64>()
    }
}

/// This round's share of `total` (rounds add up to it).
fn share(total: usize, round: usize) -> usize {
    total / ROUNDS + usize::from(round < total % ROUNDS)
}

/// One round of every measurement for contender `c`, added to `row`.
async fn measure_round(c: &Contender, a: &Args, round: usize, row: &mut Row) {
    let t = Target {
        addr: c.addr,
        access_key: c.creds.0.into(),
        secret_key: c.creds.1.into(),
    };
    let large = Bytes::from(vec![0x5au8; a.large_mib << 20]);
    let tag = c.name.replace(' ', "-").replace(['(', ')'], "");
    row.name = c.name.to_string();
    let large_count = share(a.large_count, round);
    // Large PUT: distinct keys, counted and discarded by the sink.
    let cpu0 = cpu_seconds(&c.pids);
    let put = load::run(
        &t,
        Op::Put,
        &format!("/bench/{tag}/discard/large-"),
        a.large_count,
        large.clone(),
        a.large_concurrency,
        large_count,
    )
    .await;
    row.put_cpu += cpu_seconds(&c.pids) - cpu0;
    row.put.merge(put);
    // Large GET of one stored object (written through this contender).
    if round == 0 {
        load::run(
            &t,
            Op::Put,
            &format!("/bench/{tag}/get-large-"),
            1,
            large,
            1,
            1,
        )
        .await;
    }
    let cpu1 = cpu_seconds(&c.pids);
    let get = load::run(
        &t,
        Op::Get,
        &format!("/bench/{tag}/get-large-"),
        1,
        Bytes::new(),
        a.large_concurrency,
        large_count,
    )
    .await;
    row.get_cpu += cpu_seconds(&c.pids) - cpu1;
    row.get.merge(get);
    // Small objects: 1 KiB.
    let small = Bytes::from(vec![0x33u8; 1024]);
    let connections_before = sink::connections();
    let p = format!("/bench/{tag}/small-");
    let keys = 64;
    for (i, (op, body)) in [
        (Op::Put, small),
        (Op::Get, Bytes::new()),
        (Op::Head, Bytes::new()),
    ]
    .into_iter()
    .enumerate()
    {
        let cpu = cpu_seconds(&c.pids);
        let count = share(a.small_count, round);
        let o = load::run(&t, op, &p, keys, body, a.small_concurrency, count).await;
        let spent = cpu_seconds(&c.pids) - cpu;
        match row.small.get_mut(i) {
            Some((_, acc, acc_cpu)) => {
                acc.merge(o);
                *acc_cpu += spent;
            }
            None => row.small.push((op, o, spent)),
        }
    }
    row.small_upstream_connections += sink::connections() - connections_before;
    let sequential = load::run(
        &t,
        Op::Get,
        &p,
        keys,
        Bytes::new(),
        1,
        share(a.latency_count, round),
    )
    .await;
    row.latency.merge(sequential);
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 && a.is_finite() {
        format!("{:.2}x", a / b)
    } else {
        "-".into()
    }
}

fn main() {
    let args = Args::parse();
    if args.crypto_only {
        let mut report = String::new();
        crypto_report(&mut report);
        print!("{report}");
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = std::env::temp_dir().join(format!("sealgate-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("bench dir");
    let mut report = String::new();
    rt.block_on(async {
        let (sink, backend_child) = match args.backend.as_str() {
            "sink" => (sink::start().await, None),
            "s3s-fs" => {
                let (addr, child) = start_s3s_fs(&dir);
                (addr, Some(child))
            }
            other => panic!("unknown backend {other}: use sink or s3s-fs"),
        };
        let mut contenders = vec![Contender {
            name: "direct",
            addr: sink,
            creds: (BACKEND_KEY, BACKEND_SECRET),
            pids: vec![],
            child: backend_child,
        }];
        match start_nginx(&dir, sink) {
            Some(n) => contenders.push(n),
            None => eprintln!("nginx not found: its row is skipped (apt-get install nginx-light)"),
        }
        match start_bare_proxy(&args.sealgate, sink, "pingora bare proxy") {
            Some(b) => contenders.push(b),
            None => eprintln!("bare-proxy not found next to the sealgate binary: its row is skipped (cargo build --release -p sealgate-bench)"),
        }
        match start_sigv4_proxy(&args.sealgate, sink, SIGV4_PROXY) {
            Some(b) => contenders.push(b),
            None => eprintln!("sigv4-proxy not found next to the sealgate binary: its row is skipped (cargo build --release -p sealgate-bench)"),
        }
        contenders.push(start_sealgate(&args.sealgate, &dir, sink, "sealgate pass-through", ""));
        contenders.push(start_sealgate(&args.sealgate, &dir, sink, "sealgate encrypting", LOCAL_ENC));
        if let Some(before) = &args.before {
            // Row names live for the whole run.
            let label = |what: &str| -> &'static str { Box::leak(format!("{what} ({})", args.before_label).into_boxed_str()) };
            if let Some(b) = start_bare_proxy(before, sink, label("pingora bare proxy")) {
                contenders.push(b);
            }
            contenders.push(start_sealgate(before, &dir, sink, label("sealgate pass-through"), ""));
            contenders.push(start_sealgate(before, &dir, sink, label("sealgate encrypting"), LOCAL_ENC));
        }
        // What the trailing CRC32C of stored bytes costs (storage.s3.stored_checksum).
        contenders.push(start_sealgate(&args.sealgate, &dir, sink, "sealgate encrypting, no stored checksum", LOCAL_ENC));
        // The same gateway on a real KMS API (moto), KMS calls counted at the KMS.
        let local_kms = kms::start(free_port()).await;
        match &local_kms {
            Some(k) => {
                let enc = format!(
                    "encryption: {{kms: {{default_key_id: {}, region: us-east-1, endpoint: \"{}\", data_key_cache_ttl: 5m, credentials: {{access_key_id: testing, secret_access_key: testing}}}}}}\n",
                    k.key_id, k.url
                );
                contenders.push(start_sealgate(&args.sealgate, &dir, sink, KMS_CONTENDER, &enc));
                // Not measured in the rounds: only the cold-path rows.
                let short = enc.replace("data_key_cache_ttl: 5m", &format!("data_key_cache_ttl: {}", kms::TURNOVER_TTL_CONFIG));
                contenders.push(start_sealgate(&args.sealgate, &dir, sink, KMS_TURNOVER, &short));
            }
            None => eprintln!("moto_server not found: the aws-kms rows are skipped (pip install 'moto[server]')"),
        }

        if let Some(mib) = args.copies_mib {
            let c = contenders.iter().find(|c| c.name == "sealgate encrypting").expect("the encrypting contender");
            let t = Target { addr: c.addr, access_key: c.creds.0.into(), secret_key: c.creds.1.into() };
            copies::report(&mut report, &t, &c.pids, mib).await;
            return;
        }
        let measured: Vec<&Contender> = contenders.iter()
            .filter(|c| c.name != KMS_TURNOVER && args.only.as_ref().is_none_or(|o| c.name.contains(o.as_str()))).collect();
        let mut rows = vec![Row::default(); measured.len()];
        for round in 0..ROUNDS {
            for (c, row) in measured.iter().zip(rows.iter_mut()) {
                eprintln!("measuring {} (round {} of {ROUNDS}) ...", c.name, round + 1);
                measure_round(c, &args, round, row).await;
            }
        }
        let base = |name: &str| rows.iter().find(|r| r.name.starts_with(name)).cloned();
        let nginx = base("nginx");
        let pass = base("sealgate pass-through");
        let _ = writeln!(report, "Backend: {}. Large objects: {} x {} MiB, {} connections; small: {} x 1 KiB ops, {} connections; {} worker threads each for nginx and sealgate; every measurement split into {ROUNDS} rounds, contenders taking turns.\n",
            args.backend, args.large_count, args.large_mib, args.large_concurrency, args.small_count, args.small_concurrency, PROXY_THREADS);
        let _ = writeln!(report, "| contender | PUT MB/s | GET MB/s | PUT CPU-s/GB | GET CPU-s/GB | PUT vs nginx | GET vs nginx | PUT vs pass-through | GET vs pass-through | errors |");
        let _ = writeln!(report, "|---|---|---|---|---|---|---|---|---|---|");
        for r in &rows {
            let (pn, gn) = nginx.as_ref().map_or((0.0, 0.0), |n| (n.put_mbs(), n.get_mbs()));
            let (pp, gp) = pass.as_ref().map_or((0.0, 0.0), |n| (n.put_mbs(), n.get_mbs()));
            let _ = writeln!(report, "| {} | {:.0} | {:.0} | {:.3} | {:.3} | {} | {} | {} | {} | {} |",
                r.name, r.put_mbs(), r.get_mbs(), r.put_cpu_per_gb(), r.get_cpu_per_gb(),
                ratio(r.put_mbs(), pn), ratio(r.get_mbs(), gn), ratio(r.put_mbs(), pp), ratio(r.get_mbs(), gp), r.errors());
        }
        if let (Some(n), Some(e)) = (&nginx, rows.iter().find(|r| r.name == "sealgate encrypting")) {
            let _ = writeln!(report, "\nCPU per GB, encrypting sealgate vs tuned nginx: PUT {}, GET {}.",
                ratio(e.put_cpu_per_gb(), n.put_cpu_per_gb()), ratio(e.get_cpu_per_gb(), n.get_cpu_per_gb()));
        }
        let _ = writeln!(report, "\n| contender | op | ops/s | p50 ms | p99 ms | ops/s vs nginx | proxy CPU µs/op | CPU/op vs nginx | upstream connections (all ops) |");
        let _ = writeln!(report, "|---|---|---|---|---|---|---|---|---|");
        for r in &rows {
            for (op, o, cpu) in &r.small {
                let n = nginx.as_ref().and_then(|n| n.small.iter().find(|(x, _, _)| x == op));
                let us_per_op = |o: &Outcome, cpu: f64| cpu * 1e6 / o.ops.max(1) as f64;
                let (n_ops, n_cpu) = n.map_or((0.0, 0.0), |(_, o, cpu)| (o.ops_per_s(), us_per_op(o, *cpu)));
                let cpu = us_per_op(o, *cpu);
                let conns = if args.backend == "sink" && *op == Op::Put { r.small_upstream_connections.to_string() } else { String::new() };
                let _ = writeln!(report, "| {} | {:?} | {:.0} | {:.2} | {:.2} | {} | {:.1} | {} | {} |", r.name, op, o.ops_per_s(),
                    o.quantile(0.5).as_secs_f64() * 1e3, o.quantile(0.99).as_secs_f64() * 1e3, ratio(o.ops_per_s(), n_ops),
                    cpu, ratio(cpu, n_cpu), conns);
            }
        }
        // Latency each contender adds over going direct, at moderate load.
        let direct_lat = rows.iter().find(|r| r.name == "direct").map(|r| (r.latency.quantile(0.5), r.latency.quantile(0.99)));
        let _ = writeln!(report, "\n| contender | 1 KiB GET, one at a time: p50 ms | p99 ms | p50 added vs direct ms | p99 added vs direct ms |");
        let _ = writeln!(report, "|---|---|---|---|---|");
        for r in &rows {
            let (p50, p99) = (r.latency.quantile(0.5).as_secs_f64() * 1e3, r.latency.quantile(0.99).as_secs_f64() * 1e3);
            let added = |d: Option<std::time::Duration>, v: f64| d.map_or("-".to_string(), |d| format!("{:.3}", v - d.as_secs_f64() * 1e3));
            let _ = writeln!(report, "| {} | {p50:.3} | {p99:.3} | {} | {} |", r.name, added(direct_lat.map(|d| d.0), p50), added(direct_lat.map(|d| d.1), p99));
        }

        if let (Some(k), Some(c)) = (&local_kms, contenders.iter().find(|c| c.name == KMS_CONTENDER)) {
            let t = Target { addr: c.addr, access_key: c.creds.0.into(), secret_key: c.creds.1.into() };
            let small_put = |name: &str| rows.iter().find(|r| r.name == name)
                .and_then(|r| r.small.iter().find(|(op, _, _)| *op == Op::Put)).map(|(_, o, _)| o.ops_per_s());
            let short = contenders.iter().find(|c| c.name == KMS_TURNOVER)
                .map(|c| Target { addr: c.addr, access_key: c.creds.0.into(), secret_key: c.creds.1.into() });
            let rates = kms::PutRates { kms: small_put(KMS_CONTENDER), pass: small_put("sealgate pass-through"), local: small_put("sealgate encrypting") };
            kms::report(&mut report, k, &t, rates,
                args.small_count + args.large_count, short.as_ref()).await;
        }

        let body = Bytes::from(vec![0x11u8; args.rss_mib << 20]);
        let rss_rows = if args.backend == "sink" && args.rss_mib > 0 { 4 } else { 0 };
        if rss_rows > 0 {
            // Peak RSS under 64, then 256, concurrent large uploads: memory
            // must stay bounded by a budget per stream, not grow with them.
            let _ = writeln!(report, "\n| gateway | peak RSS before | peak RSS after 64 concurrent {} MiB uploads | peak RSS after 256 concurrent {} MiB uploads | errors |", args.rss_mib, (args.rss_mib / 4).max(1));
            let _ = writeln!(report, "|---|---|---|---|---|");
        }
        let big = Bytes::from(vec![0x11u8; ((args.rss_mib / 4).max(1)) << 20]);
        let rss_measured = |name: &str| (name.starts_with("sealgate pass-through") || name.starts_with("sealgate encrypting")) && !name.contains(',');
        for c in contenders.iter().filter(|c| rss_measured(c.name)).take(rss_rows) {
            let pid = c.pids[0];
            let before = peak_rss_kib(pid);
            let t = Target { addr: c.addr, access_key: c.creds.0.into(), secret_key: c.creds.1.into() };
            let o = load::run(&t, Op::Put, "/bench/rss/discard/big-", 64, body.clone(), 64, 64).await;
            let at_64 = peak_rss_kib(pid);
            let o2 = load::run(&t, Op::Put, "/bench/rss/discard/many-", 256, big.clone(), 256, 256).await;
            let _ = writeln!(report, "| {} | {} MiB | {} MiB | {} MiB | {} |", c.name, before / 1024, at_64 / 1024, peak_rss_kib(pid) / 1024, o.errors + o2.errors);
        }
    });

    if args.copies_mib.is_none() {
        crypto_report(&mut report);
    }
    print!("{report}");
    if let Some(out) = &args.out {
        std::fs::write(out, &report).expect("write report");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
