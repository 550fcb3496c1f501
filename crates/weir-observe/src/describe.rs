//! Every metric Weir emits, with its unit and meaning (shown as `# HELP` in
//! `/metrics`). The crates emit them through the `metrics` facade, each name
//! a constant of the emitting crate's `metric_names` module (the binary's
//! `weir_build_info` is this crate's); the tests check that every name
//! emitted is described here exactly once and every description is emitted,
//! and that the binary's README table lists them.

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

/// `(name, kind, labels, help)` of every metric.
pub const METRICS: &[(&str, &str, &str, &str)] = &[
    (
        crate::metric_names::BUILD_INFO,
        "gauge",
        "version",
        "Always 1; the version of the running binary.",
    ),
    // Ingest (weir-ingest), per source partition: Kafka topic/partition,
    // MQTT broker (partition 0), Modbus device (partition 0), demo.
    (
        weir_ingest::metric_names::INGEST_MESSAGES_TOTAL,
        "counter",
        "source, stream, partition",
        "Source messages taken into the writer (one Bronze raw row each).",
    ),
    (
        weir_ingest::metric_names::INGEST_POINTS_TOTAL,
        "counter",
        "source, stream, partition",
        "Points decoded from them for the Silver table.",
    ),
    (
        weir_ingest::metric_names::INGEST_BYTES_TOTAL,
        "counter",
        "source, stream, partition",
        "Payload bytes of those messages.",
    ),
    (
        weir_ingest::metric_names::INGEST_DEAD_LETTERS_TOTAL,
        "counter",
        "source, stream, partition",
        "Messages that failed to decode (written to bronze.dead_letters).",
    ),
    (
        weir_ingest::metric_names::INGEST_DUPLICATES_SKIPPED_TOTAL,
        "counter",
        "source",
        "Redelivered messages below the partition's position (skipped).",
    ),
    (
        weir_ingest::metric_names::INGEST_COMMITTED_OFFSET,
        "gauge",
        "source, stream, partition",
        "Next source offset committed to the raw table (the resume point).",
    ),
    (
        weir_ingest::metric_names::INGEST_LAST_COMMIT_TIMESTAMP_SECONDS,
        "gauge",
        "source, stream, partition",
        "Unix time of the last commit covering the partition.",
    ),
    (
        weir_ingest::metric_names::INGEST_LAG_SECONDS,
        "gauge",
        "source, stream, partition",
        "Seconds since the last commit covering the partition (refreshed every hot interval).",
    ),
    (
        weir_ingest::metric_names::INGEST_LAG_MESSAGES,
        "gauge",
        "source, stream, partition",
        "Kafka: the partition's high watermark minus the committed offset.",
    ),
    (
        weir_ingest::metric_names::INGEST_SOURCE_ERRORS_TOTAL,
        "counter",
        "source, error",
        "Kafka: consumer errors by librdkafka code (AllBrokersDown, BrokerTransportFailure, ...): a broker outage shows here.",
    ),
    (
        weir_ingest::metric_names::INGEST_KAFKA_BROKERS_UP,
        "gauge",
        "",
        "Kafka: brokers the consumer is connected to (librdkafka statistics, every second); 0 during an outage.",
    ),
    (
        weir_ingest::metric_names::INGEST_FLUSHES_TOTAL,
        "counter",
        "source, outcome",
        "Writer flushes (one commit per table) by outcome: committed, fenced, failed.",
    ),
    (
        weir_ingest::metric_names::INGEST_FLUSH_DURATION_SECONDS,
        "histogram",
        "source",
        "Time to write a flush's Parquet files and commit every table.",
    ),
    // Commits (weir-catalog), every writer: streaming, INSERT, import, maintenance.
    (
        weir_catalog::metric_names::COMMITS_TOTAL,
        "counter",
        "table, operation, outcome",
        "Iceberg commits (operation append or replace) by outcome: ok, fenced, error.",
    ),
    (
        weir_catalog::metric_names::COMMIT_DURATION_SECONDS,
        "histogram",
        "table, operation",
        "Catalog commit latency (the compare-and-swap, retries included).",
    ),
    (
        weir_catalog::metric_names::COMMIT_RETRIES_TOTAL,
        "counter",
        "kind",
        "Commit attempts retried (kind replace, metadata, append, flush, dml): lost races and failed flushes.",
    ),
    (
        weir_catalog::metric_names::COMMIT_ROWS_TOTAL,
        "counter",
        "table",
        "Rows appended by commits.",
    ),
    (
        weir_catalog::metric_names::TABLE_DATA_FILES,
        "gauge",
        "table",
        "Live data files of the table's current snapshot.",
    ),
    (
        weir_catalog::metric_names::TABLE_DATA_BYTES,
        "gauge",
        "table",
        "Bytes of those files.",
    ),
    (
        weir_catalog::metric_names::TABLE_ROWS,
        "gauge",
        "table",
        "Rows of the current snapshot.",
    ),
    (
        weir_catalog::metric_names::TABLE_SNAPSHOTS,
        "gauge",
        "table",
        "Snapshots in the table's metadata.",
    ),
    (
        weir_hot::metric_names::HOT_ROWS,
        "gauge",
        "table",
        "Rows held in the hot tier (decoded, not yet committed).",
    ),
    (
        weir_hot::metric_names::HOT_BYTES,
        "gauge",
        "table",
        "Memory of those rows.",
    ),
    // Flight SQL (weir-flight).
    (
        weir_flight::metric_names::FLIGHT_REQUESTS_IN_FLIGHT,
        "gauge",
        "",
        "Flight SQL calls running (until their response stream ends).",
    ),
    (
        weir_flight::metric_names::FLIGHT_REQUESTS_TOTAL,
        "counter",
        "method, kind, code",
        "Flight SQL calls by gRPC method, kind (query, update, metadata, other) and status code.",
    ),
    (
        weir_flight::metric_names::QUERY_DURATION_SECONDS,
        "histogram",
        "method, kind",
        "Flight SQL call latency, to the end of the response stream.",
    ),
    (
        weir_flight::metric_names::QUERY_ERRORS_TOTAL,
        "counter",
        "kind, code",
        "Flight SQL calls that ended with a gRPC status other than OK.",
    ),
    (
        weir_flight::metric_names::FLIGHT_CONNECTIONS_REFUSED_TOTAL,
        "counter",
        "",
        "Flight SQL connections closed at once because --max-connections were open.",
    ),
    // The query engine's in-memory file cache (weir-query).
    (
        weir_query::metric_names::FILE_CACHE_REQUESTS_TOTAL,
        "counter",
        "outcome",
        "Data files a scan asked the file cache for: hit, or miss (decoded and added).",
    ),
    (
        weir_query::metric_names::FILE_CACHE_BYTES,
        "gauge",
        "",
        "Decoded bytes held by the file cache.",
    ),
    (
        weir_query::metric_names::FILE_CACHE_EVICTED_BYTES_TOTAL,
        "counter",
        "",
        "Decoded bytes the file cache dropped (least recently used, idle, or replaced).",
    ),
    // The last-value index (weir-query), per table that declares one.
    (
        weir_query::metric_names::LAST_VALUE_SERIES,
        "gauge",
        "table",
        "Series (keys) held by the table's last-value index; 0 when over the memory budget.",
    ),
    (
        weir_query::metric_names::LAST_VALUE_BYTES,
        "gauge",
        "table",
        "Memory of the table's last-value index; 0 when over the memory budget (not kept).",
    ),
    (
        weir_query::metric_names::LAST_VALUE_REFRESHES_TOTAL,
        "counter",
        "table, trigger",
        "Times the table's last-value index was brought up to date (files appended since folded in, or rebuilt), by what did it: `query` or `commit` (in the background after this process committed).",
    ),
    // Maintenance (weir-maintain).
    (
        weir_maintain::metric_names::MAINTENANCE_RUNS_TOTAL,
        "counter",
        "job, outcome",
        "Maintenance job runs (compact, cluster, expire, orphans, refresh, retention, rewrite_manifests) by outcome.",
    ),
    (
        weir_maintain::metric_names::MAINTENANCE_DURATION_SECONDS,
        "histogram",
        "job",
        "Duration of a maintenance job run on one table.",
    ),
    (
        weir_maintain::metric_names::MAINTENANCE_ERRORS_TOTAL,
        "counter",
        "job",
        "Maintenance job runs that failed.",
    ),
    // Standing alert rules (weir-alert), in the process that ingests.
    (
        weir_alert::metric_names::ALERT_RULES,
        "gauge",
        "",
        "Alert rules being evaluated.",
    ),
    (
        weir_alert::metric_names::ALERT_FIRING,
        "gauge",
        "rule",
        "Open alerts (ACTIVE or ACKNOWLEDGED) per rule.",
    ),
    (
        weir_alert::metric_names::ALERT_ROWS_EVALUATED_TOTAL,
        "counter",
        "",
        "Rows of tables with alert rules run through their rules.",
    ),
    (
        weir_alert::metric_names::ALERT_TRANSITIONS_TOTAL,
        "counter",
        "state",
        "Alert transitions committed to gold.alerts (ACTIVE, RESOLVED).",
    ),
    (
        weir_alert::metric_names::ALERT_NOTIFICATIONS_TOTAL,
        "counter",
        "target, outcome",
        "Alert notification attempts by target kind (mqtt, kafka, webhook, postgres) and outcome (sent, retried, failed).",
    ),
    (
        weir_alert::metric_names::ALERT_EVALUATION_ERRORS_TOTAL,
        "counter",
        "rule",
        "Batches a rule could not be evaluated on (e.g. a column it reads is gone).",
    ),
    (
        weir_alert::metric_names::ALERT_COMMIT_FAILURES_TOTAL,
        "counter",
        "",
        "Failed commits of alert transitions (retried at the next tick).",
    ),
    (
        weir_alert::metric_names::ALERT_FEED_LAGGED_TOTAL,
        "counter",
        "",
        "Sealed batches the alert evaluator missed because it fell behind the writers.",
    ),
    (
        weir_alert::metric_names::ALERT_HANDOVERS_TOTAL,
        "counter",
        "kind",
        "Alert series handed over between evaluators: released (partition revoked, series forgotten) or adopted (open alerts of another evaluator taken on).",
    ),
];

