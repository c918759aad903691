//! The rendered guide's links: every relative link of every page of
//! `docs/book` (built by `scripts/build-docs.sh`) points at a page or file
//! inside the book, and every `#anchor` at an element with that id. The
//! source-level checks of `tests/suite/docs.rs` cannot see what mdBook makes of a
//! link: a chapter missing from `SUMMARY.md` has no page, and a link to a
//! file outside `docs/src` leaves the book.
//!
//! CI builds the book before the tests. Without a built book the test says
//! so and checks nothing, except under CI, where a missing book fails it.

use std::path::{Component, Path, PathBuf};

fn book() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/book")
}

fn pages(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            pages(&path, out);
        } else if path.extension().is_some_and(|e| e == "html") {
            out.push(path);
        }
    }
}

/// `dir/target` with `.` and `..` resolved, without touching the file system.
fn resolve(dir: &Path, target: &str) -> PathBuf {
    let mut out = PathBuf::new();
    for part in dir.join(target).components() {
        match part {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// The values of every `href="..."` in a page.
fn hrefs(html: &str) -> Vec<&str> {
    html.split("href=\"").skip(1).filter_map(|rest| rest.split('"').next()).collect()
}

/// The rendered book's root and its pages; `None` (the test is skipped,
/// and says so) when there is no rendered book, except under CI, which
/// builds it first and fails without it.
fn rendered() -> Option<(PathBuf, Vec<PathBuf>)> {
    let root = book();
    if !root.join("index.html").exists() {
        assert!(std::env::var_os("CI").is_none(), "CI builds the book before the tests; {} is missing", root.display());
        eprintln!("skipped: no rendered book in {} (scripts/build-docs.sh builds it)", root.display());
        return None;
    }
    let mut all = Vec::new();
    pages(&root, &mut all);
    Some((root, all))
}

#[test]
fn every_link_of_the_rendered_book_resolves() {
    let Some((root, all)) = rendered() else { return };
    let mut broken = Vec::new();
    let mut checked = 0;
    for page in &all {
        // The print page repeats every chapter with its links rewritten;
        // the 404 page's links are absolute to wherever the book is served.
        if page.ends_with("print.html") || page.ends_with("404.html") {
            continue;
        }
        let html = std::fs::read_to_string(page).unwrap();
        for href in hrefs(&html) {
            if href.is_empty() || href.contains("://") || href.starts_with("mailto:") || href.starts_with("javascript:")
            {
                continue;
            }
            checked += 1;
            let (file, anchor) = href.split_once('#').unwrap_or((href, ""));
            let target = if file.is_empty() { page.clone() } else { resolve(page.parent().unwrap(), file) };
            let shown = page.strip_prefix(&root).unwrap().display();
            if !target.starts_with(&root) {
                broken.push(format!("{shown}: {href} leaves the book"));
            } else if !target.exists() {
                broken.push(format!("{shown}: {href}: no such page or file"));
            } else if !anchor.is_empty() && target.extension().is_some_and(|e| e == "html") {
                let text = std::fs::read_to_string(&target).unwrap();
                if !text.contains(&format!("id=\"{anchor}\"")) {
                    broken.push(format!("{shown}: {href}: no #{anchor} there"));
                }
            }
        }
    }
    assert!(checked > 100, "the book's pages link to each other; checked only {checked}");
    assert!(broken.is_empty(), "broken links in the rendered book:\n{}", broken.join("\n"));
}

/// The text of each Rust code block of a page, HTML as it is.
fn rust_blocks(html: &str) -> Vec<&str> {
    html.split("<code class=\"language-rust")
        .skip(1)
        .filter_map(|rest| rest.split_once('>').and_then(|(_, code)| code.split("</code>").next()))
        .collect()
}

#[test]
fn included_code_starts_at_the_left_margin() {
    let Some((_, all)) = rendered() else { return };
    let mut indented = Vec::new();
    let mut blocks = 0;
    for page in &all {
        let html = std::fs::read_to_string(page).unwrap();
        for block in rust_blocks(&html) {
            blocks += 1;
            let unindented = block.lines().filter(|l| !l.trim().is_empty()).any(|l| !l.starts_with(' '));
            if !unindented {
                let first = block.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
                indented.push(format!("{}: {}", page.display(), first.trim()));
            }
        }
    }
    assert!(blocks >= 10, "the book shows the project's code; found {blocks} Rust blocks");
    assert!(
        indented.is_empty(),
        "code blocks indented as a whole (scripts/build-docs.sh removes the common indentation):\n{}",
        indented.join("\n")
    );
}
