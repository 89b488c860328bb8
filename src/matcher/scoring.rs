//! Candidate scoring (pure): judges one search result against the ticket from its title (artist, album, year, kind
//! flags) and, when there is one, its file list (track mapping, durations, quality), and turns the labelling rules of
//! "best" into a score: a verified candidate always outranks a title-only one, which always outranks a rejected one;
//! within a class the order is healthy swarm, not a pack, quality tier, exact edition, seeders.
//! It never decides auto-approval (that is `mod.rs`), and a hard reject here can never be undone by a later stage.

use std::collections::{BTreeSet, HashSet};

use crate::models::verdict::reword;
use crate::models::{HardReject, Ticket, TorrentCandidate, TrackMapping, UnaskedKind};
use crate::searcher::release::{
    detect_kinds, fold_artist, fold_text, fold_tokens, is_edition_word, parse_release_title, AudioFormat, ReleaseInfo,
    ReleaseKinds, ReleaseSource, VbrPreset,
};

use super::cue::{cue_track_reference, find_cue_images};
use super::duration::{bitrate_range_kbps, DurationCheck, DurationModel};
use super::mapping::{map_tracks, prepare_tracks, read_audio_files, AudioFile, MatchMemo, PreparedTrack};

/// Seeders below this make a weak swarm.
pub const HEALTHY_SEEDERS: u32 = 3;

/// Which of the three ranking classes a candidate is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CandidateClass {
    /// Has no hard reject: a file list with every ticket track mapped.
    Verified,
    /// Has no file list; its title names the album and nothing rejects it.
    TitleOnly,
    /// At least one hard reject.
    Rejected,
}

pub use crate::models::Doubt;

/// The verdict on one candidate.
#[derive(Debug, Clone)]
pub struct Evaluation {
    pub class: CandidateClass,
    pub score: f64,
    pub reasoning: String,
    pub mapping: Vec<TrackMapping>,
    pub hard_rejects: Vec<HardReject>,
    pub doubts: Vec<Doubt>,
}

/// Ticket facts shared by every candidate.
pub struct TicketContext {
    tracks: Vec<PreparedTrack>,
    artist: String,
    artist_parts: Vec<Vec<String>>,
    artist_non_latin: bool,
    various_artists: bool,
    album_tokens: Vec<String>,
    album_edition_tokens: Vec<String>,
    self_titled: bool,
    year: Option<i32>,
    kinds: ReleaseKinds,
    disc_count: usize,
}

const STOPWORDS: [&str; 9] = ["the", "a", "an", "and", "of", "el", "la", "le", "de"];

fn has_non_latin(text: &str) -> bool {
    text.chars().any(|c| c.is_alphabetic() && u32::from(c) > 0x024F)
}

fn latin_part(text: &str) -> String {
    text.chars().map(|c| if c.is_alphabetic() && u32::from(c) > 0x024F { ' ' } else { c }).collect()
}

