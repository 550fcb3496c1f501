//! The evaluator loop.
//!
//! Rows: every batch this process's writers seal (the hot tier's feed,
//! `HotTier::subscribe`), within milliseconds of decoding, before any
//! commit. Each tick ([`AlertOptions::tick`]) checks absence rules, commits
//! the transitions decided since the last commit to `gold.alerts` (one
//! append, its commit id kept across attempts so a retry after an unknown
//! outcome never writes twice), then notifies them. Every
//! [`AlertOptions::rules_poll`] the rules are re-read when `gold.alerts`
//! changed (SQL in any process edits them).
//!
//! Exactly once in `gold.alerts`: the open alerts are recovered from the
//! table at start (an alert's state is its latest row), so a restart — kill
//! -9 included — neither repeats an ACTIVE that landed nor forgets one; a
//! transition decided but not committed before a crash is decided again by
//! the next rows.
//!
//! One evaluator per series: run it in the process that ingests the rows
//! (`weir serve` with its sources, or `weir ingest`). Several `weir ingest`
//! processes of one Kafka group each evaluate the partitions they own; a
//! rebalance hands series over ([`crate::sync`]): the writer announces the
//! partitions it releases and acquires on the feed, the old owner forgets
//! their series, the new one reads the open alerts of every evaluator
//! before their rows and carries them on.
//!
//! Acknowledgements: `ACKNOWLEDGE ALERT` publishes the ACKNOWLEDGED rows it
//! committed on the same feed (table `gold.alerts`). The evaluator of that
//! process notifies the rule's targets of them after any transition it is
//! still committing (so after the alert's ACTIVE when it raised it), with a
//! sequence number of its own; the series' state does not change (an
//! acknowledged alert resolves like an active one). Only this process's
//! acknowledgements are seen: one made where no evaluator runs (a query-only
//! `weir serve`) is in `gold.alerts` only, and one not yet delivered when the
//! process dies is not sent again after the restart.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, Float64Array, Int64Array, RecordBatch, StringArray};
use tokio::sync::{broadcast, watch};
use uuid::Uuid;
use weir_catalog::{AppendOptions, Lakehouse, append_batches, find_commit};
use weir_hot::{FeedBatch, FeedEvent, HotTiers, Origin};
use weir_query::alerts::{
    self, ACKNOWLEDGED, ACTIVE, ALERTS_NAMESPACE, ALERTS_TABLE, AlertRule, RESOLVED, Target,
    Transition,
};

use crate::AlertError;
use crate::notify::{Message, Notifier};
use crate::state::{Decision, RuleState};
use crate::sync::AlertsReader;

/// Snapshot summary key: the evaluator's notifications are done up to here.
pub const DELIVERED_KEY: &str = "weir.alerts.delivered-seq";

#[derive(Debug, Clone)]
pub struct AlertOptions {
    /// How often absence is checked and transitions are committed.
    pub tick: Duration,
    /// How often `gold.alerts` is checked for changed rules.
    pub rules_poll: Duration,
    /// Rules declared in TOML.
    pub declared: Vec<AlertRule>,
    /// The PostgreSQL alert registry (`alert_rules`), read again every
    /// [`crate::registry_pg::RELOAD`].
    pub registry: Option<String>,
    /// Who writes the transitions (`host-pid`).
    pub actor: String,
    /// How late rows read by other processes may reach the table (their
    /// commit interval and a margin): absence declares a series this
    /// process does not read silent only after its interval plus this.
    pub others_lag: Duration,
}

impl Default for AlertOptions {
    fn default() -> Self {
        AlertOptions {
            tick: Duration::from_millis(250),
            rules_poll: Duration::from_secs(2),
            declared: Vec::new(),
            registry: None,
            actor: format!("weir-{}", std::process::id()),
            others_lag: Duration::from_secs(12),
        }
    }
}

#[derive(Debug, Default, Clone)]
pub struct AlertReport {
    pub rules: usize,
    pub transitions: u64,
    pub rows_evaluated: u64,
}

