//! `weir plugin new --lang L NAME`: a plugin directory that builds with `weir plugin build` and
//! passes `weir plugin test` as it is: the template blocks requests carrying `x-block` and marks
//! the others with `x-plugin: NAME`, and `smoke.toml` checks exactly that.

use super::manifest::{Language, valid_name};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    #[error(
        "invalid plugin name {0:?}: use lowercase letters, digits and '-', starting with a letter"
    )]
    Name(String),
    #[error("{} already exists and is not empty", .0.display())]
    Exists(PathBuf),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

const SMOKE: &str = include_str!("templates/smoke.toml");
const README: &str = include_str!("templates/README.md");
const RUST_CARGO: &str = include_str!("templates/rust/Cargo.toml.in");
const RUST_LIB: &str = include_str!("templates/rust/lib.rs.in");
const PYTHON_APP: &str = include_str!("templates/python/app.py");
const JS_APP: &str = include_str!("templates/js/app.js");
const C_APP: &str = include_str!("../../../sdk/c/template/app.c");

/// The Rust SDK crate, as this binary was built from it.
fn rust_sdk() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk/rust")
}

/// Creates the plugin `name` in `dir`; returns the files written.
pub fn new(language: Language, name: &str, dir: &Path) -> Result<Vec<PathBuf>, ScaffoldError> {
    if !valid_name(name) {
        return Err(ScaffoldError::Name(name.to_string()));
    }
    if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
        return Err(ScaffoldError::Exists(dir.to_path_buf()));
    }
    let fill = |template: &str| {
        template
            .replace("{{name}}", name)
            .replace("{{language}}", language.name())
            .replace(
                "{{sdk_rust}}",
                &rust_sdk()
                    .canonicalize()
                    .unwrap_or_else(|_| rust_sdk())
                    .display()
                    .to_string(),
            )
    };
    let manifest = format!(
        "# What `weir plugin build` needs to know. `capabilities`: the capability interfaces the\n\
         # code uses (kv, outbound, metrics, secrets); operators must grant each one.\n\
         name = \"{name}\"\nlanguage = \"{}\"\ncapabilities = []\n",
        language.name()
    );
    let mut files = vec![
        ("weir-plugin.toml", manifest),
        ("smoke.toml", fill(SMOKE)),
        ("README.md", fill(README)),
        (
            ".gitignore",
            "/.weir-build/\n/target/\n/node_modules/\n*.wasm\n".to_string(),
        ),
    ];
    match language {
        Language::Rust => {
            files.push(("Cargo.toml", fill(RUST_CARGO)));
            files.push(("src/lib.rs", fill(RUST_LIB)));
        }
        Language::Python => files.push(("app.py", fill(PYTHON_APP))),
        Language::Js => files.push(("app.js", fill(JS_APP))),
        Language::C => files.push(("app.c", fill(C_APP))),
    }
    let mut written = Vec::new();
    for (file, text) in files {
        let path = dir.join(file);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, text)?;
        written.push(path);
    }
    Ok(written)
}
