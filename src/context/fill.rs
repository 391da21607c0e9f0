//! Filling the budget: items in packing order, each whole if it fits, else cut (critical, high
//! and the map), as an outline (a file over `max_file_bytes`), or left out; each share (map,
//! files, memory) is a ceiling of its own inside the budget, and the window the hard one.
//!
//! Owns: the packer and its report. Must not touch: anything but the files of the tree.

use std::collections::BTreeSet;

use serde::Serialize;

use super::files::Tree;
use super::pack::{Priority, cut_to_tokens, estimate_tokens};
use super::{ContextError, ContextOptions, Omitted, TokenBudget, fence_lang, repomap};

/// Where an item goes in the rendered prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Slot {
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

impl Slot {
    /// The kind `git mmm context` shows.
    fn kind(&self) -> &'static str {
        match self {
            Slot::Spec => "spec",
            Slot::Criteria => "criteria",
            Slot::Failure => "failure",
            Slot::Review => "review",
            Slot::Problems => "problems",
            Slot::CriteriaStatus => "criteria-status",
            Slot::File(_) => "file",
            Slot::RepoMap => "repo-map",
            Slot::Memory(_) => "memory",
            Slot::Dependency(_) => "dependency",
            Slot::CompletedSpecs => "completed-specs",
        }
    }
}

/// The body of an item: text now, or a file read when its turn comes.
#[derive(Debug)]
pub(crate) enum Body {
    Text(String),
    File(String),
}

/// Which share of the budget an item draws on besides the budget itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Share {
    None,
    Map,
    Files,
    Memory,
}

#[derive(Debug)]
pub(crate) struct Item {
    /// How the transcript names it (`file src/a.rs (spec context)`).
    pub what: String,
    /// Why it was chosen, for the report.
    pub why: String,
    pub priority: Priority,
    pub slot: Slot,
    pub body: Body,
    pub share: Share,
    /// Chosen for this iteration only (rendered in the iteration message).
    pub volatile: bool,
}

/// An item that made it in, with its (possibly cut) text.
#[derive(Debug)]
pub(crate) struct Placed {
    pub slot: Slot,
    pub priority: Priority,
    pub text: String,
    pub cut: bool,
    /// A file shown as its outline.
    pub outline: bool,
    pub volatile: bool,
}

/// How an item entered the prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Included {
    /// Whole.
    Whole,
    /// Cut at a line boundary, with a marker.
    Cut,
    /// A file over `max_file_bytes`, as its top-level signatures.
    Outline,
    /// Not at all.
    Omitted,
}

/// One item the context builder weighed, as `git mmm context` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ItemReport {
    /// `spec`, `criteria`, `failure`, `review`, `problems`, `criteria-status`, `file`,
    /// `repo-map`, `memory`, `dependency`, `completed-specs`, `context-entry`.
    pub kind: String,
    /// The file's path, for files.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Its priority.
    pub priority: Priority,
    /// Estimated tokens it takes in the prompt (what it would take, when omitted).
    pub tokens: usize,
    /// Whether and how it entered.
    pub included: Included,
    /// Why it was chosen, and why it was cut or left out.
    pub reason: String,
}

/// The token ceilings of one prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// The window minus the output reserve: critical items are cut only against this.
    pub ceiling: usize,
    /// The context budget (never above the ceiling).
    pub budget: usize,
    pub map: usize,
    pub files: usize,
    pub memory: usize,
}

impl Limits {
    /// The ceilings for `options` and `budget`, less `fixed` tokens always sent.
    pub(crate) fn new(options: &ContextOptions, budget: &TokenBudget, fixed: usize) -> Limits {
        let ceiling = budget.window.saturating_sub(budget.output_reserve);
        let whole = options.budget_tokens.min(ceiling);
        let share = |pct: usize| whole * pct.min(100) / 100;
        Limits {
            ceiling: ceiling.saturating_sub(fixed),
            budget: whole.saturating_sub(fixed),
            map: share(options.map_share),
            files: share(options.files_share),
            memory: share(options.memory_share),
        }
    }
}

