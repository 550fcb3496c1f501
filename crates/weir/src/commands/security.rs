//! Flight SQL authentication and TLS settings of `weir serve`, and
//! `weir hash-password`.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::Context;
use weir_config::AuthConfig;
use weir_flight::{AuthOptions, TlsFiles, UserEntry};

/// `--auth`, `--users`, `--token-ttl` as the server's options (users are
/// validated here: a malformed entry or a plain-text password fails the start).
pub(super) fn auth_options(cfg: &AuthConfig) -> anyhow::Result<AuthOptions> {
    let users = cfg
        .users
        .iter()
        .filter(|u| !u.trim().is_empty())
        .map(|u| u.parse::<UserEntry>())
        .collect::<Result<Vec<_>, _>>()?;
    Ok(AuthOptions {
        mode: cfg.auth.as_deref().map(str::parse).transpose()?,
        users,
        token_ttl: cfg.token_ttl,
    })
}

pub(super) fn tls_files(cfg: &AuthConfig) -> Option<TlsFiles> {
    match (&cfg.tls_cert, &cfg.tls_key) {
        (Some(cert), Some(key)) => Some(TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
        }),
        _ => None,
    }
}

/// Reads one password line from stdin and prints its Argon2id hash.
pub(super) fn hash_password_command() -> anyhow::Result<()> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("password (input is echoed): ");
        std::io::stderr().flush()?;
    }
    let mut line = String::new();
    stdin
        .lock()
        .read_line(&mut line)
        .context("reading the password from stdin")?;
    let password = line.trim_end_matches(['\n', '\r']);
    anyhow::ensure!(!password.is_empty(), "empty password on stdin");
    println!("{}", weir_flight::hash_password(password)?);
    Ok(())
}
