//! The status comment: the one comment mmm keeps on a spec's pull request and rewrites after
//! every recorded iteration.
//!
//! Owns: the comment's markdown, from a [`SpecReport`]: a hidden marker (found again by the
//! forge's client together with the comment's author), the iterations' table, the acceptance
//! criteria with ✅/❌, the stop reason, the budget against its cap, and mermaid charts of the
//! checks passing and the cost per iteration. The comment stays under the forge's size limit by
//! folding old iterations into a `<details>` block and, past that, counting them. Must not
//! touch: the store, the network.

use std::fmt::Write as _;

use super::report::{BudgetUse, CriterionRow, IterationRow, SpecReport};

/// GitHub's limit on a comment's body, in characters.
pub const MAX_COMMENT_CHARS: usize = 65_536;

/// What the renderer aims for, leaving room below the limit.
const TARGET_CHARS: usize = 60_000;

/// Criteria listed at most, and the characters kept of each.
const MAX_CRITERIA: usize = 100;
const MAX_CRITERION_CHARS: usize = 300;

/// How the status comment is rendered.
#[derive(Debug, Clone)]
pub struct CommentOptions {
    /// The URL an iteration commit's id is appended to for its link
    /// (`https://github.com/OWNER/REPO/commit`); `None`: ids without links.
    pub commit_url: Option<String>,
    /// Iterations shown in the open table, newest last; older ones are folded.
    pub recent: usize,
    /// Iterations the charts show at most (the newest).
    pub chart_points: usize,
}

impl Default for CommentOptions {
    fn default() -> Self {
        CommentOptions {
            commit_url: None,
            recent: 20,
            chart_points: 50,
        }
    }
}

/// The hidden line that marks mmm's status comment for `spec`.
pub fn marker(spec: &str) -> String {
    format!("<!-- mmm:status spec={spec} -->")
}

/// The status comment of `report`, in markdown, under [`MAX_COMMENT_CHARS`] characters.
pub fn render_status(report: &SpecReport, opts: &CommentOptions) -> String {
    let mut head = String::new();
    let _ = writeln!(head, "{}", marker(&report.spec));
    let _ = writeln!(head, "### mmm: {}\n", one_line(&report.title));
    let _ = writeln!(head, "{}\n", summary_line(report));
    let split = report.iterations.len().saturating_sub(opts.recent);
    let (older, recent) = report.iterations.split_at(split);
    if !recent.is_empty() {
        head.push_str(&table(recent, opts));
    }
    let mut tail = String::new();
    tail.push_str(&criteria(&report.criteria));
    tail.push_str(&charts(&report.iterations, opts.chart_points));
    let room = TARGET_CHARS.saturating_sub(chars(&head) + chars(&tail));
    let mut out = head;
    out.push_str(&folded(&report.spec, older, opts, room));
    out.push_str(&tail);
    out
}

/// Status, stop reason and budget in one line.
fn summary_line(report: &SpecReport) -> String {
    let state = match (report.iterations.last(), report.stop_reason) {
        (None, _) => "No iteration yet".to_owned(),
        (Some(last), Some(reason)) => format!(
            "**{}** after {} · stop reason: `{}`",
            last.status,
            iterations(report.iterations.len()),
            reason.as_str()
        ),
        (Some(last), None) => format!(
            "**{}** after {} · still running",
            last.status,
            iterations(report.iterations.len())
        ),
    };
    format!("{state} · budget: {}", budget(&report.budget))
}

fn iterations(n: usize) -> String {
    if n == 1 {
        "1 iteration".to_owned()
    } else {
        format!("{n} iterations")
    }
}

fn budget(b: &BudgetUse) -> String {
    let mut s = match b.cap_usd {
        Some(cap) => format!(
            "{} of {}{}",
            usd(b.used_usd),
            usd(cap),
            percent(b.used_usd, cap)
        ),
        None => format!("{} (no cap)", usd(b.used_usd)),
    };
    if let Some(cap) = b.cap_tokens {
        let _ = write!(
            s,
            ", {} of {} tokens{}",
            group(b.used_tokens),
            group(cap),
            percent(b.used_tokens as f64, cap as f64)
        );
    }
    s
}

fn percent(used: f64, cap: f64) -> String {
    if cap > 0.0 {
        format!(" ({:.0} %)", used / cap * 100.0)
    } else {
        String::new()
    }
}

const TABLE_HEAD: &str = "| # | status | checks ✅ / ❌ | tokens in / out / cached | cost | duration | commit |\n\
                          |--:|---|--:|--:|--:|--:|---|\n";

fn table(rows: &[IterationRow], opts: &CommentOptions) -> String {
    let mut s = String::from(TABLE_HEAD);
    for r in rows {
        s.push_str(&row(r, opts));
    }
    s.push('\n');
    s
}

