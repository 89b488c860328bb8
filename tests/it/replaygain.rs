//! ReplayGain 2.0 tags in the five output formats: a two-track album (loud and 12 dB quieter pink noise, FLAC) is
//! measured by the audio verifier (EBU R128, the values the pipeline hands the converter), converted to Ogg
//! Vorbis, Opus, MP3, FLAC and AAC with those values, and every output's tags are read back with lofty and compared
//! with ffmpeg's own `ebur128` reading of that output: `REPLAYGAIN_TRACK_GAIN` (-18 LUFS reference) and, for Opus,
//! `R128_TRACK_GAIN` (Q7.8, -23 LUFS reference, RFC 7845) within 0.1 dB; album gain and peaks present.

use std::collections::BTreeMap;
use std::path::Path;

use downloader2::config::ConverterConfig;
use downloader2::converter::tags::ReplayGain;
use downloader2::converter::{ConversionJob, Converter, FfmpegConverter};
use downloader2::models::{OutputFormat, Ticket, TorrentFile, TrackMapping};
use downloader2::verifier::{verify_set, FileToVerify, VerifierSettings};
use lofty::prelude::*;
use lofty::tag::ItemKey;
use tokio_util::sync::CancellationToken;

use crate::support::audio;

const SECS: f64 = 12.0;

/// ffmpeg's integrated loudness of `path` (the last value its `ebur128` filter reports, 0.01 LU resolution).
fn ffmpeg_integrated_lufs(path: &Path) -> f64 {
    let output = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-nostats", "-i"])
        .arg(path)
        .args(["-af", "ebur128=metadata=1,ametadata=mode=print:key=lavfi.r128.I", "-f", "null", "-"])
        .output()
        .expect("ffmpeg (apt-get install ffmpeg)");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let log = String::from_utf8_lossy(&output.stderr);
    let last =
        log.lines().filter_map(|line| line.split("lavfi.r128.I=").nth(1)).next_back().expect("an ebur128 reading");
    last.trim().parse().unwrap()
}

