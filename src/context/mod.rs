//! Context building: the prompt for one iteration, packed by priority into the model's window.
//!
//! The engine fills a [`ContextInput`] (spec text, criteria, the latest failures and feedback,
//! memory, budget); [`build_prompt`] reads the worktree (never `.git`, never ignored or binary
//! files), ranks what it could show, packs it greedily by [`Priority`] into
//! `window − output_reserve`, and renders the [`Templates`]. The result is a [`Prompt`] whose
//! system part is the *stable* prefix (instructions, project structure, spec and criteria text,
//! identical between iterations of one spec revision; then the files chosen only by name, which
//! do not change while the model leaves them alone; a cache breakpoint after each) and whose
//! user part is the *volatile* rest (iteration N of M, feedback, failures, the contents of files
//! the spec names or the model touched, memory). Everything left out is listed in
//! [`Prompt::omitted`].
//!
//! Owns: item selection, packing, prompt rendering, templates. Must not touch: git refs, the
//! network, the terminal, the process environment; it only reads files of the worktree it is
//! given and the template directory it is given.

mod files;
mod fill;
mod history;
mod pack;
mod project;
mod rank;
mod repomap;
mod skip;
mod template;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;

use fill::{Body, Item, Placed, Share, Slot};

pub use files::Tree;
pub use fill::{Included, ItemReport};
pub use pack::{Priority, cut_to_tokens, estimate_tokens, trim_output, truncation_marker};
pub use project::ProjectMeta;
pub use rank::RankWeights;
pub use repomap::{outline, symbols};
pub use skip::DEFAULT_SKIP;
pub use template::{PLACEHOLDERS, Template, Templates, VOLATILE_PLACEHOLDERS, builtin_templates};

/// Errors of context building and template loading.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    /// A template uses a placeholder that does not exist.
    #[error(
        "{}:{line}: unknown placeholder `{{{name}}}`; {hint}. Write `{{{{` and `}}}}` for literal braces",
        .file.display()
    )]
    TemplateUnknownPlaceholder {
        /// The template file.
        file: PathBuf,
        /// 1-based line of the placeholder.
        line: usize,
        /// The placeholder as written.
        name: String,
        /// A did-you-mean and the list of known placeholders.
        hint: String,
    },
    /// A template has a `{` that is not closed on the same line.
    #[error(
        "{}:{line}: unclosed `{{` in the line `{text}`; close the placeholder with `}}` on the same line, or write `{{{{` for a literal brace",
        .file.display()
    )]
    TemplateUnclosed {
        /// The template file.
        file: PathBuf,
        /// 1-based line of the `{`.
        line: usize,
        /// The line, trimmed.
        text: String,
    },
    /// A template has a `}` without a `{`.
    #[error("{}:{line}: unmatched `}}`; write `}}}}` for a literal brace", .file.display())]
    TemplateUnmatchedClose {
        /// The template file.
        file: PathBuf,
        /// 1-based line of the `}`.
        line: usize,
    },
    /// The system template uses a placeholder whose value changes every iteration.
    #[error(
        "{}:{line}: the system template uses `{{{name}}}`, which changes from one iteration to the next; the system template is the cached prefix of the prompt and must stay identical between iterations, so move `{{{name}}}` to iteration.md",
        .file.display()
    )]
    TemplateVolatileInSystem {
        /// The template file.
        file: PathBuf,
        /// 1-based line of the first use.
        line: usize,
        /// The volatile placeholder.
        name: String,
    },
    /// A file could not be read.
    #[error("cannot read {}: {source}; check that it exists and is readable", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The worktree could not be walked.
    #[error("cannot list the files of {}: {message}; check the worktree's permissions", .path.display())]
    Walk {
        /// The worktree.
        path: PathBuf,
        /// The cause.
        message: String,
    },
    /// A glob does not parse.
    #[error(
        "bad glob `{glob}` in {what}: {message}; globs use `*`, `**`, `?`, `[abc]` and `{{a,b}}`"
    )]
    BadGlob {
        /// The glob as written.
        glob: String,
        /// Where it came from (the spec's context section, the include or exclude option).
        what: String,
        /// The parser's complaint.
        message: String,
    },
}

/// An acceptance criterion as the prompt shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CriterionView {
    /// The criterion's text.
    pub text: String,
    /// Its check command, if any.
    pub verify: Option<String>,
    /// Whether its check passed at the last validation (`None`: not checked yet, or no check).
    pub last_result: Option<bool>,
}

