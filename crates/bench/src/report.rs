//! The markdown table and the JSON document: medians over rounds, ratios to the baseline of the
//! same shape.

use crate::{Outcome, Round, RunResult, Shape};
use serde_json::{Value, json};
use std::fmt::Write;

pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

fn med(rounds: &[Round], f: impl Fn(&Round) -> f64) -> f64 {
    median(rounds.iter().map(f).collect())
}

pub fn fmt_us(us: u64) -> String {
    if us < 1000 {
        format!("{us} µs")
    } else if us < 100_000 {
        format!("{:.2} ms", us as f64 / 1000.0)
    } else {
        format!("{:.0} ms", us as f64 / 1000.0)
    }
}

fn fmt_us_f(us: f64) -> String {
    fmt_us(us.round() as u64)
}

fn fmt_mib(kb: Option<u64>) -> String {
    kb.map(|k| format!("{:.1} MiB", k as f64 / 1024.0))
        .unwrap_or_else(|| "n/a".into())
}

/// Median requests per second of each baseline that ran.
#[derive(Clone, Copy, Default)]
struct Baselines {
    read: Option<f64>,
    page: Option<f64>,
    write: Option<f64>,
}

fn baselines(outcomes: &[Outcome]) -> Baselines {
    let find = |shape| {
        outcomes
            .iter()
            .find(|o| o.baseline && o.shape == shape)
            .map(|o| med(&o.rounds, |r| r.rps))
    };
    Baselines {
        read: find(Shape::Read),
        page: find(Shape::Page),
        write: find(Shape::Write),
    }
}

/// The baseline throughput a workload is compared with, and a label for it.
fn reference(o: &Outcome, b: Baselines) -> Option<(f64, &'static str)> {
    match o.shape {
        Shape::Read => b.read.map(|r| (r, "read")),
        Shape::Page => b.page.map(|p| (p, "page")),
        Shape::Write => b.write.map(|w| (w, "write")),
        Shape::Mix => {
            let (r, w) = (b.read?, b.write?);
            let reads: u64 = o.rounds.iter().map(|x| x.reads).sum();
            let writes: u64 = o.rounds.iter().map(|x| x.writes).sum();
            if reads + writes == 0 {
                return None;
            }
            // Time the baseline would need for the same numbers of reads and writes.
            let secs = reads as f64 / r + writes as f64 / w;
            Some(((reads + writes) as f64 / secs, "mix"))
        }
    }
}

fn cpu(o: &Outcome) -> String {
    let v: Vec<f64> = o.rounds.iter().filter_map(|r| r.server_cpu_us).collect();
    if v.is_empty() {
        "n/a".into()
    } else {
        fmt_us_f(median(v))
    }
}

fn max_rss(o: &Outcome) -> Option<u64> {
    o.rounds.iter().filter_map(|r| r.rss_kb).max()
}

/// The "vs baseline" cell of a row.
fn ratio_cell(o: &Outcome, b: Baselines) -> String {
    if o.baseline {
        return "1.00 (ref)".to_string();
    }
    match reference(o, b) {
        Some((base, label)) => format!("{:.2} × {label}", med(&o.rounds, |r| r.rps) / base),
        None => "n/a".into(),
    }
}

pub fn markdown(machine: &Value, settings: &Value, outcomes: &[Outcome], peak: &Value) -> String {
    let b = baselines(outcomes);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\nDatabase: {}. Machine: {} × {}, {} GiB RAM. {} connections, {} s measured after {} s warm-up, {} seeded users, {} round(s){}.\n",
        settings["database"].as_str().unwrap_or("?"),
        machine["nproc"],
        machine["cpu_model"].as_str().unwrap_or("?"),
        machine["memory_gib"],
        settings["concurrency"],
        settings["duration_s"],
        settings["warmup_s"],
        settings["seed_users"],
        settings["repeat"],
        if settings["repeat"].as_u64().unwrap_or(1) > 1 {
            " (medians)"
        } else {
            ""
        },
    );
    s.push_str("| workload | req/s | p50 | p99 | vs baseline | errors | server RSS | server CPU/req |\n");
    s.push_str("|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for o in outcomes {
        let rps = med(&o.rounds, |r| r.rps);
        let ratio = ratio_cell(o, b);
        let errors: u64 = o.rounds.iter().map(|r| r.errors).sum();
        let _ = writeln!(
            s,
            "| {} (`{}`) | {:.0} | {} | {} | {} | {} | {} | {} |",
            o.name,
            o.describe,
            rps,
            fmt_us_f(med(&o.rounds, |r| r.p50_us as f64)),
            fmt_us_f(med(&o.rounds, |r| r.p99_us as f64)),
            ratio,
            errors,
            fmt_mib(max_rss(o)),
            cpu(o),
        );
    }
    let syncs: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| o.rounds.iter().any(|r| r.sync.is_some()))
        .collect();
    if !syncs.is_empty() {
        s.push_str(
            "\n| initial sync | users | groups | member PATCHes | users phase | group push | total | users/s |\n",
        );
        s.push_str("|---|---:|---:|---:|---:|---:|---:|---:|\n");
        for o in syncs {
            let info: Vec<_> = o.rounds.iter().filter_map(|r| r.sync.clone()).collect();
            let first = &info[0];
            let m = |f: fn(&crate::sync::SyncInfo) -> f64| median(info.iter().map(f).collect());
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} (× {}) | {:.2} s | {:.2} s | {:.2} s | {:.0} |",
                o.name,
                first.users,
                first.groups,
                first.member_patches,
                first.batch,
                m(|i| i.users_secs),
                m(|i| i.groups_secs),
                m(|i| i.total_secs),
                m(|i| i.users_per_sec),
            );
        }
    }
    let _ = writeln!(
        s,
        "\nPeak RSS (VmHWM): rollcall {}, baseline {}.",
        fmt_mib(peak["rollcall_kb"].as_u64()),
        fmt_mib(peak["baseline_kb"].as_u64())
    );
    s
}

