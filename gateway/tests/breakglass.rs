//! Break-glass access: `sealgate decrypt` and `sealgate encrypt` straight
//! to the backend, each use an audit event; and the independent reader of
//! docs/FORMAT.md as the recovery tool that needs nothing of sealgate but
//! the key.

mod common;

use std::process::{Command, Output};

use common::*;

const READER: &str = include_str!("py/format_reader.py");

/// The master key of [`LOCAL_PROVIDER`], base64.
const MASTER_B64: &str = "dGVzdGtleQ==";

fn tool(config: &str, args: &[&str]) -> Output {
    tool_env(config, args, &[])
}

/// [`tool`] with more environment variables.
fn tool_env(config: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sealgate.yaml");
    std::fs::write(&file, config).unwrap();
    let (command, rest) = args.split_first().unwrap();
    Command::new(env!("CARGO_BIN_EXE_sealgate"))
        .args([command, "--config"])
        .arg(&file)
        .args(rest)
        .env("TEST_UPSTREAM_SECRET", UPSTREAM_SECRET)
        .env("TEST_CLIENT_SECRET", CLIENT_SECRET)
        .env("TEST_TEAM_SECRET", TEAM_SECRET)
        .env("TEST_READER_SECRET", READER_SECRET)
        .env("USER", "oncall-ann")
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

/// The audit events of a run (JSON lines on stderr).
fn events(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == "sealgate::audit")
        .collect()
}