/// A failed gate or criterion check of the latest validation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// The gate or check (`test`, `criterion 2`).
    pub name: String,
    /// The command that ran.
    pub command: String,
    /// Its combined output (trimmed here to the first and last lines).
    pub output: String,
}

/// The model's window and how much of it is kept for the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TokenBudget {
    /// The context window in tokens.
    pub window: usize,
    /// Tokens kept free for the model's output (`max_tokens`).
    pub output_reserve: usize,
}

impl Default for TokenBudget {
    fn default() -> Self {
        TokenBudget {
            window: 200_000,
            output_reserve: 16_000,
        }
    }
}

/// Which files may enter the prompt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContextOptions {
    /// If not empty, only matching files enter the repository map and the low-priority
    /// relevance ranking (files the spec names, touched files and failure files still enter).
    pub include: Vec<String>,
    /// Files matching these never enter, whatever names them.
    pub exclude: Vec<String>,
    /// Files larger than this enter as their outline (top-level signatures with line
    /// numbers), or not at all when no outline is known for their language.
    pub max_file_bytes: usize,
    /// Whether to build the repository map.
    pub repo_map: bool,
    /// Tokens the prompt may use; the window minus the output reserve stays the hard ceiling,
    /// against which only critical items (spec, criteria, failures) are cut.
    pub budget_tokens: usize,
    /// Percent of `budget_tokens` for the repository map.
    pub map_share: usize,
    /// Percent of `budget_tokens` for files (those ranked by relevance stop there; those the
    /// spec names, touched or named in failures count but only the budget bounds them).
    pub files_share: usize,
    /// Percent of `budget_tokens` for memory and dependency summaries.
    pub memory_share: usize,
    /// Globs of files that enter only when the spec's context names them (or the model
    /// touched them).
    pub skip: Vec<String>,
    /// Also skip what `.gitattributes` marks `linguist-generated`, `linguist-vendored`, `-diff`.
    pub skip_generated: bool,
    /// The weights of the ranking's signals (not a configuration key: the benchmark's knob).
    pub ranking: RankWeights,
}

impl Default for ContextOptions {
    fn default() -> Self {
        ContextOptions {
            include: Vec::new(),
            exclude: Vec::new(),
            max_file_bytes: 32_000,
            repo_map: true,
            budget_tokens: 40_000,
            map_share: 5,
            files_share: 85,
            memory_share: 10,
            skip: DEFAULT_SKIP.iter().map(|s| (*s).to_owned()).collect(),
            skip_generated: true,
            ranking: RankWeights::default(),
        }
    }
}

/// Everything the context builder needs for one iteration; the engine fills it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContextInput {
    /// The iteration's worktree (a git worktree; its `.git` is never read).
    pub worktree: PathBuf,
    /// The spec's id.
    pub spec_id: String,
    /// The spec's markdown, as committed.
    pub spec_content: String,
    /// Its acceptance criteria.
    pub criteria: Vec<CriterionView>,
    /// Paths, directories and globs from the spec's context section.
    pub context_globs: Vec<String>,
    /// This iteration's number (1-based).
    pub iteration: u32,
    /// The iteration limit.
    pub max_iterations: u32,
    /// The latest validation failures.
    pub failures: Vec<Failure>,
    /// Review feedback (from humans) to act on.
    pub review_feedback: Vec<String>,
    /// Problems with the last answer: edits that did not apply, refused paths.
    pub problems: Vec<String>,
    /// Files touched by earlier iterations (relative to the worktree, or absolute inside it).
    pub touched_files: Vec<PathBuf>,
    /// Summaries of earlier iterations, oldest first.
    pub memory: Vec<String>,
    /// (spec id, summary) of the specs this one depends on.
    pub dependency_summaries: Vec<(String, String)>,
    /// Files the specs this one depends on changed: they rank higher.
    pub dependency_files: Vec<PathBuf>,
    /// Ids of specs already complete.
    pub completed_specs: Vec<String>,
    /// The token budget.
    pub budget: TokenBudget,
    /// File selection options.
    pub options: ContextOptions,
    /// The project metadata and repository map computed once per run by [`repo_snapshot`];
    /// `None` computes them from the worktree now. Reusing the run's snapshot keeps the cached
    /// system prompt byte-identical when the model edits a file's top-level symbols, and saves
    /// reading every source file on every iteration.
    pub repo: Option<Arc<RepoSnapshot>>,
    /// The worktree's visible files as walked by [`walk_tree`] under the same `exclude` option
    /// (the engine walks once per run and walks again only when files were added or deleted);
    /// `None` walks the worktree now.
    pub tree: Option<Arc<Tree>>,
}

