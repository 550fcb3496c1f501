//! Weir configuration as clap derive blocks.
//!
//! Every flag is also a `WEIR_*` environment variable, and may be set in an
//! optional TOML file (`--config`/`WEIR_CONFIG`, default `./weir.toml` when it
//! exists). Precedence, highest first: command-line flag, environment
//! variable, config file, built-in default.

mod auth;
mod file;
mod limits;
mod users;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use auth::AuthConfig;
pub use file::{ConfigError, apply_config_file};
pub use limits::{ConnectionConfig, MemoryLimit, available_memory};

/// Where the lakehouse lives: catalog database and warehouse.
#[derive(Clone, clap::Args)]
pub struct StorageConfig {
    /// Root of the embedded lakehouse (catalog.db and warehouse/ live here).
    #[arg(long, env = "WEIR_DATA_DIR", default_value = "./weir-data")]
    pub data_dir: PathBuf,

    /// Iceberg SQL catalog URI (default: sqlite:<data-dir>/catalog.db);
    /// `postgres://user:pass@host:port/db` for a catalog several processes
    /// (serve, ingest, maintain) share.
    #[arg(long, env = "WEIR_CATALOG_URI", hide_env_values = true)]
    pub catalog_uri: Option<String>,

    /// Warehouse root for table files (default: file://<data-dir>/warehouse),
    /// e.g. `s3://bucket/prefix` on an S3-compatible store.
    #[arg(long, env = "WEIR_WAREHOUSE")]
    pub warehouse: Option<String>,

    #[command(flatten)]
    pub s3: S3Config,

    /// Directory of table definitions (default: the definitions built into
    /// the binary from the repository's catalog/ folder).
    #[arg(long, env = "WEIR_TABLES_DIR")]
    pub tables_dir: Option<PathBuf>,
}

impl std::fmt::Debug for StorageConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The catalog URI may carry a password.
        f.debug_struct("StorageConfig")
            .field("data_dir", &self.data_dir)
            .field("catalog_uri", &self.catalog_uri.as_ref().map(|_| "<set>"))
            .field("warehouse", &self.warehouse)
            .field("s3", &self.s3)
            .field("tables_dir", &self.tables_dir)
            .finish()
    }
}

/// The S3-compatible object store of an `s3://` warehouse. Unset values
/// fall back to the standard `AWS_*` variables (`AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT`, ...).
#[derive(Clone, clap::Args)]
pub struct S3Config {
    /// Endpoint of an S3-compatible server, e.g. `http://127.0.0.1:8333`
    /// (unset: AWS).
    #[arg(long, env = "WEIR_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,

    /// Region, e.g. `us-east-1`.
    #[arg(long, env = "WEIR_S3_REGION")]
    pub s3_region: Option<String>,

    /// Access key id (else `AWS_ACCESS_KEY_ID`).
    #[arg(long, env = "WEIR_S3_ACCESS_KEY_ID")]
    pub s3_access_key_id: Option<String>,

    /// Secret access key (else `AWS_SECRET_ACCESS_KEY`); never logged.
    #[arg(long, env = "WEIR_S3_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub s3_secret_access_key: Option<String>,

    /// Session token of temporary credentials (else `AWS_SESSION_TOKEN`).
    #[arg(long, env = "WEIR_S3_SESSION_TOKEN", hide_env_values = true)]
    pub s3_session_token: Option<String>,

    /// Path-style requests (`endpoint/bucket/key`: MinIO, SeaweedFS, most
    /// S3-compatible servers); `false` = virtual-hosted style.
    #[arg(long = "s3-path-style", env = "WEIR_S3_PATH_STYLE", default_value_t = true, action = clap::ArgAction::Set)]
    pub s3_path_style: bool,

    /// Allow plain HTTP (default: when the endpoint is `http://`).
    #[arg(long = "s3-allow-http", env = "WEIR_S3_ALLOW_HTTP", action = clap::ArgAction::Set)]
    pub s3_allow_http: Option<bool>,

    /// Conditional writes (`If-None-Match`): a table metadata file is never
    /// overwritten.
    /// `false` for stores that reject conditional requests.
    #[arg(long = "s3-conditional-writes", env = "WEIR_S3_CONDITIONAL_WRITES", default_value_t = true, action = clap::ArgAction::Set)]
    pub s3_conditional_writes: bool,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redacted = |v: &Option<String>| v.as_ref().map(|_| "<redacted>");
        f.debug_struct("S3Config")
            .field("s3_endpoint", &self.s3_endpoint)
            .field("s3_region", &self.s3_region)
            .field("s3_access_key_id", &self.s3_access_key_id)
            .field(
                "s3_secret_access_key",
                &redacted(&self.s3_secret_access_key),
            )
            .field("s3_session_token", &redacted(&self.s3_session_token))
            .field("s3_path_style", &self.s3_path_style)
            .field("s3_allow_http", &self.s3_allow_http)
            .field("s3_conditional_writes", &self.s3_conditional_writes)
            .finish()
    }
}

