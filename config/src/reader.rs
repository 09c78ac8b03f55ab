//! A path-tracking reader over the parsed YAML tree.
//!
//! Instead of deserialising straight into structs (which stops at the first
//! error), the validator walks the tree with this reader: every accessor
//! records a [`Problem`] with the exact YAML path and carries on, so one run
//! of `check-config` reports everything that is wrong.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde_norway::{Mapping, Value};

use crate::duration::parse_duration;
use crate::problem::{suggest, Problem};
use crate::secret::Secret;

/// Looks up an environment variable; injected so tests never touch the process env.
pub type EnvLookup<'e> = &'e dyn Fn(&str) -> Option<String>;

/// A mapping in the tree and where it sits.
pub(crate) struct Obj<'a> {
    pub path: String,
    map: Option<&'a Mapping>,
}

impl<'a> Obj<'a> {
    /// The value under `key`, if present and not null.
    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.map?.get(key).filter(|v| !v.is_null())
    }

    /// True when `key` is present with a value.
    pub fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// The path of a child key.
    pub fn child(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// A mapping with nothing in it (for absent sections).
    pub fn empty(path: &str) -> Obj<'a> {
        Obj {
            path: path.to_string(),
            map: None,
        }
    }
}

/// Collects problems and warnings while reading.
pub(crate) struct Reader<'e> {
    pub problems: Vec<Problem>,
    pub warnings: Vec<Problem>,
    pub env: EnvLookup<'e>,
    /// YAML paths whose values came from an environment override, and the variable.
    pub origins: HashMap<String, String>,
    /// Every file a secret was read from (`*_file` keys), in reading order.
    pub secret_files: Vec<std::path::PathBuf>,
}

impl<'e> Reader<'e> {
    pub fn new(env: EnvLookup<'e>) -> Self {
        Self {
            problems: Vec::new(),
            warnings: Vec::new(),
            env,
            origins: HashMap::new(),
            secret_files: Vec::new(),
        }
    }

    fn located(&self, path: &str) -> String {
        match self.origins.get(path) {
            Some(var) => format!("{path} (from env {var})"),
            None => path.to_string(),
        }
    }

    pub fn problem(&mut self, path: &str, message: impl Into<String>, hint: Option<String>) {
        let path = self.located(path);
        self.problems.push(Problem {
            path,
            message: message.into(),
            hint,
        });
    }

    pub fn warn(&mut self, path: &str, message: impl Into<String>, hint: Option<String>) {
        let path = self.located(path);
        self.warnings.push(Problem {
            path,
            message: message.into(),
            hint,
        });
    }

