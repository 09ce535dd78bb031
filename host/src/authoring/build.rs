//! `weir plugin build DIR`: one command per language, from the plugin directory to
//! `DIR/<name>.wasm`. Intermediate files go to `DIR/.weir-build/`.
//!
//! | language | toolchain |
//! |---|---|
//! | rust | `cargo build --release --target wasm32-wasip2` (crate depends on `weir-sdk`) |
//! | python | `componentize-py` (PyPI) with `app.py` and the embedded `weir.py` |
//! | js | `componentize-js` (npm) with `app.js` and the embedded `weir.js` |
//! | c | `clang --target=wasm32-wasi` with the embedded C SDK, then `jco new` (npm) |

use super::manifest::{Language, Manifest, ManifestError};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Versions the SDKs are tested with; what the install hints name.
pub(crate) const COMPONENTIZE_PY: &str = "componentize-py==0.25.1";
pub(crate) const COMPONENTIZE_JS: &str = "@bytecodealliance/componentize-js@0.23.0";
pub(crate) const JCO: &str = "@bytecodealliance/jco@1.34.0";

const PY_SDK: &str = include_str!("../../../sdk/python/weir.py");
const JS_SDK: &str = include_str!("../../../sdk/js/weir.js");
const C_SDK: [(&str, &[u8]); 5] = [
    ("weir.h", include_bytes!("../../../sdk/c/weir.h")),
    ("weir.c", include_bytes!("../../../sdk/c/weir.c")),
    (
        "gen/plugin.h",
        include_bytes!("../../../sdk/c/gen/plugin.h"),
    ),
    (
        "gen/plugin.c",
        include_bytes!("../../../sdk/c/gen/plugin.c"),
    ),
    (
        "gen/plugin_component_type.o",
        include_bytes!("../../../sdk/c/gen/plugin_component_type.o"),
    ),
];

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("{tool} not found; install it with: {install}")]
    MissingTool { tool: String, install: String },
    #[error("{0}")]
    Layout(String),
    #[error("`{command}` failed ({status}); its output is above")]
    Failed { command: String, status: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Builds the plugin in `dir`; returns the component's path.
pub fn build(dir: &Path) -> Result<PathBuf, BuildError> {
    let manifest = Manifest::load(dir)?;
    let dir = dir.canonicalize()?;
    let out = dir.join(format!("{}.wasm", manifest.name));
    let work = dir.join(".weir-build");
    if work.exists() {
        std::fs::remove_dir_all(&work)?;
    }
    std::fs::create_dir_all(work.join("wit"))?;
    std::fs::write(work.join("wit/plugin.wit"), manifest.trimmed_wit())?;
    match manifest.language {
        Language::Rust => rust(&dir, &manifest, &out)?,
        Language::Python => python(&dir, &work, &out)?,
        Language::Js => js(&dir, &work, &out)?,
        Language::C => c(&dir, &work, &out)?,
    }
    Ok(out)
}

fn require(dir: &Path, file: &str, language: Language) -> Result<(), BuildError> {
    if dir.join(file).exists() {
        Ok(())
    } else {
        Err(BuildError::Layout(format!(
            "a {} plugin needs {} in {}",
            language.name(),
            file,
            dir.display()
        )))
    }
}

fn run(cmd: &mut Command) -> Result<(), BuildError> {
    let command = format!("{cmd:?}").replace('"', "");
    eprintln!("+ {command}");
    let status = cmd.status()?;
    if status.success() {
        Ok(())
    } else {
        Err(BuildError::Failed {
            command,
            status: status.to_string(),
        })
    }
}

/// A tool on the PATH, in `DIR/node_modules/.bin`, or in `$WEIR_TOOLS/node_modules/.bin`.
fn tool(dir: &Path, name: &str, install: &str) -> Result<PathBuf, BuildError> {
    let mut places: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    places.push(dir.join("node_modules/.bin"));
    if let Some(tools) = std::env::var_os("WEIR_TOOLS") {
        places.push(PathBuf::from(tools).join("node_modules/.bin"));
    }
    places
        .into_iter()
        .map(|p| p.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| BuildError::MissingTool {
            tool: name.to_string(),
            install: install.to_string(),
        })
}

fn rust(dir: &Path, manifest: &Manifest, out: &Path) -> Result<(), BuildError> {
    require(dir, "Cargo.toml", Language::Rust)?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let target = dir.join("target");
    run(Command::new(cargo)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--manifest-path",
        ])
        .arg(dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target))
    .map_err(|e| match e {
        BuildError::Io(_) => BuildError::MissingTool {
            tool: "cargo".into(),
            install: "rustup (https://rustup.rs), then `rustup target add wasm32-wasip2`".into(),
        },
        other => other,
    })?;
    let built = target
        .join("wasm32-wasip2/release")
        .join(format!("{}.wasm", manifest.name.replace('-', "_")));
    if !built.exists() {
        return Err(BuildError::Layout(format!(
            "cargo did not produce {}: the crate's name must be {:?} and its crate-type \"cdylib\"",
            built.display(),
            manifest.name
        )));
    }
    std::fs::copy(&built, out)?;
    Ok(())
}

