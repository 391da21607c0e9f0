//! The git-native store: iteration commits on `refs/heads/mmm/<spec>`, transcripts and metrics
//! as JSON Lines notes, wip checkpoints, the archive, rollback and `doctor`.
//!
//! Owns: every write to mmm's refs, in the crash-safe order of `git-state.md`.
