//! What other evaluators decided: the rows of `gold.alerts` this process did
//! not write, merged into its rule states.
//!
//! Several evaluators share the work when several `weir ingest` processes
//! read one Kafka consumer group: each decides for the series whose rows it
//! reads. A rebalance moves a partition — and its series — to another
//! process, which must carry on with the alerts the first one opened
//! (resolve them when the series recovers, not raise them again), while the
//! first one forgets those series (no absence alert for a device that now
//! talks to someone else). So every evaluator keeps the open alerts of all
//! evaluators ([`merge`]), read from `gold.alerts` at start, whenever its
//! writer acquires a partition, and whenever the table changed
//! ([`AlertsReader::read_new`] reads only files it has not read).

use std::collections::{BTreeMap, HashMap, HashSet};

use futures::{StreamExt, TryStreamExt};
use iceberg::table::Table;
use weir_query::alerts::{ACKNOWLEDGED, ACTIVE, RESOLVED, Transition};

use crate::AlertError;
use crate::state::{Decision, Open, RuleState};

/// `gold.alerts` as far as this evaluator has read it.
#[derive(Debug, Default)]
pub struct AlertsReader {
    /// Data files read (those still in the table).
    files: HashSet<String>,
    /// Per alert: the newest row read (time, rank of its state).
    latest: HashMap<String, (i64, u8)>,
    /// Per alert: when it became ACTIVE.
    started: HashMap<String, i64>,
}

fn rank(state: &str) -> u8 {
    match state {
        RESOLVED => 2,
        ACKNOWLEDGED => 1,
        _ => 0,
    }
}

impl AlertsReader {
    /// The rows of the data files not read before (every row the first
    /// time). A compaction rewrites files: their rows come again, and
    /// [`AlertsReader::newest`] drops them.
    pub async fn read_new(&mut self, table: &Table) -> Result<Vec<Transition>, AlertError> {
        if table.metadata().current_snapshot().is_none() {
            return Ok(Vec::new());
        }
        let read = |e: iceberg::Error| AlertError::Read(e.to_string());
        let tasks: Vec<_> = table
            .scan()
            .build()
            .map_err(read)?
            .plan_files()
            .await
            .map_err(read)?
            .try_collect()
            .await
            .map_err(read)?;
        let current: HashSet<String> = tasks.iter().map(|t| t.data_file_path.clone()).collect();
        let new: Vec<_> = tasks
            .into_iter()
            .filter(|t| !self.files.contains(&t.data_file_path))
            .collect();
        self.files = current;
        if new.is_empty() {
            return Ok(Vec::new());
        }
        let batches: Vec<arrow::array::RecordBatch> = table
            .reader_builder()
            .build()
            .read(futures::stream::iter(new.into_iter().map(Ok)).boxed())
            .map_err(read)?
            .stream()
            .try_collect()
            .await
            .map_err(read)?;
        let mut out = Vec::new();
        for b in &batches {
            out.extend(crate::engine::batch_transitions(b)?);
        }
        Ok(out)
    }

    /// The rows newer than anything read before for their alert, oldest
    /// first (a row read twice, or an older state read late, is dropped).
    pub fn newest(&mut self, mut rows: Vec<Transition>) -> Vec<Transition> {
        rows.sort_by_key(|t| (t.at_micros, rank(t.state)));
        rows.retain(|t| {
            let key = (t.at_micros, rank(t.state));
            if self.latest.get(&t.alert_id).is_some_and(|k| *k >= key) {
                return false;
            }
            self.latest.insert(t.alert_id.clone(), key);
            if t.state == ACTIVE {
                self.started.insert(t.alert_id.clone(), t.at_micros);
            }
            true
        });
        rows
    }

    /// Notes a transition this evaluator committed itself.
    pub fn wrote(&mut self, t: &Transition) {
        let key = (t.at_micros, rank(t.state));
        let known = self.latest.entry(t.alert_id.clone()).or_insert(key);
        *known = (*known).max(key);
        if t.state == ACTIVE {
            self.started
                .entry(t.alert_id.clone())
                .or_insert(t.at_micros);
        }
    }

