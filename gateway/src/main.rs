//! The `sealgate` command.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sealgate_config::{load_file, Loaded};

/// mimalloc instead of glibc's allocator: requests move between worker
/// threads, and glibc's per-arena locks then contend on every free of a
/// buffer another thread allocated (measured in bench/RESULTS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "sealgate", version, about = "S3 encryption edge gateway")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway until SIGTERM or Ctrl-C; SIGHUP reloads the
    /// configuration; SIGQUIT hands the listeners to a process started with
    /// --upgrade.
    Run {
        /// The YAML configuration file.
        #[arg(short, long, env = "SEALGATE_CONFIG")]
        config: PathBuf,
        /// Take the listening sockets over from the running process (which
        /// is then sent SIGQUIT) through `server.upgrade_sock`.
        #[arg(long)]
        upgrade: bool,
    },
    /// Validate a configuration file and exit: 0 when valid, 1 with every problem otherwise.
    CheckConfig {
        /// The YAML configuration file.
        file: PathBuf,
    },
    /// Move every encrypted object of a bucket to another key provider or
    /// key: each data key is re-wrapped and the object copied onto itself
    /// (server-side; its stored bytes do not change). Rerun to resume.
    Rewrap {
        /// The YAML configuration file.
        #[arg(short, long, env = "SEALGATE_CONFIG")]
        config: PathBuf,
        /// The bucket, as clients name it.
        #[arg(long)]
        bucket: String,
        /// Only objects whose keys start with this.
        #[arg(long)]
        prefix: Option<String>,
        /// The provider to move to (default: the bucket's policy's).
        #[arg(long)]
        to_provider: Option<String>,
        /// The key to move to (default: the bucket's key, else the provider's default).
        #[arg(long)]
        to_key: Option<String>,
        /// Report what would move and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Stop after moving this many objects.
        #[arg(long)]
        limit: Option<u64>,
    },
    /// Report the encryption state of every object of a bucket (one HEAD
    /// each, straight to the backend): exit 0 when nothing needs acting on,
    /// 2 when a mandatory bucket holds plaintext or an object is unreadable,
    /// refused by the bucket's policy or (--verify) under a key that fails,
    /// 1 when the audit could not run or some objects could not be looked at.
    Audit {
        /// The YAML configuration file.
        #[arg(short, long, env = "SEALGATE_CONFIG")]
        config: PathBuf,
        /// The bucket, as clients name it.
        #[arg(long)]
        bucket: String,
        /// Only objects whose keys start with this.
        #[arg(long)]
        prefix: Option<String>,
        /// One JSON line per object, then a summary line.
        #[arg(long)]
        json: bool,
        /// Also unwrap each distinct data key once and check it against
        /// its objects (asks the key providers).
        #[arg(long)]
        verify: bool,
    },
    /// Encrypt the plaintext objects of a bucket in place, straight to the
    /// backend: metadata, tags and part counts kept, each object read back
    /// and checked, a client's write during the run never overwritten where
    /// the backend enforces If-Match (docs/OPERATIONS.md). Rerun to resume.
    /// Exit 0 when every object is encrypted, 1 when some failed or the
    /// run stopped early.
    Migrate {
        /// The YAML configuration file.
        #[arg(short, long, env = "SEALGATE_CONFIG")]
        config: PathBuf,
        /// The bucket, as clients name it.
        #[arg(long)]
        bucket: String,
        /// Only objects whose keys start with this.
        #[arg(long)]
        prefix: Option<String>,
        /// Report what would be encrypted and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Objects migrated at once (1 to 64).
        #[arg(long, default_value_t = sealgate::ops::migrate::DEFAULT_CONCURRENCY)]
        concurrency: usize,
        /// One JSON line per object acted on, then a summary line.
        #[arg(long)]
        json: bool,
    },
    /// Break-glass: write one object's plaintext (or --range of it) to a
    /// new file or stdout, straight from the backend with the configured
    /// key provider. Each use is logged as an audit event (target
    /// sealgate::audit) on stderr.
    Decrypt {
        /// The YAML configuration file.
        #[arg(short, long, env = "SEALGATE_CONFIG")]
        config: PathBuf,
        /// s3://bucket/key (the bucket as clients name it).
        url: String,
        /// A new file for the plaintext (mode 0600; default: stdout).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Only bytes FIRST-LAST (inclusive) or FIRST- of the plaintext.
        #[arg(long)]
        range: Option<String>,
    },
    /// Break-glass: store FILE at s3://bucket/key under the bucket's
    /// encryption, straight to the backend (one PUT). Logged as an audit
    /// event like decrypt.
    Encrypt {
        /// The YAML configuration file.
        #[arg(short, long, env = "SEALGATE_CONFIG")]
        config: PathBuf,
        /// The file to store.
        file: PathBuf,
        /// s3://bucket/key (the bucket as clients name it).
        url: String,
    },
    /// Key provider tools.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Storage backend tools.
    Backend {
        #[command(subcommand)]
        command: BackendCommand,
    },
}

#[derive(Subcommand)]
enum BackendCommand {
    /// Show the endpoint and whether it verifies the gateway's stored checksums (probed under
    /// .sealgate/probe/ in a bucket, nothing left behind); exit 1 when the configuration does not
    /// suit the backend.
    Status {
        /// The YAML configuration file.
        #[arg(short, long, env = "SEALGATE_CONFIG")]
        config: PathBuf,
        /// The bucket to probe in (default: the first one the backend lists).
        #[arg(long)]
        bucket: Option<String>,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Generate a data key under each configured key and unwrap it again
    /// (KMS GenerateDataKey and Decrypt; wrap and unwrap for the others):
    /// exit 1 when a key cannot make the round trip.
    Validate {
        /// The YAML configuration file.
        #[arg(short, long, env = "SEALGATE_CONFIG")]
        config: PathBuf,
        /// Only this bucket's key, under the encryption context its writes
        /// carry (a key policy with a sealgate:bucket condition needs it).
        #[arg(long)]
        bucket: Option<String>,
    },
    /// Show each provider, its keys, their state and rotation; exit 1 when a key is unusable.
    Status {
        /// The YAML configuration file.
        #[arg(short, long, env = "SEALGATE_CONFIG")]
        config: PathBuf,
    },
}

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
            config,
            bucket,
            prefix,
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
            config,
            bucket,
            prefix,
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
            config,
            bucket,
            prefix,
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
