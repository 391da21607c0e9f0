//! Project metadata for the prompt: name, primary language and framework, detected from the
//! manifest at the worktree's root (`Cargo.toml`, `package.json`, `pyproject.toml`, `go.mod`),
//! else from the most common source extension.
//!
//! Owns: manifest sniffing. Metadata is a hint for the model, so an unreadable or malformed
//! manifest falls back quietly instead of failing the iteration. Must not touch: anything but
//! the manifests.

use std::collections::BTreeMap;

use serde::Serialize;

use super::files::Tree;

/// What the prompt says about the project.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProjectMeta {
    /// The manifest's name, or `(unnamed)`.
    pub name: String,
    /// `Rust`, `TypeScript`, `Python`, … or `unknown`.
    pub primary_language: String,
    /// A well-known framework among the dependencies, or `none`.
    pub framework: String,
}

/// (dependency name, framework shown), first match wins, so more specific ones come first.
const RUST_FRAMEWORKS: &[(&str, &str)] = &[
    ("axum", "axum"),
    ("actix-web", "actix-web"),
    ("rocket", "rocket"),
    ("warp", "warp"),
    ("bevy", "bevy"),
    ("clap", "clap"),
    ("tokio", "tokio"),
];
const JS_FRAMEWORKS: &[(&str, &str)] = &[
    ("next", "next"),
    ("@angular/core", "angular"),
    ("svelte", "svelte"),
    ("vue", "vue"),
    ("react", "react"),
    ("express", "express"),
];
const PY_FRAMEWORKS: &[(&str, &str)] = &[
    ("django", "django"),
    ("fastapi", "fastapi"),
    ("flask", "flask"),
    ("pytest", "pytest"),
];
const GO_FRAMEWORKS: &[(&str, &str)] = &[
    ("github.com/gin-gonic/gin", "gin"),
    ("github.com/labstack/echo", "echo"),
];

/// Detects the project's metadata.
pub fn detect(tree: &Tree) -> ProjectMeta {
    let read = |name: &str| {
        if tree.contains(name) {
            tree.read_text(name).ok().flatten()
        } else {
            None
        }
    };
    let found = read("Cargo.toml")
        .and_then(|t| cargo(&t))
        .or_else(|| read("package.json").and_then(|t| package_json(&t, tree)))
        .or_else(|| read("pyproject.toml").and_then(|t| pyproject(&t)))
        .or_else(|| read("go.mod").map(|t| go_mod(&t)));
    found.unwrap_or_else(|| ProjectMeta {
        name: "(unnamed)".to_owned(),
        primary_language: language_by_extension(tree),
        framework: "none".to_owned(),
    })
}

fn pick(deps: &[String], table: &[(&str, &str)]) -> String {
    table
        .iter()
        .find(|(dep, _)| deps.iter().any(|d| d == dep))
        .map_or("none", |(_, f)| f)
        .to_owned()
}

fn table_keys(v: Option<&toml::Value>) -> Vec<String> {
    v.and_then(toml::Value::as_table)
        .map(|t| t.keys().cloned().collect())
        .unwrap_or_default()
}

fn cargo(text: &str) -> Option<ProjectMeta> {
    let doc: toml::Table = toml::from_str(text).ok()?;
    let name = doc
        .get("package")
        .and_then(|p| p.get("name"))
        .and_then(toml::Value::as_str)
        .or_else(|| {
            // A virtual workspace has no package; its name is the workspace's, if any.
            doc.get("workspace")
                .and_then(|w| w.get("package"))
                .and_then(|p| p.get("name"))
                .and_then(toml::Value::as_str)
        })
        .unwrap_or("(unnamed)")
        .to_owned();
    let mut deps = table_keys(doc.get("dependencies"));
    deps.extend(table_keys(
        doc.get("workspace").and_then(|w| w.get("dependencies")),
    ));
    Some(ProjectMeta {
        name,
        primary_language: "Rust".to_owned(),
        framework: pick(&deps, RUST_FRAMEWORKS),
    })
}

fn package_json(text: &str, tree: &Tree) -> Option<ProjectMeta> {
    let doc: serde_json::Value = serde_json::from_str(text).ok()?;
    let name = doc
        .get("name")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("(unnamed)")
        .to_owned();
    let mut deps = Vec::new();
    for key in ["dependencies", "devDependencies", "peerDependencies"] {
        if let Some(o) = doc.get(key).and_then(serde_json::Value::as_object) {
            deps.extend(o.keys().cloned());
        }
    }
    let ts = deps.iter().any(|d| d == "typescript") || tree.contains("tsconfig.json");
    Some(ProjectMeta {
        name,
        primary_language: if ts { "TypeScript" } else { "JavaScript" }.to_owned(),
        framework: pick(&deps, JS_FRAMEWORKS),
    })
}