    fn started(&self, t: &Transition) -> i64 {
        self.started
            .get(&t.alert_id)
            .copied()
            .unwrap_or(t.at_micros)
    }
}

/// What merging other evaluators' rows changed.
#[derive(Debug, Default)]
pub struct Merged {
    /// Open alerts of others now known here.
    pub adopted: usize,
    /// Alerts open here that another evaluator resolved.
    pub closed: usize,
    /// Resolutions this evaluator must write: the later of two alerts
    /// opened for one series it reads (rule name, decision, note).
    pub resolve: Vec<(String, Decision, String)>,
    /// Open alerts whose rule is unknown here (the newest row of each).
    pub orphans: Vec<Transition>,
}

/// Applies `rows` (from [`AlertsReader::newest`]) written by evaluators
/// other than `own_actor` (and users' acknowledgements): an open alert is
/// adopted (this process resolves it when it reads the series' rows), a
/// resolved one is closed. When two alerts are open for a series this
/// process reads — both evaluators decided during a handover — the older
/// one stays and the later one is resolved here.
pub fn merge(
    rules: &mut BTreeMap<String, RuleState>,
    reader: &AlertsReader,
    rows: &[Transition],
    own_actor: &str,
    now_micros: i64,
) -> Merged {
    let mut merged = Merged::default();
    let mut orphans: BTreeMap<&str, &Transition> = BTreeMap::new();
    for t in rows.iter().filter(|t| t.actor != own_actor) {
        let Some(rule) = rules.get_mut(&t.rule) else {
            if t.state == RESOLVED {
                orphans.remove(t.alert_id.as_str());
            } else {
                orphans.insert(&t.alert_id, t);
            }
            continue;
        };
        if t.state == RESOLVED {
            if rule.close(&t.series, &t.alert_id) {
                merged.closed += 1;
            }
            continue;
        }
        let theirs = Open {
            alert_id: t.alert_id.clone(),
            since_micros: reader.started(t),
        };
        match rule.open_of(&t.series).cloned() {
            None => {
                rule.recover(&t.series, theirs, now_micros);
                merged.adopted += 1;
            }
            Some(ours) if ours.alert_id == theirs.alert_id => {}
            Some(ours) => {
                let older = |o: &Open| (o.since_micros, o.alert_id.clone());
                let (keep, later) = if older(&theirs) < older(&ours) {
                    (theirs, ours)
                } else {
                    (ours, theirs)
                };
                if rule.owns(&t.series) {
                    merged.resolve.push((
                        t.rule.clone(),
                        Decision {
                            series: t.series.clone(),
                            state: RESOLVED,
                            at_micros: now_micros.max(later.since_micros),
                            value: None,
                            alert_id: later.alert_id,
                        },
                        format!(
                            "duplicate of alert {} (the series moved between evaluators)",
                            keep.alert_id
                        ),
                    ));
                }
                rule.recover(&t.series, keep, now_micros);
            }
        }
    }
    merged.orphans = orphans.into_values().cloned().collect();
    merged
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::dialect::GenericDialect;

    use super::*;

    fn rules() -> BTreeMap<String, RuleState> {
        let rule = weir_query::alerts::rule::parse_create(
            &GenericDialect {},
            "CREATE ALERT hot ON t BY device_id WHEN value > 80",
        )
        .unwrap();
        BTreeMap::from([("hot".to_string(), RuleState::new(rule))])
    }

    fn row(id: &str, state: &'static str, at: i64, actor: &str) -> Transition {
        Transition {
            at_micros: at,
            alert_id: id.into(),
            state,
            rule: "hot".into(),
            series: "device_id=a".into(),
            severity: "critical".into(),
            value: None,
            message: None,
            actor: actor.into(),
            seq: Some(1),
        }
    }

    #[test]
    fn open_alerts_of_others_are_adopted_and_their_resolutions_close_them() {
        let mut rules = rules();
        let mut reader = AlertsReader::default();
        let rows = reader.newest(vec![row("x", ACTIVE, 10, "weir-a")]);
        let m = merge(&mut rules, &reader, &rows, "weir-b", 100);
        assert_eq!(m.adopted, 1);
        assert_eq!(rules["hot"].open_of("device_id=a").unwrap().alert_id, "x");
        // Read again (a compaction rewrote the file): nothing new.
        assert!(
            reader
                .newest(vec![row("x", ACTIVE, 10, "weir-a")])
                .is_empty()
        );
        let rows = reader.newest(vec![row("x", RESOLVED, 20, "weir-a")]);
        let m = merge(&mut rules, &reader, &rows, "weir-b", 100);
        assert_eq!(m.closed, 1);
        assert!(rules["hot"].open_of("device_id=a").is_none());
        // An older state read late does not reopen it.
        assert!(
            reader
                .newest(vec![row("x", ACKNOWLEDGED, 15, "alice")])
                .is_empty()
        );
    }

    #[test]
    fn own_rows_are_not_merged_and_orphans_are_reported() {
        let mut rules = rules();
        let mut reader = AlertsReader::default();
        let mut gone = row("y", ACTIVE, 5, "weir-a");
        gone.rule = "dropped".into();
        let mut done = row("z", ACTIVE, 5, "weir-a");
        done.rule = "dropped".into();
        let mut done_resolved = row("z", RESOLVED, 6, "weir-a");
        done_resolved.rule = "dropped".into();
        let rows = reader.newest(vec![
            row("x", ACTIVE, 10, "weir-b"),
            gone,
            done,
            done_resolved,
        ]);
        let m = merge(&mut rules, &reader, &rows, "weir-b", 100);
        assert_eq!(m.adopted, 0);
        assert!(rules["hot"].open_of("device_id=a").is_none());
        let orphans: Vec<&str> = m.orphans.iter().map(|t| t.alert_id.as_str()).collect();
        assert_eq!(orphans, ["y"]);
    }

    #[test]
    fn the_owner_of_a_series_resolves_the_later_of_two_open_alerts() {
        let mut rules = rules();
        let mut reader = AlertsReader::default();
        // This process reads the series and opened "mine" at t=50 s.
        // ts in seconds: t=50 s.
        let batch = crate::state::tests::batch(&[("a", 50, 90.0)]);
        let mut id = |_: &str, _: &str, _: i64| "mine".to_string();
        let rule = rules.get_mut("hot").unwrap();
        let d = rule.apply(&batch, Some(0), 60_000_000, &mut id).unwrap();
        assert_eq!(d[0].alert_id, "mine");
        // The previous owner's alert, opened at t=10 µs, lands after.
        let rows = reader.newest(vec![row("theirs", ACTIVE, 10, "weir-a")]);
        let m = merge(&mut rules, &reader, &rows, "weir-b", 100_000_000);
        assert_eq!(m.resolve.len(), 1);
        assert_eq!(m.resolve[0].1.alert_id, "mine");
        assert_eq!(m.resolve[0].1.state, RESOLVED);
        assert_eq!(
            rules["hot"].open_of("device_id=a").unwrap().alert_id,
            "theirs"
        );
        // A series this process does not read: nothing written, older kept.
        let mut rules = super::tests::rules();
        let mut reader = AlertsReader::default();
        let rows = reader.newest(vec![
            row("first", ACTIVE, 30, "weir-a"),
            row("second", ACTIVE, 40, "weir-c"),
        ]);
        let m = merge(&mut rules, &reader, &rows, "weir-b", 100);
        assert!(m.resolve.is_empty());
        assert_eq!(
            rules["hot"].open_of("device_id=a").unwrap().alert_id,
            "first"
        );
    }
}