/// Runs the evaluator until `stop` flips to true; commits what it decided
/// before returning. Rows come from the feed of `hot`'s local tier; the
/// absence rules' first look at recent series also reads its remotes.
pub async fn run(
    lakehouse: Lakehouse,
    hot: HotTiers,
    opts: AlertOptions,
    mut stop: watch::Receiver<bool>,
) -> Result<AlertReport, AlertError> {
    // Subscribed before recovery: rows sealed meanwhile wait in the feed.
    let mut feed = hot.local().subscribe();
    alerts::ensure_alerts_table(&lakehouse).await?;
    sync_declared(&lakehouse, &opts).await?;
    let mut last_registry = tokio::time::Instant::now();
    let mut engine = Engine::new(lakehouse, hot, opts.clone());
    engine.reload_rules(true).await?;
    engine.recover().await?;
    engine.seed_absence(Some(Duration::from_secs(86_400))).await;
    tracing::info!(
        rules = engine.rules.len(),
        open = engine.open(),
        "alert rules evaluating"
    );
    let mut tick = tokio::time::interval(opts.tick);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_poll = tokio::time::Instant::now();
    loop {
        tokio::select! {
            msg = feed.recv() => match msg {
                Ok(FeedEvent::Rows(batch)) => {
                    engine.sync_if_due().await;
                    engine.on_batch(&batch);
                }
                Ok(FeedEvent::Acquired(origin)) => engine.on_acquired(&origin),
                Ok(FeedEvent::Released(origin)) => engine.on_released(&origin),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(batches = n, "alert evaluator fell behind the writers; batches skipped");
                    metrics::counter!(crate::metric_names::ALERT_FEED_LAGGED_TOTAL).increment(n);
                }
                Err(broadcast::error::RecvError::Closed) => break,
            },
            _ = tick.tick() => {
                engine.sync_if_due().await;
                engine.on_tick().await;
                if opts.registry.is_some() && last_registry.elapsed() >= crate::registry_pg::RELOAD {
                    last_registry = tokio::time::Instant::now();
                    if let Err(e) = sync_declared(&engine.lakehouse, &opts).await {
                        tracing::warn!(error = %e, "syncing the alert registry failed");
                    }
                }
                if last_poll.elapsed() >= opts.rules_poll {
                    last_poll = tokio::time::Instant::now();
                    match engine.reload_rules(false).await {
                        // Rules and transitions share the table: read what
                        // other evaluators wrote since.
                        Ok(true) => engine.sync_due = true,
                        Ok(false) => {}
                        Err(e) => tracing::warn!(error = %e, "re-reading alert rules failed; keeping the current ones"),
                    }
                }
            }
            _ = stop.changed() => break,
        }
    }
    // Rows sealed before the stop are still in the feed.
    while let Ok(event) = feed.try_recv() {
        match event {
            FeedEvent::Rows(batch) => engine.on_batch(&batch),
            FeedEvent::Acquired(origin) => engine.on_acquired(&origin),
            FeedEvent::Released(origin) => engine.on_released(&origin),
        }
    }
    engine.on_tick().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while engine.notifier.in_flight() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(engine.report())
}