impl TicketContext {
    /// Prepares the ticket once per matching run.
    pub fn new(ticket: &Ticket) -> TicketContext {
        let artist = ticket.search.artist.clone();
        let folded_artist = fold_text(&artist);
        let various_artists = matches!(folded_artist.as_str(), "various artists" | "various" | "va" | "v a");
        let mut artist_parts: Vec<Vec<String>> = vec![fold_artist(&artist).split(' ').map(str::to_string).collect()];
        static SPLITTER: std::sync::OnceLock<Option<regex::Regex>> = std::sync::OnceLock::new();
        let splitter = SPLITTER
            .get_or_init(|| regex::Regex::new(r"(?i)\s*(?:,|&|/|;|\+|\band\b|\bfeat\.?|\bvs\.?|\bx\b)\s*").ok())
            .as_ref();
        if let Some(re) = splitter {
            for part in re.split(&artist) {
                let folded = fold_artist(part);
                if folded.len() >= 2 {
                    artist_parts.push(folded.split(' ').map(str::to_string).collect());
                }
            }
        }
        artist_parts.retain(|p| p.iter().any(|t| !t.is_empty()));
        let album_raw = &ticket.search.album;
        let album_text = if has_non_latin(album_raw) && latin_part(album_raw).chars().any(|c| c.is_ascii_alphabetic()) {
            latin_part(album_raw)
        } else {
            album_raw.clone()
        };
        let all_album_tokens = fold_tokens(&album_text);
        let album_tokens: Vec<String> = all_album_tokens
            .iter()
            .filter(|t| !STOPWORDS.contains(&t.as_str()) && !is_edition_word(t))
            .cloned()
            .collect();
        let album_edition_tokens: Vec<String> = all_album_tokens
            .iter()
            .filter(|t| is_edition_word(t) && t.as_str() != "edition" && t.as_str() != "version")
            .cloned()
            .collect();
        let self_titled = fold_artist(album_raw) == fold_artist(&artist);
        let kinds = detect_kinds(&fold_tokens(&format!("{} {}", album_raw, artist)));
        let discs: BTreeSet<u32> = ticket.tracks.iter().map(|t| t.disc_number).collect();
        TicketContext {
            tracks: prepare_tracks(ticket),
            artist,
            artist_parts,
            artist_non_latin: has_non_latin(&ticket.search.artist),
            various_artists,
            album_tokens,
            album_edition_tokens,
            self_titled,
            year: ticket.search.year,
            kinds,
            disc_count: discs.len(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum ArtistMatch {
    Yes,
    Uncertain,
    No,
}

fn artist_match(ctx: &TicketContext, title_tokens: &HashSet<&str>, raw_title: &str) -> ArtistMatch {
    if ctx.various_artists {
        return ArtistMatch::Yes;
    }
    let found =
        ctx.artist_parts.iter().any(|part| !part.is_empty() && part.iter().all(|t| title_tokens.contains(t.as_str())));
    if found {
        return ArtistMatch::Yes;
    }
    if ctx.artist_non_latin {
        let raw_lower = raw_title.to_lowercase();
        if raw_lower.contains(&ctx.artist.to_lowercase()) {
            return ArtistMatch::Yes;
        }
        let overlap = ctx.artist_parts.iter().flatten().any(|t| t.len() >= 4 && title_tokens.contains(t.as_str()));
        return if overlap { ArtistMatch::Yes } else { ArtistMatch::Uncertain };
    }
    ArtistMatch::No
}

fn album_coverage(ctx: &TicketContext, title_tokens: &HashSet<&str>) -> f64 {
    if ctx.album_tokens.is_empty() {
        return 1.0;
    }
    let found = ctx
        .album_tokens
        .iter()
        .filter(|t| {
            title_tokens.contains(t.as_str())
                || (t.len() >= 5 && title_tokens.iter().any(|w| w.len() >= 5 && strsim::jaro_winkler(t, w) >= 0.92))
        })
        .count();
    found as f64 / ctx.album_tokens.len() as f64
}

/// Quality tier of the labelling rules: 4 lossless (CD/WEB/SACD), 3 lossless vinyl, 2 lossy >= 256 or V0,
/// 1 lossy 160-224 or V2, 0 128 kbps or less.
fn quality_tier(lossless: bool, info: &ReleaseInfo, lossy_kbps: Option<f64>) -> u8 {
    if lossless {
        return if info.source == Some(ReleaseSource::Vinyl) { 3 } else { 4 };
    }
    match (info.vbr, info.bitrate_kbps, lossy_kbps) {
        (Some(VbrPreset::V0 | VbrPreset::V1), _, _) => 2,
        (Some(VbrPreset::V2), _, _) => 1,
        (None, Some(kbps), _) if kbps >= 256 => 2,
        (None, Some(kbps), _) if kbps > 128 => 1,
        (None, Some(_), _) => 0,
        (None, None, Some(kbps)) if kbps >= 230.0 => 2,
        (None, None, Some(kbps)) if kbps >= 145.0 => 1,
        (None, None, Some(_)) => 0,
        (None, None, None) => 1,
    }
}

/// The preference of the labelling rules as one number in [0, 1]; each rule outweighs all the later ones together.
fn preference(seeders: u32, pack: bool, tier: u8, exact: bool) -> f64 {
    let seed_frac = ((1.0 + f64::from(seeders)).ln() / 1001f64.ln()).min(1.0);
    0.5 * f64::from(u8::from(seeders >= HEALTHY_SEEDERS))
        + 0.24 * f64::from(u8::from(!pack))
        + 0.0475 * f64::from(tier.min(4))
        + 0.025 * f64::from(u8::from(exact))
        + 0.02 * seed_frac
}

fn round4(value: f64) -> f64 {
    if value.is_finite() {
        (value * 10_000.0).round() / 10_000.0
    } else {
        0.0
    }
}

/// Judges one candidate. `memo` is shared by the candidates of one ticket (see [`MatchMemo`]).
pub fn evaluate_candidate(ctx: &TicketContext, memo: &mut MatchMemo, candidate: &TorrentCandidate) -> Evaluation {
    let folder = candidate
        .files
        .as_ref()
        .and_then(|files| files.first())
        .and_then(|f| f.path.split_once('/').map(|(top, _)| top.to_string()));
    let info = parse_release_title(&candidate.title, folder.as_deref());
    let mut token_pool: Vec<String> = info.tokens.clone();
    if let Some(top) = &folder {
        token_pool.extend(fold_tokens(top));
    }
    let title_tokens: HashSet<&str> = token_pool.iter().map(String::as_str).collect();
    let raw_title = format!("{} {}", candidate.title, folder.as_deref().unwrap_or(""));

    let mut hard_rejects: Vec<HardReject> = Vec::new();
    let mut doubts: Vec<Doubt> = Vec::new();
    let mut notes: Vec<String> = Vec::new();

    let artist = artist_match(ctx, &title_tokens, &raw_title);
    match artist {
        ArtistMatch::Yes => {}
        ArtistMatch::Uncertain => doubts.push(Doubt::ArtistUncertain),
        ArtistMatch::No => hard_rejects.push(HardReject::WrongArtist { artist: ctx.artist.clone() }),
    }
    let coverage = album_coverage(ctx, &title_tokens);
    let kinds = info.kinds;
    for (flag, asked, kind) in [
        (kinds.live, ctx.kinds.live, UnaskedKind::Live),
        (kinds.tribute, ctx.kinds.tribute, UnaskedKind::Tribute),
        (kinds.compilation && !kinds.various_artists, ctx.kinds.compilation, UnaskedKind::Compilation),
        (kinds.various_artists, ctx.kinds.various_artists || ctx.various_artists, UnaskedKind::VariousArtists),
        (kinds.other_mix, ctx.kinds.other_mix, UnaskedKind::OtherMix),
    ] {
        if flag && !asked {
            hard_rejects.push(HardReject::UnaskedKind { kind });
        }
    }
    if candidate.seeders == 0 {
        hard_rejects.push(HardReject::NoSeeders);
    }
    let year_conflict = match ctx.year {
        Some(year) if !info.years.is_empty() => {
            !info.years.iter().any(|y| (y - year).abs() <= 1) && info.editions.is_empty()
        }
        _ => false,
    };

    let expected = ctx.tracks.len();
    let mut mapping: Vec<TrackMapping> = Vec::new();
    let mut mapped = 0usize;
    let mut tier = 1u8;
    let mut exact = info.editions.is_empty();
    let has_files = candidate.files.as_ref().is_some_and(|f| !f.is_empty());

    if let Some(files) = candidate.files.as_ref().filter(|f| !f.is_empty()) {
        let audio = read_audio_files(files, &ctx.artist);
        let images = find_cue_images(files, &audio);
        if audio.is_empty() {
            hard_rejects.push(HardReject::NoAudioFiles);
        } else if !images.is_empty()
            && images.len() == audio.len()
            && images.len() == ctx.disc_count
            && expected > images.len()
        {
            // One image per disc: every track maps into its disc's image.
            let discs: Vec<u32> = ctx.tracks.iter().map(|t| t.disc).collect::<BTreeSet<u32>>().into_iter().collect();
            let lossless = true;
            let mut total_secs = 0.0;
            let total_bytes: u64 = images.iter().map(|i| i.size_bytes).sum();
            for track in &ctx.tracks {
                let disc_idx = discs.iter().position(|d| *d == track.disc).unwrap_or(0);
                if let Some(image) = images.get(disc_idx) {
                    mapping.push(TrackMapping {
                        catalog_track_id: track.catalog_track_id.clone(),
                        torrent_file_path: cue_track_reference(&image.image_path, track.track),
                        confidence: 0.85,
                    });
                    mapped += 1;
                    total_secs += track.duration_secs;
                }
            }
            let kbps = if total_secs > 0.0 { total_bytes as f64 * 8.0 / total_secs / 1000.0 } else { 0.0 };
            let format = audio.first().map_or(AudioFormat::Flac, |a| a.format);
            let (low, high) = bitrate_range_kbps(format, info.bit_depth, info.sample_rate_hz, info.vbr);
            if kbps < low * 0.85 || kbps > high * 1.15 {
                doubts.push(Doubt::Duration {
                    expected_secs: total_secs,
                    found_secs: total_bytes as f64 * 8.0 / (low.max(1.0) * 1000.0),
                });
            }
            // Track numbers inside an image are only known from the cue sheet: trust them only for a title that
            // names exactly this album and edition.
            let other_edition = info.editions.iter().any(|e| e != "remaster" && !ctx.album_edition_tokens.contains(e));
            if coverage < 0.99
                || artist != ArtistMatch::Yes
                || year_conflict
                || other_edition
                || !ctx.album_edition_tokens.is_empty()
            {
                doubts.push(Doubt::CueUnverified);
            }
            notes.push(format!(
                "CUE image{} ({} tracks), ~{kbps:.0} kbps",
                if images.len() > 1 { "s" } else { "" },
                mapped
            ));
            tier = quality_tier(lossless, &info, None);
            exact = exact && info.disc_marker.is_none();
        } else {
            let cbr = if info.vbr.is_none() { info.bitrate_kbps } else { None };
            let mut best_subset = map_file_subset(memo, &ctx.tracks, &audio, cbr);
            if ctx.disc_count <= 1 {
                // A single-disc album inside a multi-disc set: try each folder alone too (a box holding two
                // recordings of the same work maps by name to either; the durations tell them apart).
                let dirs: BTreeSet<&str> = audio.iter().map(|a| a.dir.as_str()).collect();
                if dirs.len() > 1 {
                    for dir in dirs {
                        let subset: Vec<AudioFile> = audio.iter().filter(|a| a.dir == dir).cloned().collect();
                        if subset.len() * 5 < expected * 4 {
                            continue;
                        }
                        let candidate_subset = map_file_subset(memo, &ctx.tracks, &subset, cbr);
                        if candidate_subset.quality_key() > best_subset.quality_key() {
                            best_subset = candidate_subset;
                        }
                    }
                }
            }
            let SubsetMapping {
                mapping: subset_mapping,
                missing,
                unconfirmed,
                placeholder_named,
                off,
                longer,
                name_sum,
                lossless_count,
                mapped_bytes,
                mapped_secs,
                model,
            } = best_subset;
            mapped = subset_mapping.len();
            mapping = subset_mapping;
            if !missing.is_empty() {
                hard_rejects.push(HardReject::MissingTracks { missing_track_ids: missing, expected });
            }
            let mass_limit = 2usize.max(expected * 15 / 100);
            if off.len() > mass_limit {
                hard_rejects.push(HardReject::DurationsDiffer { tracks: off.len() });
            } else if let Some(&(expected_secs, found_secs)) =
                off.iter().max_by(|a, b| (a.1 - a.0).abs().total_cmp(&(b.1 - b.0).abs()))
            {
                doubts.push(Doubt::Duration { expected_secs, found_secs });
            }
            let allowed_unconfirmed = if placeholder_named > 0 { 0 } else { expected / 5 };
            if unconfirmed.len() > allowed_unconfirmed {
                let avg = if mapped > 0 { name_sum / mapped as f64 } else { 0.0 };
                doubts.push(Doubt::NamesUnconfirmed { similarity: round4(avg) });
            }
            let lossless = lossless_count * 2 > mapped.max(1);
            let lossy_kbps = model
                .fitted_kbps()
                .or_else(|| (mapped_secs > 0.0).then(|| mapped_bytes as f64 * 8.0 / mapped_secs / 1000.0));
            tier = quality_tier(lossless, &info, lossy_kbps);
            exact = audio.len() == expected && longer == 0;
            let titles = if mapped > 0 { name_sum / mapped as f64 } else { 0.0 };
            notes.push(format!(
                "{mapped}/{expected} tracks mapped ({} by name), titles {titles:.2}",
                mapped - unconfirmed.len()
            ));
            notes.push(match (off.len(), model.fitted_kbps(), model.cbr_kbps) {
                (0, _, Some(kbps)) => format!("durations consistent (CBR {kbps} kbps)"),
                (0, Some(kbps), None) => format!("durations consistent (~{kbps:.0} kbps)"),
                (0, None, None) => "durations not checkable".to_string(),
                (n, _, _) => format!("{n} durations off"),
            });
            if audio.len() > expected {
                notes.push(format!("{} extra audio files", audio.len() - expected));
            }
        }
        if coverage < 0.6 && hard_rejects.is_empty() {
            doubts.push(Doubt::TitleMismatch { similarity: round4(coverage) });
        }
    } else {
        // Title only.
        if candidate.files.is_some() {
            hard_rejects.push(HardReject::EmptyFileList);
        }
        doubts.push(Doubt::NoFileList);
        if coverage < 0.8 {
            hard_rejects.push(HardReject::TitleLacksAlbum { coverage });
        } else if ctx
            .album_tokens
            .iter()
            .any(|t| t.bytes().all(|b| b.is_ascii_digit()) && !title_tokens.contains(t.as_str()))
        {
            hard_rejects.push(HardReject::OtherNumberOrVolume);
        }
        let missing_edition = ctx.album_edition_tokens.iter().any(|e| !title_tokens.contains(e.as_str()));
        if missing_edition {
            hard_rejects.push(HardReject::LacksAskedEdition);
        }
        if kinds.single && !ctx.kinds.single {
            hard_rejects.push(HardReject::SingleOrEp);
        }
        if kinds.pack {
            hard_rejects.push(HardReject::PackWithoutFileList);
        }
        if let Some(disc) = info.disc_marker {
            if ctx.disc_count <= 1 || disc > u32::try_from(ctx.disc_count).unwrap_or(u32::MAX) {
                hard_rejects.push(HardReject::OnlyOneDisc { disc });
            }
        }
        if ctx.self_titled && year_conflict {
            hard_rejects.push(HardReject::SelfTitledOtherYear);
        } else if ctx.self_titled && info.years.is_empty() {
            doubts.push(Doubt::YearConflict);
        }
        let lossless = info.formats.iter().any(|f| f.is_lossless());
        tier = quality_tier(lossless, &info, None);
        notes.push(format!("title only: album words {coverage:.2}"));
    }
    if year_conflict && has_files {
        doubts.push(Doubt::YearConflict);
    }
    if candidate.seeders < HEALTHY_SEEDERS && candidate.seeders > 0 {
        doubts.push(Doubt::WeakSwarm { seeders: candidate.seeders });
    }
    let pack = info.kinds.pack || candidate.files.as_deref().is_some_and(looks_like_pack);
    if pack {
        doubts.push(Doubt::Pack);
    }
    if tier == 0 {
        doubts.push(Doubt::LowBitrate);
    }

    let class = if !hard_rejects.is_empty() {
        CandidateClass::Rejected
    } else if has_files {
        CandidateClass::Verified
    } else {
        CandidateClass::TitleOnly
    };
    let pref = preference(candidate.seeders, pack, tier, exact);
    let score = match class {
        CandidateClass::Verified => 0.75 + 0.25 * pref,
        CandidateClass::TitleOnly => 0.40 + 0.25 * pref,
        CandidateClass::Rejected => {
            let fraction = if expected > 0 { mapped as f64 / expected as f64 } else { 0.0 };
            0.02 + 0.2 * fraction + 0.1 * pref
        }
    };
    let quality = match tier {
        4 => "lossless",
        3 => "lossless vinyl rip",
        2 => "lossy >= 256 kbps",
        1 => "lossy 160-224 kbps",
        _ => "lossy <= 128 kbps",
    };
    notes.push(quality.to_string());
    if pack {
        notes.push("pack".into());
    }
    notes.push(format!("{} seeders", candidate.seeders));
    let mut reasoning = notes.join(", ");
    if !doubts.is_empty() {
        reasoning.push_str("; doubts: ");
        reasoning.push_str(&doubts.iter().map(Doubt::plain_message).collect::<Vec<_>>().join(", "));
    }
    if !hard_rejects.is_empty() {
        reasoning.push_str("; rejected: ");
        reasoning.push_str(&hard_rejects.iter().map(HardReject::plain_message).collect::<Vec<_>>().join(", "));
    }
    let reasoning = reword(reasoning);
    Evaluation { class, score: round4(score), reasoning, mapping, hard_rejects, doubts }
}

/// Several album folders (not disc folders) each holding at least three audio files: a discography or box of albums.
fn looks_like_pack(files: &[crate::models::TorrentFile]) -> bool {
    let mut per_dir: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for file in files {
        if AudioFormat::from_extension(super::mapping::extension_of(&file.path)).is_some() {
            let dir = file.path.rsplit_once('/').map_or("", |(d, _)| d);
            *per_dir.entry(dir).or_insert(0) += 1;
        }
    }
    let album_dirs = per_dir
        .iter()
        .filter(|(dir, count)| {
            **count >= 3
                && dir.contains('/')
                && dir.rsplit('/').next().and_then(super::mapping::disc_from_dir).is_none()
        })
        .count();
    album_dirs >= 3
}

/// The mapping of the ticket's tracks onto one set of audio files, with its evidence.
struct SubsetMapping {
    mapping: Vec<TrackMapping>,
    missing: Vec<String>,
    unconfirmed: Vec<f64>,
    placeholder_named: usize,
    off: Vec<(f64, f64)>,
    longer: usize,
    name_sum: f64,
    lossless_count: usize,
    mapped_bytes: u64,
    mapped_secs: f64,
    model: DurationModel,
}

impl SubsetMapping {
    /// Higher is better: fewer missing tracks, fewer durations off, more names confirmed, closer names.
    fn quality_key(&self) -> (i64, i64, i64, i64) {
        let to_i64 = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        let milli = |x: f64| -> i64 {
            let clamped = if x.is_finite() { x.clamp(0.0, 1e9) } else { 0.0 };
            // Truncation is impossible: clamped to [0, 1e12] after scaling.
            #[allow(clippy::cast_possible_truncation)]
            let value = (clamped * 1000.0).round() as i64;
            value
        };
        (-to_i64(self.missing.len()), -to_i64(self.off.len()), -to_i64(self.unconfirmed.len()), milli(self.name_sum))
    }
}

/// A candidate's size-to-duration model from `(file, catalog seconds)` pairs believed to belong together: the CBR
/// bitrate its title names for MP3 files, falling back to a fit on every pair when most pairs contradict that
/// bitrate (a V0 labelled 320); otherwise bytes per second fitted on the pairs.
pub fn fit_duration_model(cbr: Option<u32>, pairs: &[(&AudioFile, f64)]) -> DurationModel {
    let sized: Vec<(u64, f64)> = pairs
        .iter()
        .filter(|(file, _)| !(file.format == AudioFormat::Mp3 && cbr.is_some()))
        .map(|(file, secs)| (file.size_bytes, *secs))
        .collect();
    let model = DurationModel::fit(cbr, &sized);
    if cbr.is_some() {
        let off = pairs.iter().filter(|(file, secs)| !model.check(file, *secs).is_consistent()).count();
        if off * 2 > pairs.len() {
            let all: Vec<(u64, f64)> = pairs.iter().map(|(file, secs)| (file.size_bytes, *secs)).collect();
            return DurationModel::fit(None, &all);
        }
    }
    model
}

fn map_file_subset(
    memo: &mut MatchMemo,
    tracks: &[PreparedTrack],
    audio: &[AudioFile],
    cbr: Option<u32>,
) -> SubsetMapping {
    let model_for = |pairs: &[(usize, usize)]| {
        let sized: Vec<(&AudioFile, f64)> =
            pairs.iter().filter_map(|&(t, f)| Some((audio.get(f)?, tracks.get(t)?.duration_secs))).collect();
        fit_duration_model(cbr, &sized)
    };
    let (evidence, model) = map_tracks(memo, tracks, audio, model_for);
    let mut mapping: Vec<TrackMapping> = Vec::new();
    let mut missing: Vec<String> = Vec::new();
    let mut unconfirmed: Vec<f64> = Vec::new();
    let mut placeholder_named = 0usize;
    let mut off: Vec<(f64, f64)> = Vec::new();
    let mut longer = 0usize;
    let mut name_sum = 0.0;
    let mut lossless_count = 0usize;
    let mut mapped_bytes = 0u64;
    let mut mapped_secs = 0.0;
    for (track, pair) in tracks.iter().zip(&evidence) {
        let Some(pair) = pair else {
            missing.push(track.catalog_track_id.clone());
            continue;
        };
        let Some(file) = audio.get(pair.file_idx) else {
            missing.push(track.catalog_track_id.clone());
            continue;
        };
        let confirmed = pair.name_similarity >= 0.75 && !pair.duration.is_too_short();
        let by_number = !confirmed
            && !pair.version_conflict
            && pair.numbers_agree >= 1.0
            && pair.duration.is_tight()
            && (!file.informative || pair.name_similarity >= 0.4);
        if !confirmed && !by_number {
            missing.push(track.catalog_track_id.clone());
            continue;
        }
        if by_number {
            unconfirmed.push(pair.name_similarity);
            if !file.named {
                placeholder_named += 1;
            }
        }
        if !pair.duration.is_consistent() {
            if let Some(secs) = pair.duration.seconds() {
                off.push(secs);
            }
        }
        if pair.duration.is_too_long() {
            longer += 1;
        }
        name_sum += pair.name_similarity;
        if file.format.is_lossless() {
            lossless_count += 1;
        }
        mapped_bytes = mapped_bytes.saturating_add(file.size_bytes);
        mapped_secs += track.duration_secs;
        let duration_factor = match pair.duration {
            DurationCheck::Unknown => 0.95,
            check if check.is_consistent() => 1.0,
            _ => 0.8,
        };
        let base = if confirmed { 0.6 + 0.4 * pair.name_similarity } else { 0.5 + 0.3 * pair.duration.agreement() };
        mapping.push(TrackMapping {
            catalog_track_id: track.catalog_track_id.clone(),
            torrent_file_path: file.path.clone(),
            confidence: round4(base * duration_factor),
        });
    }
    SubsetMapping {
        mapping,
        missing,
        unconfirmed,
        placeholder_named,
        off,
        longer,
        name_sum,
        lossless_count,
        mapped_bytes,
        mapped_secs,
        model,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preference_is_lexicographic() {
        // A healthy swarm beats everything after it.
        assert!(preference(3, true, 0, false) > preference(2, false, 4, true));
        // Not a pack beats quality, edition and seeders.
        assert!(preference(3, false, 0, false) > preference(1000, true, 4, true));
        // Quality beats edition and seeders.
        assert!(preference(3, false, 4, false) > preference(1000, false, 3, true));
        // Edition beats seeders.
        assert!(preference(3, false, 2, true) > preference(1000, false, 2, false));
        assert!(preference(50, false, 2, true) > preference(5, false, 2, true));
    }
}
