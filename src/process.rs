//! The one place that spawns short-lived programs (ffmpeg, ffprobe, ...). A program gets an explicit argument
//! vector (never a shell line), no standard input, a time limit, and dies with its future (`kill_on_drop`), so a
//! cancelled ticket or a hung decoder never leaves a child behind. It also dies with the service: every child
//! asks the kernel for `SIGKILL` when its parent goes away (`PR_SET_PDEATHSIG`), so even a SIGKILLed service (no
//! destructor runs) leaves no ffmpeg working on. Must never build a command line from a string or inherit stdin.
//!
//! `PR_SET_PDEATHSIG` fires when the *thread* that forked the child ends, not the process. Children are spawned
//! from the async function below, i.e. on tokio worker threads (or the thread of a `block_on`), which live as long
//! as the runtime; never call [`run_program`] from inside `spawn_blocking` (those threads end when idle and would
//! take a running child with them).
//!
//! The crate denies `unsafe_code`; the single exception is [`die_with_parent`], which registers the pre-exec hook
//! (see its `SAFETY` comment). The managed qbittorrent-nox (`torrent_client::managed`) still spawns its long-lived
//! child itself: it is supervised and restarted there, and a SIGKILLed service's orphan is stopped at the next
//! start-up.

use std::ffi::OsString;
use std::process::Stdio;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// How many bytes of a failed program's stderr an error keeps (the end is where ffmpeg says what went wrong).
const STDERR_TAIL_BYTES: usize = 1_500;

/// A program the service runs: where it is, how metrics name it, and which Debian package provides it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    /// A name on `PATH` or a path (from the configuration).
    pub path: String,
    /// The `system` label of the external-call metrics (`ffmpeg`, `ffprobe`).
    pub system: &'static str,
    /// The Debian package to install when it is missing.
    pub package: &'static str,
}

impl Program {
    /// ffmpeg at `path`.
    pub fn ffmpeg(path: &str) -> Program {
        Program { path: path.to_string(), system: "ffmpeg", package: "ffmpeg" }
    }

    /// ffprobe at `path`.
    pub fn ffprobe(path: &str) -> Program {
        Program { path: path.to_string(), system: "ffprobe", package: "ffmpeg" }
    }
}

/// Why running a program failed.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("{program} not found: apt-get install {package} (or set its path in the configuration)")]
    NotFound { program: String, package: &'static str },
    #[error("cannot start {program}: {source}")]
    Spawn { program: String, source: std::io::Error },
    #[error("{program} did not finish within {limit_secs} s and was killed")]
    TimedOut { program: String, limit_secs: u64 },
    #[error("{program} exited with {status}: {stderr_tail}")]
    Failed { program: String, status: String, stderr_tail: String, killed_by_signal: bool },
    #[error("{program} was stopped because the ticket was cancelled")]
    Cancelled { program: String },
}