    /// Reads a mapping and reports keys outside `known` (with a "did you mean").
    /// A null value reads as an empty mapping (`kms:` with nothing under it).
    pub fn obj<'a>(
        &mut self,
        path: &str,
        value: Option<&'a Value>,
        known: &[&str],
    ) -> Option<Obj<'a>> {
        let map = match value {
            None | Some(Value::Null) => None,
            Some(Value::Mapping(m)) => Some(m),
            Some(other) => {
                self.problem(
                    path,
                    format!("expected a mapping, found {}", kind(other)),
                    None,
                );
                return None;
            }
        };
        if let Some(m) = map {
            for key in m.keys() {
                let Some(k) = key.as_str() else {
                    self.problem(
                        path,
                        format!("keys must be strings, found {}", kind(key)),
                        None,
                    );
                    continue;
                };
                if !known.contains(&k) {
                    let at = if path.is_empty() {
                        k.to_string()
                    } else {
                        format!("{path}.{k}")
                    };
                    let hint = match suggest(k, known.iter().copied()) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => format!("known keys here: {}", known.join(", ")),
                    };
                    self.problem(&at, "unknown key", Some(hint));
                }
            }
        }
        Some(Obj {
            path: path.to_string(),
            map,
        })
    }

    /// A mapping whose keys are names chosen by the user (providers, bucket
    /// aliases): its string-keyed entries, in document order.
    pub fn dict<'a>(&mut self, path: &str, value: Option<&'a Value>) -> Vec<(&'a str, &'a Value)> {
        match value {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Mapping(m)) => {
                let mut out = Vec::new();
                for (k, v) in m {
                    match k.as_str() {
                        Some(k) => out.push((k, v)),
                        None => self.problem(
                            path,
                            format!("keys must be strings, found {}", kind(k)),
                            None,
                        ),
                    }
                }
                out
            }
            Some(other) => {
                self.problem(
                    path,
                    format!("expected a mapping of names, found {}", kind(other)),
                    None,
                );
                Vec::new()
            }
        }
    }

    /// An optional string (numbers are not silently turned into strings).
    pub fn string(&mut self, o: &Obj, key: &str) -> Option<String> {
        match o.get(key)? {
            Value::String(s) => Some(s.clone()),
            other => {
                self.problem(
                    &o.child(key),
                    format!("expected a string, found {}", kind(other)),
                    None,
                );
                None
            }
        }
    }

    /// A required string; a missing one is reported with `hint`.
    pub fn required_string(&mut self, o: &Obj, key: &str, hint: &str) -> Option<String> {
        if !o.has(key) {
            self.problem(&o.child(key), "missing", Some(hint.to_string()));
            return None;
        }
        let s = self.string(o, key)?;
        if s.trim().is_empty() {
            self.problem(&o.child(key), "must not be empty", Some(hint.to_string()));
            return None;
        }
        Some(s)
    }

    pub fn boolean(&mut self, o: &Obj, key: &str) -> Option<bool> {
        match o.get(key)? {
            Value::Bool(b) => Some(*b),
            other => {
                self.problem(
                    &o.child(key),
                    format!("expected true or false, found {}", kind(other)),
                    None,
                );
                None
            }
        }
    }

    pub fn unsigned(&mut self, o: &Obj, key: &str) -> Option<u64> {
        match o.get(key)? {
            Value::Number(n) if n.as_u64().is_some() => n.as_u64(),
            other => {
                self.problem(
                    &o.child(key),
                    format!("expected a non-negative integer, found {}", kind(other)),
                    None,
                );
                None
            }
        }
    }

    pub fn duration(&mut self, o: &Obj, key: &str) -> Option<Duration> {
        let text = match o.get(key)? {
            Value::String(s) => s.clone(),
            Value::Number(n) if n.as_u64().is_some() => n.to_string(),
            other => {
                self.problem(
                    &o.child(key),
                    format!("expected a duration, found {}", kind(other)),
                    None,
                );
                return None;
            }
        };
        match parse_duration(&text) {
            Ok(d) => Some(d),
            Err(e) => {
                self.problem(
                    &o.child(key),
                    e,
                    Some("write e.g. `30s`, `5m`, `1h` or `250ms`".into()),
                );
                None
            }
        }
    }

    /// A mapping of string to scalar (encryption contexts); scalars are
    /// written as strings because KMS contexts are string to string.
    pub fn string_map(&mut self, o: &Obj, key: &str) -> BTreeMap<String, String> {
        let path = o.child(key);
        let mut out = BTreeMap::new();
        match o.get(key) {
            None => {}
            Some(Value::Mapping(m)) => {
                for (k, v) in m {
                    let Some(k) = k.as_str() else {
                        self.problem(
                            &path,
                            format!("keys must be strings, found {}", kind(k)),
                            None,
                        );
                        continue;
                    };
                    match scalar_string(v) {
                        Some(s) => {
                            out.insert(k.to_string(), s);
                        }
                        None => self.problem(
                            &format!("{path}.{k}"),
                            format!("expected a string, found {}", kind(v)),
                            None,
                        ),
                    }
                }
            }
            Some(other) => self.problem(
                &path,
                format!("expected a mapping, found {}", kind(other)),
                None,
            ),
        }
        out
    }

    /// A list of strings; a single string is accepted as a one-element list.
    pub fn string_list(&mut self, o: &Obj, key: &str) -> Option<Vec<String>> {
        let path = o.child(key);
        match o.get(key)? {
            Value::String(s) => Some(vec![s.clone()]),
            Value::Sequence(items) => {
                let mut out = Vec::new();
                for (i, v) in items.iter().enumerate() {
                    match v {
                        Value::String(s) => out.push(s.clone()),
                        other => self.problem(
                            &format!("{path}[{i}]"),
                            format!("expected a string, found {}", kind(other)),
                            None,
                        ),
                    }
                }
                Some(out)
            }
            other => {
                self.problem(
                    &path,
                    format!("expected a list of strings, found {}", kind(other)),
                    None,
                );
                None
            }
        }
    }

    /// A list, each item with its path.
    pub fn list<'a>(&mut self, o: &Obj<'a>, key: &str) -> Vec<(String, &'a Value)> {
        let path = o.child(key);
        match o.get(key) {
            None => Vec::new(),
            Some(Value::Sequence(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| (format!("{path}[{i}]"), v))
                .collect(),
            Some(other) => {
                self.problem(
                    &path,
                    format!("expected a list, found {}", kind(other)),
                    None,
                );
                Vec::new()
            }
        }
    }

    /// A secret given exactly one way: inline `key`, `key_env` (a variable
    /// name) or `key_file` (a path whose trimmed contents are the secret).
    /// Error messages name the variable or file, never the value.
    pub fn secret(&mut self, o: &Obj, key: &str) -> Option<Secret> {
        let env_key = format!("{key}_env");
        let file_key = format!("{key}_file");
        let given: Vec<&str> = [key, env_key.as_str(), file_key.as_str()]
            .into_iter()
            .filter(|k| o.has(k))
            .collect();
        if given.len() > 1 {
            self.problem(
                &o.child(key),
                format!("given more than one way: {}", given.join(", ")),
                Some(
                    "keep exactly one of the inline value, the _env variable or the _file path"
                        .into(),
                ),
            );
            return None;
        }
        if o.has(key) {
            return self.string(o, key).map(Secret::from_string);
        }
        if o.has(&env_key) {
            let var = self.string(o, &env_key)?;
            return match (self.env)(&var) {
                Some(v) if !v.is_empty() => Some(Secret::from_string(v)),
                _ => {
                    self.problem(
                        &o.child(&env_key),
                        format!("environment variable `{var}` is not set or empty"),
                        Some(format!("export {var} before starting sealgate")),
                    );
                    None
                }
            };
        }
        if o.has(&file_key) {
            let file = self.string(o, &file_key)?;
            self.secret_files.push(std::path::PathBuf::from(&file));
            return match std::fs::read_to_string(&file) {
                Ok(text) => {
                    let trimmed = text.trim().to_string();
                    drop(Secret::from_string(text));
                    if trimmed.is_empty() {
                        self.problem(&o.child(&file_key), format!("file `{file}` is empty"), None);
                        None
                    } else {
                        Some(Secret::from_string(trimmed))
                    }
                }
                Err(e) => {
                    self.problem(
                        &o.child(&file_key),
                        format!("cannot read `{file}`: {}", e.kind()),
                        Some("check the path and that sealgate may read it".into()),
                    );
                    None
                }
            };
        }
        None
    }
}

/// The key names a secret field may use (`key`, `key_env`, `key_file`).
pub(crate) fn secret_keys(key: &'static str) -> [String; 3] {
    [key.to_string(), format!("{key}_env"), format!("{key}_file")]
}

fn scalar_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A short name of a YAML value's type, for messages.
pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}
