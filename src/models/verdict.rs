//! The matcher's typed verdict on one candidate, as the store keeps it and the API shows it: the hard rejects
//! (why a candidate may never be auto-approved) and the doubts (why an acceptable one still needs an admin, or in
//! the one mild case, is only worth a note). Pure data: the decisions that read it are the matcher's
//! (`matcher::verdict`), and no decision reads text. Each value renders its message ([`std::fmt::Display`]) for the
//! reasoning, the LLM prompt and the JSON the API shows, where every entry is `{"type": ..., ...data, "message":
//! "..."}` (see [`verdict_entries`]).
//!
//! Upgrades: hard rejects written by versions before the typed verdict are plain strings; they load as
//! [`HardReject::Recorded`] (still a hard reject). Candidates stored without `doubts` load with
//! [`Doubt::NotRecorded`]. Neither is ever auto-approved after an upgrade (a fallback or an LLM raise on them goes to
//! an admin).

use std::fmt;

use serde::{Deserialize, Serialize};

/// A kind of release a title announces that the ticket did not ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UnaskedKind {
    /// Live, concert, bootleg, unplugged.
    Live,
    /// Tribute, cover versions, karaoke, instrumental renditions.
    Tribute,
    /// Greatest hits, best of, singles collection.
    Compilation,
    /// A various-artists compilation.
    VariousArtists,
    /// Mono, remix, demos, re-recordings.
    OtherMix,
}

/// A reason a candidate can never be auto-approved (by the matcher, a fallback or the LLM).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum HardReject {
    /// Neither the title nor its folder names the ticket's artist.
    WrongArtist { artist: String },
    /// The title announces a live recording, a tribute, a compilation, ... the ticket did not ask for.
    UnaskedKind { kind: UnaskedKind },
    /// Nobody seeds it.
    NoSeeders,
    /// The file list holds no audio file.
    NoAudioFiles,
    /// The indexer gave a file list with nothing in it.
    EmptyFileList,
    /// Ticket tracks no file could be mapped to (all of them, in ticket order).
    MissingTracks { missing_track_ids: Vec<String>, expected: usize },
    /// So many durations disagree that it is another recording or edition.
    DurationsDiffer { tracks: usize },
    /// A title-only result whose title does not name the album (`coverage`: the share of album words found).
    TitleLacksAlbum { coverage: f64 },
    /// A title-only result naming another number or volume of the album.
    OtherNumberOrVolume,
    /// A title-only result without the edition (deluxe, ...) the ticket asks for.
    LacksAskedEdition,
    /// A title-only single or EP too short to hold the ticket's tracks.
    SingleOrEp,
    /// A title-only multi-album pack: whether it holds the album cannot be checked.
    PackWithoutFileList,
    /// A title-only result holding one disc of a set.
    OnlyOneDisc { disc: u32 },
    /// A title-only self-titled album whose year is another one's (artists release several self-titled albums).
    SelfTitledOtherYear,
    /// A hard reject recorded as text by a version before the typed verdict.
    Recorded { text: String },
}

impl HardReject {
    /// The message without [`reword`] (what [`fmt::Display`] shows in production).
    pub fn plain_message(&self) -> String {
        match self {
            HardReject::WrongArtist { artist } => format!("wrong artist (title does not name {artist:?})"),
            HardReject::UnaskedKind { kind } => {
                let what = match kind {
                    UnaskedKind::Live => "live recording",
                    UnaskedKind::Tribute => "tribute/cover/karaoke/instrumental",
                    UnaskedKind::Compilation => "compilation",
                    UnaskedKind::VariousArtists => "various-artists compilation",
                    UnaskedKind::OtherMix => "another mix or recording (mono/remix/demos)",
                };
                format!("{what} not asked for")
            }
            HardReject::NoSeeders => "no seeders".into(),
            HardReject::NoAudioFiles => "no audio files".into(),
            HardReject::EmptyFileList => "empty file list".into(),
            HardReject::MissingTracks { missing_track_ids, expected } => format!(
                "missing {} of {expected} ticket tracks ({})",
                missing_track_ids.len(),
                missing_track_ids.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
            ),
            HardReject::DurationsDiffer { tracks } => {
                format!("durations of {tracks} tracks differ from the catalog (another recording or edition)")
            }
            HardReject::TitleLacksAlbum { coverage } => format!("title does not name the album ({coverage:.2})"),
            HardReject::OtherNumberOrVolume => "title names another number or volume".into(),
            HardReject::LacksAskedEdition => "title lacks the edition asked for".into(),
            HardReject::SingleOrEp => "single/EP".into(),
            HardReject::PackWithoutFileList => "multi-album pack without a file list".into(),
            HardReject::OnlyOneDisc { disc } => format!("only disc {disc} of a set"),
            HardReject::SelfTitledOtherYear => "self-titled album with another year".into(),
            HardReject::Recorded { text } => text.clone(),
        }
    }
}