/// Query engine limits.
#[derive(Debug, Clone, clap::Args)]
pub struct QueryConfig {
    /// Memory all queries together may hold (sorts, aggregates, joins)
    /// before they spill to disk or fail with RESOURCE_EXHAUSTED, in MiB;
    /// `auto` = half of the machine's (or the cgroup's) memory; `0` = no
    /// limit (one query can then take the server down).
    #[arg(long, env = "WEIR_QUERY_MEMORY_MB", default_value = "auto")]
    pub query_memory_mb: MemoryLimit,

    /// The directory `COPY … TO` may write into (and below; relative
    /// targets are resolved in it). Without it COPY is refused.
    #[arg(long, env = "WEIR_EXPORT_DIR")]
    pub export_dir: Option<PathBuf>,

    /// Parallelism per query (0 = number of cores).
    #[arg(long, env = "WEIR_QUERY_PARALLELISM", default_value_t = 0)]
    pub query_parallelism: usize,

    /// Longest a query may plan or stream its results before it is cancelled
    /// with DEADLINE_EXCEEDED, e.g. `30s`, `10m` (`0s` = no limit; alias
    /// `--statement-timeout`; a client's session option `statement_timeout`
    /// overrides it).
    #[arg(long, alias = "statement-timeout", env = "WEIR_QUERY_TIMEOUT", value_parser = humantime::parse_duration, default_value = "10m")]
    pub query_timeout: Duration,

    /// Answer aggregates from materialized views when one can (exact: the
    /// base rows a view does not hold yet are added); the session default of
    /// `SET weir.mv_rewrite`.
    #[arg(long = "mv-rewrite", env = "WEIR_MV_REWRITE", default_value_t = true, action = clap::ArgAction::Set)]
    pub mv_rewrite: bool,

    /// Memory for decoded data files of materialized views (and tables with
    /// `weir.file-cache = true`), in MiB, so rollup queries decode no
    /// Parquet (0 = off; least recently used files are dropped first).
    #[arg(long, env = "WEIR_FILE_CACHE_MB", default_value_t = 1024)]
    pub file_cache_mb: u64,

    /// Largest data file the file cache takes, in MiB of Parquet.
    #[arg(long, env = "WEIR_FILE_CACHE_MAX_FILE_MB", default_value_t = 64)]
    pub file_cache_max_file_mb: u64,

    /// Memory for all last-value indexes together (tables with the
    /// property `weir.last-value.keys`), in MiB; an index that does not fit
    /// is not kept (its queries take the normal plan).
    #[arg(long, env = "WEIR_LAST_VALUE_MEMORY_MB", default_value_t = 512)]
    pub last_value_memory_mb: u64,

    /// Attach an external PostgreSQL database as a catalog:
    /// `NAME=postgres://user:pass@host:port/db` (repeatable; comma-separated
    /// in the variable). Its tables appear as `NAME.schema.table`.
    #[arg(
        long = "postgres-catalog",
        env = "WEIR_POSTGRES_CATALOG",
        value_delimiter = ','
    )]
    pub postgres_catalog: Vec<String>,

    /// Hot tiers of `weir ingest` processes to read (`grpc://host:port` of
    /// their `--hot-listen`): their rows are queryable before they commit,
    /// each row once. Comma-separated or repeated.
    #[arg(
        long = "hot-tier-from",
        env = "WEIR_HOT_TIER_FROM",
        value_delimiter = ','
    )]
    pub hot_tier_from: Vec<String>,

    /// The secret of the hot-tier feeds (`weir ingest --hot-feed-token`).
    #[arg(long, env = "WEIR_HOT_FEED_TOKEN", hide_env_values = true)]
    pub hot_feed_token: Option<String>,
}

/// Scheduled maintenance inside `weir serve` (per-table `[policy]` in the
/// table definitions; see `weir maintain --help` for the jobs).
#[derive(Debug, Clone, clap::Args)]
pub struct MaintenanceConfig {
    /// Run compaction, clustering, expiry, orphan cleanup and retention on
    /// their schedules (`--maintenance=false` leaves it to `weir maintain`).
    #[arg(long = "maintenance", env = "WEIR_MAINTENANCE", default_value_t = true, action = clap::ArgAction::Set)]
    pub enabled: bool,

    /// How often to look for due maintenance jobs.
    #[arg(long, env = "WEIR_MAINTENANCE_TICK", value_parser = humantime::parse_duration, default_value = "30s")]
    pub maintenance_tick: Duration,
}

