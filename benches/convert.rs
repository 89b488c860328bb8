//! Benchmark of a whole album's conversion against plain ffmpeg, for every output format and a CUE image album.
//!
//! The album: 12 x 60 s stereo pink-noise FLAC (44.1 kHz, 16-bit, generated with ffmpeg), a 600 x 600 `cover.jpg`
//! that is embedded and placed, four album tags. The CUE album: the same 12 minutes as one FLAC image with a sheet.
//! For each case and round, in the same process and one after the other:
//! - **ideal**: the converter's exact ffmpeg encode commands (same plan, same arguments) run one at a time; the sum
//!   of those single runs divided by `max_parallel_conversions` (2) is what a perfect scheduler would need;
//! - **plain ffmpeg parallel**: the same commands, 2 at a time, nothing else: what the (shared) machine gives now;
//! - **converter**: `FfmpegConverter::convert_ticket` on the same album: source inspection, encodes, tags, cover,
//!   validation, images.
//!
//! Cases are interleaved within each round and the summary takes medians over the rounds, so a burst of load from
//! other programs hits one measurement, not one case. Beside wall-clock times it prints CPU times (this process and
//! its waited-for children, from `/proc/self/stat`): on a machine shared with other work the wall clock mostly
//! measures the neighbours, while the converter's CPU against the single runs' CPU still shows what the converter
//! adds (probes, tags, validation) on the same cores. Rounds: `D2_BENCH_ROUNDS` (default 3). Prints figures;
//! asserts nothing about time. Run: `cargo bench --bench convert`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::cast_possible_truncation)]

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use downloader2::config::ConverterConfig;
use downloader2::converter::{cue, ffmpeg, probe, ConversionJob, Converter, FfmpegConverter, SampleRange, SourceInfo};
use downloader2::models::{
    Constraints, ImageType, OutputFormat, SearchHints, Ticket, TicketImage, TicketTrack, TorrentFile, TrackMapping,
};
use tokio_util::sync::CancellationToken;

const TRACKS: usize = 12;
const TRACK_SECS: f64 = 60.0;
const PARALLELISM: usize = 2;
const IMAGE: &str = "Album.flac";

/// One benchmarked case: an output format on the track album or on the CUE image.
#[derive(Debug, Clone, Copy)]
struct Case {
    name: &'static str,
    format: OutputFormat,
    bitrate_kbps: Option<u32>,
    cue_image: bool,
}

const CASES: [Case; 6] = [
    Case { name: "ogg_vorbis 320", format: OutputFormat::OggVorbis, bitrate_kbps: Some(320), cue_image: false },
    Case { name: "opus 160", format: OutputFormat::Opus, bitrate_kbps: Some(160), cue_image: false },
    Case { name: "mp3 320", format: OutputFormat::Mp3, bitrate_kbps: Some(320), cue_image: false },
    Case { name: "flac", format: OutputFormat::Flac, bitrate_kbps: None, cue_image: false },
    Case { name: "aac 256", format: OutputFormat::Aac, bitrate_kbps: Some(256), cue_image: false },
    Case {
        name: "CUE image -> ogg_vorbis 320",
        format: OutputFormat::OggVorbis,
        bitrate_kbps: Some(320),
        cue_image: true,
    },
];

/// One round's figures for one case, in seconds.
#[derive(Debug, Clone, Copy)]
struct Figures {
    ideal: f64,
    plain_parallel: f64,
    converter: f64,
    /// CPU of the single runs, summed.
    single_cpu: f64,
    /// CPU of the plain parallel runs.
    plain_cpu: f64,
    /// CPU of the converter: its own threads and its ffmpeg children.
    converter_cpu: f64,
}

/// CPU seconds used so far by this process and its waited-for children (`utime + stime + cutime + cstime` of
/// `/proc/self/stat`, in USER_HZ = 100 ticks per second on Linux).
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    // Field 3 (state) is index 0, so utime (14), stime (15), cutime (16), cstime (17) are 11..=14.
    fields[11..=14].iter().map(|field| field.parse::<f64>().unwrap()).sum::<f64>() / 100.0
}

