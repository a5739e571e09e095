//! The code's shape, checked on the sources so it stays true (docs/ARCHITECTURE.md):
//!
//! - no two modules of a crate import each other, directly or around a longer cycle
//!   (each file is a module; a use of `crate::a::b::Item` is an edge to `a/b`);
//! - no function is longer than 80 lines outside tests, unless a comment right above it
//!   says why (`// Long because …`).
//!
//! Tests (`#[cfg(test)]` modules, `tests/` folders, the store's conformance suite) are
//! not held to the length rule.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The crates whose sources are checked, relative to the workspace.
const CRATES: &[&str] = &[
    "proto",
    "method",
    "cli",
    "store",
    "store-sqlite",
    "responder",
    "agent",
    "collector",
    "tests/netlab",
];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `src/a/b.rs` and `src/a/b/mod.rs` are module `a::b`; `lib.rs`, `main.rs` the root
/// (binaries' own modules under `src/bin`, if any, are left out).
fn module_of(src: &Path, file: &Path) -> Option<Vec<String>> {
    let rel = file.strip_prefix(src).ok()?;
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.first().is_some_and(|p| p == "bin") {
        return None;
    }
    let last = parts.pop()?;
    match last.as_str() {
        "lib.rs" | "main.rs" if parts.is_empty() => {}
        "mod.rs" => {}
        other => parts.push(other.trim_end_matches(".rs").to_string()),
    }
    Some(parts)
}

/// The code of a file without its `#[cfg(test)]` module at the end and without
/// comments.
fn code(text: &str) -> String {
    let body = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    body.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every `use` tree of `code`, expanded into whole paths (`a::{b, c::d}` → `a::b`,
/// `a::c::d`).
fn use_paths(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("use ") {
        // A `use` item starts its line (after `pub`, `pub(crate)` and indentation);
        // elsewhere the word is prose, in a string or a comment.
        let line_start = rest[..i].rfind('\n').map_or(0, |n| n + 1);
        let lead = rest[line_start..i].trim();
        rest = &rest[i + 4..];
        if !(lead.is_empty() || lead == "pub" || lead.starts_with("pub(")) {
            continue;
        }
        let Some(end) = rest.find(';') else { break };
        let tree = rest[..end].split_whitespace().collect::<Vec<_>>().join(" ");
        expand("", &tree, &mut out);
        rest = &rest[end..];
    }
    out
}

fn expand(prefix: &str, tree: &str, out: &mut Vec<String>) {
    let tree = tree.trim();
    match tree.find('{') {
        None => {
            let item = tree.split(" as ").next().unwrap_or(tree).trim();
            if !item.is_empty() {
                out.push(format!("{prefix}{item}"));
            }
        }
        Some(open) => {
            let head = tree[..open].trim();
            let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
            let mut depth = 0;
            let mut start = 0;
            for (i, c) in inner.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        expand(&format!("{prefix}{head}"), &inner[start..i], out);
                        start = i + 1;
                    }
                    _ => {}
                }
            }
            if start < inner.len() {
                expand(&format!("{prefix}{head}"), &inner[start..], out);
            }
        }
    }
}

/// Paths written in the code: `crate::…`, `super::…`, and `child::…` for the file's
/// own child modules.
fn inline_paths(code: &str, children: &BTreeSet<String>) -> Vec<String> {
    let mut out = Vec::new();
    let bytes = code.as_bytes();
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut i = 0;
    while i < bytes.len() {
        if ident(bytes[i]) && (i == 0 || !(ident(bytes[i - 1]) || bytes[i - 1] == b':')) {
            let mut j = i;
            while j < bytes.len()
                && (ident(bytes[j])
                    || (bytes[j] == b':'
                        && bytes.get(j + 1) == Some(&b':')
                        && bytes.get(j + 2).is_some_and(|c| ident(*c))))
            {
                j += if bytes[j] == b':' { 2 } else { 1 };
            }
            let path = &code[i..j];
            let first = path.split("::").next().unwrap_or("");
            if path.contains("::")
                && (first == "crate" || first == "super" || children.contains(first))
            {
                out.push(path.to_string());
            }
            i = j.max(i + 1);
        } else {
            i += 1;
        }
    }
    out
}

/// The module a path names, resolved against `from` (the file's module): the deepest
/// module of the path, or, when the path goes on to an item, the module that defines
/// that item (following `pub use` re-exports). `None` for another crate's.
fn resolve(
    path: &str,
    from: &[String],
    children: &BTreeSet<String>,
    crate_: &Crate,
) -> Option<Vec<String>> {
    let mut segs = path.split("::").map(str::to_string);
    let first = segs.next()?;
    let mut at: Vec<String> = match first.as_str() {
        "crate" => Vec::new(),
        "super" => from[..from.len().checked_sub(1)?].to_vec(),
        "self" => from.to_vec(),
        c if children.contains(c) => {
            let mut m = from.to_vec();
            m.push(c.to_string());
            m
        }
        _ => return None,
    };
    for s in segs {
        if s == "super" {
            at.pop();
            continue;
        }
        let mut next = at.clone();
        next.push(s.clone());
        if crate_.files.contains_key(&next) {
            at = next;
        } else {
            if s == "*" {
                return Some(at);
            }
            return crate_.home(&at, &s, 0);
        }
    }
    Some(at)
}