fn row(r: &IterationRow, opts: &CommentOptions) -> String {
    let short = &r.commit[..r.commit.len().min(7)];
    let commit = match &opts.commit_url {
        Some(base) => format!("[`{short}`]({}/{})", base.trim_end_matches('/'), r.commit),
        None => format!("`{short}`"),
    };
    format!(
        "| {} | {} | {} / {} | {} / {} / {} | {} | {} | {} |\n",
        r.n,
        cell(r.status.as_str()),
        r.checks_passed,
        r.checks_failed,
        group(r.tokens.input_tokens),
        group(r.tokens.output_tokens),
        group(r.tokens.cache_read_input_tokens),
        usd(r.cost_usd),
        duration(r.duration_ms),
        commit
    )
}

/// The older iterations in a `<details>` block, as many of the newest as fit in `room`
/// characters, then a count of those left out.
fn folded(spec: &str, older: &[IterationRow], opts: &CommentOptions, room: usize) -> String {
    if older.is_empty() {
        return String::new();
    }
    let open = format!(
        "<details><summary>Earlier iterations ({})</summary>\n\n{TABLE_HEAD}",
        older.len()
    );
    let close = "\n</details>\n\n";
    let count_line = 120; // the line counting what is left out
    let mut left = room.saturating_sub(chars(&open) + chars(close) + count_line);
    let mut rows = Vec::new();
    for r in older.iter().rev() {
        let line = row(r, opts);
        let n = chars(&line);
        if n > left {
            break;
        }
        left -= n;
        rows.push(line);
    }
    let dropped = older.len() - rows.len();
    let mut s = String::new();
    if !rows.is_empty() {
        s.push_str(&open);
        rows.iter().rev().for_each(|l| s.push_str(l));
        s.push_str(close);
    }
    if dropped > 0 {
        let _ = writeln!(
            s,
            "_{dropped} older not shown (iterations {} to {}): `git mmm log {spec}` lists them \
             all._\n",
            older[0].n,
            older[dropped - 1].n
        );
    }
    s
}

fn criteria(rows: &[CriterionRow]) -> String {
    if rows.is_empty() {
        return String::new();
    }
    let mut s = String::from("#### Acceptance criteria\n\n");
    for c in rows.iter().take(MAX_CRITERIA) {
        let mark = match c.passed {
            Some(true) => "✅",
            Some(false) => "❌",
            None => "➖",
        };
        let _ = writeln!(
            s,
            "- {mark} {}",
            clip(&one_line(&c.text), MAX_CRITERION_CHARS)
        );
    }
    if rows.len() > MAX_CRITERIA {
        let _ = writeln!(s, "- … and {} more", rows.len() - MAX_CRITERIA);
    }
    s.push_str("\n✅ / ❌: the last run of the criterion's `verify` command; ➖: no command checks it.\n\n");
    s
}

/// Two mermaid charts of the newest `points` iterations: checks passing (bars) and cost
/// (a line); one y axis each, since their scales differ.
fn charts(rows: &[IterationRow], points: usize) -> String {
    if rows.is_empty() || points == 0 {
        return String::new();
    }
    let rows = &rows[rows.len().saturating_sub(points)..];
    let xs = join(rows.iter().map(|r| r.n.to_string()));
    let top = rows
        .iter()
        .map(|r| r.checks_passed + r.checks_failed)
        .max()
        .unwrap_or(0)
        .max(1);
    let checks = join(rows.iter().map(|r| r.checks_passed.to_string()));
    let max_cost = rows.iter().map(|r| r.cost_usd).fold(0.0, f64::max);
    let cost = join(rows.iter().map(|r| format!("{:.4}", r.cost_usd)));
    let mut s = String::from("#### Progress\n\n");
    let _ = writeln!(
        s,
        "```mermaid\nxychart-beta\n    title \"Checks passing per iteration\"\n    \
         x-axis \"iteration\" [{xs}]\n    y-axis \"checks passing\" 0 --> {top}\n    \
         bar [{checks}]\n```\n"
    );
    let _ = writeln!(
        s,
        "```mermaid\nxychart-beta\n    title \"Cost per iteration (USD)\"\n    \
         x-axis \"iteration\" [{xs}]\n    y-axis \"USD\" 0 --> {}\n    line [{cost}]\n```",
        axis_top(max_cost)
    );
    s
}

