//! Track-to-file assignment (pure): reads a candidate's file list (audio files, disc folders, `101`/`2-03`/`d1t01`
//! numbering, titles), compares every ticket track with every audio file (number agreement, title similarity,
//! duration agreement) and solves the assignment optimally with the Hungarian algorithm (`pathfinding`).
//! It never looks at anything but the names and sizes it is given, and never joins a torrent path to the filesystem.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::OnceLock;

use pathfinding::kuhn_munkres::kuhn_munkres;
use pathfinding::matrix::Matrix;
use regex::Regex;

use crate::models::{Ticket, TorrentFile};
use crate::release::{fold_artist, fold_text, AudioFormat};

use super::duration::{DurationCheck, DurationModel};

/// Words that mark another version of a song when a file has them and the catalog track does not.
const VERSION_WORDS: [&str; 16] = [
    "live",
    "demo",
    "remix",
    "mix",
    "instrumental",
    "karaoke",
    "acoustic",
    "alternate",
    "take",
    "rehearsal",
    "session",
    "mono",
    "edit",
    "reprise",
    "version",
    "unplugged",
];

/// Words too common to identify a song title.
const TITLE_STOPWORDS: [&str; 12] = ["the", "a", "an", "of", "and", "in", "on", "to", "de", "la", "el", "le"];

/// File names that say nothing about the song.
const PLACEHOLDER_WORDS: [&str; 6] = ["track", "audio", "untitled", "piste", "titel", "song"];

/// One ticket track prepared for comparison.
#[derive(Debug, Clone)]
pub struct PreparedTrack {
    pub catalog_track_id: String,
    pub disc: u32,
    pub track: u32,
    /// 1-based position in the whole ticket (for straight numbering over several discs).
    pub position: u32,
    pub duration_secs: f64,
    pub tokens: Vec<String>,
    /// The words after the last `:` ("Symphony No. 5: I. Allegro" -> "i allegro"), empty when there is none.
    pub tail_tokens: Vec<String>,
    /// [`TitleKey`] of `tokens`, built once per ticket.
    pub key: TitleKey,
    /// [`TitleKey`] of `tail_tokens` when there are any.
    pub tail_key: Option<TitleKey>,
}

/// One audio file of a candidate.
#[derive(Debug, Clone)]
pub struct AudioFile {
    /// The path exactly as in the input.
    pub path: String,
    pub size_bytes: u64,
    pub format: AudioFormat,
    pub disc: Option<u32>,
    pub track: Option<u32>,
    /// Vinyl side letter (`A1`..`D4`).
    pub side: Option<char>,
    /// The folded title words after numbers and artist prefix are removed, prepared for comparison.
    pub key: TitleKey,
    /// Whether the name can contradict a catalog title (Latin-script words, not `Track 05`).
    pub informative: bool,
    /// Whether the name has any word beyond numbers and placeholders (`Track 05` has none).
    pub named: bool,
    /// Directory part of the path.
    pub dir: String,
}

/// The evidence for one mapped track.
#[derive(Debug, Clone)]
pub struct PairEvidence {
    pub track_idx: usize,
    pub file_idx: usize,
    pub name_similarity: f64,
    pub numbers_agree: f64,
    pub duration: DurationCheck,
    /// The file names another version (live, demo, remix...) the catalog title does not.
    pub version_conflict: bool,
}

/// Whether a file title carries a version word (live, demo, remix...) the catalog title does not.
pub fn has_version_conflict(track: &TitleKey, file: &TitleKey) -> bool {
    version_words_not_in(file, track).next().is_some()
}

/// The words of `file` that are version words (live, demo, remix...) absent from `track`.
fn version_words_not_in<'a>(file: &'a TitleKey, track: &'a TitleKey) -> impl Iterator<Item = &'a str> + 'a {
    file.words().filter(move |f| VERSION_WORDS.contains(f) && !track.words().any(|t| t == *f))
}

fn re(cell: &'static OnceLock<Option<Regex>>, pattern: &str) -> Option<&'static Regex> {
    cell.get_or_init(|| Regex::new(pattern).ok()).as_ref()
}

fn feat_re() -> Option<&'static Regex> {
    static CELL: OnceLock<Option<Regex>> = OnceLock::new();
    re(&CELL, r"(?i)[(\[]?\s*\b(?:feat\.?|ft\.|featuring)\s[^)\]]*[)\]]?")
}

/// Whether `title` contains `feat` or `ft.` in any ASCII case (one pass, no allocation).
fn mentions_featuring(title: &str) -> bool {
    let bytes = title.as_bytes();
    bytes.iter().enumerate().any(|(i, b)| {
        b.eq_ignore_ascii_case(&b'f') && {
            let rest = bytes.get(i + 1..).unwrap_or(&[]);
            rest.get(..3).is_some_and(|r| r.eq_ignore_ascii_case(b"eat"))
                || rest.get(..2).is_some_and(|r| r.eq_ignore_ascii_case(b"t."))
        }
    })
}

/// Removes `feat.` credits from a title (borrows the title when it has none).
pub fn strip_featuring(title: &str) -> Cow<'_, str> {
    if !mentions_featuring(title) {
        return Cow::Borrowed(title);
    }
    match feat_re() {
        Some(re) => re.replace_all(title, " "),
        None => Cow::Borrowed(title),
    }
}