/// Writes the declared rules (TOML, and the PostgreSQL registry's) to
/// `gold.alerts`. When the registry cannot be read, nothing changes (its
/// rules stay; a database outage is not a reason to drop them).
async fn sync_declared(lakehouse: &Lakehouse, opts: &AlertOptions) -> Result<(), AlertError> {
    let mut rules = opts.declared.clone();
    if let Some(url) = &opts.registry {
        match crate::registry_pg::load(url).await {
            Ok(more) => {
                for rule in more {
                    if rules.iter().any(|r| r.name == rule.name) {
                        tracing::warn!(rule = %rule.name, "alert_rules row named like a TOML rule; the TOML rule wins");
                    } else {
                        rules.push(rule);
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "alert registry unreadable; keeping the declared rules as they are");
                return Ok(());
            }
        }
    }
    crate::declared::sync(lakehouse, &rules).await
}

struct Engine {
    lakehouse: Lakehouse,
    hot: HotTiers,
    opts: AlertOptions,
    rules: BTreeMap<String, RuleState>,
    targets: HashMap<String, Vec<Target>>,
    /// Rules per table (`ns.t`).
    by_table: HashMap<String, Vec<String>>,
    metadata_location: Option<String>,
    seq: i64,
    /// Decided, not yet committed.
    pending: Vec<Transition>,
    /// Being committed: its commit id is kept across attempts.
    committing: Option<(Uuid, Vec<Transition>)>,
    /// Acknowledgements (committed by `ACKNOWLEDGE ALERT`) to notify once
    /// nothing is being committed.
    acks: Vec<Transition>,
    notifier: Notifier,
    report: AlertReport,
    /// Rules whose evaluation failed, reported once each.
    failing: std::collections::HashSet<String>,
    /// `gold.alerts` as read so far (other evaluators' transitions).
    reader: AlertsReader,
    /// Read `gold.alerts` again before the next rows (a partition was
    /// acquired, or the table changed).
    sync_due: bool,
    /// Absence rules ask the table for recent series again (a partition
    /// was acquired).
    seed_due: bool,
    /// Source partitions, numbered in the order first seen.
    origins: HashMap<Origin, u32>,
    /// Queries for absence rules (recent series, confirming a silence).
    query: Option<weir_query::QueryEngine>,
    /// When each absence rule last asked the table to confirm a silence.
    confirmed_at: HashMap<String, tokio::time::Instant>,
}

fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// The id of one alert episode: the same rule, series and start always give
/// the same id (UUID v5), so a transition decided twice is recognisable.
fn alert_id(rule: &str, series: &str, at_micros: i64) -> String {
    const NAMESPACE: Uuid = Uuid::from_u128(0x5745_4952_414c_4552_5453_0000_0000_0001);
    Uuid::new_v5(
        &NAMESPACE,
        format!("{rule}\u{1f}{series}\u{1f}{at_micros}").as_bytes(),
    )
    .to_string()
}

impl Engine {
    fn new(lakehouse: Lakehouse, hot: HotTiers, opts: AlertOptions) -> Self {
        Engine {
            lakehouse,
            hot,
            opts,
            rules: BTreeMap::new(),
            targets: HashMap::new(),
            by_table: HashMap::new(),
            metadata_location: None,
            seq: 0,
            pending: Vec::new(),
            committing: None,
            acks: Vec::new(),
            notifier: Notifier::default(),
            report: AlertReport::default(),
            failing: Default::default(),
            reader: AlertsReader::default(),
            sync_due: false,
            seed_due: false,
            origins: HashMap::new(),
            query: None,
            confirmed_at: HashMap::new(),
        }
    }

    fn open(&self) -> usize {
        self.rules.values().map(RuleState::open_alerts).sum()
    }

    fn report(&self) -> AlertReport {
        AlertReport {
            rules: self.rules.len(),
            ..self.report.clone()
        }
    }

    /// Re-reads the rules when `gold.alerts` changed (always when `force`);
    /// true when it had changed.
    async fn reload_rules(&mut self, force: bool) -> Result<bool, AlertError> {
        let ident = alerts::alerts_ident();
        let location = self.lakehouse.metadata_location(&ident).await?;
        if !force && location == self.metadata_location {
            return Ok(false);
        }
        let table = self
            .lakehouse
            .load_table(ALERTS_NAMESPACE, ALERTS_TABLE)
            .await?;
        self.metadata_location = location;
        let stored = alerts::stored_rules(&table);
        let mut old = std::mem::take(&mut self.rules);
        self.targets.clear();
        self.by_table.clear();
        for (rule, _) in stored {
            let name = rule.name.clone();
            let mut state = RuleState::new(rule.clone());
            if let Some(prev) = old.remove(&name) {
                if prev.rule != rule {
                    tracing::info!(rule = %name, "alert rule changed");
                    self.failing.remove(&name);
                }
                state.adopt(prev);
            } else if !force {
                tracing::info!(rule = %name, table = %rule.table, "alert rule added");
            }
            let targets = rule
                .notify
                .iter()
                .filter_map(|t| Target::parse(t).ok())
                .collect();
            self.targets.insert(name.clone(), targets);
            self.by_table
                .entry(rule.table.clone())
                .or_default()
                .push(name.clone());
            self.rules.insert(name, state);
        }
        // A dropped rule's open alerts end with it.
        let now = now_micros();
        for (name, state) in old {
            tracing::info!(rule = %name, "alert rule dropped");
            metrics::gauge!(crate::metric_names::ALERT_FIRING, "rule" => name.clone()).set(0.0);
            for (series, open) in state.open_series() {
                self.decided(
                    &state.rule,
                    Decision {
                        series,
                        state: RESOLVED,
                        at_micros: now,
                        value: None,
                        alert_id: open.alert_id,
                    },
                    Some("rule dropped"),
                );
            }
        }
        metrics::gauge!(crate::metric_names::ALERT_RULES).set(self.rules.len() as f64);
        Ok(true)
    }

    /// Open alerts and the sequence from `gold.alerts`; notifications past
    /// the last recorded delivery are sent again.
    async fn recover(&mut self) -> Result<(), AlertError> {
        let table = self
            .lakehouse
            .load_table(ALERTS_NAMESPACE, ALERTS_TABLE)
            .await?;
        let delivered = delivered_seq(&table);
        let marks = delivered_marks(&table);
        let rows = self.reader.read_new(&table).await?;
        for t in &rows {
            self.seq = self.seq.max(t.seq.unwrap_or(0));
        }
        let now = now_micros();
        let newest = self.reader.newest(rows.clone());
        let merged = crate::sync::merge(
            &mut self.rules,
            &self.reader,
            &newest,
            &self.opts.actor,
            now,
        );
        // Rules dropped while no evaluator ran: their open alerts end.
        for t in merged.orphans {
            self.seq += 1;
            self.pending.push(Transition {
                at_micros: now,
                state: RESOLVED,
                value: None,
                message: Some("rule dropped".into()),
                actor: self.opts.actor.clone(),
                seq: Some(self.seq),
                ..t
            });
        }
        for (rule, d, note) in merged.resolve {
            if let Some(rule) = self.rules.get(&rule).map(|r| r.rule.clone()) {
                self.decided(&rule, d, Some(&note));
            }
        }
        // Acknowledgements take sequence numbers not kept in the table.
        self.seq = self.seq.max(delivered.unwrap_or(0));
        self.notifier.start_after(delivered.unwrap_or(self.seq));
        if let Some(delivered) = delivered {
            // Each evaluator's rows against its own mark (several share the
            // table in a Kafka group); a live one's rows in flight may be
            // sent twice, never lost (receivers deduplicate).
            let mut resend: Vec<&Transition> = rows
                .iter()
                .filter(|t| {
                    let mark = marks.get(&t.actor).copied().unwrap_or(delivered);
                    t.seq.is_some_and(|s| s > mark)
                })
                .collect();
            resend.sort_by_key(|t| t.seq);
            for t in resend {
                tracing::info!(alert = %t.alert_id, state = t.state, "notifying again after restart");
                self.notify(t);
            }
        }
        self.firing_gauges();
        Ok(())
    }

    fn firing_gauges(&self) {
        for (name, rule) in &self.rules {
            metrics::gauge!(crate::metric_names::ALERT_FIRING, "rule" => name.clone())
                .set(rule.open_alerts() as f64);
        }
    }

    /// Reads the rows other evaluators added to `gold.alerts` and merges
    /// them (after a partition was acquired or the table changed), and
    /// lets absence rules learn the recent series again after an
    /// acquisition. Failures are logged; the next change tries again.
    async fn sync_if_due(&mut self) {
        if std::mem::take(&mut self.sync_due)
            && let Err(e) = self.sync().await
        {
            tracing::warn!(error = %e, "reading other evaluators' alert transitions failed");
        }
        if std::mem::take(&mut self.seed_due) {
            self.seed_absence(None).await;
        }
    }

    async fn sync(&mut self) -> Result<(), AlertError> {
        let table = self
            .lakehouse
            .load_table(ALERTS_NAMESPACE, ALERTS_TABLE)
            .await?;
        let rows = self.reader.read_new(&table).await?;
        if rows.is_empty() {
            return Ok(());
        }
        let newest = self.reader.newest(rows);
        let merged = crate::sync::merge(
            &mut self.rules,
            &self.reader,
            &newest,
            &self.opts.actor,
            now_micros(),
        );
        if merged.adopted + merged.closed + merged.resolve.len() > 0 {
            tracing::info!(
                adopted = merged.adopted,
                closed = merged.closed,
                duplicates = merged.resolve.len(),
                "alert transitions of other evaluators merged"
            );
            metrics::counter!(crate::metric_names::ALERT_HANDOVERS_TOTAL, "kind" => "adopted")
                .increment(merged.adopted as u64);
        }
        for (rule, d, note) in merged.resolve {
            if let Some(rule) = self.rules.get(&rule).map(|r| r.rule.clone()) {
                self.decided(&rule, d, Some(&note));
            }
        }
        self.firing_gauges();
        Ok(())
    }

    /// The writer now reads `origin`: before its rows, read what other
    /// evaluators decided (the previous owner's open alerts) and which
    /// series the table has (absence).
    fn on_acquired(&mut self, origin: &Origin) {
        tracing::debug!(stream = %origin.stream, partition = origin.partition, "alert evaluator: partition acquired");
        self.sync_due = true;
        self.seed_due = true;
    }

    /// The writer no longer reads `origin`: forget the series whose rows
    /// came from it (their new owner decides for them; transitions decided
    /// here are still committed).
    fn on_released(&mut self, origin: &Origin) {
        let Some(id) = self.origins.get(origin).copied() else {
            return;
        };
        let now = now_micros();
        let released: usize = self.rules.values_mut().map(|r| r.release(id, now)).sum();
        if released > 0 {
            tracing::info!(stream = %origin.stream, partition = origin.partition, series = released,
                "partition released: its series handed over to their new owner");
            metrics::counter!(crate::metric_names::ALERT_HANDOVERS_TOTAL, "kind" => "released")
                .increment(released as u64);
        }
        self.firing_gauges();
    }

    fn origin_id(&mut self, origin: &Option<Origin>) -> Option<u32> {
        let origin = origin.as_ref()?;
        let next = self.origins.len() as u32;
        Some(*self.origins.entry(origin.clone()).or_insert(next))
    }

    /// The query engine absence rules ask (made once).
    async fn query_engine(&mut self) -> Option<weir_query::QueryEngine> {
        if self.query.is_none() {
            match weir_query::QueryEngine::new(
                self.lakehouse.clone(),
                self.hot.clone(),
                weir_query::EngineOptions::default(),
            )
            .await
            {
                Ok(e) => self.query = Some(e),
                Err(e) => {
                    tracing::warn!(error = %e, "absence rules: cannot query the tables for known series")
                }
            }
        }
        self.query.clone()
    }

    /// Absence rules learn the series that sent rows recently (committed
    /// and hot): at start those of the last day (`window`), so a device
    /// silent since before the start still raises its alert; after a
    /// partition was acquired (`None`) those of twice the rule's interval
    /// (a device silent for longer had its alert raised by the previous
    /// owner). A failure is logged: the rules then watch the series they
    /// see from now on.
    async fn seed_absence(&mut self, window: Option<Duration>) {
        let absent: Vec<String> = self
            .rules
            .iter()
            .filter(|(_, r)| matches!(r.rule.when, weir_query::alerts::Condition::Absent { .. }))
            .map(|(n, _)| n.clone())
            .collect();
        if absent.is_empty() {
            return;
        }
        let Some(engine) = self.query_engine().await else {
            return;
        };
        for name in absent {
            let Some(rule) = self.rules.get(&name).map(|r| r.rule.clone()) else {
                continue;
            };
            let within = match window {
                Some(w) => w,
                None => match rule.when {
                    weir_query::alerts::Condition::Absent { after } => {
                        (after * 2 + self.opts.others_lag).max(Duration::from_secs(60))
                    }
                    _ => continue,
                },
            };
            match seed_query(&engine, &rule, within).await {
                Ok(series) => {
                    let state = self.rules.get_mut(&name).expect("rule");
                    for (key, seen) in &series {
                        state.know(key, *seen);
                    }
                    tracing::info!(rule = %name, series = series.len(), "absence rule knows the recent series");
                }
                Err(e) => {
                    tracing::warn!(rule = %name, error = %e, "absence rule: cannot read the recent series")
                }
            }
        }
    }

    fn on_batch(&mut self, batch: &FeedBatch) {
        let origin = self.origin_id(&batch.origin);
        if batch.table.split_once('.') == Some((ALERTS_NAMESPACE, ALERTS_TABLE)) {
            self.on_alert_rows(&batch.batch);
        }
        let Some(names) = self.by_table.get(batch.table.as_ref()) else {
            return;
        };
        let names = names.clone();
        let now = now_micros();
        let mut id = alert_id;
        let mut rules: Vec<&mut RuleState> = self
            .rules
            .iter_mut()
            .filter(|(name, _)| names.contains(name))
            .map(|(_, r)| r)
            .collect();
        let results = crate::state::evaluate_batch(&mut rules, &batch.batch, origin, now, &mut id);
        let names: Vec<(String, AlertRule)> = rules
            .iter()
            .map(|r| (r.rule.name.clone(), r.rule.clone()))
            .collect();
        drop(rules);
        let rows = batch.batch.num_rows() as u64;
        self.report.rows_evaluated += rows;
        metrics::counter!(crate::metric_names::ALERT_ROWS_EVALUATED_TOTAL).increment(rows);
        for (i, result) in results {
            let (name, rule) = &names[i];
            match result {
                Ok(decisions) => {
                    for d in decisions {
                        self.decided(rule, d, None);
                    }
                }
                Err(e) => {
                    metrics::counter!(crate::metric_names::ALERT_EVALUATION_ERRORS_TOTAL, "rule" => name.clone())
                        .increment(1);
                    if self.failing.insert(name.clone()) {
                        tracing::warn!(rule = %name, error = %e, "alert rule cannot be evaluated on these rows");
                    }
                }
            }
        }
    }

    /// Committed rows of `gold.alerts` on the feed: the acknowledgements of
    /// known rules are queued for notification; the evaluators' own rows
    /// (ACTIVE, RESOLVED) are not transitions to act on.
    fn on_alert_rows(&mut self, batch: &RecordBatch) {
        let rows = match batch_transitions(batch) {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = %e, "gold.alerts rows on the feed unreadable; not notified");
                return;
            }
        };
        let acks = acknowledgements(rows, &self.opts.actor)
            .into_iter()
            .filter(|t| self.rules.contains_key(&t.rule));
        self.acks.extend(acks);
    }

    /// Notifies the queued acknowledgements, each with the next sequence
    /// number (none is in `gold.alerts`: an acknowledgement has no seq).
    fn notify_acks(&mut self) {
        for mut t in std::mem::take(&mut self.acks) {
            self.seq += 1;
            t.seq = Some(self.seq);
            tracing::info!(rule = %t.rule, series = %t.series, state = t.state, alert = %t.alert_id,
                actor = %t.actor, "alert acknowledged");
            self.notify(&t);
        }
    }

    fn decided(&mut self, rule: &AlertRule, d: Decision, note: Option<&str>) {
        self.seq += 1;
        let message = note.map(str::to_string).or_else(|| {
            Some(match &rule.message {
                Some(m) => m.clone(),
                None => format!("{}: {}", rule.name, rule.when),
            })
        });
        self.pending.push(Transition {
            at_micros: d.at_micros,
            alert_id: d.alert_id,
            state: d.state,
            rule: rule.name.clone(),
            series: d.series,
            severity: rule.severity.clone(),
            value: d.value,
            message,
            actor: self.opts.actor.clone(),
            seq: Some(self.seq),
        });
    }

    async fn on_tick(&mut self) {
        let now = now_micros();
        let mut id = alert_id;
        let mut silent = Vec::new();
        let mut unconfirmed = Vec::new();
        for (name, rule) in self.rules.iter_mut() {
            let (decided, unsure) = rule.check_silence(now, &mut id);
            for d in decided {
                silent.push((rule.rule.clone(), d));
            }
            if !unsure.is_empty() {
                unconfirmed.push((name.clone(), unsure));
            }
        }
        for (rule, d) in silent {
            self.decided(&rule, d, None);
        }
        for (name, series) in unconfirmed {
            self.confirm_silence(&name, &series).await;
        }
        if self.committing.is_none() && !self.pending.is_empty() {
            self.committing = Some((Uuid::now_v7(), std::mem::take(&mut self.pending)));
        }
        let Some((commit_id, rows)) = &self.committing else {
            self.notify_acks();
            return;
        };
        match self.commit(*commit_id, rows).await {
            Ok(()) => {
                let (_, rows) = self.committing.take().expect("committing");
                self.report.transitions += rows.len() as u64;
                for t in &rows {
                    self.reader.wrote(t);
                    metrics::counter!(crate::metric_names::ALERT_TRANSITIONS_TOTAL, "state" => t.state)
                        .increment(1);
                    tracing::info!(rule = %t.rule, series = %t.series, state = t.state, alert = %t.alert_id,
                        value = t.value, "alert transition");
                    self.notify(t);
                }
                self.firing_gauges();
                self.notify_acks();
            }
            Err(e) => {
                tracing::warn!(error = %e, transitions = rows.len(), "committing alert transitions failed; retrying");
                metrics::counter!(crate::metric_names::ALERT_COMMIT_FAILURES_TOTAL).increment(1);
            }
        }
    }

    /// Silent series this process does not read (known from the table or
    /// other evaluators): the table says whether they sent rows to another
    /// process within the rule's interval. Asked at most every quarter
    /// interval per rule (at least 1 s); a failure leaves them unconfirmed.
    async fn confirm_silence(&mut self, name: &str, series: &[String]) {
        let Some(rule) = self.rules.get(name).map(|r| r.rule.clone()) else {
            return;
        };
        let weir_query::alerts::Condition::Absent { after } = rule.when else {
            return;
        };
        let every = ((after + self.opts.others_lag) / 4).max(Duration::from_secs(1));
        if self
            .confirmed_at
            .get(name)
            .is_some_and(|t| t.elapsed() < every)
        {
            return;
        }
        self.confirmed_at
            .insert(name.to_string(), tokio::time::Instant::now());
        let Some(engine) = self.query_engine().await else {
            return;
        };
        let lag = self.opts.others_lag;
        let latest: HashMap<String, i64> = match seed_query(&engine, &rule, after + lag).await {
            Ok(rows) => rows.into_iter().collect(),
            Err(e) => {
                tracing::warn!(rule = %name, error = %e, "absence rule: cannot confirm a silence");
                return;
            }
        };
        let mut id = alert_id;
        let decided = match self.rules.get_mut(name) {
            Some(state) => state.confirm_silence(series, &latest, lag, now_micros(), &mut id),
            None => return,
        };
        for d in decided {
            self.decided(&rule, d, None);
        }
    }

    async fn commit(&self, commit_id: Uuid, rows: &[Transition]) -> Result<(), AlertError> {
        let table = self
            .lakehouse
            .load_table(ALERTS_NAMESPACE, ALERTS_TABLE)
            .await?;
        if find_commit(&table, &commit_id).is_some() {
            return Ok(());
        }
        let batch = alerts::transitions_batch(&table, rows)?;
        let mut opts = AppendOptions {
            commit_id: Some(commit_id),
            ..Default::default()
        };
        let props = &mut opts.snapshot_properties;
        props.insert("weir.source".into(), "alerts".into());
        props.insert("weir.alerts.actor".into(), self.opts.actor.clone());
        props.insert(
            DELIVERED_KEY.into(),
            self.notifier.delivered_through().to_string(),
        );
        append_batches(&self.lakehouse, &table, &[batch], opts).await?;
        Ok(())
    }

    fn notify(&self, t: &Transition) {
        let targets = self.targets.get(&t.rule).cloned().unwrap_or_default();
        let Some(seq) = t.seq else { return };
        let body = body(t, seq);
        self.notifier.send(
            &targets,
            Message {
                seq,
                alert_id: t.alert_id.clone(),
                transition_id: format!("{}:{}", t.alert_id, t.state),
                body: Arc::new(body.to_string().into_bytes()),
            },
        );
    }
}

