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
    /// The file is not TOML.
    #[error("config file {path}: {source}")]
    Syntax {
        path: PathBuf,
        source: toml::de::Error,
    },
    /// A key no flag of the command line has (a typo, say).
    #[error("config file {path}: unknown setting `{key}`")]
    UnknownSetting { path: PathBuf, key: String },
    /// A value no flag takes (a date, an array other than `[[users]]`).
    #[error("config file {path}: `{key}`: unsupported value {value}")]
    UnsupportedValue {
        path: PathBuf,
        key: String,
        value: toml::Value,
    },
    /// The same key at top level and in a table, or in two tables.
    #[error("config file {path}: `{key}` is set twice")]
    SetTwice { path: PathBuf, key: String },
    /// An entry of `users` that is not a `[[users]]` table.
    #[error("config file {path}: users[{index}]: expected a [[users]] table")]
    UserNotTable { path: PathBuf, index: usize },
    /// A field of a `[[users]]` table that is not a non-empty string.
    #[error("config file {path}: users[{index}].{field} must be a non-empty string")]
    UserFieldNotString {
        path: PathBuf,
        index: usize,
        field: &'static str,
    },
    #[error("config file {path}: users[{index}]: `{field}` is missing")]
    UserFieldMissing {
        path: PathBuf,
        index: usize,
        field: &'static str,
    },
    #[error(
        "config file {path}: users[{index}]: plain-text `password` is not accepted; store \
         `password_hash` (from `weir hash-password`)"
    )]
    UserPlainPassword { path: PathBuf, index: usize },
    #[error("config file {path}: users[{index}]: unknown key `{key}`")]
    UserUnknownKey {
        path: PathBuf,
        index: usize,
        key: String,
    },
    /// `;` separates the entries of `WEIR_USERS`, so no value may hold one.
    #[error("config file {path}: users[{index}]: values may not contain `;`")]
    UserSemicolon { path: PathBuf, index: usize },
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
    let settings = flatten(&path, &text)?;
    for (key, value) in settings {
        let var = format!("WEIR_{}", key.replace('-', "_").to_ascii_uppercase());
        if !known_env.contains(&var) {
            return Err(ConfigError::UnknownSetting { path, key });
        }
        if std::env::var_os(&var).is_none() {
            // SAFETY: called at start-up, before the runtime spawns threads.
            unsafe { std::env::set_var(&var, value) };
        }
    }
    Ok(Some(path))
}

fn flatten(path: &Path, text: &str) -> Result<BTreeMap<String, String>, ConfigError> {
    let table: toml::Table = toml::from_str(text).map_err(|source| ConfigError::Syntax {
        path: path.to_path_buf(),
        source,
    })?;
    let mut out = BTreeMap::new();
    collect(path, &table, &mut out)?;
    Ok(out)
}

fn collect(
    path: &Path,
    table: &toml::Table,
    out: &mut BTreeMap<String, String>,
) -> Result<(), ConfigError> {
    for (key, value) in table {
        let text = match value {
            toml::Value::Table(inner) => {
                collect(path, inner, out)?;
                continue;
            }
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Array(items) if key == "users" => {
                crate::users::users_setting(path, items)?
            }
            other => {
                return Err(ConfigError::UnsupportedValue {
                    path: path.to_path_buf(),
                    key: key.clone(),
                    value: other.clone(),
                });
            }
        };
        if out.insert(key.clone(), text).is_some() {
            return Err(ConfigError::SetTwice {
                path: path.to_path_buf(),
                key: key.clone(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flattens_sections() {
        let p = Path::new("weir.toml");
        let m = flatten(
            p,
            "listen = \"0.0.0.0:1\"\n[serve]\ndata-dir = \"/d\"\ndemo = true\n",
        )
        .unwrap();
        assert_eq!(m["listen"], "0.0.0.0:1");
        assert_eq!(m["data-dir"], "/d");
        assert_eq!(m["demo"], "true");
        let err = flatten(p, "a = 1\n[x]\na = 2\n").unwrap_err();
        assert_eq!(err.to_string(), "config file weir.toml: `a` is set twice");
    }
}
