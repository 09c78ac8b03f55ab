//! Key Vault key ids, parsed strictly: a configured id (`name` or
//! `name/version`) or a stored one (`https://<vault>/keys/<name>/<version>`)
//! becomes a name and version that go into request paths, so nothing but
//! the vault's own id characters gets through, and a stored id naming
//! another vault is refused rather than followed.

use std::fmt;

/// Longest key name Key Vault allows.
const MAX_KEY_NAME_LEN: usize = 127;
/// Longest key version accepted (the vault's are 32 hex characters).
const MAX_KEY_VERSION_LEN: usize = 64;
/// The port an `https://` URL means when it names none.
const HTTPS_PORT: u16 = 443;

/// The configured vault: its host (lower case) and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vault {
    host: String,
    port: u16,
}

/// Why an id or URL was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdError(&'static str);

impl fmt::Display for IdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl Vault {
    /// `https://host[:port][/]`, nothing else.
    pub fn parse(url: &str) -> Result<Self, IdError> {
        let rest = strip_scheme(url).ok_or(IdError("must start with https://"))?;
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        let (host, port) = authority_parts(authority)?;
        Ok(Self { host, port })
    }

    /// The vault's base URL, as the client is built with.
    pub fn url(&self) -> String {
        format!("https://{}/", self.authority())
    }

    fn authority(&self) -> String {
        if self.port == HTTPS_PORT {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// A key in the vault, with or without a version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRef {
    pub name: String,
    pub version: Option<String>,
}

impl KeyRef {
    /// Parses `name`, `name/version` or a key URL of `vault`.
    pub fn parse(vault: &Vault, id: &str) -> Result<Self, IdError> {
        let path = match strip_scheme(id) {
            Some(rest) => {
                let (authority, path) = rest.split_once('/').ok_or(IdError("no key path"))?;
                if authority_parts(authority)? != (vault.host.clone(), vault.port) {
                    return Err(IdError("names another vault"));
                }
                path.strip_prefix("keys/")
                    .ok_or(IdError("is not a key URL (/keys/<name>[/<version>])"))?
            }
            None => id,
        };
        let (name, version) = match path.split_once('/') {
            Some((n, v)) => (n, Some(v)),
            None => (path, None),
        };
        if name.is_empty()
            || name.len() > MAX_KEY_NAME_LEN
            || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(IdError("key names are 1 to 127 letters, digits and dashes"));
        }
        let version = match version {
            None | Some("") => None,
            Some(v)
                if v.len() <= MAX_KEY_VERSION_LEN
                    && v.bytes().all(|b| b.is_ascii_alphanumeric()) =>
            {
                Some(v.to_string())
            }
            Some(_) => return Err(IdError("key versions are letters and digits")),
        };
        Ok(Self {
            name: name.to_string(),
            version,
        })
    }

    /// The key's URL without a version: what binds objects to a
    /// configured key whatever version wrapped them.
    pub fn family(&self, vault: &Vault) -> String {
        // Key Vault names are case-insensitive: one key, one family.
        format!(
            "https://{}/keys/{}",
            vault.authority(),
            self.name.to_ascii_lowercase()
        )
    }

    /// The versioned key URL objects record (the family alone when no
    /// version is known).
    pub fn kid(&self, vault: &Vault) -> String {
        match &self.version {
            Some(v) => format!("{}/{v}", self.family(vault)),
            None => self.family(vault),
        }
    }
}

fn strip_scheme(url: &str) -> Option<&str> {
    let head = url.get(..8)?;
    head.eq_ignore_ascii_case("https://").then(|| &url[8..])
}

/// `host[:port]` as lower-case host and port; no user info, no IPv6
/// literal, no empty parts.
fn authority_parts(authority: &str) -> Result<(String, u16), IdError> {
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (
            h,
            p.parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or(IdError("has a bad port"))?,
        ),
        None => (authority, HTTPS_PORT),
    };
    if host.is_empty()
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    {
        return Err(IdError("has a bad host"));
    }
    Ok((host.to_ascii_lowercase(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vault() -> Vault {
        Vault::parse("https://MyVault.vault.azure.net/").unwrap()
    }

    #[test]
    fn vault_urls() {
        assert_eq!(vault().url(), "https://myvault.vault.azure.net/");
        let local = Vault::parse("https://127.0.0.1:8443").unwrap();
        assert_eq!(local.url(), "https://127.0.0.1:8443/");
        for bad in [
            "http://v.vault.azure.net",
            "https://",
            "https://v.vault.azure.net/path",
            "https://user@v.vault.azure.net",
            "https://v.vault.azure.net:0",
            "https://v.vault.azure.net:99999",
            "https://v.vault.azure.net?x=1",
        ] {
            assert!(Vault::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn configured_and_stored_ids() {
        let v = vault();
        let plain = KeyRef::parse(&v, "sealgate").unwrap();
        assert_eq!(plain.version, None);
        assert_eq!(
            plain.family(&v),
            "https://myvault.vault.azure.net/keys/sealgate"
        );
        let pinned = KeyRef::parse(&v, "sealgate/0123abcd").unwrap();
        assert_eq!(pinned.version.as_deref(), Some("0123abcd"));
        let stored = KeyRef::parse(
            &v,
            "https://myvault.VAULT.azure.net:443/keys/sealgate/0123abcd",
        )
        .unwrap();
        assert_eq!(stored, pinned);
        assert_eq!(
            stored.kid(&v),
            "https://myvault.vault.azure.net/keys/sealgate/0123abcd"
        );
        assert_eq!(stored.family(&v), plain.family(&v));
    }

    #[test]
    fn hostile_ids_are_refused() {
        let v = vault();
        for bad in [
            "",
            "../secrets/x",
            "sealgate/../../x",
            "sealgate/v1/unwrapkey",
            "seal gate",
            "sealgate?api-version=1",
            "sealgate%2F..",
            "https://evil.example/keys/sealgate/v1",
            "https://myvault.vault.azure.net:444/keys/sealgate/v1",
            "https://myvault.vault.azure.net/secrets/sealgate/v1",
            "https://myvault.vault.azure.net",
            &"k".repeat(MAX_KEY_NAME_LEN + 1),
            &format!("sealgate/{}", "a".repeat(MAX_KEY_VERSION_LEN + 1)),
        ] {
            assert!(KeyRef::parse(&v, bad).is_err(), "{bad:?}");
        }
    }
}
