//! The guide cannot drift from the code: every `{{#include}}` in `docs/src`
//! names a file that exists and, for a named anchor, an anchor that exists
//! in it; every relative link and image points at a file that exists; and
//! `SUMMARY.md` lists exactly the chapters there are. (CI also builds the
//! book with mdBook; this test needs nothing but cargo.)

use std::path::{Path, PathBuf};

fn docs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/src")
}

fn chapters() -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![docs()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "md") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The text between `open` and the next `close`, for each occurrence.
fn between<'a>(text: &'a str, open: &str, close: &str) -> Vec<&'a str> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(open) {
        let after = &rest[start + open.len()..];
        let Some(end) = after.find(close) else { break };
        found.push(&after[..end]);
        rest = &after[end..];
    }
    found
}

#[test]
fn every_include_names_a_file_and_anchor_that_exist() {
    let mut includes = 0;
    for chapter in chapters() {
        let text = std::fs::read_to_string(&chapter).unwrap();
        for directive in
            between(&text, "{{#include ", "}}").into_iter().chain(between(&text, "{{#rustdoc_include ", "}}"))
        {
            includes += 1;
            let (file, selector) = match directive.trim().split_once(':') {
                Some((file, selector)) => (file, Some(selector)),
                None => (directive.trim(), None),
            };
            let path = chapter.parent().unwrap().join(file);
            let source = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: includes {file}, which cannot be read: {e}", chapter.display()));
            // A selector is a line range (`10:20`, `10:`) or an anchor name.
            if let Some(name) = selector.filter(|s| !s.chars().next().is_some_and(|c| c.is_ascii_digit())) {
                for marker in [format!("ANCHOR: {name}"), format!("ANCHOR_END: {name}")] {
                    assert!(source.contains(&marker), "{}: {file} has no `{marker}`", chapter.display());
                }
            }
        }
    }
    assert!(includes >= 10, "the guide shows the project's code through includes; found {includes}");
}

#[test]
fn every_relative_link_points_at_a_file() {
    for chapter in chapters() {
        let text = std::fs::read_to_string(&chapter).unwrap();
        for target in between(&text, "](", ")") {
            let target = target.split_whitespace().next().unwrap_or("");
            if target.is_empty() || target.starts_with('#') || target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let file = target.split('#').next().unwrap();
            let path = chapter.parent().unwrap().join(file);
            assert!(path.exists(), "{}: broken link to {target}", chapter.display());
        }
    }
}

#[test]
fn the_summary_lists_every_chapter() {
    let root = docs();
    let summary = std::fs::read_to_string(root.join("SUMMARY.md")).unwrap();
    let listed: Vec<PathBuf> = between(&summary, "](", ")").into_iter().map(|f| root.join(f)).collect();
    for chapter in chapters() {
        if chapter.ends_with("SUMMARY.md") || chapter.ends_with("compare.md") {
            continue; // compare.md files are generated and included by the results chapters
        }
        assert!(listed.contains(&chapter), "SUMMARY.md does not list {}", chapter.display());
    }
}
