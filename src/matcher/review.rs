//! What an admin needs to judge one candidate of a `needs_approval` ticket, computed from the ticket and the
//! candidate as stored (pure, no I/O): a one-line format/quality description, and for every ticket track the file
//! mapped to it with the duration its size implies next to the catalog's, flagged where they disagree or where no
//! file was found. The admin page renders it as the candidate's mapping table; the rules are the matcher's own
//! (`DurationModel`, `DurationCheck::is_consistent`), so the highlight shows what the matcher doubted.

use std::collections::{BTreeSet, HashMap};

use serde::Serialize;

use super::duration::DurationCheck;
use super::mapping::{extension_of, read_audio_files, AudioFile};
use super::scoring::fit_duration_model;
use super::wanted::mapped_files;
use crate::models::{ScoredCandidate, Ticket};
use crate::searcher::release::{parse_release_title, AudioFormat, ReleaseInfo, ReleaseSource, VbrPreset};

/// One candidate as the admin reviews it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct CandidateReview {
    /// Formats and quality from the file extensions and the title ("FLAC 24/96, WEB", "MP3 320").
    pub quality: String,
    /// Audio files in the candidate's file list (`None` when the list is unknown).
    pub audio_files: Option<usize>,
    /// Audio files no ticket track is mapped to (bonus tracks, another disc, ...).
    pub unmapped_audio_files: Vec<String>,
    /// One row per ticket track, in the ticket's order.
    pub tracks: Vec<TrackReview>,
    /// Rows whose size-derived duration disagrees with the catalog's.
    pub disagreeing: usize,
    /// Rows without a file.
    pub unmapped: usize,
}

/// One ticket track against the file mapped to it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct TrackReview {
    pub catalog_track_id: String,
    pub disc_number: u32,
    pub track_number: u32,
    pub name: String,
    pub expected_secs: f64,
    /// The torrent file (or `<image>#<n>` for a CUE image); `None` when no file was mapped.
    pub file: Option<String>,
    pub confidence: Option<f64>,
    pub file_size_bytes: Option<u64>,
    /// The duration the file's size implies, when it can be estimated.
    pub estimated_secs: Option<f64>,
    pub duration: DurationVerdict,
}

/// How a mapped file's size-derived duration compares with the catalog's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DurationVerdict {
    /// Within the format's uncertainty.
    Agrees,
    /// Outside it: another recording, a split or joined track, or the wrong album.
    Disagrees,
    /// No estimate (unknown bitrate, a CUE image track, no size).
    Unknown,
    /// No file is mapped to this track.
    Unmapped,
}

/// The review of `scored` for `ticket`.
pub fn review_candidate(ticket: &Ticket, scored: &ScoredCandidate) -> CandidateReview {
    let candidate = &scored.candidate;
    let info = parse_release_title(&candidate.title, None);
    let audio: Vec<AudioFile> =
        candidate.files.as_deref().map(|files| read_audio_files(files, &ticket.search.artist)).unwrap_or_default();
    let by_path: HashMap<&str, &AudioFile> = audio.iter().map(|file| (file.path.as_str(), file)).collect();
    let mapped_file = |track_id: &str| scored.track_mapping.iter().find(|mapping| mapping.catalog_track_id == track_id);

    let pairs: Vec<(&AudioFile, f64)> = ticket
        .tracks
        .iter()
        .filter_map(|track| {
            let mapping = mapped_file(&track.catalog_track_id)?;
            Some((*by_path.get(mapping.torrent_file_path.as_str())?, track.duration_secs))
        })
        .collect();
    let cbr = if info.vbr.is_none() { info.bitrate_kbps } else { None };
    let model = fit_duration_model(cbr, &pairs);

    let tracks: Vec<TrackReview> = ticket
        .tracks
        .iter()
        .map(|track| {
            let mapping = mapped_file(&track.catalog_track_id);
            let file = mapping.and_then(|m| by_path.get(m.torrent_file_path.as_str()).copied());
            let check = file.map(|file| model.check(file, track.duration_secs)).unwrap_or(DurationCheck::Unknown);
            let duration = match (mapping, check) {
                (None, _) => DurationVerdict::Unmapped,
                (Some(_), DurationCheck::Unknown) => DurationVerdict::Unknown,
                (Some(_), check) if check.is_consistent() => DurationVerdict::Agrees,
                (Some(_), _) => DurationVerdict::Disagrees,
            };
            TrackReview {
                catalog_track_id: track.catalog_track_id.clone(),
                disc_number: track.disc_number,
                track_number: track.track_number,
                name: track.name.clone(),
                expected_secs: track.duration_secs,
                file: mapping.map(|m| m.torrent_file_path.clone()),
                confidence: mapping.map(|m| m.confidence),
                file_size_bytes: file.map(|f| f.size_bytes),
                estimated_secs: check.seconds().map(|(_, estimated)| (estimated * 10.0).round() / 10.0),
                duration,
            }
        })
        .collect();

    let listed: Vec<&str> = candidate.files.iter().flatten().map(|file| file.path.as_str()).collect();
    let mapped_paths: BTreeSet<&str> = mapped_files(scored, &listed);
    let unmapped_audio_files =
        audio.iter().filter(|file| !mapped_paths.contains(file.path.as_str())).map(|file| file.path.clone()).collect();
    let file_formats: BTreeSet<AudioFormat> = candidate
        .files
        .iter()
        .flatten()
        .filter_map(|file| AudioFormat::from_extension(extension_of(&file.path)))
        .collect();
    CandidateReview {
        quality: describe_quality(&info, &file_formats),
        audio_files: candidate.files.as_ref().map(|_| audio.len()),
        unmapped_audio_files,
        disagreeing: tracks.iter().filter(|t| t.duration == DurationVerdict::Disagrees).count(),
        unmapped: tracks.iter().filter(|t| t.duration == DurationVerdict::Unmapped).count(),
        tracks,
    }
}

