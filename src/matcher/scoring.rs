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
    /// The whole artist folded, each `and` one of the ways `&` is written (see [`squashed_artist_forms`]).
    artist_squashed: Vec<String>,
    artist_non_latin: bool,
    various_artists: bool,
    /// The album's words that name it (no stopwords, edition words or soundtrack descriptors).
    album_tokens: Vec<String>,
    album_edition_tokens: Vec<String>,
    /// Every folded word of the album title and the artist: kind words among them belong to the names.
    own_words: Vec<String>,
    self_titled: bool,
    year: Option<i32>,
    /// Kinds the ticket's album and artist words name (asked for).
    kinds: ReleaseKinds,
    /// Kinds the album title alone names.
    album_kinds: ReleaseKinds,
    disc_count: usize,
    /// The sum of the ticket's durations.
    total_secs: f64,
    /// A single or an EP by its own track count and length (or its words).
    short_release: bool,
}

/// Words that describe a soundtrack rather than name it (dropped from a soundtrack album's naming words).
const SOUNDTRACK_WORDS: [&str; 17] = [
    "ost",
    "soundtrack",
    "original",
    "motion",
    "picture",
    "score",
    "music",
    "from",
    "inspired",
    "by",
    "series",
    "film",
    "the",
    "and",
    "video",
    "game",
    "songs",
];

