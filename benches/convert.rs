//! Benchmark of the converter's parallelism: a 12-track album (12 x 60 s stereo pink-noise FLAC, generated with
//! ffmpeg) converted to Ogg Vorbis 320 kbit/s by `FfmpegConverter` with `max_parallel_conversions = 2`, against
//! (a) a plain sequential loop of the same ffmpeg commands and (b) the ideal: the sum of those single-run times
//! divided by the parallelism; (c) the same commands run plainly 2 at a time shows what the (shared) machine gives
//! at that moment. Prints figures; asserts nothing about time. Run: `cargo bench --bench convert`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use downloader2::config::ConverterConfig;
use downloader2::converter::{ffmpeg, ConversionJob, Converter, FfmpegConverter};
use downloader2::models::{Constraints, OutputFormat, SearchHints, Ticket, TicketTrack, TorrentFile, TrackMapping};
use tokio_util::sync::CancellationToken;

const TRACKS: usize = 12;
const TRACK_SECS: f64 = 60.0;
const PARALLELISM: usize = 2;
const ROUNDS: usize = 2;

fn generate_flac(path: &Path, seed: usize) {
    let graph = format!(
        "anoisesrc=d={TRACK_SECS}:c=pink:r=44100:a=0.4:s={}[l];anoisesrc=d={TRACK_SECS}:c=pink:r=44100:a=0.4:s={}[r];\
         [l][r]amerge=inputs=2[out]",
        seed * 2 + 1,
        seed * 2 + 2
    );
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-filter_complex", &graph, "-map", "[out]"])
        .args(["-c:a", "flac", "-sample_fmt", "s16"])
        .arg(path)
        .status()
        .expect("ffmpeg not found: apt-get install ffmpeg");
    assert!(status.success());
}

fn ticket(media: &Path) -> Ticket {
    Ticket {
        ticket_id: "bench".into(),
        created_at: chrono::Utc::now(),
        search: SearchHints { artist: "A".into(), album: "B".into(), year: None, label: None, genres: vec![] },
        tracks: (0..TRACKS)
            .map(|idx| TicketTrack {
                catalog_track_id: format!("t{idx}"),
                disc_number: 1,
                track_number: u32::try_from(idx + 1).unwrap(),
                name: format!("Track {}", idx + 1),
                duration_secs: TRACK_SECS,
                dest_path: media.join(format!("{idx:02}.ogg")).to_str().unwrap().into(),
            })
            .collect(),
        images: vec![],
        constraints: Constraints {
            format: OutputFormat::OggVorbis,
            bitrate_kbps: Some(320),
            sample_rate_hz: None,
            embed_metadata: true,
            embed_cover: true,
        },
        metadata_to_embed: BTreeMap::from([("artist".to_string(), serde_json::json!("A"))]),
    }
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let source_root = dir.path().join("download");
    std::fs::create_dir_all(&source_root).unwrap();
    let media = dir.path().join("media");
    println!("generating {TRACKS} x {TRACK_SECS} s stereo FLAC ...");
    let mut files = Vec::new();
    for idx in 0..TRACKS {
        let name = format!("{idx:02}.flac");
        generate_flac(&source_root.join(&name), idx);
        files.push(TorrentFile { path: name, size_bytes: 0 });
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let config = ConverterConfig { max_parallel_conversions: PARALLELISM, ..ConverterConfig::default() };
    let converter = FfmpegConverter::new(&config, dir.path().join("work")).unwrap();

    // The exact ffmpeg commands the converter runs, from the same plan.
    let probe = runtime.block_on(converter.probe(&source_root.join("00.flac"))).unwrap();
    let plan = ffmpeg::plan_encoding(&ticket(&media).constraints, &probe);
    let out_dir = dir.path().join("sequential");
    std::fs::create_dir_all(&out_dir).unwrap();

    for round in 1..=ROUNDS {
        let mut single_runs = Vec::new();
        let sequential_start = Instant::now();
        for idx in 0..TRACKS {
            let input = source_root.join(format!("{idx:02}.flac"));
            let output = out_dir.join(format!("{idx:02}.ogg"));
            let args = ffmpeg::transcode_args(&input, &probe.format_name, None, &plan, &output);
            let start = Instant::now();
            let status = Command::new("ffmpeg").args(&args).status().unwrap();
            assert!(status.success());
            single_runs.push(start.elapsed().as_secs_f64());
        }
        let sequential = sequential_start.elapsed().as_secs_f64();
        let sum: f64 = single_runs.iter().sum();
        let ideal = sum / PARALLELISM as f64;

        // The same commands, PARALLELISM at a time, with nothing else: what the machine gives right now.
        let plain_parallel_start = Instant::now();
        let next = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for _ in 0..PARALLELISM {
                scope.spawn(|| loop {
                    let idx = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    if idx >= TRACKS {
                        break;
                    }
                    let input = source_root.join(format!("{idx:02}.flac"));
                    let output = out_dir.join(format!("p{idx:02}.ogg"));
                    let args = ffmpeg::transcode_args(&input, &probe.format_name, None, &plan, &output);
                    assert!(Command::new("ffmpeg").args(&args).status().unwrap().success());
                });
            }
        });
        let plain_parallel = plain_parallel_start.elapsed().as_secs_f64();

        let job = ConversionJob {
            ticket: ticket(&media),
            source_root: source_root.clone(),
            mapping: (0..TRACKS)
                .map(|idx| TrackMapping {
                    catalog_track_id: format!("t{idx}"),
                    torrent_file_path: format!("{idx:02}.flac"),
                    confidence: 1.0,
                })
                .collect(),
            torrent_files: files.clone(),
            cancel: CancellationToken::new(),
        };
        let start = Instant::now();
        let output = runtime.block_on(converter.convert_ticket(job, &|_| {})).unwrap();
        let converter_wall = start.elapsed().as_secs_f64();
        runtime.block_on(output.remove_work_dir()).unwrap();

        println!("round {round}: 12 x 60 s FLAC -> Ogg Vorbis 320, max_parallel_conversions = {PARALLELISM}");
        println!("  sequential loop of the same ffmpeg commands: {sequential:7.2} s");
        println!("  sum of single runs:                          {sum:7.2} s");
        println!("  ideal (sum / {PARALLELISM}):                              {ideal:7.2} s");
        println!(
            "  plain ffmpeg, {PARALLELISM} at a time (machine check):         {plain_parallel:7.2} s = {:.1} % of ideal",
            plain_parallel / ideal * 100.0
        );
        println!(
            "  FfmpegConverter::convert_ticket (incl. probe, tags, validation): {converter_wall:7.2} s = {:.1} % of ideal, speed-up {:.2}x over sequential",
            converter_wall / ideal * 100.0,
            sequential / converter_wall
        );
    }
}
