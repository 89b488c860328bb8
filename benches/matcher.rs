//! Benchmark of the deterministic matcher: one ticket of 30 tracks against 15 candidates of 30 files each (FLAC,
//! MP3 320 and V0 releases, a live set, a tribute, another album, scene numbering). Criterion prints the median;
//! the acceptance target is < 2 ms per `match_candidates` call. Builds that input synthetically.
//!
//! Second figure: the `downloader2 match` body ([`run_match_command`]: parse, match, render) on every labelled
//! development case (`../shared/matching-dev/cases`, or `DOWNLOADER2_MATCHING_DEV_CASES`), read into memory first:
//! the median over the cases of each case's median time per call, and criterion's median for all cases in a row.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use downloader2::matcher::{match_candidates, run_match_command};
use downloader2::models::{Ticket, TorrentCandidate, TorrentFile};

const WORDS: [&str; 24] = [
    "amber", "harbour", "static", "lantern", "copper", "gull", "winter", "engine", "salt", "paper", "crown", "river",
    "signal", "velvet", "hollow", "ember", "north", "glass", "atlas", "cinder", "ferry", "tide", "orchid", "meridian",
];

fn track_name(i: usize) -> String {
    let a = WORDS[i % WORDS.len()];
    let b = WORDS[(i * 7 + 3) % WORDS.len()];
    format!("{} of the {}", capitalise(a), capitalise(b))
}

fn capitalise(word: &str) -> String {
    let mut chars = word.chars();
    chars.next().map(|c| c.to_uppercase().collect::<String>() + chars.as_str()).unwrap_or_default()
}

fn duration(i: usize) -> u64 {
    150 + ((i * 37) % 240) as u64
}

fn ticket() -> Ticket {
    let tracks: Vec<serde_json::Value> = (0..30)
        .map(|i| {
            serde_json::json!({"catalog_track_id": format!("t{}", i + 1), "disc_number": 1 + i / 15,
                "track_number": 1 + i % 15, "name": track_name(i), "duration_secs": duration(i),
                "dest_path": format!("/music/bench/{i:02}.ogg")})
        })
        .collect();
    serde_json::from_value(serde_json::json!({
        "ticket_id": "bench", "created_at": "2026-01-01T00:00:00Z",
        "search": {"artist": "The Meridian Signal", "album": "Glass Atlas", "year": 2018},
        "tracks": tracks, "constraints": {"format": "ogg_vorbis", "bitrate_kbps": 320}
    }))
    .unwrap_or_else(|e| panic!("bench ticket: {e}"))
}

fn candidate(n: usize) -> TorrentCandidate {
    let (title, ext, bytes_per_sec) = match n % 5 {
        0 => (format!("The Meridian Signal - Glass Atlas (2018) [FLAC] #{n}"), "flac", 110_000),
        1 => (format!("The Meridian Signal - Glass Atlas [MP3 320] #{n}"), "mp3", 40_000),
        2 => (format!("The_Meridian_Signal-Glass_Atlas-2CD-2018-GRP{n}"), "mp3", 31_000),
        3 => (format!("The Meridian Signal - Glass Atlas Live (2019) [FLAC] #{n}"), "flac", 105_000),
        _ => (format!("Atlas Tribute Band - Glass Atlas Revisited [FLAC] #{n}"), "flac", 100_000),
    };
    let files: Vec<TorrentFile> = (0..30)
        .map(|i| {
            let name = if n % 7 == 6 { track_name(i + 40) } else { track_name(i) };
            let path = if n % 5 == 2 {
                format!("{title}/{}{:02}-the_meridian_signal-{}.{ext}", 1 + i / 15, 1 + i % 15, name.replace(' ', "_"))
            } else {
                format!("{title}/CD{}/{:02} - {name}.{ext}", 1 + i / 15, 1 + i % 15)
            };
            TorrentFile { path, size_bytes: duration(i) * bytes_per_sec + 4_000 }
        })
        .collect();
    let mut c = TorrentCandidate::with_title(title);
    c.seeders = u32::try_from(n * 3).unwrap_or(0);
    c.size_bytes = files.iter().map(|f| f.size_bytes).sum();
    c.files = Some(files);
    c
}

/// This process's user+system CPU time in seconds, from `/proc/self/stat` (USER_HZ = 100 on Linux).
fn process_cpu_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after_name = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

fn bench_matcher(c: &mut Criterion) {
    let ticket = ticket();
    let candidates: Vec<TorrentCandidate> = (0..15).map(candidate).collect();
    // Wall time suffers on a loaded machine; CPU time per call does not. Print both as a second figure.
    let runs = 500u32;
    let wall = std::time::Instant::now();
    let cpu_before = process_cpu_secs();
    for _ in 0..runs {
        black_box(match_candidates(black_box(&ticket), black_box(&candidates), 0.85));
    }
    if let (Some(before), Some(after)) = (cpu_before, process_cpu_secs()) {
        println!(
            "match_candidates 15x30: CPU time per call {:.3} ms, wall {:.3} ms (mean of {runs} calls)",
            (after - before) * 1000.0 / f64::from(runs),
            wall.elapsed().as_secs_f64() * 1000.0 / f64::from(runs)
        );
    }
    c.bench_function("match_candidates 15 candidates x 30 files", |b| {
        b.iter(|| match_candidates(black_box(&ticket), black_box(&candidates), 0.85))
    });
}

/// The development case files, read into memory, sorted by name. Panics (with what to do) when they are missing.
fn dev_case_inputs() -> Vec<(String, Vec<u8>)> {
    let dir = match std::env::var_os("DOWNLOADER2_MATCHING_DEV_CASES") {
        Some(dir) => std::path::PathBuf::from(dir),
        None => std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/matching-dev/cases"),
    };
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| {
        panic!("cannot read {}: {e} (set DOWNLOADER2_MATCHING_DEV_CASES to the cases folder)", dir.display())
    });
    let mut paths: Vec<std::path::PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (name, bytes)
        })
        .collect()
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

fn bench_match_command_on_dev_cases(c: &mut Criterion) {
    let cases = dev_case_inputs();
    assert!(!cases.is_empty(), "no development cases found");
    // Per case: the median of `runs` timed calls; then the median over the cases. CPU time (10 ms ticks) only as a
    // mean over every call of every case.
    let runs = 30;
    let mut wall_medians = Vec::new();
    let cpu_before = process_cpu_secs();
    for (name, input) in &cases {
        let mut walls = Vec::with_capacity(runs);
        for _ in 0..runs {
            let started = std::time::Instant::now();
            let out = run_match_command(black_box(input), 0.85).unwrap_or_else(|e| panic!("{name}: {e}"));
            black_box(out);
            walls.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        wall_medians.push(median(&mut walls));
    }
    let calls = (cases.len() * runs) as f64;
    let cpu_mean = match (cpu_before, process_cpu_secs()) {
        (Some(before), Some(after)) => format!("{:.3} ms", (after - before) * 1000.0 / calls),
        _ => "unknown".to_string(),
    };
    let max = wall_medians.iter().copied().fold(0.0, f64::max);
    println!(
        "downloader2 match on {} dev cases: median per case {:.3} ms wall (slowest case {max:.3} ms), mean CPU time \
         per case {cpu_mean} ({runs} calls per case)",
        cases.len(),
        median(&mut wall_medians),
    );
    c.bench_function("downloader2 match, all dev cases in a row", |b| {
        b.iter(|| {
            for (_, input) in &cases {
                black_box(run_match_command(black_box(input), 0.85).ok());
            }
        })
    });
}

criterion_group!(benches, bench_matcher, bench_match_command_on_dev_cases);
criterion_main!(benches);
