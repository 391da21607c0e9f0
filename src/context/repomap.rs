//! The repository map: every visible path, with the top-level symbols of source files found by
//! cheap line regexes (no parser): Rust `fn/struct/enum/trait/impl/mod`, Python `def/class`,
//! JS/TS `function/class/export`, Go `func/type`.
//!
//! Owns: symbol extraction. Must not touch: anything but the files it is given.

use std::sync::LazyLock;

use regex::Regex;

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
    text.lines().filter_map(|l| line_symbol(ext, l)).collect()
}

/// The outline of a source file too large to show: each line that declares a top-level item
/// (its signature as written), with its 1-based line number; empty when the language is not
/// known or nothing was found.
pub fn outline(path: &str, text: &str) -> String {
    let ext = path.rsplit_once('.').map_or("", |(_, e)| e);
    let mut out = String::new();
    for (i, line) in text.lines().enumerate() {
        // Methods one level in (Rust impls, Python classes) belong to the outline too.
        let method = line
            .strip_prefix("    ")
            .or_else(|| line.strip_prefix('\t'))
            .and_then(|l| line_symbol(ext, l))
            .is_some_and(|s| s.starts_with("fn ") || s.starts_with("def "));
        if method || line_symbol(ext, line).is_some() {
            let sig = line.trim_end().trim_end_matches('{').trim_end();
            out.push_str(&format!("{}: {sig}\n", i + 1));
        }
    }
    out
}

/// The names a source file defines, for the symbol index: its top-level items and the
/// methods one level in (Rust impls and traits, Python classes), in file order, without
/// `impl` blocks (which define nothing new).
pub(crate) fn definitions(path: &str, text: &str) -> Vec<String> {
    let ext = path.rsplit_once('.').map_or("", |(_, e)| e);
    let mut out = Vec::new();
    for line in text.lines() {
        let symbol = match line
            .strip_prefix("    ")
            .or_else(|| line.strip_prefix('\t'))
        {
            Some(inner) => {
                line_symbol(ext, inner).filter(|s| s.starts_with("fn ") || s.starts_with("def "))
            }
            None => line_symbol(ext, line),
        };
        if let Some(s) = symbol.filter(|s| !s.starts_with("impl "))
            && let Some(name) = s.rsplit(' ').next()
        {
            out.push(name.to_owned());
        }
    }
    out
}

/// The top-level symbol a line of a file with extension `ext` declares, if any.
fn line_symbol(ext: &str, line: &str) -> Option<String> {
    // Top level only: symbols start at column 0.
    if line.starts_with(char::is_whitespace) {
        return None;
    }
    match ext {
        "rs" => rust_symbol(line),
        // A cheap prefix check first: the regexes are the slow part of a large map.
        "py" if !starts_with_any(line, &["def", "class", "async"]) => None,
        "js" | "jsx" | "mjs" | "cjs" | "ts" | "tsx" | "mts" | "cts"
            if !starts_with_any(
                line,
                &[
                    "export",
                    "function",
                    "class",
                    "interface",
                    "type",
                    "enum",
                    "declare",
                    "abstract",
                    "async",
                ],
            ) =>
        {
            None
        }
        "go" if !starts_with_any(line, &["func", "type"]) => None,
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
    }
}

fn starts_with_any(line: &str, prefixes: &[&str]) -> bool {
    prefixes.iter().any(|p| line.starts_with(p))
}

/// A top-level Rust item, parsed by hand (modifiers, then the keyword, then the name): this
/// runs on every line of every Rust file of the repository map, where regexes cost too much.
fn rust_symbol(line: &str) -> Option<String> {
    let mut rest = line;
    loop {
        rest = rest.trim_start();
        if let Some(r) = rest.strip_prefix("pub(") {
            rest = &r[r.find(')')? + 1..];
        } else if let Some(r) = ["pub ", "const ", "async ", "unsafe ", "default "]
            .iter()
            .find_map(|m| rest.strip_prefix(m))
        {
            rest = r;
        } else if let Some(r) = rest.strip_prefix("extern ") {
            // `extern "C" fn`; `extern crate x;` is not a symbol worth mapping.
            let r = r.trim_start();
            let abi = r.strip_prefix('"')?;
            rest = &abi[abi.find('"')? + 1..];
        } else {
            break;
        }
    }
    let (kind, after) = rest.split_once(|c: char| c.is_whitespace() || c == '<')?;
    match kind {
        "impl" => {
            let mut after = after;
            if rest.as_bytes().get(4) == Some(&b'<') {
                // Skip the impl's generic parameters, balancing the angle brackets.
                let mut depth = 1;
                let end = after.char_indices().find_map(|(i, c)| {
                    match c {
                        '<' => depth += 1,
                        '>' => depth -= 1,
                        _ => {}
                    }
                    (depth == 0).then_some(i)
                })?;
                after = &after[end + 1..];
            }
            let end = [after.find('{'), after.find(" where"), after.find(';')]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(after.len());
            let target = after[..end].trim();
            (!target.is_empty()).then(|| format!("impl {target}"))
        }
        "fn" | "struct" | "enum" | "trait" | "mod" | "union" | "type" => {
            let after = after.trim_start();
            let end = after
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (end > 0).then(|| format!("{kind} {}", &after[..end]))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_symbols() {
        let src = "pub struct A;\nimpl<T: X<u8>> Display for A<T> where T: Y {\n    fn inner() {}\n}\n\
                   pub(crate) async fn go() {}\nmod m;\npub extern \"C\" fn ffi() {}\n\
                   unsafe impl Send for A {}\nextern crate alloc;\nuse x::y;\nstruct G<T>(T);\n";
        assert_eq!(
            symbols("a.rs", src),
            [
                "struct A",
                "impl Display for A<T>",
                "fn go",
                "mod m",
                "fn ffi",
                "impl Send for A",
                "struct G"
            ]
        );
    }

    #[test]
    fn outline_keeps_signatures_with_line_numbers() {
        let src = "use x;\n\npub fn parse(input: &str) -> Result<Ast, Error> {\n    body()\n}\n\
                   struct Ast {\n    a: u8,\n}\nimpl Ast {\n    pub fn len(&self) -> usize {\n\
                   \x20       inner_fn();\n    }\n}\n";
        assert_eq!(
            outline("big.rs", src),
            "3: pub fn parse(input: &str) -> Result<Ast, Error>\n6: struct Ast\n9: impl Ast\n\
             10:     pub fn len(&self) -> usize\n"
        );
        assert_eq!(outline("data.csv", "a,b\n"), "");
    }

    #[test]
    fn definitions_are_item_and_method_names() {
        let src = "pub struct Semaphore;\nimpl Semaphore {\n    pub fn blocking_acquire(&self) {}\n\
                   \x20       fn nested() {}\n}\ntrait T {\n    fn poll_peek();\n}\n";
        assert_eq!(
            definitions("s.rs", src),
            ["Semaphore", "blocking_acquire", "T", "poll_peek"]
        );
        let go = "func (s *S) Run() error {\ntype S struct {\n";
        assert_eq!(definitions("m.go", go), ["Run", "S"]);
        let py = "class K:\n    def run(self):\n        def inner(): pass\n";
        assert_eq!(definitions("k.py", py), ["K", "run"]);
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
