//! Named leases in the catalog database (`weir_leases`), so only one
//! process runs a job on a table at a time: compaction and clustering
//! (`compact:<table>`, also held by row-level SQL), expiry
//! (`expire:<table>`). A lease names its holder and expires after its TTL,
//! so one whose holder died lapses; a holder on this host that no longer
//! runs is taken over at once ([`Leases::acquire`]). Every statement is a
//! conditional write on the lease's row, so two processes never both hold
//! one.

use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::error::{CatalogError, Result};

/// The lease table, created with the catalog's own tables.
pub(crate) const CREATE_LEASES_TABLE: &str = "CREATE TABLE IF NOT EXISTS weir_leases (name VARCHAR(255) PRIMARY KEY, owner VARCHAR(255) NOT NULL, expires_at BIGINT NOT NULL)";

/// This machine's name (`/etc/hostname`, read once), if it has one.
pub fn hostname() -> Option<&'static str> {
    static HOST: OnceLock<Option<String>> = OnceLock::new();
    HOST.get_or_init(|| {
        std::fs::read_to_string("/etc/hostname")
            .ok()
            .map(|h| h.trim().to_string())
    })
    .as_deref()
}

/// The host part of a holder id (`localhost` without a host name).
fn host() -> &'static str {
    hostname().unwrap_or("localhost")
}

/// The leases of one catalog database ([`crate::Lakehouse::leases`]).
#[derive(Clone)]
pub struct Leases {
    db: sqlx::AnyPool,
    postgres: bool,
}

impl std::fmt::Debug for Leases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leases")
            .field("postgres", &self.postgres)
            .finish()
    }
}

impl Leases {
    pub(crate) fn new(db: sqlx::AnyPool, postgres: bool) -> Self {
        Leases { db, postgres }
    }

    /// `host-pid-uuid`: a new holder id for one run of a job; a lease held
    /// under such an id by a dead process of this host is taken over at
    /// once by [`Leases::acquire`].
    pub fn holder_id() -> String {
        format!("{}-{}-{}", host(), std::process::id(), uuid::Uuid::now_v7())
    }

    /// Takes the lease, or renews it for `owner` when `owner` holds it;
    /// false when another holder's lease has not expired.
    pub async fn try_acquire(&self, name: &str, owner: &str, ttl: Duration) -> Result<bool> {
        let db = |context: &str, e: sqlx::Error| CatalogError::Database {
            context: format!("{context} lease {name}"),
            source: e,
        };
        let now = chrono::Utc::now().timestamp_millis();
        let expires = now + ttl.as_millis() as i64;
        let (update, insert) = if self.postgres {
            (
                "UPDATE weir_leases SET owner = $1, expires_at = $2 WHERE name = $3 AND (owner = $4 OR expires_at < $5)",
                "INSERT INTO weir_leases (name, owner, expires_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
            )
        } else {
            (
                "UPDATE weir_leases SET owner = ?, expires_at = ? WHERE name = ? AND (owner = ? OR expires_at < ?)",
                "INSERT INTO weir_leases (name, owner, expires_at) VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING",
            )
        };
        let updated = sqlx::query(update)
            .bind(owner)
            .bind(expires)
            .bind(name)
            .bind(owner)
            .bind(now)
            .execute(&self.db)
            .await
            .map_err(|e| db("renewing", e))?;
        if updated.rows_affected() == 1 {
            return Ok(true);
        }
        let inserted = sqlx::query(insert)
            .bind(name)
            .bind(owner)
            .bind(expires)
            .execute(&self.db)
            .await
            .map_err(|e| db("taking", e))?;
        Ok(inserted.rows_affected() == 1)
    }

    /// Renews a lease `owner` holds for another `ttl`; false when someone
    /// else took it over meanwhile.
    pub async fn renew(&self, name: &str, owner: &str, ttl: Duration) -> Result<bool> {
        self.try_acquire(name, owner, ttl).await
    }

    /// Takes the lease ([`Leases::try_acquire`]), or takes it over when its
    /// holder is a process of this host that no longer runs (e.g. killed
    /// with -9; holder ids from [`Leases::holder_id`]). Other holders keep
    /// it until it expires.
    pub async fn acquire(&self, name: &str, owner: &str, ttl: Duration) -> Result<bool> {
        if self.try_acquire(name, owner, ttl).await? {
            return Ok(true);
        }
        let Some(holder) = self.owner(name).await? else {
            return self.try_acquire(name, owner, ttl).await;
        };
        if holder_is_dead(&holder) {
            tracing::warn!(
                lease = name,
                owner = holder,
                "taking over the lease of a dead process"
            );
            return self.take_over(name, &holder, owner, ttl).await;
        }
        Ok(false)
    }

    /// The current holder of a lease, if any (expired or not).
    pub async fn owner(&self, name: &str) -> Result<Option<String>> {
        let sql = if self.postgres {
            "SELECT owner FROM weir_leases WHERE name = $1"
        } else {
            "SELECT owner FROM weir_leases WHERE name = ?"
        };
        let row: Option<(String,)> = sqlx::query_as(sql)
            .bind(name)
            .fetch_optional(&self.db)
            .await
            .map_err(|e| CatalogError::Database {
                context: format!("reading lease {name}"),
                source: e,
            })?;
        Ok(row.map(|r| r.0))
    }

