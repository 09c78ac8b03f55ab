//! The `sealgate` command.

use std::process::ExitCode;

use clap::Parser;
use sealgate_config::{load_file, Loaded};

mod cli;

use cli::{BackendCommand, BucketArgs, Cli, Command, KeysCommand};

/// mimalloc instead of glibc's allocator: requests move between worker
/// threads, and glibc's per-arena locks then contend on every free of a
/// buffer another thread allocated (measured in bench/RESULTS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn load(path: &std::path::Path) -> Result<Loaded, ExitCode> {
    load_file(path, &env).map_err(|problems| {
        eprint!("{}: {problems}", path.display());
        ExitCode::from(1)
    })
}

/// Prints a status command's report: exit 0 when all is well, 1 when it
/// found a problem or could not run.
fn report(command: &str, outcome: Result<(String, bool), String>) -> ExitCode {
    match outcome {
        Ok((report, true)) => {
            print!("{report}");
            ExitCode::SUCCESS
        }
        Ok((report, false)) => {
            print!("{report}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("sealgate {command}: {e}");
            ExitCode::from(1)
        }
    }
}

fn main() -> ExitCode {
    sealgate::install_crypto_provider();
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { file } => match load(&file) {
            Ok(loaded) => {
                for w in &loaded.warnings {
                    eprintln!("warning: {w}");
                }
                let c = &loaded.config;
                println!(
                    "{}: valid ({} key provider(s), default {}, {} polic(ies), {} client key(s), {} bucket config(s))",
                    file.display(),
                    c.encryption.providers.len(),
                    c.encryption.default_provider.as_deref().unwrap_or("none"),
                    c.encryption.policies.len(),
                    c.auth.clients.len(),
                    c.buckets.len()
                );
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Rewrap {
            target:
                BucketArgs {
                    config,
                    bucket,
                    prefix,
                },
            to_provider,
            to_key,
            dry_run,
            limit,
        } => {
            let loaded = match load(&config) {
                Ok(l) => l,
                Err(code) => return code,
            };
            let opts = sealgate::ops::rewrap::RewrapOptions {
                bucket,
                prefix,
                to_provider,
                to_key,
                dry_run,
                limit,
            };
            match sealgate::ops::rewrap::rewrap(&loaded.config, &opts) {
                Ok(s) => {
                    println!("{}", s.report(dry_run));
                    if s.complete() {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::from(1)
                    }
                }
                Err(e) => {
                    eprintln!("sealgate rewrap: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Audit {
            target:
                BucketArgs {
                    config,
                    bucket,
                    prefix,
                },
            json,
            verify,
        } => {
            let loaded = match load(&config) {
                Ok(l) => l,
                Err(code) => return code,
            };
            let opts = sealgate::ops::audit::AuditOptions {
                bucket,
                prefix,
                json,
                verify,
            };
            let mut stdout = std::io::stdout().lock();
            match sealgate::ops::audit::audit(&loaded.config, &opts, &mut stdout) {
                Ok(a) => {
                    if !json {
                        print!("{}", a.summary.report(a.mandatory));
                    }
                    if let Some(why) = &a.stopped {
                        eprintln!("sealgate audit: stopped before the end: {why}");
                    }
                    if a.summary.findings(a.mandatory) {
                        ExitCode::from(2)
                    } else if a.summary.failed > 0 || a.stopped.is_some() {
                        ExitCode::from(1)
                    } else {
                        ExitCode::SUCCESS
                    }
                }
                Err(e) => {
                    eprintln!("sealgate audit: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Migrate {
            target:
                BucketArgs {
                    config,
                    bucket,
                    prefix,
                },
            dry_run,
            concurrency,
            json,
        } => {
            let loaded = match load(&config) {
                Ok(l) => l,
                Err(code) => return code,
            };
            let opts = sealgate::ops::migrate::MigrateOptions {
                bucket,
                prefix,
                dry_run,
                concurrency,
                json,
            };
            let mut stdout = std::io::stdout().lock();
            match sealgate::ops::migrate::migrate(&loaded.config, &opts, &mut stdout) {
                Ok(m) => {
                    if !json {
                        println!("{}", m.summary.line(dry_run));
                    }
                    if let Some(why) = &m.stopped {
                        eprintln!("sealgate migrate: stopped before the end: {why}; run it again to resume");
                    }
                    if m.summary.failed > 0 || m.stopped.is_some() {
                        ExitCode::from(1)
                    } else {
                        ExitCode::SUCCESS
                    }
                }
                Err(e) => {
                    eprintln!("sealgate migrate: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Decrypt {
            config,
            url,
            output,
            range,
        } => {
            let loaded = match load(&config) {
                Ok(l) => l,
                Err(code) => return code,
            };
            let _log = sealgate::logging::init(&loaded.config.logging);
            let parsed = sealgate::ops::breakglass::parse_s3_url(&url).and_then(|(b, k)| {
                let range = range
                    .as_deref()
                    .map(sealgate::ops::breakglass::parse_range)
                    .transpose()?;
                Ok((b, k, range))
            });
            let outcome = parsed.and_then(|(bucket, key, range)| {
                sealgate::ops::breakglass::decrypt(
                    &loaded.config,
                    &bucket,
                    &key,
                    output.as_deref(),
                    range,
                )
            });
            match outcome {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("sealgate decrypt: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Encrypt { config, file, url } => {
            let loaded = match load(&config) {
                Ok(l) => l,
                Err(code) => return code,
            };
            let _log = sealgate::logging::init(&loaded.config.logging);
            let outcome =
                sealgate::ops::breakglass::parse_s3_url(&url).and_then(|(bucket, key)| {
                    sealgate::ops::breakglass::encrypt(&loaded.config, &file, &bucket, &key)
                });
            match outcome {
                Ok(etag) => {
                    println!("stored {url} {etag}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("sealgate encrypt: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Keys {
            command: KeysCommand::Validate { config, bucket },
        } => {
            let loaded = match load(&config) {
                Ok(l) => l,
                Err(code) => return code,
            };
            report(
                "keys validate",
                sealgate::keys_validate(&loaded.config, bucket.as_deref()),
            )
        }
        Command::Keys {
            command: KeysCommand::Status { config },
        } => {
            let loaded = match load(&config) {
                Ok(l) => l,
                Err(code) => return code,
            };
            report("keys status", sealgate::keys_status(&loaded.config))
        }
        Command::Backend {
            command: BackendCommand::Status { config, bucket },
        } => {
            let loaded = match load(&config) {
                Ok(l) => l,
                Err(code) => return code,
            };
            report(
                "backend status",
                sealgate::backend_status(&loaded.config, bucket.as_deref()),
            )
        }
        Command::Run { config, upgrade } => {
            let loaded = match load(&config) {
                Ok(l) => l,
                Err(code) => return code,
            };
            // Held until the end: lines still buffered are written on drop.
            let _log = sealgate::logging::init(&loaded.config.logging);
            for w in &loaded.warnings {
                tracing::warn!("{w}");
            }
            match sealgate::server::run_forever(loaded.config, &config, upgrade) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("sealgate: {e}");
                    ExitCode::from(1)
                }
            }
        }
    }
}
