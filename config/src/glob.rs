//! Bucket patterns (`prod-*`, `logs-????`, `*`): `*` matches any run of
//! characters, `?` exactly one. Bucket names are ASCII, so matching is on bytes.

/// A compiled bucket pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob(String);

impl Glob {
    /// Accepts any pattern made of bucket-name characters, `*` and `?`.
    pub fn new(pattern: &str) -> Result<Self, String> {
        if pattern.is_empty() {
            return Err("empty pattern".into());
        }
        if let Some(c) = pattern.chars().find(|c| {
            !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.' | '*' | '?'))
        }) {
            return Err(format!(
                "`{c}` cannot occur in a bucket name (lowercase letters, digits, `-` and `.`; `*` and `?` are wildcards)"
            ));
        }
        Ok(Self(pattern.to_string()))
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True when `name` matches the whole pattern.
    pub fn matches(&self, name: &str) -> bool {
        glob_match(self.0.as_bytes(), name.as_bytes())
    }
}

/// Iterative wildcard match with single backtrack point: O(len(p) * len(s)) worst case.
fn glob_match(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        let g = Glob::new("prod-*").unwrap();
        assert!(g.matches("prod-a"));
        assert!(g.matches("prod-"));
        assert!(!g.matches("dev-prod-a"));
        assert!(Glob::new("*").unwrap().matches("anything"));
        assert!(Glob::new("a?c").unwrap().matches("abc"));
        assert!(!Glob::new("a?c").unwrap().matches("ac"));
        assert!(Glob::new("*-logs-*").unwrap().matches("x-logs-2024"));
        assert!(!Glob::new("exact").unwrap().matches("exact2"));
    }

    #[test]
    fn rejects_characters_no_bucket_has() {
        assert!(Glob::new("Prod-*").is_err());
        assert!(Glob::new("a/b").is_err());
        assert!(Glob::new("").is_err());
    }
}