/// "FLAC 24/96, WEB": the formats (from the files when known, else the title), the bit depth / sample rate or MP3
/// bitrate the title names, and the source.
fn describe_quality(info: &ReleaseInfo, file_formats: &BTreeSet<AudioFormat>) -> String {
    let formats = if file_formats.is_empty() { &info.formats } else { file_formats };
    let mut parts: Vec<String> = Vec::new();
    let names: Vec<&str> = formats.iter().map(|format| format_name(*format)).collect();
    if !names.is_empty() {
        parts.push(names.join("+"));
    }
    match (info.bit_depth, info.sample_rate_hz) {
        (Some(depth), Some(rate)) => parts.push(format!("{depth}/{}", trim_khz(rate))),
        (Some(depth), None) => parts.push(format!("{depth}-bit")),
        _ => {}
    }
    if let Some(vbr) = info.vbr {
        parts.push(
            match vbr {
                VbrPreset::V0 => "V0",
                VbrPreset::V1 => "V1",
                VbrPreset::V2 => "V2",
            }
            .to_string(),
        );
    } else if let Some(kbps) = info.bitrate_kbps {
        parts.push(kbps.to_string());
    }
    let mut text = if parts.is_empty() { "unknown format".to_string() } else { parts.join(" ") };
    if let Some(source) = info.source {
        text.push_str(", ");
        text.push_str(match source {
            ReleaseSource::Cd => "CD",
            ReleaseSource::Web => "WEB",
            ReleaseSource::Vinyl => "vinyl",
            ReleaseSource::Sacd => "SACD",
            ReleaseSource::Cassette => "cassette",
        });
    }
    text
}

fn trim_khz(rate_hz: u32) -> String {
    if rate_hz % 1000 == 0 {
        (rate_hz / 1000).to_string()
    } else {
        format!("{:.1}", f64::from(rate_hz) / 1000.0)
    }
}

