//! `weir-plugin.toml`: what `weir plugin build` needs to know about a plugin directory.
//!
//! ```toml
//! name = "allowlist"          # the component is written to <dir>/<name>.wasm
//! language = "python"         # rust | python | js | c
//! capabilities = ["kv"]       # capability interfaces the code uses (kv, outbound, metrics, secrets)
//! ```
//!
//! Python and JavaScript components import every interface of the world they are built
//! against, used or not; the build therefore trims the world to the declared capabilities, so
//! a plugin imports (and needs a grant for) only what it declares.

use crate::diagnostic::Location;
use serde::Deserialize;
use std::path::{Path, PathBuf};

pub(crate) const FILE: &str = "weir-plugin.toml";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    Rust,
    Python,
    Js,
    C,
}

impl Language {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Language::Rust => "rust",
            Language::Python => "python",
            Language::Js => "js",
            Language::C => "c",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Capability {
    Kv,
    Outbound,
    Metrics,
    Secrets,
}

impl Capability {
    pub(crate) const ALL: [Capability; 4] = [
        Capability::Kv,
        Capability::Outbound,
        Capability::Metrics,
        Capability::Secrets,
    ];

    /// The interface's name in `weir:plugin`.
    pub(crate) fn interface(self) -> &'static str {
        match self {
            Capability::Kv => "kv",
            Capability::Outbound => "outbound",
            Capability::Metrics => "metrics",
            Capability::Secrets => "secrets",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Manifest {
    pub(crate) name: String,
    pub(crate) language: Language,
    #[serde(default)]
    pub(crate) capabilities: Vec<Capability>,
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read {}: {source} (is this a plugin directory? `weir plugin new` makes one)", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{location}: {message}")]
    Invalid { location: Location, message: String },
}

/// A plugin name: lowercase letters, digits and `-`, starting with a letter.
pub(crate) fn valid_name(name: &str) -> bool {
    name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && name.len() <= 64
}

impl Manifest {
    pub(crate) fn load(dir: &Path) -> Result<Manifest, ManifestError> {
        let path = dir.join(FILE);
        let source = std::fs::read_to_string(&path).map_err(|source| ManifestError::Read {
            path: path.clone(),
            source,
        })?;
        let at = |offset: usize| Location::at(&path, &source, offset);
        let manifest: Manifest = toml::from_str(&source).map_err(|e| ManifestError::Invalid {
            location: at(e.span().map_or(0, |s| s.start)),
            message: e.message().trim_end().to_string(),
        })?;
        if !valid_name(&manifest.name) {
            return Err(ManifestError::Invalid {
                location: at(source.find("name").unwrap_or(0)),
                message: format!(
                    "invalid name {:?}: use lowercase letters, digits and '-', starting with a letter",
                    manifest.name
                ),
            });
        }
        Ok(manifest)
    }

    /// The `weir:plugin` WIT with the world's imports trimmed to the declared capabilities.
    pub(crate) fn trimmed_wit(&self) -> String {
        let mut wit = String::new();
        for line in WIT.lines() {
            let dropped = Capability::ALL.iter().any(|c| {
                !self.capabilities.contains(c)
                    && line.trim() == format!("import {};", c.interface())
            });
            if !dropped {
                wit.push_str(line);
                wit.push('\n');
            }
        }
        wit
    }
}

/// The contract, as this binary was built with it.
pub(crate) const WIT: &str = include_str!("../../../wit/plugin.wit");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_undeclared_capabilities_from_the_world() {
        let m = Manifest {
            name: "p".into(),
            language: Language::Python,
            capabilities: vec![Capability::Kv],
        };
        let wit = m.trimmed_wit();
        assert!(wit.contains("\n    import kv;\n"));
        for gone in ["outbound", "metrics", "secrets"] {
            assert!(!wit.contains(&format!("import {gone};")), "{gone}");
            // The interface itself stays defined; only the world stops importing it.
            assert!(wit.contains(&format!("interface {gone} {{")), "{gone}");
        }
        assert!(wit.contains("import request;"));
    }

    #[test]
    fn manifest_errors_have_a_location() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join(FILE),
            "name = \"x\"\nlanguage = \"cobol\"\n",
        )
        .expect("write");
        let err = Manifest::load(dir.path())
            .expect_err("bad language")
            .to_string();
        assert!(
            err.contains("weir-plugin.toml:2:12: unknown variant `cobol`"),
            "{err}"
        );
    }
}
