//! What `sealgate audit` makes of each object of a bucket, from its
//! stored headers (no data read, no key provider asked), and the summary
//! it prints: objects by state and by the key that wraps them.

use std::collections::BTreeMap;

use sealgate_envelope::EnvelopeMeta;

use crate::policy::{Unbound, BUCKET_CONTEXT_KEY};

/// One object's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Written by the gateway: its envelope, and the bucket its encryption
    /// context binds it to.
    Encrypted {
        provider: String,
        key_id: String,
        multipart: bool,
        bound_bucket: Option<String>,
    },
    /// No envelope: stored as the client sent it.
    Plaintext,
    /// An envelope the gateway cannot read (damaged, or a format it does
    /// not know): no GET can decrypt it.
    Unreadable(String),
    /// An envelope the bucket's policy would refuse to decrypt (moved in
    /// from another bucket, or under a key no policy reads any more).
    Refused {
        provider: String,
        key_id: String,
        reason: &'static str,
    },
    /// Its data key could not be unwrapped, or did not match its
    /// commitment (`--verify`).
    KeyFailed {
        provider: String,
        key_id: String,
        reason: String,
    },
}

impl State {
    /// The provider and key id of the envelope, where there is a readable one.
    pub fn wrapped_by(&self) -> Option<(&str, &str)> {
        match self {
            Self::Encrypted {
                provider, key_id, ..
            }
            | Self::Refused {
                provider, key_id, ..
            }
            | Self::KeyFailed {
                provider, key_id, ..
            } => Some((provider, key_id)),
            Self::Plaintext | Self::Unreadable(_) => None,
        }
    }

    /// The state's name in reports and JSON.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Encrypted { .. } => "encrypted",
            Self::Plaintext => "plaintext",
            Self::Unreadable(_) => "unreadable",
            Self::Refused { .. } => "refused",
            Self::KeyFailed { .. } => "key-failed",
        }
    }
}

/// The bucket's policy as a GET applies it to a stored envelope.
pub type PolicyCheck<'c> = &'c dyn Fn(&EnvelopeMeta) -> Result<(), Unbound>;

/// The state of an object whose stored headers `get` answers; `check` is
/// the bucket's policy as a GET applies it (`None`: the bucket has no key
/// provider, so an envelope is reported but not checked).
pub fn state_of<'a>(
    get: impl Fn(&str) -> Option<&'a str>,
    check: Option<PolicyCheck>,
) -> (State, Option<EnvelopeMeta>) {
    let meta = match EnvelopeMeta::from_headers(get) {
        Ok(Some(meta)) => meta,
        Ok(None) => return (State::Plaintext, None),
        Err(e) => return (State::Unreadable(e.to_string()), None),
    };
    if let Some(Err(reason)) = check.map(|c| c(&meta)) {
        let reason = match reason {
            Unbound::Key => "its provider and key are not ones the bucket's policy reads",
            Unbound::Context => "its encryption context binds it to another bucket",
        };
        let state = State::Refused {
            provider: meta.provider.clone(),
            key_id: meta.key_id.clone(),
            reason,
        };
        return (state, Some(meta));
    }
    let state = State::Encrypted {
        provider: meta.provider.clone(),
        key_id: meta.key_id.clone(),
        multipart: meta.multipart,
        bound_bucket: meta.context.get(BUCKET_CONTEXT_KEY).cloned(),
    };
    (state, Some(meta))
}

/// One object as a JSON line (`--json`).
pub fn json_line(key: &str, size: u64, state: &State) -> String {
    let mut v = serde_json::json!({"key": key, "size": size, "state": state.name()});
    if let Some((provider, key_id)) = state.wrapped_by() {
        v["provider"] = provider.into();
        v["key_id"] = key_id.into();
    }
    match state {
        State::Encrypted {
            multipart,
            bound_bucket,
            ..
        } => {
            v["format"] = sealgate_envelope::meta::VERSION.into();
            v["multipart"] = (*multipart).into();
            v["bound_bucket"] = bound_bucket.clone().into();
        }
        State::Refused { reason, .. } => v["reason"] = (*reason).into(),
        State::KeyFailed { reason, .. } | State::Unreadable(reason) => {
            v["reason"] = reason.as_str().into()
        }
        State::Plaintext => {}
    }
    v.to_string()
}

/// What an audit found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub objects: u64,
    pub bytes: u64,
    pub encrypted: u64,
    pub plaintext: u64,
    pub unreadable: u64,
    pub refused: u64,
    pub key_failed: u64,
    /// Objects that could not be looked at (the backend failed).
    pub failed: u64,
    /// Encrypted objects per `provider key_id`.
    pub by_key: BTreeMap<String, u64>,
    /// Distinct wrapped data keys unwrapped (`--verify`).
    pub keys_verified: u64,
}

