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
mod pack;
mod project;
mod repomap;
mod template;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;

pub use files::Tree;
pub use pack::{Priority, cut_to_tokens, estimate_tokens, trim_output, truncation_marker};
pub use project::ProjectMeta;
pub use repomap::symbols;
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
    /// Files larger than this are cut (at a line boundary, with a marker) to this size.
    pub max_file_bytes: usize,
    /// Whether to build the repository map.
    pub repo_map: bool,
}

impl Default for ContextOptions {
    fn default() -> Self {
        ContextOptions {
            include: Vec::new(),
            exclude: Vec::new(),
            max_file_bytes: 100_000,
            repo_map: true,
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
    /// The repository map before packing (`None` when `repo_map` is off).
    pub repo_map: Option<String>,
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
    Ok(RepoSnapshot {
        project: project::detect(tree),
        repo_map: if input.options.repo_map {
            Some(repo_map(tree, included, input.options.max_file_bytes)?)
        } else {
            None
        },
    })
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
}

/// Where an item goes in the rendered prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Slot {
    Spec,
    Criteria,
    Failure,
    Review,
    Problems,
    CriteriaStatus,
    File(String),
    RepoMap,
    Memory(usize),
    Dependency(usize),
    CompletedSpecs,
}

/// The body of an item: text now, or a file read when its turn comes.
#[derive(Debug)]
enum Body {
    Text(String),
    File(String),
}

#[derive(Debug)]
struct Item {
    what: String,
    priority: Priority,
    slot: Slot,
    body: Body,
}

/// An item that made it in, with its (possibly cut) text.
#[derive(Debug)]
struct Placed {
    slot: Slot,
    priority: Priority,
    text: String,
    cut: bool,
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

    let items = select(input, tree, repo, &included, &mut omitted)?;

    // The templates' own text (the instructions) and the metadata are always sent.
    let fixed = (templates.system.literal_len()
        + templates.iteration.literal_len()
        + project.name.len()
        + project.primary_language.len()
        + project.framework.len()
        + RENDER_CHROME_BYTES)
        .div_ceil(7)
        * 2;
    let budget = input
        .budget
        .window
        .saturating_sub(input.budget.output_reserve);
    let placed = pack_items(
        items,
        tree,
        budget.saturating_sub(fixed),
        input.options.max_file_bytes,
        &mut omitted,
    )?;

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
    })
}

/// Everything that could enter, in packing order (critical, high, medium, low; within a
/// priority, stable items before volatile ones so that the cached prefix depends as little as
/// possible on what changes).
fn select(
    input: &ContextInput,
    tree: &files::Tree,
    repo: &RepoSnapshot,
    included: &dyn Fn(&str) -> bool,
    omitted: &mut Vec<Omitted>,
) -> Result<Vec<Item>, ContextError> {
    let mut items = critical_items(input);
    let chosen = high_items(input, tree, &mut items, omitted)?;
    items.extend(medium_items(input, repo));
    items.extend(low_items(input, tree, &chosen, included));
    Ok(items)
}

/// An item whose body is text rendered here (not a file read at packing time).
fn text_item(what: &str, priority: Priority, slot: Slot, body: String) -> Item {
    Item {
        what: what.to_owned(),
        priority,
        slot,
        body: Body::Text(body),
    }
}