/// Whether folded album words announce a soundtrack.
fn names_a_soundtrack(tokens: &[String]) -> bool {
    let has = |word: &str| tokens.iter().any(|t| t == word);
    let phrase = |a: &str, b: &str| tokens.windows(2).any(|w| w[0] == a && w[1] == b);
    has("ost")
        || has("soundtrack")
        || phrase("motion", "picture")
        || phrase("original", "score")
        || phrase("inspired", "by")
        || phrase("original", "series")
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
        let soundtrack = names_a_soundtrack(&all_album_tokens);
        let naming = |t: &&String| !STOPWORDS.contains(&t.as_str()) && !is_edition_word(t) && t.as_str() != "ost";
        let mut album_tokens: Vec<String> = all_album_tokens.iter().filter(naming).cloned().collect();
        if soundtrack {
            let titled: Vec<String> =
                album_tokens.iter().filter(|t| !SOUNDTRACK_WORDS.contains(&t.as_str())).cloned().collect();
            if !titled.is_empty() {
                album_tokens = titled;
            }
        }
        let album_edition_tokens: Vec<String> = all_album_tokens
            .iter()
            .filter(|t| is_edition_word(t) && t.as_str() != "edition" && t.as_str() != "version")
            .cloned()
            .collect();
        let self_titled = fold_artist(album_raw) == fold_artist(&artist);
        let kinds = detect_kinds(&fold_tokens(&format!("{} {}", album_raw, artist)));
        let album_kinds = detect_kinds(&fold_tokens(album_raw));
        let mut own_words = fold_tokens(album_raw);
        own_words.extend(fold_tokens(&artist));
        let discs: BTreeSet<u32> = ticket.tracks.iter().map(|t| t.disc_number).collect();
        let total_secs: f64 = ticket.tracks.iter().map(|t| t.duration_secs).filter(|s| s.is_finite()).sum();
        let count = ticket.tracks.len();
        let short_release =
            kinds.single || (count <= 3 && total_secs <= 20.0 * 60.0) || (count <= 7 && total_secs <= 35.0 * 60.0);
        TicketContext {
            tracks: prepare_tracks(ticket),
            artist_squashed: squashed_artist_forms(&fold_artist(&artist)),
            artist,
            artist_parts,
            artist_non_latin: has_non_latin(&ticket.search.artist),
            various_artists,
            album_tokens,
            album_edition_tokens,
            own_words,
            self_titled,
            year: ticket.search.year,
            kinds,
            album_kinds,
            disc_count: discs.len(),
            total_secs,
            short_release,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum ArtistMatch {
    Yes,
    Uncertain,
    No,
}

/// The ways a folded artist name can be written as one run of letters: the words joined, each `and` (`&`, `+`)
/// written as `and`, `n`, `p` or left out (`Hollis & Vane` -> `hollisandvane`, `hollisnvane`, `hollisvane`, ...).
/// Empty for a one-word name (the word itself is compared already).
fn squashed_artist_forms(folded_artist: &str) -> Vec<String> {
    let words: Vec<&str> = folded_artist.split(' ').filter(|w| !w.is_empty()).collect();
    if words.len() < 2 {
        return Vec::new();
    }
    let mut forms = vec![String::new()];
    for word in words {
        let spellings: &[&str] = if word == "and" { &["and", "n", "p", ""] } else { &[word] };
        forms = forms.iter().flat_map(|form| spellings.iter().map(move |s| format!("{form}{s}"))).collect();
        forms.truncate(64);
    }
    forms.retain(|f| f.len() >= 4);
    forms
}

/// Whether some run of one to four consecutive title words, written together, is one of `forms`.
fn squashed_in(forms: &[String], title_words: &[String]) -> bool {
    if forms.is_empty() {
        return false;
    }
    (0..title_words.len()).any(|start| {
        let mut joined = String::new();
        title_words.iter().skip(start).take(4).any(|word| {
            joined.push_str(word);
            forms.contains(&joined)
        })
    })
}

/// Words a title may put in the artist's place of a soundtrack (`VA - X OST`, `OST - X`).
const SOUNDTRACK_ARTIST_WORDS: [&str; 7] = ["va", "various", "artists", "ost", "soundtrack", "original", "score"];

/// A soundtrack title that names no artist but the album itself (`X-Men Soundtrack`, `Top Gun Maverick OST`,
/// `Film.Name-OST-WEB-2022-GRP`, `VA - X (Music from the Motion Picture)`): for a ticket whose artist is the
/// composer or various artists, the album's name is the evidence. A title naming someone else is not.
fn soundtrack_without_artist(ctx: &TicketContext, info: &ReleaseInfo, coverage: f64) -> bool {
    let announces = info.kinds.soundtrack || names_a_soundtrack(&info.tokens);
    if !announces || coverage < 0.99 || ctx.album_tokens.is_empty() {
        return false;
    }
    match &info.artist {
        None => true,
        Some(slot) => fold_tokens(slot).iter().all(|word| {
            ctx.album_tokens.contains(word)
                || SOUNDTRACK_ARTIST_WORDS.contains(&word.as_str())
                || SOUNDTRACK_WORDS.contains(&word.as_str())
        }),
    }
}

fn artist_match(
    ctx: &TicketContext,
    title_tokens: &HashSet<&str>,
    title_words: &[String],
    raw_title: &str,
    info: &ReleaseInfo,
    coverage: f64,
) -> ArtistMatch {
    if ctx.various_artists {
        return ArtistMatch::Yes;
    }
    let found =
        ctx.artist_parts.iter().any(|part| !part.is_empty() && part.iter().all(|t| title_tokens.contains(t.as_str())));
    if found || squashed_in(&ctx.artist_squashed, title_words) || soundtrack_without_artist(ctx, info, coverage) {
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

/// The kinds a title announces (`title_kinds`, of all its words) that its words beyond the ticket's own album and
/// artist words (each of those taken away once) still announce: "Live" in "Long Live...", "Discography" in an album
/// called "Complete Discography" do not count.
fn kinds_beyond_own_words(ctx: &TicketContext, title_kinds: ReleaseKinds, title_tokens: &[String]) -> ReleaseKinds {
    if title_kinds == ReleaseKinds::default() {
        return title_kinds;
    }
    let mut own: Vec<&str> = ctx.own_words.iter().map(String::as_str).collect();
    let beyond: Vec<String> = title_tokens
        .iter()
        .filter(|token| match own.iter().position(|w| w == token) {
            Some(at) => {
                own.swap_remove(at);
                false
            }
            None => true,
        })
        .cloned()
        .collect();
    let beyond = detect_kinds(&beyond);
    // Only flags the whole title raises (taking words away never adds one).
    ReleaseKinds {
        pack: beyond.pack && title_kinds.pack,
        live: beyond.live && title_kinds.live,
        tribute: beyond.tribute && title_kinds.tribute,
        single: beyond.single && title_kinds.single,
        compilation: beyond.compilation && title_kinds.compilation,
        other_mix: beyond.other_mix && title_kinds.other_mix,
        various_artists: beyond.various_artists && title_kinds.various_artists,
        soundtrack: beyond.soundtrack && title_kinds.soundtrack,
    }
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
    token_pool.extend(info.folder_tokens.iter().cloned());
    let title_tokens: HashSet<&str> = token_pool.iter().map(String::as_str).collect();
    let raw_title = format!("{} {}", candidate.title, folder.as_deref().unwrap_or(""));

    let mut hard_rejects: Vec<HardReject> = Vec::new();
    let mut doubts: Vec<Doubt> = Vec::new();
    let mut notes: Vec<String> = Vec::new();

    let coverage = album_coverage(ctx, &title_tokens);
    let artist = artist_match(ctx, &title_tokens, &token_pool, &raw_title, &info, coverage);
    match artist {
        ArtistMatch::Yes => {}
        ArtistMatch::Uncertain => doubts.push(Doubt::ArtistUncertain),
        ArtistMatch::No => hard_rejects.push(HardReject::WrongArtist { artist: ctx.artist.clone() }),
    }
    let kinds = kinds_beyond_own_words(ctx, info.kinds, &info.tokens);
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
    // Only older years, no edition words on either side, and the ticket's own kind words (a re-recording, a live
    // album, a remix) in the title too: the original release of what the catalog dates by a reissue.
    let older_recording = match ctx.year {
        Some(ticket_year) if year_conflict && ctx.album_edition_tokens.is_empty() => {
            let same_kind = |a: ReleaseKinds, b: ReleaseKinds| {
                (a.live, a.tribute, a.other_mix, a.compilation) == (b.live, b.tribute, b.other_mix, b.compilation)
            };
            let title_year = info.years.iter().copied().max().filter(|y| *y < ticket_year);
            title_year.filter(|_| same_kind(ctx.album_kinds, info.kinds)).map(|title_year| (title_year, ticket_year))
        }
        _ => None,
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
                m4a_count,
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
            let lossy_kbps = model
                .fitted_kbps()
                .or_else(|| (mapped_secs > 0.0).then(|| mapped_bytes as f64 * 8.0 / mapped_secs / 1000.0));
            // `.m4a` holds AAC or ALAC: ALAC when the title says so, or at a bitrate no AAC file can have.
            let alac_in_m4a = m4a_count * 2 > mapped.max(1)
                && (info.formats.contains(&AudioFormat::Alac)
                    || info.lossless_named
                    || lossy_kbps.is_some_and(|kbps| kbps >= ALAC_MIN_KBPS));
            let lossless = lossless_count * 2 > mapped.max(1) || alac_in_m4a;
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
        if kinds.single && !ctx.short_release && !size_holds(candidate.size_bytes, &info, ctx.total_secs) {
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
        let lossless = info.formats.iter().any(|f| f.is_lossless()) || info.lossless_named;
        tier = quality_tier(lossless, &info, None);
        notes.push(format!("title only: album words {coverage:.2}"));
    }
    if year_conflict && has_files {
        match older_recording {
            Some((title_year, ticket_year)) => doubts.push(Doubt::OlderYear { title_year, ticket_year }),
            None => doubts.push(Doubt::YearConflict),
        }
    }
    if candidate.seeders < HEALTHY_SEEDERS && candidate.seeders > 0 {
        doubts.push(Doubt::WeakSwarm { seeders: candidate.seeders });
    }
    let pack = kinds.pack || candidate.files.as_deref().is_some_and(looks_like_pack);
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
            // The near miss first: fewest and mildest rejects, then the title's evidence, then the files mapped.
            let penalty = hard_rejects.iter().map(reject_severity).sum::<u32>().min(MAX_REJECT_PENALTY);
            let artist_evidence = match artist {
                ArtistMatch::Yes => 1.0,
                ArtistMatch::Uncertain => 0.5,
                ArtistMatch::No => 0.0,
            };
            let title_evidence = 0.5 * artist_evidence + 0.5 * coverage.clamp(0.0, 1.0);
            let fraction = if expected > 0 { mapped as f64 / expected as f64 } else { 0.0 };
            0.38 - 0.012 * f64::from(penalty) + 0.006 * title_evidence + 0.004 * fraction + 0.0015 * pref
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

/// An `.m4a` file at this bitrate or above is ALAC: AAC-LC stereo cannot exceed ~530 kbit/s.
const ALAC_MIN_KBPS: f64 = 560.0;

/// The sum of severities beyond which a rejected candidate cannot rank lower (9 is one fatal reject: 3 of them).
const MAX_REJECT_PENALTY: u32 = 27;

/// How far a hard reject puts a candidate from being the album (1 a near miss .. 9 another release), to rank the
/// candidates of a ticket whose every candidate is rejected: the admin sees the nearest miss first.
fn reject_severity(reject: &HardReject) -> u32 {
    match reject {
        HardReject::MissingTracks { missing_track_ids, expected } => {
            // One missing track of many: 2; half of them: 5; all: 9.
            let expected = (*expected).max(1);
            let steps = (8 * missing_track_ids.len().min(expected)).div_ceil(expected);
            1 + u32::try_from(steps).unwrap_or(8)
        }
        HardReject::PackWithoutFileList => 3,
        HardReject::LacksAskedEdition => 4,
        HardReject::DurationsDiffer { .. } | HardReject::OnlyOneDisc { .. } => 5,
        HardReject::UnaskedKind { kind } => match kind {
            UnaskedKind::Compilation => 4,
            UnaskedKind::VariousArtists => 5,
            UnaskedKind::Live | UnaskedKind::OtherMix => 6,
            UnaskedKind::Tribute => 8,
        },
        HardReject::NoSeeders | HardReject::SingleOrEp => 6,
        HardReject::OtherNumberOrVolume | HardReject::SelfTitledOtherYear => 7,
        HardReject::WrongArtist { .. }
        | HardReject::TitleLacksAlbum { .. }
        | HardReject::NoAudioFiles
        | HardReject::EmptyFileList
        | HardReject::Recorded { .. } => 9,
    }
}

/// Whether a title-only candidate of `size_bytes` surely lasts at least 3/4 of `secs` in the formats its title
/// names (at their highest bitrate; any format when it names none).
fn size_holds(size_bytes: u64, info: &ReleaseInfo, secs: f64) -> bool {
    if size_bytes == 0 || !(secs.is_finite() && secs > 0.0) {
        return false;
    }
    let cbr = if info.vbr.is_none() { info.bitrate_kbps.map(f64::from) } else { None };
    let highest = info
        .formats
        .iter()
        .map(|format| match (format, cbr) {
            (AudioFormat::Mp3, Some(kbps)) => kbps * 1.02,
            _ => bitrate_range_kbps(*format, info.bit_depth, info.sample_rate_hz, info.vbr).1,
        })
        .fold(0.0, f64::max);
    let highest = if highest > 0.0 { highest } else { 7800.0 };
    let shortest_secs = size_bytes as f64 * 8.0 / (highest * 1000.0);
    shortest_secs >= 0.75 * secs
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
    /// Mapped `.m4a`/`.mp4` files (AAC or ALAC).
    m4a_count: usize,
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
    let mut m4a_count = 0usize;
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
        let extension = super::mapping::extension_of(&file.path);
        if file.format == AudioFormat::Aac
            && (extension.eq_ignore_ascii_case("m4a") || extension.eq_ignore_ascii_case("mp4"))
        {
            m4a_count += 1;
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
        m4a_count,
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

    // Release names as the real world writes them (issue 16, part 2): one test per class of misses.

    use crate::matcher::{match_candidates, MatchDecision, MatchOutcome};
    use crate::models::{ApprovalReason, TorrentFile};

    const TRACKS: [(&str, f64); 8] = [
        ("Lanterns on the Weir", 241.0),
        ("Copper Tide", 305.0),
        ("Northbound", 198.0),
        ("Paper Crowns", 362.0),
        ("Salt Roads", 227.0),
        ("Harbour Hymn", 274.0),
        ("Glasswork", 189.0),
        ("Ferry at Dawn", 256.0),
    ];

    fn ticket_of(artist: &str, album: &str, year: i32, tracks: &[(&str, f64)]) -> Ticket {
        let tracks: Vec<serde_json::Value> = tracks
            .iter()
            .enumerate()
            .map(|(i, (name, secs))| {
                serde_json::json!({"catalog_track_id": format!("t{}", i + 1), "disc_number": 1,
                    "track_number": i + 1, "name": name, "duration_secs": secs,
                    "dest_path": format!("/music/x/{:02}.ogg", i + 1)})
            })
            .collect();
        serde_json::from_value(serde_json::json!({
            "ticket_id": "p2", "created_at": "2026-01-01T00:00:00Z",
            "search": {"artist": artist, "album": album, "year": year},
            "tracks": tracks, "constraints": {"format": "ogg_vorbis", "bitrate_kbps": 320}
        }))
        .unwrap()
    }

    /// `NN - Title.ext` files in a folder named like the title, sized for `kbps` (lossless varies a little).
    fn with_files(title: &str, seeders: u32, ext: &str, kbps: f64, tracks: &[(&str, f64)]) -> TorrentCandidate {
        let folder = title.replace('/', "-");
        let files: Vec<TorrentFile> = tracks
            .iter()
            .enumerate()
            .map(|(i, (name, secs))| {
                let wobble = if ext == "mp3" { 1.0 } else { 1.0 + 0.03 * ((i % 3) as f64 - 1.0) };
                #[allow(clippy::cast_possible_truncation)]
                let bytes = (secs * kbps * 125.0 * wobble) as u64 + 4_000;
                TorrentFile { path: format!("{folder}/{:02} - {name}.{ext}", i + 1), size_bytes: bytes }
            })
            .collect();
        let mut c = TorrentCandidate::with_title(title);
        c.size_bytes = files.iter().map(|f| f.size_bytes).sum();
        c.seeders = seeders;
        c.files = Some(files);
        c
    }

    fn title_only(title: &str, seeders: u32, size_bytes: u64) -> TorrentCandidate {
        let mut c = TorrentCandidate::with_title(title);
        c.seeders = seeders;
        c.size_bytes = size_bytes;
        c
    }

    fn rejects(o: &MatchOutcome, idx: usize) -> Vec<HardReject> {
        o.candidates.iter().find(|c| c.idx == idx).map(|c| c.scored.hard_rejects.clone()).unwrap_or_default()
    }

    #[test]
    fn when_everything_is_rejected_the_near_miss_comes_before_a_wrong_artist_decoy() {
        let t = ticket_of("Minor Vessel", "Salt Roads", 2019, &TRACKS);
        // A string-quartet covers album by another act with every title and near durations, and the right album
        // lacking its last track.
        let decoy = with_files("Harbour Strings - Salt Roads (2019) [FLAC]", 60, "flac", 900.0, &TRACKS);
        let near = with_files("Minor Vessel - Salt Roads (2019) [FLAC]", 12, "flac", 900.0, &TRACKS[..7]);
        let o = match_candidates(&t, &[decoy, near], 0.85);
        assert!(!rejects(&o, 0).is_empty() && !rejects(&o, 1).is_empty());
        assert_eq!(
            o.recommended_idx,
            Some(1),
            "{:#?}",
            o.candidates.iter().map(|c| &c.scored.reasoning).collect::<Vec<_>>()
        );
        assert_eq!(o.reason, Some(ApprovalReason::TrackCountMismatch { expected: 8, found: 7 }));
    }

    #[test]
    fn a_single_or_ep_asked_for_is_not_rejected_for_its_words_and_an_album_still_rejects_a_single() {
        let ep = &TRACKS[..5];
        let t = ticket_of("Minor Vessel", "Copper Tide", 2019, ep);
        let o =
            match_candidates(&t, &[title_only("Minor Vessel - Copper Tide EP (2019) [FLAC]", 20, 150_000_000)], 0.85);
        assert!(rejects(&o, 0).is_empty(), "{:?}", rejects(&o, 0));
        let o = match_candidates(
            &t,
            &[title_only("Minor Vessel - Copper Tide [CDS] (2019) [MP3 320]", 9, 8_000_000)],
            0.85,
        );
        assert!(rejects(&o, 0).is_empty(), "{:?}", rejects(&o, 0));
        // An album ticket: a single with its name is still no candidate.
        let t = ticket_of("Minor Vessel", "Copper Tide", 2019, &TRACKS);
        let o = match_candidates(
            &t,
            &[title_only("Minor Vessel - Copper Tide (Single) (2019) [FLAC]", 20, 35_000_000)],
            0.85,
        );
        assert_eq!(rejects(&o, 0), [HardReject::SingleOrEp]);
    }

    #[test]
    fn kind_words_of_the_album_title_itself_do_not_count_against_it() {
        for album in ["The Complete Discography", "Boxset", "Anthology of Small Hours", "Bootleg", "Greatest Hits"] {
            let t = ticket_of("Minor Vessel", album, 2019, &TRACKS);
            let title = format!("Minor Vessel - {album} (2019) [FLAC]");
            let o = match_candidates(&t, &[with_files(&title, 25, "flac", 900.0, &TRACKS)], 0.85);
            assert!(rejects(&o, 0).is_empty(), "{album}: {:?}", rejects(&o, 0));
            assert_eq!(o.decision, MatchDecision::AutoApprove, "{album}: {}", o.candidates[0].scored.reasoning);
            let o = match_candidates(&t, &[title_only(&title, 25, 300_000_000)], 0.85);
            assert!(rejects(&o, 0).is_empty(), "{album} without files: {:?}", rejects(&o, 0));
        }
        // A kind word beyond the album's own still counts.
        let t = ticket_of("Minor Vessel", "The Complete Discography", 2019, &TRACKS);
        let live =
            with_files("Minor Vessel - The Complete Discography Live in Lisbon [FLAC]", 25, "flac", 900.0, &TRACKS);
        assert!(!rejects(&match_candidates(&t, &[live], 0.85), 0).is_empty());
    }

    #[test]
    fn scene_names_with_dots_underscores_and_written_out_ampersands_name_the_artist() {
        let t = ticket_of("Hollis & Vane", "Tidal Maps Vol. 2", 2021, &TRACKS);
        for title in [
            "Hollis.and.Vane-Tidal.Maps.Vol.2-WEB-2021-GRP",
            "Hollis_n_Vane-Tidal_Maps_Volume_II-WEB-2021-GRP",
            "HollisAndVane-Tidal_Maps_Vol_2-2021-GRP",
            "Hollis.And.Vane-Tidal.Maps.Vol.II-(CAT042)-WEB-FLAC-2021-GRP",
        ] {
            let o = match_candidates(&t, &[with_files(title, 20, "flac", 900.0, &TRACKS)], 0.85);
            assert!(rejects(&o, 0).is_empty(), "{title}: {:?}", rejects(&o, 0));
            assert_eq!(o.decision, MatchDecision::AutoApprove, "{title}: {}", o.candidates[0].scored.reasoning);
        }
        let t = ticket_of("Minor Vessel", "Salt Roads", 2019, &TRACKS);
        let o = match_candidates(
            &t,
            &[with_files("Minor.Vessel-Salt.Roads-WEB-2019-GRP", 20, "flac", 900.0, &TRACKS)],
            0.85,
        );
        assert_eq!(o.decision, MatchDecision::AutoApprove, "{}", o.candidates[0].scored.reasoning);
        // Another artist is still another artist.
        let o = match_candidates(
            &t,
            &[with_files("Major.Vessel-Salt.Roads-WEB-2019-GRP", 20, "flac", 900.0, &TRACKS)],
            0.85,
        );
        assert!(rejects(&o, 0).iter().any(|r| matches!(r, HardReject::WrongArtist { .. })));
    }

    #[test]
    fn alac_in_m4a_is_lossless() {
        let t = ticket_of("Minor Vessel", "Salt Roads", 2019, &TRACKS);
        let mp3 = with_files("Minor Vessel - Salt Roads (2019) [MP3 320]", 80, "mp3", 320.0, &TRACKS);
        for (title, kbps) in [
            ("Minor Vessel - Salt Roads (2019) [ALAC]", 880.0),
            ("Minor Vessel - Salt Roads (2019) [M4A Lossless]", 860.0),
            ("Minor Vessel - Salt Roads (2019) [iTunes M4A]", 910.0),
            ("Minor Vessel - Salt Roads (2019) [ALAC 24-96]", 2900.0),
        ] {
            let alac = with_files(title, 6, "m4a", kbps, &TRACKS);
            let o = match_candidates(&t, &[mp3.clone(), alac], 0.85);
            assert_eq!(o.recommended_idx, Some(1), "{title}: lossless beats MP3: {}", o.candidates[0].scored.reasoning);
            assert_eq!(o.decision, MatchDecision::AutoApprove, "{title}");
        }
        // A real AAC 256 stays lossy.
        let aac = with_files("Minor Vessel - Salt Roads (2019) [iTunes AAC]", 6, "m4a", 258.0, &TRACKS);
        assert_eq!(match_candidates(&t, &[mp3, aac], 0.85).recommended_idx, Some(0));
    }

    #[test]
    fn soundtrack_titles_without_the_composer_name_the_album() {
        let t = ticket_of("Ilse Marrow", "Northern Drift (Original Motion Picture Soundtrack)", 2021, &TRACKS);
        for title in [
            "Northern Drift OST (2021) [FLAC]",
            "Northern Drift Soundtrack [FLAC]",
            "Northern.Drift-OST-WEB-2021-GRP",
            "Ilse Marrow - Northern Drift (Music from the Motion Picture) (2021) [FLAC]",
        ] {
            let o = match_candidates(&t, &[with_files(title, 20, "flac", 900.0, &TRACKS)], 0.85);
            assert!(rejects(&o, 0).is_empty(), "{title}: {:?}", rejects(&o, 0));
            assert_eq!(o.decision, MatchDecision::AutoApprove, "{title}: {}", o.candidates[0].scored.reasoning);
        }
        let va = ticket_of("Various Artists", "Northern Drift (Music from the Motion Picture)", 2021, &TRACKS);
        let o =
            match_candidates(&va, &[with_files("Northern Drift OST (2021) [FLAC]", 20, "flac", 900.0, &TRACKS)], 0.85);
        assert_eq!(o.decision, MatchDecision::AutoApprove, "{}", o.candidates[0].scored.reasoning);
        // Another composer's score of the same film is another album.
        let o = match_candidates(
            &t,
            &[with_files("Otto Brandt - Northern Drift (Original Score) [FLAC]", 20, "flac", 900.0, &TRACKS)],
            0.85,
        );
        assert!(rejects(&o, 0).iter().any(|r| matches!(r, HardReject::WrongArtist { .. })));
    }

    #[test]
    fn two_cds_of_the_album_are_not_a_single() {
        let t = ticket_of("Minor Vessel", "Salt Roads", 2019, &TRACKS);
        let o = match_candidates(
            &t,
            &[title_only("Minor Vessel - Salt Roads (Deluxe Edition) (2 CDs) (2019) [FLAC]", 20, 700_000_000)],
            0.85,
        );
        assert!(!rejects(&o, 0).contains(&HardReject::SingleOrEp), "{:?}", rejects(&o, 0));
    }

    #[test]
    fn an_older_recording_year_of_the_same_edition_is_a_mild_doubt() {
        // The catalog dates the album by its 2014 reissue; the rip names the 1979 original.
        let t = ticket_of("Minor Vessel", "Salt Roads", 2014, &TRACKS);
        let o = match_candidates(
            &t,
            &[with_files("Minor Vessel - Salt Roads (1979) [FLAC]", 30, "flac", 900.0, &TRACKS)],
            0.85,
        );
        assert_eq!(o.decision, MatchDecision::AutoApprove, "{}", o.candidates[0].scored.reasoning);
        // Not when the ticket asks for another recording (a re-recording) the title does not name.
        let t = ticket_of("Minor Vessel", "Salt Roads (Re-Recorded)", 2021, &TRACKS);
        let o = match_candidates(
            &t,
            &[with_files("Minor Vessel - Salt Roads (2009) [FLAC]", 30, "flac", 900.0, &TRACKS)],
            0.85,
        );
        assert_ne!(o.decision, MatchDecision::AutoApprove, "{}", o.candidates[0].scored.reasoning);
        // Nor a newer year without edition words.
        let t = ticket_of("Minor Vessel", "Salt Roads", 2009, &TRACKS);
        let o = match_candidates(
            &t,
            &[with_files("Minor Vessel - Salt Roads (2016) [FLAC]", 30, "flac", 900.0, &TRACKS)],
            0.85,
        );
        assert_ne!(o.decision, MatchDecision::AutoApprove, "{}", o.candidates[0].scored.reasoning);
    }
}