/// The notification of one transition: `actor` is the evaluator (ACTIVE,
/// RESOLVED) or the user who acknowledged.
fn body(t: &Transition, seq: i64) -> serde_json::Value {
    serde_json::json!({
        "transition_id": format!("{}:{}", t.alert_id, t.state),
        "alert_id": t.alert_id,
        "state": t.state,
        "rule": t.rule,
        "series": t.series,
        "severity": t.severity,
        "value": t.value,
        "message": t.message,
        "actor": t.actor,
        "at": chrono::DateTime::from_timestamp_micros(t.at_micros).map(|d| d.to_rfc3339()),
        "seq": seq,
    })
}

/// The acknowledgements among rows of `gold.alerts`: ACKNOWLEDGED, written
/// by someone else than the evaluator `own_actor`.
fn acknowledgements(rows: Vec<Transition>, own_actor: &str) -> Vec<Transition> {
    rows.into_iter()
        .filter(|t| t.state == ACKNOWLEDGED && t.actor != own_actor)
        .collect()
}

/// (series text, last time in µs) of the rule's series with rows in the
/// last day, in the evaluator's series text (`col=value,…`).
/// The series of `rule` with rows in the last `within` (committed and
/// hot, every process), with their newest row time.
async fn seed_query(
    engine: &weir_query::QueryEngine,
    rule: &AlertRule,
    within: Duration,
) -> Result<Vec<(String, i64)>, AlertError> {
    // The engine is kept between calls: read the tables' current state.
    engine.refresh().await?;
    let ctx = engine.new_context();
    let provider = ctx
        .table_provider(rule.table.as_str())
        .await
        .map_err(|e| AlertError::Read(e.to_string()))?;
    let Some(time) = weir_query::alerts::compile::time_column(&provider.schema()) else {
        return Ok(Vec::new());
    };
    let quote = |c: &str| format!("\"{}\"", c.replace('"', "\"\""));
    let series = if rule.by.is_empty() {
        "''".to_string()
    } else {
        let parts: Vec<String> = rule
            .by
            .iter()
            .map(|c| {
                format!(
                    "'{}=' || coalesce(CAST({} AS VARCHAR), '')",
                    c.replace('\'', "''"),
                    quote(c)
                )
            })
            .collect();
        parts.join(" || ',' || ")
    };
    let mut filter = format!(
        "{} > now() - INTERVAL '{} milliseconds'",
        quote(&time),
        within.as_millis()
    );
    if let Some(f) = &rule.filter {
        filter += &format!(" AND ({f})");
    }
    let sql = format!(
        "SELECT {series} AS series, max({t}) AS seen FROM {table} WHERE {filter} GROUP BY 1",
        t = quote(&time),
        table = rule.table
    );
    let batches = engine
        .sql(&ctx, &sql)
        .await?
        .collect()
        .await
        .map_err(|e| AlertError::Read(e.to_string()))?;
    let mut out = Vec::new();
    for b in batches {
        let keys = arrow::compute::cast(b.column(0), &arrow::datatypes::DataType::Utf8)
            .map_err(|e| AlertError::Read(e.to_string()))?;
        let seen = arrow::compute::cast(
            b.column(1),
            &arrow::datatypes::DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, None),
        )
        .and_then(|a| arrow::compute::cast(&a, &arrow::datatypes::DataType::Int64))
        .map_err(|e| AlertError::Read(e.to_string()))?;
        let (Some(keys), Some(seen)) = (
            keys.as_any().downcast_ref::<StringArray>(),
            seen.as_any().downcast_ref::<Int64Array>(),
        ) else {
            continue;
        };
        for i in 0..b.num_rows() {
            if !keys.is_null(i) && !seen.is_null(i) {
                out.push((keys.value(i).to_string(), seen.value(i)));
            }
        }
    }
    Ok(out)
}

