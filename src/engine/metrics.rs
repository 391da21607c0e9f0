//! The metrics note of an iteration, typed: what the loop writes after each iteration and what
//! everything that reads the note back (the spend of earlier runs, a resumed run's memory and
//! strategies) reads.
//!
//! Owns: the fields of the `metrics` record and their JSON names. The note's JSON only ever
//! gains fields: every field has a default (older records lack the newer ones), unknown fields
//! are ignored, and a field a kind of iteration does not have is left out rather than written
//! as `null`. Must not touch: git (the store writes and reads the note's lines).

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use crate::agent::TokenUsage;
use crate::store::{IterationStatus, Record};
use crate::validate::{GateKind, GateResult};

use super::decide::Strategy;
use super::run::StopReason;

/// The `kind` of the record that holds an iteration's metrics in its metrics note.
pub const KIND: &str = "metrics";

/// One iteration's metrics record (`kind: "metrics"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct IterationMetrics {
    /// The iteration's number.
    pub iteration: u32,
    /// The kind of agent (`api`, `claude-code`, …).
    pub agent: String,
    /// The model that answered (as it named itself), or the one asked when the call failed.
    pub model: String,
    /// The iteration's own outcome, before a stop reason changed its trailer.
    pub status: IterationStatus,
    /// Tokens used.
    #[serde(deserialize_with = "lenient")]
    pub tokens: TokenUsage,
    /// Cost in USD.
    pub cost_usd: f64,
    /// HTTP attempts or process runs of the call (absent when the call failed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    /// What the agent reported of its own (redacted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_metrics: Option<Map<String, Value>>,
    /// How long each stage took.
    pub durations: Durations,
    /// The checks that ran (absent when the call failed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gates: Option<Vec<GateMetrics>>,
    /// Checks that passed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checks_passed: Option<usize>,
    /// Checks that ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checks_total: Option<usize>,
    /// Edits applied, failed and refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub edits: Option<EditCounts>,
    /// Problems fed back to the model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problems: Option<usize>,
    /// The strategies taken after the iteration, as sentences for humans; when the loop stopped
    /// after it, the stop comes last (`stop (max-iterations): …`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decisions: Option<Vec<String>>,
    /// The same strategies by their stable names (absent when none was taken, and in records
    /// written before they were typed).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub strategies: Vec<Strategy>,
    /// Whether the model said the spec is complete.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub complete_claimed: Option<bool>,
    /// The model's `@mmm:summary`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// Why the agent call failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Why the loop stopped after this iteration.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_reason: Option<StopReason>,
    /// The `Mmm-Status` trailer the iteration was recorded with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trailer_status: Option<IterationStatus>,
    /// Attempts of the call cut short after the API had begun to bill them, already counted
    /// in `tokens` and `cost_usd` (absent when there were none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interrupted: Option<Interrupted>,
}

/// Attempts of a model call that ended before their answer did (a stream that ended in an
/// `error` event, was cut, or went silent), after `message_start` had reported the input they
/// are billed for. Counted conservatively: the input and cache tokens as reported, the output
/// as the larger of the last reported count and the text streamed at 3 bytes a token.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Interrupted {
    /// How many attempts.
    pub attempts: u32,
    /// Their tokens.
    #[serde(deserialize_with = "lenient")]
    pub tokens: TokenUsage,
    /// Their cost in USD.
    pub cost_usd: f64,
}

impl Interrupted {
    /// Bytes of streamed text counted as one output token: fewer than any tokenizer packs,
    /// so that the estimate does not fall short of what was billed.
    const BYTES_PER_TOKEN: usize = 3;

    /// Adds one attempt that had reported `usage` and streamed `text_bytes` of text.
    pub fn add_attempt(&mut self, usage: &TokenUsage, text_bytes: usize) {
        if usage.total() == 0 {
            return; // nothing began: an error status, a refused connection
        }
        let streamed = text_bytes.div_ceil(Self::BYTES_PER_TOKEN) as u64;
        self.attempts += 1;
        self.tokens.add(&TokenUsage {
            output_tokens: usage.output_tokens.max(streamed),
            ..*usage
        });
    }
}

impl Default for IterationMetrics {
    fn default() -> Self {
        IterationMetrics {
            iteration: 0,
            agent: String::new(),
            model: String::new(),
            status: IterationStatus::Other(String::new()),
            tokens: TokenUsage::default(),
            cost_usd: 0.0,
            attempts: None,
            agent_metrics: None,
            durations: Durations::default(),
            gates: None,
            checks_passed: None,
            checks_total: None,
            edits: None,
            problems: None,
            decisions: None,
            strategies: Vec::new(),
            complete_claimed: None,
            summary: None,
            error: None,
            stop_reason: None,
            trailer_status: None,
            interrupted: None,
        }
    }
}

