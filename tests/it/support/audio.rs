//! Audio and image fixtures generated with the real ffmpeg at test time (lavfi noise and colour sources), plus an
//! independent ffprobe reader for assertions. Nothing here is committed as a binary; a missing ffmpeg fails the
//! test with the package to install.

use std::path::Path;
use std::process::Command;

/// Runs a program and panics with its stderr (or the package to install) when it fails.
pub fn run(program: &str, args: &[&str]) -> Vec<u8> {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|err| panic!("cannot run {program} ({err}): apt-get install ffmpeg"));
    assert!(output.status.success(), "{program} {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    output.stdout
}

/// Runs ffmpeg quietly (`-hide_banner -loglevel error -y` before `args`), panicking with its stderr on failure.
pub fn ffmpeg(args: &[&str]) -> Vec<u8> {
    let mut all = vec!["-hide_banner", "-loglevel", "error", "-y"];
    all.extend_from_slice(args);
    run("ffmpeg", &all)
}

/// Writes `secs` seconds of independent pink noise per channel (hard to compress, so lossy encoders reach their
/// bitrates) to `path`, encoded with `codec_args` (e.g. `["-c:a", "flac", "-sample_fmt", "s16"]`), with the
/// given source tags (which the converter must drop).
pub fn write_noise(path: &Path, secs: f64, rate: u32, channels: u32, codec_args: &[&str], tags: &[(&str, &str)]) {
    let mut graph = String::new();
    for channel in 0..channels {
        graph.push_str(&format!("anoisesrc=d={secs}:c=pink:r={rate}:a=0.4:s={}[c{channel}];", channel + 7));
    }
    for channel in 0..channels {
        graph.push_str(&format!("[c{channel}]"));
    }
    graph.push_str(&format!("amerge=inputs={channels}[out]"));
    let mut args: Vec<String> = ["-filter_complex", &graph, "-map", "[out]"].map(String::from).to_vec();
    if channels == 6 {
        args.extend(["-channel_layout".to_string(), "5.1".to_string()]);
    }
    for (key, value) in tags {
        args.push("-metadata".into());
        args.push(format!("{key}={value}"));
    }
    args.extend(codec_args.iter().map(|arg| arg.to_string()));
    args.push(path.to_str().unwrap().to_string());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    ffmpeg(&refs);
}

/// A 16-bit FLAC of pink noise.
pub fn write_flac(path: &Path, secs: f64, rate: u32, channels: u32) {
    write_noise(path, secs, rate, channels, &["-c:a", "flac", "-sample_fmt", "s16"], &[("title", "Source Title")]);
}

/// A JPEG (or PNG, by extension) of `width` x `height` pixels with a test pattern.
pub fn write_image(path: &Path, width: u32, height: u32) {
    let source = format!("testsrc2=s={width}x{height}:d=1");
    ffmpeg(&["-f", "lavfi", "-i", &source, "-frames:v", "1", path.to_str().unwrap()]);
}

/// ffprobe's JSON view (format + streams) of a file.
pub fn probe(path: &Path) -> serde_json::Value {
    let url = format!("file:{}", path.display());
    let out = run("ffprobe", &["-v", "error", "-print_format", "json", "-show_format", "-show_streams", "-i", &url]);
    serde_json::from_slice(&out).unwrap()
}

/// The first audio stream of a probe.
pub fn audio_stream(probe: &serde_json::Value) -> &serde_json::Value {
    probe["streams"].as_array().unwrap().iter().find(|s| s["codec_type"] == "audio").unwrap()
}

/// The audio payload bitrate in kbit/s: the sum of the audio packet sizes over the duration (container and tags
/// excluded).
pub fn audio_payload_kbps(path: &Path) -> f64 {
    let url = format!("file:{}", path.display());
    let out = run(
        "ffprobe",
        &["-v", "error", "-select_streams", "a:0", "-show_entries", "packet=size", "-of", "csv=p=0", "-i", &url],
    );
    let bytes: u64 = String::from_utf8_lossy(&out).lines().filter_map(|line| line.trim().parse::<u64>().ok()).sum();
    let duration: f64 = probe(path)["format"]["duration"].as_str().unwrap().parse().unwrap();
    bytes as f64 * 8.0 / duration / 1000.0
}

/// Exact decoded sample count of a file (decodes it fully with ffmpeg and counts).
pub fn decoded_samples(path: &Path) -> u64 {
    let url = format!("file:{}", path.display());
    let out = run(
        "ffprobe",
        &["-v", "error", "-select_streams", "a:0", "-show_entries", "frame=nb_samples", "-of", "csv=p=0", "-i", &url],
    );
    String::from_utf8_lossy(&out).lines().filter_map(|line| line.trim().trim_end_matches(',').parse::<u64>().ok()).sum()
}
