//! Errors a user must act on: each names the file, line and column, and the route or plugin it
//! concerns. Config parsing, validation and plugin loading all report through these.

use std::fmt;
use std::path::{Path, PathBuf};

/// A place in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
}

impl Location {
    /// The 1-based line and column of byte `offset` in `source`.
    pub fn at(file: &Path, source: &str, offset: usize) -> Location {
        let offset = offset.min(source.len());
        let before = &source[..floor_char_boundary(source, offset)];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        Location {
            file: file.to_path_buf(),
            line,
            column,
        }
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// One error found in a configuration or one of its plugins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub location: Option<Location>,
    /// What the error concerns, e.g. `route "api"` or `plugin "api-key"`.
    pub subject: Option<String>,
    pub message: String,
}

impl Diagnostic {
    pub fn new(message: impl Into<String>) -> Self {
        Diagnostic {
            location: None,
            subject: None,
            message: message.into(),
        }
    }

    pub fn at(mut self, location: Location) -> Self {
        self.location = Some(location);
        self
    }

    pub fn about(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(location) = &self.location {
            write!(f, "{location}: ")?;
        }
        if let Some(subject) = &self.subject {
            write!(f, "{subject}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// Every error found in one attempt to load a configuration.
#[derive(Debug, Clone, thiserror::Error)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "error: {d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based() {
        let src = "a = 1\nbb = 2\n";
        let loc = Location::at(Path::new("w.toml"), src, 7);
        assert_eq!((loc.line, loc.column), (2, 2));
        assert_eq!(loc.to_string(), "w.toml:2:2");
        let loc = Location::at(Path::new("w.toml"), src, 0);
        assert_eq!((loc.line, loc.column), (1, 1));
    }

    #[test]
    fn display_names_location_and_subject() {
        let d = Diagnostic::new("unknown upstream \"x\"")
            .about("route \"api\"")
            .at(Location::at(Path::new("w.toml"), "x", 0));
        assert_eq!(
            d.to_string(),
            "w.toml:1:1: route \"api\": unknown upstream \"x\""
        );
    }
}