/// A crate's modules and their code.
struct Crate {
    files: BTreeMap<Vec<String>, String>,
}

impl Crate {
    /// The module that defines `item`, looked for from `module` through its `pub use`
    /// re-exports; a macro is found wherever it is defined.
    fn home(&self, module: &[String], item: &str, depth: usize) -> Option<Vec<String>> {
        let code = self.files.get(module)?;
        if defines(code, item) {
            return Some(module.to_vec());
        }
        if depth < 4 {
            let children = children_of(module, &self.files);
            for p in pub_uses(code) {
                let last = p.rsplit("::").next().unwrap_or("");
                if last == item || last == "*" {
                    let target = p.trim_end_matches("::*");
                    if let Some(m) = resolve_module(target, module, &children, self) {
                        if let Some(h) = self.home(&m, item, depth + 1) {
                            return Some(h);
                        }
                    }
                }
            }
        }
        self.files
            .iter()
            .find(|(_, code)| code.contains(&format!("macro_rules! {item} ")))
            .map(|(m, _)| m.clone())
    }
}

/// The module a `pub use` path's module part names (no item following).
fn resolve_module(
    path: &str,
    from: &[String],
    children: &BTreeSet<String>,
    crate_: &Crate,
) -> Option<Vec<String>> {
    let r = resolve(path, from, children, crate_)?;
    let full_is_module = crate_.files.contains_key(&r);
    full_is_module.then_some(r)
}

fn children_of(m: &[String], files: &BTreeMap<Vec<String>, String>) -> BTreeSet<String> {
    files
        .keys()
        .filter(|c| c.len() == m.len() + 1 && c.starts_with(m))
        .filter_map(|c| c.last().cloned())
        .collect()
}

/// Whether `code` defines `item` at its top level.
fn defines(code: &str, item: &str) -> bool {
    [
        "struct", "enum", "trait", "type", "fn", "const", "static", "union",
    ]
    .iter()
    .any(|kw| {
        code.lines().any(|l| {
            let t = l.trim_start();
            let t = t
                .strip_prefix("pub ")
                .or_else(|| t.strip_prefix("pub(crate) "))
                .unwrap_or(t);
            let t = t.strip_prefix("async ").unwrap_or(t);
            t.strip_prefix(kw)
                .and_then(|r| r.strip_prefix(' '))
                .is_some_and(|r| {
                    r.starts_with(item)
                        && !r[item.len()..].starts_with(|c: char| c.is_alphanumeric() || c == '_')
                })
        })
    })
}

/// The paths of `code`'s `pub use` items.
fn pub_uses(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, _) in code.match_indices("pub use ") {
        if let Some(end) = code[i..].find(';') {
            let tree = code[i + 8..i + end]
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            expand("", &tree, &mut out);
        }
    }
    out
}

/// Each crate's module graph: module → the modules it uses.
fn graph(krate: &str) -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let src = workspace().join(krate).join("src");
    let mut paths = Vec::new();
    rust_files(&src, &mut paths);
    let files: BTreeMap<Vec<String>, String> = paths
        .iter()
        .filter_map(|f| Some((module_of(&src, f)?, code(&std::fs::read_to_string(f).ok()?))))
        .collect();
    let crate_ = Crate { files };
    let mut g = BTreeMap::new();
    for (m, code) in &crate_.files {
        let children = children_of(m, &crate_.files);
        let edges: BTreeSet<Vec<String>> = use_paths(code)
            .into_iter()
            .chain(inline_paths(code, &children))
            .filter_map(|p| resolve(&p, m, &children, &crate_))
            .filter(|to| to != m)
            .collect();
        g.insert(m.clone(), edges);
    }
    g
}

/// Tarjan's state: index, low link, on stack, the stack, the next index, the groups.
type Tarjan = (
    Vec<usize>,
    Vec<usize>,
    Vec<bool>,
    Vec<usize>,
    usize,
    Vec<Vec<String>>,
);

