//! Flight SQL authentication and TLS settings of `weir serve`.

use std::path::PathBuf;
use std::time::Duration;

/// Who may connect to the Flight SQL server, and over what.
#[derive(Debug, Clone, clap::Args)]
pub struct AuthConfig {
    /// required | optional | off. Default: required when users are
    /// configured or the listen address is not loopback (the server refuses
    /// to start without users then); off on loopback without users.
    /// optional: credentials are checked when sent, callers without any are
    /// read-only (admin while no users exist).
    #[arg(long = "auth", env = "WEIR_AUTH", value_parser = ["required", "optional", "off"])]
    pub auth: Option<String>,

    /// Users, `name:role:argon2-hash` (role read, write or admin; hash from
    /// `weir hash-password`); repeatable, `;`-separated in the variable.
    /// In weir.toml: `[[users]]` tables with name, role and password_hash.
    #[arg(
        long = "users",
        env = "WEIR_USERS",
        value_delimiter = ';',
        hide_env_values = true
    )]
    pub users: Vec<String>,

    /// Lifetime of the Bearer tokens the handshake issues, e.g. `1h`, `15m`.
    #[arg(long, env = "WEIR_TOKEN_TTL", value_parser = humantime::parse_duration, default_value = "1h")]
    pub token_ttl: Duration,

    /// Serve TLS with this PEM certificate chain (needs --tls-key).
    #[arg(long, env = "WEIR_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert.
    #[arg(long, env = "WEIR_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(flatten)]
        auth: AuthConfig,
    }

    #[test]
    fn users_repeat_and_tls_needs_both_files() {
        let cli = Cli::try_parse_from([
            "weir",
            "--users",
            "a:read:h1;b:admin:h2",
            "--users",
            "c:write:h3",
        ])
        .unwrap();
        assert_eq!(cli.auth.users, ["a:read:h1", "b:admin:h2", "c:write:h3"]);
        assert_eq!(cli.auth.token_ttl, Duration::from_secs(3600));
        assert!(Cli::try_parse_from(["weir", "--tls-cert", "c.pem"]).is_err());
        let cli =
            Cli::try_parse_from(["weir", "--tls-cert", "c.pem", "--tls-key", "k.pem"]).unwrap();
        assert_eq!(cli.auth.tls_key, Some(PathBuf::from("k.pem")));
    }
}