/// The distribution name of a PEP 508 requirement (`fastapi[all]>=0.100; python_version>'3'`).
fn requirement_name(req: &str) -> String {
    req.trim()
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.'))
        .next()
        .unwrap_or("")
        .to_ascii_lowercase()
        .replace('_', "-")
}

fn pyproject(text: &str) -> Option<ProjectMeta> {
    let doc: toml::Table = toml::from_str(text).ok()?;
    let project = doc.get("project");
    let poetry = doc.get("tool").and_then(|t| t.get("poetry"));
    let name = project
        .and_then(|p| p.get("name"))
        .or_else(|| poetry.and_then(|p| p.get("name")))
        .and_then(toml::Value::as_str)
        .unwrap_or("(unnamed)")
        .to_owned();
    let mut deps = Vec::new();
    let mut add_list = |v: Option<&toml::Value>| {
        for item in v.and_then(toml::Value::as_array).into_iter().flatten() {
            if let Some(s) = item.as_str() {
                deps.push(requirement_name(s));
            }
        }
    };
    add_list(project.and_then(|p| p.get("dependencies")));
    for table in [
        project.and_then(|p| p.get("optional-dependencies")),
        doc.get("dependency-groups"),
    ] {
        for (_, v) in table.and_then(toml::Value::as_table).into_iter().flatten() {
            add_list(Some(v));
        }
    }
    deps.extend(table_keys(poetry.and_then(|p| p.get("dependencies"))));
    deps.extend(table_keys(poetry.and_then(|p| p.get("dev-dependencies"))));
    if let Some(groups) = poetry
        .and_then(|p| p.get("group"))
        .and_then(toml::Value::as_table)
    {
        for g in groups.values() {
            deps.extend(table_keys(g.get("dependencies")));
        }
    }
    let deps: Vec<String> = deps.iter().map(|d| requirement_name(d)).collect();
    Some(ProjectMeta {
        name,
        primary_language: "Python".to_owned(),
        framework: pick(&deps, PY_FRAMEWORKS),
    })
}

fn go_mod(text: &str) -> ProjectMeta {
    let mut name = "(unnamed)".to_owned();
    let mut deps = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(m) = line.strip_prefix("module ") {
            name = m.trim().trim_matches('"').to_owned();
            continue;
        }
        let line = line.strip_prefix("require ").unwrap_or(line);
        if let Some(path) = line.split_whitespace().next() {
            // Major versions are a path suffix: github.com/labstack/echo/v4.
            let base = path.trim_end_matches(|c: char| c.is_ascii_digit());
            let base = base.strip_suffix("/v").unwrap_or(path);
            deps.push(base.to_owned());
        }
    }
    ProjectMeta {
        name,
        primary_language: "Go".to_owned(),
        framework: pick(&deps, GO_FRAMEWORKS),
    }
}

/// The language of a source file by its extension, if it is one we know.
pub fn language_of(path: &str) -> Option<&'static str> {
    let ext = path.rsplit_once('.')?.1;
    Some(match ext {
        "rs" => "Rust",
        "py" => "Python",
        "js" | "mjs" | "cjs" | "jsx" => "JavaScript",
        "ts" | "tsx" | "mts" | "cts" => "TypeScript",
        "go" => "Go",
        "java" => "Java",
        "kt" | "kts" => "Kotlin",
        "c" | "h" => "C",
        "cc" | "cpp" | "cxx" | "hpp" | "hh" => "C++",
        "cs" => "C#",
        "rb" => "Ruby",
        "php" => "PHP",
        "swift" => "Swift",
        "scala" => "Scala",
        "sh" | "bash" => "Shell",
        "zig" => "Zig",
        "ex" | "exs" => "Elixir",
        "hs" => "Haskell",
        "lua" => "Lua",
        _ => return None,
    })
}

fn language_by_extension(tree: &Tree) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for f in &tree.files {
        if let Some(lang) = language_of(f) {
            *counts.entry(lang).or_default() += 1;
        }
    }
    // Ties go to the alphabetically first language, so the result is deterministic.
    counts
        .into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(a.0)))
        .map_or("unknown", |(l, _)| l)
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requirement_names() {
        assert_eq!(requirement_name("FastAPI[all]>=0.100"), "fastapi");
        assert_eq!(
            requirement_name("pytest_cov ; python_version>'3'"),
            "pytest-cov"
        );
    }

    #[test]
    fn go_major_versions() {
        let m =
            go_mod("module example.com/x\n\nrequire (\n\tgithub.com/labstack/echo/v4 v4.11.0\n)\n");
        assert_eq!(m.name, "example.com/x");
        assert_eq!(m.framework, "echo");
    }
}
