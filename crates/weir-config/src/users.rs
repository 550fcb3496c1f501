//! `[[users]]` in weir.toml: each table (`name`, `role`, `password_hash`)
//! becomes one `name:role:hash` entry of `WEIR_USERS` (`;`-separated), the
//! form `--users` takes. Plain-text passwords are refused here already.

/// The `WEIR_USERS` value for the `[[users]]` array.
pub(crate) fn users_setting(items: &[toml::Value]) -> Result<String, String> {
    let mut entries = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let toml::Value::Table(table) = item else {
            return Err(format!("users[{i}]: expected a [[users]] table"));
        };
        let field = |name: &str| -> Result<&str, String> {
            match table.get(name) {
                Some(toml::Value::String(s)) if !s.is_empty() => Ok(s.as_str()),
                Some(_) => Err(format!("users[{i}].{name} must be a non-empty string")),
                None => Err(format!("users[{i}]: `{name}` is missing")),
            }
        };
        if table.contains_key("password") {
            return Err(format!(
                "users[{i}]: plain-text `password` is not accepted; store \
                 `password_hash` (from `weir hash-password`)"
            ));
        }
        if let Some(unknown) = table
            .keys()
            .find(|k| !["name", "role", "password_hash"].contains(&k.as_str()))
        {
            return Err(format!("users[{i}]: unknown key `{unknown}`"));
        }
        let (name, role, hash) = (field("name")?, field("role")?, field("password_hash")?);
        if [name, role, hash].iter().any(|v| v.contains(';')) {
            return Err(format!("users[{i}]: values may not contain `;`"));
        }
        entries.push(format!("{name}:{role}:{hash}"));
    }
    Ok(entries.join(";"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users(text: &str) -> Result<String, String> {
        let table: toml::Table = toml::from_str(text).unwrap();
        match &table["users"] {
            toml::Value::Array(items) => users_setting(items),
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
        assert!(err.contains("plain-text"), "{err}");
        assert!(users("[[users]]\nname = \"a\"\nrole = \"read\"\n").is_err());
        assert!(
            users("[[users]]\nname = \"a\"\nrole = \"read\"\npassword_hash = \"h\"\nx = 1\n")
                .is_err()
        );
    }
}