/// What the packer has used so far.
#[derive(Debug, Default)]
struct Used {
    all: usize,
    map: usize,
    files: usize,
    memory: usize,
}

impl Used {
    fn room(&self, limits: &Limits, item: &Item) -> usize {
        let base = match item.priority {
            Priority::Critical => limits.ceiling,
            _ => limits.budget,
        }
        .saturating_sub(self.all);
        let share = match item.share {
            Share::None => return base,
            Share::Map => limits.map.saturating_sub(self.map),
            // Files the spec names draw on the files' share but are bounded by the budget.
            Share::Files if item.priority == Priority::High => return base,
            Share::Files => limits.files.saturating_sub(self.files),
            Share::Memory => limits.memory.saturating_sub(self.memory),
        };
        base.min(share)
    }

    fn add(&mut self, share: Share, tokens: usize) {
        self.all += tokens;
        match share {
            Share::None => {}
            Share::Map => self.map += tokens,
            Share::Files => self.files += tokens,
            Share::Memory => self.memory += tokens,
        }
    }
}

/// The packer's results.
#[derive(Debug, Default)]
pub(crate) struct Packed {
    pub placed: Vec<Placed>,
    pub reports: Vec<ItemReport>,
}

impl Packed {
    fn report(&mut self, item: &Item, tokens: usize, included: Included, reason: String) {
        self.reports.push(ItemReport {
            kind: item.slot.kind().to_owned(),
            path: match &item.slot {
                Slot::File(p) => Some(p.clone()),
                _ => None,
            },
            priority: item.priority,
            tokens,
            included,
            reason,
        });
    }

    fn place(&mut self, item: Item, text: String, tokens: usize, included: Included, note: &str) {
        let reason = if note.is_empty() {
            item.why.clone()
        } else {
            format!("{}; {note}", item.why)
        };
        self.report(&item, tokens, included, reason);
        self.placed.push(Placed {
            slot: item.slot,
            priority: item.priority,
            text,
            cut: included == Included::Cut,
            outline: included == Included::Outline,
            volatile: item.volatile,
        });
    }
}

/// Something left out before packing (a context entry that matches nothing, a touched file
/// gone), reported like a packed item.
pub(crate) fn report_missing(kind: &str, path: Option<String>, reason: &str) -> ItemReport {
    ItemReport {
        kind: kind.to_owned(),
        path,
        priority: Priority::High,
        tokens: 0,
        included: Included::Omitted,
        reason: reason.to_owned(),
    }
}

/// A file's text as it enters: whole, or its outline when over `max_file_bytes` (`None`
/// with the reason when it cannot enter).
enum FileText {
    Whole(String),
    Outline(String, String, usize),
    No(String, usize),
}

fn file_text(tree: &Tree, rel: &str, max_file_bytes: usize) -> Result<FileText, ContextError> {
    let Some(text) = tree.read_text_cached(rel)? else {
        return Ok(FileText::No(
            "binary file (NUL bytes or not UTF-8)".to_owned(),
            0,
        ));
    };
    if text.len() <= max_file_bytes {
        return Ok(FileText::Whole(text));
    }
    let outline = repomap::outline(rel, &text);
    if outline.is_empty() {
        return Ok(FileText::No(
            format!(
                "larger than max_file_bytes ({max_file_bytes}), and mmm knows no outline for it"
            ),
            estimate_tokens(&text),
        ));
    }
    let lines = text.lines().count();
    let body = format!(
        "[outline by mmm: {lines} lines, {} bytes, over max_file_bytes; the top-level items with \
         their line numbers]\n{outline}",
        text.len()
    );
    Ok(FileText::Outline(
        body,
        format!("larger than max_file_bytes ({max_file_bytes}): its outline"),
        estimate_tokens(&text),
    ))
}

