//! The `downloader2` command line: parses arguments, sets up logging, and calls the library. Errors are printed as
//! one line and exit non-zero; `anyhow` is used here only.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use downloader2::Config;

#[derive(Debug, Parser)]
#[command(name = "downloader2", version, about = "Fetches music albums for a catalog server")]
struct Cli {
    /// Log line format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start the service.
    Serve {
        /// TOML configuration file (every key optional; DOWNLOADER2_<SECTION>_<KEY> variables override it).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Validate a configuration and print it with secrets redacted.
    CheckConfig {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Score the candidates of a case file ({"ticket": ..., "candidates": [...]}) and print the decision as JSON.
    /// Needs no config file, database or network.
    Match {
        /// The case file.
        case: PathBuf,
        /// Auto-approval threshold; default: `[matcher] auto_approve_threshold` of --config, else its default.
        #[arg(long)]
        threshold: Option<f64>,
        /// Configuration file to take the threshold from.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let terminate = async {
        match signal(SignalKind::terminate()) {
            Ok(mut stream) => {
                stream.recv().await;
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        () = terminate => {},
    }
    tracing::info!("shutdown requested");
}

async fn serve(config_path: Option<PathBuf>) -> anyhow::Result<()> {
    let config = Config::load(config_path.as_deref())?;
    let app = downloader2::prepare(config).await?;
    let listener = downloader2::server::bind(&app.config).await?;
    downloader2::server::serve(app, listener, shutdown_signal()).await?;
    Ok(())
}

fn check_config(config_path: Option<PathBuf>) -> anyhow::Result<()> {
    let config = Config::load(config_path.as_deref())?;
    let text = toml::to_string_pretty(&config.redacted()).context("cannot print the configuration")?;
    println!("{text}");
    eprintln!("configuration is valid");
    Ok(())
}

fn match_case(case: PathBuf, threshold: Option<f64>, config_path: Option<PathBuf>) -> anyhow::Result<()> {
    let threshold = match threshold {
        Some(threshold) => threshold,
        None => match config_path {
            Some(path) => Config::load(Some(&path))?.matcher.auto_approve_threshold,
            None => downloader2::config::MatcherConfig::default().auto_approve_threshold,
        },
    };
    let input = std::fs::read(&case).with_context(|| format!("cannot read {}", case.display()))?;
    let output = downloader2::matcher::run_match_command(&input, threshold)
        .with_context(|| format!("invalid case file {}", case.display()))?;
    println!("{output}");
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let result = match cli.command {
        Command::Serve { config } => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")
            .and_then(|runtime| runtime.block_on(serve(config))),
        Command::CheckConfig { config } => check_config(config),
        Command::Match { case, threshold, config } => match_case(case, threshold, config),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("downloader2: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
