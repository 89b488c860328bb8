//! The one place that spawns programs (ffmpeg, ffprobe). A program gets an explicit argument vector (never a shell
//! line), no standard input, a time limit, and dies with its future (`kill_on_drop`), so a cancelled ticket or a
//! hung decoder never leaves a child behind. Must never build a command line from a string or inherit stdin.

use std::ffi::OsString;
use std::process::Stdio;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// How many bytes of a failed program's stderr an error keeps (the end is where ffmpeg says what went wrong).
const STDERR_TAIL_BYTES: usize = 1_500;

/// Why running a program failed.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("{program} not found: apt-get install ffmpeg (or set [converter] ffmpeg_path / ffprobe_path)")]
    NotFound { program: String },
    #[error("cannot start {program}: {source}")]
    Spawn { program: String, source: std::io::Error },
    #[error("{program} did not finish within {limit_secs} s and was killed")]
    TimedOut { program: String, limit_secs: u64 },
    #[error("{program} exited with {status}: {stderr_tail}")]
    Failed { program: String, status: String, stderr_tail: String },
    #[error("{program} was stopped because the ticket was cancelled")]
    Cancelled { program: String },
}

impl ProcessError {
    /// A missing program or a spawn failure (e.g. too many open files) may be fixed without changing the input;
    /// a program that fails or hangs on a given input will do so again.
    pub fn is_retryable(&self) -> bool {
        match self {
            ProcessError::NotFound { .. } | ProcessError::Spawn { .. } => true,
            ProcessError::TimedOut { .. } | ProcessError::Failed { .. } | ProcessError::Cancelled { .. } => false,
        }
    }
}

/// What a program that exited successfully printed.
#[derive(Debug)]
pub struct ProgramOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// The time limit of one ffmpeg/ffprobe run on `media_secs` seconds of audio: a fixed 60 s for start-up and
/// probing plus 3 s per second of audio (ffmpeg transcodes far faster than real time; the margin covers a loaded
/// 2-core machine), at most 4 hours.
pub fn time_limit_for(media_secs: f64) -> Duration {
    let secs = if media_secs.is_finite() && media_secs > 0.0 { media_secs } else { 0.0 };
    Duration::from_secs_f64((60.0 + 3.0 * secs).min(4.0 * 3600.0))
}

/// Runs `program` with `args`, no stdin, stdout and stderr captured, killed when `limit` passes, when `cancel`
/// fires, or when the returned future is dropped.
pub async fn run_program(
    program: &str,
    args: &[OsString],
    limit: Duration,
    cancel: &CancellationToken,
) -> Result<ProgramOutput, ProcessError> {
    let started = std::time::Instant::now();
    let outcome = run_program_unmeasured(program, args, limit, cancel).await;
    if !matches!(outcome, Err(ProcessError::Cancelled { .. })) {
        let system = if program.ends_with("ffprobe") { "ffprobe" } else { "ffmpeg" };
        crate::metrics::external_call(system, outcome.is_ok(), started.elapsed());
    }
    outcome
}

async fn run_program_unmeasured(
    program: &str,
    args: &[OsString],
    limit: Duration,
    cancel: &CancellationToken,
) -> Result<ProgramOutput, ProcessError> {
    let mut command = tokio::process::Command::new(program);
    command.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    let child = command.spawn().map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => ProcessError::NotFound { program: program.to_string() },
        _ => ProcessError::Spawn { program: program.to_string(), source },
    })?;
    let output = tokio::select! {
        biased;
        () = cancel.cancelled() => return Err(ProcessError::Cancelled { program: program.to_string() }),
        output = child.wait_with_output() => output,
        () = tokio::time::sleep(limit) => {
            return Err(ProcessError::TimedOut { program: program.to_string(), limit_secs: limit.as_secs() });
        }
    };
    let output = output.map_err(|source| ProcessError::Spawn { program: program.to_string(), source })?;
    if !output.status.success() {
        return Err(ProcessError::Failed {
            program: program.to_string(),
            status: output.status.to_string(),
            stderr_tail: stderr_tail(&output.stderr),
        });
    }
    Ok(ProgramOutput { stdout: output.stdout, stderr: output.stderr })
}

/// The last `STDERR_TAIL_BYTES` of `stderr` as text, trimmed.
fn stderr_tail(stderr: &[u8]) -> String {
    let start = stderr.len().saturating_sub(STDERR_TAIL_BYTES);
    String::from_utf8_lossy(&stderr[start..]).trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reports_missing_program_and_failure_with_stderr() {
        let cancel = CancellationToken::new();
        let err = run_program("downloader2-no-such-program", &[], Duration::from_secs(5), &cancel).await.unwrap_err();
        assert!(matches!(err, ProcessError::NotFound { .. }), "{err:?}");
        let args = vec![OsString::from("-c"), OsString::from("echo broken input >&2; exit 3")];
        let err = run_program("sh", &args, Duration::from_secs(5), &cancel).await.unwrap_err();
        match err {
            ProcessError::Failed { status, stderr_tail, .. } => {
                assert!(status.contains('3'), "{status}");
                assert_eq!(stderr_tail, "broken input");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn kills_on_timeout_and_cancel() {
        let cancel = CancellationToken::new();
        let args = vec![OsString::from("60")];
        let err = run_program("sleep", &args, Duration::from_millis(200), &cancel).await.unwrap_err();
        assert!(matches!(err, ProcessError::TimedOut { .. }), "{err:?}");
        cancel.cancel();
        let err = run_program("sleep", &args, Duration::from_secs(60), &cancel).await.unwrap_err();
        assert!(matches!(err, ProcessError::Cancelled { .. }), "{err:?}");
    }

    #[test]
    fn time_limit_grows_with_length() {
        assert!(time_limit_for(600.0) > time_limit_for(10.0));
        assert_eq!(time_limit_for(f64::NAN), Duration::from_secs(60));
    }
}
