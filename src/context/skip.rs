//! Files that never enter the prompt unless the spec's context names them: generated and
//! vendored files (`.gitattributes`' `linguist-generated`, `linguist-vendored`, `-diff`), lock
//! files, snapshots and other machine-written text, test fixture trees. They cost tokens, share
//! ordinary words with every spec, and are not where a change is made.
//!
//! Owns: the default skip globs and the reading of `.gitattributes`. Must not touch: anything
//! but the `.gitattributes` files of the tree it is given.

use globset::GlobSet;

use super::ContextError;
use super::files::{Tree, glob_set};

/// The default `[context] skip` globs.
pub const DEFAULT_SKIP: &[&str] = &[
    "**/*.lock",
    "**/package-lock.json",
    "**/pnpm-lock.yaml",
    "**/go.sum",
    "**/*.svg",
    "**/*.snap",
    "**/*.golden",
    "**/*.min.js",
    "**/*.min.css",
    "**/*.map",
    "**/__snapshots__/**",
    "**/snapshots/**",
    "**/golden/**",
    "**/testdata/**",
    "**/test_data/**",
    "**/fixtures/**",
    "**/__fixtures__/**",
    "**/vendor/**",
    "**/node_modules/**",
];

/// Which files are skipped: the configured globs and, when asked, what `.gitattributes` marks
/// as generated, vendored or not diffable.
#[derive(Debug)]
pub(crate) struct Skip {
    globs: GlobSet,
    attributes: GlobSet,
    /// `!pattern`-style unset attributes (`-linguist-generated`) win over a set one.
    unset: GlobSet,
}

impl Skip {
    /// The skip rules for `tree` under the `skip` globs; `.gitattributes` files of the tree are
    /// read when `generated` is set.
    pub(crate) fn new(tree: &Tree, skip: &[String], generated: bool) -> Result<Skip, ContextError> {
        let (set, unset) = if generated {
            attribute_globs(tree)
        } else {
            (Vec::new(), Vec::new())
        };
        Ok(Skip {
            globs: glob_set(skip, "the skip option")?,
            // Patterns from .gitattributes that do not compile are ignored, as git ignores them.
            attributes: glob_set(&set, ".gitattributes").unwrap_or_default(),
            unset: glob_set(&unset, ".gitattributes").unwrap_or_default(),
        })
    }

    /// Why `rel` is skipped, if it is.
    pub(crate) fn reason(&self, rel: &str) -> Option<&'static str> {
        if self.globs.is_match(rel) {
            Some("matches [context] skip")
        } else if self.attributes.is_match(rel) && !self.unset.is_match(rel) {
            Some("generated or vendored (.gitattributes)")
        } else {
            None
        }
    }

    /// Whether `rel` is skipped.
    pub(crate) fn skips(&self, rel: &str) -> bool {
        self.reason(rel).is_some()
    }
}

/// The globs of every `.gitattributes` in the tree whose attributes mark files as generated,
/// vendored or not diffable, and of those that unset the mark.
fn attribute_globs(tree: &Tree) -> (Vec<String>, Vec<String>) {
    let mut set = Vec::new();
    let mut unset = Vec::new();
    for file in tree
        .files
        .iter()
        .filter(|f| *f == ".gitattributes" || f.ends_with("/.gitattributes"))
    {
        let dir = file.strip_suffix(".gitattributes").unwrap_or("");
        let Ok(Some(text)) = tree.read_text(file) else {
            continue;
        };
        for (glob, on) in parse_attributes(dir, &text) {
            if on {
                set.push(glob);
            } else {
                unset.push(glob);
            }
        }
    }
    (set, unset)
}

/// The (glob, marked) pairs of one `.gitattributes` file in directory `dir` (`""` or
/// `"sub/"`): a line whose attributes include `linguist-generated`, `linguist-vendored`
/// (set or `=true`), `-diff` or `binary` marks its pattern; `-linguist-…` or `=false` unmarks.
pub(crate) fn parse_attributes(dir: &str, text: &str) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts = line.split_whitespace();
        let Some(pattern) = parts.next() else {
            continue;
        };
        let mut mark = None;
        for attr in parts {
            match attr {
                "linguist-generated"
                | "linguist-generated=true"
                | "linguist-vendored"
                | "linguist-vendored=true"
                | "-diff"
                | "binary" => mark = Some(true),
                "-linguist-generated"
                | "linguist-generated=false"
                | "-linguist-vendored"
                | "linguist-vendored=false" => mark = Some(false),
                _ => {}
            }
        }
        if let Some(on) = mark {
            out.push((glob_of(dir, pattern), on));
        }
    }
    out
}

/// A gitattributes pattern as a glob over repository paths: without a `/` (but a trailing
/// one) it matches a name at any depth below `dir`; with one it is anchored at `dir`. A
/// directory pattern covers what is below it.
fn glob_of(dir: &str, pattern: &str) -> String {
    let trimmed = pattern.trim_end_matches('/');
    let anchored = trimmed.contains('/');
    let body = trimmed.trim_start_matches('/');
    let base = if anchored {
        format!("{dir}{body}")
    } else {
        format!("{dir}**/{body}")
    };
    if pattern.ends_with('/') || body.ends_with("/**") {
        if body.ends_with("/**") {
            base
        } else {
            format!("{base}/**")
        }
    } else {
        base
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gitattributes_marks_and_unmarks() {
        let text = "# comment\n*.pb.go linguist-generated=true\n/gen/** linguist-generated\n\
                    third_party/ linguist-vendored\n*.bin -diff\n*.txt text eol=lf\n\
                    keep.pb.go -linguist-generated\n";
        assert_eq!(
            parse_attributes("", text),
            [
                ("**/*.pb.go".to_owned(), true),
                ("gen/**".to_owned(), true),
                ("**/third_party/**".to_owned(), true),
                ("**/*.bin".to_owned(), true),
                ("**/keep.pb.go".to_owned(), false),
            ]
        );
        assert_eq!(
            parse_attributes("sub/", "data/*.json linguist-generated\n"),
            [("sub/data/*.json".to_owned(), true)]
        );
    }

    #[test]
    fn default_globs_skip_machine_text() {
        let set = glob_set(
            &DEFAULT_SKIP
                .iter()
                .map(|s| (*s).to_owned())
                .collect::<Vec<_>>(),
            "test",
        )
        .expect("globs");
        for skipped in [
            "Cargo.lock",
            "web/package-lock.json",
            "docs/logo.svg",
            "tests/snapshots/a__b.snap",
            "tests/fixtures/deep/x.rs",
            "pkg/testdata/in.txt",
        ] {
            assert!(set.is_match(skipped), "{skipped}");
        }
        for kept in ["src/lib.rs", "Cargo.toml", "tests/run.rs", "src/lock.rs"] {
            assert!(!set.is_match(kept), "{kept}");
        }
    }
}