/// One table for several runs (one per database): req/s, p99 and ratio of every row, side by
/// side. Rows are matched by name; the first run's order is kept.
pub fn side_by_side(runs: &[RunResult]) -> String {
    let mut s = String::from("\n| workload |");
    let mut rule = String::from("|---|");
    for r in runs {
        let name = r.settings["backend"].as_str().unwrap_or("?");
        let _ = write!(s, " {name} req/s | {name} p99 | {name} vs baseline |");
        rule.push_str("---:|---:|---:|");
    }
    s.push('\n');
    s.push_str(&rule);
    s.push('\n');
    let mut names: Vec<&str> = Vec::new();
    for r in runs {
        for o in &r.outcomes {
            if !names.contains(&o.name.as_str()) {
                names.push(&o.name);
            }
        }
    }
    for name in names {
        s.push_str("| ");
        s.push_str(name);
        s.push_str(" |");
        for r in runs {
            match r.outcomes.iter().find(|o| o.name == name) {
                Some(o) => {
                    let _ = write!(
                        s,
                        " {:.0} | {} | {} |",
                        med(&o.rounds, |x| x.rps),
                        fmt_us_f(med(&o.rounds, |x| x.p99_us as f64)),
                        ratio_cell(o, baselines(&r.outcomes)),
                    );
                }
                None => s.push_str(" | | |"),
            }
        }
        s.push('\n');
    }
    s
}

pub fn json(machine: &Value, settings: &Value, outcomes: &[Outcome], peak: &Value) -> Value {
    let b = baselines(outcomes);
    let results: Vec<Value> = outcomes
        .iter()
        .map(|o| {
            let rps = med(&o.rounds, |r| r.rps);
            let reference = if o.baseline { None } else { reference(o, b) };
            let rounds: Vec<Value> = o
                .rounds
                .iter()
                .map(|r| {
                    json!({
                        "rps": r.rps,
                        "p50_us": r.p50_us,
                        "p99_us": r.p99_us,
                        "requests": r.requests,
                        "errors": r.errors,
                        "error_samples": r.error_samples,
                        "rss_kb": r.rss_kb,
                        "server_cpu_us_per_request": r.server_cpu_us,
                        "client_cpu_us_per_request": r.client_cpu_us,
                        "reads": r.reads,
                        "writes": r.writes,
                        "sync": r.sync.as_ref().map(|i| json!({
                            "users": i.users,
                            "groups": i.groups,
                            "member_patches": i.member_patches,
                            "batch": i.batch,
                            "users_secs": i.users_secs,
                            "groups_secs": i.groups_secs,
                            "total_secs": i.total_secs,
                            "users_per_sec": i.users_per_sec,
                        })),
                    })
                })
                .collect();
            json!({
                "workload": o.name,
                "request": o.describe,
                "baseline": o.baseline,
                "shape": format!("{:?}", o.shape).to_lowercase(),
                "rps": rps,
                "p50_us": med(&o.rounds, |r| r.p50_us as f64),
                "p99_us": med(&o.rounds, |r| r.p99_us as f64),
                "errors": o.rounds.iter().map(|r| r.errors).sum::<u64>(),
                "rss_kb": max_rss(o),
                "baseline_rps": reference.map(|(b, _)| b),
                "ratio_to_baseline": reference.map(|(b, _)| rps / b),
                "rounds": rounds,
            })
        })
        .collect();
    json!({
        "machine": machine,
        "settings": settings,
        "results": results,
        "peak_rss_kb": peak,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_formats() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(Vec::new()).is_nan());
        assert_eq!(fmt_us(850), "850 µs");
        assert_eq!(fmt_us(1500), "1.50 ms");
        assert_eq!(fmt_us(250_000), "250 ms");
    }

    #[test]
    fn mixed_reference_weighs_reads_and_writes() {
        let round = Round {
            rps: 100.0,
            p50_us: 1,
            p99_us: 1,
            requests: 2,
            errors: 0,
            error_samples: Vec::new(),
            rss_kb: None,
            server_cpu_us: None,
            client_cpu_us: None,
            reads: 1,
            writes: 1,
            sync: None,
        };
        let o = Outcome {
            name: "x".into(),
            describe: "x".into(),
            shape: Shape::Mix,
            baseline: false,
            rounds: vec![round],
        };
        // One read at 1000/s and one write at 100/s take 11 ms: 2 requests / 0.011 s.
        let refs = Baselines {
            read: Some(1000.0),
            page: Some(10.0),
            write: Some(100.0),
        };
        let (b, label) = reference(&o, refs).unwrap();
        assert_eq!(label, "mix");
        assert!((b - 2.0 / 0.011).abs() < 1e-6);
    }
}
