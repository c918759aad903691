//! The guide cannot drift from the code: every `{{#include}}` in `docs/src`
//! names a file that exists and, for a named anchor, an anchor that exists
//! in it; every relative link and image points at a file that exists; and
//! `SUMMARY.md` lists exactly the chapters there are. (CI also builds the
//! book with mdBook; this test needs nothing but cargo.)
//!
//! The guide teaches the present: every measured figure in its text and in
//! the README is included from the published run's generated figures
//! (`docs/src/results/figures.txt`, written by `fastwire figures` from the
//! run's JSON), never typed; dates and commits stand only in the results
//! chapter and the lab notes appendix; and the chapters keep to their
//! length (2,000 prose words each, 16,000 together, the README 1,500).

use std::path::{Path, PathBuf};

fn docs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/src")
}

fn chapters() -> Vec<PathBuf> {
    files(&docs(), "md")
}

/// Every file under `root` whose name ends in `.ext`, sorted.
fn files(root: &Path, ext: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == ext) {
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
        if chapter.ends_with("SUMMARY.md") || chapter.starts_with(root.join("results")) {
            continue; // docs/src/results/ is generated, and included by the chapters
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
    // The appendix's commands ran at the commits it names, with that day's options.
    let current = chapters().into_iter().filter(|c| !c.ends_with(APPENDIX));
    for file in current.chain([root.join("README.md")]) {
        for snippet in code(&std::fs::read_to_string(&file).unwrap()) {
            for prefix in ["cargo run --release -- ", "fastwire "] {
                let Some(at) = snippet.find(prefix) else { continue };
                if snippet[..at].ends_with(|c: char| c.is_alphanumeric() || c == '-' || c == '/') {
                    continue;
                }
                // A trailing `&` runs it in the background: the shell's, not an argument.
                let command = snippet[at + prefix.len()..].trim_end().trim_end_matches('&');
                let words: Vec<&str> = command.split_whitespace().collect();
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

/// The chapters a reader reads (the generated results directory and the
/// summary aside), each with its text.
fn guide() -> Vec<(PathBuf, String)> {
    let results = docs().join("results");
    chapters()
        .into_iter()
        .filter(|c| !c.starts_with(&results) && !c.ends_with("SUMMARY.md"))
        .map(|c| {
            let text = std::fs::read_to_string(&c).unwrap();
            (c, text)
        })
        .collect()
}

/// The appendix that keeps the history: dates, commits and the figures of
/// past experiments belong there.
const APPENDIX: &str = "lab-notes.md";

/// Text as a reader reads it: fenced blocks, include directives, HTML
/// comments, quotations and inline code removed (a command's `--duration 1s` is not a
/// figure). Tables stay.
fn prose(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        // A quotation (`>`) cites someone else's figure, not the run's.
        if fenced || line.trim_start().starts_with("<!--") || line.trim_start().starts_with('>') {
            out.push(String::new());
            continue;
        }
        let mut kept = String::new();
        let mut rest = line;
        while let Some(at) = rest.find("{{#") {
            kept.push_str(&rest[..at]);
            kept.push_str(" FIGURE ");
            rest = rest[at..].find("}}").map_or("", |end| &rest[at + end + 2..]);
        }
        kept.push_str(rest);
        let without_code: String = kept.split('`').step_by(2).collect::<Vec<_>>().join(" ");
        out.push(without_code);
    }
    out
}

/// Words of prose: what a reader reads as sentences (tables, code and
/// included figures aside).
fn prose_words(text: &str) -> usize {
    prose(text)
        .iter()
        .filter(|l| !l.trim_start().starts_with('|'))
        .flat_map(|l| l.split(|c: char| !(c.is_alphabetic() || c == '\'' || c == '-')))
        .filter(|w| w.chars().any(char::is_alphabetic) && *w != "FIGURE")
        .count()
}

/// A measured figure typed into the text: a ratio (`2.8x`), a time per
/// operation, a rate, a decimal time, a percentage.
fn typed_figures(line: &str) -> Vec<String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let number = |w: &str| !w.is_empty() && w.chars().all(|c| c.is_ascii_digit() || c == '.' || c == ',');
    let clean = |w: &str| w.trim_matches(|c: char| "()*,;:!?\"".contains(c)).trim_end_matches('.').to_owned();
    let mut found = Vec::new();
    for (i, raw) in words.iter().enumerate() {
        let w = clean(raw);
        let next = words.get(i + 1).map(|n| clean(n)).unwrap_or_default();
        let ratio = ["x", "×"]
            .iter()
            .any(|x| w.strip_suffix(x).is_some_and(|n| number(n) && n.starts_with(|c: char| c.is_ascii_digit())));
        let percent = w.strip_suffix('%').is_some_and(number);
        let unit = number(&w)
            && (["ns/op", "ns", "MB/s", "GB/s", "calls/s"].contains(&next.as_str())
                || (w.contains('.') && ["µs", "us", "ms"].contains(&next.as_str())));
        if ratio || percent {
            found.push(w);
        } else if unit {
            found.push(format!("{w} {next}"));
        }
    }
    found
}

/// The README without its generated table (what a person typed).
fn readme_outside_its_table() -> String {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let (before, after) = readme.split_once(fastwire_bench::harness::figures::README_END).unwrap_or((&readme, ""));
    before.split(fastwire_bench::harness::figures::README_BEGIN).next().unwrap_or("").to_owned() + after
}

/// The chapters that teach the present: all but the appendix of history.
fn chapters_of_the_present() -> impl Iterator<Item = (PathBuf, String)> {
    guide().into_iter().filter(|(chapter, _)| !chapter.ends_with(APPENDIX))
}

#[test]
fn the_guide_types_no_measured_figure() {
    let mut typed = Vec::new();
    for (chapter, text) in chapters_of_the_present() {
        for (n, line) in prose(&text).iter().enumerate() {
            for figure in typed_figures(line) {
                typed.push(format!("{}:{}: {figure}", chapter.display(), n + 1));
            }
        }
    }
    for (n, line) in prose(&readme_outside_its_table()).iter().enumerate() {
        for figure in typed_figures(line) {
            typed.push(format!("README.md (outside its generated table):{}: {figure}", n + 1));
        }
    }
    assert!(
        typed.is_empty(),
        "figures typed into the text; include them from results/figures.txt (`fastwire figures`) instead:\n{}",
        typed.join("\n")
    );
}

#[test]
fn the_typed_figure_check_catches_figures() {
    assert_eq!(typed_figures("tokio took 251.7 ns/op, 2.8x std's"), ["251.7 ns/op", "2.8x"]);
    assert_eq!(typed_figures("a p50 of 21.2 µs (27%)"), ["21.2 µs", "27%"]);
    assert!(typed_figures("1,000 calls in flight, a 1 ms wait, 20 µs of work, 10,000 connections").is_empty());
}

/// A date (2026-12-01) or something shaped like a commit hash.
fn history(line: &str) -> Vec<String> {
    line.split(|c: char| !c.is_ascii_alphanumeric() && c != '-')
        .filter(|w| {
            let b = w.as_bytes();
            let date = b.len() >= 10
                && b[..10]
                    .iter()
                    .enumerate()
                    .all(|(i, c)| if i == 4 || i == 7 { *c == b'-' } else { c.is_ascii_digit() });
            let hash = (7..=12).contains(&w.len())
                && w.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
                && w.chars().any(|c| c.is_ascii_digit())
                && w.chars().any(|c| c.is_ascii_alphabetic());
            date || hash
        })
        .map(str::to_owned)
        .collect()
}

#[test]
fn dates_and_commits_stand_only_in_the_results_and_the_appendix() {
    let mut found = Vec::new();
    for (chapter, text) in guide() {
        if chapter.ends_with(APPENDIX) || chapter.ends_with("results.md") {
            continue;
        }
        for (n, line) in text.lines().enumerate() {
            for h in history(line) {
                found.push(format!("{}:{}: {h}", chapter.display(), n + 1));
            }
        }
    }
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let end = fastwire_bench::harness::figures::README_END;
    for (n, line) in readme.lines().enumerate() {
        let generated = line.starts_with("Measured on ") && readme.contains(end);
        if !generated {
            for h in history(line) {
                found.push(format!("README.md:{}: {h}", n + 1));
            }
        }
    }
    assert!(found.is_empty(), "history in the teaching text (it belongs in the lab notes):\n{}", found.join("\n"));
}

#[test]
fn chapters_keep_to_their_length() {
    let mut total = 0;
    let mut long = Vec::new();
    for (chapter, text) in chapters_of_the_present() {
        let words = prose_words(&text);
        total += words;
        if words > 2000 {
            long.push(format!("{}: {words} prose words (at most 2,000)", chapter.display()));
        }
    }
    assert!(long.is_empty(), "{}", long.join("\n"));
    assert!(total <= 16_000, "the chapters hold {total} prose words together (at most 16,000)");
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let words = prose_words(&readme);
    assert!(words <= 1500, "the README holds {words} prose words (at most 1,500)");
}

#[test]
fn published_figures_are_what_the_published_run_says() {
    use fastwire_bench::harness::figures;
    let results = docs().join("results");
    let published = figures::load(&results).unwrap();
    assert!(!published.sets.is_empty(), "no published run under {}", results.display());
    let all = figures::figures(&published);
    let committed = std::fs::read_to_string(results.join(figures::FIGURES_FILE)).unwrap();
    assert!(
        committed == figures::render(&all),
        "docs/src/results/figures.txt is not what the published JSON gives: run `cargo run --release -- figures`"
    );
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let expected = figures::readme_with_table(&readme, &figures::readme_table(&published)).unwrap();
    assert!(readme == expected, "the README's table is not the published run's: run `cargo run --release -- figures`");
    // Every set of the run comes from one clean commit.
    let commits: std::collections::BTreeSet<&str> =
        published.sets.iter().flat_map(|s| s.rows.iter().map(|r| r.env.commit.as_str())).collect();
    assert_eq!(commits.len(), 1, "the published sets come from several commits: {commits:?}");
    assert!(!commits.iter().any(|c| c.ends_with("-dirty")), "the published run was made from a dirty tree");
}

#[test]
fn every_published_chart_is_shown() {
    let charts = files(&docs().join("results"), "svg");
    let shown: Vec<PathBuf> = guide()
        .iter()
        .flat_map(|(chapter, text)| {
            between(text, "](", ")").into_iter().map(|t| chapter.parent().unwrap().join(t)).collect::<Vec<_>>()
        })
        .collect();
    let hidden: Vec<String> = charts.iter().filter(|c| !shown.contains(c)).map(|c| c.display().to_string()).collect();
    assert!(!charts.is_empty(), "the published run has charts");
    assert!(hidden.is_empty(), "published charts no chapter shows:\n{}", hidden.join("\n"));
}

/// The names a sentence ranks: the backends, their variants and the peers.
const RANKED: [&str; 8] = ["std", "tokio", "mio", "glommio", "uring", "tarpc", "tonic", "codec"];

/// Words that rank one thing against another.
const RANKING: [&str; 23] = [
    "fastest",
    "slowest",
    "faster",
    "slower",
    "best",
    "worst",
    "fewest",
    "fewer",
    "most",
    "least",
    "ahead",
    "beat",
    "beats",
    "beaten",
    "outperform",
    "outperforms",
    "leanest",
    "cheapest",
    "costliest",
    "lowest",
    "highest",
    "quickest",
    "twice",
];

/// Phrases that rank (a lone "third" is usually an ordinal).
const RANKING_PHRASES: [&str; 4] = ["a third", "a quarter", "half as", "as fast as"];

/// Sentences that name a backend and rank it, in hand-typed words: a
/// ranking must come from the published run's verdicts
/// (`{{#include results/figures.txt:...-verdict}}` or `...-best`), which
/// the rounds and their intervals decide. A table row counts as one
/// sentence; code blocks, quotations and comments are not prose.
fn hand_typed_rankings(text: &str) -> Vec<String> {
    let mut sentences = Vec::new();
    let mut paragraph = String::new();
    let mut fenced = false;
    let flush = |p: &mut String, out: &mut Vec<String>| {
        for s in p.split(". ") {
            out.push(s.to_owned());
        }
        p.clear();
    };
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced || t.starts_with('>') || t.starts_with("<!--") {
            continue;
        }
        let mut kept = String::new();
        let mut rest = line;
        while let Some(at) = rest.find("{{#") {
            kept.push_str(&rest[..at]);
            let end = rest[at..].find("}}").map_or(rest.len(), |e| at + e + 2);
            let directive = &rest[at..end];
            kept.push_str(if directive.contains("-verdict") || directive.contains("-best}") {
                " VERDICT "
            } else {
                " FIGURE "
            });
            rest = &rest[end..];
        }
        kept.push_str(rest);
        if t.starts_with('|') {
            flush(&mut paragraph, &mut sentences);
            sentences.push(kept);
        } else if t.is_empty() || t.starts_with('#') {
            flush(&mut paragraph, &mut sentences);
        } else {
            paragraph.push(' ');
            paragraph.push_str(&kept);
        }
    }
    flush(&mut paragraph, &mut sentences);
    sentences
        .into_iter()
        .filter(|s| {
            let words: Vec<String> =
                s.split(|c: char| !c.is_alphanumeric()).map(str::to_lowercase).filter(|w| !w.is_empty()).collect();
            let names = words.iter().any(|w| RANKED.contains(&w.as_str()));
            let joined = words.join(" ");
            // "at most" and "at least" bound a number; they rank nothing.
            let bound = |i: usize| i > 0 && words[i - 1] == "at" && ["most", "least"].contains(&words[i].as_str());
            let ranks = (0..words.len()).any(|i| RANKING.contains(&words[i].as_str()) && !bound(i))
                || RANKING_PHRASES.iter().any(|p| joined.contains(p));
            names && ranks && !s.contains("VERDICT")
        })
        .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

#[test]
fn no_chapter_ranks_backends_in_hand_typed_words() {
    let mut found = Vec::new();
    for (chapter, text) in chapters_of_the_present() {
        for s in hand_typed_rankings(&text) {
            found.push(format!("{}: {s}", chapter.display()));
        }
    }
    for s in hand_typed_rankings(&readme_outside_its_table()) {
        found.push(format!("README.md: {s}"));
    }
    assert!(
        found.is_empty(),
        "sentences that rank backends in typed words; say it with the published verdicts \
         ({{{{#include results/figures.txt:<set>-<config>-<role>-verdict}}}}) or without ranking:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_ranking_check_catches_rankings() {
    assert_eq!(hand_typed_rankings("mio is the fastest here.").len(), 1);
    assert_eq!(hand_typed_rankings("| the most throughput | `fastwire-mio` |").len(), 1);
    assert!(hand_typed_rankings("In the published run {{#include results/figures.txt:main-fastrpc-both-verdict}}.")
        .is_empty());
    assert!(hand_typed_rankings("mio reads until `WouldBlock`. The fastest path is no path.").is_empty());
    assert!(hand_typed_rankings("```\nmio fastest\n```").is_empty());
    assert!(hand_typed_rankings("the mio reactor makes at most four reads").is_empty());
    assert_eq!(hand_typed_rankings("uring takes a third of tokio's time").len(), 1);
}

/// A floor is a lower bound: in the published run no row's interval of its
/// ratio to the floor lies wholly below 1, and every row has its rounds.
#[test]
fn no_published_floor_is_beaten() {
    use fastwire_bench::harness::figures;
    let published = figures::load(&docs().join("results")).unwrap();
    let mut beaten = Vec::new();
    for set in &published.sets {
        for row in &set.rows {
            assert!(row.summary.is_some(), "{} {}: no rounds", set.name, row.backend);
        }
        for row in fastwire_bench::harness::report::beaten_floors(&set.rows) {
            let ratio = row.summary.as_ref().and_then(|s| s.vs_floor).expect("a beaten floor has a ratio");
            beaten.push(format!(
                "{} {} {} {}: {} of its floor",
                set.name,
                row.backend,
                row.workload,
                row.role,
                ratio.ratio_text()
            ));
        }
    }
    assert!(beaten.is_empty(), "floors beaten in the published run:\n{}", beaten.join("\n"));
}

/// A fenced block of a chapter: its language, its lines, and whether it
/// stands in the chapter's "Try it" section.
struct Fence {
    lang: String,
    lines: Vec<String>,
    try_it: bool,
}

/// Each chapter's fenced blocks, in order.
fn fences() -> Vec<(PathBuf, Vec<Fence>)> {
    let mut chapters = Vec::new();
    for (chapter, text) in guide() {
        let mut fences = Vec::new();
        let mut open: Option<Fence> = None;
        let mut try_it = false;
        for line in text.lines() {
            if open.is_none() && line.starts_with("## ") {
                try_it = line == "## Try it";
            }
            match (line.trim_start().strip_prefix("```"), open.take()) {
                (Some(lang), None) => open = Some(Fence { lang: lang.trim().to_owned(), lines: Vec::new(), try_it }),
                (Some(_), Some(fence)) => fences.push(fence),
                (None, Some(mut fence)) => {
                    fence.lines.push(line.to_owned());
                    open = Some(fence);
                }
                (None, None) => {}
            }
        }
        chapters.push((chapter, fences));
    }
    chapters
}

/// A command of a Try it block, as the test runs it.
enum Run {
    /// `kill %N`: stop the chapter's Nth background server.
    Kill(usize),
    /// Run it, in the background (`&`) or not, expecting success or not
    /// (a note that starts `fails`).
    Program { program: PathBuf, args: Vec<String>, background: bool, fails: bool },
    /// `cargo build`: not run (CI builds), and it prints nothing the
    /// block shows.
    Build,
    /// Not run, and why (said in the test's output): a test of the suite
    /// (CI runs it), a note that says it takes minutes (parsed by
    /// [`every_fastwire_command_shown_parses`]), a script that needs root, a
    /// build with other features, io_uring missing on this machine.
    Not(&'static str),
}

/// How the test runs `line` of a Try it block (`port` stands in for the
/// guide's 7000, and 0 for a server started in the background): `cargo
/// run` of the tool or of an example becomes the binary `cargo test` built.
fn run_of(line: &str, port: u16) -> Run {
    let (command, note) = match line.split_once(" #") {
        Some((c, n)) => (c.trim(), n.trim()),
        None => (line.trim(), ""),
    };
    if note.contains("minute") {
        return Run::Not("it takes minutes");
    }
    let (command, background) = match command.strip_suffix('&') {
        Some(c) => (c.trim(), true),
        None => (command, false),
    };
    // A server in the background binds port 0 and says which port it got.
    let port = if background { 0 } else { port };
    let command = command.replace("127.0.0.1:7000", &format!("127.0.0.1:{port}"));
    if (command.contains("uring") || command.contains("glommio"))
        && fastwire_by_hand::Model::Uring.unavailable().is_some()
    {
        return Run::Not("it needs io_uring, which this machine lacks");
    }
    let words: Vec<&str> = command.split_whitespace().collect();
    match words[..] {
        ["kill", job] if job.starts_with('%') => return Run::Kill(job[1..].parse().expect("kill %N")),
        ["cargo", "build", ..] => return Run::Build,
        ["cargo", "test", ..] => return Run::Not("a test of the suite, which CI runs"),
        ["bash", ..] | ["sudo", ..] => return Run::Not("a script that needs perf or root"),
        ["cargo", "run", ..] => {}
        _ => panic!("a Try it command the test does not know how to run: {line}"),
    }
    let tool = PathBuf::from(env!("CARGO_BIN_EXE_fastwire"));
    let mut program = tool.clone();
    let mut at = 2;
    while at < words.len() && words[at] != "--" {
        match words[at] {
            "--release" => {}
            "-p" => at += 1,
            "--example" => {
                at += 1;
                program = tool.parent().unwrap().join("examples").join(words[at]);
            }
            "--features" => return Run::Not("it needs a build with other features"),
            other => panic!("a cargo option the test does not know: {other} in {line}"),
        }
        at += 1;
    }
    let args = words.get(at + 1..).unwrap_or_default().iter().map(|w| w.to_string()).collect();
    Run::Program { program, args, background, fails: note.starts_with("fails") }
}

/// Whether `output` holds each line of `expected` in order, where `…`
/// stands for any text and whitespace for any whitespace; a line of only
/// `…` stands for lines left out.
fn shows(output: &str, expected: &[String]) -> Result<(), String> {
    let squeeze = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let lines: Vec<String> = output.lines().map(squeeze).collect();
    let mut from = 0;
    for pattern in expected.iter().map(|p| squeeze(p)).filter(|p| !p.is_empty() && p != "…") {
        let parts: Vec<&str> = pattern.split('…').map(str::trim).collect();
        let matches = |line: &str| {
            let mut rest = match line.strip_prefix(parts[0]) {
                Some(r) => r,
                None => return false,
            };
            for part in &parts[1..] {
                match rest.find(part) {
                    Some(i) => rest = &rest[i + part.len()..],
                    None => return false,
                }
            }
            true
        };
        match lines[from..].iter().position(|l| matches(l)) {
            Some(i) => from += i + 1,
            None => return Err(format!("no line like {pattern:?} (after line {from})")),
        }
    }
    Ok(())
}

#[test]
fn shows_matches_shapes_in_order() {
    let out = "fastwire: serving on 127.0.0.1:4000 (backend mio)\nbackend  role\nmio      both   41.0 ±0%   best\n";
    let lines = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert!(shows(out, &lines(&["fastwire: serving on …", "…", "mio both … best"])).is_ok());
    assert!(shows(out, &lines(&["mio both …", "backend role"])).is_err(), "order matters");
    assert!(shows(out, &lines(&["std both …"])).is_err());
}

/// Every Try it section shows what to expect: each block of commands is
/// followed by a block of their output, or its shape. Each command of a
/// block so followed, in a Try it section or not, that finishes within 30
/// seconds is run (servers marked `&` in the background until `kill %N` or
/// the chapter's end), must succeed (or fail where its note says `fails`)
/// and must print what its block shows.
#[test]
fn every_try_it_runs_and_shows_what_it_prints() {
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};
    let mut failures = Vec::new();
    let mut ran = 0;
    for (chapter, fences) in fences() {
        let name = chapter.file_name().unwrap().to_string_lossy().into_owned();
        // The guide's 7000 becomes a free port; a server the chapter starts
        // in the background binds port 0 instead and says which it got,
        // which then stands for 7000 (a port picked and freed beforehand
        // could be taken by a test running beside this one).
        let mut port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut servers: Vec<Option<std::process::Child>> = Vec::new();
        for (i, fence) in fences.iter().enumerate().filter(|(_, f)| f.lang == "sh") {
            let Some(expected) = fences.get(i + 1).filter(|f| f.lang == "text") else {
                if fence.try_it {
                    failures.push(format!("{name}: a Try it block without the output to expect after it"));
                }
                continue;
            };
            let mut printed = String::new();
            let mut checked = true;
            for line in fence.lines.iter().filter(|l| !l.trim().is_empty()) {
                let (program, args, background, fails) = match run_of(line, port) {
                    Run::Program { program, args, background, fails } => (program, args, background, fails),
                    Run::Kill(job) => {
                        match servers.get_mut(job.wrapping_sub(1)).and_then(Option::take) {
                            Some(mut server) => {
                                let _ = server.kill();
                                let _ = server.wait();
                            }
                            None => failures.push(format!("{name}: `{line}`: no such background server")),
                        }
                        continue;
                    }
                    Run::Build => continue,
                    // The block's output then holds lines this run cannot check.
                    Run::Not(why) => {
                        eprintln!("{name}: not running `{line}`: {why}");
                        checked = false;
                        continue;
                    }
                };
                if !program.exists() {
                    failures.push(format!(
                        "{name}: `{line}`: {} is not built (cargo test --workspace builds every example)",
                        program.display()
                    ));
                    checked = false;
                    continue;
                }
                let mut child = Command::new(&program)
                    .args(&args)
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(if background { Stdio::null() } else { Stdio::piped() })
                    .spawn()
                    .unwrap();
                ran += 1;
                if background {
                    // A server: running once it prints its address.
                    let mut first = String::new();
                    use std::io::BufRead;
                    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
                    match first.split("serving on ").nth(1).and_then(|rest| rest.split_whitespace().next()) {
                        Some(addr) => {
                            if let Ok(addr) = addr.parse::<std::net::SocketAddr>() {
                                port = addr.port();
                            }
                        }
                        None => failures.push(format!("{name}: `{line}` did not start: {first:?}")),
                    }
                    servers.push(Some(child));
                    continue;
                }
                let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
                let out = std::thread::spawn(move || {
                    let mut s = String::new();
                    std::io::Read::read_to_string(&mut out, &mut s).map(|_| s)
                });
                let err = std::thread::spawn(move || {
                    let mut s = String::new();
                    std::io::Read::read_to_string(&mut err, &mut s).map(|_| s)
                });
                let started = Instant::now();
                let status = loop {
                    if let Some(status) = child.try_wait().unwrap() {
                        break Some(status);
                    }
                    if started.elapsed() > Duration::from_secs(30) {
                        let _ = child.kill();
                        let _ = child.wait();
                        break None;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                };
                let text = err.join().unwrap().unwrap_or_default() + &out.join().unwrap().unwrap_or_default();
                match status {
                    None => failures.push(format!(
                        "{name}: `{line}` ran past 30 s: note how long it takes (`# about N minutes`) or shorten it"
                    )),
                    Some(s) if s.success() == fails => {
                        failures.push(format!("{name}: `{line}` exited with {s}:\n{text}"))
                    }
                    Some(_) => printed += &text,
                }
            }
            if checked {
                let expected: Vec<String> =
                    expected.lines.iter().map(|l| l.replace("127.0.0.1:7000", &format!("127.0.0.1:{port}"))).collect();
                if let Err(why) = shows(&printed, &expected) {
                    failures.push(format!("{name}: the output is not what the chapter shows: {why}\n{printed}"));
                }
            }
        }
        for mut server in servers.into_iter().flatten() {
            let _ = server.kill();
            let _ = server.wait();
        }
    }
    assert!(ran >= 10, "the Try it sections hold commands to run; ran {ran}");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
