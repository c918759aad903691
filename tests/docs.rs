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

/// The code the guide and the README show: each line of a fenced block
/// (continuation lines joined, comments cut), and each inline code span
/// (which may wrap across lines).
fn code(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut prose = String::new();
    let mut fenced = false;
    let mut pending = String::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            let line = line.split(" #").next().unwrap_or("");
            match line.trim_end().strip_suffix('\\') {
                Some(start) => pending.push_str(start),
                None => out.push(std::mem::take(&mut pending) + line),
            }
        } else {
            prose.push_str(line);
            prose.push(' ');
        }
    }
    out.extend(prose.split('`').skip(1).step_by(2).map(str::to_owned));
    out
}

/// Every `fastwire` command the guide and the README show (`fastwire
/// SUBCOMMAND ...` or `cargo run --release -- SUBCOMMAND ...`), with its
/// placeholders (`N`, `HOST:PORT`) given sample values. A subcommand named
/// alone is a mention, not a command.
fn commands() -> Vec<(PathBuf, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut found = Vec::new();
    for file in chapters().into_iter().chain([root.join("README.md")]) {
        for snippet in code(&std::fs::read_to_string(&file).unwrap()) {
            for prefix in ["cargo run --release -- ", "fastwire "] {
                let Some(at) = snippet.find(prefix) else { continue };
                if snippet[..at].ends_with(|c: char| c.is_alphanumeric() || c == '-' || c == '/') {
                    continue;
                }
                let words: Vec<&str> = snippet[at + prefix.len()..].split_whitespace().collect();
                let known = ["compare", "load", "serve", "tls-certs"].contains(words.first().unwrap_or(&""));
                if known && words.len() > 1 && !snippet.contains("{{") {
                    let words = words.iter().map(|w| match *w {
                        "N" => "2",
                        "HOST:PORT" | "ADDR" => "127.0.0.1:7000",
                        w => w,
                    });
                    found.push((file.clone(), words.collect::<Vec<_>>().join(" ")));
                }
                break;
            }
        }
    }
    found
}

#[test]
fn every_fastwire_command_shown_parses() {
    let commands = commands();
    assert!(commands.len() >= 20, "the guide and README show their commands; found {}", commands.len());
    let mut broken = Vec::new();
    for (file, command) in &commands {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_fastwire"))
            .args(command.split_whitespace())
            .env("FASTWIRE_PARSE_ONLY", "1")
            .output()
            .unwrap();
        if !out.status.success() {
            let why = String::from_utf8_lossy(&out.stderr);
            broken.push(format!("{}: `fastwire {command}`: {}", file.display(), why.lines().next().unwrap_or("")));
        }
    }
    assert!(broken.is_empty(), "commands that do not parse:\n{}", broken.join("\n"));
}