impl fmt::Display for HardReject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&reword(self.plain_message()))
    }
}

/// Why an acceptable candidate still needs an admin. Every doubt but a mild one ([`Doubt::is_mild`]) blocks
/// auto-approval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Doubt {
    /// Only the title is known.
    NoFileList,
    /// 1-2 seeders.
    WeakSwarm { seeders: u32 },
    /// A discography or box of several albums.
    Pack,
    /// 128 kbps or less.
    LowBitrate,
    /// Some tracks are identified by number and size only (`similarity`: the mean name similarity).
    NamesUnconfirmed { similarity: f64 },
    /// A file's size-derived duration disagrees with the catalog's (the worst one).
    Duration { expected_secs: f64, found_secs: f64 },
    /// The title names the album weakly (`similarity`: the share of album words found).
    TitleMismatch { similarity: f64 },
    /// The title's year is another one than the ticket's.
    YearConflict,
    /// Mild: the title names an older year than the ticket's (the original of a release the catalog dates by a
    /// reissue), with the same edition and kind words. Shown, but it blocks nothing.
    OlderYear { title_year: i32, ticket_year: i32 },
    /// The artist (in another script) is not recognised in the title.
    ArtistUncertain,
    /// A CUE image whose track numbers only the sheet knows, for a title that does not name exactly this edition.
    CueUnverified,
    /// Stored by a version before the typed verdict: the doubts are not known.
    NotRecorded,
}

impl Doubt {
    /// What a candidate stored without doubts (before the typed verdict) carries instead.
    pub fn not_recorded() -> Vec<Doubt> {
        vec![Doubt::NotRecorded]
    }

    /// Whether reading names (file names, the title, the artist in another script, a CUE image's track titles)
    /// can settle it: the only doubts an LLM's confirmation may overrule.
    pub fn is_settled_by_names(&self) -> bool {
        match self {
            Doubt::NamesUnconfirmed { .. }
            | Doubt::TitleMismatch { .. }
            | Doubt::ArtistUncertain
            | Doubt::CueUnverified => true,
            Doubt::NoFileList
            | Doubt::WeakSwarm { .. }
            | Doubt::Pack
            | Doubt::LowBitrate
            | Doubt::Duration { .. }
            | Doubt::YearConflict
            | Doubt::OlderYear { .. }
            | Doubt::NotRecorded => false,
        }
    }

    /// A doubt worth showing that blocks nothing (auto-approval, an LLM raise, a fallback).
    pub fn is_mild(&self) -> bool {
        match self {
            Doubt::OlderYear { .. } => true,
            Doubt::NoFileList
            | Doubt::WeakSwarm { .. }
            | Doubt::Pack
            | Doubt::LowBitrate
            | Doubt::NamesUnconfirmed { .. }
            | Doubt::Duration { .. }
            | Doubt::TitleMismatch { .. }
            | Doubt::YearConflict
            | Doubt::ArtistUncertain
            | Doubt::CueUnverified
            | Doubt::NotRecorded => false,
        }
    }

