//! The one retry mechanism for commits (issue 19 item 2).
//!
//! Every commit path — replace/overwrite/row changes (`replace.rs`),
//! metadata swaps (`swap.rs`), appends (`writer.rs`) and the streaming
//! sources' flushes (`weir-ingest`) — runs its attempt in a loop driven by a
//! [`Retry`]: the attempt itself stays with its owner (each validates or
//! rebases against the freshly loaded table in its own way), the decision
//! whether to try again, how long to wait and when to give up lives here,
//! with one log line and one metric for every retried attempt.
//!
//! Backoffs: [`Backoff::RACE`] for commits that lost a compare-and-swap race
//! (cheap to redo; short jittered pauses so they land between a streaming
//! writer's commits), [`Backoff::FLUSH`] for a flush whose storage or catalog
//! failed (exponential, up to 10 s). Iceberg's table properties
//! `commit.retry.num-retries`, `commit.retry.min-wait-ms`,
//! `commit.retry.max-wait-ms` and `commit.retry.total-timeout-ms` override a
//! backoff for that table ([`Backoff::for_table`]), as in Iceberg's Java
//! `SnapshotProducer`.
//!
//! Not `backon` (which iceberg-rust uses) directly: its `Retryable` wants the
//! attempt as a closure returning a future, and the replace attempt keeps
//! staged manifests across attempts (borrowed mutably by the future), which
//! closures cannot lend out; a loop with an explicit controller can.

use std::collections::HashMap;
use std::fmt::Display;
use std::time::{Duration, Instant};

/// How often to try and how long to wait between attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Attempts in all (the first one included).
    pub attempts: u32,
    /// The pause after the first failed attempt.
    pub min_wait: Duration,
    /// The longest pause.
    pub max_wait: Duration,
    /// Give up once this much time has passed since the first attempt.
    pub total: Option<Duration>,
    /// Pauses grow exponentially (doubling) rather than linearly.
    pub exponential: bool,
    /// A random part of each pause (up to the pause itself), so that writers
    /// that collided do not collide again.
    pub jitter: bool,
    /// Each retry is worth a warning (a failure, not a lost race).
    pub warn: bool,
}

impl Backoff {
    /// A commit that lost a race: up to 50 attempts, pauses of 5 ms growing
    /// by 5 ms to 100 ms, jittered.
    pub const RACE: Backoff = Backoff {
        attempts: 50,
        min_wait: Duration::from_millis(5),
        max_wait: Duration::from_millis(100),
        total: None,
        exponential: false,
        jitter: true,
        warn: false,
    };

    /// An append that iceberg-rust's own retries could not land on a busy
    /// table: 12 attempts, 50 ms doubling to 1.6 s, jittered.
    pub const APPEND: Backoff = Backoff {
        attempts: 12,
        min_wait: Duration::from_millis(50),
        max_wait: Duration::from_millis(1600),
        total: None,
        exponential: true,
        jitter: true,
        warn: false,
    };

    /// A streaming flush whose commit failed (storage or catalog down): 30
    /// attempts, 200 ms doubling to 10 s (about 4 minutes in all).
    pub const FLUSH: Backoff = Backoff {
        attempts: 30,
        min_wait: Duration::from_millis(200),
        max_wait: Duration::from_secs(10),
        total: None,
        exponential: true,
        jitter: false,
        warn: true,
    };

    /// This backoff with the table's Iceberg `commit.retry.*` properties
    /// applied (unparsable values are ignored).
    pub fn for_table(self, properties: &HashMap<String, String>) -> Backoff {
        let get = |key: &str| {
            properties
                .get(key)
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        let mut b = self;
        if let Some(n) = get("commit.retry.num-retries") {
            b.attempts = u32::try_from(n.saturating_add(1)).unwrap_or(u32::MAX);
        }
        if let Some(ms) = get("commit.retry.min-wait-ms") {
            b.min_wait = Duration::from_millis(ms);
        }
        if let Some(ms) = get("commit.retry.max-wait-ms") {
            b.max_wait = Duration::from_millis(ms);
        }
        if let Some(ms) = get("commit.retry.total-timeout-ms") {
            b.total = Some(Duration::from_millis(ms));
        }
        b.max_wait = b.max_wait.max(b.min_wait);
        b
    }

    /// The pause after failed attempt `attempt` (1-based), without jitter.
    pub fn pause(&self, attempt: u32) -> Duration {
        let n = attempt.max(1) - 1;
        let wait = if self.exponential {
            self.min_wait.saturating_mul(1u32 << n.min(20))
        } else {
            self.min_wait.saturating_mul(n + 1)
        };
        wait.min(self.max_wait)
    }
}

/// Drives one commit's attempts: `attempt()` numbers them, [`Retry::again`]
/// decides after a failed one.
#[derive(Debug)]
pub struct Retry {
    /// What is committed, for logs and the metric (`replace`, `append`, …).
    kind: &'static str,
    /// The table (or source) it is committed to.
    target: String,
    /// The backoff asked for; `backoff` is it with the table's properties.
    base: Backoff,
    backoff: Backoff,
    attempt: u32,
    started: Instant,
}

impl Retry {
    pub fn new(kind: &'static str, target: impl Into<String>, backoff: Backoff) -> Self {
        Retry {
            kind,
            target: target.into(),
            base: backoff,
            backoff,
            attempt: 1,
            started: Instant::now(),
        }
    }

