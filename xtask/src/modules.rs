//! `cargo xtask modules`: the dependency graph between the top-level modules of each host crate
//! (an edge for every `crate::<module>` path or `use` in another module's files), and a failure
//! if it has a cycle. A module's files are `src/<module>.rs` and everything under
//! `src/<module>/`; paths are read from the parsed syntax tree (`syn`), not from text.

use anyhow::{Context, Result, bail};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use syn::visit::Visit;

type Graph = BTreeMap<String, BTreeSet<String>>;

/// Collects the top-level module named by each `crate::…` path, and by each `super::…` path
/// where `super` is the crate root (in `src/<module>.rs` or `src/<module>/mod.rs`, outside
/// inline modules).
struct Refs<'a> {
    modules: &'a BTreeSet<String>,
    found: BTreeSet<String>,
    /// Whether `super` names the crate root here.
    super_is_root: bool,
}

impl Refs<'_> {
    fn note(&mut self, name: &str) {
        if self.modules.contains(name) {
            self.found.insert(name.to_string());
        }
    }

    /// `use crate::{a, b::c}`: the names directly under `crate` (or a root `super`).
    fn under_crate(&mut self, tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(p) => self.note(&p.ident.to_string()),
            syn::UseTree::Name(n) => self.note(&n.ident.to_string()),
            syn::UseTree::Rename(r) => self.note(&r.ident.to_string()),
            syn::UseTree::Group(g) => g.items.iter().for_each(|t| self.under_crate(t)),
            syn::UseTree::Glob(_) => {}
        }
    }
}

impl Refs<'_> {
    fn is_root(&self, ident: &syn::Ident) -> bool {
        ident == "crate" || (self.super_is_root && ident == "super")
    }
}

impl<'ast> Visit<'ast> for Refs<'_> {
    fn visit_path(&mut self, p: &'ast syn::Path) {
        let mut segments = p.segments.iter();
        if segments.next().is_some_and(|s| self.is_root(&s.ident))
            && let Some(second) = segments.next()
        {
            self.note(&second.ident.to_string());
        }
        syn::visit::visit_path(self, p);
    }

    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        if let syn::UseTree::Path(p) = &u.tree
            && self.is_root(&p.ident)
        {
            self.under_crate(&p.tree);
        }
    }

    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        let outer = std::mem::replace(&mut self.super_is_root, false);
        syn::visit::visit_item_mod(self, m);
        self.super_is_root = outer;
    }
}

fn rust_files(path: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    if path.is_file() {
        out.push(path.to_path_buf());
        return Ok(());
    }
    for entry in std::fs::read_dir(path).with_context(|| format!("reading {}", path.display()))? {
        let p = entry?.path();
        if p.is_dir() || p.extension().is_some_and(|e| e == "rs") {
            rust_files(&p, out)?;
        }
    }
    Ok(())
}

/// The top-level modules of the crate in `src` (files and directories beside the root).
fn top_level(src: &Path) -> Result<BTreeMap<String, PathBuf>> {
    let mut modules = BTreeMap::new();
    for entry in std::fs::read_dir(src)? {
        let p = entry?.path();
        let Some(stem) = p.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        if ["lib", "main"].contains(&stem) {
            continue;
        }
        if p.is_dir() || p.extension().is_some_and(|e| e == "rs") {
            modules.insert(stem.to_string(), p);
        }
    }
    Ok(modules)
}

fn graph(src: &Path) -> Result<Graph> {
    let modules = top_level(src)?;
    let names: BTreeSet<String> = modules.keys().cloned().collect();
    let mut graph = Graph::new();
    for (name, path) in &modules {
        let mut files = Vec::new();
        rust_files(path, &mut files)?;
        let mut refs = Refs {
            modules: &names,
            found: BTreeSet::new(),
            super_is_root: false,
        };
        for file in files {
            let parent = file.parent().map(Path::to_path_buf).unwrap_or_default();
            refs.super_is_root = parent == src
                || (file.file_name().is_some_and(|f| f == "mod.rs")
                    && parent.parent() == Some(src));
            let source = std::fs::read_to_string(&file)?;
            let syntax =
                syn::parse_file(&source).with_context(|| format!("parsing {}", file.display()))?;
            refs.visit_file(&syntax);
        }
        refs.found.remove(name);
        graph.insert(name.clone(), refs.found);
    }
    Ok(graph)
}

/// The strongly connected components with more than one module (Tarjan's algorithm).
fn cycles(graph: &Graph) -> Vec<Vec<String>> {
    struct State<'g> {
        graph: &'g Graph,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on_stack: BTreeSet<&'g str>,
        found: Vec<Vec<String>>,
    }
    fn visit<'g>(s: &mut State<'g>, v: &'g str) {
        let i = s.index.len();
        s.index.insert(v, i);
        s.low.insert(v, i);
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in s.graph.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                s.low.entry(v).and_modify(|l| *l = (*l).min(lw));
            } else if s.on_stack.contains(w) {
                let iw = s.index[w];
                s.low.entry(v).and_modify(|l| *l = (*l).min(iw));
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.found.push(component);
            }
        }
    }
    let mut s = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.found
}

/// Prints each crate's module graph (with `verbose`) and fails on any cycle.
pub(crate) fn check(verbose: bool) -> Result<()> {
    let mut problems = Vec::new();
    for src in crate::HOST_CRATES {
        let src = Path::new(src);
        if !src.exists() {
            continue;
        }
        let graph = graph(src)?;
        let edges: usize = graph.values().map(BTreeSet::len).sum();
        println!("{}: {} modules, {edges} edges", src.display(), graph.len());
        if verbose {
            for (m, deps) in &graph {
                let deps: Vec<&str> = deps.iter().map(String::as_str).collect();
                println!("  {m} -> {}", deps.join(" "));
            }
        }
        for cycle in cycles(&graph) {
            problems.push(format!("{}: {}", src.display(), cycle.join(" <-> ")));
        }
    }
    if !problems.is_empty() {
        bail!("module cycles:\n  {}", problems.join("\n  "));
    }
    println!("no module cycles");
    Ok(())
}
