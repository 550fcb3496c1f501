//! Limits that protect a server from its clients (issue 24; SECURITY.md):
//! connections, query memory.

use std::time::Duration;

/// Flight SQL connection limits (`weir serve`).
#[derive(Debug, Clone, clap::Args)]
pub struct ConnectionConfig {
    /// Most Flight SQL connections open at once; further ones are closed as
    /// they arrive.
    #[arg(long, env = "WEIR_MAX_CONNECTIONS", default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// A connection without an authenticated call for this long is closed
    /// (HTTP/2 GOAWAY: calls in flight finish, clients reconnect).
    #[arg(long, env = "WEIR_CONNECTION_IDLE_TIMEOUT", value_parser = humantime::parse_duration, default_value = "10m")]
    pub connection_idle_timeout: Duration,

    /// A new connection must make its first authenticated call within this
    /// time (TLS handshake included).
    #[arg(long, env = "WEIR_CONNECTION_FIRST_CALL_TIMEOUT", value_parser = humantime::parse_duration, default_value = "10s")]
    pub connection_first_call_timeout: Duration,
}

/// `--query-memory-mb`: `auto`, a number of MiB, or 0 for no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryLimit {
    /// Half of the machine's memory (or of the cgroup's limit).
    Auto,
    /// No limit: a single query can take the server down.
    Unbounded,
    Mib(usize),
}

impl std::str::FromStr for MemoryLimit {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "auto" => Ok(MemoryLimit::Auto),
            "0" => Ok(MemoryLimit::Unbounded),
            n => n
                .parse::<usize>()
                .map(MemoryLimit::Mib)
                .map_err(|_| format!("{s:?} is not `auto` or a number of MiB")),
        }
    }
}

impl std::fmt::Display for MemoryLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MemoryLimit::Auto => f.write_str("auto"),
            MemoryLimit::Unbounded => f.write_str("0"),
            MemoryLimit::Mib(n) => write!(f, "{n}"),
        }
    }
}

impl MemoryLimit {
    /// The limit in bytes (None: unbounded).
    pub fn bytes(self) -> Option<usize> {
        match self {
            MemoryLimit::Auto => Some(available_memory() / 2),
            MemoryLimit::Unbounded => None,
            MemoryLimit::Mib(n) => Some(n << 20),
        }
    }
}

/// The memory this process may use: the cgroup (v2) limit if one is set,
/// else the machine's RAM; 4 GiB if neither can be read.
pub fn available_memory() -> usize {
    let cgroup = std::fs::read_to_string("/sys/fs/cgroup/memory.max")
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok());
    let physical = std::fs::read_to_string("/proc/meminfo").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
            .map(|kb| kb * 1024)
    });
    match (cgroup, physical) {
        (Some(c), Some(p)) => c.min(p),
        (Some(c), None) => c,
        (None, Some(p)) => p,
        (None, None) => 4 << 30,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_limits_parse() {
        assert_eq!("auto".parse::<MemoryLimit>().unwrap(), MemoryLimit::Auto);
        assert_eq!("0".parse::<MemoryLimit>().unwrap(), MemoryLimit::Unbounded);
        assert_eq!(
            "512".parse::<MemoryLimit>().unwrap().bytes(),
            Some(512 << 20)
        );
        assert!("lots".parse::<MemoryLimit>().is_err());
        let auto = MemoryLimit::Auto.bytes().unwrap();
        assert!(auto > 64 << 20 && auto <= available_memory());
    }
}