    /// The message without [`reword`] (what [`fmt::Display`] shows in production).
    pub fn plain_message(&self) -> String {
        match self {
            Doubt::NoFileList => "no file list".into(),
            Doubt::WeakSwarm { seeders } => format!("weak swarm ({seeders} seeders)"),
            Doubt::Pack => "multi-album pack".into(),
            Doubt::LowBitrate => "128 kbps or less".into(),
            Doubt::NamesUnconfirmed { similarity } => {
                format!("file names do not confirm every track ({similarity:.2})")
            }
            Doubt::Duration { expected_secs, found_secs } => {
                format!("a duration differs ({expected_secs:.0}s expected, ~{found_secs:.0}s from size)")
            }
            Doubt::TitleMismatch { similarity } => format!("title names the album weakly ({similarity:.2})"),
            Doubt::YearConflict => "year differs from the ticket".into(),
            Doubt::OlderYear { title_year, ticket_year } => {
                format!("title year {title_year} older than the ticket's {ticket_year} (an original of a reissue)")
            }
            Doubt::ArtistUncertain => "artist not recognised in the title".into(),
            Doubt::CueUnverified => "CUE image not verifiable by name".into(),
            Doubt::NotRecorded => "verdict stored by an older version: doubts unknown".into(),
        }
    }
}

impl fmt::Display for Doubt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&reword(self.plain_message()))
    }
}

/// A verdict entry that older versions may have stored as text.
pub trait FromRecordedText: Sized {
    /// The value for a plain string found where a typed entry belongs.
    fn from_recorded_text(text: String) -> Self;
}

impl FromRecordedText for HardReject {
    fn from_recorded_text(text: String) -> HardReject {
        HardReject::Recorded { text }
    }
}

impl FromRecordedText for Doubt {
    fn from_recorded_text(_text: String) -> Doubt {
        Doubt::NotRecorded
    }
}

/// Serde of a list of verdict entries (`#[serde(with = "verdict_entries")]`): each entry is written as its typed
/// form plus its `message`; each is read from that form (the message is ignored: it is derived) or from a plain
/// string (what older versions stored).
pub mod verdict_entries {
    use std::fmt::Display;

    use serde::de::DeserializeOwned;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::FromRecordedText;

    #[derive(Serialize)]
    struct Shown<'a, T> {
        #[serde(flatten)]
        entry: &'a T,
        message: String,
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Stored<T> {
        Typed(T),
        Text(String),
    }

    /// Writes each entry with its message.
    pub fn serialize<S, T>(entries: &[T], serializer: S) -> Result<S::Ok, S::Error>
    where
        S: Serializer,
        T: Serialize + Display,
    {
        serializer.collect_seq(entries.iter().map(|entry| Shown { entry, message: entry.to_string() }))
    }

    /// Reads typed entries and, from older versions, plain strings.
    pub fn deserialize<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
    where
        D: Deserializer<'de>,
        T: DeserializeOwned + FromRecordedText,
    {
        let stored: Vec<Stored<T>> = Vec::deserialize(deserializer)?;
        Ok(stored
            .into_iter()
            .map(|entry| match entry {
                Stored::Typed(value) => value,
                Stored::Text(text) => T::from_recorded_text(text),
            })
            .collect())
    }
}

#[cfg(test)]
thread_local! {
    /// Set by [`with_reworded_messages`]: every message comes out in other words.
    static REWORDED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Every human-readable message of the matcher (reasoning, hard rejects, doubts, the LLM step's notes) passes
/// through here. In production it returns the text unchanged; in unit tests [`with_reworded_messages`] makes it
/// return other words, which shows that no decision reads a message.
pub fn reword(text: String) -> String {
    #[cfg(test)]
    if REWORDED.with(std::cell::Cell::get) {
        return other_words(&text);
    }
    text
}

/// Runs `f` with every message reworded (unit tests only).
#[cfg(test)]
pub fn with_reworded_messages<T>(f: impl FnOnce() -> T) -> T {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            REWORDED.with(|flag| flag.set(self.0));
        }
    }
    let _restore = Restore(REWORDED.with(|flag| flag.replace(true)));
    f()
}