/// A round top for the cost axis: the next step of 1, 2 or 5 times a power of ten.
fn axis_top(max: f64) -> String {
    if max <= 0.0 {
        return "1".to_owned();
    }
    let mut step = 10f64.powi(max.log10().floor() as i32);
    for m in [1.0, 2.0, 5.0, 10.0] {
        if m * step >= max {
            step *= m;
            break;
        }
    }
    let s = format!("{step:.4}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

fn join(items: impl Iterator<Item = String>) -> String {
    items.collect::<Vec<_>>().join(", ")
}

fn chars(s: &str) -> usize {
    s.chars().count()
}

/// A table cell's text: one line, pipes escaped.
fn cell(s: &str) -> String {
    one_line(s).replace('|', "\\|")
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn clip(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

/// USD with cents; a cost below a cent is not shown as free.
fn usd(x: f64) -> String {
    if x > 0.0 && x < 0.005 {
        "<$0.01".to_owned()
    } else {
        format!("${x:.2}")
    }
}

/// A count with thousands separated: `12,345`.
fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn duration(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{}m {:02}s", ms / 60_000, ms / 1000 % 60),
        _ => format!("{}h {:02}m", ms / 3_600_000, ms / 60_000 % 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::TokenUsage;
    use crate::engine::run::StopReason;
    use crate::store::IterationStatus;

    fn row(
        n: u32,
        status: IterationStatus,
        passed: usize,
        failed: usize,
        cost: f64,
    ) -> IterationRow {
        IterationRow {
            n,
            status,
            checks_passed: passed,
            checks_failed: failed,
            tokens: TokenUsage {
                input_tokens: 1_200 * u64::from(n),
                output_tokens: 350,
                cache_creation_input_tokens: 0,
                cache_read_input_tokens: 18_000,
            },
            cost_usd: cost,
            duration_ms: 65_000 + 1_000 * u64::from(n),
            commit: format!("{:07x}{}", n * 4099, "e".repeat(33)),
        }
    }

    fn report(iterations: Vec<IterationRow>) -> SpecReport {
        SpecReport {
            spec: "login".into(),
            title: "Users log in | with a password".into(),
            iterations,
            criteria: vec![
                CriterionRow {
                    text: "a right password logs in".into(),
                    passed: Some(true),
                },
                CriterionRow {
                    text: "a wrong one\nis refused".into(),
                    passed: Some(false),
                },
                CriterionRow {
                    text: "the page looks calm".into(),
                    passed: None,
                },
            ],
            stop_reason: Some(StopReason::Complete),
            budget: BudgetUse {
                used_usd: 0.4721,
                cap_usd: Some(10.0),
                used_tokens: 60_150,
                cap_tokens: Some(1_000_000),
            },
        }
    }

    #[test]
    fn three_iterations_with_links() {
        let r = report(vec![
            row(1, IterationStatus::Failed, 1, 2, 0.1203),
            row(2, IterationStatus::Passed, 2, 1, 0.0031),
            row(3, IterationStatus::Complete, 3, 0, 0.3487),
        ]);
        let opts = CommentOptions {
            commit_url: Some("https://github.com/o/r/commit/".into()),
            ..CommentOptions::default()
        };
        insta::assert_snapshot!(render_status(&r, &opts), @r#"
        <!-- mmm:status spec=login -->
        ### mmm: Users log in | with a password

        **complete** after 3 iterations · stop reason: `complete` · budget: $0.47 of $10.00 (5 %), 60,150 of 1,000,000 tokens (6 %)

        | # | status | checks ✅ / ❌ | tokens in / out / cached | cost | duration | commit |
        |--:|---|--:|--:|--:|--:|---|
        | 1 | failed | 1 / 2 | 1,200 / 350 / 18,000 | $0.12 | 1m 06s | [`0001003`](https://github.com/o/r/commit/0001003eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee) |
        | 2 | passed | 2 / 1 | 2,400 / 350 / 18,000 | <$0.01 | 1m 07s | [`0002006`](https://github.com/o/r/commit/0002006eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee) |
        | 3 | complete | 3 / 0 | 3,600 / 350 / 18,000 | $0.35 | 1m 08s | [`0003009`](https://github.com/o/r/commit/0003009eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee) |

        #### Acceptance criteria

        - ✅ a right password logs in
        - ❌ a wrong one is refused
        - ➖ the page looks calm

        ✅ / ❌: the last run of the criterion's `verify` command; ➖: no command checks it.

        #### Progress

        ```mermaid
        xychart-beta
            title "Checks passing per iteration"
            x-axis "iteration" [1, 2, 3]
            y-axis "checks passing" 0 --> 3
            bar [1, 2, 3]
        ```

        ```mermaid
        xychart-beta
            title "Cost per iteration (USD)"
            x-axis "iteration" [1, 2, 3]
            y-axis "USD" 0 --> 0.5
            line [0.1203, 0.0031, 0.3487]
        ```
        "#);
    }

    #[test]
    fn no_iteration_yet() {
        let mut r = report(Vec::new());
        r.stop_reason = None;
        r.budget = BudgetUse::default();
        r.criteria.clear();
        insta::assert_snapshot!(render_status(&r, &CommentOptions::default()), @r#"
        <!-- mmm:status spec=login -->
        ### mmm: Users log in | with a password

        No iteration yet · budget: $0.00 (no cap)
        "#);
    }

    #[test]
    fn old_iterations_fold_then_count() {
        let rows: Vec<IterationRow> = (1..=30)
            .map(|n| row(n, IterationStatus::Failed, 0, 1, 0.01))
            .collect();
        let mut r = report(rows);
        r.stop_reason = None;
        let opts = CommentOptions {
            recent: 2,
            chart_points: 3,
            ..CommentOptions::default()
        };
        // Everything older fits: folded, none counted.
        let s = render_status(&r, &opts);
        assert!(
            s.contains("<details><summary>Earlier iterations (28)</summary>"),
            "{s}"
        );
        assert!(s.contains("| 28 | failed |"));
        assert!(s.contains("| 1 | failed |"));
        assert!(!s.contains("not shown"));
        // With little room, the newest of them are folded and the rest counted.
        insta::assert_snapshot!(folded("login", &r.iterations[..28], &opts, 700), @r#"
        <details><summary>Earlier iterations (28)</summary>

        | # | status | checks ✅ / ❌ | tokens in / out / cached | cost | duration | commit |
        |--:|---|--:|--:|--:|--:|---|
        | 24 | failed | 0 / 1 | 28,800 / 350 / 18,000 | $0.01 | 1m 29s | `0018048` |
        | 25 | failed | 0 / 1 | 30,000 / 350 / 18,000 | $0.01 | 1m 30s | `001904b` |
        | 26 | failed | 0 / 1 | 31,200 / 350 / 18,000 | $0.01 | 1m 31s | `001a04e` |
        | 27 | failed | 0 / 1 | 32,400 / 350 / 18,000 | $0.01 | 1m 32s | `001b051` |
        | 28 | failed | 0 / 1 | 33,600 / 350 / 18,000 | $0.01 | 1m 33s | `001c054` |

        </details>

        _23 older not shown (iterations 1 to 23): `git mmm log login` lists them all._
        "#);
    }

    #[test]
    fn two_thousand_iterations_stay_under_the_limit() {
        let rows: Vec<IterationRow> = (1..=2000)
            .map(|n| {
                let status = if n % 3 == 0 {
                    IterationStatus::Passed
                } else {
                    IterationStatus::Failed
                };
                row(n, status, (n % 7) as usize, 1, 1.25)
            })
            .collect();
        let mut r = report(rows);
        r.budget.used_usd = 2500.0;
        let opts = CommentOptions {
            commit_url: Some(
                "https://github.example.com/owner/a-long-repository-name/commit".into(),
            ),
            ..CommentOptions::default()
        };
        let s = render_status(&r, &opts);
        assert!(
            s.chars().count() < MAX_COMMENT_CHARS,
            "{} chars",
            s.chars().count()
        );
        assert!(s.starts_with("<!-- mmm:status spec=login -->\n"));
        // The newest iterations are in the open table, the next ones folded, the rest counted.
        assert!(s.contains("| 2000 | failed | 5 / 1 |"));
        assert!(s.contains("<details><summary>Earlier iterations (1980)</summary>"));
        let shown = s
            .lines()
            .filter(|l| l.starts_with("| ") && !l.starts_with("| #"))
            .count();
        let counted: usize = s
            .lines()
            .find_map(|l| l.strip_prefix('_')?.split(' ').next()?.parse().ok())
            .expect("a count of the iterations left out");
        assert_eq!(shown + counted, 2000, "every iteration is shown or counted");
        assert!(shown > 100, "the room is used: {shown} rows");
        // The charts show the newest 50.
        assert!(s.contains("x-axis \"iteration\" [1951, 1952,"));
        assert!(s.contains("✅ a right password logs in"));
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1_234_567), "1,234,567");
        assert_eq!(usd(0.0), "$0.00");
        assert_eq!(usd(0.001), "<$0.01");
        assert_eq!(usd(1.239), "$1.24");
        assert_eq!(duration(850), "850 ms");
        assert_eq!(duration(12_340), "12.3 s");
        assert_eq!(duration(65_000), "1m 05s");
        assert_eq!(duration(3_725_000), "1h 02m");
        assert_eq!(axis_top(0.0), "1");
        assert_eq!(axis_top(0.3487), "0.5");
        assert_eq!(axis_top(1.25), "2");
        assert_eq!(axis_top(7.0), "10");
        assert_eq!(axis_top(0.01), "0.01");
    }
}
