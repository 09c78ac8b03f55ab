//! A fleet on one machine: three gateway processes behind haproxy (TCP,
//! round robin, PROXY protocol v2 from its own source address), in front of
//! Garage. Multipart uploads whose parts land on different instances read
//! back byte-identical; an instance killed mid-upload costs the clients a
//! retry, not the upload; the access lines name the client, not the
//! balancer.

mod common;

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

const BOTO3_UPLOAD: &str = include_str!("py/fleet_boto3_upload.py");

/// The source address haproxy connects to the gateways from: any access
/// line showing it would name the balancer, not the client.
const BALANCER_SOURCE: &str = "127.0.0.3";

struct Instance {
    process: Running,
    log: PathBuf,
}

impl Instance {
    fn start(backend: &dyn Upstream, dir: &Path, n: usize) -> (Instance, u16) {
        let (yaml, port, admin_port) = binary_yaml(backend, LOCAL_PROVIDER, None);
        let yaml = yaml.replace(
            "  grace_period: 0s",
            "  grace_period: 0s\n  proxy_protocol: true",
        );
        let own = dir.join(format!("instance-{n}"));
        std::fs::create_dir(&own).unwrap();
        let log = own.join("gateway.log");
        let file = std::fs::File::create(&log).unwrap();
        let process = Running(run_binary(&yaml, &own, backend, file.into()));
        wait_ready(admin_port);
        (Instance { process, log }, port)
    }

    fn access_lines(&self, operation: &str, key: &str) -> usize {
        let op = format!("operation=\"{operation}\"");
        let key = format!("key=\"{key}\"");
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("sealgate::access") && l.contains(&op) && l.contains(&key))
            .count()
    }
}