/// The built-in device simulator behind `--demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoConfig {
    /// Run simulated devices writing into silver.points.
    #[arg(long, env = "WEIR_DEMO", default_value_t = false)]
    pub demo: bool,

    /// Number of simulated devices.
    #[arg(long, env = "WEIR_DEMO_DEVICES", default_value_t = 20)]
    pub demo_devices: usize,

    /// Sampling interval of each simulated sensor, in milliseconds.
    #[arg(long, env = "WEIR_DEMO_INTERVAL_MS", default_value_t = 1000)]
    pub demo_interval_ms: u64,
}

/// Kafka source (enabled when `--kafka-brokers` is set).
#[derive(Debug, Clone, clap::Args)]
pub struct KafkaConfig {
    /// Kafka bootstrap servers, e.g. `127.0.0.1:9092`; unset = no Kafka source.
    #[arg(long, env = "WEIR_KAFKA_BROKERS")]
    pub kafka_brokers: Option<String>,

    /// Consumer group (writers in one group split the partitions).
    #[arg(long, env = "WEIR_KAFKA_GROUP", default_value = "weir")]
    pub kafka_group: String,

    /// Topics to read, comma-separated; a name starting with `^` is a regex.
    #[arg(long, env = "WEIR_KAFKA_TOPICS", value_delimiter = ',')]
    pub kafka_topics: Vec<String>,

    /// Payload format of topics without a route: auto, json_status,
    /// json_points or line_protocol.
    #[arg(long, env = "WEIR_KAFKA_FORMAT", default_value = "auto")]
    pub kafka_format: String,

    /// Per-topic decoder and Silver table: `PATTERN=FORMAT[@namespace.table]`,
    /// comma-separated or repeated (first match wins).
    #[arg(long, env = "WEIR_KAFKA_ROUTE", value_delimiter = ',')]
    pub kafka_route: Vec<String>,

    /// librdkafka options passed through, `key=value` (security.protocol,
    /// sasl.mechanism, sasl.username, ssl.ca.location, ...).
    #[arg(long, env = "WEIR_KAFKA_OPTION", value_delimiter = ',')]
    pub kafka_option: Vec<String>,

    /// Where partitions with no committed watermark start: earliest or latest.
    #[arg(long, env = "WEIR_KAFKA_START", default_value = "earliest")]
    pub kafka_start: String,
}

/// Modbus TCP source (enabled when `--modbus-registry` is set).
#[derive(Debug, Clone, clap::Args)]
pub struct ModbusConfig {
    /// Device registry: a TOML file (see `catalog/devices/registry.example.toml`)
    /// or a PostgreSQL URL (`postgres://user@host:port/db`, the `devices` and
    /// `tags` tables); unset = no Modbus source.
    #[arg(long, env = "WEIR_MODBUS_REGISTRY")]
    pub modbus_registry: Option<PathBuf>,

    /// Connect and request timeout of devices without their own `timeout_ms`.
    #[arg(long, env = "WEIR_MODBUS_TIMEOUT_MS", default_value_t = 1000)]
    pub modbus_timeout_ms: u64,

    /// First reconnect delay after a device fails (doubles, with jitter).
    #[arg(long, env = "WEIR_MODBUS_RECONNECT_MIN_MS", default_value_t = 500)]
    pub modbus_reconnect_min_ms: u64,

    /// Longest reconnect delay.
    #[arg(long, env = "WEIR_MODBUS_RECONNECT_MAX_MS", default_value_t = 30_000)]
    pub modbus_reconnect_max_ms: u64,

    /// Largest hole (registers) bridged when batching contiguous reads
    /// (0 = read only the registers of tags).
    #[arg(long, env = "WEIR_MODBUS_MAX_GAP", default_value_t = 8)]
    pub modbus_max_gap: u16,
}

/// MQTT source (enabled when `--mqtt-broker` is set).
#[derive(Debug, Clone, clap::Args)]
pub struct MqttConfig {
    /// Broker URL, `mqtt://[user:pass@]host[:port][#name]` or `mqtts://…`;
    /// comma-separated or repeated for several brokers. The name (default
    /// `host:port`) keys the broker's watermark. Unset = no MQTT source.
    #[arg(long = "mqtt-broker", env = "WEIR_MQTT_BROKER", value_delimiter = ',')]
    pub mqtt_brokers: Vec<String>,

    /// Topic filters (`+`/`#` wildcards), `FILTER` or `FILTER=QOS`;
    /// comma-separated or repeated.
    #[arg(long, env = "WEIR_MQTT_SUBSCRIBE", value_delimiter = ',')]
    pub mqtt_subscribe: Vec<String>,

    /// QoS of filters without `=QOS`: 1 (acknowledged after commit) or 0.
    #[arg(long, env = "WEIR_MQTT_QOS", default_value = "1")]
    pub mqtt_qos: String,