/// Milliseconds each stage of an iteration took (a stage that did not run is absent).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Durations {
    /// Building the prompt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context_ms: Option<u64>,
    /// The agent call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_ms: Option<u64>,
    /// Parsing and applying the answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub apply_ms: Option<u64>,
    /// Running the gates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub validate_ms: Option<u64>,
    /// Snapshotting the worktree and deciding.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decide_ms: Option<u64>,
}

/// One check in the metrics (its output stays in the transcript).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateMetrics {
    /// The gate's name.
    pub name: String,
    /// The kind of check.
    pub kind: GateKind,
    /// The command that ran.
    pub command: String,
    /// Whether it passed.
    pub passed: bool,
    /// Its exit code, if it exited.
    pub exit_code: Option<i32>,
    /// How long it ran.
    pub duration_ms: u64,
    /// Whether the timeout ended it.
    pub timed_out: bool,
}

impl From<&GateResult> for GateMetrics {
    fn from(r: &GateResult) -> Self {
        GateMetrics {
            name: r.name.clone(),
            kind: r.kind,
            command: r.command.clone(),
            passed: r.passed,
            exit_code: r.exit_code,
            duration_ms: r.duration_ms,
            timed_out: r.timed_out,
        }
    }
}

/// Edits applied, failed and refused in one iteration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct EditCounts {
    /// Written.
    pub applied: usize,
    /// Could not be applied (a search text not found, …).
    pub failed: usize,
    /// Refused by the policy.
    pub refused: usize,
}

impl IterationMetrics {
    /// The record's fields, as the metrics note holds them.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).expect("metrics of strings, numbers and JSON values serialize")
    }

    /// Reads a `metrics` record (`None` for another kind, or one too damaged to read).
    pub fn from_record(r: &Record) -> Option<IterationMetrics> {
        if r.kind != KIND {
            return None;
        }
        serde_json::from_value(Value::Object(r.data.clone())).ok()
    }

    /// The metrics records of a metrics note.
    pub fn all_in(note: &[Record]) -> impl Iterator<Item = IterationMetrics> + '_ {
        note.iter().filter_map(IterationMetrics::from_record)
    }

    /// The metrics record of a metrics note (the first, if a note held several).
    pub fn of(note: &[Record]) -> Option<IterationMetrics> {
        IterationMetrics::all_in(note).next()
    }

    /// Checks passed and run (0 when none ran).
    pub fn checks(&self) -> (usize, usize) {
        (
            self.checks_passed.unwrap_or(0),
            self.checks_total.unwrap_or(0),
        )
    }
}

/// Cost and tokens recorded in an iteration's metrics note.
pub fn spend_of(note: &[Record]) -> (f64, u64) {
    IterationMetrics::all_in(note).fold((0.0, 0), |(usd, tokens), m| {
        (usd + m.cost_usd, tokens + m.tokens.total())
    })
}

