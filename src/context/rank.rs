//! Ranking files by relevance: BM25 of a query (the spec, its criteria, failures, feedback)
//! over each file's path words, identifiers (split on case and underscores) and contents. A
//! word's weight is its rarity across the repository, and a word found in most files weighs
//! nothing, so ordinary words of a spec ("run", "test", "change") pull nothing in.
//!
//! On top of BM25, each with its weight in [`RankWeights`]: the definitions of the code-like
//! identifiers the query names (the symbol index), the path fragments it names (directories,
//! file stems and their parts, whole paths), and the files that changed together with the best
//! ranked ones in the repository's history (co-change).
//!
//! Owns: the inverted index and the scores. Must not touch: anything but the files the tree
//! lists; it never writes.

use std::collections::{BTreeSet, HashMap};

use serde::Serialize;

use super::files::Tree;
use super::history::CoChange;
use super::repomap;

/// BM25's term-frequency saturation.
const K1: f64 = 1.2;
/// BM25's length normalisation.
const B: f64 = 0.75;
/// A path word counts as this many occurrences in the file: the path says what a file is
/// about better than any one line of it.
const PATH_WEIGHT: u32 = 5;
/// Below this many files no word counts as too common to rank by.
const COMMON_WORD_MIN_FILES: usize = 20;
/// Bytes of a file indexed (the rest of a huge file adds little but time).
const INDEX_BYTES: usize = 256 * 1024;

const STOP_WORDS: &[&str] = &[
    "and", "any", "are", "but", "can", "each", "for", "from", "has", "have", "into", "its", "may",
    "must", "not", "one", "should", "that", "the", "then", "this", "use", "when", "which", "will",
    "with", "without", "all", "also", "only", "new", "out", "own", "our", "you", "your",
];

/// How much each signal of the ranking weighs besides BM25 (in tenths; 0 turns it off).
/// Chosen on ripgrep's last 100 commits with `benches/context.rs`, tokio held out; see
/// `docs/BENCHMARKS.md` for what each earns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RankWeights {
    /// Split identifiers on case and underscores for BM25 (`parseHTTPHeader` → `parse`,
    /// `httpheader`; `max_file_bytes` → `max`, `file`, `bytes`); off, words split on
    /// non-alphanumerics only.
    pub split_identifiers: bool,
    /// A file defining a code-like identifier the query names (`Semaphore`,
    /// `blocking_acquire`): this many tenths of the definition's rarity.
    pub definitions: u32,
    /// A file whose path holds a fragment the query names (a directory, a file stem or a part
    /// of it, or the whole path): this many tenths of the fragment's rarity.
    pub fragments: u32,
    /// A file that changed together with one of the best ranked files: this many tenths of
    /// that file's score, times the share of its commits that changed both.
    pub cochange: u32,
}

impl Default for RankWeights {
    fn default() -> Self {
        RankWeights {
            split_identifiers: true,
            definitions: 20,
            fragments: 10,
            cochange: 5,
        }
    }
}

/// The best ranked files whose history partners are looked up.
const COCHANGE_SEEDS: usize = 5;

/// The inverted index of a tree's files.
#[derive(Debug, Default)]
pub(crate) struct Index {
    /// Indexed files, by document number.
    paths: Vec<String>,
    /// Document number of each indexed path.
    docs: HashMap<String, u32>,
    /// Each document's length in (weighted) words.
    lens: Vec<u32>,
    /// Word → postings (document, weighted frequency), by document number.
    postings: HashMap<String, Vec<(u32, u32)>>,
    /// Lower-cased defined name → documents defining it (the symbol index).
    defs: HashMap<String, Vec<u32>>,
    /// Path fragment → documents whose path holds it.
    fragments: HashMap<String, Vec<u32>>,
    /// Files that changed together, when co-change weighs anything.
    history: CoChange,
    weights: RankWeights,
    avg_len: f64,
}

