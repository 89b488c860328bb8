//! Benchmark of the audio verifier. (1) Accuracy on the larger generated corpus (`tests/it/support/verify_corpus.rs`,
//! 30 s sources, more seeds and instruments than the test's): a confusion table per source kind and the scores the
//! accuracy test gates on. (2) Speed: time per minute of audio with 2 threads. (3) Cost next to conversion: a
//! 12-track album (12 x 60 s of rendered band music, FLAC) verified, and the same album encoded with plain ffmpeg to
//! Ogg Vorbis 320 (the convert bench's format) 2 at a time: the verifier's share of the album's total. Prints
//! figures; asserts nothing about time. Run: `cargo bench --bench verify`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::cast_possible_truncation)]

#[path = "../tests/it/support/verify_corpus.rs"]
mod verify_corpus;

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use downloader2::verifier::{verify_set, FileToVerify, VerifierSettings};
use verify_corpus::{confusion_table, corpus, score, CorpusSize};

const PARALLELISM: usize = 2;

fn files_of(paths: &[(PathBuf, String)]) -> Vec<FileToVerify> {
    paths.iter().map(|(path, shown)| FileToVerify { path: path.clone(), shown: shown.clone() }).collect()
}

fn main() {
    println!("generating (or reusing) the bench corpus ...");
    let corpus = corpus(CorpusSize::Bench);
    let files = files_of(&corpus.items.iter().map(|item| (item.path.clone(), item.name.clone())).collect::<Vec<_>>());
    let settings = VerifierSettings { check_duplicates: false, ..VerifierSettings::default() };
    let start = Instant::now();
    let set = verify_set(&files, &settings, PARALLELISM, &|| false).unwrap();
    let wall = start.elapsed().as_secs_f64();
    let audio_minutes: f64 = set.files.iter().map(|file| file.duration_secs).sum::<f64>() / 60.0;
    println!("\n{} files, {:.1} minutes of audio\n", set.files.len(), audio_minutes);
    println!("{}", confusion_table(&corpus, &set.files));
    let scores = score(&corpus, &set.files);
    let pct = |(hit, total): (usize, usize)| if total == 0 { 100.0 } else { hit as f64 * 100.0 / total as f64 };
    println!("false alarms on genuine/clean material: {} {:?}", scores.false_alarms.len(), scores.false_alarms);
    println!(
        "detectable fakes <= 256 kbit/s called suspect: {}/{} = {:.1} %",
        scores.detectable_up_to_256.0,
        scores.detectable_up_to_256.1,
        pct(scores.detectable_up_to_256)
    );
    println!(
        "detectable 320 kbit/s fakes called suspect:    {}/{} = {:.1} %",
        scores.detectable_320.0,
        scores.detectable_320.1,
        pct(scores.detectable_320)
    );
    println!("transparent fakes called suspect (not gated):  {}/{}", scores.transparent.0, scores.transparent.1);
    println!("missed: {:#?}", scores.missed);
    println!(
        "upsampled/padded flagged: {}/{}; flag errors: {:?}",
        scores.flagged.0, scores.flagged.1, scores.flag_errors
    );
    println!("integrity errors: {:?}", scores.integrity_errors);
    println!(
        "\nspeed: {wall:.1} s for {audio_minutes:.1} min with {PARALLELISM} threads = {:.2} s per minute of audio \
         ({:.2} s of one core)",
        wall / audio_minutes,
        wall * PARALLELISM as f64 / audio_minutes
    );

    // The album next to its conversion.
    let album: Vec<(PathBuf, String)> = corpus
        .items
        .iter()
        .filter(|item| item.name.ends_with(".genuine") && item.name.starts_with("band"))
        .map(|item| (item.path.clone(), item.name.clone()))
        .collect();
    let dir = corpus.dir.join("album");
    std::fs::create_dir_all(&dir).unwrap();
    let mut tracks = Vec::new();
    for idx in 0..12 {
        let (source, _) = &album[idx % album.len()];
        let track = dir.join(format!("{idx:02}.flac"));
        if !track.is_file() {
            // 60 s: the source looped, with a different start per track.
            let offset = format!("{}", (idx * 3) % 20);
            let status = Command::new("ffmpeg")
                .args(["-hide_banner", "-loglevel", "error", "-y", "-stream_loop", "2", "-ss", &offset, "-i"])
                .arg(source)
                .args(["-t", "60", "-ar", "44100", "-sample_fmt", "s16", "-c:a", "flac"])
                .arg(&track)
                .status()
                .unwrap();
            assert!(status.success());
        }
        tracks.push((track, format!("{idx:02}.flac")));
    }
    for round in 1..=2 {
        let start = Instant::now();
        let verified = verify_set(&files_of(&tracks), &VerifierSettings::default(), PARALLELISM, &|| false).unwrap();
        let verify_secs = start.elapsed().as_secs_f64();
        assert_eq!(verified.files.len(), 12);
        let next = std::sync::atomic::AtomicUsize::new(0);
        let start = Instant::now();
        std::thread::scope(|scope| {
            for _ in 0..PARALLELISM {
                scope.spawn(|| loop {
                    let idx = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let Some((track, _)) = tracks.get(idx) else { break };
                    let out = dir.join(format!("{idx:02}.ogg"));
                    let status = Command::new("ffmpeg")
                        .args(["-hide_banner", "-loglevel", "error", "-y", "-i"])
                        .arg(track)
                        .args(["-map", "0:a", "-c:a", "libvorbis", "-b:a", "320k"])
                        .arg(&out)
                        .status()
                        .unwrap();
                    assert!(status.success());
                });
            }
        });
        let encode_secs = start.elapsed().as_secs_f64();
        println!(
            "album round {round}: 12 x 60 s; plain ffmpeg to Ogg Vorbis 320, {PARALLELISM} at a time: {encode_secs:.2} s; \
             verification ({PARALLELISM} threads): {verify_secs:.2} s = +{:.1} % of the encode",
            verify_secs / encode_secs * 100.0
        );
    }
}
