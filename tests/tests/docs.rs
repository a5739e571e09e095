//! The docs stand on their own: every link in the repository's Markdown resolves to a
//! file inside the repository (a clone is all a reader has), and no page points to
//! files or trackers that are not in it.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("repository root")
}

/// Every `.md` file of the repository, outside build output and hidden folders.
fn markdown(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || name == "target" || name == "demo-state" {
            continue;
        }
        if path.is_dir() {
            markdown(&path, out);
        } else if name.ends_with(".md") {
            out.push(path);
        }
    }
}

/// The targets of `[text](target)` links in `text`.
fn links(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("](") {
        rest = &rest[at + 2..];
        if let Some(end) = rest.find(')') {
            found.push(rest[..end].to_string());
        }
    }
    found
}

#[test]
fn every_link_in_the_docs_resolves_inside_the_repository() {
    let root = root();
    let mut files = Vec::new();
    markdown(&root, &mut files);
    assert!(files.len() >= 4, "{files:?}");
    let mut broken = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read");
        let shown = file
            .strip_prefix(&root)
            .unwrap_or(file)
            .display()
            .to_string();
        for target in links(&text) {
            if target.starts_with('#') || target.starts_with("mailto:") {
                continue;
            }
            if target.contains("://") {
                broken.push(format!("{shown}: {target} (outside the repository)"));
                continue;
            }
            let path = target.split('#').next().unwrap_or_default();
            let resolved = file.parent().expect("dir").join(path);
            match resolved.canonicalize() {
                Ok(p) if p.starts_with(&root) => {}
                Ok(_) => broken.push(format!("{shown}: {target} (outside the repository)")),
                Err(_) => broken.push(format!("{shown}: {target} (no such file)")),
            }
        }
        // Plain-text pointers out of the clone.
        for line in text.lines() {
            if line.contains("../shared") || line.contains("see `issues`") {
                broken.push(format!("{shown}: {line}"));
            }
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}
