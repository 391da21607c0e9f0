//! The worktree's files as the context builder may see them: not ignored by `.gitignore`, never
//! under `.git`, text only (no NUL in the first 8 KiB, valid UTF-8).
//!
//! Owns: walking and reading the worktree, glob matching, paths named in command output.
//! Must not touch: anything outside the worktree; it never writes.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex, OnceLock};

use globset::{Glob, GlobSet, GlobSetBuilder};
use regex::Regex;

use super::ContextError;
use super::rank::Index;

/// How many bytes at the start of a file are checked for NUL.
const BINARY_SNIFF: usize = 8 * 1024;

/// The files of a worktree, as sorted relative paths with `/` separators.
///
/// A tree kept between iterations also keeps the files read for prompts (their text and size)
/// and the words of every path; [`Tree::forget`] drops the files that changed on disk.
#[derive(Debug)]
pub struct Tree {
    root: PathBuf,
    /// Every visible file (not ignored, not under `.git`), sorted.
    pub files: BTreeSet<String>,
    /// Files read by [`Tree::read_text_cached`], by relative path.
    read: Mutex<HashMap<String, Arc<ReadFile>>>,
    /// The relevance index of the files, built once per tree.
    index: OnceLock<Index>,
}

/// A file as read: its size in bytes and its text (`None`: binary).
#[derive(Debug)]
struct ReadFile {
    len: usize,
    text: Option<String>,
}

impl Clone for Tree {
    fn clone(&self) -> Self {
        Tree {
            root: self.root.clone(),
            files: self.files.clone(),
            read: Mutex::new(HashMap::new()),
            index: OnceLock::new(),
        }
    }
}

impl PartialEq for Tree {
    fn eq(&self, other: &Self) -> bool {
        self.root == other.root && self.files == other.files
    }
}

impl Eq for Tree {}

impl Tree {
    /// Walks `root` honouring `.gitignore`, `.git/info/exclude` and `.ignore` files of the
    /// worktree itself (not the user's global excludes, which would make the prompt depend on
    /// the machine), and skipping `.git` whatever it is (a directory or a worktree's file) and
    /// mmm's own `.mmm/` directory (configuration, templates and scripts are not the project).
    pub fn walk(root: &Path, exclude: &GlobSet) -> Result<Tree, ContextError> {
        let mut files = BTreeSet::new();
        let walker = ignore::WalkBuilder::new(root)
            .hidden(false)
            .parents(false)
            .git_ignore(true)
            .git_exclude(true)
            .git_global(false)
            .require_git(false)
            .follow_links(false)
            .filter_entry(|e| {
                e.file_name() != ".git" && !(e.depth() == 1 && e.file_name() == ".mmm")
            })
            .build();
        for entry in walker {
            let entry = entry.map_err(|e| ContextError::Walk {
                path: root.to_path_buf(),
                message: e.to_string(),
            })?;
            if !entry.file_type().is_some_and(|t| t.is_file()) {
                continue;
            }
            let Ok(rel) = entry.path().strip_prefix(root) else {
                continue;
            };
            let rel = rel_string(rel);
            if !exclude.is_match(&rel) {
                files.insert(rel);
            }
        }
        Ok(Tree {
            root: root.to_path_buf(),
            files,
            read: Mutex::new(HashMap::new()),
            index: OnceLock::new(),
        })
    }