/// What the context builder derives from the whole repository: project metadata and the
/// repository map. Computed once per run (from the worktree at the run's start) and reused by
/// every iteration; the files the model changes are shown whole in the volatile part anyway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoSnapshot {
    /// The detected project metadata.
    pub project: ProjectMeta,
    /// The repository map, the files most relevant to the spec first, cut to the map's share
    /// (`None` when `repo_map` is off).
    pub repo_map: Option<String>,
    /// How many files the map shows, of how many it could, and the estimated tokens of the
    /// paths it left out.
    pub map_files: (usize, usize, usize),
}

/// The run's walked tree when the engine keeps one, else a fresh walk.
fn tree_of(input: &ContextInput) -> Result<Arc<Tree>, ContextError> {
    match &input.tree {
        Some(t) => Ok(Arc::clone(t)),
        None => Ok(Arc::new(walk_tree(input)?)),
    }
}

/// Computes the [`RepoSnapshot`] of `input`'s worktree under `input`'s options (from
/// `input.tree` when given).
pub fn repo_snapshot(input: &ContextInput) -> Result<RepoSnapshot, ContextError> {
    let include = files::glob_set(&input.options.include, "the include option")?;
    let included = |p: &str| input.options.include.is_empty() || include.is_match(p);
    let tree = tree_of(input)?;
    let tree = tree.as_ref();
    snapshot_of(input, tree, &included)
}

/// Walks `input`'s worktree: its visible files under `input`'s `exclude` option.
pub fn walk_tree(input: &ContextInput) -> Result<Tree, ContextError> {
    let exclude = files::glob_set(&input.options.exclude, "the exclude option")?;
    files::Tree::walk(&input.worktree, &exclude)
}

fn snapshot_of(
    input: &ContextInput,
    tree: &files::Tree,
    included: &dyn Fn(&str) -> bool,
) -> Result<RepoSnapshot, ContextError> {
    let (repo_map, map_files) = if input.options.repo_map {
        let skip = skip_of(input, tree)?;
        let index = index_of(input, tree, &skip, included);
        let ranked = index.rank(&stable_query(input), &dependency_boost(input, tree));
        let share = fill::Limits::new(&input.options, &input.budget, 0).map;
        let (map, shown, total, left) = repo_map(
            tree,
            &ranked,
            &|p| included(p) && !skip.skips(p),
            input.options.max_file_bytes,
            share,
        )?;
        (Some(map), (shown, total, left))
    } else {
        (None, (0, 0, 0))
    };
    Ok(RepoSnapshot {
        project: project::detect(tree),
        repo_map,
        map_files,
    })
}

/// The skip rules of `input`'s options over `tree`.
fn skip_of(input: &ContextInput, tree: &files::Tree) -> Result<skip::Skip, ContextError> {
    skip::Skip::new(tree, &input.options.skip, input.options.skip_generated)
}

/// The tree's relevance index over the files that may be ranked (built once per tree).
fn index_of<'t>(
    input: &ContextInput,
    tree: &'t files::Tree,
    skip: &skip::Skip,
    included: &dyn Fn(&str) -> bool,
) -> &'t rank::Index {
    tree.index(|| {
        rank::Index::build(
            tree,
            &|p| included(p) && !skip.skips(p),
            input.options.ranking,
        )
    })
}

/// What the stable part of the prompt is ranked by: the spec and its criteria, which do not
/// change between iterations of a spec revision.
fn stable_query(input: &ContextInput) -> rank::Query {
    rank::Query::new(
        std::iter::once(input.spec_content.as_str())
            .chain(input.criteria.iter().map(|c| c.text.as_str())),
    )
}

/// What this iteration alone adds to the ranking: the failures, review feedback and edit
/// problems.
fn volatile_query(input: &ContextInput) -> rank::Query {
    let outputs: Vec<String> = input
        .failures
        .iter()
        .map(|f| trim_output(&f.output))
        .collect();
    rank::Query::new(
        outputs
            .iter()
            .map(String::as_str)
            .chain(input.review_feedback.iter().map(String::as_str))
            .chain(input.problems.iter().map(String::as_str)),
    )
}

/// The files the specs this one depends on changed, as tree paths.
fn dependency_boost(input: &ContextInput, tree: &files::Tree) -> BTreeSet<String> {
    input
        .dependency_files
        .iter()
        .filter_map(|p| tree.resolve(p))
        .collect()
}