/// haproxy in the foreground with the configuration at `cfg`.
fn haproxy(cfg: &Path) -> Running {
    Running(
        Command::new("haproxy")
            .args(["-db", "-f", cfg.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("haproxy (apt-get install haproxy)"),
    )
}

fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn a_fleet_behind_haproxy_serves_multipart_uploads_across_instances_and_survives_a_kill() {
    let garage = Garage::start(&["demo"]);
    let dir = tempfile::tempdir().unwrap();
    let mut instances = Vec::new();
    let mut ports = Vec::new();
    for n in 0..3 {
        let (i, p) = Instance::start(&garage, dir.path(), n);
        instances.push(i);
        ports.push(p);
    }
    let lb_port = free_port();
    let servers: String = ports
        .iter()
        .enumerate()
        .map(|(n, p)| format!("  server g{n} 127.0.0.1:{p} send-proxy-v2\n"))
        .collect();
    let haproxy_cfg = dir.path().join("haproxy.cfg");
    std::fs::write(
        &haproxy_cfg,
        format!(
            "global\n  maxconn 512\ndefaults\n  mode tcp\n  timeout connect 2s\n  timeout client 300s\n  timeout server 300s\n  retries 3\n  option redispatch 1\nfrontend s3\n  bind 127.0.0.1:{lb_port}\n  default_backend gateways\nbackend gateways\n  balance roundrobin\n  source {BALANCER_SOURCE}\n{servers}"
        ),
    )
    .unwrap();
    let _haproxy = haproxy(&haproxy_cfg);
    until("haproxy listening", Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", lb_port)).is_ok()
    });
    let lb = format!("http://127.0.0.1:{lb_port}");

    // aws cli: 200 MiB in 8 MiB parts, 10 at a time; instance 1 is killed
    // once it has stored a part, with the upload still going.
    let big = dir.path().join("big");
    std::fs::write(&big, test_bytes(200 * 1024 * 1024, 41)).unwrap();
    let mut cli = Command::new("aws");
    cli.env("AWS_ACCESS_KEY_ID", CLIENT_KEY)
        .env("AWS_SECRET_ACCESS_KEY", CLIENT_SECRET)
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_MAX_ATTEMPTS", "5")
        .args([
            "--endpoint-url",
            &lb,
            "s3",
            "cp",
            big.to_str().unwrap(),
            "s3://demo/big",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut upload = cli.spawn().unwrap();
    until(
        "a part stored by instance 1",
        Duration::from_secs(120),
        || instances[1].access_lines("UploadPart", "big") > 0,
    );
    assert!(
        upload.try_wait().unwrap().is_none(),
        "the upload was still going"
    );
    instances[1].process.0.kill().unwrap();
    let out = upload.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let back = dir.path().join("big.back");
    cp(&lb, "s3://demo/big", back.to_str().unwrap());
    assert_eq!(sha256(&back), sha256(&big), "read back byte-identical");
    let etag = aws_ok(
        &lb,
        &["s3api", "head-object", "--bucket", "demo", "--key", "big"],
    );
    assert!(etag.contains("-25\\\""), "25 parts: {etag}");
    let spread = instances
        .iter()
        .filter(|i| i.access_lines("UploadPart", "big") > 0)
        .count();
    assert!(spread >= 2, "parts landed on {spread} instance(s)");

    // boto3's managed transfer with the two that are left.
    let boto_back = dir.path().join("boto.back");
    let etag = python_ok(
        BOTO3_UPLOAD,
        &[
            &lb,
            "demo",
            "boto",
            big.to_str().unwrap(),
            boto_back.to_str().unwrap(),
        ],
    );
    assert!(etag.trim().ends_with("-25\""), "{etag}");
    assert_eq!(sha256(&boto_back), sha256(&big));
    assert!(instances[0].access_lines("UploadPart", "boto") > 0);
    assert!(instances[2].access_lines("UploadPart", "boto") > 0);

    // Every access line names the client (127.0.0.1), none the balancer.
    for i in &instances {
        let log = std::fs::read_to_string(&i.log).unwrap();
        let access: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("sealgate::access"))
            .collect();
        assert!(!access.is_empty());
        for line in access {
            assert!(line.contains("client=127.0.0.1:"), "{line}");
            assert!(!line.contains(BALANCER_SOURCE), "{line}");
        }
    }
}

const SOAK: &str = include_str!("py/soak.py");

/// What haproxy's admin socket says of each server of `gateways`:
/// (name, status: `UP`, `DOWN`, ..., last check: `L7OK`, `L7STS`, ...).
fn haproxy_servers(sock: &Path) -> Vec<(String, String, String)> {
    use std::io::{Read, Write};
    let Ok(mut s) = std::os::unix::net::UnixStream::connect(sock) else {
        return Vec::new();
    };
    s.write_all(b"show stat\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    // `show stat` is CSV under a `# pxname,svname,...` header.
    let Some(header) = out.lines().next().and_then(|h| h.strip_prefix("# ")) else {
        return Vec::new();
    };
    let column = |name: &str| header.split(',').position(|c| c == name).unwrap();
    let (status, check) = (column("status"), column("check_status"));
    out.lines()
        .filter(|l| l.starts_with("gateways,") && !l.starts_with("gateways,BACKEND"))
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (
                f[1].to_string(),
                f[status].to_string(),
                f[check].to_string(),
            )
        })
        .collect()
}

fn server_is(sock: &Path, name: &str, status: &str) -> bool {
    haproxy_servers(sock)
        .iter()
        .any(|(n, s, _)| n == name && s.starts_with(status))
}

/// haproxy health-checks each instance's `/readyz` on its admin port with
/// a PROXY protocol v2 header (`check-send-proxy`, as an NLB with proxy
/// protocol does): every instance is seen UP. Then a rolling restart under
/// load (16 clients of the soak through haproxy, every byte checked): each
/// instance in turn gets SIGTERM, haproxy sees it DOWN within its drain
/// delay (before its listeners close), it exits, a new process takes its
/// ports and haproxy sees it UP again, all while the load runs. No client
/// operation fails (with an SDK's standard retries; haproxy itself does
/// not retry or redispatch here, as an NLB does not).
#[test]
fn haproxy_health_checks_with_proxy_v2_follow_readiness_and_a_rolling_restart_loses_nothing() {
    const DRAIN: Duration = Duration::from_secs(2);
    const SOAK_SECONDS: Duration = Duration::from_secs(45);
    let garage = Garage::start(&["demo"]);
    let dir = tempfile::tempdir().unwrap();
    let mut yamls = Vec::new();
    let mut processes = Vec::new();
    let mut servers = String::new();
    for n in 0..3 {
        let (yaml, port, admin) = binary_yaml(&garage, LOCAL_PROVIDER, None);
        let yaml = yaml.replace(
            "  grace_period: 0s",
            &format!(
                "  grace_period: 20s\n  drain_delay: {}s\n  proxy_protocol: true\n  upgrade_sock: {}",
                DRAIN.as_secs(),
                dir.path().join(format!("g{n}.sock")).display()
            ),
        );
        let own = dir.path().join(format!("g{n}-0"));
        std::fs::create_dir(&own).unwrap();
        processes.push(Running(run_binary(&yaml, &own, &garage, Stdio::null())));
        wait_ready(admin);
        servers.push_str(&format!(
            "  server g{n} 127.0.0.1:{port} send-proxy-v2 check port {admin} check-send-proxy inter 100ms fall 2 rise 1\n"
        ));
        yamls.push((yaml, admin));
    }
    let lb_port = free_port();
    let sock = dir.path().join("haproxy.sock");
    let cfg = dir.path().join("haproxy.cfg");
    std::fs::write(
        &cfg,
        format!(
            "global\n  maxconn 512\n  stats socket {} level admin\ndefaults\n  mode tcp\n  timeout connect 2s\n  timeout client 300s\n  timeout server 300s\n  timeout check 1s\nfrontend s3\n  bind 127.0.0.1:{lb_port}\n  default_backend gateways\nbackend gateways\n  balance roundrobin\n  option httpchk GET /readyz\n  http-check expect status 200\n  source {BALANCER_SOURCE}\n{servers}",
            sock.display()
        ),
    )
    .unwrap();
    let _haproxy = haproxy(&cfg);
    // The checks pass (HTTP 200 from /readyz): each carries a PROXY v2
    // header to the admin port.
    until(
        "every instance UP at haproxy",
        Duration::from_secs(20),
        || {
            let s = haproxy_servers(&sock);
            s.len() == 3 && s.iter().all(|(_, st, check)| st == "UP" && check == "L7OK")
        },
    );

    let lb = format!("http://127.0.0.1:{lb_port}");
    let soak_started = std::time::Instant::now();
    let mut soak = python_child(
        SOAK,
        &["demo", &SOAK_SECONDS.as_secs().to_string(), "16", &lb],
    );
    let mut out = std::io::BufReader::new(soak.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "warm");
    for (n, process) in processes.iter_mut().enumerate() {
        let name = format!("g{n}");
        let signalled = std::time::Instant::now();
        assert!(Command::new("kill")
            .args(["-TERM", &process.0.id().to_string()])
            .status()
            .unwrap()
            .success());
        until(&format!("haproxy to take {name} out"), DRAIN, || {
            server_is(&sock, &name, "DOWN")
        });
        assert!(
            signalled.elapsed() < DRAIN,
            "out before the listeners closed"
        );
        let status = process.0.wait().unwrap();
        assert!(status.success(), "{name}: {status:?}");
        let (yaml, admin) = &yamls[n];
        let own = dir.path().join(format!("g{n}-1"));
        std::fs::create_dir(&own).unwrap();
        *process = Running(run_binary(yaml, &own, &garage, Stdio::null()));
        wait_ready(*admin);
        until(
            &format!("haproxy to take {name} back"),
            Duration::from_secs(10),
            || server_is(&sock, &name, "UP"),
        );
    }
    // The whole roll happened under the load, not after it.
    assert!(
        soak_started.elapsed() < SOAK_SECONDS - Duration::from_secs(3),
        "the roll outlasted the load: {:?}",
        soak_started.elapsed()
    );
    let summary = loop {
        line.clear();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "the soak ended early"
        );
        if line.starts_with('{') {
            break line.trim().to_string();
        }
    };
    assert!(soak.wait().unwrap().success());
    eprintln!("rolling restart under load: {summary}");
    assert!(summary.contains("\"errors\": 0,"), "{summary}");
    assert!(summary.contains("\"clients_finished\": 16,"), "{summary}");
}
