//! Ranking files by relevance: BM25 of a query (the spec, its criteria, failures, feedback)
//! over each file's path words, identifiers (split on case and underscores) and contents. A
//! word's weight is its rarity across the repository, and a word found in most files weighs
//! nothing, so ordinary words of a spec ("run", "test", "change") pull nothing in.
//!
//! Owns: the inverted index and the scores. Must not touch: anything but the files the tree
//! lists; it never writes.

use std::collections::{BTreeSet, HashMap};

use super::files::Tree;

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

/// The inverted index of a tree's files.
#[derive(Debug, Default)]
pub(crate) struct Index {
    /// Indexed files, by document number.
    paths: Vec<String>,
    /// Each document's length in (weighted) words.
    lens: Vec<u32>,
    /// Word → postings (document, weighted frequency), by document number.
    postings: HashMap<String, Vec<(u32, u32)>>,
    avg_len: f64,
}

impl Index {
    /// Indexes the files of `tree` that `keep` accepts (text files only; the first
    /// [`INDEX_BYTES`] of each).
    pub(crate) fn build(tree: &Tree, keep: &dyn Fn(&str) -> bool) -> Index {
        let mut index = Index::default();
        let mut total: u64 = 0;
        let mut counts: HashMap<String, u32> = HashMap::new();
        for path in tree.files.iter().filter(|f| keep(f)) {
            counts.clear();
            for w in words(path) {
                *counts.entry(w).or_default() += PATH_WEIGHT;
            }
            if let Some(text) = tree.read_prefix(path, INDEX_BYTES) {
                for w in words(&text) {
                    *counts.entry(w).or_default() += 1;
                }
            }
            let doc = u32::try_from(index.paths.len()).unwrap_or(u32::MAX);
            let len: u32 = counts.values().sum();
            total += u64::from(len);
            for (w, n) in counts.drain() {
                index.postings.entry(w).or_default().push((doc, n));
            }
            index.paths.push(path.clone());
            index.lens.push(len);
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

    /// The files matching `query`, best first (ties by path), with their scores; files in
    /// `boost` score half as much again, plus a little (so that they rank when nothing matches).
    pub(crate) fn rank(&self, query: &Query, boost: &BTreeSet<String>) -> Vec<(f64, &str)> {
        let mut scores: HashMap<u32, f64> = HashMap::new();
        for word in &query.words {
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
}

/// What a ranking looks for: the distinct words of its texts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Query {
    words: BTreeSet<String>,
}

impl Query {
    /// The words of `texts`, lower-cased, identifiers split on case and underscores, without
    /// common English words.
    pub(crate) fn new<'a>(texts: impl IntoIterator<Item = &'a str>) -> Query {
        Query {
            words: texts.into_iter().flat_map(words).collect(),
        }
    }

    /// Whether the query has no words.
    pub(crate) fn is_empty(&self) -> bool {
        self.words.is_empty()
    }
}

/// The ranking words of a text: runs of letters and digits, split at lower-to-upper case
/// changes (`loginHandler` → `login`, `handler`), lower-cased, of 3 letters or more, not all
/// digits, not a stop word.
pub(crate) fn words(s: &str) -> impl Iterator<Item = String> + '_ {
    split_words(s).filter(|w| {
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
        let index = Index::build(&t, &|_| true);
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
        let index = Index::build(&t, &|p| p != "src/cache.rs");
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
