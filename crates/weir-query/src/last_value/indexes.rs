//! The engine's indexes by table: brought up to date per query (and in the
//! background on commits), within the memory budget.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex};

use datafusion::catalog::{Session, TableProvider};
use datafusion::error::Result as DFResult;
use datafusion::physical_plan::execute_stream;
use futures::StreamExt;

use crate::mv_incremental::{added_data_files, changes_since};
use crate::table::WeirTable;

use super::state::{Folder, State};
use super::*;

/// How the index served a scan (EXPLAIN).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Served {
    /// At the pinned snapshot (or a later one) already.
    Kept,
    /// Moved forward by reading the files appended since.
    Appended {
        files: usize,
    },
    Rebuilt,
    /// Over the memory budget: computed for this query only.
    Unkept,
}

impl fmt::Display for Served {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Served::Kept => write!(f, "index up to date"),
            Served::Appended { files } => write!(f, "index refreshed from {files} appended files"),
            Served::Rebuilt => write!(f, "index rebuilt"),
            Served::Unkept => write!(f, "over the memory budget: computed for this query"),
        }
    }
}

/// What brought an index up to date (the `trigger` label of
/// `weir_last_value_refreshes_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Trigger {
    /// A query found it behind the table.
    Query,
    /// This process committed to the table ([`LastValueIndexes::follow_commit`]).
    Commit,
}

impl Trigger {
    fn label(self) -> &'static str {
        match self {
            Trigger::Query => "query",
            Trigger::Commit => "commit",
        }
    }
}

#[derive(Default)]
pub(super) struct Entry {
    state: Option<Arc<State>>,
}

/// The engine's last-value indexes, by table and declaration.
#[derive(Default)]
pub struct LastValueIndexes {
    budget: usize,
    entries: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Entry>>>>,
    /// Indexes found too big: the rule leaves their tables alone.
    over_budget: Mutex<HashSet<String>>,
    /// Bytes of every kept index, by entry.
    sizes: Mutex<HashMap<String, usize>>,
}

impl fmt::Debug for LastValueIndexes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LastValueIndexes")
            .field("budget", &self.budget)
            .finish()
    }
}

pub(super) fn entry_key(table: &WeirTable, decl: &Declaration) -> String {
    format!(
        "{}|{}|{}",
        table.iceberg_table().identifier(),
        decl.keys.join(","),
        decl.time
    )
}

impl LastValueIndexes {
    pub fn new(budget: usize) -> Self {
        LastValueIndexes {
            budget,
            ..Default::default()
        }
    }

    pub(super) fn is_over_budget(&self, key: &str) -> bool {
        self.over_budget.lock().expect("lvi lock").contains(key)
    }

    /// Whether `table` (`namespace.table`) has an index kept in memory.
    pub(super) fn is_kept(&self, table: &str) -> bool {
        let prefix = format!("{table}|");
        self.sizes
            .lock()
            .expect("lvi lock")
            .keys()
            .any(|k| k.starts_with(&prefix))
    }

    /// The tables with an index kept in memory.
    pub(super) fn kept_tables(&self) -> Vec<String> {
        let sizes = self.sizes.lock().expect("lvi lock");
        let mut names: Vec<String> = sizes
            .keys()
            .filter_map(|k| k.split('|').next())
            .map(str::to_string)
            .collect();
        names.dedup();
        names
    }

    /// Brings the kept index of `table` (loaded after a commit) up to date
    /// now rather than in the next query; `None` when it has none kept
    /// (indexes are built by the first query that uses them, not here).
    pub(super) async fn follow_commit(
        &self,
        table: &WeirTable,
        session: &dyn Session,
    ) -> DFResult<Option<Served>> {
        let Some(decl) = Declaration::of(table) else {
            return Ok(None);
        };
        let key = entry_key(table, &decl);
        if !self.sizes.lock().expect("lvi lock").contains_key(&key) {
            return Ok(None);
        }
        let (_, served) = self
            .state_for(table, &decl, session, Trigger::Commit)
            .await?;
        Ok(Some(served))
    }

