//! Notes: the transcripts and metrics notes of iteration commits.
//!
//! Owns: building a notes commit that adds a note (as a union of JSON Lines with any note
//! already there) and moving the notes ref to it by compare-and-swap, building it again on
//! the new tip when another writer moved the ref first (libgit2's own note writing forces the
//! ref, see `Store::prepare_note`). Reading a note is in `read.rs`.

use git2::{Oid, Repository};

use super::refs::{MAX_ATTEMPTS, backoff};
use super::{Result, Store, StoreError, record};

impl Store {
    /// Builds (without moving any ref) the notes commit that adds `new` to the note of `commit`
    /// on the current tip of `notes_ref`, as a union with any note already there. `None` when
    /// the note already holds every line. [`Store::publish_note`] moves the ref.
    ///
    /// Not `Repository::note`: libgit2's `git_note_create` moves the notes ref with a *forced*
    /// write (`git_reference_create(.., force = 1)`), so two concurrent writers silently drop
    /// each other's notes. We build the notes commit ourselves and move the ref by
    /// compare-and-swap.
    pub(super) fn prepare_note(
        &self,
        notes_ref: &str,
        commit: Oid,
        new: &str,
    ) -> Result<Option<NoteCommit>> {
        let sig = self.signature()?;
        let what = format!("write the note {notes_ref} on {commit}");
        let hex = commit.to_string();
        let old = self.ref_target(notes_ref)?;
        let old_commit = match old {
            Some(o) => Some(
                self.repo
                    .find_commit(o)
                    .map_err(StoreError::git(format!("read {notes_ref}")))?,
            ),
            None => None,
        };
        let old_tree = match &old_commit {
            Some(c) => Some(
                c.tree()
                    .map_err(StoreError::git(format!("read {notes_ref}")))?,
            ),
            None => None,
        };
        let existing = match &old_tree {
            Some(t) => find_note_blob(&self.repo, t, &hex)
                .map_err(StoreError::git(format!("read {notes_ref}")))?,
            None => None,
        };
        let text = match existing {
            Some(blob) => {
                let old_text = String::from_utf8_lossy(blob.content()).into_owned();
                let merged = record::union_jsonl(&old_text, new);
                if merged == old_text {
                    return Ok(None);
                }
                merged
            }
            None => new.to_owned(),
        };
        let blob = self
            .repo
            .blob(text.as_bytes())
            .map_err(StoreError::git(&what))?;
        let tree = insert_note(&self.repo, old_tree.as_ref(), &hex, blob)
            .map_err(StoreError::git(&what))?;
        let tree = self.repo.find_tree(tree).map_err(StoreError::git(&what))?;
        let parents: Vec<&git2::Commit<'_>> = old_commit.iter().collect();
        let notes_commit = self
            .repo
            .commit(
                None,
                &sig,
                &sig,
                "Notes added by 'git mmm'\n",
                &tree,
                &parents,
            )
            .map_err(StoreError::git(&what))?;
        Ok(Some(NoteCommit {
            old,
            new: notes_commit,
        }))
    }

    /// Moves `notes_ref` to a prepared notes commit by compare-and-swap; when another writer
    /// moved it first, prepares the note again on the new tip and retries.
    pub(super) fn publish_note(
        &self,
        notes_ref: &str,
        commit: Oid,
        new: &str,
        mut prepared: Option<NoteCommit>,
    ) -> Result<()> {
        let hex = commit.to_string();
        for attempt in 0..MAX_ATTEMPTS {
            let Some(p) = prepared else {
                return Ok(());
            };
            if self.cas_ref(notes_ref, p.old, p.new, &format!("mmm: note on {hex}"))? {
                return Ok(());
            }
            backoff(attempt);
            prepared = self.prepare_note(notes_ref, commit, new)?;
        }
        Err(StoreError::Contention {
            what: format!("write the note {notes_ref} on {commit}"),
            attempts: MAX_ATTEMPTS,
        })
    }
}

/// A notes commit built on `old`, the notes ref's tip when it was built.
#[derive(Debug, Clone, Copy)]
pub(super) struct NoteCommit {
    old: Option<Oid>,
    new: Oid,
}

/// The note blob for `hex` in a notes tree, following any fanout (`ab/cdef…`) git made.
fn find_note_blob<'r>(
    repo: &'r Repository,
    tree: &git2::Tree<'_>,
    hex: &str,
) -> Result<Option<git2::Blob<'r>>, git2::Error> {
    if let Some(e) = tree.get_name(hex) {
        return repo.find_blob(e.id()).map(Some);
    }
    if hex.len() > 2
        && let Some(e) = tree.get_name(&hex[..2])
        && e.kind() == Some(git2::ObjectType::Tree)
    {
        let sub = repo.find_tree(e.id())?;
        return find_note_blob(repo, &sub, &hex[2..]);
    }
    Ok(None)
}

/// A notes tree with `blob` as the note for `hex`: replaces an existing note where it is,
/// follows existing fanout directories, and otherwise inserts flat (as libgit2 does).
fn insert_note(
    repo: &Repository,
    tree: Option<&git2::Tree<'_>>,
    hex: &str,
    blob: Oid,
) -> Result<Oid, git2::Error> {
    let mut tb = repo.treebuilder(tree)?;
    if let Some(t) = tree
        && t.get_name(hex).is_none()
        && hex.len() > 2
        && let Some(e) = t.get_name(&hex[..2])
        && e.kind() == Some(git2::ObjectType::Tree)
    {
        let sub = repo.find_tree(e.id())?;
        let sub_id = insert_note(repo, Some(&sub), &hex[2..], blob)?;
        tb.insert(&hex[..2], sub_id, 0o040000)?;
        return tb.write();
    }
    tb.insert(hex, blob, 0o100644)?;
    tb.write()
}
