//! End to end: a generated repository of a few thousand files with decoys (files sharing the
//! spec's ordinary words, generated and vendored files, lock files, snapshots, fixtures, a huge
//! file), where the files the spec is about must win, through `git mmm context` and through
//! `git mmm run`'s recorded prompt.

use serde_json::Value;

use crate::support::TestRepo;
use crate::support::fake_anthropic::Reply;
use crate::support::project::transcript;
use crate::support::scenario::{Scenario, done};

/// The spec: two rare identifiers among ordinary words every file has.
const SPEC: &str = "# Invoice rounding\n\n## Objective\n\nRun the report and change \
`round_invoice_total` so that the total exists rounded with the `CurrencyRounding` rule; \
remove the test change that reports the old value. Make `check.sh` pass.\n\n\
## Acceptance criteria\n\n- the invoice total is rounded half-even.\n  verify: `sh check.sh`\n";

/// Ordinary words of the spec, in every generated file.
const COMMON: &str = "// Run the report, test the change, remove what exists, report it.\n";

/// The files of the generated repository: (path, content).
fn generated() -> Vec<(String, String)> {
    let mut files = Vec::new();
    for m in 0..60 {
        for f in 0..40 {
            files.push((
                format!("src/area{m:02}/part{f:02}.rs"),
                format!("{COMMON}pub fn run_part_{m}_{f}() -> u32 {{\n    {f}\n}}\n"),
            ));
        }
    }
    // The right files.
    files.push((
        "src/billing/invoice.rs".to_owned(),
        format!("{COMMON}pub fn round_invoice_total(total: f64) -> f64 {{\n    total\n}}\n"),
    ));
    files.push((
        "src/billing/currency.rs".to_owned(),
        format!("{COMMON}pub struct CurrencyRounding;\n\nimpl CurrencyRounding {{\n    pub fn apply(&self, v: f64) -> f64 {{\n        v\n    }}\n}}\n"),
    ));
    // Decoys that name the spec's rare words but must stay out.
    let rare = "round_invoice_total CurrencyRounding invoice rounding\n";
    files.push(("Cargo.lock".to_owned(), rare.repeat(50)));
    files.push((
        "docs/invoice-rounding.svg".to_owned(),
        format!("<svg>{rare}</svg>\n"),
    ));
    files.push((
        "tests/snapshots/invoice__rounding.snap".to_owned(),
        rare.repeat(20),
    ));
    files.push((
        "tests/fixtures/invoice/rounding.rs".to_owned(),
        rare.repeat(20),
    ));
    files.push((
        "src/generated/invoice_rounding_pb.rs".to_owned(),
        rare.repeat(20),
    ));
    files.push((
        ".gitattributes".to_owned(),
        "src/generated/** linguist-generated=true\n".to_owned(),
    ));
    // A huge file that mentions the rare words once: in only as an outline.
    let mut huge =
        format!("{COMMON}pub fn invoice_rounding_table() -> &'static [u32] {{\n    &[\n");
    huge.push_str(&"        1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,\n".repeat(3000));
    huge.push_str("    ]\n}\n");
    files.push(("src/tables/invoice_tables.rs".to_owned(), huge));
    // A long changelog made of the ordinary words.
    files.push(("CHANGELOG.md".to_owned(), COMMON.repeat(2000)));
    files
}

fn project() -> crate::support::scenario::Project {
    let mut s = Scenario::new()
        .config("[loop]\nmax_iterations = 1\n")
        .spec_text("rounding", SPEC)
        .check("test -e done.txt\n")
        .answer("Invoice rounding", Reply::text(&done()));
    for (path, content) in generated() {
        s = s.file(&path, &content);
    }
    s.build()
}

