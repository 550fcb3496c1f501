//! Every metric Weir emits, with its unit and meaning (shown as `# HELP` in
//! `/metrics`). The crates emit them through the `metrics` facade; keep this
//! list and the binary's README table in step with them.

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

/// `(name, kind, labels, help)` of every metric.
pub const METRICS: &[(&str, &str, &str, &str)] = &[
    (
        "weir_build_info",
        "gauge",
        "version",
        "Always 1; the version of the running binary.",
    ),
    // Ingest (weir-ingest), per source partition: Kafka topic/partition,
    // MQTT broker (partition 0), Modbus device (partition 0), demo.
    (
        "weir_ingest_messages_total",
        "counter",
        "source, stream, partition",
        "Source messages taken into the writer (one Bronze raw row each).",
    ),
    (
        "weir_ingest_points_total",
        "counter",
        "source, stream, partition",
        "Points decoded from them for the Silver table.",
    ),
    (
        "weir_ingest_bytes_total",
        "counter",
        "source, stream, partition",
        "Payload bytes of those messages.",
    ),
    (
        "weir_ingest_dead_letters_total",
        "counter",
        "source, stream, partition",
        "Messages that failed to decode (written to bronze.dead_letters).",
    ),
    (
        "weir_ingest_duplicates_skipped_total",
        "counter",
        "source",
        "Redelivered messages below the partition's position (skipped).",
    ),
    (
        "weir_ingest_committed_offset",
        "gauge",
        "source, stream, partition",
        "Next source offset committed to the raw table (the resume point).",
    ),
    (
        "weir_ingest_last_commit_timestamp_seconds",
        "gauge",
        "source, stream, partition",
        "Unix time of the last commit covering the partition.",
    ),
    (
        "weir_ingest_lag_seconds",
        "gauge",
        "source, stream, partition",
        "Seconds since the last commit covering the partition (refreshed every hot interval).",
    ),
    (
        "weir_ingest_lag_messages",
        "gauge",
        "source, stream, partition",
        "Kafka: the partition's high watermark minus the committed offset.",
    ),
    (
        "weir_ingest_source_errors_total",
        "counter",
        "source, error",
        "Kafka: consumer errors by librdkafka code (AllBrokersDown, BrokerTransportFailure, ...): a broker outage shows here.",
    ),
    (
        "weir_ingest_kafka_brokers_up",
        "gauge",
        "",
        "Kafka: brokers the consumer is connected to (librdkafka statistics, every second); 0 during an outage.",
    ),
    (
        "weir_ingest_flushes_total",
        "counter",
        "source, outcome",
        "Writer flushes (one commit per table) by outcome: committed, fenced, failed.",
    ),
    (
        "weir_ingest_flush_duration_seconds",
        "histogram",
        "source",
        "Time to write a flush's Parquet files and commit every table.",
    ),
    // Commits (weir-catalog), every writer: streaming, INSERT, import, maintenance.
    (
        "weir_commits_total",
        "counter",
        "table, operation, outcome",
        "Iceberg commits (operation append or replace) by outcome: ok, fenced, error.",
    ),
    (
        "weir_commit_duration_seconds",
        "histogram",
        "table, operation",
        "Catalog commit latency (the compare-and-swap, retries included).",
    ),
    (
        "weir_commit_retries_total",
        "counter",
        "kind",
        "Commit attempts retried (kind replace, metadata, append, flush): lost races and failed flushes.",
    ),
    (
        "weir_commit_rows_total",
        "counter",
        "table",
        "Rows appended by commits.",
    ),
    (
        "weir_table_data_files",
        "gauge",
        "table",
        "Live data files of the table's current snapshot.",
    ),
    (
        "weir_table_data_bytes",
        "gauge",
        "table",
        "Bytes of those files.",
    ),
    (
        "weir_table_rows",
        "gauge",
        "table",
        "Rows of the current snapshot.",
    ),
    (
        "weir_table_snapshots",
        "gauge",
        "table",
        "Snapshots in the table's metadata.",
    ),
    (
        "weir_hot_rows",
        "gauge",
        "table",
        "Rows held in the hot tier (decoded, not yet committed).",
    ),
    ("weir_hot_bytes", "gauge", "table", "Memory of those rows."),
    // Flight SQL (weir-flight).
    (
        "weir_flight_requests_in_flight",
        "gauge",
        "",
        "Flight SQL calls running (until their response stream ends).",
    ),
    (
        "weir_flight_requests_total",
        "counter",
        "method, kind, code",
        "Flight SQL calls by gRPC method, kind (query, update, metadata, other) and status code.",
    ),
    (
        "weir_query_duration_seconds",
        "histogram",
        "method, kind",
        "Flight SQL call latency, to the end of the response stream.",
    ),
    (
        "weir_query_errors_total",
        "counter",
        "kind, code",
        "Flight SQL calls that ended with a gRPC status other than OK.",
    ),
    // The query engine's in-memory file cache (weir-query).
    (
        "weir_file_cache_requests_total",
        "counter",
        "outcome",
        "Data files a scan asked the file cache for: hit, or miss (decoded and added).",
    ),
    (
        "weir_file_cache_bytes",
        "gauge",
        "",
        "Decoded bytes held by the file cache.",
    ),
    (
        "weir_file_cache_evicted_bytes_total",
        "counter",
        "",
        "Decoded bytes the file cache dropped (least recently used, idle, or replaced).",
    ),
    // Maintenance (weir-maintain).
    (
        "weir_maintenance_runs_total",
        "counter",
        "job, outcome",
        "Maintenance job runs (compact, cluster, expire, orphans, refresh, retention, rewrite_manifests) by outcome.",
    ),
    (
        "weir_maintenance_duration_seconds",
        "histogram",
        "job",
        "Duration of a maintenance job run on one table.",
    ),
    (
        "weir_maintenance_errors_total",
        "counter",
        "job",
        "Maintenance job runs that failed.",
    ),
    // Standing alert rules (weir-alert), in the process that ingests.
    (
        "weir_alert_rules",
        "gauge",
        "",
        "Alert rules being evaluated.",
    ),
    (
        "weir_alert_firing",
        "gauge",
        "rule",
        "Open alerts (ACTIVE or ACKNOWLEDGED) per rule.",
    ),
    (
        "weir_alert_rows_evaluated_total",
        "counter",
        "",
        "Rows of tables with alert rules run through their rules.",
    ),
    (
        "weir_alert_transitions_total",
        "counter",
        "state",
        "Alert transitions committed to gold.alerts (ACTIVE, RESOLVED).",
    ),
    (
        "weir_alert_notifications_total",
        "counter",
        "target, outcome",
        "Alert notification attempts by target kind (mqtt, kafka, webhook) and outcome (sent, retried, failed).",
    ),
    (
        "weir_alert_evaluation_errors_total",
        "counter",
        "rule",
        "Batches a rule could not be evaluated on (e.g. a column it reads is gone).",
    ),
    (
        "weir_alert_commit_failures_total",
        "counter",
        "",
        "Failed commits of alert transitions (retried at the next tick).",
    ),
    (
        "weir_alert_feed_lagged_total",
        "counter",
        "",
        "Sealed batches the alert evaluator missed because it fell behind the writers.",
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
}