/// One block of a prompt; `cache` marks a prompt-cache breakpoint at its end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PromptBlock {
    /// The text.
    pub text: String,
    /// Whether a `cache_control` breakpoint goes after this block.
    pub cache: bool,
}

/// Something that did not enter the prompt whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Omitted {
    /// What it was (`file src/big.rs`, `repository map`, `memory 2`).
    pub what: String,
    /// Why (did not fit, cut to N of M lines, binary, no such file).
    pub reason: String,
    /// Estimated tokens left out (0 when unknown).
    pub tokens: usize,
}

/// A file shown in the prompt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IncludedFile {
    /// Its path relative to the worktree.
    pub path: String,
    /// Why it was chosen.
    pub priority: Priority,
    /// Whether it was cut.
    pub cut: bool,
    /// Whether only its outline was shown (it is over `max_file_bytes`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub outline: bool,
}

/// The prompt of one iteration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Prompt {
    /// The stable part (the system prompt), byte-identical between iterations of one spec
    /// revision while the budget allows: the rendered system template, then (when any) the
    /// related files chosen by name only; each block carries a cache breakpoint, so a change of
    /// the related files still reads the first block from the cache.
    pub system: Vec<PromptBlock>,
    /// The volatile part (the user message of this iteration).
    pub user: Vec<PromptBlock>,
    /// What was cut or left out, for the transcript.
    pub omitted: Vec<Omitted>,
    /// The files shown, in prompt order.
    pub files: Vec<IncludedFile>,
    /// The detected project metadata.
    pub project: ProjectMeta,
    /// Estimated tokens of the whole prompt.
    pub token_estimate: usize,
    /// Estimated tokens of the stable part.
    pub stable_tokens: usize,
    /// Every item weighed, in packing order, with how it entered and why.
    pub items: Vec<ItemReport>,
}

/// Bytes the rendering adds around the items (section headings such as "## Failed checks",
/// placeholder fallbacks such as "(none yet)"), counted up front so the budget holds.
const RENDER_CHROME_BYTES: usize = 400;

/// Builds the prompt of one iteration.
pub fn build_prompt(input: &ContextInput, templates: &Templates) -> Result<Prompt, ContextError> {
    let include = files::glob_set(&input.options.include, "the include option")?;
    let included = |p: &str| input.options.include.is_empty() || include.is_match(p);
    let tree = tree_of(input)?;
    let tree = tree.as_ref();
    let computed;
    let repo = match &input.repo {
        Some(r) => r.as_ref(),
        None => {
            computed = snapshot_of(input, tree, &included)?;
            &computed
        }
    };
    let project = repo.project.clone();
    let mut omitted = Vec::new();
    let mut reports = Vec::new();

    let items = select(input, tree, repo, &included, &mut omitted, &mut reports)?;

    // The templates' own text (the instructions) and the metadata are always sent.
    let fixed = (templates.system.literal_len()
        + templates.iteration.literal_len()
        + project.name.len()
        + project.primary_language.len()
        + project.framework.len()
        + RENDER_CHROME_BYTES)
        .div_ceil(7)
        * 2;
    let limits = fill::Limits::new(&input.options, &input.budget, fixed);
    let packed = fill::pack_items(
        items,
        tree,
        &limits,
        input.options.max_file_bytes,
        &mut omitted,
    )?;
    reports.extend(packed.reports);
    let placed = packed.placed;
    if let Some(r) = reports.iter_mut().find(|r| r.kind == "repo-map")
        && repo.map_files.0 < repo.map_files.1
    {
        let note = format!(
            "{} of {} files, the most relevant first, to fit map_share",
            repo.map_files.0, repo.map_files.1
        );
        r.reason = format!("{}; {note}", r.reason);
        if r.included == Included::Whole {
            r.included = Included::Cut;
        }
        omitted.push(Omitted {
            what: "repository map".to_owned(),
            reason: note,
            tokens: repo.map_files.2.max(1),
        });
    }

    let values = render_values(input, &project, &placed);
    let mut system = vec![PromptBlock {
        text: templates.system.render(&values),
        cache: true,
    }];
    if let Some(text) = render_related(&placed) {
        system.push(PromptBlock { text, cache: true });
    }
    let user = templates.iteration.render(&values);
    let stable_tokens = system
        .iter()
        .map(|b| estimate_tokens(&b.text))
        .sum::<usize>();
    let token_estimate = stable_tokens + estimate_tokens(&user);
    let files = placed
        .iter()
        .filter_map(|p| match &p.slot {
            Slot::File(path) => Some(IncludedFile {
                path: path.clone(),
                priority: p.priority,
                cut: p.cut,
                outline: p.outline,
            }),
            _ => None,
        })
        .collect();
    Ok(Prompt {
        system,
        user: vec![PromptBlock {
            text: user,
            cache: false,
        }],
        omitted,
        files,
        project,
        token_estimate,
        stable_tokens,
        items: reports,
    })
}

