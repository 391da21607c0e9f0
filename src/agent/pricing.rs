//! Model prices as data: the built-in table (`prices.toml`, compiled in and parsed at run
//! time), overridable from configuration, and the cost of one call.
//!
//! Owns the price arithmetic only; it knows nothing about budgets (the engine decides what to do
//! with a cost) or about where overrides come from (the CLI's config).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::anthropic::Usage;

const BUILTIN: &str = include_str!("prices.toml");

/// Prices of one model, USD per million tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelPrice {
    /// Uncached input.
    pub input: f64,
    /// Output.
    pub output: f64,
    /// Cache writes with the default 5-minute TTL.
    pub cache_write_5m: f64,
    /// Cache writes with the 1-hour TTL.
    pub cache_write_1h: f64,
    /// Input served from the prompt cache.
    pub cache_read: f64,
    /// The largest `max_tokens` the model accepts.
    #[serde(default)]
    pub max_output: Option<u64>,
    /// A dearer tier for the whole request when the prompt is long.
    #[serde(default)]
    pub long_prompt: Option<LongPromptPrice>,
}

/// The tier that replaces a model's prices when its prompt exceeds `above_tokens`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LongPromptPrice {
    /// Prompt size (input + cache writes + cache reads) above which this tier applies.
    pub above_tokens: u64,
    /// Uncached input.
    pub input: f64,
    /// Output.
    pub output: f64,
    /// Cache writes, 5-minute TTL.
    pub cache_write_5m: f64,
    /// Cache writes, 1-hour TTL.
    pub cache_write_1h: f64,
    /// Cache reads.
    pub cache_read: f64,
}

/// A table of prices by model id, with aliases (`opus` → `claude-opus-5-5`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceTable {
    /// Short names and the model id they stand for.
    #[serde(default)]
    pub aliases: BTreeMap<String, String>,
    /// Prices by model id.
    pub models: BTreeMap<String, ModelPrice>,
}

/// A price table that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PriceError {
    /// The TOML text is malformed or has an unknown or missing key.
    #[error(
        "{file}:{line}: invalid price table: {message} (hint: each [models.\"id\"] needs input, output, cache_write_5m, cache_write_1h and cache_read)"
    )]
    Parse {
        /// The file the text came from.
        file: String,
        /// 1-based line of the problem.
        line: usize,
        /// What the parser said.
        message: String,
    },
}

impl PriceTable {
    /// The built-in table from `src/agent/prices.toml`.
    pub fn builtin() -> Self {
        Self::parse(BUILTIN, "src/agent/prices.toml")
            .expect("the built-in price table is checked by a unit test")
    }

    /// Parses a table in the `prices.toml` format; `file` names the source in errors.
    pub fn parse(text: &str, file: &str) -> Result<Self, PriceError> {
        toml::from_str(text).map_err(|e| {
            let line = e.span().map_or(1, |s| crate::text::line_at(text, s.start));
            PriceError::Parse {
                file: file.to_string(),
                line,
                message: e.message().to_string(),
            }
        })
    }

    /// This table with `overrides` replacing or adding whole model rows.
    pub fn with_overrides(mut self, overrides: BTreeMap<String, ModelPrice>) -> Self {
        self.models.extend(overrides);
        self
    }

    /// The model id an alias stands for, or `model` itself.
    pub fn resolve<'a>(&'a self, model: &'a str) -> &'a str {
        self.aliases.get(model).map_or(model, String::as_str)
    }

    /// The prices of a model (or alias), if known.
    pub fn get(&self, model: &str) -> Option<&ModelPrice> {
        self.models.get(self.resolve(model))
    }

    /// The largest `max_tokens` of a model, if known.
    pub fn max_output(&self, model: &str) -> Option<u64> {
        self.get(model)?.max_output
    }

    /// The cost in USD of one call: `(input × in + cache writes × write + cache reads × read +
    /// output × out) / 1e6`, with the long-prompt tier for the whole request when it applies.
    /// Cache writes are priced by TTL when the usage splits them, else as 5-minute writes.
    /// `None` for a model the table does not know.
    pub fn cost(&self, model: &str, usage: &Usage) -> Option<f64> {
        let p = self.get(model)?;
        let prompt =
            usage.input_tokens + usage.cache_creation_input_tokens + usage.cache_read_input_tokens;
        let (input, output, w5, w1, read) = match &p.long_prompt {
            Some(t) if prompt > t.above_tokens => (
                t.input,
                t.output,
                t.cache_write_5m,
                t.cache_write_1h,
                t.cache_read,
            ),
            _ => (
                p.input,
                p.output,
                p.cache_write_5m,
                p.cache_write_1h,
                p.cache_read,
            ),
        };
        let (writes_5m, writes_1h) = match &usage.cache_creation {
            Some(c)
                if c.ephemeral_5m_input_tokens + c.ephemeral_1h_input_tokens
                    == usage.cache_creation_input_tokens =>
            {
                (c.ephemeral_5m_input_tokens, c.ephemeral_1h_input_tokens)
            }
            _ => (usage.cache_creation_input_tokens, 0),
        };
        let micro = usage.input_tokens as f64 * input
            + writes_5m as f64 * w5
            + writes_1h as f64 * w1
            + usage.cache_read_input_tokens as f64 * read
            + usage.output_tokens as f64 * output;
        Some(micro / 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_parses_and_aliases_resolve() {
        let t = PriceTable::builtin();
        assert!(t.models.len() >= 18);
        for alias in t.aliases.values() {
            assert!(t.models.contains_key(alias), "{alias}");
        }
        assert_eq!(t.max_output("opus"), Some(128000));
        assert_eq!(t.max_output("claude-3-5-haiku-20241022"), Some(8192));
    }

    #[test]
    fn bad_table_names_file_and_line() {
        let err = PriceTable::parse("[models.\"x\"]\ninput = 1\noutput = \"a\"\n", "prices.toml")
            .expect_err("bad");
        let PriceError::Parse { file, line, .. } = &err;
        assert_eq!((file.as_str(), *line), ("prices.toml", 3), "{err}");
    }
}
