//! The context stage: the prompt of an iteration, built from the spec and what earlier
//! iterations left, and its transcript record.

use std::sync::Arc;

use serde_json::json;

use crate::context::{self, ContextInput, Prompt};
use crate::store::Run;

use super::super::worktree::Worktree;
use super::iteration::Pending;
use super::{EngineError, Loop};

impl Loop<'_, '_, '_> {
    /// Builds the iteration's prompt.
    pub(super) fn build_prompt(
        &mut self,
        worktree: &Worktree,
        n: u32,
    ) -> Result<Prompt, EngineError> {
        let settings = &self.job.settings;
        let spec = self.job.spec;
        let mut input = ContextInput {
            worktree: worktree.path().to_path_buf(),
            spec_id: self.name.clone(),
            spec_content: spec.content.clone(),
            criteria: spec
                .criteria
                .iter()
                .map(|c| context::CriterionView {
                    text: c.text.clone(),
                    verify: c.verify.clone(),
                    last_result: None,
                })
                .collect(),
            context_globs: spec.context.clone(),
            iteration: n,
            max_iterations: settings.max_iterations.max(n),
            failures: self.memory.failures.clone(),
            review_feedback: self
                .job
                .review_feedback
                .iter()
                .cloned()
                .chain(
                    Some(crate::review::render_block(&self.memory.feedback))
                        .filter(|b| !b.is_empty()),
                )
                .collect(),
            problems: self.memory.problems.clone(),
            touched_files: self.memory.touched.iter().cloned().collect(),
            memory: self.memory.summaries.clone(),
            dependency_summaries: self.job.dependency_summaries.clone(),
            dependency_files: self.job.dependency_files.clone(),
            completed_specs: self.job.completed_specs.clone(),
            budget: settings.token_budget,
            options: settings.context.clone(),
            repo: self.repo.clone(),
            tree: self.tree.clone(),
        };
        if input.tree.is_none() {
            let tree = Arc::new(context::walk_tree(&input)?);
            self.tree = Some(tree.clone());
            input.tree = Some(tree);
        }
        if input.repo.is_none() {
            // Once per run, from the worktree at the run's start: the map stays byte-identical
            // (the cached prefix) and 2,000 files are not re-read on every iteration.
            let repo = Arc::new(context::repo_snapshot(&input)?);
            self.repo = Some(repo.clone());
            input.repo = Some(repo);
        }
        Ok(context::build_prompt(&input, self.job.templates)?)
    }

    /// Adds the prompt's record to the transcript (and the checkpoint), and opens the record
    /// the checkpoint streams the answer into.
    pub(super) fn record_prompt(
        &mut self,
        run: &mut Run,
        prompt: &Prompt,
        max_tokens: u32,
        it: &mut Pending,
    ) {
        // The system prompt is the same from one iteration to the next (that is what the
        // provider's cache relies on): written once per run, then referred to.
        let system = match &self.written_system {
            Some((commit, k, blocks)) if *blocks == prompt.system => {
                self.pending_system = None;
                json!({crate::store::SYSTEM_SAME_AS: commit.to_string(), "iteration": k})
            }
            _ => {
                self.pending_system = Some(prompt.system.clone());
                json!(prompt.system)
            }
        };
        let prompt_record = self.record(
            run,
            "prompt",
            json!({
                "model": self.model,
                "max_tokens": max_tokens,
                "system": system,
                "user": prompt.user,
                "omitted": prompt.omitted,
                "files": prompt.files,
                "token_estimate": prompt.token_estimate,
                "stable_tokens": prompt.stable_tokens,
            }),
        );
        it.transcript.push(prompt_record);
        self.checkpoint(|c| c.update(&it.transcript));
        let streaming = self.s.store.new_record(run, "response");
        self.checkpoint(|c| c.stream_into(streaming));
    }
}
