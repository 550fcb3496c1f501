//! The `weir` subcommands.

mod serve;

use std::path::PathBuf;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Serve SQL over Arrow Flight SQL (and run configured sources, or the demo).
    Serve(weir_config::ServeConfig),
}

impl Command {
    pub async fn run(self) -> anyhow::Result<()> {
        match self {
            Command::Serve(cfg) => serve::run(cfg).await,
        }
    }
}

/// `--config PATH` / `--config=PATH` / `WEIR_CONFIG`, read before clap parses.
pub fn config_path_from_args() -> Option<PathBuf> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .enumerate()
        .find_map(|(i, a)| match a.strip_prefix("--config") {
            Some("") => args.get(i + 1).cloned(),
            Some(rest) => rest.strip_prefix('=').map(str::to_string),
            None => None,
        })
        .or_else(|| std::env::var("WEIR_CONFIG").ok())
        .map(PathBuf::from)
}

/// Every `WEIR_*` variable the command line understands.
pub fn known_env(cmd: &clap::Command) -> Vec<String> {
    let mut out: Vec<String> = cmd
        .get_arguments()
        .filter_map(|a| a.get_env().map(|e| e.to_string_lossy().into_owned()))
        .collect();
    for sub in cmd.get_subcommands() {
        out.extend(known_env(sub));
    }
    out.sort();
    out.dedup();
    out
}