/// Prepares the ticket's tracks: folded titles without `feat.` credits, without a work prefix shared by most tracks
/// ("Goldberg Variations, BWV 988: Aria" -> "Aria").
pub fn prepare_tracks(ticket: &Ticket) -> Vec<PreparedTrack> {
    let mut order: Vec<usize> = (0..ticket.tracks.len()).collect();
    order.sort_by_key(|&i| ticket.tracks.get(i).map(|t| (t.disc_number, t.track_number)).unwrap_or((0, 0)));
    let mut positions = vec![0u32; ticket.tracks.len()];
    for (pos, &i) in order.iter().enumerate() {
        if let Some(slot) = positions.get_mut(i) {
            *slot = u32::try_from(pos + 1).unwrap_or(u32::MAX);
        }
    }
    let prefixes: Vec<Option<String>> = ticket
        .tracks
        .iter()
        .map(|t| t.name.split_once(':').map(|(head, _)| fold_text(head)).filter(|h| !h.is_empty()))
        .collect();
    let shared_prefix = prefixes.iter().flatten().find(|p| {
        let count = prefixes.iter().flatten().filter(|q| q == p).count();
        count >= 3 && count * 2 >= ticket.tracks.len()
    });
    ticket
        .tracks
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let mut name = strip_featuring(&t.name).into_owned();
            if let (Some(shared), Some((head, tail))) = (shared_prefix, name.split_once(':')) {
                if fold_text(head) == *shared && !fold_text(tail).is_empty() {
                    name = tail.to_string();
                }
            }
            let tail_tokens: Vec<String> = match name.rsplit_once(':') {
                Some((_, tail)) => fold_text(tail).split(' ').filter(|s| !s.is_empty()).map(str::to_string).collect(),
                None => Vec::new(),
            };
            let tokens: Vec<String> =
                fold_text(&name).split(' ').filter(|s| !s.is_empty()).map(str::to_string).collect();
            PreparedTrack {
                key: TitleKey::new(&tokens),
                tail_key: (!tail_tokens.is_empty()).then(|| TitleKey::new(&tail_tokens)),
                catalog_track_id: t.catalog_track_id.clone(),
                disc: t.disc_number,
                track: t.track_number,
                position: positions.get(i).copied().unwrap_or(0),
                duration_secs: if t.duration_secs.is_finite() { t.duration_secs.max(0.0) } else { 0.0 },
                tail_tokens,
                tokens,
            }
        })
        .collect()
}

/// The extension of a path (after the last dot of the last component), lower case.
pub fn extension(path: &str) -> String {
    extension_of(path).to_ascii_lowercase()
}

/// [`extension`] as written in the path (any case), without allocating.
pub fn extension_of(path: &str) -> &str {
    // The last `.` or `/` from the end: a dot with a non-empty stem before it starts the extension.
    let bytes = path.as_bytes();
    match bytes.iter().rposition(|b| matches!(b, b'.' | b'/')) {
        Some(dot) if bytes.get(dot) == Some(&b'.') && dot > 0 && bytes.get(dot - 1) != Some(&b'/') => {
            path.get(dot + 1..).unwrap_or("")
        }
        _ => "",
    }
}

/// The disc number a directory name announces (`CD1`, `Disc 2`, `CD3 - Pink Moon`, `disk_1`).
pub fn disc_from_dir(component: &str) -> Option<u32> {
    if !component.trim_start().starts_with(['c', 'C', 'd', 'D']) {
        return None;
    }
    static CELL: OnceLock<Option<Regex>> = OnceLock::new();
    let re = re(&CELL, r"(?i)^\s*(?:cd|disc|disk|dvd)\s*[-_.]?\s*(\d{1,2})(?:\D|$)")?;
    re.captures(component)?.get(1)?.as_str().parse().ok()
}

/// Numbers at the start of a file name (without extension): `(disc, track, vinyl side, rest of the name)`.
/// Handles `01 - Title`, `101-artist-title`, `2-03 Title`, `d1t01 Title`, `Track 05`, `A1 Title`.
pub fn extract_disc_track(stem: &str) -> NumberedStem<'_> {
    static DT: OnceLock<Option<Regex>> = OnceLock::new();
    static DASH: OnceLock<Option<Regex>> = OnceLock::new();
    static NUM: OnceLock<Option<Regex>> = OnceLock::new();
    static TRACK: OnceLock<Option<Regex>> = OnceLock::new();
    static SIDE: OnceLock<Option<Regex>> = OnceLock::new();
    let text = stem.trim();
    let first = text.chars().next().unwrap_or(' ');
    let second_is_digit = text.chars().nth(1).is_some_and(|c| c.is_ascii_digit());
    if !(first.is_ascii_digit()
        || matches!(first, 'd' | 'D' | 't' | 'T')
        || (first.is_ascii_alphabetic() && second_is_digit))
    {
        // No leading number of any supported shape: skip the patterns.
        return (None, None, None, text);
    }
    if let Some(parsed) = plain_number_prefix(text) {
        return parsed;
    }
    if let Some(c) = re(&DT, r"(?i)^d(\d{1,2})\s*t(\d{1,3})\b[\s._\-)]*(.*)$").and_then(|r| r.captures(text)) {
        let disc = c.get(1).and_then(|m| m.as_str().parse().ok());
        let track = c.get(2).and_then(|m| m.as_str().parse().ok());
        return (disc, track, None, c.get(3).map_or("", |m| m.as_str()));
    }
    if let Some(c) = re(&DASH, r"^(\d{1,2})[-.](\d{1,3})(?:[\s._\-)]+(.*))?$").and_then(|r| r.captures(text)) {
        let disc = c.get(1).and_then(|m| m.as_str().parse().ok());
        let track = c.get(2).and_then(|m| m.as_str().parse().ok());
        return (disc, track, None, c.get(3).map_or("", |m| m.as_str()));
    }
    if let Some(c) = re(&TRACK, r"(?i)^track\s*[-_.]?\s*(\d{1,3})\b[\s._\-)]*(.*)$").and_then(|r| r.captures(text)) {
        let track = c.get(1).and_then(|m| m.as_str().parse().ok());
        return (None, track, None, c.get(2).map_or("", |m| m.as_str()));
    }
    if let Some(c) = re(&NUM, r"^(\d{1,3})(?:[\s._\-)]+(.*))?$").and_then(|r| r.captures(text)) {
        let digits = c.get(1).map_or("", |m| m.as_str());
        let rest = c.get(2).map_or("", |m| m.as_str());
        let value: u32 = digits.parse().unwrap_or(0);
        if digits.len() == 3 && value >= 101 && value % 100 != 0 {
            return (Some(value / 100), Some(value % 100), None, rest);
        }
        return (None, Some(value).filter(|v| *v > 0), None, rest);
    }
    if let Some(c) = re(&SIDE, r"^([A-Ha-h])(\d{1,2})(?:[\s._\-)]+(.*))?$").and_then(|r| r.captures(text)) {
        let side = c.get(1).and_then(|m| m.as_str().chars().next()).map(|s| s.to_ascii_uppercase());
        return (None, None, side, c.get(3).map_or("", |m| m.as_str()));
    }
    (None, None, None, text)
}