    /// Maps topic levels to fields, e.g. `plant/{site}/{device_id}/{metric}`;
    /// fields other than device_id and metric become labels.
    #[arg(long, env = "WEIR_MQTT_TOPIC_TEMPLATE")]
    pub mqtt_topic_template: Option<String>,

    /// Payload format: json, lp, number or auto.
    #[arg(long, env = "WEIR_MQTT_FORMAT", default_value = "auto")]
    pub mqtt_format: String,

    /// Client id of the persistent session (the same on every restart, so
    /// the broker keeps unacknowledged and queued messages for it).
    #[arg(long, env = "WEIR_MQTT_CLIENT_ID", default_value = "weir")]
    pub mqtt_client_id: String,

    /// User name for brokers whose URL has none.
    #[arg(long, env = "WEIR_MQTT_USERNAME")]
    pub mqtt_username: Option<String>,

    /// Password for brokers whose URL has none.
    #[arg(long, env = "WEIR_MQTT_PASSWORD", hide_env_values = true)]
    pub mqtt_password: Option<String>,

    /// PEM file of the CA certificates trusted for `mqtts://` brokers.
    #[arg(long, env = "WEIR_MQTT_CA_FILE")]
    pub mqtt_ca_file: Option<PathBuf>,

    /// MQTT keep-alive interval.
    #[arg(long, env = "WEIR_MQTT_KEEP_ALIVE", value_parser = humantime::parse_duration, default_value = "30s")]
    pub mqtt_keep_alive: Duration,

    /// Silver table of the points (`namespace.table`).
    #[arg(long, env = "WEIR_MQTT_TABLE", default_value = "silver.points")]
    pub mqtt_table: String,

    /// Point keys (device, metric, ts) remembered per broker to drop
    /// redelivered points (about 50 bytes each); must cover the points of a
    /// few commits.
    #[arg(long, env = "WEIR_MQTT_DEDUPE_KEYS", default_value_t = 1_000_000)]
    pub mqtt_dedupe_keys: usize,
}

/// The streaming writer's cadence and limits (all sources).
#[derive(Debug, Clone, clap::Args)]
pub struct WriterConfig {
    /// Commit at least this often (ms) while rows are buffered.
    #[arg(long, env = "WEIR_COMMIT_INTERVAL_MS", default_value_t = 10_000)]
    pub commit_interval_ms: u64,

    /// ...or as soon as this much data (MiB, in memory) is buffered.
    #[arg(long, env = "WEIR_COMMIT_TARGET_MB", default_value_t = 128)]
    pub commit_target_mb: usize,

    /// New rows become queryable (hot tier) at least this often (ms).
    #[arg(long, env = "WEIR_HOT_INTERVAL_MS", default_value_t = 100)]
    pub hot_interval_ms: u64,

    /// Consumption pauses while this much (MiB) is buffered or committing.
    #[arg(long, env = "WEIR_MAX_BUFFER_MB", default_value_t = 512)]
    pub max_buffer_mb: usize,

    /// Larger messages go to the dead-letter table (bytes).
    #[arg(long, env = "WEIR_MAX_MESSAGE_BYTES", default_value_t = 1 << 20)]
    pub max_message_bytes: usize,

    #[command(flatten)]
    pub decode: DecodeLimitsConfig,
}

/// What one message may decode to; a message over a limit goes to the
/// dead-letter table with the limit named in its reason (nothing of it is
/// written to Silver). See `weir_ingest::decode::DecodeLimits`.
#[derive(Debug, Clone, clap::Args)]
pub struct DecodeLimitsConfig {
    /// Labels one point may carry.
    #[arg(long, env = "WEIR_DECODE_MAX_LABELS_PER_POINT", default_value_t = 64)]
    pub decode_max_labels_per_point: usize,

    /// Points one message may produce.
    #[arg(
        long,
        env = "WEIR_DECODE_MAX_POINTS_PER_MESSAGE",
        default_value_t = 100_000
    )]
    pub decode_max_points_per_message: usize,

    /// Labels summed over the points of one message (points × labels: the
    /// work one message may cause).
    #[arg(
        long,
        env = "WEIR_DECODE_MAX_LABELS_PER_MESSAGE",
        default_value_t = 1_000_000
    )]
    pub decode_max_labels_per_message: usize,

    /// Fields of one JSON object (nested members included) or one line of
    /// line protocol (tags and fields).
    #[arg(
        long,
        env = "WEIR_DECODE_MAX_FIELDS_PER_OBJECT",
        default_value_t = 10_000
    )]
    pub decode_max_fields_per_object: usize,

    /// JSON nesting depth (serde_json stops at 128 in any case).
    #[arg(long, env = "WEIR_DECODE_MAX_DEPTH", default_value_t = 32)]
    pub decode_max_depth: usize,

    /// Bytes of a metric name (nested keys flattened) or label key.
    #[arg(long, env = "WEIR_DECODE_MAX_KEY_BYTES", default_value_t = 256)]
    pub decode_max_key_bytes: usize,

    /// Bytes of a label value, device id or unit.
    #[arg(long, env = "WEIR_DECODE_MAX_VALUE_BYTES", default_value_t = 4096)]
    pub decode_max_value_bytes: usize,

    /// Approximate memory the points of one message may take, in MiB.
    #[arg(long, env = "WEIR_DECODE_MAX_DECODED_MB", default_value_t = 64)]
    pub decode_max_decoded_mb: usize,
}

