//! The converter on real material (`support/corpus.rs`): every corpus source converted to every output format, one
//! album ticket per format, and each output read back independently of the converter - ffprobe for codec, rate,
//! channels and duration, the audio packets for the bitrate (never above what was asked), lofty for the tags and
//! the cover, and a full ffmpeg decode that must print no error. Lossy sources are capped at their own bitrate (and
//! the cap is reported); a lossy source asked as FLAC is refused with a message saying what to do. The expected
//! rates and channel counts are written out per source and format below, from the contract's rules.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use downloader2::config::ConverterConfig;
use downloader2::converter::{ConversionJob, ConversionOutput, ConvertError, Converter, FfmpegConverter};
use downloader2::models::{
    Constraints, ImageType, OutputFormat, SearchHints, Ticket, TicketImage, TicketTrack, TorrentFile, TrackMapping,
};
use lofty::prelude::*;
use tokio_util::sync::CancellationToken;

use crate::support::audio;
use crate::support::corpus::{Corpus, CorpusSource, SourceCodec};

/// Every lossy output is asked at this bitrate.
const ASKED_KBPS: u32 = 192;
/// Container and rounding allowance of the bitrate ceiling (the converter's 16 KiB), bytes.
const ALLOWANCE_BYTES: f64 = 16.0 * 1024.0;

fn extension(format: OutputFormat) -> &'static str {
    match format {
        OutputFormat::OggVorbis => "ogg",
        OutputFormat::Opus => "opus",
        OutputFormat::Mp3 => "mp3",
        OutputFormat::Flac => "flac",
        OutputFormat::Aac => "m4a",
    }
}

fn codec_name(format: OutputFormat) -> &'static str {
    match format {
        OutputFormat::OggVorbis => "vorbis",
        OutputFormat::Opus => "opus",
        OutputFormat::Mp3 => "mp3",
        OutputFormat::Flac => "flac",
        OutputFormat::Aac => "aac",
    }
}

/// The output sample rate the contract's rules give, written out per source: Opus is always 48 kHz, Vorbis and
/// MP3 at most 48 kHz, FLAC and AAC keep 96 kHz, everything else keeps its rate.
fn expected_rate(source: &CorpusSource, format: OutputFormat) -> u32 {
    match (source.id, format) {
        (_, OutputFormat::Opus) => 48_000,
        ("hires", OutputFormat::OggVorbis | OutputFormat::Mp3) => 48_000,
        ("hires", OutputFormat::Flac | OutputFormat::Aac) => 96_000,
        ("surround", _) => 48_000,
        ("rate_22k", _) => 22_050,
        ("rate_32k", _) => 32_000,
        _ => 44_100,
    }
}

/// Channels: kept, except MP3 (at most stereo: the 5.1 source is downmixed).
fn expected_channels(source: &CorpusSource, format: OutputFormat) -> u32 {
    match (source.id, format) {
        ("surround", OutputFormat::Mp3) => 2,
        _ => source.channels,
    }
}

/// The bitrate ceiling of an output: the asked bitrate (MP3 below 32 kHz has at most 160), or a lossy source's own
/// (+3 % measurement slack), whichever is lower; plus the 15 % tolerance.
fn ceiling_kbps(source: &CorpusSource, format: OutputFormat, asked_kbps: u32, secs: f64) -> Option<f64> {
    let asked = match (source.id, format) {
        (_, OutputFormat::Flac) => return None,
        ("rate_22k", OutputFormat::Mp3) => 160.0_f64.min(f64::from(asked_kbps)),
        _ => f64::from(asked_kbps),
    };
    let target = match source.codec {
        SourceCodec::Lossy(kbps) => asked.min(f64::from(kbps) * 1.03),
        SourceCodec::Lossless => asked,
    };
    Some(target * 1.15 + ALLOWANCE_BYTES * 8.0 / secs / 1000.0)
}

fn corpus_files(corpus: &Corpus) -> Vec<TorrentFile> {
    std::fs::read_dir(&corpus.dir)
        .unwrap()
        .flatten()
        .map(|entry| TorrentFile {
            path: entry.file_name().to_str().unwrap().to_string(),
            size_bytes: entry.metadata().unwrap().len(),
        })
        .collect()
}