/// `(disc, track, vinyl side, rest of the name)` as [`extract_disc_track`] returns it.
type NumberedStem<'a> = (Option<u32>, Option<u32>, Option<char>, &'a str);

/// The common `01 - Title` / `101-artist-title` shape read without a regex: exactly what the `NUM` pattern of
/// [`extract_disc_track`] gives, or `None` (the patterns then decide) for anything else: a `1-03`/`2.05` disc
/// prefix, four or more digits, a letter right after the digits, a line break, or a non-ASCII character where the
/// patterns' Unicode classes could differ.
fn plain_number_prefix(text: &str) -> Option<NumberedStem<'_>> {
    if text.contains('\n') {
        return None;
    }
    let bytes = text.as_bytes();
    let count = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
    if count == 0 || count > 3 {
        return None;
    }
    let is_separator = |b: u8| matches!(b, b'\t' | 0x0B | 0x0C | b'\r' | b' ' | b'.' | b'_' | b'-' | b')');
    let after = bytes.get(count..)?;
    let rest = match after.first() {
        None => "",
        Some(&b) => {
            if !is_separator(b) || (count <= 2 && matches!(b, b'-' | b'.')) {
                return None;
            }
            let run = after.iter().take_while(|b| is_separator(**b)).count();
            let tail = text.get(count + run..)?;
            if tail.chars().next().is_some_and(|c| !c.is_ascii()) {
                return None;
            }
            tail
        }
    };
    let digits = text.get(..count)?;
    let value: u32 = digits.parse().unwrap_or(0);
    if digits.len() == 3 && value >= 101 && value % 100 != 0 {
        return Some((Some(value / 100), Some(value % 100), None, rest));
    }
    Some((None, Some(value).filter(|v| *v > 0), None, rest))
}

fn has_non_latin_letters(text: &str) -> bool {
    text.chars().any(|c| c.is_alphabetic() && u32::from(c) > 0x024F)
}

/// The audio files of a file list, with numbers and folded titles. `artist` is the ticket's artist, removed when it
/// prefixes a file title (`01 - Radiohead - 15 Step`).
pub fn read_audio_files(files: &[TorrentFile], artist: &str) -> Vec<AudioFile> {
    let artist_folded = fold_artist(artist);
    let artist_full = fold_text(artist);
    let mut out = Vec::new();
    // Files of one folder come together: read each folder's disc number once.
    let mut last_folder: Option<(&str, Option<u32>)> = None;
    for file in files {
        let Some(format) = AudioFormat::from_extension(extension_of(&file.path)) else {
            continue;
        };
        let (dir, name) = file.path.rsplit_once('/').unwrap_or(("", file.path.as_str()));
        let stem = name.rsplit_once('.').map_or(name, |(s, _)| s);
        let folder_disc = match last_folder {
            Some((seen, disc)) if seen == dir => disc,
            _ => {
                let disc = dir.split('/').rev().find_map(disc_from_dir);
                last_folder = Some((dir, disc));
                disc
            }
        };
        let (disc, track, side, rest) = extract_disc_track(stem);
        let disc = folder_disc.or(disc);
        let rest = strip_featuring(rest);
        let folded = fold_text(&rest);
        let mut title: Option<&str> = None;
        for prefix in [&artist_full, &artist_folded] {
            if !prefix.is_empty() {
                if let Some(tail) = folded.strip_prefix(prefix.as_str()) {
                    if tail.starts_with(' ') && tail.trim().len() > 1 {
                        title = Some(tail.trim());
                        break;
                    }
                }
            }
        }
        let key = match title {
            Some(tail) => TitleKey::from_folded(tail),
            None => TitleKey::from_folded(&folded),
        };
        let meaningful = key.words().filter(|t| !PLACEHOLDER_WORDS.contains(t)).count();
        let informative = meaningful > 0 && !has_non_latin_letters(&rest);
        out.push(AudioFile {
            path: file.path.clone(),
            size_bytes: file.size_bytes,
            format,
            disc,
            track,
            side,
            key,
            informative,
            named: meaningful > 0,
            dir: dir.to_string(),
        });
    }
    out
}

fn tokens_match(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    if a.len() < 4 || b.len() < 4 || a.bytes().next() != b.bytes().next() {
        return false;
    }
    if a.bytes().all(|c| c.is_ascii_digit()) || b.bytes().all(|c| c.is_ascii_digit()) {
        return false;
    }
    jaro_winkler_may_reach(a, b) && strsim::jaro_winkler(a, b) >= 0.9
}

/// Whether two ASCII words could reach a Jaro-Winkler similarity of 0.9 at all (always true for other text): with a
/// common prefix of at most 4 the Jaro similarity must be at least 5/6, and it is at most
/// `(m/|a| + m/|b| + 1) / 3` where `m`, the matching characters, cannot exceed the letters the words share.
/// Cheap and allocation-free; it only skips comparisons that cannot pass.
fn jaro_winkler_may_reach(a: &str, b: &str) -> bool {
    if !a.is_ascii() || !b.is_ascii() {
        return true;
    }
    let mut counts = [0i16; 128];
    for byte in a.bytes() {
        if let Some(slot) = counts.get_mut(usize::from(byte)) {
            *slot = slot.saturating_add(1);
        }
    }
    let mut shared = 0usize;
    for byte in b.bytes() {
        if let Some(slot) = counts.get_mut(usize::from(byte)) {
            if *slot > 0 {
                *slot -= 1;
                shared += 1;
            }
        }
    }
    let (la, lb) = (a.len().max(1) as f64, b.len().max(1) as f64);
    let shared = shared as f64;
    // 0.83 sits below the exact limit 5/6 = 0.8333, a margin far above rounding error.
    (shared / la + shared / lb + 1.0) / 3.0 >= 0.83
}

