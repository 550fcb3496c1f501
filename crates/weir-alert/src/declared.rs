//! Rules declared in TOML (`--alert-rules FILE` or a directory of `*.toml`):
//!
//! ```toml
//! [[alert]]
//! name = "boiler_hot"
//! on = "silver.points"
//! where = "metric = 'temperature'"
//! by = ["device_id", "metric"]
//! when = "value > 80"
//! clear = "value < 75"
//! for = "5s"
//! severity = "critical"
//! notify = ["mqtt://127.0.0.1:1883/alerts/boiler"]
//! message = "boiler too hot"
//! ```
//!
//! Each entry becomes the `CREATE ALERT` text of the same rule and is read
//! by the one parser (`weir_query::alerts::rule`), so both forms mean the
//! same. The evaluator writes them to `gold.alerts` marked as declared
//! ([`sync`]): SQL lists them and cannot drop them; an entry removed from
//! the file is removed at the next start.

use std::path::Path;

use weir_catalog::Lakehouse;
use weir_query::alerts::{self, AlertRule, DECLARED_PREFIX, RULE_PREFIX};

use crate::AlertError;

#[derive(Debug, serde::Deserialize)]
struct File {
    #[serde(default)]
    alert: Vec<Entry>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    on: String,
    #[serde(rename = "where")]
    filter: Option<String>,
    #[serde(default)]
    by: Vec<String>,
    when: String,
    clear: Option<String>,
    #[serde(rename = "for")]
    hold: Option<String>,
    severity: Option<String>,
    #[serde(default)]
    notify: Vec<String>,
    message: Option<String>,
}

impl Entry {
    fn to_sql(&self) -> String {
        let hold = self.hold.as_deref().map(alerts::rule::quote);
        alerts::rule::CreateText {
            name: &self.name,
            on: &self.on,
            filter: self.filter.as_deref(),
            by: &self.by,
            when: &self.when,
            clear: self.clear.as_deref(),
            hold: hold.as_deref(),
            severity: self.severity.as_deref(),
            notify: &self.notify,
            message: self.message.as_deref(),
        }
        .to_sql()
    }
}

/// Reads the rules of a TOML file, or of every `*.toml` in a directory.
pub fn load(path: &Path) -> Result<Vec<AlertRule>, AlertError> {
    let files = if path.is_dir() {
        let mut files: Vec<_> = std::fs::read_dir(path)
            .map_err(|e| declared_error(path, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        files.sort();
        files
    } else {
        vec![path.to_path_buf()]
    };
    let dialect = datafusion::sql::sqlparser::dialect::GenericDialect {};
    let mut rules: Vec<AlertRule> = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|e| declared_error(&file, e))?;
        let parsed: File = toml::from_str(&text).map_err(|e| declared_error(&file, e))?;
        for entry in parsed.alert {
            let rule = alerts::rule::parse_create(&dialect, &entry.to_sql())
                .map_err(|e| declared_error(&file, format!("alert {}: {e}", entry.name)))?;
            if rules.iter().any(|r| r.name == rule.name) {
                return Err(declared_error(
                    &file,
                    format!("alert {} declared twice", rule.name),
                ));
            }
            rules.push(rule);
        }
    }
    Ok(rules)
}

fn declared_error(file: &Path, e: impl std::fmt::Display) -> AlertError {
    AlertError::Declared {
        file: file.display().to_string(),
        message: e.to_string(),
    }
}

/// Writes the declared rules to `gold.alerts` (one metadata commit when
/// anything changed), removing declared rules no longer declared.
pub async fn sync(lakehouse: &Lakehouse, rules: &[AlertRule]) -> Result<(), AlertError> {
    alerts::set_properties(lakehouse, |props| {
        let mut set = Vec::new();
        let mut remove = Vec::new();
        for rule in rules {
            let key = format!("{RULE_PREFIX}{}", rule.name);
            let text = rule.to_sql();
            if props.get(&key) != Some(&text) {
                if props.contains_key(&key)
                    && !props.contains_key(&format!("{DECLARED_PREFIX}{}", rule.name))
                {
                    tracing::warn!(rule = %rule.name, "a declared alert replaces the rule of the same name made by SQL");
                }
                set.push((key, text));
            }
            let marker = format!("{DECLARED_PREFIX}{}", rule.name);
            if !props.contains_key(&marker) {
                set.push((marker, "true".into()));
            }
        }
        for key in props.keys() {
            if let Some(name) = key.strip_prefix(DECLARED_PREFIX)
                && !rules.iter().any(|r| r.name == name)
            {
                remove.push(key.clone());
                remove.push(format!("{RULE_PREFIX}{name}"));
            }
        }
        (!set.is_empty() || !remove.is_empty()).then_some((set, remove))
    })
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_rules_mean_what_sql_says() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rules.toml");
        std::fs::write(
            &path,
            r#"
[[alert]]
name = "boiler_hot"
on = "silver.points"
where = "metric = 'temperature'"
by = ["device_id", "metric"]
when = "value > 80"
clear = "value < 75"
for = "5s"
severity = "critical"
notify = ["mqtt://127.0.0.1:1883/alerts/boiler"]

[[alert]]
name = "silent"
on = "silver.points"
by = ["device_id"]
when = "absent(INTERVAL '30 seconds')"
"#,
        )
        .unwrap();
        let rules = load(dir.path()).unwrap();
        assert_eq!(rules.len(), 2);
        let sql = "CREATE ALERT boiler_hot ON silver.points WHERE metric = 'temperature' \
                   BY device_id, metric WHEN value > 80 CLEAR WHEN value < 75 FOR '5s' \
                   SEVERITY 'critical' NOTIFY 'mqtt://127.0.0.1:1883/alerts/boiler'";
        let dialect = datafusion::sql::sqlparser::dialect::GenericDialect {};
        assert_eq!(rules[0], alerts::rule::parse_create(&dialect, sql).unwrap());
        std::fs::write(
            &path,
            "[[alert]]\nname = \"x\"\non = \"t\"\nwhen = \"v >\"\n",
        )
        .unwrap();
        let e = load(&path).unwrap_err().to_string();
        assert!(e.contains("alert x"), "{e}");
    }
}