/// Registers the descriptions (call after installing the recorder).
pub fn describe() {
    for &(name, kind, _, help) in METRICS {
        let unit = if name.ends_with("_seconds") {
            Some(Unit::Seconds)
        } else if name.ends_with("_bytes") || name.ends_with("_bytes_total") {
            Some(Unit::Bytes)
        } else {
            None
        };
        match (kind, unit) {
            ("counter", Some(u)) => describe_counter!(name, u, help),
            ("counter", None) => describe_counter!(name, help),
            ("gauge", Some(u)) => describe_gauge!(name, u, help),
            ("gauge", None) => describe_gauge!(name, help),
            (_, Some(u)) => describe_histogram!(name, u, help),
            (_, None) => describe_histogram!(name, help),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::{Path, PathBuf};

    use super::METRICS;

    #[test]
    fn names_follow_the_conventions() {
        for (name, kind, _, _) in METRICS {
            assert!(name.starts_with("weir_"), "{name}");
            assert_eq!(
                *kind == "counter",
                name.ends_with("_total"),
                "{name}: counters end in _total"
            );
        }
    }

    #[test]
    fn the_binary_readme_lists_every_metric() {
        let readme = include_str!("../../weir/README.md");
        for (name, _, _, _) in METRICS {
            assert!(
                readme.contains(&format!("`{name}`")),
                "crates/weir/README.md lacks {name}"
            );
        }
    }

    /// `pub const IDENT: &str = "name";` of every crate's `metric_names.rs`.
    fn constants(crates: &Path) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for entry in std::fs::read_dir(crates).unwrap() {
            let file = entry.unwrap().path().join("src/metric_names.rs");
            let Ok(text) = std::fs::read_to_string(&file) else {
                continue;
            };
            for line in text.lines() {
                let Some(rest) = line.strip_prefix("pub const ") else {
                    continue;
                };
                let (ident, value) = rest.split_once(": &str = ").unwrap();
                let name = value.trim_end_matches(';').trim_matches('"');
                let clash = out.insert(ident.to_string(), name.to_string());
                assert!(clash.is_none(), "{ident} is defined twice");
            }
        }
        out
    }

    fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    /// The metric names of every `counter!`/`gauge!`/`histogram!` call in
    /// the workspace's sources, each given by a `metric_names` constant.
    fn emitted(crates: &Path, constants: &BTreeMap<String, String>) -> BTreeSet<String> {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(crates).unwrap() {
            let src = entry.unwrap().path().join("src");
            if src.is_dir() {
                sources(&src, &mut files);
            }
        }
        let mut names = BTreeSet::new();
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            for kind in ["counter", "gauge", "histogram"] {
                let call = format!("{kind}!(");
                for (at, _) in text.match_indices(&call) {
                    if text[..at].ends_with('_') {
                        continue; // describe_counter! and the like
                    }
                    let arg = text[at + call.len()..]
                        .split([',', ')'])
                        .next()
                        .unwrap()
                        .trim();
                    assert!(
                        !arg.starts_with('"'),
                        "{}: {kind}!({arg}: name the metric by a metric_names constant",
                        file.display()
                    );
                    let ident = arg.rsplit("::").next().unwrap();
                    let Some(name) = constants.get(ident) else {
                        panic!(
                            "{}: {kind}!({arg}: not a metric_names constant",
                            file.display()
                        );
                    };
                    names.insert(name.clone());
                }
            }
        }
        names
    }

    #[test]
    fn every_emitted_metric_is_described_exactly_once() {
        let crates = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let constants = constants(crates);
        let mut described = BTreeSet::new();
        for (name, _, _, _) in METRICS {
            assert!(
                described.insert(name.to_string()),
                "{name} is described twice"
            );
        }
        let defined: BTreeSet<String> = constants.values().cloned().collect();
        let emitted = emitted(crates, &constants);
        for (what, names) in [("a metric_names constant", &defined), ("emitted", &emitted)] {
            let undescribed: Vec<_> = names.difference(&described).collect();
            let only_described: Vec<_> = described.difference(names).collect();
            assert!(
                undescribed.is_empty() && only_described.is_empty(),
                "{what} but not described: {undescribed:?}; described but not {what}: {only_described:?}"
            );
        }
    }
}
