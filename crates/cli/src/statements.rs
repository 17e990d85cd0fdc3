//! Database statement latency for `/metrics`: sqlx reports every statement it runs (PostgreSQL's,
//! and SQLite's through sqlx) as a `sqlx::query` tracing event with its duration. This layer turns
//! those events into a histogram, `rollcall_db_statement_seconds{statement}`, labelled by the
//! statement's first keyword (`select`, `insert`, `update`, `delete`, `begin`, `commit`, …: a bounded
//! set). It is installed only by `serve` with metrics on, with a filter of its own, so the log's
//! filter (`sqlx=warn` by default) is unchanged.

use rollcall_server::metrics::DB_STATEMENT_SECONDS;
use tracing::field::{Field, Visit};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{LevelFilter, Targets};

/// The first keywords counted by name; any other is `other`.
const KINDS: [&str; 10] = [
    "select",
    "insert",
    "update",
    "delete",
    "with",
    "begin",
    "commit",
    "rollback",
    "savepoint",
    "release",
];

/// The layer, filtered to sqlx's statement events.
pub fn layer<S>() -> impl Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    StatementLatency.with_filter(Targets::new().with_target("sqlx::query", LevelFilter::TRACE))
}

struct StatementLatency;

/// The fields of one statement event that matter here.
#[derive(Default)]
struct Statement {
    elapsed_secs: Option<f64>,
    kind: Option<&'static str>,
}

/// The bounded label of a statement from its summary (or text).
fn kind_of(summary: &str) -> &'static str {
    let first = summary
        .trim_start()
        .split(|c: char| c.is_whitespace() || c == '(')
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    KINDS.iter().find(|k| **k == first).copied().unwrap_or("other")
}

impl Visit for Statement {
    fn record_f64(&mut self, field: &Field, value: f64) {
        if field.name() == "elapsed_secs" {
            self.elapsed_secs = Some(value);
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "summary" {
            self.kind = Some(kind_of(value));
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "summary" && self.kind.is_none() {
            self.kind = Some(kind_of(format!("{value:?}").trim_matches('"')));
        }
    }
}

impl<S: tracing::Subscriber> Layer<S> for StatementLatency {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: tracing_subscriber::layer::Context<'_, S>) {
        let mut s = Statement::default();
        event.record(&mut s);
        if let Some(secs) = s.elapsed_secs {
            metrics::histogram!(DB_STATEMENT_SECONDS, "statement" => s.kind.unwrap_or("other")).record(secs);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statement_kinds_are_a_bounded_set() {
        assert_eq!(kind_of("SELECT id FROM users …"), "select");
        assert_eq!(kind_of("  insert INTO events"), "insert");
        assert_eq!(kind_of("WITH moved AS (…)"), "with");
        assert_eq!(kind_of("COMMIT"), "commit");
        assert_eq!(kind_of("VACUUM INTO 'x'"), "other");
        assert_eq!(kind_of("select(1)"), "select");
    }

    #[test]
    fn statement_events_become_a_histogram() {
        let recorder = metrics_util::debugging::DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let subscriber = tracing_subscriber::layer::SubscriberExt::with(tracing_subscriber::registry(), layer());
        metrics::with_local_recorder(&recorder, || {
            tracing::subscriber::with_default(subscriber, || {
                tracing::debug!(target: "sqlx::query", summary = "SELECT 1", elapsed_secs = 0.25_f64);
                tracing::debug!(target: "sqlx::query", summary = "UPDATE t SET …", elapsed_secs = 0.5_f64);
                // Other targets are not statements.
                tracing::info!(target: "rollcall", elapsed_secs = 9.0_f64);
            });
        });
        let found: Vec<(String, Vec<f64>)> = snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .filter(|(k, ..)| k.key().name() == DB_STATEMENT_SECONDS)
            .map(|(k, _, _, v)| {
                let label = k
                    .key()
                    .labels()
                    .next()
                    .map(|l| l.value().to_string())
                    .unwrap_or_default();
                let values = match v {
                    metrics_util::debugging::DebugValue::Histogram(h) => {
                        h.into_iter().map(|x| x.into_inner()).collect()
                    }
                    _ => Vec::new(),
                };
                (label, values)
            })
            .collect();
        assert!(found.contains(&("select".to_string(), vec![0.25])), "{found:?}");
        assert!(found.contains(&("update".to_string(), vec![0.5])), "{found:?}");
        assert_eq!(found.len(), 2, "{found:?}");
    }
}
