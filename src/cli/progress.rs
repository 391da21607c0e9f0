//! Rendering of the engine's events: a live line per running spec on a terminal (indicatif),
//! plain lines when stderr is not a terminal, or one JSON object per line with `--json`. When
//! several specs run at once, the model's streamed text is shown by whole lines, each with its
//! spec's name. Everything shown passes the run's redactor first (the engine redacts the
//! streamed text by whole lines already; this is the last door before a terminal or a CI log).

use std::collections::HashMap;
use std::io::{IsTerminal as _, Write};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use mmm::engine::{Event, Redactor, Stage};

use super::common::usd;

/// How events are shown.
pub struct Progress {
    mode: Mode,
    /// Echo the model's streamed text.
    stream_text: bool,
    /// More than one spec may run at once: streamed text goes by whole, named lines.
    concurrent: bool,
    /// Streamed text of each spec not yet shown (no end of line yet).
    partial: HashMap<String, String>,
    /// Streamed text was written as it came and did not end its line.
    mid_line: bool,
    /// What every line passes before it is shown.
    redactor: Redactor,
}

enum Mode {
    /// One JSON object per line on stdout.
    Json,
    /// A spinner line per running spec on stderr, plus a line per recorded iteration.
    Live {
        multi: MultiProgress,
        bars: HashMap<String, Bar>,
    },
    /// Plain lines on stderr (not a terminal).
    Plain,
}

struct Bar {
    bar: ProgressBar,
    tokens: u64,
    cost: f64,
}

impl Progress {
    /// Picks the renderer for this process; `concurrent` when several specs may run at once.
    pub fn new(json: bool, stream_text: bool, concurrent: bool, redactor: Redactor) -> Progress {
        let mode = if json {
            Mode::Json
        } else if std::io::stderr().is_terminal() {
            Mode::Live {
                multi: MultiProgress::new(),
                bars: HashMap::new(),
            }
        } else {
            Mode::Plain
        };
        Progress {
            mode,
            stream_text,
            concurrent,
            partial: HashMap::new(),
            mid_line: false,
            redactor,
        }
    }

    /// Shows what is left of streamed text (a loop that ended without an end of line).
    pub fn finish(&mut self) {
        let mut rest: Vec<(String, String)> = self.partial.drain().collect();
        rest.sort();
        for (spec, text) in rest {
            if !text.is_empty() {
                self.print(&format!("{spec}: {text}"));
            }
        }
    }

    /// Shows one event.
    pub fn event(&mut self, event: &Event) {
        if let Mode::Json = self.mode {
            if let Ok(mut value) = serde_json::to_value(event) {
                self.redactor.redact_json(&mut value);
                let line = value.to_string();
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{line}");
                let _ = out.flush();
            }
            return;
        }
        if let Event::Text { spec, text } = event {
            if self.stream_text {
                self.text(spec, text);
            }
            return;
        }
        if let Event::Recorded { spec, .. } | Event::Finished { spec, .. } = event {
            // What the model streamed last, if it did not end its line.
            if let Some(rest) = self.partial.remove(spec)
                && !rest.is_empty()
            {
                self.print(&format!("{spec}: {rest}"));
            }
        }
        if let Mode::Live { multi, bars } = &mut self.mode {
            match event {
                Event::Started { spec, .. } => {
                    let pb = multi.add(ProgressBar::new_spinner());
                    pb.set_style(
                        ProgressStyle::with_template("{spinner} {prefix:.bold} {msg}")
                            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                    );
                    pb.set_prefix(spec.clone());
                    pb.enable_steady_tick(Duration::from_millis(120));
                    bars.insert(
                        spec.clone(),
                        Bar {
                            bar: pb,
                            tokens: 0,
                            cost: 0.0,
                        },
                    );
                }
                Event::Stage {
                    spec,
                    iteration,
                    stage,
                    model,
                } => {
                    if let Some(b) = bars.get(spec) {
                        let model = model
                            .as_deref()
                            .map(|m| format!(" ({m})"))
                            .unwrap_or_default();
                        b.bar.set_message(format!(
                            "iteration {iteration}: {}{model} · {} tokens · {}",
                            stage_name(*stage),
                            b.tokens,
                            usd(b.cost)
                        ));
                    }
                }
                Event::Checking {
                    spec,
                    iteration,
                    name,
                    index,
                    total,
                } => {
                    if let Some(b) = bars.get(spec) {
                        b.bar.set_message(format!(
                            "iteration {iteration}: running check {index}/{total}: {name} · {} tokens · {}",
                            b.tokens,
                            usd(b.cost)
                        ));
                    }
                }
                Event::Recorded {
                    spec,
                    tokens: usage,
                    cost_usd,
                    ..
                } => {
                    if let Some(b) = bars.get_mut(spec) {
                        b.tokens += usage.total();
                        b.cost += cost_usd;
                    }
                }
                _ => {}
            }
        }
        let live = matches!(self.mode, Mode::Live { .. });
        if let Some(line) = line_for(event)
            && !(live && matches!(event, Event::Stage { .. }))
        {
            self.print(&line);
        }
        if let (Event::Finished { spec, .. }, Mode::Live { bars, .. }) = (event, &mut self.mode)
            && let Some(b) = bars.remove(spec)
        {
            b.bar.finish_and_clear();
        }
    }

    /// Streamed model text: as it comes for a single spec, by whole lines named after their
    /// spec when several run at once.
    fn text(&mut self, spec: &str, text: &str) {
        if !self.concurrent {
            let text = self.redactor.redact(text);
            match &self.mode {
                Mode::Live { multi, .. } => multi.suspend(|| eprint!("{text}")),
                _ => eprint!("{text}"),
            }
            if !text.is_empty() {
                self.mid_line = !text.ends_with('\n');
            }
            return;
        }
        let buffer = self.partial.entry(spec.to_owned()).or_default();
        buffer.push_str(text);
        let Some(end) = buffer.rfind('\n') else {
            return;
        };
        let done: String = buffer.drain(..=end).collect();
        for line in done.lines() {
            self.print(&format!("{spec}: {line}"));
        }
    }

    /// One line on stderr, above the live bars when there are any (on a line of its own after
    /// streamed text that did not end its line).
    fn print(&mut self, line: &str) {
        let line = self.redactor.redact(line);
        let line = if std::mem::take(&mut self.mid_line) {
            format!("\n{line}")
        } else {
            line.into_owned()
        };
        let line = line.as_str();
        match &self.mode {
            Mode::Live { multi, .. } => {
                let _ = multi.println(line);
            }
            _ => eprintln!("{line}"),
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

/// A human line for an event (`None` for streamed text, shown on its own).
fn line_for(event: &Event) -> Option<String> {
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
        // The line of the finished check follows; only the live spinner names a running one.
        Event::Text { .. } | Event::Checking { .. } => None,
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
                "{spec}: iteration {iteration} {status}: {checks_passed}/{checks_total} checks passed, {} tokens, {}, commit {}",
                tokens.total(),
                usd(*cost_usd),
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
            "{spec}: stopped: {} ({detail}); {iterations} iteration(s) this run, {}",
            reason.as_str(),
            usd(*cost_usd)
        )),
    }
}