#[test]
fn decrypt_and_encrypt_reach_the_backend_directly_and_are_audited() {
    let backend = Backend::start(&["demo"]);
    let gw = encrypted_gateway(&backend);
    let work = tempfile::tempdir().unwrap();
    let small = test_bytes(70_001, 1);
    // Multipart through the aws cli (8 MiB parts).
    let big = test_bytes(9 * 1024 * 1024 + 5, 2);
    for (key, data) in [("small", &small), ("big", &big)] {
        let src = work.path().join(key);
        std::fs::write(&src, data).unwrap();
        cp(
            &gw.url(),
            src.to_str().unwrap(),
            &format!("s3://demo/{key}"),
        );
    }
    let config = Gateway::config_yaml(
        &backend,
        free_port(),
        free_port(),
        None,
        &Options {
            extra: &format!("{LOCAL_PROVIDER}logging:\n  format: json\n"),
            ..Options::default()
        },
    );
    drop(gw);

    // Whole objects to files, ranges across a frame and across parts.
    for (key, data) in [("small", &small), ("big", &big)] {
        let out = work.path().join(format!("{key}.out"));
        let o = tool(
            &config,
            &[
                "decrypt",
                &format!("s3://demo/{key}"),
                "-o",
                out.to_str().unwrap(),
            ],
        );
        assert!(o.status.success(), "{o:?}");
        assert_eq!(&std::fs::read(&out).unwrap(), data, "{key}");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&out).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{key}: readable by others");
        let ev = events(&o);
        let outcomes: Vec<&str> = ev.iter().map(|e| e["outcome"].as_str().unwrap()).collect();
        assert_eq!(outcomes, ["started", "unwrapping", "done"], "{ev:?}");
        assert!(
            ev.iter().all(|e| e["operator"]
                .as_str()
                .is_some_and(|o| o.starts_with("uid ") && o.ends_with("(oncall-ann)"))
                && e["action"] == "decrypt"
                && e["key"] == key
                && e["bucket"] == "demo"),
            "{ev:?}"
        );
        assert!(
            ev[1]["detail"].as_str().unwrap().contains("key local:"),
            "{ev:?}"
        );
    }
    let range = |key: &str, r: &str| {
        let o = tool(
            &config,
            &["decrypt", &format!("s3://demo/{key}"), "--range", r],
        );
        assert!(o.status.success(), "{o:?}");
        o.stdout
    };
    assert_eq!(range("small", "65530-65545"), &small[65530..=65545]);
    assert_eq!(range("small", "70000-"), &small[70000..]);
    let part = 8 * 1024 * 1024;
    assert_eq!(
        range("big", &format!("{}-{}", part - 3, part + 3)),
        &big[part - 3..=part + 3]
    );

    // An existing file is never overwritten; a range past the end is refused.
    let taken = work.path().join("taken");
    std::fs::write(&taken, b"mine").unwrap();
    let o = tool(
        &config,
        &["decrypt", "s3://demo/small", "-o", taken.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert_eq!(std::fs::read(&taken).unwrap(), b"mine");
    let o = tool(
        &config,
        &["decrypt", "s3://demo/small", "--range", "70001-"],
    );
    assert_eq!(o.status.code(), Some(1), "{o:?}");

    // A symlink at the name is not followed.
    let link = work.path().join("link");
    std::os::unix::fs::symlink(work.path().join("elsewhere"), &link).unwrap();
    let o = tool(
        &config,
        &["decrypt", "s3://demo/small", "-o", link.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(!work.path().join("elsewhere").exists());

    // A stored frame flipped past the first one: the run fails at that
    // frame, and no plaintext (not even the frames before it) is left.
    let mut stored = backend.stored("demo", "small");
    stored[65_536 + 100] ^= 1;
    std::fs::write(backend.object_path("demo", "small"), &stored).unwrap();
    let out = work.path().join("tampered.out");
    let o = tool(
        &config,
        &["decrypt", "s3://demo/small", "-o", out.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let leftovers: Vec<_> = std::fs::read_dir(work.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("tampered"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    stored[65_536 + 100] ^= 1;
    std::fs::write(backend.object_path("demo", "small"), &stored).unwrap();

    // The audit events cannot be switched off by the log level.
    let quiet = config.replace(
        "logging:\n  format: json\n",
        "logging:\n  format: json\n  level: error\n",
    );
    assert_ne!(quiet, config);
    let o = tool(&quiet, &["decrypt", "s3://demo/small", "--range", "0-0"]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(events(&o).len(), 3, "{o:?}");
    // Nor by any filter (one naming the events' own target and field).
    let o = tool_env(
        &config,
        &["decrypt", "s3://demo/small", "--range", "0-0"],
        &[("SEALGATE_LOG", "off,sealgate::audit[{event}]=off")],
    );
    assert!(o.status.success(), "{o:?}");
    assert_eq!(events(&o).len(), 3, "{o:?}");

    // Under another master key nothing is written, and the failure is audited.
    let wrong = config.replace(MASTER_B64, "b3RoZXJrZXk=");
    assert_ne!(wrong, config);
    let out = work.path().join("wrong.out");
    let o = tool(
        &wrong,
        &["decrypt", "s3://demo/small", "-o", out.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(!out.exists());
    assert_eq!(events(&o).last().unwrap()["outcome"], "failed");

    // A plaintext object is not pretended to be decrypted.
    backend.put_direct("demo", "plain", b"plaintext");
    let o = tool(&config, &["decrypt", "s3://demo/plain"]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("not encrypted by sealgate"));

    // encrypt stores ciphertext the gateway reads back exactly.
    let file = work.path().join("upload");
    let data = test_bytes(200_000, 3);
    std::fs::write(&file, &data).unwrap();
    let o = tool(
        &config,
        &["encrypt", file.to_str().unwrap(), "s3://demo/restored"],
    );
    assert!(o.status.success(), "{o:?}");
    assert_eq!(events(&o).last().unwrap()["action"], "encrypt");
    assert_ne!(backend.stored("demo", "restored"), data);
    let gw = encrypted_gateway(&backend);
    let back = work.path().join("back");
    cp(&gw.url(), "s3://demo/restored", back.to_str().unwrap());
    assert_eq!(std::fs::read(&back).unwrap(), data);

    // The recovery tool: the object's metadata and stored bytes from any
    // S3 client, and the master key, give the plaintext back.
    for (key, data) in [("small", &small), ("big", &big)] {
        let head = aws_as(
            UPSTREAM_KEY,
            UPSTREAM_SECRET,
            &backend.url(),
            &["s3api", "head-object", "--bucket", "demo", "--key", key],
        );
        assert!(head.status.success());
        let meta = work.path().join(format!("{key}.json"));
        std::fs::write(&meta, &head.stdout).unwrap();
        let stored = work.path().join(format!("{key}.stored"));
        std::fs::write(&stored, backend.stored("demo", key)).unwrap();
        let plain = work.path().join(format!("{key}.recovered"));
        let out = python_ok(
            READER,
            &[
                "recover",
                meta.to_str().unwrap(),
                stored.to_str().unwrap(),
                plain.to_str().unwrap(),
                MASTER_B64,
            ],
        );
        assert_eq!(out.trim(), "ok");
        assert_eq!(&std::fs::read(&plain).unwrap(), data, "{key}");
    }
}