fn python(dir: &Path, work: &Path, out: &Path) -> Result<(), BuildError> {
    require(dir, "app.py", Language::Python)?;
    let cpy = tool(
        dir,
        "componentize-py",
        &format!("pip install {COMPONENTIZE_PY}"),
    )?;
    std::fs::write(work.join("weir.py"), PY_SDK)?;
    run(Command::new(cpy)
        .arg("-d")
        .arg(work.join("wit"))
        .args(["-w", "plugin", "componentize", "app", "-p"])
        .arg(dir)
        .arg("-p")
        .arg(work)
        .arg("-o")
        .arg(out))
}

fn js(dir: &Path, work: &Path, out: &Path) -> Result<(), BuildError> {
    require(dir, "app.js", Language::Js)?;
    let cjs = tool(
        dir,
        "componentize-js",
        &format!("npm install {COMPONENTIZE_JS} (in the plugin directory, or globally)"),
    )?;
    // componentize-js resolves relative imports next to the entry file: put the plugin's modules
    // and the SDK side by side.
    let src = work.join("src");
    std::fs::create_dir_all(&src)?;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "js" || e == "mjs")
            && let Some(file) = path.file_name()
        {
            std::fs::copy(&path, src.join(file))?;
        }
    }
    std::fs::write(src.join("weir.js"), JS_SDK)?;
    run(Command::new(cjs)
        .arg(src.join("app.js"))
        .arg("--wit")
        .arg(work.join("wit"))
        // No fetch or HTTP handler: plugins reach the network only through `outbound`.
        .args(["-n", "plugin", "-d", "http", "-d", "fetch-event", "-o"])
        .arg(out))
}

fn c(dir: &Path, work: &Path, out: &Path) -> Result<(), BuildError> {
    require(dir, "app.c", Language::C)?;
    let sdk = work.join("sdk");
    std::fs::create_dir_all(sdk.join("gen"))?;
    for (file, bytes) in C_SDK {
        std::fs::write(sdk.join(file), bytes)?;
    }
    let sources: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "c"))
        .collect();
    let clang = tool(
        dir,
        "clang",
        "apt-get install clang lld wasi-libc libclang-rt-14-dev-wasm32",
    )?;
    let core = work.join("core.wasm");
    run(Command::new(clang)
        // wasi-libc's debug info would be most of the component: strip it.
        .args([
            "--target=wasm32-wasi",
            "-O2",
            "-mexec-model=reactor",
            "-Wl,--strip-debug",
            "-I",
        ])
        .arg(&sdk)
        .arg("-I")
        .arg(sdk.join("gen"))
        .args(&sources)
        .arg(sdk.join("weir.c"))
        .arg(sdk.join("gen/plugin.c"))
        .arg(sdk.join("gen/plugin_component_type.o"))
        .arg("-o")
        .arg(&core))?;
    let jco = tool(
        dir,
        "jco",
        &format!("npm install {JCO} (in the plugin directory, or globally)"),
    )?;
    run(Command::new(jco)
        .arg("new")
        .arg(&core)
        .arg("--wasi-reactor")
        .arg("-o")
        .arg(out))
}