/// Every source a process can run.
#[derive(Debug, Clone, clap::Args)]
pub struct SourcesConfig {
    #[command(flatten)]
    pub kafka: KafkaConfig,

    #[command(flatten)]
    pub modbus: ModbusConfig,

    #[command(flatten)]
    pub mqtt: MqttConfig,

    #[command(flatten)]
    pub writer: WriterConfig,
}

/// When the alert evaluator runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertsMode {
    Auto,
    True,
    False,
}

/// Standing alert rules (`CREATE ALERT`, or declared in TOML), evaluated
/// on the rows this process ingests.
#[derive(Debug, Clone, clap::Args)]
pub struct AlertsConfig {
    /// Evaluate alert rules on the rows this process writes (its sources,
    /// the demo, INSERT and bulk ingestion): `auto` (when it runs sources or
    /// the demo: where the rows arrive), `true` or `false`.
    #[arg(long = "alerts", env = "WEIR_ALERTS", default_value = "auto")]
    pub alerts_enabled: AlertsMode,

    /// Alert rules declared in TOML (a file, or a directory of `*.toml` with
    /// `[[alert]]` entries), or the PostgreSQL alert registry
    /// (`postgres://…`: its `alert_rules`, transitions mirrored into
    /// `alert_history`); see crates/weir-alert/README.md.
    #[arg(long, env = "WEIR_ALERT_RULES")]
    pub alert_rules: Option<PathBuf>,

    /// How often silent series are checked and alert transitions committed.
    #[arg(long, env = "WEIR_ALERT_TICK", value_parser = humantime::parse_duration, default_value = "250ms")]
    pub alert_tick: Duration,
}

/// `weir ingest`: run the configured sources without serving SQL.
#[derive(Debug, Clone, clap::Args)]
pub struct IngestConfig {
    /// Serve this process's hot tier (rows decoded but not yet committed)
    /// over Arrow Flight on this address, for `weir serve --hot-tier-from`
    /// (port 0 picks a free port; the address is printed at start).
    #[arg(long, env = "WEIR_HOT_LISTEN")]
    pub hot_listen: Option<SocketAddr>,

    /// Shared secret readers of the hot-tier feed must present (`weir serve
    /// --hot-feed-token`); required when `--hot-listen` is not loopback.
    #[arg(long, env = "WEIR_HOT_FEED_TOKEN", hide_env_values = true)]
    pub hot_feed_token: Option<String>,

    #[command(flatten)]
    pub storage: StorageConfig,

    #[command(flatten)]
    pub sources: SourcesConfig,

    #[command(flatten)]
    pub alerts: AlertsConfig,
}

/// How a `weir maintain` job runs: for real or as a plan, and how it reports.
#[derive(Debug, Clone, clap::Args)]
pub struct JobRunConfig {
    /// Show what the job would do; change nothing.
    #[arg(long, default_value_t = false)]
    pub dry_run: bool,

    /// Print the summary as JSON.
    #[arg(long, default_value_t = false)]
    pub json: bool,
}

/// `weir maintain schedule`: the maintenance schedule of `weir serve` as a
/// process of its own (production: beside `weir serve --maintenance=false`
/// and `weir ingest` on a shared catalog; per-table leases keep runs apart).
#[derive(Debug, Clone, clap::Args)]
pub struct ScheduleConfig {
    /// How often to look for due maintenance jobs (each table's `[policy]`
    /// says how often each job is due).
    #[arg(long, env = "WEIR_MAINTENANCE_TICK", value_parser = humantime::parse_duration, default_value = "30s")]
    pub maintenance_tick: Duration,

    /// Memory limit of the view refreshes' queries in MiB (0 = unlimited).
    #[arg(long, env = "WEIR_QUERY_MEMORY_MB", default_value_t = 0)]
    pub query_memory_mb: usize,

    #[command(flatten)]
    pub storage: StorageConfig,
}

/// `weir maintain compact`: bin-pack small files into target-size files.
#[derive(Debug, Clone, clap::Args)]
pub struct CompactConfig {
    /// Tables to compact (`namespace.table`); default: every table in
    /// bronze, silver and gold.
    pub tables: Vec<String>,