fn file_rows(report: &Value) -> Vec<(String, String)> {
    report["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|i| i["kind"] == "file")
        .map(|i| {
            (
                i["path"].as_str().expect("path").to_owned(),
                i["included"].as_str().expect("included").to_owned(),
            )
        })
        .collect()
}

const DECOYS: &[&str] = &[
    "Cargo.lock",
    "docs/invoice-rounding.svg",
    "tests/snapshots/invoice__rounding.snap",
    "tests/fixtures/invoice/rounding.rs",
    "src/generated/invoice_rounding_pb.rs",
    "CHANGELOG.md",
];

#[test]
fn the_right_files_win_in_git_mmm_context_and_run() {
    let p = project();
    let out = p.run(&["context", "rounding", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        crate::support::project::show(&out)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let files = file_rows(&report);
    // The two files the spec is about come first, whole.
    assert_eq!(
        files[..2],
        [
            ("src/billing/invoice.rs".to_owned(), "whole".to_owned()),
            ("src/billing/currency.rs".to_owned(), "whole".to_owned()),
        ],
        "{files:?}"
    );
    // The huge file is an outline; no decoy is even weighed.
    assert!(
        files.contains(&(
            "src/tables/invoice_tables.rs".to_owned(),
            "outline".to_owned()
        )),
        "{files:?}"
    );
    for decoy in DECOYS {
        assert!(
            files.iter().all(|(f, _)| f != decoy),
            "{decoy} in {files:?}"
        );
    }
    // None of the thousands of ordinary files, which share only common words.
    assert!(files.iter().all(|(f, _)| !f.contains("/area")), "{files:?}");
    // The budget holds, and the map is ranked and cut: the billing files are on it.
    let total = report["total_tokens"].as_u64().expect("total");
    assert!(total <= 40_000, "{total}");
    let map = report["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|i| i["kind"] == "repo-map")
        .expect("a map");
    assert_eq!(map["included"], "cut");
    assert!(
        map["reason"].as_str().expect("reason").contains("of 2"),
        "{map}"
    );
    assert!(
        report["estimated_cost_usd"]["cold"].as_f64().expect("cold")
            > report["estimated_cost_usd"]["warm"].as_f64().expect("warm")
    );

    // The run sends that prompt: its transcript lists the same files first.
    let out = p.run(&["run", "rounding"]);
    assert!(
        out.status.success(),
        "{}",
        crate::support::project::show(&out)
    );
    let it = &p.iterations("rounding")[0];
    let records = transcript(&p.repo, "rounding", &it.commit);
    let prompt = records
        .iter()
        .find(|r| r["kind"] == "prompt")
        .expect("a prompt record");
    let sent: Vec<&str> = prompt["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| f["path"].as_str().expect("path"))
        .collect();
    assert_eq!(
        sent[..2],
        ["src/billing/invoice.rs", "src/billing/currency.rs"]
    );
    for decoy in DECOYS {
        assert!(!sent.contains(decoy), "{decoy} in {sent:?}");
    }
    assert!(prompt["token_estimate"].as_u64().expect("estimate") <= 40_000);
    let system = prompt["system"].to_string();
    assert!(system.contains("pub fn round_invoice_total"));
    assert!(!system.contains("<svg>"));
}

/// The table of `git mmm context` on a small project.
#[test]
fn context_table_snapshot() {
    let repo = TestRepo::new();
    repo.write(".mmm/config.toml", "[agent]\nkind = \"api\"\n");
    repo.write(
        "specs/login.md",
        "# Login\n\n## Objective\n\nAdd a `login` handler with password checks.\n\n\
         ## Acceptance criteria\n\n- login accepts the right password\n  verify: `cargo test login_ok`\n\n\
         ## Context\n\n- `src/lib.rs`\n- `src/missing.rs`\n",
    );
    repo.write("src/lib.rs", "pub mod login;\n");
    repo.write(
        "src/login.rs",
        "pub fn login(password: &str) -> bool {\n    false\n}\n",
    );
    repo.write("src/db.rs", "pub fn connect() {}\n");
    repo.write("Cargo.lock", "# login password\n");
    repo.commit_all("code");
    let text = repo.mmm_ok(&["context", "login"]);
    insta::assert_snapshot!(text, @r"
    The prompt of the next iteration of `login` (not sent)

    KIND           PATH            PRIORITY  TOKENS  INCLUDED  REASON
    instructions   -               critical     707  whole     the templates: how to answer, headings
    context-entry  src/missing.rs  high           0  omitted   matches no visible file (missing, ignored by .gitignore, or excluded)
    spec           -               critical      60  whole     spec login
    criteria       -               critical      21  whole     acceptance criteria
    repo-map       -               medium        23  whole     repository map
    file           src/lib.rs      high          23  whole     spec context
    file           src/login.rs    low           34  whole     relevant to the spec, score 13.77
    file           src/db.rs       low           23  whole     relevant to the spec, score 10.82

    891 tokens in 7 of 8 items (budget 40000; 797 in the cached prefix)
    estimated cost at claude-sonnet-5-5 with up to 16000 output tokens: $0.1622 cold, $0.1603 with the cache warm
    ");
    // Cargo.lock shares the spec's words but is a lock file: it is not even weighed.
    assert!(!text.contains("Cargo.lock"));
}