impl Index {
    /// Indexes the files of `tree` that `keep` accepts (text files only; the first
    /// [`INDEX_BYTES`] of each).
    pub(crate) fn build(tree: &Tree, keep: &dyn Fn(&str) -> bool, weights: RankWeights) -> Index {
        let mut index = Index {
            weights,
            ..Index::default()
        };
        let split = weights.split_identifiers;
        let mut total: u64 = 0;
        let mut counts: HashMap<String, u32> = HashMap::new();
        for path in tree.files.iter().filter(|f| keep(f)) {
            counts.clear();
            let doc = u32::try_from(index.paths.len()).unwrap_or(u32::MAX);
            for w in words_as(path, split) {
                *counts.entry(w).or_default() += PATH_WEIGHT;
            }
            if let Some(text) = tree.read_prefix(path, INDEX_BYTES) {
                for w in words_as(&text, split) {
                    *counts.entry(w).or_default() += 1;
                }
                if weights.definitions > 0 && repomap::has_symbols(path) {
                    let names: BTreeSet<String> = repomap::definitions(path, &text)
                        .into_iter()
                        .map(|n| n.to_lowercase())
                        .collect();
                    for n in names {
                        index.defs.entry(n).or_default().push(doc);
                    }
                }
            }
            for f in path_fragments(path) {
                index.fragments.entry(f).or_default().push(doc);
            }
            let len: u32 = counts.values().sum();
            total += u64::from(len);
            for (w, n) in counts.drain() {
                index.postings.entry(w).or_default().push((doc, n));
            }
            index.docs.insert(path.clone(), doc);
            index.paths.push(path.clone());
            index.lens.push(len);
        }
        if weights.cochange > 0 {
            index.history = CoChange::read(tree.root_path(), super::history::MAX_COMMITS);
        }
        index.avg_len = if index.paths.is_empty() {
            1.0
        } else {
            (total as f64 / index.paths.len() as f64).max(1.0)
        };
        index
    }

    /// How many files are indexed.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.paths.len()
    }

    /// A word's weight: BM25's inverse document frequency, zero for a word found in every
    /// file, or in more than half of the files of a repository large enough to tell.
    fn idf(&self, word: &str) -> f64 {
        let n = self.paths.len();
        let Some(df) = self.postings.get(word).map(Vec::len) else {
            return 0.0;
        };
        if df == n || (n >= COMMON_WORD_MIN_FILES && df * 2 > n) {
            return 0.0;
        }
        (1.0 + (n as f64 - df as f64 + 0.5) / (df as f64 + 0.5)).ln()
    }

    /// A rarity weight for a signal's key found in `df` files: zero for a key in more than
    /// half of the files of a repository large enough to tell.
    fn rarity(&self, df: usize) -> f64 {
        let n = self.paths.len();
        if df == 0 || df == n || (n >= COMMON_WORD_MIN_FILES && df * 2 > n) {
            return 0.0;
        }
        (1.0 + n as f64 / df as f64).ln()
    }

    /// The files matching `query`, best first (ties by path), with their scores; files in
    /// `boost` score half as much again, plus a little (so that they rank when nothing matches).
    pub(crate) fn rank(&self, query: &Query, boost: &BTreeSet<String>) -> Vec<(f64, &str)> {
        let mut scores: HashMap<u32, f64> = HashMap::new();
        self.add_bm25(query, &mut scores);
        let w = self.weights;
        self.add_keyed(&self.defs, &query.idents, w.definitions, &mut scores);
        self.add_keyed(&self.fragments, &query.fragments, w.fragments, &mut scores);
        self.add_paths(query, &mut scores);
        self.add_cochange(&mut scores);
        for (doc, path) in self.paths.iter().enumerate() {
            if boost.contains(path) {
                let s = scores.entry(doc as u32).or_default();
                *s = *s * 1.5 + 0.1;
            }
        }
        let mut ranked: Vec<(f64, &str)> = scores
            .into_iter()
            .filter(|(_, s)| *s > 0.0)
            .map(|(doc, s)| (s, self.paths[doc as usize].as_str()))
            .collect();
        ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(b.1)));
        ranked
    }

    /// BM25 of the query's words over paths, identifiers and contents.
    fn add_bm25(&self, query: &Query, scores: &mut HashMap<u32, f64>) {
        let words = if self.weights.split_identifiers {
            &query.words
        } else {
            &query.plain
        };
        for word in words {
            let idf = self.idf(word);
            if idf <= 0.0 {
                continue;
            }
            for &(doc, tf) in &self.postings[word.as_str()] {
                let tf = f64::from(tf);
                let len = f64::from(self.lens[doc as usize]);
                let norm = tf * (K1 + 1.0) / (tf + K1 * (1.0 - B + B * len / self.avg_len));
                *scores.entry(doc).or_default() += idf * norm;
            }
        }
    }

    /// Each file under a key of `keys` in `map` gains `weight` tenths of the key's rarity.
    fn add_keyed(
        &self,
        map: &HashMap<String, Vec<u32>>,
        keys: &BTreeSet<String>,
        weight: u32,
        scores: &mut HashMap<u32, f64>,
    ) {
        if weight == 0 {
            return;
        }
        for docs in keys.iter().filter_map(|k| map.get(k)) {
            let gain = f64::from(weight) / 10.0 * self.rarity(docs.len());
            for &doc in docs {
                *scores.entry(doc).or_default() += gain;
            }
        }
    }

    /// A path the query names whole (`src/fill.rs`, or `fill.rs` alone) weighs as the rarest
    /// fragment twice over.
    fn add_paths(&self, query: &Query, scores: &mut HashMap<u32, f64>) {
        if self.weights.fragments == 0 || query.paths.is_empty() {
            return;
        }
        let gain = f64::from(self.weights.fragments) / 10.0 * 2.0 * self.rarity(1);
        for (doc, path) in self.paths.iter().enumerate() {
            let named = query.paths.iter().any(|p| {
                path == p
                    || (path.ends_with(p.as_str()) && path[..path.len() - p.len()].ends_with('/'))
            });
            if named {
                *scores.entry(doc as u32).or_default() += gain;
            }
        }
    }

    /// Files that changed together with the best ranked ones gain a share of their score.
    fn add_cochange(&self, scores: &mut HashMap<u32, f64>) {
        if self.weights.cochange == 0 {
            return;
        }
        let mut seeds: Vec<(f64, u32)> = scores.iter().map(|(d, s)| (*s, *d)).collect();
        seeds.sort_by(|a, b| {
            b.0.total_cmp(&a.0)
                .then_with(|| self.paths[a.1 as usize].cmp(&self.paths[b.1 as usize]))
        });
        let weight = f64::from(self.weights.cochange) / 10.0;
        let mut gains: HashMap<u32, f64> = HashMap::new();
        for (score, doc) in seeds.into_iter().take(COCHANGE_SEEDS) {
            for (partner, share) in self.history.partners(&self.paths[doc as usize]) {
                if let Some(&d) = self.docs.get(partner) {
                    *gains.entry(d).or_default() += weight * score * share;
                }
            }
        }
        for (doc, gain) in gains {
            *scores.entry(doc).or_default() += gain;
        }
    }
}