fn ffmpeg_status(args: &[&str]) {
    let status = Command::new("ffmpeg").args(args).status().expect("ffmpeg not found: apt-get install ffmpeg");
    assert!(status.success(), "ffmpeg {args:?}");
}

fn noise_graph(secs: f64, seed: usize) -> String {
    format!(
        "anoisesrc=d={secs}:c=pink:r=44100:a=0.4:s={}[l];anoisesrc=d={secs}:c=pink:r=44100:a=0.4:s={}[r];\
         [l][r]amerge=inputs=2[out]",
        seed * 2 + 1,
        seed * 2 + 2
    )
}

fn generate_flac(path: &Path, secs: f64, seed: usize) {
    let graph = noise_graph(secs, seed);
    let path = path.to_str().unwrap();
    ffmpeg_status(
        &["-hide_banner", "-loglevel", "error", "-y", "-filter_complex", &graph, "-map", "[out]"]
            .into_iter()
            .chain(["-c:a", "flac", "-sample_fmt", "s16", path])
            .collect::<Vec<_>>(),
    );
}

/// The album folder: 12 FLAC tracks, the same 12 minutes as one image with its sheet, a cover.
fn generate_album(root: &Path) -> Vec<TorrentFile> {
    println!("generating {TRACKS} x {TRACK_SECS} s stereo FLAC, a {} min image and a cover ...", TRACKS as f64);
    let mut files = Vec::new();
    for idx in 0..TRACKS {
        let name = format!("{:02} - Track {}.flac", idx + 1, idx + 1);
        generate_flac(&root.join(&name), TRACK_SECS, idx);
        files.push(name);
    }
    generate_flac(&root.join(IMAGE), TRACK_SECS * TRACKS as f64, 99);
    let mut sheet = String::from("PERFORMER \"A\"\nTITLE \"B\"\nFILE \"Album.wav\" WAVE\n");
    for idx in 0..TRACKS {
        let start_secs = idx as f64 * TRACK_SECS;
        let minutes = (start_secs / 60.0) as u64;
        let seconds = (start_secs % 60.0) as u64;
        sheet.push_str(&format!("  TRACK {:02} AUDIO\n    INDEX 01 {minutes:02}:{seconds:02}:00\n", idx + 1));
    }
    std::fs::write(root.join("Album.cue"), sheet).unwrap();
    files.push("Album.cue".into());
    files.push(IMAGE.into());
    let cover = root.join("cover.jpg");
    ffmpeg_status(&[
        "-hide_banner",
        "-loglevel",
        "error",
        "-y",
        "-f",
        "lavfi",
        "-i",
        "testsrc2=s=600x600:d=1",
        "-frames:v",
        "1",
        cover.to_str().unwrap(),
    ]);
    files.push("cover.jpg".into());
    files.into_iter().map(|path| TorrentFile { size_bytes: 0, path }).collect()
}

fn ticket(case: Case, media: &Path, round: usize) -> Ticket {
    let extension = match case.format {
        OutputFormat::OggVorbis => "ogg",
        OutputFormat::Opus => "opus",
        OutputFormat::Mp3 => "mp3",
        OutputFormat::Flac => "flac",
        OutputFormat::Aac => "m4a",
    };
    Ticket {
        ticket_id: format!("bench-{round}-{}", case.name.split_whitespace().next().unwrap_or("case")),
        created_at: chrono::Utc::now(),
        search: SearchHints { artist: "A".into(), album: "B".into(), year: None, label: None, genres: vec![] },
        tracks: (0..TRACKS)
            .map(|idx| TicketTrack {
                catalog_track_id: format!("t{idx}"),
                disc_number: 1,
                track_number: u32::try_from(idx + 1).unwrap(),
                name: format!("Track {}", idx + 1),
                duration_secs: TRACK_SECS,
                dest_path: media.join(format!("{idx:02}.{extension}")).to_str().unwrap().into(),
            })
            .collect(),
        images: vec![TicketImage {
            catalog_image_id: "front".into(),
            image_type: ImageType::CoverFront,
            dest_path: media.join("cover.jpg").to_str().unwrap().into(),
        }],
        constraints: Constraints {
            format: case.format,
            bitrate_kbps: case.bitrate_kbps,
            sample_rate_hz: None,
            embed_metadata: true,
            embed_cover: true,
        },
        metadata_to_embed: BTreeMap::from([
            ("artist".to_string(), serde_json::json!("A")),
            ("album".to_string(), serde_json::json!("B")),
            ("year".to_string(), serde_json::json!(2001)),
            ("genre".to_string(), serde_json::json!("Noise")),
        ]),
    }
}

