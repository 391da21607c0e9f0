//! The repository map: every visible path, with the top-level symbols of source files found by
//! cheap line regexes (no parser): Rust `fn/struct/enum/trait/impl/mod`, Python `def/class`,
//! JS/TS `function/class/export`, Go `func/type`.
//!
//! Owns: symbol extraction. Must not touch: anything but the files it is given.

use std::sync::LazyLock;

use regex::Regex;

static RUST: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^(?:pub(?:\([^)]*\))?\s+)?(?:(?:const|async|unsafe|extern\s+\S+)\s+)*(fn|struct|enum|trait|mod|union|type)\s+([A-Za-z_][A-Za-z0-9_]*)",
    )
    .expect("a valid literal regex")
});
static RUST_IMPL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(?:unsafe\s+)?impl\b(?:\s*<[^{]*?>)?\s+([^{;]+?)\s*(?:\{|where\b|$)")
        .expect("a valid literal regex")
});
static PYTHON: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(?:async\s+)?(def|class)\s+([A-Za-z_][A-Za-z0-9_]*)")
        .expect("a valid literal regex")
});
static JS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^(?:export\s+)?(?:default\s+)?(?:declare\s+)?(?:abstract\s+)?(?:async\s+)?(function\*?|class|interface|type|enum|const|let|var)\s+([A-Za-z_$][A-Za-z0-9_$]*)",
    )
    .expect("a valid literal regex")
});
static GO: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(func|type)\s+(?:\(([^)]*)\)\s*)?([A-Za-z_][A-Za-z0-9_]*)")
        .expect("a valid literal regex")
});

/// Whether [`symbols`] knows the language of `path`.
pub fn has_symbols(path: &str) -> bool {
    matches!(
        path.rsplit_once('.').map(|(_, e)| e),
        Some("rs" | "py" | "js" | "jsx" | "mjs" | "cjs" | "ts" | "tsx" | "mts" | "cts" | "go")
    )
}

/// The top-level symbols of a source file, in file order, as `kind name` (`fn main`,
/// `impl Display for Id`, `class Spec`, `func (s *Server) Run`).
pub fn symbols(path: &str, text: &str) -> Vec<String> {
    let ext = path.rsplit_once('.').map_or("", |(_, e)| e);
    let mut out = Vec::new();
    for line in text.lines() {
        // Top level only: symbols start at column 0.
        if line.starts_with(char::is_whitespace) {
            continue;
        }
        let sym = match ext {
            "rs" => RUST_IMPL
                .captures(line)
                .map(|c| format!("impl {}", &c[1]))
                .or_else(|| RUST.captures(line).map(|c| format!("{} {}", &c[1], &c[2]))),
            "py" => PYTHON
                .captures(line)
                .map(|c| format!("{} {}", &c[1], &c[2])),
            "js" | "jsx" | "mjs" | "cjs" | "ts" | "tsx" | "mts" | "cts" => {
                JS.captures(line).and_then(|c| {
                    let kind = c[1].trim_end_matches('*');
                    // Plain top-level `const x = …` is noise unless exported.
                    let exported = line.starts_with("export");
                    (exported || !matches!(kind, "const" | "let" | "var"))
                        .then(|| format!("{kind} {}", &c[2]))
                })
            }
            "go" => GO.captures(line).map(|c| match c.get(2) {
                Some(recv) => format!("{} ({}) {}", &c[1], recv.as_str(), &c[3]),
                None => format!("{} {}", &c[1], &c[3]),
            }),
            _ => None,
        };
        out.extend(sym);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_symbols() {
        let src = "pub struct A;\nimpl<T: X> Display for A {\n    fn inner() {}\n}\npub(crate) async fn go() {}\nmod m;\n";
        assert_eq!(
            symbols("a.rs", src),
            ["struct A", "impl Display for A", "fn go", "mod m"]
        );
    }

    #[test]
    fn js_and_go_symbols() {
        let js =
            "export default function App() {}\nconst x = 1;\nexport const y = 2;\nclass K {}\n";
        assert_eq!(symbols("a.tsx", js), ["function App", "const y", "class K"]);
        let go = "func main() {}\nfunc (s *S) Run() error {\ntype S struct {\n";
        assert_eq!(
            symbols("m.go", go),
            ["func main", "func (s *S) Run", "type S"]
        );
    }
}
