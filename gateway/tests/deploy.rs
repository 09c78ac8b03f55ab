//! deploy/ is checked by the tools that will read it: promtool, a real
//! Prometheus scraping a gateway under load, the Kubernetes schemas, and
//! `sealgate check-config` for the configuration the manifests carry.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const EXPRS: &str = include_str!("py/deploy_exprs.py");
const ALERTS: &str = include_str!("py/deploy_alerts.py");

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The metric names docs/METRICS.md documents.
fn documented() -> BTreeSet<String> {
    std::fs::read_to_string(deploy_dir().join("../docs/METRICS.md"))
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("| `sealgate_"))
        .filter_map(|l| l.split('`').next())
        .map(|n| format!("sealgate_{n}"))
        .collect()
}

/// Every `sealgate_*` name in `expr`, histogram series mapped to their family.
fn names_in(expr: &str) -> Vec<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("sealgate_"))
        .map(|w| {
            ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| w.strip_suffix(s))
                .unwrap_or(w)
                .to_string()
        })
        .collect()
}

#[test]
fn manifests_rules_and_config_validate() {
    let deploy = deploy_dir();
    run_ok(
        Command::new("promtool")
            .args(["check", "rules", "alerts.yml"])
            .current_dir(deploy.join("prometheus")),
    );
    run_ok(
        Command::new("promtool")
            .args(["check", "config", "prometheus.yml"])
            .current_dir(deploy.join("prometheus")),
    );
    // Each alert fires on the synthetic series made to fire it, stays
    // silent on those made not to, and links its runbook section.
    run_ok(
        Command::new("promtool")
            .args(["test", "rules", "alerts.test.yml"])
            .current_dir(deploy.join("prometheus")),
    );
    let operations = std::fs::read_to_string(deploy.join("../docs/OPERATIONS.md")).unwrap();
    let alerts = python_ok(ALERTS, &[deploy.to_str().unwrap()]);
    for line in alerts.lines().filter(|l| !l.starts_with("rules ")) {
        let [name, runbook, tested] = line.split(' ').collect::<Vec<_>>()[..] else {
            panic!("{line}");
        };
        assert_eq!(
            tested, "tested",
            "{name}: no promtool case fires it and one not"
        );
        assert_eq!(
            runbook,
            format!("docs/OPERATIONS.md#{}", name.to_lowercase()),
            "{name}"
        );
        assert!(
            operations.lines().any(|l| l == format!("### {name}")),
            "docs/OPERATIONS.md has no runbook section for {name}"
        );
    }
    let manifests: Vec<PathBuf> = std::fs::read_dir(deploy.join("kubernetes"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(manifests.len() >= 8, "{manifests:?}");
    run_ok(
        Command::new("kubernetes-validate")
            .arg("--strict")
            .args(&manifests),
    );
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sealgate.yaml");
    let exprs = python_ok(EXPRS, &[deploy.to_str().unwrap(), config.to_str().unwrap()]);
    // The files the pod's volumes hold, where the configuration reads them.
    let tls = dir.path().join("tls");
    std::fs::create_dir(&tls).unwrap();
    self_signed_cert(&tls);
    std::fs::rename(tls.join("cert.pem"), tls.join("tls.crt")).unwrap();
    std::fs::rename(tls.join("key.pem"), tls.join("tls.key")).unwrap();
    let clients = dir.path().join("clients");
    std::fs::create_dir(&clients).unwrap();
    std::fs::write(clients.join("app-secret"), "a-secret-of-some-length-1").unwrap();
    std::fs::write(clients.join("backup-secret"), "a-secret-of-some-length-2").unwrap();
    let text = std::fs::read_to_string(&config).unwrap();
    let mounted = text.replace("/etc/sealgate/", &format!("{}/", dir.path().display()));
    assert_ne!(mounted, text);
    std::fs::write(&config, mounted).unwrap();
    run_ok(
        Command::new(env!("CARGO_BIN_EXE_sealgate"))
            .args(["check-config", config.to_str().unwrap()]),
    );
    let known = documented();
    for expr in exprs.lines() {
        for name in names_in(expr) {
            assert!(
                known.contains(&name),
                "{name} in `{expr}` is no sealgate metric"
            );
        }
    }
    // The systemd unit as systemd reads it.
    let unit = deploy.join("systemd/sealgate.service");
    let out = Command::new("systemd-analyze")
        .args(["verify", unit.to_str().unwrap()])
        .output()
        .expect("systemd-analyze (apt-get install systemd)");
    let text = String::from_utf8_lossy(&out.stderr);
    // The binary is not installed here; anything else is a finding.
    let findings: Vec<&str> = text
        .lines()
        .filter(|l| !l.contains("/usr/local/bin/sealgate") && !l.trim().is_empty())
        .collect();
    assert!(findings.is_empty(), "{text}");
}

/// A Prometheus server, stopped on drop.
struct Prometheus(Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Minimal URL encoding for a query string value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn prometheus_scrapes_a_gateway_and_every_expression_evaluates() {
    let backend = Backend::start(&["demo"]);
    let gw = encrypted_gateway(&backend);
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("f");
    std::fs::write(&src, test_bytes(2_000_000, 5)).unwrap();
    cp(&gw.url(), src.to_str().unwrap(), "s3://demo/f");
    cp(
        &gw.url(),
        "s3://demo/f",
        work.path().join("back").to_str().unwrap(),
    );
    let bad = aws_as(
        CLIENT_KEY,
        "wrong-secret",
        &gw.url(),
        &["s3", "ls", "s3://demo/"],
    );
    assert!(!bad.status.success());

    // The gateway's exposition passes promtool's lint.
    let (_, text) = gw.admin_get("/metrics");
    let mut lint = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    lint.stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = lint.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // A real Prometheus with the shipped rules scrapes it every second.
    let deploy = deploy_dir();
    let prom_dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        deploy.join("prometheus/alerts.yml"),
        prom_dir.path().join("alerts.yml"),
    )
    .unwrap();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: [alerts.yml]\nscrape_configs:\n  - job_name: sealgate\n    static_configs:\n      - targets: [\"127.0.0.1:{}\"]\n",
        gw.admin_port
    );
    std::fs::write(prom_dir.path().join("prometheus.yml"), config).unwrap();
    let port = free_port();
    let _prom = Prometheus(
        Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                prom_dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                prom_dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus (apt-get install prometheus)"),
    );
    let api = format!("127.0.0.1:{port}");
    let query = |q: &str| -> Option<String> {
        std::net::TcpStream::connect(&api).ok()?;
        let (status, body) = http_get(&api, &format!("/api/v1/query?query={}", encode(q)));
        (status == 200).then_some(body)
    };
    // Three scrapes at least, so that rates over them have data.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !query("count_over_time(sealgate_build_info[1m]) >= 3")
        .is_some_and(|b| b.contains("\"value\""))
    {
        assert!(
            Instant::now() < deadline,
            "prometheus never scraped the gateway"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let dir = tempfile::tempdir().unwrap();
    let exprs = python_ok(
        EXPRS,
        &[
            deploy.to_str().unwrap(),
            dir.path().join("c.yaml").to_str().unwrap(),
        ],
    );
    let mut with_data = 0;
    for expr in exprs.lines() {
        let body = query(expr).unwrap_or_else(|| panic!("`{expr}` was refused"));
        assert!(body.contains("\"status\":\"success\""), "`{expr}`: {body}");
        with_data += usize::from(body.contains("\"value\""));
    }
    assert!(with_data >= 10, "{with_data} expressions returned data");
    for expr in [
        "sum by (operation) (rate(sealgate_requests_total[5m]))",
        "sum by (operation) (rate(sealgate_crypto_bytes_total[5m]))",
        "sum(rate(sealgate_authentication_failures_total[5m]))",
        "sum(sealgate_ready)",
    ] {
        assert!(
            query(expr).unwrap().contains("\"value\""),
            "`{expr}` has no data"
        );
    }
    // Every shipped rule is loaded and evaluates without error.
    let shipped = python_ok(ALERTS, &[deploy.to_str().unwrap()]);
    let alerting = shipped.lines().filter(|l| !l.starts_with("rules ")).count();
    let all: usize = shipped
        .lines()
        .find_map(|l| l.strip_prefix("rules "))
        .unwrap()
        .parse()
        .unwrap();
    let (_, rules) = http_get(&api, "/api/v1/rules");
    assert_eq!(
        rules.matches("\"type\":\"alerting\"").count(),
        alerting,
        "{rules}"
    );
    assert_eq!(rules.matches("\"health\":\"ok\"").count(), all, "{rules}");
}

/// TLS to clients and secrets as files, consistently: the configuration
/// listens only with TLS on the port the Deployment names and the Service
/// forwards to; every file it reads lies under a mount of the Secret meant
/// for it; no secret comes from the environment.
#[test]
fn tls_and_secret_files_agree_across_the_manifests() {
    let k8s = deploy_dir().join("kubernetes");
    let read = |f: &str| std::fs::read_to_string(k8s.join(f)).unwrap();
    let (config, deployment, service) = (
        read("configmap.yaml"),
        read("deployment.yaml"),
        read("service.yaml"),
    );
    assert!(!config.contains("listen: \"0.0.0.0:8080\""), "plain HTTP");
    let port = number_after(&config, "listen: \"0.0.0.0:");
    assert_eq!(port, 8443);
    assert_eq!(number_after(&deployment, "containerPort:"), port);
    assert!(deployment.contains("- name: s3-tls\n              containerPort: 8443"));
    assert!(service.contains("port: 443\n      targetPort: s3-tls"));
    assert!(
        !deployment.contains("secretKeyRef"),
        "secrets in the environment"
    );
    assert!(
        !config.contains("_env:"),
        "secrets named by environment variables"
    );
    for (file, mount, secret) in [
        (
            "cert_file: /etc/sealgate/tls/tls.crt",
            "/etc/sealgate/tls",
            "sealgate-tls",
        ),
        (
            "key_file: /etc/sealgate/tls/tls.key",
            "/etc/sealgate/tls",
            "sealgate-tls",
        ),
        (
            "secret_access_key_file: /etc/sealgate/clients/app-secret",
            "/etc/sealgate/clients",
            "sealgate-clients",
        ),
        (
            "secret_access_key_file: /etc/sealgate/clients/backup-secret",
            "/etc/sealgate/clients",
            "sealgate-clients",
        ),
    ] {
        assert!(config.contains(file), "{file}");
        assert!(
            deployment.contains(&format!("mountPath: {mount}\n")),
            "{mount}"
        );
        assert!(
            deployment.contains(&format!("secretName: {secret}\n")),
            "{secret}"
        );
    }
    assert!(deployment.contains("\"--config\", \"/etc/sealgate/config/sealgate.yaml\""));
    assert!(deployment.contains("mountPath: /etc/sealgate/config\n"));
    assert!(config.contains("reload_on_change: true"));
}

/// The Dockerfile passes hadolint and builds what the Deployment runs: its
/// image, user, ports and command; every workspace member reaches the
/// build (not excluded by .dockerignore), with the lock file.
#[test]
fn the_dockerfile_lints_and_matches_the_deployment() {
    let root = deploy_dir().join("..");
    run_ok(
        Command::new("hadolint")
            .args(["--failure-threshold", "style", "Dockerfile"])
            .current_dir(&root),
    );
    let dockerfile = std::fs::read_to_string(root.join("Dockerfile")).unwrap();
    let deployment =
        std::fs::read_to_string(deploy_dir().join("kubernetes/deployment.yaml")).unwrap();
    let image = deployment
        .lines()
        .find_map(|l| l.trim().strip_prefix("image: "))
        .unwrap();
    assert!(dockerfile.contains(&format!("docker build -t {image} .")));
    let user = number_after(&deployment, "runAsUser:");
    assert!(dockerfile.contains(&format!("\nUSER {user}:{user}\n")));
    let ports: Vec<u64> = deployment
        .lines()
        .filter(|l| l.contains("containerPort:"))
        .map(|l| number_after(l, "containerPort:"))
        .collect();
    let exposed = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("EXPOSE "))
        .unwrap();
    assert_eq!(
        exposed
            .split(' ')
            .map(|p| p.parse().unwrap())
            .collect::<Vec<u64>>(),
        ports
    );
    assert!(deployment
        .contains("args: [\"run\", \"--config\", \"/etc/sealgate/config/sealgate.yaml\"]"));
    assert!(
        dockerfile.contains("CMD [\"run\", \"--config\", \"/etc/sealgate/config/sealgate.yaml\"]")
    );
    assert!(dockerfile.contains("cargo build --release --locked"));
    let ignored = std::fs::read_to_string(root.join(".dockerignore")).unwrap();
    let workspace = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let members = workspace
        .lines()
        .find_map(|l| l.strip_prefix("members = "))
        .unwrap();
    for member in members
        .split('"')
        .filter(|m| m.chars().all(|c| c.is_ascii_alphanumeric() || c == '/'))
    {
        if member.is_empty() {
            continue;
        }
        for rule in ignored
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let rule = rule.trim_end_matches('/');
            assert!(
                !(member == rule || member.starts_with(&format!("{rule}/"))),
                "{member} is excluded from the build by .dockerignore's {rule}"
            );
        }
    }
    for kept in ["Cargo.lock", "Cargo.toml"] {
        assert!(!ignored.lines().any(|l| l.trim() == kept), "{kept}");
    }
}

/// The first number after `key:` in `text` (a YAML line, `45s` or `"10"`).
fn number_after(text: &str, key: &str) -> u64 {
    let line = text
        .lines()
        .find(|l| l.contains(key))
        .unwrap_or_else(|| panic!("no `{key}`"));
    line[line.find(key).unwrap() + key.len()..]
        .chars()
        .skip_while(|c| !c.is_ascii_digit())
        .take_while(|c| c.is_ascii_digit())
        .collect::<String>()
        .parse()
        .unwrap()
}

/// The shipped manifests agree on shutdown: the drain outlasts the NLB's
/// health checks seeing the pod unhealthy (interval x threshold) with a
/// margin for deregistration, and the pod's termination grace period
/// outlasts drain plus grace, so the kubelet's SIGKILL never cuts what the
/// drain let in; namespaces inject the NLB readiness gate.
#[test]
fn shutdown_settings_agree_across_the_manifests() {
    let k8s = deploy_dir().join("kubernetes");
    let read = |f: &str| std::fs::read_to_string(k8s.join(f)).unwrap();
    let (config, deployment, service) = (
        read("configmap.yaml"),
        read("deployment.yaml"),
        read("service.yaml"),
    );
    let drain = number_after(&config, "drain_delay:");
    let grace = number_after(&config, "grace_period:");
    let interval = number_after(&service, "aws-load-balancer-healthcheck-interval:");
    let threshold = number_after(
        &service,
        "aws-load-balancer-healthcheck-unhealthy-threshold:",
    );
    let termination = number_after(&deployment, "terminationGracePeriodSeconds:");
    assert!(drain >= interval * threshold + 15, "drain {drain} s");
    assert!(
        termination >= drain + grace + 10,
        "terminationGracePeriodSeconds {termination}"
    );
    assert!(config.contains("threads: "), "threads explicit");
    // The fleet scales out on in-flight requests before pods shed load.
    let cap = number_after(&config, "max_in_flight:");
    let hpa = read("hpa.yaml");
    let scale_at = number_after(&hpa, "averageValue:");
    assert!(hpa.contains("name: sealgate_in_flight_requests"));
    assert!(scale_at * 2 <= cap, "the HPA targets {scale_at} of {cap}");
    assert!(read("namespace.yaml").contains("elbv2.k8s.aws/pod-readiness-gate-inject: enabled"));
    assert!(deployment.contains("automountServiceAccountToken: false"));
}