/// Strongly connected groups of more than one module (Tarjan).
fn cycles(g: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Vec<Vec<String>> {
    let names: Vec<&Vec<String>> = g.keys().collect();
    let index: BTreeMap<&Vec<String>, usize> =
        names.iter().enumerate().map(|(i, n)| (*n, i)).collect();
    let n = names.len();
    let (mut idx, mut low, mut on) = (vec![usize::MAX; n], vec![0; n], vec![false; n]);
    let (mut stack, mut next, mut out) = (Vec::new(), 0, Vec::new());
    fn visit(
        v: usize,
        g: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        names: &[&Vec<String>],
        index: &BTreeMap<&Vec<String>, usize>,
        st: &mut Tarjan,
    ) {
        st.0[v] = st.4;
        st.1[v] = st.4;
        st.4 += 1;
        st.3.push(v);
        st.2[v] = true;
        for w in g[names[v]].iter().filter_map(|w| index.get(w).copied()) {
            if st.0[w] == usize::MAX {
                visit(w, g, names, index, st);
                st.1[v] = st.1[v].min(st.1[w]);
            } else if st.2[w] {
                st.1[v] = st.1[v].min(st.0[w]);
            }
        }
        if st.1[v] == st.0[v] {
            let mut group = Vec::new();
            while let Some(w) = st.3.pop() {
                st.2[w] = false;
                group.push(names[w].join("::"));
                if w == v {
                    break;
                }
            }
            if group.len() > 1 {
                st.5.push(group);
            }
        }
    }
    let mut st = (
        std::mem::take(&mut idx),
        std::mem::take(&mut low),
        std::mem::take(&mut on),
        std::mem::take(&mut stack),
        std::mem::take(&mut next),
        std::mem::take(&mut out),
    );
    for v in 0..n {
        if st.0[v] == usize::MAX {
            visit(v, g, &names, &index, &mut st);
        }
    }
    st.5
}

#[test]
fn no_two_modules_of_a_crate_import_each_other() {
    let mut problems = Vec::new();
    for krate in CRATES {
        let g = graph(krate);
        assert!(g.len() > 1 || *krate == "cli", "{krate}: no modules found");
        for group in cycles(&g) {
            problems.push(format!("{krate}: {}", group.join(" ⇄ ")));
        }
    }
    assert!(
        problems.is_empty(),
        "import cycles:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_cycle_check_finds_a_cycle_when_there_is_one() {
    let m = |s: &str| s.split("::").map(str::to_string).collect::<Vec<_>>();
    let mut g = BTreeMap::new();
    g.insert(m("a"), [m("b")].into());
    g.insert(m("b"), [m("c")].into());
    g.insert(m("c"), [m("a")].into());
    g.insert(m("d"), [m("a")].into());
    assert_eq!(cycles(&g).len(), 1);
    let children: BTreeSet<String> = ["child".to_string()].into();
    let paths = inline_paths("let x = crate::a::b::C; child::f(); other::g();", &children);
    assert_eq!(paths, ["crate::a::b::C", "child::f"]);
    let mut out = Vec::new();
    expand("", "crate::{a::{B, C as D}, d}", &mut out);
    assert_eq!(out, ["crate::a::B", "crate::a::C", "crate::d"]);
}

/// Functions longer than `max` lines in `text` that say nothing of why: `(line, name,
/// length)`.
fn long_functions(text: &str, max: usize) -> Vec<(usize, String, usize)> {
    let body = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    let lines: Vec<&str> = body.lines().collect();
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let t = l.trim_start();
        let indent = l.len() - t.len();
        let is_fn = [
            "fn ",
            "pub fn ",
            "pub(crate) fn ",
            "async fn ",
            "pub async fn ",
            "pub(crate) async fn ",
            "const fn ",
            "pub const fn ",
        ]
        .iter()
        .any(|p| t.starts_with(p));
        // A declaration without a body (a trait's), its signature over several lines.
        let declared = lines[i..]
            .iter()
            .map(|l| l.trim_end())
            .find(|l| l.ends_with('{') || l.ends_with(';'))
            .is_some_and(|l| l.ends_with(';'));
        if !is_fn || declared {
            continue;
        }
        let close = format!("{}}}", " ".repeat(indent));
        let Some(len) = lines[i..].iter().position(|l| *l == close) else {
            continue;
        };
        let said = lines[i.saturating_sub(12)..i]
            .iter()
            .any(|l| l.contains("Long because"));
        if len + 1 > max && !said {
            let name = t
                .split("fn ")
                .nth(1)
                .unwrap_or("")
                .split(['(', '<'])
                .next()
                .unwrap_or("");
            out.push((i + 1, name.to_string(), len + 1));
        }
    }
    out
}

#[test]
fn no_function_is_over_80_lines_unless_it_says_why() {
    let mut problems = Vec::new();
    let mut dirs: Vec<PathBuf> = CRATES
        .iter()
        .map(|c| workspace().join(c).join("src"))
        .collect();
    dirs.push(workspace().join("tests/src"));
    for dir in dirs {
        let mut files = Vec::new();
        rust_files(&dir, &mut files);
        for f in files {
            if f.components().any(|c| c.as_os_str() == "conformance") {
                continue;
            }
            let text = std::fs::read_to_string(&f).unwrap_or_default();
            for (line, name, len) in long_functions(&text, 80) {
                let rel = f
                    .strip_prefix(workspace())
                    .unwrap_or(&f)
                    .display()
                    .to_string();
                problems.push(format!("{rel}:{line}: {name} is {len} lines"));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "functions over 80 lines:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_length_check_counts_lines_and_honours_a_reason() {
    let long = format!("fn f() {{\n{}}}\n", "    x();\n".repeat(85));
    assert_eq!(long_functions(&long, 80).len(), 1);
    let said = format!("// Long because: a table.\n{long}");
    assert!(long_functions(&said, 80).is_empty());
    assert!(long_functions("fn g() {\n}\n", 80).is_empty());
}
