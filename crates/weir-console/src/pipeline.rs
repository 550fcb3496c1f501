//! The Pipeline page's data: every source partition (Kafka topic/partition,
//! MQTT broker, Modbus device, the demo) with its rate, lag, last commit
//! and dead letters, and the hot tier per table — read from the process's
//! own metrics, which every source records the same way (describe.rs of
//! weir-observe), so the console does not depend on the ingest crate.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use weir_observe::HttpResponse;

use crate::Inner;
use crate::web::{ApiError, ok};

/// Rates are taken over at least this long.
const MIN_WINDOW: Duration = Duration::from_millis(900);

type Key = (String, String, String);

/// One parsed sample: name, labels, value.
#[derive(Debug, PartialEq)]
pub(crate) struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Parses the Prometheus text format (comments skipped, bad lines ignored).
pub(crate) fn parse(text: &str) -> Vec<Sample> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let (name, labels, rest) = match line.find('{') {
        Some(open) => {
            let (labels, rest) = parse_labels(&line[open + 1..])?;
            (&line[..open], labels, rest)
        }
        None => {
            let (name, rest) = line.split_once(' ')?;
            (name, BTreeMap::new(), rest)
        }
    };
    let value = rest.split_whitespace().next()?.parse::<f64>().ok()?;
    Some(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// `a="x",b="y"} rest` → labels and `rest`.
fn parse_labels(s: &str) -> Option<(BTreeMap<String, String>, &str)> {
    let mut labels = BTreeMap::new();
    let mut chars = s.char_indices().peekable();
    loop {
        while chars.peek().is_some_and(|(_, c)| *c == ',' || *c == ' ') {
            chars.next();
        }
        let (start, c) = *chars.peek()?;
        if c == '}' {
            return Some((labels, &s[start + 1..]));
        }
        let eq = s[start..].find('=')? + start;
        let key = s[start..eq].trim().to_string();
        while chars.peek().is_some_and(|(i, _)| *i <= eq) {
            chars.next();
        }
        if chars.next()?.1 != '"' {
            return None;
        }
        let mut value = String::new();
        loop {
            let (_, c) = chars.next()?;
            match c {
                '"' => break,
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                other => value.push(other),
            }
        }
        labels.insert(key, value);
    }
}

#[derive(Default)]
struct Window {
    previous: Option<(Instant, HashMap<Key, f64>)>,
    current: Option<(Instant, HashMap<Key, f64>)>,
}

/// Points per second per source partition, from successive snapshots.
#[derive(Default)]
pub(crate) struct Rates(Mutex<Window>);

impl Rates {
    fn lock(&self) -> MutexGuard<'_, Window> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records `totals` (when the last record is old enough) and returns
    /// the rate of each key over the last window.
    fn observe(&self, totals: &HashMap<Key, f64>) -> HashMap<Key, f64> {
        let now = Instant::now();
        let mut window = self.lock();
        let due = window
            .current
            .as_ref()
            .is_none_or(|(at, _)| now.duration_since(*at) >= MIN_WINDOW);
        if due {
            window.previous = window.current.take();
            window.current = Some((now, totals.clone()));
        }
        let (Some((t0, before)), Some((t1, after))) = (&window.previous, &window.current) else {
            return HashMap::new();
        };
        let seconds = t1.duration_since(*t0).as_secs_f64();
        after
            .iter()
            .map(|(key, v)| {
                let delta = (v - before.get(key).copied().unwrap_or(0.0)).max(0.0);
                (
                    key.clone(),
                    if seconds > 0.0 { delta / seconds } else { 0.0 },
                )
            })
            .collect()
    }
}

fn key(sample: &Sample) -> Key {
    let label = |k: &str| sample.labels.get(k).cloned().unwrap_or_default();
    (label("source"), label("stream"), label("partition"))
}

/// `GET /api/pipeline`.
pub(crate) fn snapshot(inner: &Inner) -> Result<HttpResponse, ApiError> {
    let samples = parse(&(inner.metrics)());
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let mut sources: BTreeMap<Key, serde_json::Map<String, serde_json::Value>> = BTreeMap::new();
    let mut points: HashMap<Key, f64> = HashMap::new();
    let mut hot: BTreeMap<String, serde_json::Map<String, serde_json::Value>> = BTreeMap::new();
    for sample in &samples {
        let field = match sample.name.as_str() {
            "weir_ingest_points_total" => "points",
            "weir_ingest_messages_total" => "messages",
            "weir_ingest_dead_letters_total" => "dead_letters",
            "weir_ingest_lag_seconds" => "lag_seconds",
            "weir_ingest_lag_messages" => "lag_messages",
            "weir_ingest_last_commit_timestamp_seconds" => "last_commit",
            "weir_ingest_committed_offset" => "committed_offset",
            "weir_hot_rows" | "weir_hot_bytes" => {
                let table = sample.labels.get("table").cloned().unwrap_or_default();
                let field = sample.name.trim_start_matches("weir_hot_");
                hot.entry(table)
                    .or_default()
                    .insert(field.into(), sample.value.into());
                continue;
            }
            _ => continue,
        };
        let k = key(sample);
        if field == "points" {
            points.insert(k.clone(), sample.value);
        }
        sources
            .entry(k)
            .or_default()
            .insert(field.into(), sample.value.into());
    }
    let rates = inner.rates.observe(&points);
    let sources: Vec<serde_json::Value> = sources
        .into_iter()
        .map(|(k, mut fields)| {
            if let Some(last) = fields.get("last_commit").and_then(|v| v.as_f64()) {
                fields.insert("freshness_seconds".into(), (now - last).max(0.0).into());
            }
            fields.insert("points_per_second".into(), rates.get(&k).copied().into());
            fields.insert("source".into(), k.0.into());
            fields.insert("stream".into(), k.1.into());
            fields.insert("partition".into(), k.2.into());
            serde_json::Value::Object(fields)
        })
        .collect();
    let hot: Vec<serde_json::Value> = hot
        .into_iter()
        .map(|(table, mut fields)| {
            fields.insert("table".into(), table.into());
            serde_json::Value::Object(fields)
        })
        .collect();
    ok(serde_json::json!({ "now": now, "sources": sources, "hot": hot }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_text_format() {
        let text = "# HELP x y\n# TYPE x counter\n\
            weir_ingest_points_total{source=\"kafka\",stream=\"a\\\"b\",partition=\"3\"} 42\n\
            weir_build_info 1\nbroken{a=\"x\" 1\n";
        let samples = parse(text);
        assert_eq!(samples.len(), 2, "{samples:?}");
        assert_eq!(samples[0].labels["stream"], "a\"b");
        assert_eq!(samples[0].labels["partition"], "3");
        assert_eq!(samples[0].value, 42.0);
        assert_eq!(samples[1].name, "weir_build_info");
    }

    #[test]
    fn rates_need_two_snapshots() {
        let rates = Rates::default();
        let k: Key = ("demo".into(), "demo".into(), "0".into());
        let first = rates.observe(&HashMap::from([(k.clone(), 10.0)]));
        assert!(first.is_empty());
        std::thread::sleep(MIN_WINDOW);
        let second = rates.observe(&HashMap::from([(k.clone(), 20.0)]));
        assert!(second[&k] > 0.0 && second[&k] <= 10.0 / 0.9, "{second:?}");
    }
}