fn ticket(dir: &Path, format: OutputFormat, extension: &str) -> Ticket {
    let tracks: Vec<serde_json::Value> = (0..2)
        .map(|n| {
            serde_json::json!({"catalog_track_id": format!("t{n}"), "disc_number": 1, "track_number": n + 1,
                "name": format!("Track {n}"), "duration_secs": SECS,
                "dest_path": dir.join(format!("{n}.{extension}")).to_str().unwrap()})
        })
        .collect();
    let format_name = serde_json::to_value(format).unwrap();
    serde_json::from_value(serde_json::json!({
        "ticket_id": format!("rg-{extension}"),
        "created_at": "2026-12-03T10:00:00Z",
        "search": {"artist": "A", "album": "B"},
        "tracks": tracks,
        "images": [],
        "constraints": {"format": format_name, "embed_cover": false},
        "metadata_to_embed": {"artist": "A", "album": "B"}
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaygain_tags_match_ffmpegs_ebur128_in_all_five_formats() {
    let dir = tempfile::tempdir().unwrap();
    let source_root = dir.path().join("download");
    std::fs::create_dir_all(&source_root).unwrap();
    let loud = source_root.join("01.flac");
    audio::write_flac(&loud, SECS, 44_100, 2);
    let quiet = source_root.join("02.flac");
    let (loud_arg, quiet_arg) = (loud.to_str().unwrap(), quiet.to_str().unwrap());
    audio::ffmpeg(&["-i", loud_arg, "-af", "volume=-12dB", "-c:a", "flac", "-sample_fmt", "s16", quiet_arg]);

    // The verifier's measurement, as the pipeline makes it.
    let files = [
        FileToVerify { path: loud.clone(), shown: "01.flac".into() },
        FileToVerify { path: quiet.clone(), shown: "02.flac".into() },
    ];
    let set = verify_set(&files, &VerifierSettings::default(), 2, &|| false).unwrap();
    let album = set.album.clone().expect("album loudness");
    let mut replaygain = BTreeMap::new();
    for (n, (file, source)) in set.files.iter().zip([&loud, &quiet]).enumerate() {
        let lufs = file.loudness_lufs.unwrap();
        let reference = ffmpeg_integrated_lufs(source);
        assert!((lufs - reference).abs() <= 0.1, "source {n}: verifier {lufs} LUFS, ffmpeg {reference}");
        replaygain.insert(
            format!("t{n}"),
            ReplayGain {
                track_lufs: lufs,
                track_peak_dbtp: file.true_peak_dbtp.unwrap(),
                album_lufs: Some(album.loudness_lufs),
                album_peak_dbtp: Some(album.true_peak_dbtp),
            },
        );
    }
    let loudness: Vec<f64> = set.files.iter().map(|file| file.loudness_lufs.unwrap()).collect();
    assert!((loudness[0] - loudness[1] - 12.0).abs() < 0.2, "12 dB apart: {loudness:?}");

    let config = ConverterConfig { max_parallel_conversions: 2, ..ConverterConfig::default() };
    let converter = FfmpegConverter::new(&config, dir.path().join("work")).unwrap();
    let torrent_files = vec![
        TorrentFile { path: "01.flac".into(), size_bytes: std::fs::metadata(&loud).unwrap().len() },
        TorrentFile { path: "02.flac".into(), size_bytes: std::fs::metadata(&quiet).unwrap().len() },
    ];
    let formats = [
        (OutputFormat::OggVorbis, "ogg"),
        (OutputFormat::Opus, "opus"),
        (OutputFormat::Mp3, "mp3"),
        (OutputFormat::Flac, "flac"),
        (OutputFormat::Aac, "m4a"),
    ];
    for (format, extension) in formats {
        let job = ConversionJob {
            ticket: ticket(&dir.path().join("media"), format, extension),
            source_root: source_root.clone(),
            mapping: (0..2)
                .map(|n| TrackMapping {
                    catalog_track_id: format!("t{n}"),
                    torrent_file_path: format!("0{}.flac", n + 1),
                    confidence: 1.0,
                })
                .collect(),
            torrent_files: torrent_files.clone(),
            cancel: CancellationToken::new(),
            replaygain: replaygain.clone(),
        };
        let output = converter.convert_ticket(job, &|_| {}).await.unwrap();
        for converted in &output.tracks {
            let measured = ffmpeg_integrated_lufs(&converted.path);
            let tagged = lofty::read_from_path(&converted.path).unwrap();
            let tag = tagged.primary_tag().unwrap_or_else(|| panic!("{extension}: no tag"));
            let text = |key: ItemKey| {
                tag.get_string(&key).map(str::to_string).unwrap_or_else(|| {
                    let probe = audio::probe(&converted.path);
                    panic!(
                        "{extension}: {key:?} missing; lofty reads {:?}; ffprobe: {probe}",
                        tag.items().collect::<Vec<_>>()
                    )
                })
            };
            let shown = format!("{extension} {}", converted.catalog_id);
            let implied_lufs = if format == OutputFormat::Opus {
                let steps: f64 = text(ItemKey::Unknown("R128_TRACK_GAIN".into())).parse().unwrap();
                let album: f64 = text(ItemKey::Unknown("R128_ALBUM_GAIN".into())).parse().unwrap();
                assert!((-23.0 - album / 256.0 - album_lufs_of(&replaygain)).abs() < 0.01, "{shown}: album gain");
                -23.0 - steps / 256.0
            } else {
                let gain = text(ItemKey::ReplayGainTrackGain);
                let db: f64 = gain.trim_end_matches(" dB").parse().unwrap_or_else(|_| panic!("{shown}: {gain:?}"));
                let peak: f64 = text(ItemKey::ReplayGainTrackPeak).parse().unwrap();
                let source_peak = replaygain[&converted.catalog_id].track_peak_dbtp;
                let peak_dbtp = 20.0 * peak.log10();
                assert!((peak_dbtp - source_peak).abs() < 1.0, "{shown}: peak {peak_dbtp} dBTP, source {source_peak}");
                text(ItemKey::ReplayGainAlbumGain);
                text(ItemKey::ReplayGainAlbumPeak);
                -18.0 - db
            };
            println!("{shown}: tags say {implied_lufs:.2} LUFS, ffmpeg measures {measured:.2}");
            assert!(
                (implied_lufs - measured).abs() <= 0.1,
                "{shown}: the tags imply {implied_lufs} LUFS, ffmpeg's ebur128 reads {measured}"
            );
        }
    }
}

fn album_lufs_of(replaygain: &BTreeMap<String, ReplayGain>) -> f64 {
    replaygain.values().next().and_then(|gain| gain.album_lufs).unwrap()
}