/// Critical: the spec, its criteria, and what went wrong last time (failures, review
/// feedback, edit problems, the criteria's status).
fn critical_items(input: &ContextInput) -> Vec<Item> {
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

/// High: files the spec names, files touched earlier, files named in failures, each once.
/// Returns the files chosen, which the low-priority search leaves out.
fn high_items(
    input: &ContextInput,
    tree: &files::Tree,
    items: &mut Vec<Item>,
    omitted: &mut Vec<Omitted>,
) -> Result<BTreeSet<String>, ContextError> {
    let mut chosen = BTreeSet::new();
    let mut high = |rel: String, why: &str, items: &mut Vec<Item>| {
        if chosen.insert(rel.clone()) {
            items.push(Item {
                what: format!("file {rel} ({why})"),
                priority: Priority::High,
                slot: Slot::File(rel.clone()),
                body: Body::File(rel),
            });
        }
    };
    for entry in &input.context_globs {
        let matched = files::match_context(tree, entry)?;
        if matched.is_empty() {
            omitted.push(Omitted {
                what: format!("context entry `{entry}`"),
                reason: "matches no visible file (missing, ignored by .gitignore, or excluded)"
                    .to_owned(),
                tokens: 0,
            });
        }
        for rel in matched {
            high(rel, "spec context", items);
        }
    }
    for path in &input.touched_files {
        match tree.resolve(path) {
            Some(rel) => high(rel, "touched earlier", items),
            None => omitted.push(Omitted {
                what: format!("file {} (touched earlier)", path.display()),
                reason: "no longer in the worktree, or ignored".to_owned(),
                tokens: 0,
            }),
        }
    }
    for f in &input.failures {
        for rel in files::paths_in_output(tree, &f.output) {
            high(rel, "named in a failure", items);
        }
    }
    Ok(chosen)
}

/// Medium: stable ones (map, dependencies, completed specs) first, then memory, newest first.
fn medium_items(input: &ContextInput, repo: &RepoSnapshot) -> Vec<Item> {
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
    for (i, m) in input.memory.iter().enumerate().rev() {
        items.push(text_item(
            &format!("memory {}", i + 1),
            Priority::Medium,
            Slot::Memory(i),
            format!("- {}", m.trim()),
        ));
    }
    items
}

/// Low: other files whose path shares words with the spec, best first. A path word found in
/// most paths (`src` when the spec names `src/…` files) says nothing about relevance and would
/// pull the whole repository into every prompt, so it does not count.
fn low_items(
    input: &ContextInput,
    tree: &files::Tree,
    chosen: &BTreeSet<String>,
    included: &dyn Fn(&str) -> bool,
) -> Vec<Item> {
    let words = spec_words(&input.spec_content);
    let candidates: Vec<(&String, &BTreeSet<String>)> = tree
        .path_tokens(path_tokens)
        .iter()
        .filter(|(f, _)| !chosen.contains(f) && included(f))
        .map(|(f, tokens)| (f, tokens))
        .collect();
    let mut frequency: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, tokens) in &candidates {
        for t in tokens.iter() {
            *frequency.entry(t.as_str()).or_default() += 1;
        }
    }
    let common = |t: &str| {
        candidates.len() >= COMMON_WORD_MIN_FILES
            && frequency.get(t).is_some_and(|n| n * 2 > candidates.len())
    };
    let mut ranked: Vec<(usize, &String)> = candidates
        .iter()
        .map(|(f, tokens)| (score(tokens, &words, &common), *f))
        .filter(|(score, _)| *score > 0)
        .collect();
    ranked.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
    ranked
        .into_iter()
        .map(|(_, rel)| Item {
            what: format!("file {rel} (relevant by name)"),
            priority: Priority::Low,
            slot: Slot::File(rel.clone()),
            body: Body::File(rel.clone()),
        })
        .collect()
}

/// Greedy packing in the given order: whole if it fits; else critical and high items are cut
/// at a line boundary with a marker (critical keeps at least one line), medium and low are
/// dropped. Everything not included whole is recorded in `omitted`.
fn pack_items(
    items: Vec<Item>,
    tree: &files::Tree,
    budget: usize,
    max_file_bytes: usize,
    omitted: &mut Vec<Omitted>,
) -> Result<Vec<Placed>, ContextError> {
    let mut used = 0;
    let mut placed = Vec::new();
    for item in items {
        let room = budget.saturating_sub(used);
        let (body, overhead) = match item.body {
            Body::Text(t) => (t, 0),
            Body::File(rel) => {
                let overhead = estimate_tokens(&format!(
                    "### {rel}\n````{} path={rel}\n\n````\n\n",
                    fence_lang(&rel)
                ));
                // Cheap check before reading: a file that cannot fit is not read at all.
                let len = tree.size(&rel);
                if item.priority >= Priority::Medium
                    && (len.min(max_file_bytes) * 2).div_ceil(7) + overhead > room
                {
                    omitted.push(Omitted {
                        what: item.what,
                        reason: "did not fit the token budget".to_owned(),
                        tokens: (len * 2).div_ceil(7) + overhead,
                    });
                    continue;
                }
                let Some(mut text) = tree.read_text_cached(&rel)? else {
                    omitted.push(Omitted {
                        what: item.what,
                        reason: "binary file (NUL bytes or not UTF-8)".to_owned(),
                        tokens: 0,
                    });
                    continue;
                };
                if text.len() > max_file_bytes {
                    let cut = cut_bytes(&text, max_file_bytes);
                    omitted.push(Omitted {
                        what: item.what.clone(),
                        reason: format!(
                            "larger than max_file_bytes ({max_file_bytes}): cut to {} of {} lines",
                            cut.kept_lines, cut.total_lines
                        ),
                        tokens: estimate_tokens(&text).saturating_sub(estimate_tokens(&cut.text)),
                    });
                    text = cut.text;
                }
                (text, overhead)
            }
        };
        // +1: the blank line or bullet that joins items when they are rendered.
        let overhead = overhead + 1;
        let tokens = estimate_tokens(&body) + overhead;
        if tokens <= room {
            used += tokens;
            placed.push(Placed {
                slot: item.slot,
                priority: item.priority,
                text: body,
                cut: false,
            });
            continue;
        }
        let min_lines = usize::from(item.priority == Priority::Critical);
        let cut = match item.priority {
            Priority::Critical | Priority::High => {
                cut_to_tokens(&body, room.saturating_sub(overhead), min_lines)
                    .filter(|c| c.kept_lines > 0)
            }
            Priority::Medium | Priority::Low => None,
        };
        match cut {
            Some(cut) => {
                let kept = estimate_tokens(&cut.text) + overhead;
                omitted.push(Omitted {
                    what: item.what,
                    reason: format!(
                        "cut to {} of {} lines to fit the token budget",
                        cut.kept_lines, cut.total_lines
                    ),
                    tokens: tokens.saturating_sub(kept),
                });
                used += kept;
                placed.push(Placed {
                    slot: item.slot,
                    priority: item.priority,
                    text: cut.text,
                    cut: true,
                });
            }
            None => omitted.push(Omitted {
                what: item.what,
                reason: "did not fit the token budget".to_owned(),
                tokens,
            }),
        }
    }
    Ok(placed)
}