/// A title prepared once for many comparisons: folded words, the words run together, and a character histogram
/// that bounds the edit distance cheaply. Holds its words in one string (few allocations per file).
#[derive(Debug, Clone)]
pub struct TitleKey {
    /// The words, each followed by one space.
    text: String,
    /// Per word: its byte range in `text` and whether it counts for coverage (not a stopword, or every word is one).
    words: Vec<(usize, usize, bool)>,
    counted_total: usize,
    /// Sorted hashes of the counted words: a cheap "shares a word" test.
    word_hashes: Vec<u64>,
    concat: String,
    histogram: [u16; 36],
}

/// FNV-1a: a fast, stable hash for short words (a collision only costs one full comparison).
fn word_hash(word: &str) -> u64 {
    word.bytes().fold(0xcbf2_9ce4_8422_2325u64, |hash, b| (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

impl TitleKey {
    /// Builds the key of folded words.
    pub fn new(tokens: &[String]) -> TitleKey {
        let mut text = String::with_capacity(tokens.iter().map(|t| t.len() + 1).sum());
        let mut words = Vec::with_capacity(tokens.len());
        for token in tokens {
            words.push((text.len(), text.len() + token.len(), false));
            text.push_str(token);
            text.push(' ');
        }
        TitleKey::finish(text, words)
    }

    /// Builds the key of a folded text (words separated by spaces, as [`fold_text`] gives).
    pub fn from_folded(folded: &str) -> TitleKey {
        let mut text = String::with_capacity(folded.len() + 1);
        text.push_str(folded);
        text.push(' ');
        let mut words = Vec::with_capacity(8);
        let mut start = 0;
        for (i, b) in text.bytes().enumerate() {
            if b == b' ' {
                if i > start {
                    words.push((start, i, false));
                }
                start = i + 1;
            }
        }
        TitleKey::finish(text, words)
    }

    /// Completes a key from its text and word ranges (coverage flags not yet set).
    fn finish(text: String, mut words: Vec<(usize, usize, bool)>) -> TitleKey {
        let word = |&(start, end, _): &(usize, usize, bool)| text.get(start..end).unwrap_or("");
        let all_stop = words.iter().all(|w| TITLE_STOPWORDS.contains(&word(w)));
        let mut concat = String::with_capacity(text.len());
        let mut word_hashes = Vec::with_capacity(words.len());
        let mut counted_total = 0;
        for w in words.iter_mut() {
            let token = word(w);
            w.2 = all_stop || !TITLE_STOPWORDS.contains(&token);
            concat.push_str(token);
            if w.2 {
                counted_total += 1;
                word_hashes.push(word_hash(token));
            }
        }
        let mut histogram = [0u16; 36];
        for b in concat.bytes() {
            let slot = match b {
                b'a'..=b'z' => usize::from(b - b'a'),
                b'0'..=b'9' => 26 + usize::from(b - b'0'),
                _ => continue,
            };
            if let Some(count) = histogram.get_mut(slot) {
                *count = count.saturating_add(1);
            }
        }
        word_hashes.sort_unstable();
        word_hashes.dedup();
        TitleKey { text, words, counted_total, word_hashes, concat, histogram }
    }

    /// The words, in order.
    pub fn words(&self) -> impl Iterator<Item = &str> + Clone + '_ {
        self.words.iter().map(|&(start, end, _)| self.text.get(start..end).unwrap_or(""))
    }

    /// The words with whether each counts for coverage.
    fn counted_words(&self) -> impl Iterator<Item = (&str, bool)> + '_ {
        self.words.iter().map(|&(start, end, counted)| (self.text.get(start..end).unwrap_or(""), counted))
    }

    /// The key of a title without words.
    pub fn empty() -> TitleKey {
        TitleKey::finish(String::new(), Vec::new())
    }

    /// Whether the title has no word.
    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// Whether the titles could be similar at all: a shared significant word, or spelling close enough to matter.
    /// Cheap; lets the assignment skip the full comparison for most pairs of a large file list.
    fn may_match(&self, other: &TitleKey) -> bool {
        let (mut i, mut j) = (0, 0);
        while let (Some(a), Some(b)) = (self.word_hashes.get(i), other.word_hashes.get(j)) {
            match a.cmp(b) {
                std::cmp::Ordering::Equal => return true,
                std::cmp::Ordering::Less => i += 1,
                std::cmp::Ordering::Greater => j += 1,
            }
        }
        // `spelling_bound(other) > 0.8`, decided in integers: `lower / longest` is a fraction with a denominator of
        // at most the title length, so unless it is exactly 1/5 it lies far (>= 1 / (5 * longest)) from 0.2 compared
        // with the rounding error of the floating-point form; at exactly 1/5 the floating-point form decides.
        let (la, lb) = (self.concat.len(), other.concat.len());
        let longest = la.max(lb).max(1);
        if la.abs_diff(lb).saturating_mul(5) > longest {
            return false; // `lower` is at least the length difference
        }
        let lower = self.spelling_lower(other);
        match lower.saturating_mul(5).cmp(&longest) {
            std::cmp::Ordering::Less => true,
            std::cmp::Ordering::Greater => false,
            std::cmp::Ordering::Equal => self.spelling_bound(other) > 0.8,
        }
    }

    /// A lower bound of the edit distance of the two run-together titles: the length difference, and half the
    /// characters one has and the other lacks.
    fn spelling_lower(&self, other: &TitleKey) -> usize {
        let (la, lb) = (self.concat.len(), other.concat.len());
        let mut l1 = 0u32;
        for (a, b) in self.histogram.iter().zip(other.histogram.iter()) {
            l1 += u32::from(a.abs_diff(*b));
        }
        la.abs_diff(lb).max(usize::try_from(l1.div_ceil(2)).unwrap_or(usize::MAX))
    }

    /// An upper bound of the normalised edit similarity of the two run-together titles.
    fn spelling_bound(&self, other: &TitleKey) -> f64 {
        let longest = self.concat.len().max(other.concat.len()).max(1);
        1.0 - self.spelling_lower(other) as f64 / longest as f64
    }
}

/// Levenshtein distance of two byte strings (two-row dynamic programme; the titles are short ASCII).
fn byte_edit_distance(a: &[u8], b: &[u8]) -> usize {
    const STACK: usize = 96;
    if b.len() < STACK {
        // Titles are short: two rows on the stack, no allocation.
        let mut previous = [0usize; STACK];
        let mut current = [0usize; STACK];
        edit_distance_rows(a, b, &mut previous, &mut current)
    } else {
        let mut previous = vec![0usize; b.len() + 1];
        let mut current = vec![0usize; b.len() + 1];
        edit_distance_rows(a, b, &mut previous, &mut current)
    }
}

fn edit_distance_rows(a: &[u8], b: &[u8], previous: &mut [usize], current: &mut [usize]) -> usize {
    for (j, slot) in previous.iter_mut().enumerate().take(b.len() + 1) {
        *slot = j;
    }
    for (i, ca) in a.iter().enumerate() {
        if let Some(first) = current.first_mut() {
            *first = i + 1;
        }
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous.get(j).copied().unwrap_or(0) + usize::from(ca != cb);
            let delete = previous.get(j + 1).copied().unwrap_or(0) + 1;
            let insert = current.get(j).copied().unwrap_or(0) + 1;
            if let Some(cell) = current.get_mut(j + 1) {
                *cell = substitute.min(delete).min(insert);
            }
        }
        for j in 0..=b.len() {
            if let (Some(p), Some(c)) = (previous.get_mut(j), current.get(j)) {
                *p = *c;
            }
        }
    }
    previous.get(b.len()).copied().unwrap_or(0)
}