/// The same message in other words: every letter shifted by one (`missing` -> `njttjoh`), every digit by one,
/// punctuation swapped and the words in reverse order. Not an involution, so rewording twice never restores it.
#[cfg(test)]
fn other_words(text: &str) -> String {
    let shifted: String = text
        .chars()
        .map(|c| match c {
            'a'..='y' | 'A'..='Y' | '0'..='8' => char::from_u32(u32::from(c) + 1).unwrap_or(c),
            'z' => 'a',
            'Z' => 'A',
            '9' => '0',
            ';' => '|',
            ',' => '/',
            ':' => '=',
            '(' => '<',
            ')' => '>',
            other => other,
        })
        .collect();
    let mut words: Vec<&str> = shifted.split(' ').collect();
    words.reverse();
    format!("~{}", words.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Holder {
        #[serde(default, with = "verdict_entries")]
        hard_rejects: Vec<HardReject>,
        #[serde(default = "Doubt::not_recorded", with = "verdict_entries")]
        doubts: Vec<Doubt>,
    }

    #[test]
    fn entries_are_typed_with_their_message_and_round_trip() {
        let holder = Holder {
            hard_rejects: vec![
                HardReject::MissingTracks { missing_track_ids: vec!["t3".into(), "t9".into()], expected: 12 },
                HardReject::NoSeeders,
                HardReject::UnaskedKind { kind: UnaskedKind::Live },
            ],
            doubts: vec![Doubt::WeakSwarm { seeders: 1 }, Doubt::Duration { expected_secs: 200.0, found_secs: 150.0 }],
        };
        let json = serde_json::to_value(&holder).unwrap();
        assert_eq!(
            json["hard_rejects"][0],
            serde_json::json!({"type": "missing_tracks", "missing_track_ids": ["t3", "t9"], "expected": 12,
                "message": "missing 2 of 12 ticket tracks (t3, t9)"})
        );
        assert_eq!(json["hard_rejects"][1], serde_json::json!({"type": "no_seeders", "message": "no seeders"}));
        assert_eq!(json["hard_rejects"][2]["message"], "live recording not asked for");
        assert_eq!(
            json["doubts"][0],
            serde_json::json!({"type": "weak_swarm", "seeders": 1, "message": "weak swarm (1 seeders)"})
        );
        let back: Holder = serde_json::from_value(json).unwrap();
        assert_eq!(back, holder);
    }

    #[test]
    fn text_stored_by_older_versions_still_loads_as_hard_rejects_and_unknown_doubts() {
        let old = serde_json::json!({"hard_rejects": ["missing 1 of 9 ticket tracks (t5)", "no seeders"]});
        let loaded: Holder = serde_json::from_value(old).unwrap();
        assert_eq!(
            loaded.hard_rejects,
            vec![
                HardReject::Recorded { text: "missing 1 of 9 ticket tracks (t5)".into() },
                HardReject::Recorded { text: "no seeders".into() }
            ]
        );
        assert_eq!(loaded.doubts, vec![Doubt::NotRecorded]);
        // A recorded reject shows its text again.
        let json = serde_json::to_value(&loaded).unwrap();
        assert_eq!(json["hard_rejects"][1]["message"], "no seeders");
        assert_eq!(serde_json::from_value::<Holder>(json).unwrap(), loaded);
        // Nothing stored at all: no hard rejects, doubts unknown.
        let bare: Holder = serde_json::from_value(serde_json::json!({})).unwrap();
        assert!(bare.hard_rejects.is_empty());
        assert_eq!(bare.doubts, vec![Doubt::NotRecorded]);
    }

    #[test]
    fn rewording_changes_every_message_and_is_restored_after() {
        let reject = HardReject::MissingTracks { missing_track_ids: vec!["t1".into()], expected: 2 };
        let plain = reject.to_string();
        let other = with_reworded_messages(|| reject.to_string());
        assert_ne!(plain, other);
        assert!(!other.contains("missing"), "{other}");
        assert_eq!(reject.to_string(), plain, "the switch is off again");
        for doubt in [Doubt::NoFileList, Doubt::YearConflict, Doubt::CueUnverified] {
            assert_ne!(doubt.to_string(), with_reworded_messages(|| doubt.to_string()));
        }
    }
}
