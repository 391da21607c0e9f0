//! Apply: writes edits inside the iteration's worktree only, refusing every escape.