/// The latest delivery mark an evaluator committed (walking back from the
/// current snapshot).
/// Per evaluator (`weir.alerts.actor`), the highest delivery mark its
/// commits recorded.
fn delivered_marks(table: &iceberg::table::Table) -> HashMap<String, i64> {
    let mut marks = HashMap::new();
    for s in table.metadata().snapshots() {
        let props = &s.summary().additional_properties;
        if let (Some(actor), Some(mark)) = (
            props.get("weir.alerts.actor"),
            props.get(DELIVERED_KEY).and_then(|v| v.parse::<i64>().ok()),
        ) {
            let m = marks.entry(actor.clone()).or_insert(mark);
            *m = (*m).max(mark);
        }
    }
    marks
}

fn delivered_seq(table: &iceberg::table::Table) -> Option<i64> {
    let metadata = table.metadata();
    let mut snapshot = metadata.current_snapshot().cloned();
    while let Some(s) = snapshot {
        if let Some(v) = s.summary().additional_properties.get(DELIVERED_KEY) {
            return v.parse().ok();
        }
        snapshot = s
            .parent_snapshot_id()
            .and_then(|p| metadata.snapshot_by_id(p).cloned());
    }
    None
}

/// Every row of `gold.alerts` (a table of transitions stays small: rows per
/// alert episode, not per data row).
pub(crate) fn batch_transitions(b: &RecordBatch) -> Result<Vec<Transition>, AlertError> {
    let mut out = Vec::new();
    let col = |name: &str| b.column_by_name(name).cloned();
    let text = |name: &str| -> Option<StringArray> {
        let c = col(name)?;
        let c = arrow::compute::cast(&c, &arrow::datatypes::DataType::Utf8).ok()?;
        c.as_any().downcast_ref::<StringArray>().cloned()
    };
    let (Some(at), Some(id), Some(state), Some(rule), Some(series)) = (
        col("at").and_then(|c| {
            arrow::compute::cast(&c, &arrow::datatypes::DataType::Int64)
                .ok()
                .and_then(|c| c.as_any().downcast_ref::<Int64Array>().cloned())
        }),
        text("alert_id"),
        text("state"),
        text("rule"),
        text("series"),
    ) else {
        return Err(AlertError::Read("gold.alerts lacks its columns".into()));
    };
    let severity = text("severity");
    let message = text("message");
    let actor = text("actor");
    let value = col("value").and_then(|c| c.as_any().downcast_ref::<Float64Array>().cloned());
    let seq = col("seq").and_then(|c| c.as_any().downcast_ref::<Int64Array>().cloned());
    let s = |a: &Option<StringArray>, i: usize| {
        a.as_ref()
            .and_then(|a| (!a.is_null(i)).then(|| a.value(i).to_string()))
    };
    for i in 0..b.num_rows() {
        let state = match state.value(i) {
            ACTIVE => ACTIVE,
            ACKNOWLEDGED => ACKNOWLEDGED,
            RESOLVED => RESOLVED,
            _ => continue,
        };
        out.push(Transition {
            at_micros: at.value(i),
            alert_id: id.value(i).to_string(),
            state,
            rule: rule.value(i).to_string(),
            series: series.value(i).to_string(),
            severity: s(&severity, i).unwrap_or_default(),
            value: value
                .as_ref()
                .and_then(|v| (!v.is_null(i)).then(|| v.value(i))),
            message: s(&message, i),
            actor: s(&actor, i).unwrap_or_default(),
            seq: seq
                .as_ref()
                .and_then(|v| (!v.is_null(i)).then(|| v.value(i))),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
    use tokio::sync::{mpsc, watch};
    use weir_catalog::{Lakehouse, LakehouseOptions};
    use weir_hot::{HotTier, HotTiers};

    use super::*;

    fn transition(state: &'static str, actor: &str, seq: Option<i64>) -> Transition {
        Transition {
            at_micros: 1_700_000_000_000_000,
            alert_id: "a1".into(),
            state,
            rule: "hot".into(),
            series: "device_id=d1".into(),
            severity: "critical".into(),
            value: Some(85.0),
            message: Some("too hot".into()),
            actor: actor.into(),
            seq,
        }
    }

    #[test]
    fn only_acknowledgements_by_others_are_acted_on() {
        let rows = vec![
            transition(ACTIVE, "weir-1", Some(1)),
            transition(ACKNOWLEDGED, "alice", None),
            transition(RESOLVED, "weir-1", Some(2)),
            // Never written by an evaluator, but its own rows are never news.
            transition(ACKNOWLEDGED, "weir-1", None),
        ];
        let acks = acknowledgements(rows, "weir-1");
        assert_eq!(acks, vec![transition(ACKNOWLEDGED, "alice", None)]);
    }

    #[test]
    fn acknowledgement_body_has_the_shape_of_the_other_transitions() {
        let active = body(&transition(ACTIVE, "weir-1", Some(1)), 1);
        let ack = body(&transition(ACKNOWLEDGED, "alice", None), 2);
        let keys = |v: &serde_json::Value| {
            let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
            k.sort();
            k
        };
        assert_eq!(keys(&active), keys(&ack));
        assert_eq!(ack["state"], "ACKNOWLEDGED");
        assert_eq!(ack["transition_id"], "a1:ACKNOWLEDGED");
        assert_eq!(ack["actor"], "alice");
        assert_eq!(ack["seq"], 2);
        assert_eq!(ack["at"], "2023-11-14T22:13:20+00:00");
    }

    /// A webhook answering 200 to every POST (keep-alive), passing on bodies.
    async fn webhook() -> (String, mpsc::UnboundedReceiver<serde_json::Value>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut r = tokio::io::BufReader::new(sock);
                    loop {
                        let mut len = 0usize;
                        loop {
                            let mut line = String::new();
                            if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                                return;
                            }
                            let line = line.trim_end();
                            if line.is_empty() {
                                break;
                            }
                            if let Some((k, v)) = line.split_once(':')
                                && k.eq_ignore_ascii_case("content-length")
                            {
                                len = v.trim().parse().unwrap();
                            }
                        }
                        let mut body = vec![0; len];
                        r.read_exact(&mut body).await.unwrap();
                        let _ = tx.send(serde_json::from_slice(&body).unwrap());
                        r.get_mut()
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                            .await
                            .unwrap();
                    }
                });
            }
        });
        (url, rx)
    }

    async fn sql(
        engine: &weir_query::QueryEngine,
        ctx: &datafusion::prelude::SessionContext,
        q: &str,
    ) {
        engine.sql(ctx, q).await.unwrap().collect().await.unwrap();
    }

    /// `ACKNOWLEDGE ALERT` in the evaluator's process: the rule's target gets
    /// ACTIVE, then ACKNOWLEDGED (the user as actor), then RESOLVED — the
    /// acknowledgement did not change how the series resolves.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn acknowledgement_in_this_process_is_notified_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let lakehouse = Lakehouse::open(&LakehouseOptions::embedded(dir.path().to_path_buf()))
            .await
            .unwrap();
        let hot = HotTiers::new(Arc::new(HotTier::default()));
        let query =
            weir_query::QueryEngine::new(lakehouse.clone(), hot.clone(), Default::default())
                .await
                .unwrap();
        let ctx = query.new_context();
        weir_query::set_actor(&ctx, "alice");
        let (url, mut hook) = webhook().await;
        sql(
            &query,
            &ctx,
            "CREATE TABLE public.tank (ts TIMESTAMP, tank VARCHAR, level DOUBLE)",
        )
        .await;
        sql(
            &query,
            &ctx,
            &format!("CREATE ALERT low ON tank BY tank WHEN level < 10 NOTIFY '{url}'"),
        )
        .await;
        let (stop, stopped) = watch::channel(false);
        let opts = AlertOptions {
            tick: Duration::from_millis(20),
            actor: "evaluator".into(),
            ..Default::default()
        };
        let task = tokio::spawn(run(lakehouse.clone(), hot.clone(), opts, stopped));
        let next = async |hook: &mut mpsc::UnboundedReceiver<serde_json::Value>| {
            tokio::time::timeout(Duration::from_secs(20), hook.recv())
                .await
                .expect("a notification")
                .expect("webhook running")
        };

        // The evaluator subscribes as it starts: insert until it has seen a row.
        let active = loop {
            sql(
                &query,
                &ctx,
                "INSERT INTO public.tank VALUES (now(), 't1', 5)",
            )
            .await;
            if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(500), hook.recv()).await
            {
                break m;
            }
        };
        assert_eq!(active["state"], "ACTIVE");
        assert_eq!(active["actor"], "evaluator");
        let id = active["alert_id"].as_str().unwrap().to_string();

        sql(&query, &ctx, &format!("ACKNOWLEDGE ALERT '{id}'")).await;
        let ack = next(&mut hook).await;
        assert_eq!(ack["state"], "ACKNOWLEDGED");
        assert_eq!(ack["alert_id"], id.as_str());
        assert_eq!(ack["transition_id"], format!("{id}:ACKNOWLEDGED").as_str());
        assert_eq!(ack["actor"], "alice");
        assert_eq!(ack["series"], "tank=t1");
        assert!(ack["seq"].as_i64().unwrap() > active["seq"].as_i64().unwrap());
        assert!(ack["at"].is_string());

        sql(
            &query,
            &ctx,
            "INSERT INTO public.tank VALUES (now(), 't1', 50)",
        )
        .await;
        let resolved = next(&mut hook).await;
        assert_eq!(resolved["state"], "RESOLVED");
        assert_eq!(resolved["alert_id"], id.as_str());
        assert!(resolved["seq"].as_i64().unwrap() > ack["seq"].as_i64().unwrap());

        stop.send(true).unwrap();
        task.await.unwrap().unwrap();
        // Nothing else was sent (the evaluator's own rows are not news).
        assert!(hook.try_recv().is_err());
    }
}
