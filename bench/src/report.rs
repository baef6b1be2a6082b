//! The side-by-side table: every `*.json` object in each server's result
//! directory is merged, then each figure is printed with its ratio
//! (stratus / baseline for rates, baseline / stratus for latency, memory
//! and time: above 1 means Stratus is better).

use std::path::Path;

use anyhow::{Context, Result};
use serde_json::{Map, Value};

/// (key, label, unit, higher is better, target ratio if any)
const FIGURES: &[(&str, &str, &str, bool, Option<f64>)] = &[
    (
        "smtp_accept_per_s",
        "SMTP accept rate, 20 sessions, 10 KiB",
        "msg/s",
        true,
        Some(2.0),
    ),
    (
        "e2e_per_s",
        "end-to-end delivery rate (250 → visible over IMAP)",
        "msg/s",
        true,
        Some(2.0),
    ),
    (
        "latency_p50_ms",
        "250 → visible over IMAP, p50",
        "ms",
        false,
        None,
    ),
    (
        "latency_p99_ms",
        "250 → visible over IMAP, p99",
        "ms",
        false,
        None,
    ),
    (
        "imap_login_per_s",
        "IMAP login (connect, LOGIN, LOGOUT), 20 clients",
        "ops/s",
        true,
        Some(1.0),
    ),
    (
        "imap_select_per_s",
        "IMAP SELECT INBOX, 20 clients",
        "ops/s",
        true,
        Some(1.0),
    ),
    (
        "imap_fetch_headers_per_s",
        "IMAP UID FETCH BODY.PEEK[HEADER], 20 clients",
        "ops/s",
        true,
        Some(1.0),
    ),
    (
        "imap_fetch_body_per_s",
        "IMAP UID FETCH BODY.PEEK[], 20 clients",
        "ops/s",
        true,
        Some(1.0),
    ),
    (
        "imap_store_flags_per_s",
        "IMAP UID STORE ±FLAGS, 20 clients",
        "ops/s",
        true,
        Some(1.0),
    ),
    (
        "imap_append_per_s",
        "IMAP APPEND 10 KiB, 20 clients",
        "ops/s",
        true,
        Some(1.0),
    ),
    (
        "idle_rss_kib_per_conn",
        "memory per idle IMAP connection (RSS, 1,000 connections)",
        "KiB",
        false,
        None,
    ),
    (
        "idle_pss_kib_per_conn",
        "memory per idle IMAP connection (PSS, 1,000 connections)",
        "KiB",
        false,
        None,
    ),
    (
        "cold_start_ms",
        "cold start until every listener accepts",
        "ms",
        false,
        None,
    ),
];

fn load(dir: &Path) -> Result<Map<String, Value>> {
    let mut all = Map::new();
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("read {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    for f in files {
        let text = std::fs::read_to_string(&f)?;
        if let Ok(Value::Object(m)) = serde_json::from_str(text.trim()) {
            all.extend(m);
        }
    }
    Ok(all)
}

/// Each round's figures: the `round-*` folders of `dir` in order, or
/// `dir` itself when it has none (a run of one round).
fn load_rounds(dir: &Path) -> Result<Vec<Map<String, Value>>> {
    let mut rounds: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("read {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.is_dir()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("round-"))
        })
        .collect();
    if rounds.is_empty() {
        return Ok(vec![load(dir)?]);
    }
    // round-1 … round-9, round-10 …: by number, not by name.
    rounds.sort_by_key(|p| {
        p.file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n["round-".len()..].parse::<u32>().ok())
            .unwrap_or(u32::MAX)
    });
    rounds.iter().map(|r| load(r)).collect()
}

/// The median of the values present (of an even count, the mean of the
/// middle two).
fn median(values: &[Option<f64>]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().flatten().copied().collect();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    (n > 0).then(|| (v[(n - 1) / 2] + v[n / 2]) / 2.0)
}

fn fmt(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

pub fn run(stratus: &Path, baseline: &Path) -> Result<()> {
    let s = load_rounds(stratus)?;
    let b = load_rounds(baseline)?;
    let rounds = s.len().max(b.len());
    let figure = |side: &[Map<String, Value>], key: &str| -> Vec<Option<f64>> {
        side.iter()
            .map(|r| r.get(key).and_then(Value::as_f64))
            .collect()
    };
    if rounds > 1 {
        println!(
            "Each figure is the median of {rounds} rounds (ratios of the medians); \
             the ratio of each round follows the table."
        );
        println!();
    }
    println!("| figure | stratus | baseline | ratio |");
    println!("| --- | --- | --- | --- |");
    let mut verdicts = Vec::new();
    let mut per_round = Vec::new();
    for &(key, label, unit, higher, target) in FIGURES {
        let (sv, bv) = (figure(&s, key), figure(&b, key));
        let ratio_of = |sv: f64, bv: f64| if higher { sv / bv } else { bv / sv };
        let (Some(sm), Some(bm)) = (median(&sv), median(&bv)) else {
            let shown = |v: Option<f64>| v.map_or("–".to_string(), fmt);
            println!(
                "| {label} ({unit}) | {} | {} | – |",
                shown(median(&sv)),
                shown(median(&bv))
            );
            continue;
        };
        let ratio = ratio_of(sm, bm);
        println!(
            "| {label} ({unit}) | {} | {} | {:.2} |",
            fmt(sm),
            fmt(bm),
            ratio
        );
        let rounds: Vec<String> = (0..rounds)
            .map(
                |r| match (sv.get(r).copied().flatten(), bv.get(r).copied().flatten()) {
                    (Some(s), Some(b)) => format!("{:.2}", ratio_of(s, b)),
                    _ => "–".into(),
                },
            )
            .collect();
        per_round.push(format!("| {label} | {} |", rounds.join(" | ")));
        if let Some(t) = target {
            verdicts.push(format!(
                "{key}: ratio {ratio:.2}, target ≥ {t}: {}",
                if ratio >= t { "met" } else { "MISSED" }
            ));
        }
        if key == "idle_rss_kib_per_conn" {
            verdicts.push(format!(
                "{key}: {sm:.1} KiB, target ≤ 64 KiB: {}",
                if sm <= 64.0 { "met" } else { "MISSED" }
            ));
        }
    }
    if rounds > 1 && !per_round.is_empty() {
        println!();
        let numbers: Vec<String> = (1..=rounds).map(|r| format!("round {r}")).collect();
        println!("| ratio per round | {} |", numbers.join(" | "));
        println!("| --- |{}", " --- |".repeat(rounds));
        for line in per_round {
            println!("{line}");
        }
    }
    println!();
    for v in verdicts {
        println!("- {v}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn medians() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[None, Some(3.0)]), Some(3.0));
        assert_eq!(median(&[Some(5.0), Some(1.0), Some(3.0)]), Some(3.0));
        assert_eq!(
            median(&[Some(4.0), Some(1.0), None, Some(2.0), Some(9.0)]),
            Some(3.0)
        );
    }
}