    /// Forgets what was read of `paths` (relative, `/`-separated): files that changed on disk
    /// since they were read.
    pub fn forget<'a>(&self, paths: impl IntoIterator<Item = &'a str>) {
        let mut read = self.read.lock().unwrap_or_else(|e| e.into_inner());
        for p in paths {
            read.remove(p);
        }
    }

    /// The relevance index of the tree's files, built by `build` the first time.
    pub(crate) fn index(&self, build: impl FnOnce() -> Index) -> &Index {
        self.index.get_or_init(build)
    }

    /// The text of the first `max` bytes of a visible file (cut at a character boundary),
    /// `None` when it is binary or unreadable; from what was read before when it was.
    pub(crate) fn read_prefix(&self, rel: &str, max: usize) -> Option<String> {
        use std::io::Read;
        if let Some(f) = self.cached(rel) {
            let text = f.text.as_ref()?;
            let mut end = text.len().min(max);
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            return Some(text[..end].to_owned());
        }
        let file = std::fs::File::open(self.root.join(rel)).ok()?;
        let mut bytes = Vec::new();
        file.take(max as u64).read_to_end(&mut bytes).ok()?;
        if bytes[..bytes.len().min(BINARY_SNIFF)].contains(&0) {
            return None;
        }
        match String::from_utf8(bytes) {
            Ok(t) => Some(t),
            // A prefix may end inside a character: keep what is valid.
            Err(e) if e.utf8_error().error_len().is_none() => {
                let valid = e.utf8_error().valid_up_to();
                let mut bytes = e.into_bytes();
                bytes.truncate(valid);
                String::from_utf8(bytes).ok()
            }
            Err(_) => None,
        }
    }

    /// The size of a visible file in bytes (0 when it cannot be read), from what was read
    /// before when it was.
    pub(crate) fn size(&self, rel: &str) -> usize {
        if let Some(f) = self.cached(rel) {
            return f.len;
        }
        std::fs::metadata(self.root.join(rel)).map_or(0, |m| m.len() as usize)
    }

    /// [`Tree::read_text`], keeping the text until [`Tree::forget`] is told the file changed.
    pub(crate) fn read_text_cached(&self, rel: &str) -> Result<Option<String>, ContextError> {
        if let Some(f) = self.cached(rel) {
            return Ok(f.text.clone());
        }
        let path = self.root.join(rel);
        let bytes = std::fs::read(&path).map_err(|source| ContextError::Io { path, source })?;
        let len = bytes.len();
        let text = text_of(bytes);
        self.read.lock().unwrap_or_else(|e| e.into_inner()).insert(
            rel.to_owned(),
            Arc::new(ReadFile {
                len,
                text: text.clone(),
            }),
        );
        Ok(text)
    }

    fn cached(&self, rel: &str) -> Option<Arc<ReadFile>> {
        self.read
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(rel)
            .cloned()
    }

    /// The worktree's root.
    pub fn root_path(&self) -> &Path {
        &self.root
    }

    /// Whether `rel` is a visible file.
    pub fn contains(&self, rel: &str) -> bool {
        self.files.contains(rel)
    }

    /// Normalises a path given by the engine or found in output (absolute inside the worktree,
    /// `./`-prefixed, or relative) to the tree's form, if it names a visible file.
    pub fn resolve(&self, path: &Path) -> Option<String> {
        let rel = path.strip_prefix(&self.root).unwrap_or(path);
        let rel = rel_string(rel);
        let rel = rel.trim_start_matches("./");
        self.files.get(rel).cloned()
    }

    /// Reads a visible file as text. `Ok(None)` means binary (NUL in the first 8 KiB or not
    /// UTF-8).
    pub fn read_text(&self, rel: &str) -> Result<Option<String>, ContextError> {
        let path = self.root.join(rel);
        let bytes = std::fs::read(&path).map_err(|source| ContextError::Io { path, source })?;
        Ok(text_of(bytes))
    }

    /// Whether `rel` is a directory inside the worktree.
    pub fn is_dir(&self, rel: &str) -> bool {
        !rel.is_empty() && self.root.join(rel).is_dir()
    }
}

/// The text of a file's bytes; `None` when binary (NUL in the first 8 KiB, or not UTF-8).
fn text_of(bytes: Vec<u8>) -> Option<String> {
    if bytes[..bytes.len().min(BINARY_SNIFF)].contains(&0) {
        return None;
    }
    String::from_utf8(bytes).ok()
}

fn rel_string(rel: &Path) -> String {
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// Compiles globs into a set; a bad glob is an error naming it and `what` it came from.
pub fn glob_set(globs: &[String], what: &str) -> Result<GlobSet, ContextError> {
    let mut b = GlobSetBuilder::new();
    for g in globs {
        b.add(compile(g, what)?);
    }
    b.build().map_err(|e| ContextError::BadGlob {
        glob: globs.join(", "),
        what: what.to_owned(),
        message: e.to_string(),
    })
}

fn compile(g: &str, what: &str) -> Result<Glob, ContextError> {
    globset::GlobBuilder::new(g)
        .literal_separator(true)
        .build()
        .map_err(|e| ContextError::BadGlob {
            glob: g.to_owned(),
            what: what.to_owned(),
            message: e.kind().to_string(),
        })
}

/// The files a context entry of a spec names: a glob (`src/**/*.rs`), a file, or a directory
/// (everything under it). Sorted.
pub fn match_context(tree: &Tree, entry: &str) -> Result<Vec<String>, ContextError> {
    let entry = entry.trim().trim_start_matches("./");
    let trimmed = entry.trim_end_matches('/');
    if tree.contains(trimmed) {
        return Ok(vec![trimmed.to_owned()]);
    }
    let pattern = if tree.is_dir(trimmed) || entry.ends_with('/') {
        format!("{trimmed}/**")
    } else {
        entry.to_owned()
    };
    let m = compile(&pattern, "the spec's context section")?.compile_matcher();
    Ok(tree
        .files
        .iter()
        .filter(|f| m.is_match(f))
        .cloned()
        .collect())
}

/// `path:line` (rustc, gcc, eslint, go, pytest), `path(line)` (msbuild, tsc) and
/// `File "path", line N` (Python tracebacks).
static PATH_IN_OUTPUT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"(?:File "([^"\n]+)", line \d+)|((?:[A-Za-z]:)?[A-Za-z0-9_./\\-]*[A-Za-z0-9_-]\.[A-Za-z0-9]+)(?::\d+|\(\d+)"#,
    )
    .expect("a valid literal regex")
});

/// Files of the tree named in command output, in order of first mention.
pub fn paths_in_output(tree: &Tree, output: &str) -> Vec<String> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for cap in PATH_IN_OUTPUT.captures_iter(output) {
        let Some(m) = cap.get(1).or_else(|| cap.get(2)) else {
            continue;
        };
        let raw = m.as_str().replace('\\', "/");
        if let Some(rel) = tree.resolve(Path::new(&raw))
            && seen.insert(rel.clone())
        {
            out.push(rel);
        }
    }
    out
}
