//! What a bridge runs: the `stdio` table resolved against the config file's directory and
//! checked up front, so that `weir check` reports a command that cannot start without starting
//! it, and `weir run` refuses the configuration instead of restarting a hopeless process.

use super::BridgeError;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use tokio::process::{Child, Command};
use weir_config::StdioSpec;

pub(super) struct Program {
    /// As written, for messages.
    command: String,
    path: PathBuf,
    args: Vec<String>,
    env: BTreeMap<String, String>,
    cwd: Option<PathBuf>,
}

impl Program {
    /// `command` is a path relative to `base` if it contains a `/` (like other paths in the
    /// config), else looked up on `PATH` (like a shell does); `cwd` is relative to `base`.
    pub fn resolve(spec: &StdioSpec, base: &Path) -> Result<Program, BridgeError> {
        let not_found = |reason: String| BridgeError::NotFound {
            command: spec.command.clone(),
            reason,
        };
        let path = if spec.command.contains('/') {
            let p = base.join(&spec.command);
            if !p.is_file() {
                return Err(not_found(format!("{} not found", p.display())));
            }
            if !is_executable(&p) {
                return Err(not_found(format!("{} is not executable", p.display())));
            }
            p
        } else {
            std::env::var_os("PATH")
                .iter()
                .flat_map(std::env::split_paths)
                .map(|dir| dir.join(&spec.command))
                .find(|p| p.is_file() && is_executable(p))
                .ok_or_else(|| not_found("not found on PATH".into()))?
        };
        let cwd = spec.cwd.as_ref().map(|d| base.join(d));
        if let Some(dir) = &cwd
            && !dir.is_dir()
        {
            return Err(BridgeError::Cwd {
                dir: dir.clone(),
                reason: "not a directory".into(),
            });
        }
        Ok(Program {
            command: spec.command.clone(),
            path,
            args: spec.args.clone(),
            env: spec.env.clone(),
            cwd,
        })
    }

    /// Starts the process with piped stdio. `kill_on_drop`: a child never outlives its
    /// supervisor (nor the gateway, when it exits normally).
    pub fn spawn(&self) -> Result<Child, BridgeError> {
        let mut cmd = Command::new(&self.path);
        cmd.args(&self.args)
            .envs(&self.env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        cmd.spawn().map_err(|source| BridgeError::Spawn {
            command: self.command.clone(),
            source,
        })
    }
}

#[cfg(unix)]
fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(_: &Path) -> bool {
    true
}