/// What a ranking looks for: the distinct words of its texts, the code-like identifiers they
/// name, the path fragments and the whole paths.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Query {
    /// Words split on case and underscores.
    words: BTreeSet<String>,
    /// Words split on non-alphanumerics only.
    plain: BTreeSet<String>,
    /// Code-like identifiers, whole and lower-cased (`blocking_acquire`, `semaphore` from
    /// `` `Semaphore` ``).
    idents: BTreeSet<String>,
    /// Tokens that may name a directory or a file stem (`sync`, `io`, `delay_queue`).
    fragments: BTreeSet<String>,
    /// Tokens that look like paths (`src/fill.rs`, `fill.rs`).
    paths: BTreeSet<String>,
}

impl Query {
    /// The words of `texts`, lower-cased, identifiers split on case and underscores, without
    /// common English words; with the texts' code-like identifiers, path fragments and paths.
    pub(crate) fn new<'a>(texts: impl IntoIterator<Item = &'a str>) -> Query {
        let mut q = Query::default();
        for text in texts {
            q.words.extend(words(text));
            q.plain.extend(words_as(text, false));
            q.idents.extend(code_identifiers(text));
            q.fragments.extend(fragments_of(text));
            q.paths.extend(paths_in(text));
        }
        q
    }

    /// Whether the query has no words.
    pub(crate) fn is_empty(&self) -> bool {
        self.words.is_empty() && self.fragments.is_empty() && self.paths.is_empty()
    }
}

/// The identifiers of a text that look like code: inside backticks, or with an inner
/// underscore, a lower-to-upper case change, or `::`/`(` beside them. Lower-cased, whole.
pub(crate) fn code_identifiers(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, part) in text.split('`').enumerate() {
        let quoted = i % 2 == 1;
        let bytes = part.as_bytes();
        for (start, token) in identifiers(part) {
            let end = start + token.len();
            let beside = part[..start].ends_with("::")
                || part[end..].starts_with("::")
                || bytes.get(end) == Some(&b'(');
            let inner_underscore = token.trim_matches('_').contains('_');
            let camel = token
                .as_bytes()
                .windows(2)
                .any(|w| w[0].is_ascii_lowercase() && w[1].is_ascii_uppercase());
            if token.len() >= 3 && (quoted || beside || inner_underscore || camel) {
                out.insert(token.to_lowercase());
            }
        }
    }
    out
}