/// Everything that could enter, in packing order: the stable items first (spec, criteria,
/// repository map, dependency summaries), each within its share, so that what changes from
/// one iteration to the next cannot push the cached prefix out; then failures and feedback,
/// the files the spec names, touched or failing, memory, and the files ranked by relevance
/// (to the spec first, then to this iteration's failures and feedback).
fn select(
    input: &ContextInput,
    tree: &files::Tree,
    repo: &RepoSnapshot,
    included: &dyn Fn(&str) -> bool,
    omitted: &mut Vec<Omitted>,
    reports: &mut Vec<ItemReport>,
) -> Result<Vec<Item>, ContextError> {
    let skip = skip_of(input, tree)?;
    let mut items = stable_critical_items(input);
    items.extend(stable_medium_items(input, repo));
    items.extend(volatile_critical_items(input));
    let chosen = high_items(input, tree, &skip, &mut items, omitted, reports)?;
    items.extend(memory_items(input));
    items.extend(ranked_items(input, tree, &skip, &chosen, included));
    Ok(items)
}

/// An item whose body is text rendered here (not a file read at packing time).
fn text_item(what: &str, priority: Priority, slot: Slot, body: String) -> Item {
    let share = match slot {
        Slot::RepoMap => Share::Map,
        Slot::Memory(_) | Slot::Dependency(_) | Slot::CompletedSpecs => Share::Memory,
        _ => Share::None,
    };
    Item {
        what: what.to_owned(),
        why: what.to_owned(),
        priority,
        slot,
        body: Body::Text(body),
        share,
        volatile: false,
    }
}

/// A file item.
fn file_item(rel: &str, why: &str, priority: Priority, volatile: bool) -> Item {
    Item {
        what: format!("file {rel} ({why})"),
        why: why.to_owned(),
        priority,
        slot: Slot::File(rel.to_owned()),
        body: Body::File(rel.to_owned()),
        share: Share::Files,
        volatile,
    }
}

/// Critical and stable: the spec and its criteria.
fn stable_critical_items(input: &ContextInput) -> Vec<Item> {
    let mut items = vec![text_item(
        &format!("spec {}", input.spec_id),
        Priority::Critical,
        Slot::Spec,
        input.spec_content.trim_end().to_owned(),
    )];
    if !input.criteria.is_empty() {
        items.push(text_item(
            "acceptance criteria",
            Priority::Critical,
            Slot::Criteria,
            render_criteria(&input.criteria),
        ));
    }
    items
}

/// Critical and volatile: what went wrong last time (failures, review feedback, edit
/// problems, the criteria's status).
fn volatile_critical_items(input: &ContextInput) -> Vec<Item> {
    let mut items = Vec::new();
    for f in &input.failures {
        let fence = fence_for(&f.output);
        items.push(text_item(
            &format!("failure {}", f.name),
            Priority::Critical,
            Slot::Failure,
            format!(
                "#### {} failed: `{}`\n{fence}\n{}\n{fence}",
                f.name,
                f.command,
                trim_output(&f.output)
            ),
        ));
    }
    if !input.review_feedback.is_empty() {
        items.push(text_item(
            "review feedback",
            Priority::Critical,
            Slot::Review,
            bullets(&input.review_feedback),
        ));
    }
    if !input.problems.is_empty() {
        items.push(text_item(
            "edit problems",
            Priority::Critical,
            Slot::Problems,
            bullets(&input.problems),
        ));
    }
    if input.criteria.iter().any(|c| c.last_result.is_some()) {
        items.push(text_item(
            "criteria status",
            Priority::Critical,
            Slot::CriteriaStatus,
            render_criteria_status(&input.criteria),
        ));
    }
    items
}