/// A value that cannot be read counts as its default (token counts written by an older
/// version, say), rather than making the whole record unreadable.
fn lenient<'de, D: Deserializer<'de>, T: Default + serde::de::DeserializeOwned>(
    d: D,
) -> Result<T, D::Error> {
    let v = Value::deserialize(d)?;
    Ok(serde_json::from_value(v).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interrupted_attempts_are_counted_conservatively() {
        let mut lost = Interrupted::default();
        let began = TokenUsage {
            input_tokens: 100,
            output_tokens: 1,
            cache_read_input_tokens: 50,
            ..TokenUsage::default()
        };
        // Cut after 30 bytes of text: at least 10 output tokens.
        lost.add_attempt(&began, 30);
        // An attempt refused before it began billed nothing.
        lost.add_attempt(&TokenUsage::default(), 0);
        // A later count above the estimate wins.
        lost.add_attempt(
            &TokenUsage {
                output_tokens: 40,
                ..began
            },
            3,
        );
        assert_eq!(lost.attempts, 2);
        assert_eq!(lost.tokens.input_tokens, 200);
        assert_eq!(lost.tokens.cache_read_input_tokens, 100);
        assert_eq!(lost.tokens.output_tokens, 50);
        let m = IterationMetrics {
            interrupted: Some(lost),
            ..IterationMetrics::default()
        };
        let back: IterationMetrics = serde_json::from_value(m.to_value()).expect("reads back");
        assert_eq!(back.interrupted, Some(lost));
        assert!(
            IterationMetrics::default()
                .to_value()
                .get("interrupted")
                .is_none()
        );
    }

    fn record(data: Value) -> Record {
        let Value::Object(data) = data else {
            panic!("an object")
        };
        Record {
            v: 1,
            kind: KIND.into(),
            id: "01".into(),
            run: "R".into(),
            seq: 3,
            ts: "2026-01-01T00:00:00Z".into(),
            data,
        }
    }

    /// What the loop wrote with `metrics.insert` calls, byte for byte.
    #[test]
    fn an_answered_iteration_is_written_as_before() {
        let m = IterationMetrics {
            iteration: 2,
            agent: "api".into(),
            model: "m".into(),
            status: IterationStatus::Failed,
            tokens: TokenUsage {
                input_tokens: 10,
                output_tokens: 5,
                ..TokenUsage::default()
            },
            cost_usd: 0.25,
            attempts: Some(1),
            durations: Durations {
                context_ms: Some(1),
                agent_ms: Some(2),
                apply_ms: Some(3),
                validate_ms: Some(4),
                decide_ms: Some(5),
            },
            gates: Some(vec![GateMetrics {
                name: "test".into(),
                kind: GateKind::Test,
                command: "false".into(),
                passed: false,
                exit_code: Some(1),
                duration_ms: 7,
                timed_out: false,
            }]),
            checks_passed: Some(0),
            checks_total: Some(1),
            edits: Some(EditCounts {
                applied: 1,
                failed: 0,
                refused: 0,
            }),
            problems: Some(0),
            decisions: Some(vec!["feed the failures back to the model".into()]),
            complete_claimed: Some(false),
            trailer_status: Some(IterationStatus::Failed),
            ..IterationMetrics::default()
        };
        let line = record(m.to_value()).to_line();
        assert_eq!(
            line,
            r#"{"v":1,"kind":"metrics","id":"01","run":"R","seq":3,"ts":"2026-01-01T00:00:00Z","agent":"api","attempts":1,"checks_passed":0,"checks_total":1,"complete_claimed":false,"cost_usd":0.25,"decisions":["feed the failures back to the model"],"durations":{"agent_ms":2,"apply_ms":3,"context_ms":1,"decide_ms":5,"validate_ms":4},"edits":{"applied":1,"failed":0,"refused":0},"gates":[{"command":"false","duration_ms":7,"exit_code":1,"kind":"test","name":"test","passed":false,"timed_out":false}],"iteration":2,"model":"m","problems":0,"status":"failed","tokens":{"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"input_tokens":10,"output_tokens":5},"trailer_status":"failed"}"#
        );
        let back = IterationMetrics::from_record(&record(m.to_value())).expect("readable");
        assert_eq!(back, m);
    }

    #[test]
    fn a_failed_call_leaves_out_what_did_not_happen() {
        let m = IterationMetrics {
            iteration: 1,
            agent: "api".into(),
            model: "m".into(),
            status: IterationStatus::Error,
            durations: Durations {
                context_ms: Some(1),
                agent_ms: Some(2),
                ..Durations::default()
            },
            error: Some("boom".into()),
            stop_reason: Some(StopReason::Critical),
            trailer_status: Some(IterationStatus::Error),
            ..IterationMetrics::default()
        };
        assert_eq!(
            serde_json::to_string(&m.to_value()).expect("json"),
            r#"{"agent":"api","cost_usd":0.0,"durations":{"agent_ms":2,"context_ms":1},"error":"boom","iteration":1,"model":"m","status":"error","stop_reason":"error","tokens":{"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"input_tokens":0,"output_tokens":0},"trailer_status":"error"}"#
        );
    }

    #[test]
    fn a_stop_reason_recorded_as_critical_reads_as_error() {
        let old: StopReason = serde_json::from_str(r#""critical""#).expect("old name");
        assert_eq!(old, StopReason::Critical);
        assert_eq!(old.as_str(), "error");
        assert_eq!(serde_json::to_string(&old).expect("json"), r#""error""#);
    }

    #[test]
    fn older_and_newer_records_are_read() {
        // Older: no tokens' cache fields, no decisions; newer: a field this version lacks.
        let r = record(serde_json::json!({
            "iteration": 4, "status": "passed", "cost_usd": 0.5,
            "tokens": {"input_tokens": 1},
            "from_the_future": {"x": 1},
        }));
        let m = IterationMetrics::from_record(&r).expect("readable");
        assert_eq!(m.iteration, 4);
        assert_eq!(m.status, IterationStatus::Passed);
        assert_eq!(m.tokens, TokenUsage::default());
        assert_eq!(m.checks(), (0, 0));
        assert_eq!(spend_of(&[r]), (0.5, 0));
    }

    #[test]
    fn spend_adds_every_metrics_record_and_skips_others() {
        let a = record(serde_json::json!({"cost_usd": 0.25, "tokens": {
            "input_tokens": 1, "output_tokens": 2,
            "cache_creation_input_tokens": 3, "cache_read_input_tokens": 4}}));
        let mut other = a.clone();
        other.kind = "iteration".into();
        assert_eq!(spend_of(&[a.clone(), other, a]), (0.5, 20));
    }
}
