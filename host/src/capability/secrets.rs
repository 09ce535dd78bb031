//! The `secrets` capability: `[secrets]` maps names to environment variables or files, read when
//! a configuration is activated (a missing one refuses the config, naming it). A plugin reads
//! only the names in its grant; values never appear in logs or the admin API.

use crate::config::Config;
use crate::diagnostic::Diagnostic;
use std::collections::HashMap;
use std::sync::Arc;

/// Reads one secret's value; `None` for a source validation refuses (neither or both of `env`
/// and `file`).
pub(crate) fn read(
    config: &Config,
    source: &crate::config::SecretSource,
) -> Option<Result<String, String>> {
    Some(match (&source.env, &source.file) {
        (Some(var), None) => std::env::var(var)
            .map_err(|_| format!("environment variable {var} is not set (or not UTF-8)")),
        (None, Some(path)) => {
            let path = config.resolve(path);
            std::fs::read_to_string(&path)
                .map(|v| v.strip_suffix('\n').unwrap_or(&v).to_string())
                .map_err(|e| format!("cannot read {}: {e}", path.display()))
        }
        _ => return None,
    })
}

/// Reads every secret of the config; returns all that could not be read.
pub(crate) fn resolve(config: &Config) -> Result<HashMap<String, Arc<str>>, Vec<Diagnostic>> {
    let mut values = HashMap::new();
    let mut errors = Vec::new();
    for (name, source) in &config.file.secrets {
        let value = match read(config, source.get_ref()) {
            Some(value) => value,
            // Refused by validation.
            None => continue,
        };
        match value {
            Ok(v) => {
                values.insert(name.clone(), Arc::from(v));
            }
            Err(msg) => errors.push(
                Diagnostic::new(msg)
                    .about(format!("secret \"{name}\""))
                    .at(config.location(source.span())),
            ),
        }
    }
    if errors.is_empty() {
        Ok(values)
    } else {
        Err(errors)
    }
}
