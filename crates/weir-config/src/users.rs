//! `[[users]]` in weir.toml: each table (`name`, `role`, `password_hash`)
//! becomes one `name:role:hash` entry of `WEIR_USERS` (`;`-separated), the
//! form `--users` takes. Plain-text passwords are refused here already.

use std::path::Path;

use crate::ConfigError;

/// The `WEIR_USERS` value for the `[[users]]` array of the file at `path`.
pub(crate) fn users_setting(path: &Path, items: &[toml::Value]) -> Result<String, ConfigError> {
    let path = || path.to_path_buf();
    let mut entries = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let toml::Value::Table(table) = item else {
            return Err(ConfigError::UserNotTable {
                path: path(),
                index,
            });
        };
        let field = |field: &'static str| -> Result<&str, ConfigError> {
            match table.get(field) {
                Some(toml::Value::String(s)) if !s.is_empty() => Ok(s.as_str()),
                Some(_) => Err(ConfigError::UserFieldNotString {
                    path: path(),
                    index,
                    field,
                }),
                None => Err(ConfigError::UserFieldMissing {
                    path: path(),
                    index,
                    field,
                }),
            }
        };
        if table.contains_key("password") {
            return Err(ConfigError::UserPlainPassword {
                path: path(),
                index,
            });
        }
        if let Some(unknown) = table
            .keys()
            .find(|k| !["name", "role", "password_hash"].contains(&k.as_str()))
        {
            return Err(ConfigError::UserUnknownKey {
                path: path(),
                index,
                key: unknown.clone(),
            });
        }
        let (name, role, hash) = (field("name")?, field("role")?, field("password_hash")?);
        if [name, role, hash].iter().any(|v| v.contains(';')) {
            return Err(ConfigError::UserSemicolon {
                path: path(),
                index,
            });
        }
        entries.push(format!("{name}:{role}:{hash}"));
    }
    Ok(entries.join(";"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users(text: &str) -> Result<String, ConfigError> {
        let table: toml::Table = toml::from_str(text).unwrap();
        match &table["users"] {
            toml::Value::Array(items) => users_setting(Path::new("weir.toml"), items),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn users_tables_become_one_setting() {
        let v = users(
            "[[users]]\nname = \"ann\"\nrole = \"admin\"\npassword_hash = \"$argon2id$a\"\n\
             [[users]]\nname = \"rob\"\nrole = \"read\"\npassword_hash = \"$argon2id$b\"\n",
        )
        .unwrap();
        assert_eq!(v, "ann:admin:$argon2id$a;rob:read:$argon2id$b");
        let err =
            users("[[users]]\nname = \"a\"\nrole = \"read\"\npassword = \"x\"\n").unwrap_err();
        assert!(err.to_string().contains("plain-text"), "{err}");
        assert!(users("[[users]]\nname = \"a\"\nrole = \"read\"\n").is_err());
        assert!(
            users("[[users]]\nname = \"a\"\nrole = \"read\"\npassword_hash = \"h\"\nx = 1\n")
                .is_err()
        );
    }
}
