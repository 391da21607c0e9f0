//! Finding and reading spec files: the walk of the spec directory (sorted, hidden entries
//! skipped) and a size-limited read.
//!
//! Owns: which files are specs. Must not touch: git, the terminal.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::error::{SpecError, SpecErrorKind, SpecErrors};
use super::{Spec, SpecSet};

/// The largest spec file mmm reads (1 MiB). Larger files are refused from their metadata,
/// without reading them.
pub const MAX_SPEC_BYTES: u64 = 1024 * 1024;

/// Reads and parses one spec file, `root/rel`: the spec, or every problem in it. Errors name
/// `rel`.
pub fn load_file(root: &Path, rel: &Path) -> Result<Spec, SpecErrors> {
    let io = |e: std::io::Error| {
        SpecErrors::from(SpecError::new(rel, None, SpecErrorKind::Io(e.to_string())))
    };
    let full = root.join(rel);
    // A symlink may name any file of the machine: only one that stays inside is read.
    let real = fs::canonicalize(&full).map_err(io)?;
    if !real.starts_with(fs::canonicalize(root).map_err(io)?) {
        return Err(SpecError::new(rel, None, SpecErrorKind::OutsideRepository).into());
    }
    let size = fs::metadata(&full).map_err(io)?.len();
    if size > MAX_SPEC_BYTES {
        return Err(SpecError::new(
            rel,
            None,
            SpecErrorKind::TooLarge {
                size,
                limit: MAX_SPEC_BYTES,
            },
        )
        .into());
    }
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    // The file may grow between the metadata call and the read: never read past the limit.
    fs::File::open(&full)
        .map_err(io)?
        .take(MAX_SPEC_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_SPEC_BYTES {
        return Err(SpecError::new(
            rel,
            None,
            SpecErrorKind::TooLarge {
                size: bytes.len() as u64,
                limit: MAX_SPEC_BYTES,
            },
        )
        .into());
    }
    Spec::parse(rel, &bytes)
}

/// What [`discover`] found: the specs that are sound, and every problem of the others.
#[derive(Debug, Clone)]
pub struct Discovered {
    /// Every spec that parsed and whose dependencies are sound, in dependency order.
    pub specs: SpecSet,
    /// Every problem found, in file order: broken files (every problem of each), duplicate
    /// ids, missing or broken dependencies, cycles, an unreadable spec directory.
    pub errors: Vec<SpecError>,
}

impl Discovered {
    /// The specs, or every problem when there is one.
    pub fn strict(self) -> Result<SpecSet, SpecErrors> {
        if self.errors.is_empty() {
            Ok(self.specs)
        } else {
            Err(SpecErrors(self.errors))
        }
    }

    /// Whether `id` may name a spec that has errors: a file whose stem is `id`, or a spec
    /// with that id, is among the errors. A command told about such an id says it is broken
    /// rather than unknown. When the spec directory cannot be read, any id may be.
    pub fn may_be_broken(&self, id: &str) -> bool {
        self.errors.iter().any(|e| {
            matches!(e.kind, SpecErrorKind::MissingDir | SpecErrorKind::NotADir)
                || e.file.file_stem().is_some_and(|s| s == id)
                || matches!(&e.kind, SpecErrorKind::BrokenDependency { spec, .. } if spec == id)
                || matches!(&e.kind, SpecErrorKind::Cycle(ids) if ids.iter().any(|i| i == id))
        })
    }
}

/// Finds every `*.md` file under `root/spec_dir` (recursively, in sorted order, skipping
/// hidden files and directories and symlinked directories), parses each on its own, and
/// checks ids and dependencies.
///
/// One bad spec stays one bad spec: the others are returned as they are, and every problem is
/// reported (every problem of each broken file, not just the first). A spec that depends on a
/// broken, missing or cyclic spec is left out with an error of its own. `spec_dir` is
/// relative to `root`; errors name files as `spec_dir/...`.
pub fn discover(root: &Path, spec_dir: &Path) -> Discovered {
    let fail = |kind| Discovered {
        specs: SpecSet::empty(),
        errors: vec![SpecError::new(spec_dir, None, kind)],
    };
    let dir = root.join(spec_dir);
    match fs::metadata(&dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return fail(SpecErrorKind::NotADir),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return fail(SpecErrorKind::MissingDir);
        }
        Err(e) => return fail(SpecErrorKind::Io(e.to_string())),
    }
    let mut files = Vec::new();
    let mut errors = Vec::new();
    walk(root, spec_dir, &mut files, &mut errors);
    let mut specs = Vec::new();
    let mut broken = Vec::new();
    for rel in files {
        match load_file(root, &rel) {
            Ok(spec) => specs.push(spec),
            Err(SpecErrors(mut e)) => {
                broken.push(rel);
                errors.append(&mut e);
            }
        }
    }
    let (set, mut more) = SpecSet::sound(specs, &broken);
    errors.append(&mut more);
    Discovered { specs: set, errors }
}

/// Collects spec files under `root/rel` into `files` (relative paths), sorted by name at
/// each level.
fn walk(root: &Path, rel: &Path, files: &mut Vec<PathBuf>, errors: &mut Vec<SpecError>) {
    let read = match fs::read_dir(root.join(rel)) {
        Ok(r) => r,
        Err(e) => {
            errors.push(SpecError::new(rel, None, SpecErrorKind::Io(e.to_string())));
            return;
        }
    };
    let mut entries: Vec<(String, fs::FileType)> = Vec::new();
    for entry in read {
        match entry.and_then(|e| Ok((e.file_name(), e.file_type()?))) {
            Ok((name, ty)) => {
                // Non-UTF-8 names cannot be spec ids; skip them like hidden files.
                if let Some(name) = name.to_str()
                    && !name.starts_with('.')
                {
                    entries.push((name.to_owned(), ty));
                } else if let Some(name) = name.to_str()
                    && hidden_spec(name)
                    && !ty.is_dir()
                {
                    // `...md`, `..dotdot.md`: meant as specs, perhaps, but hidden: say so.
                    errors.push(SpecError::new(rel.join(name), None, SpecErrorKind::Hidden));
                }
            }
            Err(e) => errors.push(SpecError::new(rel, None, SpecErrorKind::Io(e.to_string()))),
        }
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, ty) in entries {
        let child = rel.join(&name);
        if ty.is_dir() {
            walk(root, &child, files, errors);
        } else if name.ends_with(".md") && (ty.is_file() || is_file_symlink(&root.join(&child))) {
            files.push(child);
        }
    }
}

/// A markdown file whose name starts with two dots (`...md`, `..dotdot.md`): hidden like any
/// dot file, but no one hides a draft that way; a mistake or a trick, and an error. (A file
/// hidden with one dot, `.draft.md`, is skipped on purpose.)
fn hidden_spec(name: &str) -> bool {
    name.starts_with("..") && name.ends_with(".md")
}

fn is_file_symlink(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file())
}
