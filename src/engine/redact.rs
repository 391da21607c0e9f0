//! Secret redaction: every string that goes into a transcript or metrics note, a commit
//! message, or onto the screen (the streamed text, `--json` events) passes through a
//! [`Redactor`] first, so that no key or token lands in git or in a CI log.
//!
//! Secrets are known by value (the environment's, by name) and by shape: an AWS access key
//! id, the password of a URL (`postgres://user:PASSWORD@host`), and `[redact] patterns`.

use std::borrow::Cow;

use regex::Regex;

/// The well-known variables that hold keys and tokens: always judged secret, and kept from
/// gates and the model's commands even when not set (a gate could set one for its children).
pub const SECRET_ENV: &[&str] = &[
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "GITHUB_TOKEN",
    "GH_TOKEN",
    "NPM_TOKEN",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
];

/// The endings of variable names whose values are secrets.
const SECRET_SUFFIXES: &[&str] = &[
    "_KEY",
    "_TOKEN",
    "_SECRET",
    "_PASSWORD",
    "_PAT",
    "_ACCESS_KEY_ID",
    "_CREDENTIALS",
];

/// Secrets known by their shape, whatever variable (if any) holds them: `(name, regex)`; a
/// regex with a group redacts the group only.
const BUILTIN_PATTERNS: &[(&str, &str)] = &[
    ("aws-access-key-id", r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    // The password of a URL's userinfo (a database URL), not the user or the host.
    (
        "url-password",
        r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@\[\]]+:([^/\s@\[\]]+)@",
    ),
];

/// A secret known by its shape.
#[derive(Debug, Clone)]
struct Shape {
    name: String,
    regex: Regex,
}

/// Replaces known secret values with `[redacted:NAME]`.
#[derive(Debug, Clone)]
pub struct Redactor {
    // Longest first, so that a secret containing another is replaced whole.
    secrets: Vec<(String, String)>,
    // Every secret value as one alternation, longest first: the leftmost match at a position
    // is the longest secret there, and the text is rewritten in one pass, so a secret is never
    // looked for inside another's `[redacted:NAME]`. `None` without secrets.
    pattern: Option<Regex>,
    // The environment variables judged secret, to keep them from child processes.
    env_names: Vec<String>,
    // Secrets known by shape, matched after the values.
    shapes: Vec<Shape>,
}

