//! YAML front matter, read with `serde-saphyr` straight into what the checks of `front.rs`
//! need: the top-level `key: value` pairs, each value as JSON so that YAML and TOML front
//! matter are checked by the same code.
//!
//! Owns: the YAML reader's settings (YAML 1.2 booleans, duplicate keys refused, a small budget
//! for aliases so that an alias bomb is refused at once instead of filling memory) and the
//! wording of its errors. Must not touch: the meaning of the keys.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// The top-level pairs of YAML front matter, keys as written (any YAML value), in file order.
#[derive(Debug)]
pub(crate) struct YamlFront {
    pub entries: Vec<(serde_json::Value, serde_json::Value)>,
}

/// Events that aliases may replay in one front matter. A spec's front matter is a few lines;
/// this leaves room for any reasonable use of anchors and stops an alias bomb ("billion
/// laughs") after a few kilobytes of work.
const MAX_REPLAYED_EVENTS: usize = 10_000;

/// Reads YAML front matter. An error is the 1-based line within `text`, the column when
/// known, and a message.
pub(crate) fn parse(text: &str) -> Result<YamlFront, (usize, Option<usize>, String)> {
    let mut options = serde_saphyr::options! {
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::Error,
        strict_booleans: true,
        with_snippet: false,
    };
    options.alias_limits.max_total_replayed_events = MAX_REPLAYED_EVENTS;
    match serde_saphyr::from_str_with_options::<Shape>(text, options) {
        Ok(Shape::Map(entries)) => Ok(YamlFront { entries }),
        Ok(Shape::Empty) => Ok(YamlFront {
            entries: Vec::new(),
        }),
        Ok(Shape::List) => Err((
            1,
            Some(1),
            "expected `key: value` lines, found a list".to_owned(),
        )),
        Ok(Shape::Scalar) => Err((
            1,
            Some(1),
            "expected `key: value` lines, found a single value".to_owned(),
        )),
        Err(e) => {
            let e = e.without_snippet();
            let location = e.location();
            let line = location
                .and_then(|l| usize::try_from(l.line()).ok())
                .filter(|l| *l > 0)
                .unwrap_or(1);
            let column = location
                .and_then(|l| usize::try_from(l.column()).ok())
                .filter(|c| *c > 0);
            Err((line, column, message(&e.to_string())))
        }
    }
}

/// The library's message in mmm's words, without the position it appends (the caller reports
/// the file line).
fn message(text: &str) -> String {
    let text = text.lines().next().unwrap_or(text).trim();
    let text = text.find(" at line ").map_or(text, |i| &text[..i]);
    if text.starts_with("alias replay limit exceeded") {
        return format!(
            "anchors and aliases expand to more than {MAX_REPLAYED_EVENTS} values (an alias bomb?); \
             write the values out instead"
        );
    }
    if let Some(key) = text.strip_prefix("duplicate mapping key: ") {
        let key = key
            .strip_suffix(", set DuplicateKeyPolicy in Options if acceptable")
            .unwrap_or(key);
        return format!("duplicate key `{key}`");
    }
    text.to_owned()
}

/// What the document turned out to be.
enum Shape {
    Map(Vec<(serde_json::Value, serde_json::Value)>),
    Empty,
    List,
    Scalar,
}

impl<'de> Deserialize<'de> for Shape {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ShapeVisitor)
    }
}

struct ShapeVisitor;

impl<'de> Visitor<'de> for ShapeVisitor {
    type Value = Shape;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("`key: value` lines")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Shape, A::Error> {
        let mut entries = Vec::new();
        while let Some(pair) = map.next_entry()? {
            entries.push(pair);
        }
        Ok(Shape::Map(entries))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Shape, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Shape::List)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Shape, E> {
        Ok(Shape::Empty)
    }

    fn visit_none<E: de::Error>(self) -> Result<Shape, E> {
        Ok(Shape::Empty)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Shape, E> {
        Ok(Shape::Scalar)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Shape, E> {
        Ok(Shape::Scalar)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Shape, E> {
        Ok(Shape::Scalar)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Shape, E> {
        Ok(Shape::Scalar)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Shape, E> {
        Ok(Shape::Scalar)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(text: &str) -> Vec<String> {
        parse(text)
            .expect("valid")
            .entries
            .into_iter()
            .map(|(k, _)| k.to_string())
            .collect()
    }

    #[test]
    fn pairs_in_file_order() {
        assert_eq!(
            keys("priority: high\nlabels: [a, b]\nid: x\n"),
            ["\"priority\"", "\"labels\"", "\"id\""]
        );
        let front = parse("max_iterations: 5\nlabels: [a, yes]\n").expect("valid");
        assert_eq!(front.entries[0].1, serde_json::json!(5));
        // YAML 1.2: `yes` is a string, not a boolean.
        assert_eq!(front.entries[1].1, serde_json::json!(["a", "yes"]));
        assert!(
            parse("# only a comment\n")
                .expect("valid")
                .entries
                .is_empty()
        );
        let front = parse("model: ~\n1: x\n").expect("valid YAML");
        assert_eq!(front.entries[0].1, serde_json::Value::Null);
        assert_eq!(front.entries[1].0, serde_json::json!(1));
    }

    #[test]
    fn other_shapes_and_syntax_errors_name_a_line() {
        assert_eq!(
            parse("- a\n- b\n").err(),
            Some((
                1,
                Some(1),
                "expected `key: value` lines, found a list".to_owned()
            ))
        );
        assert_eq!(
            parse("just text\n").err().map(|e| e.2),
            Some("expected `key: value` lines, found a single value".to_owned())
        );
        let (line, _, message) =
            parse("priority: high\nlabels: [a, b\nmodel: x\n").expect_err("bad");
        assert!(line >= 2, "line {line}: {message}");
        assert!(!message.contains(" at line "), "{message}");
        assert_eq!(
            parse("id: a\nid: b\n").err(),
            Some((2, Some(1), "duplicate key `id`".to_owned()))
        );
    }

    #[test]
    fn an_alias_bomb_is_refused_quickly() {
        let mut text = String::from(
            "a: &a [\"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\"]\n",
        );
        for (name, prev) in ["b", "c", "d", "e", "f", "g", "h", "i"]
            .iter()
            .zip(["a", "b", "c", "d", "e", "f", "g", "h"])
        {
            let refs = vec![format!("*{prev}"); 9].join(", ");
            text.push_str(&format!("{name}: &{name} [{refs}]\n"));
        }
        text.push_str("labels: *i\n");
        let started = std::time::Instant::now();
        let (line, _, message) = parse(&text).expect_err("refused");
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        assert!(line >= 1, "{message}");
        assert!(message.contains("alias bomb"), "{message}");
    }
}