/// Title similarity in [0, 1] of a catalog title and a file title (folded tokens), minus a penalty for version words
/// (live, demo, remix...) the file has and the catalog title does not.
pub fn title_similarity(track: &[String], file: &[String]) -> f64 {
    title_similarity_of_keys(&TitleKey::new(track), &TitleKey::new(file))
}

/// [`title_similarity`] on prepared keys (what the assignment uses: keys are built once per title).
pub fn title_similarity_of_keys(track_key: &TitleKey, file_key: &TitleKey) -> f64 {
    if track_key.is_empty() || file_key.is_empty() {
        return 0.0;
    }
    // Coverage counts significant words only ("of the" shared by two songs says nothing).
    let covered = |own: &TitleKey, other: &TitleKey| -> usize {
        own.counted_words().filter(|&(t, counted)| counted && other.words().any(|o| tokens_match(t, o))).count()
    };
    let cov_track = covered(track_key, file_key) as f64 / track_key.counted_total.max(1) as f64;
    let cov_file = covered(file_key, track_key) as f64 / file_key.counted_total.max(1) as f64;
    let token_score = 0.7 * cov_track + 0.3 * cov_file;
    // Spelling (`pt.2` vs `pt 2`, typos) only where it can raise the score: a cheap bound prunes the rest.
    let char_score = if token_score >= 0.999 {
        0.0
    } else if track_key.concat == file_key.concat {
        1.0
    } else if track_key.spelling_bound(file_key) <= (token_score + 0.15).max(0.75) || track_key.concat.len() > 200 {
        0.0
    } else {
        // Folded titles are ASCII: compare bytes.
        let (a, b) = (track_key.concat.as_bytes(), file_key.concat.as_bytes());
        let longest = a.len().max(b.len()).max(1);
        1.0 - byte_edit_distance(a, b) as f64 / longest as f64
    };
    let is_number = |t: &&str| t.bytes().all(|b| b.is_ascii_digit());
    let number_missing = track_key.words().filter(is_number).any(|t| !file_key.words().any(|f| f == t));
    // "Revolution 1" is not "Revolution 9": a catalog number absent from the file name outweighs spelling.
    let raw = if number_missing { token_score - 0.15 } else { token_score.max(char_score) };
    let penalty = version_words_not_in(file_key, track_key).count() as f64 * 0.35;
    (raw - penalty).clamp(0.0, 1.0)
}

/// How well a file's numbers agree with a track's: 1 exact, 0.5 same track number on another disc, 0 otherwise.
pub fn numbers_agreement(track: &PreparedTrack, file: &AudioFile, multi_disc: bool) -> f64 {
    let Some(number) = file.track else {
        return 0.0;
    };
    if number == track.track {
        match file.disc {
            Some(d) if d == track.disc => 1.0,
            None if !multi_disc || track.disc == 1 => 1.0,
            None => 0.5,
            Some(_) if multi_disc => 0.2,
            Some(_) => 0.5,
        }
    } else if multi_disc && number == track.position && file.disc.is_none_or(|d| d == 1) {
        1.0
    } else {
        0.0
    }
}

/// Weight of an assignment pair on an integer scale (the Hungarian solver wants integers).
#[allow(clippy::cast_possible_truncation)] // clamped to [0, 1] then scaled to [0, 1_000_000]: always fits
fn to_weight(value: f64) -> i64 {
    let clamped = if value.is_finite() { value.clamp(0.0, 1.0) } else { 0.0 };
    let scaled = clamped * 1_000_000.0;
    // `scaled.round()` without the libm call: the integer part truncates exactly, and `scaled - whole` is exact
    // (Sterbenz: `whole` is 0 or at least half of `scaled`), so ties round up, away from zero, like `round`.
    let whole = scaled as i64;
    if scaled - whole as f64 >= 0.5 {
        whole + 1
    } else {
        whole
    }
}

/// Results remembered across the candidates of one matching run (one ticket): the results of one search often hold
/// the same file titles (one rip in several formats, or named alike) and so the same comparisons and assignment
/// problems. Each entry is the exact result of the computation it replaces, keyed by everything that computation
/// reads, so using it never changes an outcome.
#[derive(Debug, Default)]
pub struct MatchMemo {
    /// Name similarity of a file title (the text of its [`TitleKey`]) to each ticket track, in track order.
    name_rows: HashMap<String, Vec<f64>>,
    /// The assignment of an exact weight matrix `(rows, columns, weights)`. A cheap hash: there are at most two
    /// entries per candidate, and equal hashes are still compared in full.
    assignments: HashMap<AssignmentProblem, Vec<Option<usize>>, BuildHasherDefault<WordMixHasher>>,
}