/// Greedy packing in the given order: whole if it fits its room (the budget, its share, and
/// for critical items the window); else critical, high and map items are cut at a line
/// boundary with a marker (critical keeps at least one line), the rest is dropped. A file seen
/// before is skipped. Everything not included whole is recorded in `omitted`.
pub(crate) fn pack_items(
    items: Vec<Item>,
    tree: &Tree,
    limits: &Limits,
    max_file_bytes: usize,
    omitted: &mut Vec<Omitted>,
) -> Result<Packed, ContextError> {
    let mut used = Used::default();
    let mut out = Packed::default();
    let mut files_seen = BTreeSet::new();
    for item in items {
        if let Slot::File(rel) = &item.slot
            && !files_seen.insert(rel.clone())
        {
            continue;
        }
        let room = used.room(limits, &item);
        let (body, overhead, outline) = match &item.body {
            Body::Text(t) => (t.clone(), 0, None),
            Body::File(rel) => {
                let overhead = estimate_tokens(&format!(
                    "### {rel} (outline)\n````{} path={rel}\n\n````\n\n",
                    fence_lang(rel)
                ));
                // Cheap check before reading: a file that cannot fit is not read at all.
                let len = tree.size(rel);
                if item.priority >= Priority::Medium
                    && len <= max_file_bytes
                    && (len * 2).div_ceil(7) + overhead > room
                {
                    let tokens = (len * 2).div_ceil(7) + overhead;
                    drop_item(
                        &mut out,
                        omitted,
                        item,
                        tokens,
                        "did not fit the token budget",
                    );
                    continue;
                }
                match file_text(tree, rel, max_file_bytes)? {
                    FileText::Whole(t) => (t, overhead, None),
                    FileText::Outline(t, note, full) => (t, overhead, Some((note, full))),
                    FileText::No(reason, tokens) => {
                        drop_item(&mut out, omitted, item, tokens, &reason);
                        continue;
                    }
                }
            }
        };
        // +1: the blank line or bullet that joins items when they are rendered.
        let overhead = overhead + 1;
        let tokens = estimate_tokens(&body) + overhead;
        if tokens <= room {
            used.add(item.share, tokens);
            match outline {
                Some((note, full)) => {
                    omitted.push(Omitted {
                        what: item.what.clone(),
                        reason: format!("{note} instead of its text"),
                        tokens: full.saturating_sub(tokens),
                    });
                    out.place(item, body, tokens, Included::Outline, &note);
                }
                None => out.place(item, body, tokens, Included::Whole, ""),
            }
            continue;
        }
        let cuttable = matches!(item.priority, Priority::Critical | Priority::High)
            || item.slot == Slot::RepoMap;
        let min_lines = usize::from(item.priority == Priority::Critical);
        let cut = cuttable
            .then(|| cut_to_tokens(&body, room.saturating_sub(overhead), min_lines))
            .flatten()
            .filter(|c| c.kept_lines > 0);
        match cut {
            Some(cut) => {
                let kept = estimate_tokens(&cut.text) + overhead;
                let note = format!(
                    "cut to {} of {} lines to fit the token budget",
                    cut.kept_lines, cut.total_lines
                );
                omitted.push(Omitted {
                    what: item.what.clone(),
                    reason: note.clone(),
                    tokens: tokens.saturating_sub(kept),
                });
                used.add(item.share, kept);
                out.place(item, cut.text, kept, Included::Cut, &note);
            }
            None => drop_item(
                &mut out,
                omitted,
                item,
                tokens,
                "did not fit the token budget",
            ),
        }
    }
    Ok(out)
}

fn drop_item(out: &mut Packed, omitted: &mut Vec<Omitted>, item: Item, tokens: usize, why: &str) {
    omitted.push(Omitted {
        what: item.what.clone(),
        reason: why.to_owned(),
        tokens,
    });
    let reason = format!("{}; {why}", item.why);
    out.report(&item, tokens, Included::Omitted, reason);
}