    /// Takes a lease from `from` (a holder known to be dead).
    async fn take_over(&self, name: &str, from: &str, to: &str, ttl: Duration) -> Result<bool> {
        let sql = if self.postgres {
            "UPDATE weir_leases SET owner = $1, expires_at = $2 WHERE name = $3 AND owner = $4"
        } else {
            "UPDATE weir_leases SET owner = ?, expires_at = ? WHERE name = ? AND owner = ?"
        };
        let expires = chrono::Utc::now().timestamp_millis() + ttl.as_millis() as i64;
        let r = sqlx::query(sql)
            .bind(to)
            .bind(expires)
            .bind(name)
            .bind(from)
            .execute(&self.db)
            .await
            .map_err(|e| CatalogError::Database {
                context: format!("taking over lease {name}"),
                source: e,
            })?;
        Ok(r.rows_affected() == 1)
    }

    /// Gives a lease back (no-op when someone else holds it).
    pub async fn release(&self, name: &str, owner: &str) -> Result<()> {
        let sql = if self.postgres {
            "DELETE FROM weir_leases WHERE name = $1 AND owner = $2"
        } else {
            "DELETE FROM weir_leases WHERE name = ? AND owner = ?"
        };
        sqlx::query(sql)
            .bind(name)
            .bind(owner)
            .execute(&self.db)
            .await
            .map_err(|e| CatalogError::Database {
                context: format!("releasing lease {name}"),
                source: e,
            })?;
        Ok(())
    }

    /// Renews a held lease in the background (every quarter of its TTL)
    /// while a long job runs; see [`LeaseKeeper`].
    pub fn keep(&self, name: &str, owner: &str, ttl: Duration) -> LeaseKeeper {
        let lost = Arc::new(AtomicBool::new(false));
        let (leases, name, owner, flag) = (
            self.clone(),
            name.to_string(),
            owner.to_string(),
            lost.clone(),
        );
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(ttl / 4);
            tick.tick().await;
            loop {
                tick.tick().await;
                match leases.renew(&name, &owner, ttl).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(lease = name, "lease taken over by another run");
                        flag.store(true, Ordering::SeqCst);
                        return;
                    }
                    // A failed renewal is retried; the lease only lapses
                    // after its TTL.
                    Err(e) => tracing::warn!(lease = name, error = %e, "renewing the lease failed"),
                }
            }
        });
        LeaseKeeper { lost, task }
    }
}

/// Whether `holder` (a [`Leases::holder_id`]) names a process of this host
/// that no longer runs.
fn holder_is_dead(holder: &str) -> bool {
    let prefix = format!("{}-", host());
    holder
        .strip_prefix(&prefix)
        .and_then(|rest| rest.split('-').next())
        .and_then(|pid| pid.parse::<u32>().ok())
        .is_some_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists())
}

/// A lease renewed in the background ([`Leases::keep`]) so a slow job never
/// lets it lapse; `lost()` turns true when a renewal was refused (someone
/// took the lease over), and the job must not commit. Stops renewing when
/// dropped.
#[derive(Debug)]
pub struct LeaseKeeper {
    lost: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl LeaseKeeper {
    pub fn lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{Lakehouse, LakehouseOptions};

    async fn lakehouse(dir: &tempfile::TempDir) -> Lakehouse {
        Lakehouse::open(&LakehouseOptions::embedded(dir.path().to_path_buf()))
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn one_holder_at_a_time_and_dead_local_holders_are_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let leases = lakehouse(&dir).await.leases();
        let ttl = Duration::from_secs(60);
        let me = Leases::holder_id();
        assert!(me.starts_with(&format!("{}-{}-", host(), std::process::id())));
        assert!(leases.acquire("compact:t", &me, ttl).await.unwrap());
        assert!(leases.renew("compact:t", &me, ttl).await.unwrap());
        // A live holder (this process) keeps it.
        let other = Leases::holder_id();
        assert!(!leases.acquire("compact:t", &other, ttl).await.unwrap());
        assert_eq!(leases.owner("compact:t").await.unwrap(), Some(me.clone()));
        // Releasing someone else's lease does nothing.
        leases.release("compact:t", &other).await.unwrap();
        assert_eq!(leases.owner("compact:t").await.unwrap(), Some(me.clone()));
        leases.release("compact:t", &me).await.unwrap();
        assert_eq!(leases.owner("compact:t").await.unwrap(), None);
        // A holder of this host whose process is gone is taken over at once;
        // one of another host is not.
        let dead = format!("{}-{}-x", host(), u32::MAX);
        assert!(leases.try_acquire("expire:t", &dead, ttl).await.unwrap());
        assert!(leases.acquire("expire:t", &other, ttl).await.unwrap());
        assert_eq!(leases.owner("expire:t").await.unwrap(), Some(other.clone()));
        let remote = format!("elsewhere-{}-x", u32::MAX);
        assert!(leases.try_acquire("expire:u", &remote, ttl).await.unwrap());
        assert!(!leases.acquire("expire:u", &other, ttl).await.unwrap());
        // An expired lease goes to whoever asks.
        assert!(
            leases
                .try_acquire("expire:v", &remote, Duration::ZERO)
                .await
                .unwrap()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(leases.try_acquire("expire:v", &other, ttl).await.unwrap());
    }
}