/// High: files the spec names, files touched earlier, files named in failures (unless
/// skipped), each once. Returns the files chosen, which the ranking leaves out.
fn high_items(
    input: &ContextInput,
    tree: &files::Tree,
    skip: &skip::Skip,
    items: &mut Vec<Item>,
    omitted: &mut Vec<Omitted>,
    reports: &mut Vec<ItemReport>,
) -> Result<BTreeSet<String>, ContextError> {
    let mut chosen = BTreeSet::new();
    let mut high = |rel: String, why: &str, items: &mut Vec<Item>| {
        if chosen.insert(rel.clone()) {
            items.push(file_item(&rel, why, Priority::High, true));
        }
    };
    for entry in &input.context_globs {
        let matched = files::match_context(tree, entry)?;
        if matched.is_empty() {
            let reason = "matches no visible file (missing, ignored by .gitignore, or excluded)";
            omitted.push(Omitted {
                what: format!("context entry `{entry}`"),
                reason: reason.to_owned(),
                tokens: 0,
            });
            reports.push(fill::report_missing(
                "context-entry",
                Some(entry.clone()),
                reason,
            ));
        }
        for rel in matched {
            high(rel, "spec context", items);
        }
    }
    for path in &input.touched_files {
        match tree.resolve(path) {
            Some(rel) => high(rel, "touched earlier", items),
            None => {
                let reason = "no longer in the worktree, or ignored";
                omitted.push(Omitted {
                    what: format!("file {} (touched earlier)", path.display()),
                    reason: reason.to_owned(),
                    tokens: 0,
                });
                reports.push(fill::report_missing(
                    "file",
                    Some(path.display().to_string()),
                    reason,
                ));
            }
        }
    }
    for f in &input.failures {
        for rel in files::paths_in_output(tree, &f.output) {
            if !skip.skips(&rel) {
                high(rel, "named in a failure", items);
            }
        }
    }
    Ok(chosen)
}

/// Medium and stable: the map, the dependencies' summaries, the completed specs.
fn stable_medium_items(input: &ContextInput, repo: &RepoSnapshot) -> Vec<Item> {
    let mut items = Vec::new();
    if input.options.repo_map
        && let Some(map) = &repo.repo_map
    {
        items.push(text_item(
            "repository map",
            Priority::Medium,
            Slot::RepoMap,
            map.clone(),
        ));
    }
    for (i, (id, summary)) in input.dependency_summaries.iter().enumerate() {
        items.push(text_item(
            &format!("dependency summary {id}"),
            Priority::Medium,
            Slot::Dependency(i),
            format!("## {id}\n\n{}", summary.trim_end()),
        ));
    }
    if !input.completed_specs.is_empty() {
        items.push(text_item(
            "completed specs",
            Priority::Medium,
            Slot::CompletedSpecs,
            bullets(&input.completed_specs),
        ));
    }
    items
}

/// Medium: memory, newest first.
fn memory_items(input: &ContextInput) -> Vec<Item> {
    input
        .memory
        .iter()
        .enumerate()
        .rev()
        .map(|(i, m)| {
            text_item(
                &format!("memory {}", i + 1),
                Priority::Medium,
                Slot::Memory(i),
                format!("- {}", m.trim()),
            )
        })
        .collect()
}

/// Ranked files considered for the spec, at most.
const MAX_RANKED: usize = 100;
/// Ranked files considered for an iteration's failures and feedback, at most.
const MAX_RANKED_VOLATILE: usize = 20;

/// Low: files ranked by relevance (BM25 over paths, identifiers and contents; see `rank`),
/// to the spec and its criteria first (stable between iterations: the second cached block),
/// then to this iteration's failures and feedback (shown in the iteration message). Skipped
/// files and those already chosen are left out; files the dependencies changed rank higher.
fn ranked_items(
    input: &ContextInput,
    tree: &files::Tree,
    skip: &skip::Skip,
    chosen: &BTreeSet<String>,
    included: &dyn Fn(&str) -> bool,
) -> Vec<Item> {
    let index = index_of(input, tree, skip, included);
    let boost = dependency_boost(input, tree);
    let mut items = Vec::new();
    let mut take = |query: &rank::Query, max: usize, why: &str, volatile: bool| {
        if query.is_empty() && boost.is_empty() {
            return;
        }
        for (score, rel) in index
            .rank(query, &boost)
            .into_iter()
            .filter(|(_, rel)| !chosen.contains(*rel))
            .take(max)
        {
            let mut item = file_item(rel, why, Priority::Low, volatile);
            item.why = format!("{why}, score {score:.2}");
            items.push(item);
        }
    };
    take(
        &stable_query(input),
        MAX_RANKED,
        "relevant to the spec",
        false,
    );
    let volatile = volatile_query(input);
    if !volatile.is_empty() {
        take(
            &volatile,
            MAX_RANKED_VOLATILE,
            "relevant to the failures",
            true,
        );
    }
    items
}