fn format_name(format: AudioFormat) -> &'static str {
    match format {
        AudioFormat::Flac => "FLAC",
        AudioFormat::Alac => "ALAC",
        AudioFormat::Ape => "APE",
        AudioFormat::Wavpack => "WavPack",
        AudioFormat::Wav => "WAV",
        AudioFormat::Aiff => "AIFF",
        AudioFormat::Dsd => "DSD",
        AudioFormat::Mp3 => "MP3",
        AudioFormat::Aac => "AAC",
        AudioFormat::Ogg => "Ogg",
        AudioFormat::Opus => "Opus",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{TorrentCandidate, TorrentFile, TrackMapping};

    fn ticket(durations: &[f64]) -> Ticket {
        let tracks: Vec<serde_json::Value> = durations
            .iter()
            .enumerate()
            .map(|(n, secs)| {
                serde_json::json!({
                    "catalog_track_id": format!("t{}", n + 1), "track_number": n + 1,
                    "name": format!("Song {}", n + 1), "duration_secs": secs,
                    "dest_path": format!("/music/a/{:02}.ogg", n + 1)
                })
            })
            .collect();
        serde_json::from_value(serde_json::json!({
            "ticket_id": "r1", "created_at": "2026-01-01T00:00:00Z",
            "search": {"artist": "Band", "album": "Record"},
            "tracks": tracks,
            "constraints": {"format": "ogg_vorbis", "sample_rate_hz": 44100, "bitrate_kbps": 192}
        }))
        .unwrap()
    }

    /// MP3 CBR 320: 40 000 bytes a second (plus a small header allowance).
    fn mp3_file(n: usize, secs: u64) -> TorrentFile {
        TorrentFile { path: format!("Band - Record [MP3 320]/{n:02} - Song {n}.mp3"), size_bytes: secs * 40_000 }
    }

    fn scored(files: Vec<TorrentFile>, mapped: &[(usize, usize)]) -> ScoredCandidate {
        let track_mapping = mapped
            .iter()
            .map(|&(track, file)| TrackMapping {
                catalog_track_id: format!("t{track}"),
                torrent_file_path: files[file].path.clone(),
                confidence: 0.9,
            })
            .collect();
        let mut candidate = TorrentCandidate::with_title("Band - Record (2001) [MP3 320] WEB");
        candidate.files = Some(files);
        ScoredCandidate {
            candidate,
            score: 0.5,
            reasoning: String::new(),
            track_mapping,
            hard_rejects: Vec::new(),
            doubts: Vec::new(),
        }
    }

    #[test]
    fn flags_a_file_whose_size_contradicts_the_catalog_duration_and_an_unmapped_track() {
        // Track 2's file lasts 120 s by its size; the catalog says 200 s. Track 3 has no file; file 4 is a bonus.
        let files = vec![mp3_file(1, 180), mp3_file(2, 120), mp3_file(4, 90)];
        let review = review_candidate(&ticket(&[180.0, 200.0, 240.0]), &scored(files, &[(1, 0), (2, 1)]));
        let verdicts: Vec<DurationVerdict> = review.tracks.iter().map(|t| t.duration).collect();
        assert_eq!(verdicts, [DurationVerdict::Agrees, DurationVerdict::Disagrees, DurationVerdict::Unmapped]);
        let estimated = review.tracks[1].estimated_secs.unwrap();
        assert!((estimated - 120.0).abs() < 1.0, "{estimated}");
        assert_eq!(review.tracks[2].file, None);
        assert_eq!((review.disagreeing, review.unmapped), (1, 1));
        assert_eq!(review.unmapped_audio_files, ["Band - Record [MP3 320]/04 - Song 4.mp3"]);
        assert_eq!(review.audio_files, Some(3));
        assert_eq!(review.quality, "MP3 320, WEB");
    }

    #[test]
    fn an_unknown_file_list_or_bitrate_gives_unknown_durations_never_a_false_alarm() {
        let mut no_list = scored(Vec::new(), &[]);
        no_list.candidate.files = None;
        no_list.candidate.title = "Band - Record [FLAC 24-96]".into();
        let review = review_candidate(&ticket(&[100.0]), &no_list);
        assert_eq!(review.audio_files, None);
        assert_eq!(review.tracks[0].duration, DurationVerdict::Unmapped);
        assert_eq!(review.quality, "FLAC 24/96");

        // One FLAC file: nothing to fit a bitrate on.
        let flac = vec![TorrentFile { path: "Band - Record/01 - Song 1.flac".into(), size_bytes: 30_000_000 }];
        let mut one = scored(flac, &[(1, 0)]);
        one.candidate.title = "Band - Record".into();
        let review = review_candidate(&ticket(&[100.0]), &one);
        assert_eq!(review.tracks[0].duration, DurationVerdict::Unknown);
        assert_eq!(review.tracks[0].estimated_secs, None);
        assert_eq!(review.quality, "FLAC");
    }

    #[test]
    fn a_cue_image_track_is_mapped_but_its_duration_unknown() {
        let image = vec![TorrentFile { path: "Band - Record/Record.flac".into(), size_bytes: 300_000_000 }];
        let mut cue = scored(image, &[]);
        cue.track_mapping = vec![TrackMapping {
            catalog_track_id: "t1".into(),
            torrent_file_path: "Band - Record/Record.flac#1".into(),
            confidence: 0.8,
        }];
        let review = review_candidate(&ticket(&[100.0]), &cue);
        assert_eq!(review.tracks[0].duration, DurationVerdict::Unknown);
        assert_eq!(review.tracks[0].file.as_deref(), Some("Band - Record/Record.flac#1"));
        assert!(review.unmapped_audio_files.is_empty(), "the image itself is in use: {review:?}");
    }
}