/// Identifier-shaped tokens of a text (`[A-Za-z_][A-Za-z0-9_]*`) with their byte offsets.
fn identifiers(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in text
        .char_indices()
        .chain(std::iter::once((text.len(), ' ')))
    {
        let part = c.is_ascii_alphanumeric() || c == '_';
        match (start, part) {
            (None, true) if !c.is_ascii_digit() => start = Some(i),
            (Some(s), false) => {
                out.push((s, &text[s..i]));
                start = None;
            }
            _ => {}
        }
    }
    out.into_iter()
}

/// The tokens of a text that may name a path fragment: each identifier lower-cased (2
/// characters or more, not a stop word), its parts between underscores, and the snake-case
/// form of a camel-case one (`DelayQueue` → `delay_queue`).
fn fragments_of(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (_, token) in identifiers(text) {
        let lower = token.to_lowercase();
        if lower.len() < 2 || STOP_WORDS.contains(&lower.as_str()) {
            continue;
        }
        for part in lower
            .split('_')
            .filter(|p| p.len() >= 2 && !STOP_WORDS.contains(p))
        {
            out.insert(part.to_owned());
        }
        let snake: Vec<String> = split_words(token).collect();
        if snake.len() > 1 {
            out.insert(snake.join("_"));
        }
        out.insert(lower);
    }
    out
}

/// The fragments of a path: its directories, its file stem (before the first dot) and the
/// stem's parts between underscores and dashes, lower-cased.
pub(crate) fn path_fragments(path: &str) -> BTreeSet<String> {
    let lower = path.to_lowercase();
    let mut parts: Vec<&str> = lower.split('/').collect();
    let name = parts.pop().unwrap_or_default();
    let stem = name.split('.').next().unwrap_or_default();
    let mut out: BTreeSet<String> = parts.into_iter().map(str::to_owned).collect();
    out.extend(
        stem.split(['_', '-'])
            .filter(|p| p.len() >= 2)
            .map(str::to_owned),
    );
    if !stem.is_empty() {
        out.insert(stem.to_owned());
    }
    out
}

/// Tokens of a text that look like relative paths: with a `/`, or a file name with a short
/// extension (`fill.rs`), without leading `./` or trailing punctuation.
fn paths_in(text: &str) -> BTreeSet<String> {
    text.split(|c: char| c.is_whitespace() || matches!(c, '`' | '"' | '\'' | '(' | ')' | ','))
        .map(|t| {
            t.trim_start_matches("./")
                .trim_end_matches([':', '.', ';', '!', '?'])
        })
        .filter(|t| {
            let shaped = t
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'));
            let ext = t.rsplit_once('.').is_some_and(|(stem, e)| {
                !stem.is_empty()
                    && (1..=4).contains(&e.len())
                    && e.chars().all(|c| c.is_ascii_alphanumeric())
                    && !e.chars().all(|c| c.is_ascii_digit())
            });
            shaped && ext && !t.starts_with('/') && !t.contains("..")
        })
        .map(str::to_owned)
        .collect()
}

/// The ranking words of a text: runs of letters and digits, split at lower-to-upper case
/// changes (`loginHandler` → `login`, `handler`), lower-cased, of 3 letters or more, not all
/// digits, not a stop word.
pub(crate) fn words(s: &str) -> impl Iterator<Item = String> + '_ {
    words_as(s, true)
}

/// [`words`], split on case changes too when `split` says so.
fn words_as(s: &str, split: bool) -> impl Iterator<Item = String> + '_ {
    let parts: Box<dyn Iterator<Item = String>> = if split {
        Box::new(split_words(s))
    } else {
        Box::new(
            s.split(|c: char| !c.is_alphanumeric())
                .filter(|w| !w.is_empty())
                .map(str::to_lowercase),
        )
    };
    parts.filter(|w| {
        w.len() >= 3
            && w.len() <= 40
            && !w.bytes().all(|b| b.is_ascii_digit())
            && !STOP_WORDS.contains(&w.as_str())
    })
}