    /// The index of `table` (pinned to its snapshot), brought up to date.
    pub(super) async fn state_for(
        &self,
        table: &WeirTable,
        decl: &Declaration,
        session: &dyn Session,
        trigger: Trigger,
    ) -> DFResult<(Arc<State>, Served)> {
        let key = entry_key(table, decl);
        let entry = self
            .entries
            .lock()
            .expect("lvi lock")
            .entry(key.clone())
            .or_default()
            .clone();
        let mut guard = entry.lock().await;
        let pinned = table.snapshot_id();
        let schema = TableProvider::schema(table);
        let mut start = None;
        if let Some(s) = &guard.state
            && s.schema == schema
            && s.decl == *decl
        {
            if s.snapshot_id == pinned {
                return Ok((s.clone(), Served::Kept));
            }
            if let (Some(p), Some(at)) = (pinned, s.snapshot_id) {
                // The index is ahead of this query: a later state.
                if changes_since(&s.table, p, at).is_some() {
                    return Ok((s.clone(), Served::Kept));
                }
                start = guard.state.take();
            }
        }
        let (state, served) = match start {
            Some(s) => match self.appended(s, table, session).await? {
                Some((state, files)) => (state, Served::Appended { files }),
                None => (rebuild(table, decl, session).await?, Served::Rebuilt),
            },
            None => (rebuild(table, decl, session).await?, Served::Rebuilt),
        };
        let state = Arc::new(state);
        let name = table.iceberg_table().identifier().to_string();
        ::metrics::counter!(crate::metric_names::LAST_VALUE_REFRESHES_TOTAL,
            "table" => name.clone(), "trigger" => trigger.label())
        .increment(1);
        let others: usize = self
            .sizes
            .lock()
            .expect("lvi lock")
            .iter()
            .filter(|(k, _)| **k != key)
            .map(|(_, v)| *v)
            .sum();
        if others + state.bytes > self.budget {
            tracing::warn!(table = %name, bytes = state.bytes, budget = self.budget,
                "last-value index over the memory budget: not kept, queries take the normal plan");
            guard.state = None;
            self.sizes.lock().expect("lvi lock").remove(&key);
            self.over_budget.lock().expect("lvi lock").insert(key);
            ::metrics::gauge!(crate::metric_names::LAST_VALUE_BYTES, "table" => name.clone())
                .set(0.0);
            ::metrics::gauge!(crate::metric_names::LAST_VALUE_SERIES, "table" => name).set(0.0);
            return Ok((state, Served::Unkept));
        }
        // A changed declaration of the table leaves its old index behind.
        let prefix = format!("{name}|");
        let stale = |k: &String| k.starts_with(&prefix) && *k != key;
        self.sizes
            .lock()
            .expect("lvi lock")
            .retain(|k, _| !stale(k));
        self.entries
            .lock()
            .expect("lvi lock")
            .retain(|k, _| !stale(k));
        self.sizes
            .lock()
            .expect("lvi lock")
            .insert(key, state.bytes);
        ::metrics::gauge!(crate::metric_names::LAST_VALUE_BYTES, "table" => name.clone())
            .set(state.bytes as f64);
        ::metrics::gauge!(crate::metric_names::LAST_VALUE_SERIES, "table" => name)
            .set(state.batch.num_rows() as f64);
        guard.state = Some(state.clone());
        Ok((state, served))
    }

    /// `from` moved to `table`'s snapshot by folding in the files appended
    /// since; `None` when something else than appends and compactions
    /// happened.
    pub(super) async fn appended(
        &self,
        from: Arc<State>,
        table: &WeirTable,
        session: &dyn Session,
    ) -> DFResult<Option<(State, usize)>> {
        let (Some(since), Some(until)) = (from.snapshot_id, table.snapshot_id()) else {
            return Ok(None);
        };
        let iceberg = table.iceberg_table();
        let Some(changes) = changes_since(iceberg, since, until) else {
            return Ok(None);
        };
        if !changes.overwrites.is_empty() {
            return Ok(None);
        }
        let mut folder = Folder::new(from.schema.clone(), &from.decl)?;
        let mut count = 0;
        if changes.files_rewritten {
            // A compaction since: read each append's files at its own
            // snapshot (they may be gone from the pinned one).
            for append in changes.appends.iter().rev() {
                let files = added_data_files(iceberg, std::slice::from_ref(append))
                    .await
                    .map_err(crate::error::to_df)?;
                count += files.len();
                let paths = files.iter().map(|f| f.file_path().to_string()).collect();
                let at = WeirTable::pinned_in_current_schema(
                    table.lakehouse().clone(),
                    iceberg.clone(),
                    Some(append.snapshot_id()),
                )?
                .restricted(
                    Some(Arc::new(paths)),
                    false,
                    "last-value index".into(),
                );
                read_into(&mut folder, &at, session).await?;
            }
        } else {
            let files = added_data_files(iceberg, &changes.appends)
                .await
                .map_err(crate::error::to_df)?;
            count = files.len();
            if count > 0 {
                let paths = files.iter().map(|f| f.file_path().to_string()).collect();
                let at = table.restricted(Some(Arc::new(paths)), false, "last-value index".into());
                read_into(&mut folder, &at, session).await?;
            }
        }
        // In place unless a running query still reads the old state.
        let state = Arc::try_unwrap(from).unwrap_or_else(|shared| shared.copy());
        Ok(Some((
            state.absorb(folder, iceberg.clone(), table.snapshot_id())?,
            count,
        )))
    }
}

/// The index of `table`'s snapshot, from all its rows.
pub(super) async fn rebuild(
    table: &WeirTable,
    decl: &Declaration,
    session: &dyn Session,
) -> DFResult<State> {
    let mut folder = Folder::new(TableProvider::schema(table), decl)?;
    if table.snapshot_id().is_some() {
        let all = table.restricted(None, false, "last-value index rebuild".into());
        read_into(&mut folder, &all, session).await?;
    }
    folder.finish(table.iceberg_table().clone(), table.snapshot_id())
}

pub(super) async fn read_into(
    folder: &mut Folder,
    table: &WeirTable,
    session: &dyn Session,
) -> DFResult<()> {
    let plan = table.scan(session, None, &[], None).await?;
    let mut stream = execute_stream(plan, session.task_ctx())?;
    while let Some(batch) = stream.next().await {
        folder.push(batch?)?;
    }
    Ok(())
}