    /// Applies the table's `commit.retry.*` properties (from the table as the
    /// current attempt loaded it).
    pub fn follow_table(&mut self, properties: &HashMap<String, String>) {
        self.backoff = self.base.for_table(properties);
    }

    /// The number of the attempt under way (1 for the first).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// After attempt [`Retry::attempt`] failed with `reason`: waits the
    /// backoff and returns `true` (try again), or returns `false` when the
    /// attempts or the total time are spent.
    pub async fn again(&mut self, reason: &(dyn Display + Sync)) -> bool {
        let b = self.backoff;
        let timed_out = b.total.is_some_and(|t| self.started.elapsed() >= t);
        if self.attempt >= b.attempts || timed_out {
            tracing::warn!(
                kind = self.kind,
                target = %self.target,
                attempts = self.attempt,
                error = %reason,
                "commit failed; giving up"
            );
            return false;
        }
        let mut pause = b.pause(self.attempt);
        if b.jitter {
            let ms = pause.as_millis().max(1) as u64;
            pause = Duration::from_millis(random_below(ms + 1));
        }
        if let Some(total) = b.total {
            pause = pause.min(total.saturating_sub(self.started.elapsed()));
        }
        metrics::counter!(crate::metric_names::COMMIT_RETRIES_TOTAL, "kind" => self.kind)
            .increment(1);
        let pause_ms = pause.as_millis() as u64;
        if b.warn {
            tracing::warn!(kind = self.kind, target = %self.target, attempt = self.attempt,
                pause_ms, error = %reason, "commit failed; retrying");
        } else {
            tracing::debug!(kind = self.kind, target = %self.target, attempt = self.attempt,
                pause_ms, error = %reason, "commit attempt lost a race; retrying");
        }
        tokio::time::sleep(pause).await;
        self.attempt += 1;
        true
    }
}

fn random_below(n: u64) -> u64 {
    let (a, _) = uuid::Uuid::new_v4().as_u64_pair();
    a % n.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_grow_and_cap() {
        let b = Backoff::FLUSH;
        assert_eq!(b.pause(1), Duration::from_millis(200));
        assert_eq!(b.pause(2), Duration::from_millis(400));
        assert_eq!(b.pause(10), Duration::from_secs(10));
        let r = Backoff::RACE;
        assert_eq!(r.pause(1), Duration::from_millis(5));
        assert_eq!(r.pause(3), Duration::from_millis(15));
        assert_eq!(r.pause(40), Duration::from_millis(100));
    }

    #[test]
    fn table_properties_override() {
        let props = HashMap::from([
            ("commit.retry.num-retries".to_string(), "3".to_string()),
            ("commit.retry.min-wait-ms".to_string(), "7".to_string()),
            ("commit.retry.max-wait-ms".to_string(), "x".to_string()),
            (
                "commit.retry.total-timeout-ms".to_string(),
                "1000".to_string(),
            ),
        ]);
        let b = Backoff::RACE.for_table(&props);
        assert_eq!(b.attempts, 4);
        assert_eq!(b.min_wait, Duration::from_millis(7));
        assert_eq!(b.max_wait, Duration::from_millis(100));
        assert_eq!(b.total, Some(Duration::from_secs(1)));
    }

    #[tokio::test]
    async fn gives_up_after_the_attempts() {
        let props = HashMap::from([
            ("commit.retry.num-retries".to_string(), "2".to_string()),
            ("commit.retry.min-wait-ms".to_string(), "1".to_string()),
            ("commit.retry.max-wait-ms".to_string(), "1".to_string()),
        ]);
        let mut retry = Retry::new("test", "t", Backoff::FLUSH);
        retry.follow_table(&props);
        assert_eq!(retry.attempt(), 1);
        assert!(retry.again(&"x").await);
        assert!(retry.again(&"x").await);
        assert_eq!(retry.attempt(), 3);
        assert!(!retry.again(&"x").await);
    }
}