impl ProcessError {
    /// A missing program, a spawn failure (e.g. too many open files) or a program killed by a signal (the kernel's
    /// out-of-memory killer, an operator) may succeed later without changing the input; a program that fails or
    /// hangs on a given input will do so again.
    pub fn is_retryable(&self) -> bool {
        match self {
            ProcessError::NotFound { .. } | ProcessError::Spawn { .. } => true,
            ProcessError::Failed { killed_by_signal, .. } => *killed_by_signal,
            ProcessError::TimedOut { .. } | ProcessError::Cancelled { .. } => false,
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
/// fires, when the returned future is dropped, or when this process dies.
pub async fn run_program(
    program: &Program,
    args: &[OsString],
    limit: Duration,
    cancel: &CancellationToken,
) -> Result<ProgramOutput, ProcessError> {
    let started = std::time::Instant::now();
    let outcome = run_program_unmeasured(program, args, limit, cancel).await;
    if !matches!(outcome, Err(ProcessError::Cancelled { .. })) {
        crate::metrics::external_call(program.system, outcome.is_ok(), started.elapsed());
    }
    outcome
}

async fn run_program_unmeasured(
    program: &Program,
    args: &[OsString],
    limit: Duration,
    cancel: &CancellationToken,
) -> Result<ProgramOutput, ProcessError> {
    let name = || program.path.clone();
    let mut command = tokio::process::Command::new(&program.path);
    command.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    die_with_parent(&mut command);
    let child = command.spawn().map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => ProcessError::NotFound { program: name(), package: program.package },
        _ => ProcessError::Spawn { program: name(), source },
    })?;
    let output = tokio::select! {
        biased;
        () = cancel.cancelled() => return Err(ProcessError::Cancelled { program: name() }),
        output = child.wait_with_output() => output,
        () = tokio::time::sleep(limit) => {
            return Err(ProcessError::TimedOut { program: name(), limit_secs: limit.as_secs() });
        }
    };
    let output = output.map_err(|source| ProcessError::Spawn { program: name(), source })?;
    if !output.status.success() {
        use std::os::unix::process::ExitStatusExt;
        return Err(ProcessError::Failed {
            program: name(),
            status: output.status.to_string(),
            stderr_tail: stderr_tail(&output.stderr),
            killed_by_signal: output.status.signal().is_some(),
        });
    }
    Ok(ProgramOutput { stdout: output.stdout, stderr: output.stderr })
}

/// Makes the child ask the kernel for `SIGKILL` when its parent (this service) dies, so no child outlives a
/// SIGKILLed service. A parent that died between `fork` and the request is caught by comparing `getppid()` with
/// the pid taken before the fork: the child then refuses to `exec`.
#[allow(unsafe_code)]
fn die_with_parent(command: &mut tokio::process::Command) {
    let Ok(parent) = libc::pid_t::try_from(std::process::id()) else {
        return;
    };
    // SAFETY: the closure runs in the forked child before `exec`, where only async-signal-safe operations are
    // allowed. It makes two system calls (`prctl`, `getppid`, both async-signal-safe), allocates nothing, takes
    // no lock and touches no memory shared with other threads; the errors it returns are built from plain integers
    // (`io::Error`'s OS variant, no allocation), which std's spawn code reports to the parent through its pipe.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

/// The last `STDERR_TAIL_BYTES` of `stderr` as text, trimmed.
pub fn stderr_tail(stderr: &[u8]) -> String {
    let start = stderr.len().saturating_sub(STDERR_TAIL_BYTES);
    String::from_utf8_lossy(&stderr[start..]).trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn program(path: &str) -> Program {
        Program { path: path.to_string(), system: "ffmpeg", package: "coreutils" }
    }

    #[tokio::test]
    async fn reports_missing_program_and_failure_with_stderr() {
        let cancel = CancellationToken::new();
        let err = run_program(&program("downloader2-no-such-program"), &[], Duration::from_secs(5), &cancel)
            .await
            .unwrap_err();
        assert!(matches!(err, ProcessError::NotFound { .. }), "{err:?}");
        assert!(err.to_string().contains("apt-get install coreutils"), "{err}");
        let args = vec![OsString::from("-c"), OsString::from("echo broken input >&2; exit 3")];
        let err = run_program(&program("sh"), &args, Duration::from_secs(5), &cancel).await.unwrap_err();
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
        let err = run_program(&program("sleep"), &args, Duration::from_millis(200), &cancel).await.unwrap_err();
        assert!(matches!(err, ProcessError::TimedOut { .. }), "{err:?}");
        cancel.cancel();
        let err = run_program(&program("sleep"), &args, Duration::from_secs(60), &cancel).await.unwrap_err();
        assert!(matches!(err, ProcessError::Cancelled { .. }), "{err:?}");
    }

    /// Dead or a zombie (nobody may reap it here).
    fn process_gone(pid: u32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => stat.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'),
            Err(_) => true,
        }
    }

    #[test]
    fn a_child_dies_with_the_thread_that_spawned_it() {
        // The parent-death signal is tied to the spawning thread: spawn from a thread, leak the future (so
        // `kill_on_drop` never runs), end the thread, and the kernel must kill the child.
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        let script = format!("echo $$ > {}.tmp; mv {0}.tmp {0}; exec sleep 60", pid_file.display());
        let watched = pid_file.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let cancel = CancellationToken::new();
            let args = vec![OsString::from("-c"), OsString::from(script)];
            let sh = program("sh");
            let mut running = Box::pin(run_program(&sh, &args, Duration::from_secs(120), &cancel));
            runtime.block_on(async {
                let started = async {
                    while !watched.exists() {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                };
                tokio::select! {
                    outcome = &mut running => panic!("sleep ended early: {outcome:?}"),
                    () = started => {}
                }
            });
            std::mem::forget(running);
        })
        .join()
        .unwrap();
        let pid: u32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !process_gone(pid) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(process_gone(pid), "child {pid} outlived the thread that spawned it");
    }

    #[test]
    fn time_limit_grows_with_length() {
        assert!(time_limit_for(600.0) > time_limit_for(10.0));
        assert_eq!(time_limit_for(f64::NAN), Duration::from_secs(60));
    }
}
