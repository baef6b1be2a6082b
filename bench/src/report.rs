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
    let s = load(stratus)?;
    let b = load(baseline)?;
    println!("| figure | stratus | baseline | ratio |");
    println!("| --- | --- | --- | --- |");
    let mut verdicts = Vec::new();
    for &(key, label, unit, higher, target) in FIGURES {
        let (Some(sv), Some(bv)) = (
            s.get(key).and_then(Value::as_f64),
            b.get(key).and_then(Value::as_f64),
        ) else {
            println!("| {label} ({unit}) | – | – | not measured |");
            continue;
        };
        let ratio = if higher { sv / bv } else { bv / sv };
        println!(
            "| {label} ({unit}) | {} | {} | {:.2} |",
            fmt(sv),
            fmt(bv),
            ratio
        );
        if let Some(t) = target {
            verdicts.push(format!(
                "{key}: ratio {ratio:.2}, target ≥ {t}: {}",
                if ratio >= t { "met" } else { "MISSED" }
            ));
        }
        if key == "idle_rss_kib_per_conn" {
            verdicts.push(format!(
                "{key}: {sv:.1} KiB, target ≤ 64 KiB: {}",
                if sv <= 64.0 { "met" } else { "MISSED" }
            ));
        }
    }
    println!();
    for v in verdicts {
        println!("- {v}");
    }
    Ok(())
}