fn mapping(case: Case) -> Vec<TrackMapping> {
    (0..TRACKS)
        .map(|idx| TrackMapping {
            catalog_track_id: format!("t{idx}"),
            torrent_file_path: if case.cue_image {
                format!("{IMAGE}#{}", idx + 1)
            } else {
                format!("{:02} - Track {}.flac", idx + 1, idx + 1)
            },
            confidence: 1.0,
        })
        .collect()
}

/// The converter's exact encode commands for a case (one per track), writing into `out_dir`.
fn encode_commands(case: Case, source_root: &Path, out_dir: &Path) -> Vec<Vec<OsString>> {
    let constraints = ticket(case, out_dir, 0).constraints;
    let sheet = cue::parse_cue_sheet(&std::fs::read(source_root.join("Album.cue")).unwrap()).unwrap();
    (0..TRACKS)
        .map(|idx| {
            let (input, range): (PathBuf, Option<SampleRange>) = if case.cue_image {
                let (_, range) = sheet.track_range(u32::try_from(idx + 1).unwrap(), 44_100).unwrap();
                (source_root.join(IMAGE), Some(range))
            } else {
                (source_root.join(format!("{:02} - Track {}.flac", idx + 1, idx + 1)), None)
            };
            let info = ffprobe_source(&input);
            let plan = ffmpeg::plan_encoding(&constraints, &info);
            let output = out_dir.join(format!("{idx:02}.{}", plan.work_extension()));
            ffmpeg::transcode_args(&input, &info.format_name, range, &plan, &output, None)
        })
        .collect()
}

/// A source's properties exactly as the converter's ffprobe step reads them (same arguments, same parser).
fn ffprobe_source(input: &Path) -> SourceInfo {
    let output = Command::new("ffprobe").args(probe::probe_args(input, probe::AUDIO_DEMUXERS)).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    probe::parse_source_info(&output.stdout).unwrap()
}

fn run_ffmpeg(args: &[OsString]) {
    let output = Command::new("ffmpeg").args(args).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}