    /// Size of the files compaction writes, in MiB (default: the table's
    /// `write.target-file-size-bytes`).
    #[arg(long, env = "WEIR_COMPACT_TARGET_FILE_MB")]
    pub target_file_mb: Option<f64>,

    /// Rewrite a partition only when it has at least this many small files.
    #[arg(long, env = "WEIR_COMPACT_MIN_FILES", default_value_t = 2)]
    pub min_files: usize,

    /// Memory, in MiB, a group's sort may use before it spills sorted runs
    /// to temporary files (`TMPDIR`); groups of any size then compact in
    /// about this much memory.
    #[arg(long, env = "WEIR_COMPACT_SORT_MEMORY_MB", default_value_t = 1024)]
    pub sort_memory_mb: usize,

    /// Leave partitions alone that received files within this window (still
    /// being written), e.g. `1h` (default: the table's
    /// `weir.maintenance.skip-recent-seconds`, else none).
    #[arg(long, env = "WEIR_COMPACT_SKIP_RECENT", value_parser = humantime::parse_duration)]
    pub skip_recent: Option<Duration>,

    #[command(flatten)]
    pub run: JobRunConfig,

    #[command(flatten)]
    pub storage: StorageConfig,
}

/// `weir maintain cluster`: rewrite partitions in Z-order.
#[derive(Debug, Clone, clap::Args)]
pub struct ClusterConfig {
    /// Tables to cluster (`namespace.table`); default: every table in
    /// bronze, silver and gold that declares `weir.cluster.columns`.
    pub tables: Vec<String>,

    /// Columns of the Z-order, e.g. `device_id,ts` (default: the table's
    /// `weir.cluster.columns`).
    #[arg(long, env = "WEIR_CLUSTER_COLUMNS", value_delimiter = ',')]
    pub columns: Vec<String>,

    /// Size of the files written, in MiB (default: the table's
    /// `write.target-file-size-bytes`).
    #[arg(long, env = "WEIR_CLUSTER_TARGET_FILE_MB")]
    pub target_file_mb: Option<f64>,

    /// Most input rewritten together, in MiB (bounds memory; larger groups
    /// cluster better).
    #[arg(long, env = "WEIR_CLUSTER_MAX_GROUP_MB", default_value_t = 512)]
    pub max_group_mb: u64,

    /// Leave partitions alone that received files within this window.
    #[arg(long, env = "WEIR_CLUSTER_SKIP_RECENT", value_parser = humantime::parse_duration)]
    pub skip_recent: Option<Duration>,

    #[command(flatten)]
    pub run: JobRunConfig,

    #[command(flatten)]
    pub storage: StorageConfig,
}

/// `weir maintain expire`: drop old snapshots and the files only they use.
#[derive(Debug, Clone, clap::Args)]
pub struct ExpireConfig {
    /// Tables (`namespace.table`); default: every table in bronze, silver and gold.
    pub tables: Vec<String>,

    /// Keep snapshots superseded less than this long ago, e.g. `6h`, `7d`
    /// (default: the table's `history.expire.max-snapshot-age-ms`, else 1 day).
    #[arg(long, env = "WEIR_EXPIRE_OLDER_THAN", value_parser = humantime::parse_duration)]
    pub older_than: Option<Duration>,

    /// Always keep this many newest snapshots (default: the table's
    /// `history.expire.min-snapshots-to-keep`, else 10).
    #[arg(long, env = "WEIR_EXPIRE_RETAIN_LAST")]
    pub retain_last: Option<usize>,

    #[command(flatten)]
    pub run: JobRunConfig,

    #[command(flatten)]
    pub storage: StorageConfig,
}

/// `weir maintain retention`: drop partitions older than the table's retention.
#[derive(Debug, Clone, clap::Args)]
pub struct RetentionConfig {
    /// Tables (`namespace.table`); default: every declared table with a
    /// `retention_days` policy.
    pub tables: Vec<String>,

    /// Override the policy's retention, in days.
    #[arg(long)]
    pub days: Option<f64>,

    #[command(flatten)]
    pub run: JobRunConfig,

    #[command(flatten)]
    pub storage: StorageConfig,
}

/// `weir maintain erase`: delete rows for good (e.g. a data subject's
/// erasure request): DELETE, refresh the materialized views that read the
/// table, then expire every older snapshot of both, so no data file in the
/// warehouse holds the rows any more.
#[derive(Debug, Clone, clap::Args)]
pub struct EraseConfig {
    /// The table (`namespace.table`).
    #[arg(long)]
    pub table: String,

    /// The rows to erase: a SQL predicate over the table's columns, e.g.
    /// `device_id = 'pump-7'`.
    #[arg(long = "where")]
    pub predicate: String,

    #[command(flatten)]
    pub run: JobRunConfig,

    #[command(flatten)]
    pub storage: StorageConfig,
}

