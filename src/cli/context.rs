//! `git mmm context SPEC`: the prompt the next iteration of a spec would send, without sending
//! it: each item with its kind, path, priority, tokens, whether it went in whole, cut, as an
//! outline or not at all, and why; the totals; the estimated cost at the configured model,
//! cold and with the prompt cache warm.

use std::io::Write;

use anyhow::anyhow;
use mmm::agent::Usage;
use mmm::context::{Included, ItemReport, Prompt, Templates, build_prompt};
use mmm::engine::schedule;
use serde::Serialize;

use super::common::{open_store, spec_id};
use super::{CliError, CliResult, Ctx, out};

/// Arguments of `git mmm context`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The spec.
    pub spec: String,
    /// One JSON object: `{"spec", "model", "items": [{"kind", "path" (files only),
    /// "priority", "tokens", "included" (whole | cut | outline | omitted), "reason"}],
    /// "total_tokens", "stable_tokens", "budget_tokens", "estimated_cost_usd": {"cold",
    /// "warm"}}`; costs are null for a model without a price.
    #[arg(long)]
    pub json: bool,
}

/// The cost of the call, cold (the stable prefix written to the cache) and warm (read from
/// it), with the answer at its full output allowance.
#[derive(Debug, Serialize)]
struct Cost {
    cold: Option<f64>,
    warm: Option<f64>,
}

#[derive(Debug, Serialize)]
struct Report<'a> {
    spec: &'a str,
    model: &'a str,
    items: Vec<ItemReport>,
    total_tokens: usize,
    stable_tokens: usize,
    budget_tokens: usize,
    max_output_tokens: u32,
    estimated_cost_usd: Cost,
}

/// Runs `git mmm context`.
pub fn run(ctx: &Ctx, args: &Args) -> CliResult {
    let id = spec_id(&args.spec)?;
    let (root, loaded) = super::config::load(ctx, Vec::new())?;
    let root = root.ok_or_else(|| {
        CliError::with_hint(
            anyhow!("not inside a git repository"),
            "run `git mmm context` inside the repository that holds your specs",
        )
    })?;
    let config = loaded.config;
    let store = open_store(ctx)?;
    let specs = super::specs::discover_strict(&root, &config)?;
    let spec = specs.get(&id).ok_or_else(|| {
        CliError::with_hint(anyhow!("no spec `{id}`"), "`git mmm specs` lists the specs")
    })?;
    let (settings, input) =
        schedule::preview_input(&config, &specs, spec, &store, &root).map_err(|e| {
            let hint = e.hint();
            CliError::with_hint(e, hint)
        })?;
    let templates = Templates::load(Some(&root.join(".mmm").join("templates")))
        .map_err(|e| CliError::with_hint(e, "fix or remove the template in .mmm/templates/"))?;
    let prompt = build_prompt(&input, &templates)?;
    let prices = super::run::price_table(&config);
    let cost = |cached: bool| {
        let stable = prompt.stable_tokens as u64;
        let rest = prompt.token_estimate.saturating_sub(prompt.stable_tokens) as u64;
        let usage = Usage {
            input_tokens: rest,
            output_tokens: u64::from(settings.max_tokens),
            cache_creation_input_tokens: if cached { 0 } else { stable },
            cache_read_input_tokens: if cached { stable } else { 0 },
            cache_creation: None,
        };
        prices.cost(&settings.model, &usage)
    };
    let report = Report {
        spec: id.as_str(),
        model: &settings.model,
        items: with_instructions(&prompt),
        total_tokens: prompt.token_estimate,
        stable_tokens: prompt.stable_tokens,
        budget_tokens: input.options.budget_tokens,
        max_output_tokens: settings.max_tokens,
        estimated_cost_usd: Cost {
            cold: cost(false),
            warm: cost(true),
        },
    };
    let mut out = out();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        write!(out, "{}", table(&report))?;
    }
    Ok(())
}

/// The prompt's items, after a first row for what the templates themselves take (the
/// instructions, headings and placeholders' fallbacks), so that the rows add up to the total.
fn with_instructions(prompt: &Prompt) -> Vec<ItemReport> {
    let items: usize = prompt
        .items
        .iter()
        .filter(|i| i.included != Included::Omitted)
        .map(|i| i.tokens)
        .sum();
    let mut out = vec![ItemReport {
        kind: "instructions".to_owned(),
        path: None,
        priority: mmm::context::Priority::Critical,
        tokens: prompt.token_estimate.saturating_sub(items),
        included: Included::Whole,
        reason: "the templates: how to answer, headings".to_owned(),
    }];
    out.extend(prompt.items.iter().cloned());
    out
}

fn included(i: Included) -> &'static str {
    match i {
        Included::Whole => "whole",
        Included::Cut => "cut",
        Included::Outline => "outline",
        Included::Omitted => "omitted",
    }
}

fn usd(v: Option<f64>) -> String {
    v.map_or_else(
        || "unknown (no price for the model)".to_owned(),
        |v| format!("${v:.4}"),
    )
}

/// The report as a table, one row per item, then the totals and the cost.
fn table(r: &Report<'_>) -> String {
    let rows: Vec<[String; 6]> = r
        .items
        .iter()
        .map(|i| {
            [
                i.kind.clone(),
                i.path.clone().unwrap_or_else(|| "-".to_owned()),
                format!("{:?}", i.priority).to_lowercase(),
                i.tokens.to_string(),
                included(i.included).to_owned(),
                i.reason.clone(),
            ]
        })
        .collect();
    let head = ["KIND", "PATH", "PRIORITY", "TOKENS", "INCLUDED", "REASON"].map(str::to_owned);
    let mut widths = [0; 6];
    for row in std::iter::once(&head).chain(&rows) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = format!(
        "The prompt of the next iteration of `{}` (not sent)\n\n",
        r.spec
    );
    for row in std::iter::once(&head).chain(&rows) {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            if i == 5 {
                line.push_str(cell);
            } else if i == 3 {
                line.push_str(&format!("{cell:>w$}  "));
            } else {
                line.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    let shown = r
        .items
        .iter()
        .filter(|i| i.included != Included::Omitted)
        .count();
    out.push_str(&format!(
        "\n{} tokens in {shown} of {} items (budget {}; {} in the cached prefix)\n",
        r.total_tokens,
        r.items.len(),
        r.budget_tokens,
        r.stable_tokens
    ));
    out.push_str(&format!(
        "estimated cost at {} with up to {} output tokens: {} cold, {} with the cache warm\n",
        r.model,
        r.max_output_tokens,
        usd(r.estimated_cost_usd.cold),
        usd(r.estimated_cost_usd.warm)
    ));
    out
}