/// `(rows, columns, integer weights row by row)` of one assignment.
type AssignmentProblem = (usize, usize, Vec<i64>);

/// A fast non-cryptographic hasher for long integer keys (8 bytes per step, FxHash's mixing).
#[derive(Debug, Default)]
pub struct WordMixHasher(u64);

impl Hasher for WordMixHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        for b in chunks.remainder() {
            self.add(u64::from(*b));
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.add(value);
    }

    fn write_usize(&mut self, value: usize) {
        self.add(u64::try_from(value).unwrap_or(u64::MAX));
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl WordMixHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl MatchMemo {
    /// An empty memo, for one ticket.
    pub fn new() -> MatchMemo {
        MatchMemo::default()
    }
}

/// The optimal one-to-one assignment of tracks to files under `pair_weight`; returns for each track the file index
/// (or `None` when it got a padding column or a zero-weight pair).
pub fn assign(tracks: usize, files: usize, pair_weight: impl Fn(usize, usize) -> f64) -> Vec<Option<usize>> {
    assign_remembered(&mut MatchMemo::new(), tracks, files, pair_weight)
}

/// [`assign`], reusing the solution of an identical weight matrix solved earlier in the run.
fn assign_remembered(
    memo: &mut MatchMemo,
    tracks: usize,
    files: usize,
    pair_weight: impl Fn(usize, usize) -> f64,
) -> Vec<Option<usize>> {
    if tracks == 0 {
        return Vec::new();
    }
    if files == 0 {
        return vec![None; tracks];
    }
    let columns = files.max(tracks);
    let mut weights = Vec::with_capacity(tracks * columns);
    for t in 0..tracks {
        for f in 0..columns {
            weights.push(if f < files { to_weight(pair_weight(t, f)) } else { 0 });
        }
    }
    let problem = (tracks, columns, weights);
    if let Some(known) = memo.assignments.get(&problem) {
        return known.clone();
    }
    let Ok(matrix) = Matrix::from_vec(tracks, columns, problem.2.clone()) else {
        return vec![None; tracks];
    };
    let (_, assignment) = kuhn_munkres(&matrix);
    let result: Vec<Option<usize>> = assignment
        .into_iter()
        .enumerate()
        .map(|(t, f)| (f < files && matrix.get((t, f)).is_some_and(|w| *w > 0)).then_some(f))
        .collect();
    memo.assignments.insert(problem, result.clone());
    result
}

/// The name similarity of one file title to each track (the full title, or its part after the last `:`).
fn name_row(tracks: &[PreparedTrack], file_key: &TitleKey) -> Vec<f64> {
    tracks
        .iter()
        .map(|track| {
            let (key, tail_key) = (&track.key, &track.tail_key);
            let full = if key.may_match(file_key) { title_similarity_of_keys(key, file_key) } else { 0.0 };
            match tail_key {
                Some(tail) if full < 0.99 && tail.may_match(file_key) => {
                    full.max(title_similarity_of_keys(tail, file_key))
                }
                _ => full,
            }
        })
        .collect()
}

/// Maps tracks to files in two passes: names and numbers first, then again with the duration model fitted on the
/// first pass's confident pairs. `memo` must only ever be used with these same `tracks`.
pub fn map_tracks(
    memo: &mut MatchMemo,
    tracks: &[PreparedTrack],
    files: &[AudioFile],
    model_for: impl Fn(&[(usize, usize)]) -> DurationModel,
) -> (Vec<Option<PairEvidence>>, DurationModel) {
    let discs: BTreeSet<u32> = tracks.iter().map(|t| t.disc).collect();
    let multi_disc = discs.len() > 1;
    let n = tracks.len();
    let m = files.len();
    let mut names = vec![0.0f64; n * m];
    let mut numbers = vec![0.0f64; n * m];
    for (fi, file) in files.iter().enumerate() {
        if !memo.name_rows.contains_key(file.key.text.as_str()) {
            memo.name_rows.insert(file.key.text.clone(), name_row(tracks, &file.key));
        }
        for (ti, similarity) in memo.name_rows.get(file.key.text.as_str()).into_iter().flatten().enumerate() {
            if let Some(slot) = names.get_mut(ti * m + fi) {
                *slot = *similarity;
            }
        }
    }
    for (ti, track) in tracks.iter().enumerate() {
        for (fi, file) in files.iter().enumerate() {
            if let Some(slot) = numbers.get_mut(ti * m + fi) {
                *slot = numbers_agreement(track, file, multi_disc);
            }
        }
    }
    let name_at = |t: usize, f: usize| names.get(t * m + f).copied().unwrap_or(0.0);
    let number_at = |t: usize, f: usize| numbers.get(t * m + f).copied().unwrap_or(0.0);
    let first = assign_remembered(memo, n, m, |t, f| 0.01 + 0.65 * name_at(t, f) + 0.34 * number_at(t, f));
    let first_pairs: Vec<(usize, usize)> = first.iter().enumerate().filter_map(|(t, f)| f.map(|f| (t, f))).collect();
    let mut confident: Vec<(usize, usize)> = first_pairs
        .iter()
        .copied()
        .filter(|&(t, f)| name_at(t, f) >= 0.75 || (number_at(t, f) >= 1.0 && name_at(t, f) >= 0.3))
        .collect();
    if confident.len() < 3 && confident.len() * 2 < n {
        // Names say nothing (`Track 01`): fit on the number-agreeing pairs; a wrong album then shows as
        // inconsistent relative durations.
        confident = first_pairs.iter().copied().filter(|&(t, f)| number_at(t, f) >= 1.0).collect();
    }
    let model = model_for(&confident);
    let duration_at = |t: usize, f: usize| match (tracks.get(t), files.get(f)) {
        (Some(track), Some(file)) => model.check(file, track.duration_secs),
        _ => DurationCheck::Unknown,
    };
    // When every track has one clearly named file and no rival, durations cannot change the assignment: keep it
    // (they are still checked on the chosen pairs below).
    let unambiguous = first
        .iter()
        .enumerate()
        .all(|(t, f)| f.is_some_and(|f| name_at(t, f) >= 0.95 && (0..m).all(|g| g == f || name_at(t, g) < 0.9)));
    let second = if unambiguous {
        first
    } else {
        assign_remembered(memo, n, m, |t, f| {
            0.01 + 0.55 * name_at(t, f) + 0.25 * number_at(t, f) + 0.19 * duration_at(t, f).agreement()
        })
    };
    let evidence = second
        .into_iter()
        .enumerate()
        .map(|(t, f)| {
            f.map(|f| PairEvidence {
                track_idx: t,
                file_idx: f,
                name_similarity: name_at(t, f),
                numbers_agree: number_at(t, f),
                duration: duration_at(t, f),
                version_conflict: match (tracks.get(t), files.get(f)) {
                    (Some(track), Some(file)) => has_version_conflict(&track.key, &file.key),
                    _ => false,
                },
            })
        })
        .collect();
    (evidence, model)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<String> {
        fold_text(s).split(' ').filter(|t| !t.is_empty()).map(str::to_string).collect()
    }

    #[test]
    fn disc_and_track_numbers() {
        assert_eq!(extract_disc_track("01 - Airbag"), (None, Some(1), None, "Airbag"));
        assert_eq!(
            extract_disc_track("101-the_beatles-back_in_the_u.s.s.r."),
            (Some(1), Some(1), None, "the_beatles-back_in_the_u.s.s.r.")
        );
        assert_eq!(extract_disc_track("213-the_beatles-good_night").1, Some(13));
        assert_eq!(extract_disc_track("213-the_beatles-good_night").0, Some(2));
        assert_eq!(extract_disc_track("2-03 Mother Nature's Son"), (Some(2), Some(3), None, "Mother Nature's Son"));
        assert_eq!(extract_disc_track("d1t05 Wild Honey Pie"), (Some(1), Some(5), None, "Wild Honey Pie"));
        assert_eq!(extract_disc_track("Track 05"), (None, Some(5), None, ""));
        assert_eq!(extract_disc_track("04 - 134340"), (None, Some(4), None, "134340"));
        assert_eq!(extract_disc_track("01. Cowboys"), (None, Some(1), None, "Cowboys"));
        assert_eq!(extract_disc_track("01 15 Step"), (None, Some(1), None, "15 Step"));
        assert_eq!(extract_disc_track("B2 - Paradise"), (None, None, Some('B'), "Paradise"));
        assert_eq!(extract_disc_track("Glory Box"), (None, None, None, "Glory Box"));
        assert_eq!(extract_disc_track("100 - Hundred").1, Some(100));
        assert_eq!(extract_disc_track("").1, None);
        assert_eq!(extract_disc_track("99999999999999999999 - huge").1, None);
    }

    #[test]
    fn disc_folders() {
        assert_eq!(disc_from_dir("CD1"), Some(1));
        assert_eq!(disc_from_dir("Disc 2"), Some(2));
        assert_eq!(disc_from_dir("CD3 - Pink Moon"), Some(3));
        assert_eq!(disc_from_dir("disk_1"), Some(1));
        assert_eq!(disc_from_dir("Scans"), None);
        assert_eq!(disc_from_dir("CDP 7243"), None);
    }

    #[test]
    fn audio_files_are_read_with_disc_folders_and_artist_prefix() {
        let files = vec![
            TorrentFile { path: "A (2007)/CD2/01 - Radiohead - 15 Step.flac".into(), size_bytes: 10 },
            TorrentFile { path: "A (2007)/cover.jpg".into(), size_bytes: 10 },
            TorrentFile { path: "A (2007)/A.cue".into(), size_bytes: 10 },
            TorrentFile { path: "A (2007)/Track 02.FLAC".into(), size_bytes: 10 },
            TorrentFile { path: "A (2007)/05 - 낙원.flac".into(), size_bytes: 10 },
        ];
        let audio = read_audio_files(&files, "Radiohead");
        assert_eq!(audio.len(), 3);
        assert_eq!(audio[0].disc, Some(2));
        assert_eq!(audio[0].key.words().collect::<Vec<_>>(), vec!["15", "step"]);
        assert!(audio[0].informative);
        assert!(!audio[1].informative, "Track 02 names nothing");
        assert!(!audio[2].informative, "non-Latin script cannot contradict a Latin title");
    }

    #[test]
    fn similarity_of_titles() {
        assert!(title_similarity(&toks("Back in the U.S.S.R."), &toks("back_in_the_u.s.s.r.")) > 0.99);
        assert!(title_similarity(&toks("Weird Fishes/Arpeggi"), &toks("Weird Fishes-Arpeggi")) > 0.99);
        assert!(
            title_similarity(&toks("Variation 15"), &toks("Variatio 15 Canone alla Quinta. Andante a 1 Clav.")) > 0.75
        );
        assert!(title_similarity(&toks("Airbag"), &toks("Airbag (Live in Berlin)")) < 0.6);
        assert!(title_similarity(&toks("New York City Cops"), &toks("When It Started")) < 0.3);
        assert!(title_similarity(&toks("Starálfur"), &toks("Staralfur")) > 0.99);
        assert!(title_similarity(&toks("Variation 1"), &toks("Variation 10")) < 0.75);
        assert!(title_similarity(&toks("Revolution 9"), &toks("Revolution 1")) < 0.75);
        assert!(title_similarity(&toks("Revolution 1"), &toks("revolution_1")) > 0.99);
        assert_eq!(title_similarity(&[], &toks("x")), 0.0);
    }

    fn ticket_named(names: &[&str]) -> Ticket {
        let tracks: Vec<serde_json::Value> = names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                serde_json::json!({"catalog_track_id": format!("t{i}"), "track_number": i + 1,
                "name": n, "duration_secs": 100.0, "dest_path": format!("/m/{i}.ogg")})
            })
            .collect();
        serde_json::from_value(serde_json::json!({"ticket_id": "x", "created_at": "2026-01-01T00:00:00Z",
            "search": {"artist": "A", "album": "B"}, "tracks": tracks, "constraints": {"format": "mp3"}}))
        .unwrap()
    }

    #[test]
    fn shared_work_prefix_is_removed_and_tails_are_kept() {
        let t = ticket_named(&[
            "Goldberg Variations, BWV 988: Aria",
            "Goldberg Variations, BWV 988: Variation 1",
            "Goldberg Variations, BWV 988: Variation 2",
            "Goldberg Variations, BWV 988: Aria da capo",
        ]);
        let prepared = prepare_tracks(&t);
        assert_eq!(prepared[1].tokens, vec!["variation", "1"]);
        let mixed =
            ticket_named(&["Symphony No. 5 in C minor, Op. 67: I. Allegro con brio", "Egmont, Op. 84: Overture"]);
        let prepared = prepare_tracks(&mixed);
        assert_eq!(prepared[0].tail_tokens, vec!["i", "allegro", "con", "brio"]);
        assert!(prepared[0].tokens.len() > 4, "a prefix of one track only is kept");
        assert_eq!(prepared[1].position, 2);
    }

    #[test]
    fn jaro_winkler_bound_never_skips_a_passing_pair() {
        let words = [
            "amber",
            "ambre",
            "harbour",
            "harbor",
            "lantern",
            "lantren",
            "static",
            "statics",
            "copper",
            "coppers",
            "signal",
            "signals",
            "variatio",
            "variation",
            "allegro",
            "alegro",
            "meridian",
            "meridan",
            "martha",
            "marhta",
            "dwayne",
            "duane",
            "dixon",
            "dicksonx",
            "atlas",
            "crown",
            "cinder",
            "velvet",
            "hollow",
            "glass",
        ];
        for a in words {
            for b in words {
                if strsim::jaro_winkler(a, b) >= 0.9 {
                    assert!(jaro_winkler_may_reach(a, b), "{a} / {b} passes but the bound skips it");
                }
            }
        }
        assert!(!jaro_winkler_may_reach("amber", "atlas"));
        assert!(jaro_winkler_may_reach("staralfur", "starálfur"), "non-ASCII is never skipped");
    }

    #[test]
    fn weights_round_like_f64_round() {
        #[allow(clippy::cast_possible_truncation)]
        let reference = |v: f64| (if v.is_finite() { v.clamp(0.0, 1.0) } else { 0.0 } * 1_000_000.0).round() as i64;
        let mut values = vec![0.0, 1.0, -1.0, 2.0, f64::NAN, f64::INFINITY, 0.5e-6, 0.4999999e-6, 0.0000015, 0.9999995];
        values.extend((0..20_000).map(|i| f64::from(i) / 20_000.0 + 1e-7 * f64::from(i % 7)));
        values.extend((0..2_000).map(|i| (f64::from(i) + 0.5) / 1_000_000.0));
        for v in values {
            assert_eq!(to_weight(v), reference(v), "{v}");
        }
    }

    #[test]
    fn quick_spelling_test_equals_the_bound() {
        let titles = [
            "",
            "a",
            "ab",
            "abcde",
            "abcdef",
            "edcba",
            "amber of the salt",
            "amberofthesalt",
            "the salt of amber",
            "pt 2",
            "pt2",
            "part 2",
            "variation 1",
            "variation 10",
            "variatio 1",
            "harbour",
            "harbor",
            "lanternbay",
            "lantern bay reprise",
            "x y z w v",
            "aaaaa",
            "aaaab",
            "aaaabb",
            "abcdefghij",
            "abcdefghik",
            "bcdefghijk",
        ];
        for a in titles {
            for b in titles {
                let (ka, kb) = (TitleKey::from_folded(a), TitleKey::from_folded(b));
                let shared = ka.word_hashes.iter().any(|h| kb.word_hashes.contains(h));
                assert_eq!(ka.may_match(&kb), shared || ka.spelling_bound(&kb) > 0.8, "{a:?} / {b:?}");
            }
        }
    }

    #[test]
    fn extension_and_featuring_checks_equal_their_plain_forms() {
        for path in
            ["a/b.flac", "a/.flac", ".flac", "x.FLAC", "a.b/c", "a/b.", "dir.d/name", "", "/", "a/b/c.tar.gz", "f"]
        {
            let name = path.rsplit('/').next().unwrap_or(path);
            let plain = match name.rsplit_once('.') {
                Some((stem, ext)) if !stem.is_empty() => ext,
                _ => "",
            };
            assert_eq!(extension_of(path), plain, "{path:?}");
        }
        for title in ["Song (feat. X)", "Song FT. Y", "Featuring", "soft.", "ft", "fea", "left out", "", "Ft.", "FEAT"]
        {
            let lower = title.to_ascii_lowercase();
            assert_eq!(mentions_featuring(title), lower.contains("feat") || lower.contains("ft."), "{title:?}");
        }
    }

    #[test]
    fn edit_distance() {
        assert_eq!(byte_edit_distance(b"kitten", b"sitting"), 3);
        assert_eq!(byte_edit_distance(b"", b"abc"), 3);
        assert_eq!(byte_edit_distance(b"abc", b"abc"), 0);
        assert_eq!(byte_edit_distance(b"pt2", b"pt 2"), 1);
    }

    #[test]
    fn work_prefix_and_featuring_are_stripped() {
        assert_eq!(strip_featuring("The Truth Untold (feat. Steve Aoki)").trim(), "The Truth Untold");
        assert_eq!(strip_featuring("Song ft. Someone").trim(), "Song");
    }

    #[test]
    fn assignment_is_optimal_and_one_to_one() {
        // Greedy would give file 0 to track 0 (0.9) and leave track 1 with 0.1; optimal is 0->1, 1->0.
        let w = [[0.9, 0.8], [0.85, 0.1]];
        let result = assign(2, 2, |t, f| w[t][f]);
        assert_eq!(result, vec![Some(1), Some(0)]);
        assert_eq!(assign(3, 1, |_, _| 0.5).iter().filter(|x| x.is_some()).count(), 1);
        assert!(assign(0, 5, |_, _| 1.0).is_empty());
        assert_eq!(assign(2, 0, |_, _| 1.0), vec![None, None]);
    }
}
