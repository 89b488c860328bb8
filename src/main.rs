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
    /// Needs no config file, database or network (unless --llm).
    Match {
        /// The case file.
        case: PathBuf,
        /// Auto-approval threshold; default: `[matcher] auto_approve_threshold` of --config, else its default.
        #[arg(long)]
        threshold: Option<f64>,
        /// Configuration file to take the threshold (and with --llm the provider) from.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Ask the configured LLM (`[matcher] llm_provider`) for its second opinion, under the guard rails.
        #[arg(long)]
        llm: bool,
    },
    /// Check audio files: integrity, lossy transcodes in lossless files, upsampling, padded bits, duplicates and
    /// loudness. Needs no config file, database or network. Exit status 0 when every file could be judged.
    Verify {
        /// Print one JSON object per file (JSON lines) instead of a table.
        #[arg(long)]
        json: bool,
        /// The audio files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

fn init_logging(format: LogFormat) {
    downloader2::logging::init(match format {
        LogFormat::Text => downloader2::logging::LogFormat::Text,
        LogFormat::Json => downloader2::logging::LogFormat::Json,
    });
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

fn match_case(case: PathBuf, threshold: Option<f64>, config_path: Option<PathBuf>, llm: bool) -> anyhow::Result<()> {
    let config = match (&config_path, llm) {
        (Some(path), _) => Some(Config::load(Some(path))?),
        (None, true) => Some(Config::load(None)?),
        (None, false) => None,
    };
    let threshold = threshold
        .or(config.as_ref().map(|config| config.matcher.auto_approve_threshold))
        .unwrap_or(downloader2::config::MatcherConfig::default().auto_approve_threshold);
    let input = std::fs::read(&case).with_context(|| format!("cannot read {}", case.display()))?;
    let invalid = || format!("invalid case file {}", case.display());
    let output = match config.filter(|_| llm) {
        None => downloader2::matcher::run_match_command(&input, threshold).with_context(invalid)?,
        Some(config) => {
            use downloader2::matcher::command::{check_threshold, parse_match_input, render_outcome};
            check_threshold(threshold).with_context(invalid)?;
            let parsed = parse_match_input(&input).with_context(invalid)?;
            let provider = downloader2::llm::configured_provider(&config.matcher)?
                .context("--llm needs [matcher] llm_provider = anthropic, openai or local")?;
            let refiner = downloader2::processor::llm_refine::LlmRefiner::from_config(provider, None, &config.matcher);
            let outcome = downloader2::matcher::match_candidates(&parsed.ticket, &parsed.candidates, threshold);
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            let (outcome, report) =
                runtime.block_on(refiner.refine(&parsed.ticket, &parsed.candidates, outcome, threshold));
            eprintln!("llm: {}", serde_json::to_string(&report)?);
            render_outcome(&outcome).with_context(invalid)?
        }
    };
    println!("{output}");
    Ok(())
}

fn verify_files(files: &[PathBuf], json: bool) -> anyhow::Result<()> {
    let output = downloader2::verifier::command::run_verify_command(files, json);
    print!("{}", output.text);
    if !output.all_judged {
        anyhow::bail!("some files could not be judged (see their reason)");
    }
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
        Command::Match { case, threshold, config, llm } => match_case(case, threshold, config, llm),
        Command::Verify { json, files } => verify_files(&files, json),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("downloader2: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