impl Summary {
    pub fn add(&mut self, size: u64, state: &State) {
        self.objects += 1;
        self.bytes += size;
        match state {
            State::Encrypted {
                provider, key_id, ..
            } => {
                self.encrypted += 1;
                *self
                    .by_key
                    .entry(format!("{provider} {key_id}"))
                    .or_default() += 1;
            }
            State::Plaintext => self.plaintext += 1,
            State::Unreadable(_) => self.unreadable += 1,
            State::Refused { .. } => self.refused += 1,
            State::KeyFailed { .. } => self.key_failed += 1,
        }
    }

    /// True when the audit found what an operator must act on: plaintext
    /// in a bucket whose policy is mandatory, or an object no GET would
    /// decrypt.
    pub fn findings(&self, mandatory: bool) -> bool {
        (mandatory && self.plaintext > 0)
            || self.unreadable > 0
            || self.refused > 0
            || self.key_failed > 0
    }

    /// The summary for people.
    pub fn report(&self, mandatory: bool) -> String {
        let mut out = format!(
            "{} objects ({} bytes): {} encrypted, {} plaintext{}, {} unreadable, {} refused by the policy, {} with a failed key, {} not looked at\n",
            self.objects,
            self.bytes,
            self.encrypted,
            self.plaintext,
            if mandatory && self.plaintext > 0 {
                " (the bucket's policy is mandatory)"
            } else {
                ""
            },
            self.unreadable,
            self.refused,
            self.key_failed,
            self.failed
        );
        for (key, n) in &self.by_key {
            out.push_str(&format!("  {n} under {key}\n"));
        }
        if self.keys_verified > 0 {
            out.push_str(&format!(
                "  {} distinct data keys unwrapped and checked\n",
                self.keys_verified
            ));
        }
        out
    }

    /// The summary as the last JSON line (`--json`).
    pub fn json(&self, mandatory: bool) -> String {
        serde_json::json!({"summary": {
            "objects": self.objects,
            "bytes": self.bytes,
            "encrypted": self.encrypted,
            "plaintext": self.plaintext,
            "unreadable": self.unreadable,
            "refused": self.refused,
            "key_failed": self.key_failed,
            "failed": self.failed,
            "by_key": self.by_key,
            "keys_verified": self.keys_verified,
            "mandatory": mandatory,
            "findings": self.findings(mandatory),
        }})
        .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sealgate_envelope::META_PREFIX;
    use std::collections::HashMap;

    fn envelope(bucket: &str) -> HashMap<String, String> {
        let meta = EnvelopeMeta {
            provider: "local".into(),
            key_id: "local:k".into(),
            wrapped_dek: vec![1; 40],
            context: [(BUCKET_CONTEXT_KEY.to_string(), bucket.to_string())].into(),
            salt: [2; sealgate_envelope::SALT_LEN],
            commitment: [3; sealgate_envelope::COMMITMENT_LEN],
            multipart: false,
        };
        meta.to_headers().unwrap().into_iter().collect()
    }

    fn state(h: &HashMap<String, String>, check: bool) -> State {
        let get = |n: &str| h.get(n).map(String::as_str);
        let policy = |m: &EnvelopeMeta| {
            if m.context.get(BUCKET_CONTEXT_KEY).map(String::as_str) == Some("vault") {
                Ok(())
            } else {
                Err(Unbound::Context)
            }
        };
        state_of(get, check.then_some(&policy as _)).0
    }

    #[test]
    fn each_state_is_told_apart() {
        let h = envelope("vault");
        assert_eq!(
            state(&h, true),
            State::Encrypted {
                provider: "local".into(),
                key_id: "local:k".into(),
                multipart: false,
                bound_bucket: Some("vault".into()),
            }
        );
        assert_eq!(state(&HashMap::new(), true), State::Plaintext);
        let moved = envelope("elsewhere");
        assert!(matches!(state(&moved, true), State::Refused { .. }));
        // A bucket without a key provider reports envelopes unchecked.
        assert!(matches!(state(&moved, false), State::Encrypted { .. }));
        let mut damaged = h.clone();
        damaged.insert(format!("{META_PREFIX}dek"), "not base64!".into());
        assert!(matches!(state(&damaged, true), State::Unreadable(_)));
    }

    #[test]
    fn plaintext_is_a_finding_only_where_the_policy_is_mandatory() {
        let mut s = Summary::default();
        s.add(10, &State::Plaintext);
        assert!(s.findings(true));
        assert!(!s.findings(false));
        s.add(5, &State::Unreadable("x".into()));
        assert!(s.findings(false));
        let line: serde_json::Value = serde_json::from_str(&s.json(true)).unwrap();
        assert_eq!(line["summary"]["plaintext"], 1);
        assert_eq!(line["summary"]["findings"], true);
    }
}
