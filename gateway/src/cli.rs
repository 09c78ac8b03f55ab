//! The `sealgate` command line: its subcommands and their options (what
//! each does is in `main.rs` and the library).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(name = "sealgate", version, about = "S3 encryption edge gateway")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// What every bucket-wide operator command (rewrap, audit, migrate) is
/// told: the configuration, the bucket, and optionally a key prefix.
#[derive(Args)]
pub struct BucketArgs {
    /// The YAML configuration file.
    #[arg(short, long, env = "SEALGATE_CONFIG")]
    pub config: PathBuf,
    /// The bucket, as clients name it.
    #[arg(long)]
    pub bucket: String,
    /// Only objects whose keys start with this.
    #[arg(long)]
    pub prefix: Option<String>,
}

#[derive(Subcommand)]
pub enum Command {
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
        #[command(flatten)]
        target: BucketArgs,
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
        #[command(flatten)]
        target: BucketArgs,
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
        #[command(flatten)]
        target: BucketArgs,
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
pub enum BackendCommand {
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
pub enum KeysCommand {
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
