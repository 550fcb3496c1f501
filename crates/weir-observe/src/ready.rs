//! Readiness: `/ready` answers 200 only when every registered condition
//! holds and the process is not shutting down.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

type Check = Box<dyn Fn() -> Result<(), String> + Send + Sync>;

enum Condition {
    /// Set by the owner with [`Readiness::set_ready`].
    Flag { ready: bool, waiting: String },
    /// Evaluated at every `/ready` request.
    Check(Check),
}

#[derive(Default)]
struct Inner {
    conditions: Mutex<Vec<(String, Condition)>>,
    shutting_down: AtomicBool,
}

/// The conditions a process needs before it is ready (shared; cheap to clone).
#[derive(Clone, Default)]
pub struct Readiness {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readiness")
            .field("status", &self.status())
            .finish()
    }
}

impl Readiness {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a condition that is not met yet; `waiting` says what it
    /// waits for (shown by `/ready` until [`set_ready`](Self::set_ready)).
    pub fn pending(&self, name: &str, waiting: &str) {
        self.upsert(
            name,
            Condition::Flag {
                ready: false,
                waiting: waiting.to_string(),
            },
        );
    }

    /// Marks a condition met (registering it if needed).
    pub fn set_ready(&self, name: &str) {
        let mut conditions = self.inner.conditions.lock().expect("readiness lock");
        match conditions.iter_mut().find(|(n, _)| n == name) {
            Some((_, Condition::Flag { ready, .. })) => *ready = true,
            Some((_, c)) => {
                *c = Condition::Flag {
                    ready: true,
                    waiting: String::new(),
                }
            }
            None => conditions.push((
                name.to_string(),
                Condition::Flag {
                    ready: true,
                    waiting: String::new(),
                },
            )),
        }
    }

    /// Registers a condition evaluated at every request (`Err` says why it
    /// is not met), e.g. "the Kafka source has resumed from its watermarks".
    pub fn check(
        &self,
        name: &str,
        check: impl Fn() -> Result<(), String> + Send + Sync + 'static,
    ) {
        self.upsert(name, Condition::Check(Box::new(check)));
    }

    /// The ordered shutdown started: not ready from now on.
    pub fn shutting_down(&self) {
        self.inner.shutting_down.store(true, Ordering::SeqCst);
    }

    /// `Ok` when ready, else every reason it is not (one per condition).
    pub fn status(&self) -> Result<(), Vec<String>> {
        if self.inner.shutting_down.load(Ordering::SeqCst) {
            return Err(vec!["shutting down".to_string()]);
        }
        let conditions = self.inner.conditions.lock().expect("readiness lock");
        let reasons: Vec<String> = conditions
            .iter()
            .filter_map(|(name, c)| match c {
                Condition::Flag { ready: true, .. } => None,
                Condition::Flag { waiting, .. } => Some(format!("{name}: {waiting}")),
                Condition::Check(check) => check().err().map(|why| format!("{name}: {why}")),
            })
            .collect();
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(reasons)
        }
    }

    fn upsert(&self, name: &str, condition: Condition) {
        let mut conditions = self.inner.conditions.lock().expect("readiness lock");
        match conditions.iter_mut().find(|(n, _)| n == name) {
            Some((_, c)) => *c = condition,
            None => conditions.push((name.to_string(), condition)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_every_condition_holds_and_not_after_shutdown() {
        let r = Readiness::new();
        assert!(r.status().is_ok(), "no conditions: ready");
        r.pending("catalog", "opening the catalog");
        let ok = Arc::new(AtomicBool::new(false));
        let flag = ok.clone();
        r.check("sources", move || {
            if flag.load(Ordering::SeqCst) {
                Ok(())
            } else {
                Err("kafka: waiting for a partition assignment".into())
            }
        });
        assert_eq!(
            r.status().unwrap_err(),
            [
                "catalog: opening the catalog",
                "sources: kafka: waiting for a partition assignment"
            ]
        );
        r.set_ready("catalog");
        ok.store(true, Ordering::SeqCst);
        assert!(r.status().is_ok());
        r.shutting_down();
        assert_eq!(r.status().unwrap_err(), ["shutting down"]);
    }
}