impl Default for Redactor {
    /// No secret values; the built-in shapes only.
    fn default() -> Self {
        Redactor::new(Vec::new())
    }
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
        let pattern = (!secrets.is_empty())
            .then(|| {
                let alternation: Vec<String> =
                    secrets.iter().map(|(_, v)| regex::escape(v)).collect();
                // Secrets are few and short; a huge one (a whole key file) may need room.
                regex::RegexBuilder::new(&alternation.join("|"))
                    .size_limit(1 << 28)
                    .build()
                    .ok()
            })
            .flatten();
        Redactor {
            secrets,
            pattern,
            env_names: Vec::new(),
            shapes: builtin_shapes(),
        }
    }

    /// The same redactor also replacing what these regular expressions match (the first
    /// group, when there is one): `[redact] patterns`. A pattern that is not a valid regular
    /// expression is an error naming it.
    pub fn with_patterns(mut self, patterns: &[String]) -> Result<Self, String> {
        for (i, p) in patterns.iter().enumerate() {
            let regex = Regex::new(p).map_err(|e| format!("[redact] patterns: {p:?}: {e}"))?;
            self.shapes.push(Shape {
                name: format!("pattern{}", i + 1),
                regex,
            });
        }
        Ok(self)
    }

    /// The secrets among environment variables: the ones named like `*_KEY`, `*_TOKEN`,
    /// `*_SECRET`, `*_PASSWORD` (and the well-known API variables), plus `extra_names`.
    pub fn from_env<'a>(
        env: impl IntoIterator<Item = (&'a str, &'a str)>,
        extra_names: &[String],
        extra_values: &[String],
    ) -> Self {
        let mut secrets = Vec::new();
        let mut passwords = Vec::new();
        for (name, value) in env {
            let upper = name.to_ascii_uppercase();
            let named_secret = SECRET_SUFFIXES.iter().any(|s| upper.ends_with(s))
                || SECRET_ENV.contains(&upper.as_str())
                || extra_names.iter().any(|n| n == name);
            if named_secret {
                secrets.push((name.to_owned(), value.to_owned()));
            } else if let Some(password) = url_password(value) {
                // A database URL: its password is a secret wherever it appears, but the
                // variable stays for the gates (their tests may need the database).
                passwords.push((name.to_owned(), password.to_owned()));
            }
        }
        let env_names = secrets.iter().map(|(n, _)| n.clone()).collect();
        secrets.extend(passwords);
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

    /// What gates and the model's commands run without: [`SECRET_ENV`] and every variable
    /// judged secret, sorted.
    pub fn hidden_env(&self) -> Vec<String> {
        let mut hidden: Vec<String> = SECRET_ENV.iter().map(|s| (*s).to_owned()).collect();
        hidden.extend(self.env_names.iter().cloned());
        hidden.sort();
        hidden.dedup();
        hidden
    }

    /// The text with every secret replaced, in one pass: at each position the longest secret
    /// found there is replaced, and what a replacement wrote is not searched again.
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let by_value = match &self.pattern {
            Some(pattern) => pattern.replace_all(text, |m: &regex::Captures<'_>| {
                format!("[redacted:{}]", self.name_of(&m[0]))
            }),
            None => self.redact_by_scan(text),
        };
        let mut out = by_value;
        for shape in &self.shapes {
            let replaced = match redact_shape(shape, &out) {
                Cow::Owned(s) => Some(s),
                Cow::Borrowed(_) => None,
            };
            if let Some(s) = replaced {
                out = Cow::Owned(s);
            }
        }
        out
    }

    /// The name of a secret value.
    fn name_of(&self, value: &str) -> &str {
        self.secrets
            .iter()
            .find(|(_, v)| v == value)
            .map_or("secret", |(n, _)| n.as_str())
    }

    /// One pass without the pattern (it could not be built): at each position, the first of
    /// the secrets (longest first) that starts there.
    fn redact_by_scan<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = String::new();
        let mut copied = 0;
        let mut at = 0;
        while let Some(rest) = text.get(at..).filter(|r| !r.is_empty()) {
            match self
                .secrets
                .iter()
                .find(|(_, v)| rest.starts_with(v.as_str()))
            {
                Some((name, value)) => {
                    out.push_str(&text[copied..at]);
                    out.push_str(&format!("[redacted:{name}]"));
                    at += value.len();
                    copied = at;
                }
                None => at += rest.chars().next().map_or(1, char::len_utf8),
            }
        }
        if copied == 0 {
            return Cow::Borrowed(text);
        }
        out.push_str(&text[copied..]);
        Cow::Owned(out)
    }

    /// Redacts every string (keys too) inside a JSON value.
    pub fn redact_json(&self, value: &mut serde_json::Value) {
        if self.secrets.is_empty() && self.shapes.is_empty() {
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

fn builtin_shapes() -> Vec<Shape> {
    BUILTIN_PATTERNS
        .iter()
        .map(|(name, re)| Shape {
            name: (*name).to_owned(),
            regex: Regex::new(re).expect("the built-in patterns are valid"),
        })
        .collect()
}

/// The password of a URL with userinfo (`scheme://user:password@host…`), if long enough to be
/// a secret.
fn url_password(value: &str) -> Option<&str> {
    let (_, rest) = value.trim().split_once("://")?;
    let userinfo = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let (userinfo, _host) = userinfo.rsplit_once('@')?;
    let (_, password) = userinfo.split_once(':')?;
    (password.len() >= MIN_SECRET_LEN).then_some(password)
}

/// `text` with what `shape` matches (its first group, when it has one) replaced.
fn redact_shape<'a>(shape: &Shape, text: &'a str) -> Cow<'a, str> {
    let mut out = String::new();
    let mut copied = 0;
    for caps in shape.regex.captures_iter(text) {
        let Some(m) = caps.get(1).or_else(|| caps.get(0)) else {
            continue;
        };
        if m.start() < copied || m.is_empty() {
            continue;
        }
        out.push_str(&text[copied..m.start()]);
        out.push_str(&format!("[redacted:{}]", shape.name));
        copied = m.end();
    }
    if copied == 0 {
        return Cow::Borrowed(text);
    }
    out.push_str(&text[copied..]);
    Cow::Owned(out)
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
    fn one_pass_never_looks_inside_a_replacement() {
        // `redacted` is a secret too, and `abcdef` is inside another secret: each is found
        // only in the text given, never in what redaction wrote.
        let r = Redactor::new([
            ("LONG_KEY".to_owned(), "abcdef-123456".to_owned()),
            ("SHORT_KEY".to_owned(), "abcdef".to_owned()),
            ("WORD".to_owned(), "redacted".to_owned()),
            ("NAME".to_owned(), "SHORT_KEY".to_owned()),
        ]);
        let text = "abcdef-123456 then abcdef then redacted then SHORT_KEY";
        let want = "[redacted:LONG_KEY] then [redacted:SHORT_KEY] then [redacted:WORD] then \
                    [redacted:NAME]";
        assert_eq!(r.redact(text), want);
        // The scan used when the pattern cannot be built gives the same text.
        assert_eq!(r.redact_by_scan(text), want);
        assert!(matches!(r.redact("nothing secret"), Cow::Borrowed(_)));
        assert!(matches!(
            r.redact_by_scan("nothing secret"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn hidden_env_holds_the_well_known_names_and_the_secrets_found() {
        let r = Redactor::from_env([("MY_TOKEN", "tok_abcdefgh"), ("HOME", "/h")], &[], &[]);
        assert_eq!(
            r.hidden_env(),
            [
                "ANTHROPIC_API_KEY",
                "ANTHROPIC_AUTH_TOKEN",
                "AWS_ACCESS_KEY_ID",
                "AWS_SECRET_ACCESS_KEY",
                "AWS_SESSION_TOKEN",
                "GH_TOKEN",
                "GITHUB_TOKEN",
                "MY_TOKEN",
                "NPM_TOKEN"
            ]
        );
    }

    #[test]
    fn cloud_and_forge_credentials_and_database_passwords() {
        let env = [
            ("AWS_ACCESS_KEY_ID", "AKIAZZZZEXAMPLE12345"),
            ("AWS_SESSION_TOKEN", "FwoGZXIvYXdzEXAMPLE"),
            ("NPM_TOKEN", "npm_abcdefghijkl"),
            (
                "DATABASE_URL",
                "postgres://app:s3cr3t-pw@db.internal:5432/app",
            ),
            ("HOME", "/home/me"),
        ];
        let r = Redactor::from_env(env, &[], &[]);
        assert_eq!(
            r.redact(
                "AKIAZZZZEXAMPLE12345 FwoGZXIvYXdzEXAMPLE npm_abcdefghijkl s3cr3t-pw /home/me"
            ),
            "[redacted:AWS_ACCESS_KEY_ID] [redacted:AWS_SESSION_TOKEN] [redacted:NPM_TOKEN] \
             [redacted:DATABASE_URL] /home/me"
        );
        // The database URL stays for the gates; its password is redacted wherever it shows.
        assert!(!r.env_names().contains(&"DATABASE_URL".to_owned()));
        // By shape, without the environment: another key id, another URL's password.
        let none = Redactor::default();
        assert_eq!(
            none.redact("id ASIAABCDEFGHIJKLMNOP at mysql://root:hunter2hunter2@localhost/x"),
            "id [redacted:aws-access-key-id] at mysql://root:[redacted:url-password]@localhost/x"
        );
    }

    #[test]
    fn configured_patterns_redact_their_group_or_match() {
        let r = Redactor::default()
            .with_patterns(&["sk_live_[0-9a-z]{8}".into(), "pin=([0-9]{4})".into()])
            .expect("valid");
        assert_eq!(
            r.redact("sk_live_abcd1234 pin=1234"),
            "[redacted:pattern1] pin=[redacted:pattern2]"
        );
        let mut v = serde_json::json!({"a": ["sk_live_abcd1234"]});
        r.redact_json(&mut v);
        assert_eq!(v["a"][0], "[redacted:pattern1]");
        let err = Redactor::default()
            .with_patterns(&["(".into()])
            .expect_err("invalid");
        assert!(err.contains("[redact] patterns"), "{err}");
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