fn ticket(id: &str, format: OutputFormat, bitrate: Option<u32>, sources: &[&CorpusSource], media: &Path) -> Ticket {
    Ticket {
        ticket_id: id.into(),
        created_at: chrono::Utc::now(),
        search: SearchHints {
            artist: "Corpus Band".into(),
            album: "Real Material".into(),
            year: Some(2024),
            label: None,
            genres: vec![],
        },
        tracks: sources
            .iter()
            .enumerate()
            .map(|(idx, source)| TicketTrack {
                catalog_track_id: source.id.into(),
                disc_number: 1,
                track_number: u32::try_from(idx + 1).unwrap(),
                name: format!("{} ({})", source.what, source.id),
                duration_secs: source.secs,
                dest_path: media.join(format!("{}.{}", source.id, extension(format))).to_str().unwrap().into(),
            })
            .collect(),
        images: vec![TicketImage {
            catalog_image_id: "front".into(),
            image_type: ImageType::CoverFront,
            dest_path: media.join("cover.jpg").to_str().unwrap().into(),
        }],
        constraints: Constraints {
            format,
            bitrate_kbps: bitrate,
            sample_rate_hz: None,
            embed_metadata: true,
            embed_cover: true,
        },
        metadata_to_embed: BTreeMap::from([
            ("artist".to_string(), serde_json::json!("Corpus Band")),
            ("album".to_string(), serde_json::json!("Real Material")),
            ("year".to_string(), serde_json::json!(2024)),
            ("genre".to_string(), serde_json::json!("Test")),
        ]),
    }
}

async fn convert(work_root: &Path, corpus: &Corpus, ticket: Ticket) -> Result<ConversionOutput, ConvertError> {
    let config = ConverterConfig { max_parallel_conversions: 2, ..ConverterConfig::default() };
    let converter = FfmpegConverter::new(&config, work_root.to_path_buf()).unwrap();
    let mapping = ticket
        .tracks
        .iter()
        .map(|track| TrackMapping {
            catalog_track_id: track.catalog_track_id.clone(),
            torrent_file_path: corpus.source(&track.catalog_track_id).file_name.clone(),
            confidence: 1.0,
        })
        .collect();
    let job = ConversionJob {
        ticket,
        source_root: corpus.dir.clone(),
        mapping,
        torrent_files: corpus_files(corpus),
        cancel: CancellationToken::new(),
        replaygain: Default::default(),
    };
    converter.convert_ticket(job, &|_| {}).await
}

