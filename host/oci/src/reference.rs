//! `oci://registry[:port]/repository[:tag][@sha256:digest]`: how a config or the command line
//! names a plugin in a registry.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciRef {
    /// `host` or `host:port`.
    pub registry: String,
    pub repository: String,
    pub tag: Option<String>,
    /// `sha256:<hex>`: pins the manifest; a tag beside it is informative only.
    pub digest: Option<String>,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid OCI reference {reference:?}: {reason} (expected oci://host[:port]/repo[:tag][@sha256:<digest>])"
)]
pub struct RefError {
    pub reference: String,
    pub reason: &'static str,
}

impl OciRef {
    /// Whether `s` names a plugin in a registry rather than a file.
    pub fn is_oci(s: &str) -> bool {
        s.starts_with("oci://")
    }

    pub fn parse(s: &str) -> Result<OciRef, RefError> {
        let err = |reason| RefError {
            reference: s.to_string(),
            reason,
        };
        let rest = s
            .strip_prefix("oci://")
            .ok_or_else(|| err("missing oci://"))?;
        let (rest, digest) = match rest.split_once('@') {
            Some((r, d)) => {
                let hex = d
                    .strip_prefix("sha256:")
                    .ok_or_else(|| err("digest must be sha256:<hex>"))?;
                if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(err("digest must be sha256 followed by 64 hex digits"));
                }
                (r, Some(d.to_ascii_lowercase()))
            }
            None => (rest, None),
        };
        let (registry, path) = rest.split_once('/').ok_or_else(|| err("no repository"))?;
        if registry.is_empty() {
            return Err(err("no registry host"));
        }
        // A tag follows the last ':' of the path (the registry's port is before the first '/').
        let (repository, tag) = match path.rsplit_once(':') {
            Some((repo, tag)) => (repo, Some(tag.to_string())),
            None => (path, None),
        };
        let repo_ok = !repository.is_empty()
            && repository.split('/').all(|seg| {
                !seg.is_empty()
                    && seg.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b)
                    })
            });
        if !repo_ok {
            return Err(err("repository must be lowercase path segments"));
        }
        if let Some(t) = &tag
            && (t.is_empty()
                || t.len() > 128
                || !t
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)))
        {
            return Err(err("invalid tag"));
        }
        if tag.is_none() && digest.is_none() {
            return Err(err("give a :tag or an @sha256: digest"));
        }
        Ok(OciRef {
            registry: registry.to_string(),
            repository: repository.to_string(),
            tag,
            digest,
        })
    }

    /// Plain HTTP is allowed only towards loopback registries (or ones the operator lists).
    pub fn is_loopback(&self) -> bool {
        let host = self
            .registry
            .rsplit_once(':')
            .map_or(self.registry.as_str(), |(h, _)| h);
        matches!(host, "localhost" | "127.0.0.1" | "[::1]") || host.starts_with("127.")
    }

    pub fn to_client(&self) -> oci_client::Reference {
        match (&self.digest, &self.tag) {
            (Some(d), _) => oci_client::Reference::with_digest(
                self.registry.clone(),
                self.repository.clone(),
                d.clone(),
            ),
            (None, Some(t)) => oci_client::Reference::with_tag(
                self.registry.clone(),
                self.repository.clone(),
                t.clone(),
            ),
            (None, None) => oci_client::Reference::with_tag(
                self.registry.clone(),
                self.repository.clone(),
                "latest".into(),
            ),
        }
    }
}

impl fmt::Display for OciRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "oci://{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tags_digests_and_ports() {
        let r = OciRef::parse("oci://127.0.0.1:5000/weir/api-key:1.0").expect("tag");
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "weir/api-key");
        assert_eq!(r.tag.as_deref(), Some("1.0"));
        assert!(r.is_loopback());
        let d = format!("sha256:{}", "a".repeat(64));
        let r = OciRef::parse(&format!("oci://reg.example.com/p@{d}")).expect("digest");
        assert_eq!(r.digest.as_deref(), Some(d.as_str()));
        assert!(!r.is_loopback());
        assert_eq!(r.to_string(), format!("oci://reg.example.com/p@{d}"));
    }

    #[test]
    fn refuses_what_is_not_a_reference() {
        for bad in [
            "file.wasm",
            "oci://",
            "oci://host",
            "oci://host/Repo:1",
            "oci://host/repo",
            "oci://host/repo@sha256:xyz",
            "oci://host/repo:",
        ] {
            assert!(OciRef::parse(bad).is_err(), "{bad}");
        }
    }
}
