//! A secret value (key material, passwords, secret access keys).
//!
//! Secrets are zeroized when dropped, print as `Secret(<redacted>)` in every
//! `Debug`/`Display` so they cannot reach a log line by accident, and compare
//! in constant time. The only way to the bytes is [`Secret::expose`], which
//! makes every use easy to audit with a grep.

use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

/// Secret bytes, zeroized on drop.
#[derive(Clone)]
pub struct Secret(Zeroizing<Vec<u8>>);

impl Secret {
    /// Wraps bytes; the caller's copy should be dropped right after.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// Wraps a string's bytes and zeroizes the string.
    pub fn from_string(mut s: String) -> Self {
        let secret = Self::new(s.as_bytes().to_vec());
        s.zeroize();
        secret
    }

    /// The secret's bytes. Every caller is a place where the secret is used.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// The secret as UTF-8, for secrets that are text (secret access keys).
    pub fn expose_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }

    /// Length in bytes (not secret: lengths are public in every format we use).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True for an empty secret.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl PartialEq for Secret {
    /// Constant-time in the contents (the length is not secret).
    fn eq(&self, other: &Self) -> bool {
        self.0.as_slice().ct_eq(other.0.as_slice()).into()
    }
}

impl Eq for Secret {}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let s = Secret::from_string("hunter2-very-secret".to_string());
        assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
        assert_eq!(format!("{s}"), "<redacted>");
        assert!(!format!("{s:?}{s}").contains("hunter2"));
    }

    #[test]
    fn equality_compares_contents() {
        let a = Secret::new(b"abc".to_vec());
        assert_eq!(a, Secret::new(b"abc".to_vec()));
        assert_ne!(a, Secret::new(b"abd".to_vec()));
        assert_ne!(a, Secret::new(b"abcd".to_vec()));
    }

    #[test]
    fn expose_returns_the_bytes() {
        let s = Secret::new(vec![1, 2, 3]);
        assert_eq!(s.expose(), &[1, 2, 3]);
        assert_eq!(s.len(), 3);
        assert_eq!(Secret::new(b"k".to_vec()).expose_str(), Some("k"));
    }
}