/// Cuts `text` at the last line boundary within `max_bytes`, with the marker.
fn cut_bytes(text: &str, max_bytes: usize) -> pack::Cut {
    let total = text.lines().count();
    let mut end = 0;
    let mut kept = 0;
    for line in text.split_inclusive('\n') {
        if end + line.len() > max_bytes {
            break;
        }
        end += line.len();
        kept += 1;
    }
    let mut out = text[..end].to_owned();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(&truncation_marker(total - kept));
    out.push('\n');
    pack::Cut {
        text: out,
        kept_lines: kept,
        total_lines: total,
    }
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

    let code = render_files(placed.iter().filter(|p| p.priority != Priority::Low));
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
                let lang = fence_lang(path);
                let body = p.text.strip_suffix('\n').unwrap_or(&p.text);
                Some(format!(
                    "### {path}\n{fence}{lang} path={path}\n{body}\n{fence}"
                ))
            }
            _ => None,
        })
        .collect()
}

/// The second cached block: files chosen only because their names match the spec. None of
/// them was touched, named in a failure or in the spec's context (those are shown in the
/// iteration message), so the block stays the same from one iteration to the next and is read
/// from the prompt cache instead of being paid for in full each time.
fn render_related(placed: &[Placed]) -> Option<String> {
    let files = render_files(placed.iter().filter(|p| p.priority == Priority::Low));
    (!files.is_empty()).then(|| {
        format!(
            "# Related code\n\nFiles whose names match the spec (files you change are shown \
             in the iteration message instead).\n\n{}\n",
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

fn repo_map(
    tree: &files::Tree,
    included: &dyn Fn(&str) -> bool,
    max_file_bytes: usize,
) -> Result<String, ContextError> {
    let mut out = String::new();
    for f in tree.files.iter().filter(|f| included(f)) {
        out.push_str(f);
        if repomap::has_symbols(f)
            && std::fs::metadata(tree.root_path().join(f))
                .is_ok_and(|m| m.len() as usize <= max_file_bytes)
            && let Some(text) = tree.read_text(f)?
        {
            let syms = symbols(f, &text);
            if !syms.is_empty() {
                out.push_str(": ");
                out.push_str(&syms.join(", "));
            }
        }
        out.push('\n');
    }
    Ok(out.trim_end().to_owned())
}

const STOP_WORDS: &[&str] = &[
    "and", "any", "are", "but", "can", "each", "for", "from", "has", "have", "into", "its", "may",
    "must", "not", "one", "should", "that", "the", "then", "this", "use", "when", "which", "will",
    "with", "without", "all", "also", "only", "new", "out", "own", "our", "you", "your",
];

/// Lower-case words of at least 3 letters in the spec, minus common English words.
fn spec_words(spec: &str) -> BTreeSet<String> {
    split_words(spec)
        .filter(|w| w.len() >= 3 && !STOP_WORDS.contains(&w.as_str()))
        .collect()
}

/// Splits on non-alphanumerics and camelCase boundaries, lower-cased.
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

/// Below this many candidate files no path word counts as too common to rank by.
const COMMON_WORD_MIN_FILES: usize = 20;

/// The words of a path that can rank it (3+ letters).
fn path_tokens(path: &str) -> BTreeSet<String> {
    split_words(path).filter(|t| t.len() >= 3).collect()
}

/// How many distinct words of the path appear in the spec (a word of 4+ letters also counts
/// when one is a prefix of the other: `auth` and `authentication`).
#[cfg(test)]
fn relevance(path: &str, words: &BTreeSet<String>) -> usize {
    score(&path_tokens(path), words, &|_| false)
}

/// [`relevance`] of a path's tokens, leaving out the tokens `common` rejects.
fn score(
    tokens: &BTreeSet<String>,
    words: &BTreeSet<String>,
    common: &dyn Fn(&str) -> bool,
) -> usize {
    tokens
        .iter()
        .filter(|t| !common(t))
        .filter(|t| {
            words.contains(*t)
                || (t.len() >= 4
                    && (words
                        .range::<String, _>((*t).clone()..)
                        .next()
                        .is_some_and(|w| w.starts_with(t.as_str()))
                        || (4..t.len()).any(|n| t.is_char_boundary(n) && words.contains(&t[..n]))))
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relevance_by_words_and_prefixes() {
        let words = spec_words("Add authentication to the login handler");
        assert_eq!(relevance("src/auth/login.rs", &words), 1 + 1);
        assert_eq!(relevance("src/loginHandler.rs", &words), 2);
        assert_eq!(relevance("src/db.rs", &words), 0);
    }

    #[test]
    fn fences_outrun_backticks() {
        assert_eq!(fence_for("no ticks"), "```");
        assert_eq!(fence_for("```rust\n```"), "````");
    }
}
