//! Secret redaction: every string that goes into a transcript or metrics note passes through a
//! [`Redactor`] first, so that no key or token ever lands in git.

use std::borrow::Cow;

/// Replaces known secret values with `[redacted:NAME]`.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    // Longest first, so that a secret containing another is replaced whole.
    secrets: Vec<(String, String)>,
    // The environment variables judged secret, to keep them from child processes.
    env_names: Vec<String>,
}

/// Values shorter than this are not treated as secrets: redacting `1` or `true` everywhere
/// would destroy the transcript and protect nothing.
const MIN_SECRET_LEN: usize = 6;

impl Redactor {
    /// A redactor for these `(name, value)` pairs.
    pub fn new(secrets: impl IntoIterator<Item = (String, String)>) -> Self {
        // Values often carry a stray newline (a `.env` file, a CI secret): the value is what
        // counts, so it is matched trimmed.
        let mut secrets: Vec<(String, String)> = secrets
            .into_iter()
            .map(|(n, v)| (n, v.trim().to_owned()))
            .filter(|(_, v)| v.len() >= MIN_SECRET_LEN)
            .collect();
        secrets.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then_with(|| a.0.cmp(&b.0)));
        secrets.dedup_by(|a, b| a.1 == b.1);
        Redactor {
            secrets,
            env_names: Vec::new(),
        }
    }

    /// The secrets among environment variables: the ones named like `*_KEY`, `*_TOKEN`,
    /// `*_SECRET`, `*_PASSWORD` (and the well-known API variables), plus `extra_names`.
    pub fn from_env<'a>(
        env: impl IntoIterator<Item = (&'a str, &'a str)>,
        extra_names: &[String],
        extra_values: &[String],
    ) -> Self {
        let mut secrets = Vec::new();
        for (name, value) in env {
            let upper = name.to_ascii_uppercase();
            let named_secret = ["_KEY", "_TOKEN", "_SECRET", "_PASSWORD", "_PAT"]
                .iter()
                .any(|s| upper.ends_with(s))
                || matches!(
                    upper.as_str(),
                    "ANTHROPIC_API_KEY" | "GITHUB_TOKEN" | "GH_TOKEN"
                )
                || extra_names.iter().any(|n| n == name);
            if named_secret {
                secrets.push((name.to_owned(), value.to_owned()));
            }
        }
        let env_names = secrets.iter().map(|(n, _)| n.clone()).collect();
        for (i, value) in extra_values.iter().enumerate() {
            secrets.push((format!("secret{}", i + 1), value.clone()));
        }
        Redactor {
            env_names,
            ..Redactor::new(secrets)
        }
    }

    /// The environment variables whose values are secrets: gates and the model's commands run
    /// without them.
    pub fn env_names(&self) -> &[String] {
        &self.env_names
    }

    /// The text with every secret replaced.
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(text);
        for (name, value) in &self.secrets {
            if out.contains(value.as_str()) {
                out = Cow::Owned(out.replace(value.as_str(), &format!("[redacted:{name}]")));
            }
        }
        out
    }

    /// Redacts every string (keys too) inside a JSON value.
    pub fn redact_json(&self, value: &mut serde_json::Value) {
        if self.secrets.is_empty() {
            return;
        }
        match value {
            serde_json::Value::String(s) => {
                if let Cow::Owned(r) = self.redact(s) {
                    *s = r;
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(|v| self.redact_json(v)),
            serde_json::Value::Object(map) => {
                let entries = std::mem::take(map);
                for (k, mut v) in entries {
                    self.redact_json(&mut v);
                    map.insert(self.redact(&k).into_owned(), v);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_named_and_extra_secrets() {
        let env = [
            ("ANTHROPIC_API_KEY", "sk-ant-123456789"),
            ("MY_SERVICE_TOKEN", "tok_abcdefgh"),
            ("PATH", "/usr/bin"),
            ("SHORT_KEY", "abc"),
        ];
        let r = Redactor::from_env(env, &[], &["hunter22".to_string()]);
        let mut v = serde_json::json!({
            "text": "key sk-ant-123456789 and tok_abcdefgh and hunter22 in /usr/bin abc",
            "nested": ["sk-ant-123456789"],
        });
        r.redact_json(&mut v);
        assert_eq!(
            v["text"],
            "key [redacted:ANTHROPIC_API_KEY] and [redacted:MY_SERVICE_TOKEN] and [redacted:secret1] in /usr/bin abc"
        );
        assert_eq!(v["nested"][0], "[redacted:ANTHROPIC_API_KEY]");
        assert!(r.env_names().contains(&"MY_SERVICE_TOKEN".to_string()));
        assert!(!r.env_names().contains(&"PATH".to_string()));
    }

    #[test]
    fn values_are_matched_trimmed() {
        let r = Redactor::from_env([("CI_TOKEN", "tok_1234567\n")], &[], &[]);
        assert_eq!(
            r.redact("got tok_1234567 here"),
            "got [redacted:CI_TOKEN] here"
        );
    }
}
