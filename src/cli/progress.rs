//! Rendering of the engine's events: a live line per spec on a terminal (indicatif), plain
//! lines when stderr is not a terminal, or one JSON object per line with `--json`.

use std::io::{IsTerminal as _, Write};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use mmm::engine::{Event, Stage};

/// How events are shown.
pub enum Progress {
    /// One JSON object per line on stdout.
    Json,
    /// A spinner line on stderr, plus a line per recorded iteration.
    Live {
        bar: Option<ProgressBar>,
        stream_text: bool,
        tokens: u64,
        cost: f64,
    },
    /// Plain lines on stderr (not a terminal).
    Plain {
        /// Echo streamed model text.
        stream_text: bool,
    },
}

impl Progress {
    /// Picks the renderer for this process.
    pub fn new(json: bool, stream_text: bool) -> Progress {
        if json {
            Progress::Json
        } else if std::io::stderr().is_terminal() {
            Progress::Live {
                bar: None,
                stream_text,
                tokens: 0,
                cost: 0.0,
            }
        } else {
            Progress::Plain { stream_text }
        }
    }

    /// Shows one event.
    pub fn event(&mut self, event: &Event) {
        match self {
            Progress::Json => {
                if let Ok(line) = serde_json::to_string(event) {
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "{line}");
                    let _ = out.flush();
                }
            }
            Progress::Plain { stream_text } => {
                if let Some(line) = line_for(event, *stream_text) {
                    eprintln!("{line}");
                }
            }
            Progress::Live {
                bar,
                stream_text,
                tokens,
                cost,
            } => {
                match event {
                    Event::Started { spec, .. } => {
                        let pb = ProgressBar::new_spinner();
                        pb.set_style(
                            ProgressStyle::with_template("{spinner} {prefix:.bold} {msg}")
                                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                        );
                        pb.set_prefix(spec.clone());
                        pb.enable_steady_tick(Duration::from_millis(120));
                        *tokens = 0;
                        *cost = 0.0;
                        *bar = Some(pb);
                    }
                    Event::Stage {
                        iteration,
                        stage,
                        model,
                        ..
                    } => {
                        if let Some(pb) = bar {
                            let model = model
                                .as_deref()
                                .map(|m| format!(" ({m})"))
                                .unwrap_or_default();
                            pb.set_message(format!(
                                "iteration {iteration}: {}{model} · {tokens} tokens · ${cost:.4}",
                                stage_name(*stage)
                            ));
                        }
                    }
                    Event::Text { text, .. } if *stream_text => {
                        if let Some(pb) = bar {
                            pb.suspend(|| eprint!("{text}"));
                        }
                    }
                    Event::Recorded {
                        tokens: usage,
                        cost_usd,
                        ..
                    } => {
                        *tokens += usage.total();
                        *cost += cost_usd;
                    }
                    _ => {}
                }
                if let Some(line) = line_for(event, false)
                    && !matches!(event, Event::Stage { .. } | Event::Text { .. })
                {
                    match bar {
                        Some(pb) => pb.println(line),
                        None => eprintln!("{line}"),
                    }
                }
                if let Event::Finished { .. } = event
                    && let Some(pb) = bar.take()
                {
                    pb.finish_and_clear();
                }
            }
        }
    }
}

fn stage_name(stage: Stage) -> &'static str {
    match stage {
        Stage::Context => "building context",
        Stage::Agent => "waiting for the model",
        Stage::Apply => "applying edits",
        Stage::Validate => "running checks",
        Stage::Record => "recording",
    }
}

/// A human line for an event (`None` for events that only update a live display).
fn line_for(event: &Event, stream_text: bool) -> Option<String> {
    match event {
        Event::Started {
            spec,
            run,
            iteration,
            resumed,
        } => Some(format!(
            "{spec}: {} run {run} at iteration {iteration}",
            if *resumed {
                "resuming with"
            } else {
                "starting"
            }
        )),
        Event::Stage {
            spec,
            iteration,
            stage,
            ..
        } => Some(format!(
            "{spec}: iteration {iteration}: {}",
            stage_name(*stage)
        )),
        Event::Text { text, .. } => stream_text.then(|| text.clone()),
        Event::Retry {
            spec,
            attempt,
            delay_ms,
            reason,
        } => Some(format!(
            "{spec}: retrying the model call (attempt {attempt}) in {:.1}s: {reason}",
            *delay_ms as f64 / 1000.0
        )),
        Event::Checked {
            spec,
            iteration,
            name,
            passed,
            exit_code,
            timed_out,
            duration_ms,
        } => {
            let outcome = if *passed {
                "passed".to_owned()
            } else if *timed_out {
                "timed out".to_owned()
            } else {
                match exit_code {
                    Some(code) => format!("failed (exit {code})"),
                    None => "failed".to_owned(),
                }
            };
            Some(format!(
                "{spec}: iteration {iteration}: {name} {outcome} in {:.1}s",
                *duration_ms as f64 / 1000.0
            ))
        }
        Event::Recorded {
            spec,
            iteration,
            status,
            commit,
            tokens,
            cost_usd,
            checks_passed,
            checks_total,
            decisions,
        } => {
            let mut line = format!(
                "{spec}: iteration {iteration} {status}: {checks_passed}/{checks_total} checks passed, {} tokens, ${cost_usd:.4}, commit {}",
                tokens.total(),
                &commit[..commit.len().min(10)]
            );
            for d in decisions {
                line.push_str(&format!("\n{spec}:   → {d}"));
            }
            Some(line)
        }
        Event::Finished {
            spec,
            reason,
            detail,
            iterations,
            cost_usd,
            ..
        } => Some(format!(
            "{spec}: stopped: {} ({detail}); {iterations} iteration(s) this run, ${cost_usd:.4}",
            reason.as_str()
        )),
    }
}
