//! `git mmm run --pr` (and `[github] pr = true`): the spec's pull request kept current during
//! the loop. After every recorded iteration and at each loop's end the pull request is opened
//! or updated (`pr.rs`'s plan, the real status comment); at completion it is marked ready, and
//! with `[github] merge_on_approval` an approved, complete, non-draft pull request is merged.
//! GitHub failures never stop the loop: each is told on stderr, and the pull request catches
//! up at the next iteration or with `git mmm pr SPEC`.

use std::collections::BTreeSet;
use std::io::Write;

use mmm::config::Config;
use mmm::engine::review::ReviewSource;
use mmm::engine::{Event, Redactor, StopReason};
use mmm::github::pull::{self, Standing};
use mmm::github::source::HostSource;
use mmm::github::{GitHub, MergeMethod, ReviewHost};
use mmm::review::Verdict;
use mmm::spec::SpecSet;
use mmm::store::Store;

use super::{CliError, Ctx};

/// The client for `run --pr`: the token, the repository and the base branch (the current one).
pub fn client(
    ctx: &Ctx,
    config: &Config,
    store: &Store,
    remote: &str,
) -> Result<(GitHub, String), CliError> {
    let token = super::pr::token(ctx)?;
    let base = super::pr::base_branch(store, None)?;
    Ok((super::pr::client(ctx, config, store, remote, token)?, base))
}

/// Keeps the pull requests of a run current, from the run's events.
pub struct Publisher<'a> {
    /// The client.
    pub client: &'a GitHub,
    /// The review source over the same client (for merge on approval).
    pub source: &'a HostSource<'a>,
    /// The configuration.
    pub config: &'a Config,
    /// Every spec.
    pub specs: &'a SpecSet,
    /// The branch the pull requests merge into.
    pub base: String,
    /// Hides secrets in what is told.
    pub redactor: &'a Redactor,
}

impl Publisher<'_> {
    /// Publishes after a recorded iteration or a loop's end; failures are told, not returned.
    pub fn event(&self, store: &Store, e: &Event) {
        let (spec, finished) = match e {
            Event::Recorded { spec, .. } => (spec, None),
            Event::Finished { spec, reason, .. } => (spec, Some(*reason)),
            _ => return,
        };
        if let Err(e) = self.publish(store, spec, finished) {
            let text = format!(
                "warning: GitHub: spec `{spec}`: {:#}; the loop goes on, and the pull request \
                 catches up at the next iteration or with `git mmm pr {spec}`",
                e.error
            );
            let _ = writeln!(std::io::stderr(), "{}", self.redactor.redact(&text));
        }
    }

    fn publish(
        &self,
        store: &Store,
        spec: &str,
        finished: Option<StopReason>,
    ) -> Result<(), CliError> {
        let Some(spec) = self.specs.iter().find(|s| s.id.as_str() == spec) else {
            return Ok(());
        };
        let Some(last) = store.history(&spec.id)?.last().cloned() else {
            return Ok(());
        };
        let mut plan = super::pr::plan(self.config, spec, &last, self.base.clone());
        if finished.is_none() && plan.standing != Standing::Complete {
            plan.standing = Standing::Running;
        }
        if let Some(text) = super::pr::report_status(store, self.config, spec, self.client) {
            plan.status = text;
        }
        let out = pull::publish(self.client, &plan).map_err(super::pr::github_error)?;
        let complete = finished.is_some_and(|r| r.is_complete());
        if complete && self.config.github.merge_on_approval && !out.draft {
            self.merge_if_approved(spec, last.commit, out.number)?;
        }
        Ok(())
    }

    fn merge_if_approved(
        &self,
        spec: &mmm::spec::Spec,
        head: git2::Oid,
        number: u64,
    ) -> Result<(), CliError> {
        let poll = self
            .source
            .poll(&spec.id, head, &BTreeSet::new())
            .map_err(|e| anyhow::anyhow!(e))?;
        if poll.verdict != Verdict::Approved {
            return Ok(());
        }
        self.client
            .merge(
                number,
                merge_method(&self.config.github.merge_method),
                &head.to_string(),
            )
            .map_err(super::pr::github_error)
    }
}

fn merge_method(name: &str) -> MergeMethod {
    match name {
        "squash" => MergeMethod::Squash,
        "rebase" => MergeMethod::Rebase,
        _ => MergeMethod::Merge,
    }
}
