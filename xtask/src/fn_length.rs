//! `cargo xtask fn-length`: the longest functions of the host crates, and a failure if any is
//! longer than [`LIMIT`] lines. Functions are found by parsing each file with `syn` (free
//! functions, methods and trait default bodies, nested ones included), so a brace inside a
//! string or a comment cannot fool it. Lines are counted from the `fn` line (doc comments and
//! attributes excluded) to the closing brace.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use syn::visit::Visit;

/// The longest a host function may be.
pub(crate) const LIMIT: usize = 100;

struct Function {
    lines: usize,
    file: PathBuf,
    line: usize,
    name: String,
}

struct Finder<'a> {
    file: &'a Path,
    found: Vec<Function>,
}

impl Finder<'_> {
    fn add(&mut self, name: &syn::Ident, sig: &syn::Signature, block: &syn::Block) {
        let start = sig.fn_token.span.start().line;
        let end = block.brace_token.span.close().end().line;
        self.found.push(Function {
            lines: end + 1 - start,
            file: self.file.to_path_buf(),
            line: start,
            name: name.to_string(),
        });
    }
}

impl<'ast> Visit<'ast> for Finder<'_> {
    fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
        self.add(&f.sig.ident, &f.sig, &f.block);
        syn::visit::visit_item_fn(self, f);
    }

    fn visit_impl_item_fn(&mut self, f: &'ast syn::ImplItemFn) {
        self.add(&f.sig.ident, &f.sig, &f.block);
        syn::visit::visit_impl_item_fn(self, f);
    }

    fn visit_trait_item_fn(&mut self, f: &'ast syn::TraitItemFn) {
        if let Some(block) = &f.default {
            self.add(&f.sig.ident, &f.sig, block);
        }
        syn::visit::visit_trait_item_fn(self, f);
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            rust_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    Ok(())
}

/// Prints the `top` longest functions; fails if any is over the limit.
pub(crate) fn check(top: usize) -> Result<()> {
    let mut files = Vec::new();
    for root in crate::HOST_CRATES {
        if Path::new(root).exists() {
            rust_files(Path::new(root), &mut files)?;
        }
    }
    let mut all = Vec::new();
    for file in &files {
        let source = std::fs::read_to_string(file)?;
        let syntax =
            syn::parse_file(&source).with_context(|| format!("parsing {}", file.display()))?;
        let mut finder = Finder {
            file,
            found: Vec::new(),
        };
        finder.visit_file(&syntax);
        all.extend(finder.found);
    }
    all.sort_by_key(|f| std::cmp::Reverse(f.lines));
    println!(
        "longest functions in the host crates ({} files, {} functions):",
        files.len(),
        all.len()
    );
    for f in all.iter().take(top) {
        println!(
            "{:>5} lines  {}:{}  {}",
            f.lines,
            f.file.display(),
            f.line,
            f.name
        );
    }
    let over: Vec<&Function> = all.iter().filter(|f| f.lines > LIMIT).collect();
    if !over.is_empty() {
        bail!(
            "{} function(s) longer than {LIMIT} lines: {}",
            over.len(),
            over.iter()
                .map(|f| format!("{}:{} {}", f.file.display(), f.line, f.name))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    println!("none is longer than {LIMIT} lines");
    Ok(())
}
