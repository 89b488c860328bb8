//! `downloader2 verify [--json] FILE...`: the verifier for people and scripts, with no configuration, database or
//! network. One JSON object per file (JSON lines) or a readable table; the caller turns "every file judged" into
//! the exit status.

use std::path::PathBuf;

use super::{verify_set, FileToVerify, VerifierSettings};
use crate::models::verification::FileVerification;

/// What the command prints and whether every file could be judged (opened and decoded far enough for a verdict;
/// a corrupt file is a judgement, a missing one is not).
#[derive(Debug, Clone, PartialEq)]
pub struct VerifyCommandOutput {
    pub text: String,
    pub all_judged: bool,
}

/// The fields every JSON line carries, in this order.
fn json_line(file: &FileVerification) -> serde_json::Value {
    let mut value = serde_json::to_value(file).unwrap_or_default();
    if let Some(object) = value.as_object_mut() {
        object.insert("verdict".into(), serde_json::Value::String(file.verdict.as_str().into()));
    }
    value
}

fn table(files: &[FileVerification]) -> String {
    let mut out = String::from("VERDICT  CUTOFF     UPSMPL PAD DUP  LUFS    dBTP   FILE — REASON\n");
    for file in files {
        let cutoff = file.cutoff_hz.map_or("-".to_string(), |hz| format!("{:.1} kHz", hz / 1000.0));
        let lufs = file.loudness_lufs.map_or("-".to_string(), |lufs| format!("{lufs:.1}"));
        let peak = file.true_peak_dbtp.map_or("-".to_string(), |peak| format!("{peak:.1}"));
        let duplicate = if file.duplicate_of.is_some() { "yes" } else { "-" };
        out.push_str(&format!(
            "{:<8} {:<10} {:<6} {:<3} {:<4} {:<7} {:<6} {} — {}{}\n",
            file.verdict.as_str(),
            cutoff,
            if file.upsampled { "yes" } else { "-" },
            file.padded_bits,
            duplicate,
            lufs,
            peak,
            file.path,
            file.reason,
            file.duplicate_of.as_ref().map_or(String::new(), |other| format!(" (same audio as {other})")),
        ));
    }
    out
}

/// Verifies `paths` with the default settings, using every core.
pub fn run_verify_command(paths: &[PathBuf], json: bool) -> VerifyCommandOutput {
    let files: Vec<FileToVerify> =
        paths.iter().map(|path| FileToVerify { path: path.clone(), shown: path.display().to_string() }).collect();
    let parallelism = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let never = || false;
    let Some(set) = verify_set(&files, &VerifierSettings::default(), parallelism, &never) else {
        return VerifyCommandOutput { text: String::new(), all_judged: false };
    };
    let all_judged = set.files.iter().all(|file| !file.codec.is_empty());
    let text = if json {
        set.files.iter().map(|file| json_line(file).to_string() + "\n").collect()
    } else {
        let mut text = table(&set.files);
        if let Some(album) = &set.album {
            text.push_str(&format!(
                "album: {:.1} LUFS, true peak {:.1} dBTP\n",
                album.loudness_lufs, album.true_peak_dbtp
            ));
        }
        text
    };
    VerifyCommandOutput { text, all_judged }
}