fn render_values(
    input: &ContextInput,
    project: &ProjectMeta,
    placed: &[Placed],
) -> BTreeMap<&'static str, String> {
    let mut v = BTreeMap::new();
    v.insert("project_name", project.name.clone());
    v.insert("primary_language", project.primary_language.clone());
    v.insert("framework", project.framework.clone());
    v.insert("iteration", input.iteration.to_string());
    v.insert("max_iterations", input.max_iterations.to_string());

    let find = |slot: &Slot| {
        placed
            .iter()
            .find(|p| &p.slot == slot)
            .map(|p| p.text.clone())
    };
    v.insert("spec_content", find(&Slot::Spec).unwrap_or_default());
    v.insert(
        "acceptance_criteria",
        find(&Slot::Criteria).unwrap_or_else(|| "(none listed)".to_owned()),
    );
    v.insert(
        "project_structure",
        find(&Slot::RepoMap).unwrap_or_else(|| {
            if input.options.repo_map {
                "(left out to fit the token budget)".to_owned()
            } else {
                "(not shown)".to_owned()
            }
        }),
    );
    v.insert(
        "completed_specs",
        find(&Slot::CompletedSpecs).unwrap_or_else(|| "(none)".to_owned()),
    );
    let deps: Vec<String> = (0..input.dependency_summaries.len())
        .filter_map(|i| find(&Slot::Dependency(i)))
        .collect();
    v.insert(
        "dependencies",
        if deps.is_empty() {
            "(none)".to_owned()
        } else {
            deps.join("\n\n")
        },
    );

    let mut fb = Vec::new();
    let failures: Vec<String> = placed
        .iter()
        .filter(|p| p.slot == Slot::Failure)
        .map(|p| p.text.clone())
        .collect();
    if !failures.is_empty() {
        fb.push(format!(
            "### Failed checks (run by mmm)\n\n{}",
            failures.join("\n\n")
        ));
    }
    if let Some(t) = find(&Slot::CriteriaStatus) {
        fb.push(format!("### Acceptance criteria as last checked\n\n{t}"));
    }
    if let Some(t) = find(&Slot::Review) {
        fb.push(format!("### Review feedback (act on it)\n\n{t}"));
    }
    if let Some(t) = find(&Slot::Problems) {
        fb.push(format!("### Problems with your last answer\n\n{t}"));
    }
    let memory: Vec<String> = (0..input.memory.len())
        .filter_map(|i| find(&Slot::Memory(i)))
        .collect();
    if !memory.is_empty() {
        fb.push(format!(
            "### Summaries of earlier iterations\n\n{}",
            memory.join("\n")
        ));
    }
    v.insert(
        "previous_feedback",
        if fb.is_empty() {
            "(none yet)".to_owned()
        } else {
            fb.join("\n\n")
        },
    );

    let code = render_files(
        placed
            .iter()
            .filter(|p| p.priority != Priority::Low || p.volatile),
    );
    v.insert(
        "relevant_code",
        if code.is_empty() {
            "(no files selected)".to_owned()
        } else {
            code.join("\n\n")
        },
    );
    v
}

/// The files among `placed`, each under a heading in a fence that names its path.
fn render_files<'a>(placed: impl Iterator<Item = &'a Placed>) -> Vec<String> {
    placed
        .filter_map(|p| match &p.slot {
            Slot::File(path) => {
                let fence = fence_for(&p.text);
                let body = p.text.strip_suffix('\n').unwrap_or(&p.text);
                // An outline is not the file: no `path=`, so it cannot pass for its text.
                Some(if p.outline {
                    format!("### {path} (outline)\n{fence}text\n{body}\n{fence}")
                } else {
                    let lang = fence_lang(path.as_str());
                    format!("### {path}\n{fence}{lang} path={path}\n{body}\n{fence}")
                })
            }
            _ => None,
        })
        .collect()
}

/// The second cached block: files chosen only because their words match the spec's. None of
/// them was touched, named in a failure or in the spec's context (those are shown in the
/// iteration message), so the block stays the same from one iteration to the next and is read
/// from the prompt cache instead of being paid for in full each time.
fn render_related(placed: &[Placed]) -> Option<String> {
    let files = render_files(
        placed
            .iter()
            .filter(|p| p.priority == Priority::Low && !p.volatile),
    );
    (!files.is_empty()).then(|| {
        format!(
            "# Related code\n\nFiles whose words match the spec's, most relevant first (files \
             you change are shown in the iteration message instead).\n\n{}\n",
            files.join("\n\n")
        )
    })
}