fn measure(
    case: Case,
    round: usize,
    dirs: (&Path, &Path),
    files: &[TorrentFile],
    converter: &FfmpegConverter,
    runtime: &tokio::runtime::Runtime,
) -> Figures {
    let (source_root, scratch) = dirs;
    let out_dir = scratch.join("plain");
    std::fs::create_dir_all(&out_dir).unwrap();
    let commands = encode_commands(case, source_root, &out_dir);

    let mut single_runs = 0.0;
    let cpu_start = cpu_secs();
    for args in &commands {
        let start = Instant::now();
        run_ffmpeg(args);
        single_runs += start.elapsed().as_secs_f64();
    }
    let ideal = single_runs / PARALLELISM as f64;
    let single_cpu = cpu_secs() - cpu_start;

    let next = std::sync::atomic::AtomicUsize::new(0);
    let cpu_start = cpu_secs();
    let start = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..PARALLELISM {
            scope.spawn(|| loop {
                let idx = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let Some(args) = commands.get(idx) else { break };
                run_ffmpeg(args);
            });
        }
    });
    let plain_parallel = start.elapsed().as_secs_f64();
    let plain_cpu = cpu_secs() - cpu_start;

    let media = scratch.join("media");
    let job = ConversionJob {
        ticket: ticket(case, &media, round),
        source_root: source_root.to_path_buf(),
        mapping: mapping(case),
        torrent_files: files.to_vec(),
        cancel: CancellationToken::new(),
        replaygain: Default::default(),
    };
    let cpu_start = cpu_secs();
    let start = Instant::now();
    let output = runtime.block_on(converter.convert_ticket(job, &|_| {})).unwrap_or_else(|err| panic!("{err}"));
    let converter_secs = start.elapsed().as_secs_f64();
    let converter_cpu = cpu_secs() - cpu_start;
    assert_eq!(output.tracks.len(), TRACKS);
    assert!(output.missing_image_ids.is_empty());
    std::fs::remove_dir_all(&output.work_dir).unwrap();
    std::fs::remove_dir_all(&out_dir).unwrap();
    Figures { ideal, plain_parallel, converter: converter_secs, single_cpu, plain_cpu, converter_cpu }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 0 {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| text.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn main() {
    let rounds: usize = std::env::var("D2_BENCH_ROUNDS").ok().and_then(|value| value.parse().ok()).unwrap_or(3).max(1);
    let dir = tempfile::tempdir().unwrap();
    let source_root = dir.path().join("download");
    std::fs::create_dir_all(&source_root).unwrap();
    let files = generate_album(&source_root);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let config = ConverterConfig { max_parallel_conversions: PARALLELISM, ..ConverterConfig::default() };
    let converter = FfmpegConverter::new(&config, dir.path().join("work")).unwrap();
    let scratch = dir.path().join("scratch");

    println!(
        "{TRACKS} x {TRACK_SECS} s per album, max_parallel_conversions = {PARALLELISM}, {rounds} rounds, {} cores, \
         load average at start {}",
        std::thread::available_parallelism().map_or(0, usize::from),
        load_average()
    );
    let mut results: Vec<Vec<Figures>> = vec![Vec::new(); CASES.len()];
    for round in 1..=rounds {
        for (idx, case) in CASES.iter().enumerate() {
            let figures = measure(*case, round, (&source_root, &scratch), &files, &converter, &runtime);
            println!(
                "round {round} {:<28} ideal {:6.2} s | plain ffmpeg x{PARALLELISM} {:6.2} s ({:5.1} %) | converter {:6.2} s \
                 ({:5.1} % of ideal) | cpu single {:6.2} s, plain {:6.2} s, converter {:6.2} s ({:5.1} %) | load {}",
                case.name,
                figures.ideal,
                figures.plain_parallel,
                figures.plain_parallel / figures.ideal * 100.0,
                figures.converter,
                figures.converter / figures.ideal * 100.0,
                figures.single_cpu,
                figures.plain_cpu,
                figures.converter_cpu,
                figures.converter_cpu / figures.single_cpu * 100.0,
                load_average()
            );
            results[idx].push(figures);
        }
    }
    println!();
    println!("medians over {rounds} rounds (ratios are medians of each round's own ratio):");
    println!(
        "{:<28} {:>9} {:>11} {:>12} {:>14} {:>18} {:>15}",
        "case", "ideal s", "plain x2 s", "converter s", "plain % ideal", "converter % ideal", "converter % cpu"
    );
    for (case, figures) in CASES.iter().zip(&results) {
        let ideal = median(figures.iter().map(|f| f.ideal).collect());
        let plain = median(figures.iter().map(|f| f.plain_parallel).collect());
        let converter = median(figures.iter().map(|f| f.converter).collect());
        let plain_ratio = median(figures.iter().map(|f| f.plain_parallel / f.ideal * 100.0).collect());
        let converter_ratio = median(figures.iter().map(|f| f.converter / f.ideal * 100.0).collect());
        let cpu_ratio = median(figures.iter().map(|f| f.converter_cpu / f.single_cpu * 100.0).collect());
        println!(
            "{:<28} {ideal:>9.2} {plain:>11.2} {converter:>12.2} {plain_ratio:>13.1}% {converter_ratio:>17.1}% \
             {cpu_ratio:>14.1}%",
            case.name
        );
    }
    println!("load average at the end: {}", load_average());
}