/// Splits on non-alphanumerics (so on `_`) and camelCase boundaries, lower-cased.
fn split_words(s: &str) -> impl Iterator<Item = String> + '_ {
    s.split(|c: char| !c.is_alphanumeric()).flat_map(|w| {
        let mut parts = Vec::new();
        let mut cur = String::new();
        let mut prev_lower = false;
        for c in w.chars() {
            if c.is_uppercase() && prev_lower && !cur.is_empty() {
                parts.push(std::mem::take(&mut cur));
            }
            prev_lower = c.is_lowercase() || c.is_ascii_digit();
            cur.extend(c.to_lowercase());
        }
        if !cur.is_empty() {
            parts.push(cur);
        }
        parts
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[(&str, &str)]) -> (tempfile::TempDir, Tree) {
        let dir = tempfile::tempdir().expect("tempdir");
        for (path, text) in files {
            let p = dir.path().join(path);
            std::fs::create_dir_all(p.parent().expect("a parent")).expect("mkdir");
            std::fs::write(p, text).expect("write");
        }
        let t = Tree::walk(dir.path(), &globset::GlobSet::empty()).expect("walk");
        (dir, t)
    }

    fn weights(definitions: u32, fragments: u32, cochange: u32) -> RankWeights {
        RankWeights {
            split_identifiers: true,
            definitions,
            fragments,
            cochange,
        }
    }

    #[test]
    fn code_identifiers_and_fragments_and_paths_of_a_query() {
        let ids = code_identifiers(
            "sync: add `blocking_acquire` to `Semaphore`, see Foo::bar() and parseHTTP or spawn_blocking, not Plain",
        );
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        assert_eq!(
            ids,
            [
                "bar",
                "blocking_acquire",
                "foo",
                "parsehttp",
                "semaphore",
                "spawn_blocking"
            ]
        );
        let f = fragments_of("io: `DelayQueue` the x");
        assert!(f.contains("io") && f.contains("delay_queue") && f.contains("delayqueue"));
        assert!(!f.contains("the") && !f.contains("x"));
        let p: Vec<String> = paths_in("see src/fill.rs, `mod.rs` and ./a/b.toml: v1.2 /etc/x.rs")
            .into_iter()
            .collect();
        assert_eq!(p, ["a/b.toml", "mod.rs", "src/fill.rs"]);
        let frags: Vec<String> = path_fragments("tokio/tests/sync_semaphore.rs")
            .into_iter()
            .collect();
        assert_eq!(
            frags,
            ["semaphore", "sync", "sync_semaphore", "tests", "tokio"]
        );
    }

    #[test]
    fn definitions_of_named_identifiers_win() {
        let files = [
            (
                "src/a.rs",
                "pub struct Semaphore {}\nimpl Semaphore {\n    pub fn acquire(&self) {}\n}\n",
            ),
            (
                "src/b.rs",
                "// a semaphore, the semaphore, one more semaphore, Semaphore\nfn user() {}\n",
            ),
            ("src/c.rs", "fn other() {}\n"),
        ];
        let (_d, t) = tree(&files);
        let q = "add a timeout to `Semaphore`";
        let on = Index::build(&t, &|_| true, weights(20, 0, 0));
        assert_eq!(ranked(&on, q, &[]), ["src/a.rs", "src/b.rs"]);
        let off = Index::build(&t, &|_| true, weights(0, 0, 0));
        assert_eq!(ranked(&off, q, &[]), ["src/b.rs", "src/a.rs"]);
    }

    #[test]
    fn path_fragments_and_whole_paths_win() {
        let files = [
            ("src/a/tcp.rs", "fn open() {}\n"),
            ("src/fs/file.rs", "fn open() {}\n"),
            ("src/z/delay_queue.rs", "fn open() {}\n"),
            ("src/b.rs", "fn close() {}\n"),
        ];
        let (_d, t) = tree(&files);
        let off = Index::build(&t, &|_| true, weights(0, 0, 0));
        let on = Index::build(&t, &|_| true, weights(0, 10, 0));
        // "fs" is too short a word for BM25; as a directory it is a fragment.
        let q = "fs: retry when open fails";
        assert_eq!(ranked(&off, q, &[])[0], "src/a/tcp.rs");
        assert_eq!(ranked(&on, q, &[])[0], "src/fs/file.rs");
        // A camel-case identifier names a snake-case file stem.
        assert_eq!(
            ranked(&on, "open `DelayQueue` again", &[])[0],
            "src/z/delay_queue.rs"
        );
        // A whole path named wins, and so does a bare file name.
        assert_eq!(ranked(&on, "open in src/b.rs", &[])[0], "src/b.rs");
        assert_eq!(ranked(&on, "open tcp.rs", &[])[0], "src/a/tcp.rs");
    }

    #[test]
    fn files_that_changed_together_follow_the_best_ranked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let git = |args: &[&str]| {
            let ok = std::process::Command::new("git")
                .args([
                    "-c",
                    "user.name=t",
                    "-c",
                    "user.email=t@t",
                    "-c",
                    "commit.gpgsign=false",
                ])
                .args(args)
                .current_dir(dir.path())
                .status()
                .expect("git runs")
                .success();
            assert!(ok, "git {args:?}");
        };
        git(&["init", "-q"]);
        let write = |p: &str, text: &str| {
            let p = dir.path().join(p);
            std::fs::create_dir_all(p.parent().expect("a parent")).expect("mkdir");
            std::fs::write(p, text).expect("write");
        };
        write("src/wheel.rs", "fn turn() {}\n");
        write("tests/rotation.rs", "fn check() {}\n");
        write("src/other.rs", "fn other() {}\n");
        git(&["add", "-A"]);
        git(&["commit", "-q", "-m", "one"]);
        for i in 0..2 {
            write("src/wheel.rs", &format!("fn turn() {{}} // {i}\n"));
            write("tests/rotation.rs", &format!("fn check() {{}} // {i}\n"));
            git(&["commit", "-q", "-am", "both"]);
        }
        let t = Tree::walk(dir.path(), &globset::GlobSet::empty()).expect("walk");
        let q = "the wheel turns badly";
        let off = Index::build(&t, &|_| true, weights(0, 0, 0));
        assert_eq!(ranked(&off, q, &[]), ["src/wheel.rs"]);
        let on = Index::build(&t, &|_| true, weights(0, 0, 5));
        assert_eq!(ranked(&on, q, &[]), ["src/wheel.rs", "tests/rotation.rs"]);
    }

    fn ranked(index: &Index, q: &str, boost: &[&str]) -> Vec<String> {
        let boost = boost.iter().map(|s| (*s).to_owned()).collect();
        index
            .rank(&Query::new([q]), &boost)
            .into_iter()
            .map(|(_, p)| p.to_owned())
            .collect()
    }

    #[test]
    fn identifiers_split_on_case_and_underscores() {
        let w: Vec<String> = words("parseHTTPHeader max_file_bytes A1 the 2024 ok").collect();
        assert_eq!(w, ["parse", "httpheader", "max", "file", "bytes"]);
    }

    #[test]
    fn rare_words_win_and_common_words_weigh_nothing() {
        let mut files = vec![
            (
                "src/tokenizer.rs",
                "pub fn tokenize_run() { report(); }\n".to_owned(),
            ),
            ("src/other.rs", "pub fn other() {}\n".to_owned()),
        ];
        for i in 0..30 {
            files.push((
                Box::leak(format!("src/m{i}.rs").into_boxed_str()),
                "// run the report, test that it exists\npub fn run() {}\n".to_owned(),
            ));
        }
        let files: Vec<(&str, &str)> = files.iter().map(|(p, t)| (*p, t.as_str())).collect();
        let (_d, t) = tree(&files);
        let index = Index::build(&t, &|_| true, RankWeights::default());
        assert_eq!(index.len(), 32);
        // "run", "report", "test", "exists" are in most files: only "tokenizer" ranks.
        assert_eq!(
            ranked(&index, "Run the tokenizer and report what exists.", &[]),
            ["src/tokenizer.rs"]
        );
        assert!(ranked(&index, "run the report test", &[]).is_empty());
    }

    #[test]
    fn path_and_contents_and_boost() {
        let (_d, t) = tree(&[
            ("src/login.rs", "pub fn check() {}\n"),
            ("src/session.rs", "fn start() { login_user(); }\n"),
            ("src/db.rs", "pub fn db() {}\n"),
            ("src/cache.rs", "pub fn cache() {}\n"),
        ]);
        let index = Index::build(&t, &|p| p != "src/cache.rs", RankWeights::default());
        assert_eq!(index.len(), 3);
        // The path outweighs one mention in the contents.
        assert_eq!(
            ranked(&index, "Fix the login", &[]),
            ["src/login.rs", "src/session.rs"]
        );
        // A boosted file enters even without a matching word, and a boost can reorder.
        assert_eq!(
            ranked(&index, "Fix the login", &["src/db.rs"]),
            ["src/login.rs", "src/session.rs", "src/db.rs"]
        );
        assert!(ranked(&index, "cache", &[]).is_empty());
    }
}
