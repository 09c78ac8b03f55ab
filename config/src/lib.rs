//! sealgate's configuration: the YAML surface, `KMS_*` environment overrides,
//! and a validator that reports every problem at once with its YAML path.
//!
//! ```text
//! YAML text --parse--> tree --env overrides--> tree --validate--> Config
//! ```
//! The serde YAML tree is the "file config"; [`Config`] is the checked,
//! typed model the gateway runs on. YAML is parsed with `serde_norway`, a
//! maintained fork of the deprecated `serde_yaml`.

mod duration;
mod glob;
mod model;
mod problem;
mod reader;
mod secret;
mod validate;

pub use duration::parse_duration;
pub use glob::Glob;
pub use model::*;
pub use problem::{Problem, Problems};
pub use reader::EnvLookup;
pub use secret::Secret;
pub use validate::{check_bucket_name, parse_endpoint};

use serde_norway::{Mapping, Value};

/// A valid configuration and the warnings found while checking it.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<Problem>,
}

/// The legacy `KMS_*` variables and the `encryption.kms` key each overrides.
pub const KMS_ENV_OVERRIDES: [(&str, &str, EnvKind); 7] = [
    ("KMS_ENABLED", "enabled", EnvKind::Bool),
    ("KMS_DEFAULT_KEY_ID", "default_key_id", EnvKind::Text),
    ("KMS_KEY_SPEC", "key_spec", EnvKind::Text),
    ("KMS_REGION", "region", EnvKind::Text),
    (
        "KMS_DATA_KEY_CACHE_TTL",
        "data_key_cache_ttl",
        EnvKind::Text,
    ),
    ("KMS_VALIDATE_KEYS", "validate_keys", EnvKind::Bool),
    (
        "KMS_ENABLE_KEY_ROTATION",
        "enable_key_rotation",
        EnvKind::Bool,
    ),
];

/// How an override's text becomes a YAML value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvKind {
    Bool,
    Text,
}

/// Parses, applies env overrides and validates. `env` looks up variables
/// (pass `|k| std::env::var(k).ok()` in production).
pub fn load_str(yaml: &str, env: EnvLookup) -> Result<Loaded, Problems> {
    let mut tree: Value = match serde_norway::from_str(yaml) {
        Ok(Value::Null) => Value::Mapping(Mapping::new()),
        Ok(v) => v,
        Err(e) => {
            let path = match e.location() {
                Some(l) => format!("line {} column {}", l.line(), l.column()),
                None => "(document)".to_string(),
            };
            return Err(Problems(vec![Problem {
                path,
                message: format!("not valid YAML: {e}"),
                hint: None,
            }]));
        }
    };
    let mut r = reader::Reader::new(env);
    apply_env_overrides(&mut r, &mut tree);
    let config = validate::build(&mut r, &tree);
    match config {
        Some(config) if r.problems.is_empty() => Ok(Loaded {
            config,
            warnings: r.warnings,
        }),
        _ => Err(Problems(r.problems)),
    }
}

/// Reads and loads a file; an unreadable file is one problem naming it.
pub fn load_file(path: &std::path::Path, env: EnvLookup) -> Result<Loaded, Problems> {
    match std::fs::read_to_string(path) {
        Ok(text) => load_str(&text, env),
        Err(e) => Err(Problems(vec![Problem {
            path: path.display().to_string(),
            message: format!("cannot read the config file: {e}"),
            hint: None,
        }])),
    }
}

fn apply_env_overrides(r: &mut reader::Reader, tree: &mut Value) {
    for (var, key, kind) in KMS_ENV_OVERRIDES {
        let Some(text) = (r.env)(var) else { continue };
        let value = match kind {
            EnvKind::Text => Value::String(text),
            EnvKind::Bool => match text.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => Value::Bool(true),
                "false" | "0" | "no" => Value::Bool(false),
                _ => {
                    r.problem(
                        &format!("env {var}"),
                        format!("`{text}` is not a boolean"),
                        Some("use true or false".into()),
                    );
                    continue;
                }
            },
        };
        let Some(kms) = ensure_map(tree, &["encryption", "kms"]) else {
            r.problem(
                &format!("env {var}"),
                "cannot apply: encryption.kms is not a mapping in the file",
                None,
            );
            continue;
        };
        kms.insert(Value::String(key.to_string()), value);
        r.origins
            .insert(format!("encryption.kms.{key}"), var.to_string());
    }
}

/// Walks (creating where absent or null) nested mappings.
fn ensure_map<'a>(mut v: &'a mut Value, path: &[&str]) -> Option<&'a mut Mapping> {
    for key in path {
        if v.is_null() {
            *v = Value::Mapping(Mapping::new());
        }
        let m = v.as_mapping_mut()?;
        let k = Value::String((*key).to_string());
        if !m.contains_key(&k) {
            m.insert(k.clone(), Value::Null);
        }
        v = m.get_mut(&k)?;
    }
    if v.is_null() {
        *v = Value::Mapping(Mapping::new());
    }
    v.as_mapping_mut()
}

#[cfg(test)]
mod tests;