/// `weir maintain orphans`: delete files no snapshot references.
#[derive(Debug, Clone, clap::Args)]
pub struct OrphansConfig {
    /// Tables (`namespace.table`); default: every table in bronze, silver and gold.
    pub tables: Vec<String>,

    /// Only files older than this are removed (writers place files before
    /// they commit), e.g. `3d`.
    #[arg(long, env = "WEIR_ORPHANS_OLDER_THAN", value_parser = humantime::parse_duration, default_value = "3d")]
    pub older_than: Duration,

    /// Allow a safety age under one hour (files of commits in flight may go).
    #[arg(long, default_value_t = false)]
    pub allow_short_age: bool,

    #[command(flatten)]
    pub run: JobRunConfig,

    #[command(flatten)]
    pub storage: StorageConfig,
}

/// `weir maintain rewrite-manifests`: merge small data manifests.
#[derive(Debug, Clone, clap::Args)]
pub struct ManifestsConfig {
    /// Tables (`namespace.table`); default: every table in bronze, silver and gold.
    pub tables: Vec<String>,

    /// Merge a partition spec's small manifests once it has this many
    /// (appends merge on their own at `commit.manifest.min-count-to-merge`).
    #[arg(long, default_value_t = 2)]
    pub min_count: usize,

    /// Manifests below this size (MiB) are merged; merged ones are cut near
    /// it (default: the table's `commit.manifest.target-size-bytes`, else 8).
    #[arg(long)]
    pub target_manifest_mb: Option<f64>,

    #[command(flatten)]
    pub run: JobRunConfig,

    #[command(flatten)]
    pub storage: StorageConfig,
}

/// `weir serve`: the Flight SQL server (plus sources and schedules).
#[derive(Debug, Clone, clap::Args)]
pub struct ServeConfig {
    /// Flight SQL listen address (port 0 picks a free port).
    #[arg(long, env = "WEIR_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,

    #[command(flatten)]
    pub auth: AuthConfig,

    #[command(flatten)]
    pub connections: ConnectionConfig,

    #[command(flatten)]
    pub storage: StorageConfig,

    #[command(flatten)]
    pub query: QueryConfig,

    #[command(flatten)]
    pub demo: DemoConfig,

    #[command(flatten)]
    pub maintenance: MaintenanceConfig,

    #[command(flatten)]
    pub sources: SourcesConfig,

    #[command(flatten)]
    pub alerts: AlertsConfig,

    /// Serve the web console at `/` of the HTTP endpoint (`--http-listen`),
    /// with Flight SQL's users and roles: `true` or `false`.
    #[arg(long, env = "WEIR_CONSOLE", default_value_t = true, action = clap::ArgAction::Set)]
    pub console: bool,
}

/// `weir import`: bulk-append Parquet files to a table (one snapshot per file).
#[derive(Debug, Clone, clap::Args)]
pub struct ImportConfig {
    /// Target table, `namespace.table` (e.g. silver.points).
    #[arg(long, env = "WEIR_IMPORT_TABLE")]
    pub table: String,

    /// Parquet files to append; columns are matched to the table by name.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,

    /// Input files per commit: each group lands whole in one `append`
    /// snapshot (every input file still becomes its own data files).
    #[arg(long, env = "WEIR_IMPORT_FILES_PER_COMMIT", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub files_per_commit: u32,

    /// Input files read and encoded at once (each on its own core; each
    /// holds its rows in memory while they are written). 0: one per core.
    #[arg(long, env = "WEIR_IMPORT_PARALLEL", default_value_t = 0)]
    pub parallel: u32,

    /// Print the summary as JSON (for scripts) instead of text.
    #[arg(long, default_value_t = false)]
    pub json: bool,

    #[command(flatten)]
    pub storage: StorageConfig,
}

/// Observability options shared by every command (global flags).
#[derive(Debug, Clone, clap::Args)]
pub struct ObserveConfig {
    /// HTTP endpoint for `/metrics`, `/health` and `/ready`: `HOST:PORT`
    /// (port 0 picks a free port; the bound address is printed) or `off`.
    /// Default: 127.0.0.1:9090 for `serve`, 127.0.0.1:9091 for `ingest`, off
    /// for `maintain` and `import`.
    #[arg(long, env = "WEIR_HTTP_LISTEN", global = true, value_parser = parse_http_listen)]
    pub http_listen: Option<HttpListen>,

    /// Log output: `text` (human-readable) or `json` (one object per line,
    /// with span fields such as `table` and `source`).
    #[arg(long, env = "WEIR_LOG_FORMAT", global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// `--http-listen`: an address, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpListen {
    Off,
    At(SocketAddr),
}

