//! `git mmm show SPEC [N]`: one iteration: commit, trailers, metrics and transcript.

use std::io::Write;

use mmm::store::Record;
use serde_json::{Value, json};

use super::common::{open_store, require_spec, spec_id};
use super::{CliResult, Ctx, out};

/// Arguments of `git mmm show`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The spec.
    pub spec: String,
    /// The iteration (default: the last one).
    pub iteration: Option<u32>,
    /// Only the metrics, not the transcript.
    #[arg(long)]
    pub metrics: bool,
    /// One JSON object: `{"spec", "iteration", "commit", "message", "status", "run",
    /// "metrics": [records], "transcript": [records]}` (no `transcript` with `--metrics`; a
    /// missing note is `null`).
    #[arg(long)]
    pub json: bool,
}

/// Runs `git mmm show`.
pub fn run(ctx: &Ctx, args: &Args) -> CliResult {
    let spec = spec_id(&args.spec)?;
    let store = open_store(ctx)?;
    require_spec(ctx, &store, &spec)?;
    let n = match args.iteration {
        Some(n) => n,
        None => store
            .history(&spec)?
            .last()
            .map(|i| i.n)
            .ok_or(mmm::store::StoreError::NoBranch { spec: spec.clone() })?,
    };
    let mut detail = store.iteration(&spec, n)?;
    if let Some(records) = detail.transcript.as_mut() {
        store.resolve_prompts(&spec, records)?;
    }
    let it = &detail.iteration;
    let mut out = out();
    if args.json {
        let mut value = json!({
            "spec": spec,
            "iteration": it.n,
            "commit": it.commit.to_string(),
            "message": detail.message,
            "status": it.status.as_ref().map(|s| s.to_string()),
            "run": it.run,
            "metrics": detail.metrics,
        });
        if !args.metrics {
            value["transcript"] = json!(detail.transcript);
        }
        serde_json::to_writer_pretty(&mut out, &value)?;
        writeln!(out)?;
        return Ok(());
    }
    writeln!(out, "commit {}", it.commit)?;
    writeln!(out, "Date:   {}", mmm::clock::rfc3339(it.time))?;
    writeln!(out)?;
    for line in detail.message.lines() {
        writeln!(out, "    {line}")?;
    }
    writeln!(out)?;
    match &detail.metrics {
        Some(records) => {
            writeln!(out, "== metrics")?;
            for r in records {
                write_record(&mut out, r)?;
            }
        }
        None => writeln!(out, "== metrics: no note (run `git mmm doctor`)")?,
    }
    if !args.metrics {
        match &detail.transcript {
            Some(records) => {
                writeln!(out, "\n== transcript")?;
                for r in records {
                    write_record(&mut out, r)?;
                }
            }
            None => writeln!(out, "\n== transcript: no note (run `git mmm doctor`)")?,
        }
    }
    Ok(())
}

/// Text fields shown as blocks rather than JSON.
const TEXT_FIELDS: &[&str] = &["text", "output", "error"];

fn write_record(out: &mut impl Write, r: &Record) -> std::io::Result<()> {
    writeln!(out, "-- {} (seq {}, {})", r.kind, r.seq, r.ts)?;
    for (k, v) in &r.data {
        match v {
            Value::String(s) if TEXT_FIELDS.contains(&k.as_str()) || s.contains('\n') => {
                writeln!(out, "{k}:")?;
                for line in s.lines() {
                    writeln!(out, "  | {line}")?;
                }
            }
            Value::Array(items)
                if (k == "system" || k == "user")
                    && items.iter().all(|i| i.get("text").is_some()) =>
            {
                writeln!(out, "{k}:")?;
                for item in items {
                    let text = item.get("text").and_then(Value::as_str).unwrap_or("");
                    for line in text.lines() {
                        writeln!(out, "  | {line}")?;
                    }
                    if item.get("cache").and_then(Value::as_bool) == Some(true) {
                        writeln!(out, "  | [cache breakpoint]")?;
                    }
                }
            }
            Value::String(s) => writeln!(out, "{k}: {s}")?,
            other => writeln!(out, "{k}: {other}")?,
        }
    }
    Ok(())
}
