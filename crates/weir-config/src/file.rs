//! The optional `weir.toml`: its keys are the long flag names (`data-dir`,
//! `listen`, ...), at top level or under any table such as `[serve]`.
//!
//! The file is applied by exporting each key as its `WEIR_*` variable unless
//! that variable is already set; clap then resolves flag > env > default, so
//! the file sits between the environment and the defaults.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// Reads the config file (explicit path, else `./weir.toml` if present) and
/// exports its settings as `WEIR_*` variables not already set.
///
/// `known_env` lists the variables the command line understands; unknown keys
/// are an error so a typo does not silently fall back to a default.
/// Must run before any other thread starts (it sets environment variables).
pub fn apply_config_file(
    explicit: Option<&Path>,
    known_env: &[String],
) -> Result<Option<PathBuf>, ConfigError> {
    let path = match explicit {
        Some(p) => p.to_path_buf(),
        None => {
            let default = PathBuf::from("weir.toml");
            if !default.exists() {
                return Ok(None);
            }
            default
        }
    };
    let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
        path: path.clone(),
        source,
    })?;
    let settings = flatten(&text).map_err(|message| ConfigError::Invalid {
        path: path.clone(),
        message,
    })?;
    for (key, value) in settings {
        let var = format!("WEIR_{}", key.replace('-', "_").to_ascii_uppercase());
        if !known_env.contains(&var) {
            return Err(ConfigError::Invalid {
                path,
                message: format!("unknown setting `{key}`"),
            });
        }
        if std::env::var_os(&var).is_none() {
            // SAFETY: called at start-up, before the runtime spawns threads.
            unsafe { std::env::set_var(&var, value) };
        }
    }
    Ok(Some(path))
}

fn flatten(text: &str) -> Result<BTreeMap<String, String>, String> {
    let table: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
    let mut out = BTreeMap::new();
    collect(&table, &mut out)?;
    Ok(out)
}

fn collect(table: &toml::Table, out: &mut BTreeMap<String, String>) -> Result<(), String> {
    for (key, value) in table {
        let text = match value {
            toml::Value::Table(inner) => {
                collect(inner, out)?;
                continue;
            }
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Array(items) if key == "users" => crate::users::users_setting(items)?,
            other => return Err(format!("`{key}`: unsupported value {other}")),
        };
        if out.insert(key.clone(), text).is_some() {
            return Err(format!("`{key}` is set twice"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flattens_sections() {
        let m =
            flatten("listen = \"0.0.0.0:1\"\n[serve]\ndata-dir = \"/d\"\ndemo = true\n").unwrap();
        assert_eq!(m["listen"], "0.0.0.0:1");
        assert_eq!(m["data-dir"], "/d");
        assert_eq!(m["demo"], "true");
        assert!(flatten("a = 1\n[x]\na = 2\n").is_err());
    }
}