impl ObserveConfig {
    /// The address to serve on: the flag, else the command's default.
    pub fn http_addr(&self, default: Option<SocketAddr>) -> Option<SocketAddr> {
        match self.http_listen {
            Some(HttpListen::Off) => None,
            Some(HttpListen::At(addr)) => Some(addr),
            None => default,
        }
    }
}

fn parse_http_listen(s: &str) -> Result<HttpListen, String> {
    if s.eq_ignore_ascii_case("off") {
        return Ok(HttpListen::Off);
    }
    s.parse()
        .map(HttpListen::At)
        .map_err(|e| format!("`{s}`: expected HOST:PORT or off ({e})"))
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, clap::Parser)]
    struct TestCli {
        #[command(flatten)]
        serve: ServeConfig,
    }

    #[test]
    fn defaults_are_the_embedded_setup() {
        let cli = TestCli::try_parse_from(["weir"]).unwrap();
        assert_eq!(cli.serve.listen.to_string(), "127.0.0.1:50051");
        assert_eq!(cli.serve.storage.data_dir, PathBuf::from("./weir-data"));
        assert!(!cli.serve.demo.demo);
        assert!(cli.serve.query.postgres_catalog.is_empty());
    }

    #[test]
    fn s3_options_parse_from_flags() {
        let cli = TestCli::try_parse_from([
            "weir",
            "--warehouse",
            "s3://test/lake",
            "--catalog-uri",
            "postgres://weir:pw@127.0.0.1:5432/lake",
            "--s3-endpoint",
            "http://127.0.0.1:8333",
            "--s3-region",
            "us-east-1",
            "--s3-access-key-id",
            "testkey",
            "--s3-secret-access-key",
            "testsecret",
            "--s3-path-style=false",
            "--s3-allow-http",
            "true",
            "--s3-conditional-writes=false",
        ])
        .unwrap();
        let st = &cli.serve.storage;
        assert_eq!(st.warehouse.as_deref(), Some("s3://test/lake"));
        assert_eq!(st.s3.s3_endpoint.as_deref(), Some("http://127.0.0.1:8333"));
        assert_eq!(st.s3.s3_region.as_deref(), Some("us-east-1"));
        assert_eq!(st.s3.s3_access_key_id.as_deref(), Some("testkey"));
        assert_eq!(st.s3.s3_secret_access_key.as_deref(), Some("testsecret"));
        assert!(!st.s3.s3_path_style);
        assert_eq!(st.s3.s3_allow_http, Some(true));
        assert!(!st.s3.s3_conditional_writes);
        // Neither the secret nor the catalog password reaches a log line.
        let shown = format!("{st:?}");
        assert!(
            !shown.contains("testsecret") && !shown.contains(":pw@"),
            "{shown}"
        );
    }

    #[test]
    fn http_listen_takes_an_address_or_off_and_falls_back_to_the_default() {
        #[derive(Debug, clap::Parser)]
        struct Cli {
            #[command(flatten)]
            observe: ObserveConfig,
        }
        let default = Some("127.0.0.1:9090".parse().unwrap());
        let parse = |args: &[&str]| Cli::try_parse_from(args).map(|c| c.observe);
        let none = parse(&["weir"]).unwrap();
        assert_eq!(none.http_addr(default), default);
        assert_eq!(none.log_format, LogFormat::Text);
        let port0 = parse(&["weir", "--http-listen", "127.0.0.1:0"]).unwrap();
        assert_eq!(
            port0.http_addr(default),
            Some("127.0.0.1:0".parse().unwrap())
        );
        let off = parse(&["weir", "--http-listen", "off", "--log-format", "json"]).unwrap();
        assert_eq!(off.http_addr(default), None);
        assert_eq!(off.log_format, LogFormat::Json);
        let bad = parse(&["weir", "--http-listen", "localhost"]).unwrap_err();
        assert!(
            bad.to_string().contains("expected HOST:PORT or off"),
            "{bad}"
        );
    }

    #[test]
    fn s3_defaults_are_path_style_and_conditional() {
        let cli = TestCli::try_parse_from(["weir"]).unwrap();
        let s3 = &cli.serve.storage.s3;
        assert!(s3.s3_path_style && s3.s3_conditional_writes);
        assert_eq!(s3.s3_allow_http, None);
        assert_eq!(s3.s3_endpoint, None);
    }

    #[test]
    fn postgres_catalogs_repeat() {
        let cli = TestCli::try_parse_from([
            "weir",
            "--postgres-catalog",
            "pg=postgres://u:p@127.0.0.1:5432/registry",
            "--postgres-catalog",
            "erp=postgres://h/erp,crm=postgres://h/crm",
        ])
        .unwrap();
        assert_eq!(
            cli.serve.query.postgres_catalog,
            [
                "pg=postgres://u:p@127.0.0.1:5432/registry",
                "erp=postgres://h/erp",
                "crm=postgres://h/crm"
            ]
        );
    }
}
