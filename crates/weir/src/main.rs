//! `weir`: the open lakehouse for device telemetry. Thin entry point: parse
//! configuration, set up logging, hand over to a command.

mod commands;

/// Query execution allocates from every worker thread (hash tables, Arrow
/// buffers, Parquet pages); glibc's per-thread arenas fragment under that and
/// after large refreshes. mimalloc is what datafusion-cli ships with.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{CommandFactory, Parser};

#[derive(Debug, Parser)]
#[command(
    name = "weir",
    version,
    about = "The open lakehouse for device telemetry"
)]
struct Cli {
    /// Config file (TOML; keys are flag names). Default: ./weir.toml if present.
    #[arg(long, env = "WEIR_CONFIG", global = true)]
    config: Option<std::path::PathBuf>,

    /// Log filter (tracing EnvFilter syntax), e.g. `info,weir_query=debug`.
    #[arg(long, env = "WEIR_LOG", default_value = "info", global = true)]
    log: String,

    #[command(flatten)]
    observe: weir_config::ObserveConfig,

    #[command(subcommand)]
    command: commands::Command,
}

fn main() -> anyhow::Result<()> {
    // The config file feeds WEIR_* variables, so it is read before clap
    // resolves flags (flag > env > file > default) and before any thread starts.
    let config = commands::config_path_from_args();
    weir_config::apply_config_file(config.as_deref(), &commands::known_env(&Cli::command()))?;
    let cli = Cli::parse();
    weir_observe::init_logging(
        &cli.log,
        cli.observe.log_format == weir_config::LogFormat::Json,
    )?;
    // Planning recurses over a statement's expression tree (DataFusion grows
    // its own stack where it recurses most; Weir's rewrite and the drop of
    // deep plans do not): 16 MiB per worker (reserved, touched as used)
    // keeps the deepest statement the parser admits (weir_query::
    // MAX_EXPRESSION_DEPTH) far from the guard page.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(16 << 20)
        .build()?;
    runtime.block_on(cli.command.run(cli.observe))
}