/// Decodes the whole file with ffmpeg; it must succeed and print nothing at `error` level.
fn assert_decodes_cleanly(path: &Path, what: &str) {
    let url = format!("file:{}", path.display());
    let output = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-v", "error", "-i", &url, "-f", "null", "-"])
        .output()
        .unwrap();
    assert!(
        output.status.success() && output.stderr.is_empty(),
        "{what}: decoding printed {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Reads one converted track back and checks everything the ticket promised.
fn assert_output(
    path: &Path,
    source: &CorpusSource,
    (format, asked_kbps): (OutputFormat, u32),
    track: &TicketTrack,
    cover: &[u8],
) {
    let what = format!("{format:?} from {} ({})", source.id, source.what);
    let probe = audio::probe(path);
    let stream = audio::audio_stream(&probe);
    assert_eq!(stream["codec_name"], codec_name(format), "{what}");
    assert_eq!(stream["sample_rate"], expected_rate(source, format).to_string(), "{what}");
    assert_eq!(stream["channels"], expected_channels(source, format), "{what}");
    let duration: f64 = probe["format"]["duration"].as_str().unwrap().parse().unwrap();
    let tolerance = (0.003 * source.secs).max(0.1);
    assert!((duration - source.secs).abs() <= tolerance, "{what}: lasts {duration} s, the source {} s", source.secs);
    if let Some(ceiling) = ceiling_kbps(source, format, asked_kbps, duration) {
        let kbps = audio::audio_payload_kbps(path);
        assert!(kbps <= ceiling, "{what}: {kbps:.0} kbit/s of audio, above the ceiling {ceiling:.0}");
    }
    if format == OutputFormat::Flac {
        let bits = if matches!(source.id, "hires" | "float") { "24" } else { "16" };
        assert_eq!(stream["bits_per_raw_sample"], bits, "{what}");
    }
    let tagged = lofty::read_from_path(path).unwrap_or_else(|err| panic!("{what}: lofty: {err}"));
    let tag = tagged.primary_tag().unwrap_or_else(|| panic!("{what}: no tag"));
    assert_eq!(tag.title().as_deref(), Some(track.name.as_str()), "{what}");
    assert_eq!(tag.artist().as_deref(), Some("Corpus Band"), "{what}");
    assert_eq!(tag.album().as_deref(), Some("Real Material"), "{what}");
    assert_eq!(tag.track(), Some(track.track_number), "{what}");
    assert_eq!(tag.pictures().len(), 1, "{what}: one embedded cover");
    assert_eq!(tag.pictures()[0].data(), cover, "{what}: the ticket's cover");
    assert_decodes_cleanly(path, &what);
}

/// The corpus is what its recipes say (checked once per run, independently of the converter).
fn assert_corpus_as_described(corpus: &Corpus) {
    static CHECKED: std::sync::Once = std::sync::Once::new();
    CHECKED.call_once(|| {
        for source in &corpus.sources {
            let probe = audio::probe(&source.path);
            let stream = audio::audio_stream(&probe);
            assert_eq!(stream["sample_rate"], source.rate_hz.to_string(), "{}", source.id);
            assert_eq!(stream["channels"], source.channels, "{}", source.id);
            let duration: f64 = probe["format"]["duration"].as_str().unwrap().parse().unwrap();
            assert!((duration - source.secs).abs() <= 0.1, "{} lasts {duration} s", source.id);
        }
    });
}

async fn corpus_converts_to(format: OutputFormat) {
    let corpus = Corpus::get();
    assert_corpus_as_described(corpus);
    let dir = tempfile::tempdir().unwrap();
    let lossy_for_flac =
        |source: &&CorpusSource| format == OutputFormat::Flac && matches!(source.codec, SourceCodec::Lossy(_));
    let sources: Vec<&CorpusSource> = corpus.sources.iter().filter(|source| !lossy_for_flac(source)).collect();
    let bitrate = (format != OutputFormat::Flac).then_some(ASKED_KBPS);
    let media = dir.path().join("media");
    let ticket = ticket(&format!("corpus-{}", extension(format)), format, bitrate, &sources, &media);
    let tracks = ticket.tracks.clone();
    let output =
        convert(&dir.path().join("work"), corpus, ticket).await.unwrap_or_else(|err| panic!("{format:?}: {err}"));
    assert_eq!(output.tracks.len(), sources.len());
    assert!(output.missing_image_ids.is_empty());
    let cover = std::fs::read(&output.images[0].path).unwrap();
    assert_eq!(cover, std::fs::read(&corpus.cover).unwrap(), "a small JPEG cover is kept as it is");
    for ((file, source), track) in output.tracks.iter().zip(&sources).zip(&tracks) {
        assert_eq!(file.catalog_id, source.id);
        assert_output(&file.path, source, (format, ASKED_KBPS), track, &cover);
    }
    // Lossy sources asked above their bitrate: capped, and the outcome says so.
    for source in sources.iter().filter(|source| matches!(source.codec, SourceCodec::Lossy(_))) {
        assert!(
            output.adjustments.iter().any(|note| note.contains(&source.file_name) && note.contains("capped")),
            "{format:?}: the cap of {} is reported: {:?}",
            source.file_name,
            output.adjustments
        );
    }
    assert_eq!(
        output.adjustments.len(),
        sources.iter().filter(|source| matches!(source.codec, SourceCodec::Lossy(_))).count(),
        "only lossy sources are adjusted: {:?}",
        output.adjustments
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corpus_converts_to_ogg_vorbis() {
    corpus_converts_to(OutputFormat::OggVorbis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corpus_converts_to_opus() {
    corpus_converts_to(OutputFormat::Opus).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corpus_converts_to_mp3() {
    corpus_converts_to(OutputFormat::Mp3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corpus_converts_to_aac() {
    corpus_converts_to(OutputFormat::Aac).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corpus_converts_to_flac_and_refuses_lossy_sources() {
    corpus_converts_to(OutputFormat::Flac).await;
    let corpus = Corpus::get();
    for id in ["mp3_128", "aac_96"] {
        let dir = tempfile::tempdir().unwrap();
        let source = corpus.source(id);
        let ticket = ticket(&format!("lossy-{id}"), OutputFormat::Flac, None, &[source], &dir.path().join("media"));
        let err = convert(&dir.path().join("work"), corpus, ticket).await.unwrap_err();
        assert!(matches!(err, ConvertError::LossySourceForLossless { .. }), "{id}: {err:?}");
        assert!(!err.is_retryable(), "{id}");
        let message = err.to_string();
        assert!(message.contains(&source.file_name), "{id}: names the file: {message}");
        assert!(message.contains("approve a lossless release") && message.contains("lossy output format"), "{message}");
        let leftovers: Vec<PathBuf> =
            std::fs::read_dir(dir.path().join("work")).unwrap().flatten().map(|entry| entry.path()).collect();
        assert!(leftovers.is_empty(), "{id}: nothing left in the work root: {leftovers:?}");
    }
}

/// The failing case at the converter: a mono recording (two identical channels) asked as Vorbis at 192,
/// 256 and 320 kbit/s. libvorbis spends far fewer bits than asked on it; the conversion must succeed anyway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mono_recording_converts_to_vorbis_at_every_bitrate() {
    let corpus = Corpus::get();
    let source = corpus.source("mono_in_stereo");
    for kbps in [192, 256, 320] {
        let dir = tempfile::tempdir().unwrap();
        let media = dir.path().join("media");
        let ticket = ticket(&format!("mono-{kbps}"), OutputFormat::OggVorbis, Some(kbps), &[source], &media);
        let track = ticket.tracks[0].clone();
        let output =
            convert(&dir.path().join("work"), corpus, ticket).await.unwrap_or_else(|err| panic!("{kbps}: {err}"));
        let path = &output.tracks[0].path;
        let cover = std::fs::read(&corpus.cover).unwrap();
        assert_output(path, source, (OutputFormat::OggVorbis, kbps), &track, &cover);
        eprintln!("mono recording as Vorbis {kbps}: {:.0} kbit/s of audio", audio::audio_payload_kbps(path));
    }
}
