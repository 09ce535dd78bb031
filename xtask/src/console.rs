//! `cargo xtask console [--check]`: builds the web console (`host/console/src`) into
//! `host/console/dist`, which the gateway embeds (`host/src/console.rs`).
//!
//! The build is reproducible: `npm ci` installs exactly the esbuild of `package-lock.json`, and
//! esbuild's output depends only on its version and the sources. `--check` (run by
//! `cargo xtask test`) builds into a temporary directory and fails if that differs from the
//! committed `dist`, so the embedded bundle is always what the sources make, never hand-edited.
//! Either way it prints what the console adds to the binary.

use anyhow::{Context, Result, bail};
use std::path::Path;
use std::process::Command;

const DIR: &str = "host/console";
/// Copied as they are; `app.js` is bundled and minified from `src/app.js` and its imports.
const COPIED: &[&str] = &["index.html", "app.css"];
const FILES: &[&str] = &["index.html", "app.css", "app.js"];

fn build(out: &Path) -> Result<()> {
    let dir = Path::new(DIR);
    if !dir.join("node_modules/.bin/esbuild").exists() {
        crate::sh(
            Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund", "--prefix"])
                .arg(dir),
        )?;
    }
    std::fs::create_dir_all(out)?;
    crate::sh(
        Command::new(dir.join("node_modules/.bin/esbuild"))
            .arg(dir.join("src/app.js"))
            .args([
                "--bundle",
                "--minify",
                "--format=esm",
                "--target=es2020",
                "--legal-comments=none",
                "--log-level=warning",
            ])
            .arg(format!("--outfile={}", out.join("app.js").display())),
    )?;
    for f in COPIED {
        std::fs::copy(dir.join("src").join(f), out.join(f))
            .with_context(|| format!("copying {f}"))?;
    }
    Ok(())
}

pub(crate) fn console(args: &[String]) -> Result<()> {
    let dist = Path::new(DIR).join("dist");
    let check = args.iter().any(|a| a == "--check");
    if check {
        let tmp = std::env::temp_dir().join(format!("weir-console-{}", std::process::id()));
        build(&tmp)?;
        let stale: Vec<&str> = FILES
            .iter()
            .filter(|f| std::fs::read(tmp.join(f)).ok() != std::fs::read(dist.join(f)).ok())
            .copied()
            .collect();
        let _ = std::fs::remove_dir_all(&tmp);
        if !stale.is_empty() {
            bail!(
                "{} differ from what host/console/src builds: run `cargo xtask console` and commit",
                stale
                    .iter()
                    .map(|f| format!("{DIR}/dist/{f}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    } else {
        build(&dist)?;
    }
    let sizes: Vec<(String, u64)> = FILES
        .iter()
        .map(|f| Ok((f.to_string(), std::fs::metadata(dist.join(f))?.len())))
        .collect::<Result<_>>()?;
    let total: u64 = sizes.iter().map(|(_, n)| n).sum();
    let list: Vec<String> = sizes.iter().map(|(f, n)| format!("{f} {n} B")).collect();
    println!(
        "console: {} — the gateway binary embeds {total} bytes ({:.1} KiB) for it",
        list.join(", "),
        total as f64 / 1024.0
    );
    Ok(())
}