fn render_criteria(criteria: &[CriterionView]) -> String {
    let mut out = String::new();
    for (i, c) in criteria.iter().enumerate() {
        out.push_str(&format!("{}. {}\n", i + 1, c.text.trim()));
        if let Some(cmd) = &c.verify {
            out.push_str(&format!("   verify: `{cmd}`\n"));
        }
    }
    out.trim_end().to_owned()
}

fn render_criteria_status(criteria: &[CriterionView]) -> String {
    criteria
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let s = match (c.last_result, &c.verify) {
                (Some(true), _) => "passed",
                (Some(false), _) => "FAILED",
                (None, Some(_)) => "not checked yet",
                (None, None) => "no check command; judged by review",
            };
            format!("{}. {s}: {}", i + 1, c.text.trim())
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn bullets(items: &[String]) -> String {
    items
        .iter()
        .map(|s| format!("- {}", s.trim()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A backtick fence longer than any run of backticks in `text`.
fn fence_for(text: &str) -> String {
    let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    "`".repeat(longest.max(2) + 1)
}

fn fence_lang(path: &str) -> &'static str {
    match path.rsplit_once('.').map_or("", |(_, e)| e) {
        "rs" => "rust",
        "py" => "python",
        "js" | "mjs" | "cjs" => "javascript",
        "jsx" => "jsx",
        "ts" | "mts" | "cts" => "typescript",
        "tsx" => "tsx",
        "go" => "go",
        "toml" => "toml",
        "json" => "json",
        "yaml" | "yml" => "yaml",
        "md" => "markdown",
        "sh" => "sh",
        "html" => "html",
        "css" => "css",
        _ => "text",
    }
}

/// Symbols shown per file in the map, at most.
const MAP_SYMBOLS: usize = 24;

/// The repository map: the files `ranked` first (best first), then the other candidates by
/// depth and path, each with its top-level symbols (at most [`MAP_SYMBOLS`]), while they fit
/// in `share` tokens; shown sorted by path, with a last line saying how many were left out.
/// Returns the map, how many files it shows, how many it could, and the estimated tokens of
/// the paths left out.
fn repo_map(
    tree: &files::Tree,
    ranked: &[(f64, &str)],
    candidate: &dyn Fn(&str) -> bool,
    max_file_bytes: usize,
    share: usize,
) -> Result<(String, usize, usize, usize), ContextError> {
    let first: BTreeSet<&str> = ranked.iter().map(|(_, p)| *p).collect();
    let mut rest: Vec<&str> = tree
        .files
        .iter()
        .map(String::as_str)
        .filter(|f| candidate(f) && !first.contains(f))
        .collect();
    rest.sort_by_key(|f| (f.matches('/').count(), *f));
    let total = first.len() + rest.len();
    let mut lines = BTreeMap::new();
    let mut bytes = 0;
    let mut left_bytes = 0;
    // Room for the last line ("… N more files").
    let room = (share * 7 / 2).saturating_sub(64);
    for f in ranked.iter().map(|(_, p)| *p).chain(rest) {
        // A path that cannot fit is not read for its symbols.
        if bytes + f.len() + 1 > room {
            left_bytes += f.len() + 1;
            continue;
        }
        let line = map_line(tree, f, max_file_bytes)?;
        if bytes + line.len() + 1 > room {
            left_bytes += line.len() + 1;
            continue;
        }
        bytes += line.len() + 1;
        lines.insert(f, line);
    }
    let shown = lines.len();
    let mut out = lines.into_values().collect::<Vec<_>>().join("\n");
    if shown < total {
        out.push_str(&format!(
            "\n(… {} more files, less related to the spec, not shown)",
            total - shown
        ));
    }
    Ok((out, shown, total, (left_bytes * 2).div_ceil(7)))
}

/// One line of the map: the path, and the file's top-level symbols when it has any.
fn map_line(tree: &files::Tree, f: &str, max_file_bytes: usize) -> Result<String, ContextError> {
    let mut line = f.to_owned();
    if repomap::has_symbols(f)
        && tree.size(f) <= max_file_bytes
        && let Some(text) = tree.read_text(f)?
    {
        let syms = symbols(f, &text);
        if !syms.is_empty() {
            line.push_str(": ");
            line.push_str(&syms[..syms.len().min(MAP_SYMBOLS)].join(", "));
            if syms.len() > MAP_SYMBOLS {
                line.push_str(&format!(", … ({} more)", syms.len() - MAP_SYMBOLS));
            }
        }
    }
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fences_outrun_backticks() {
        assert_eq!(fence_for("no ticks"), "```");
        assert_eq!(fence_for("```rust\n```"), "````");
    }
}
