//! The query strategy: which searches a ticket's hints turn into, in which order, and when the results are good
//! enough to stop. Pure (no I/O); the order here is the contract the searcher's tests assert on the wire.
//!
//! Order: `artist album` with the year; without the year; with diacritics folded; without a leading "The"; the
//! album alone when its title is long and distinctive; the artist alone (discography packs) last. Variants that
//! would repeat an earlier query are skipped. Never builds an empty query (an empty `q` is an RSS feed, not a
//! search).

use crate::models::SearchHints;

/// One Torznab search to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryVariant {
    /// Why this variant exists (logs, tests).
    pub kind: VariantKind,
    /// The `q` parameter (always present).
    pub q: String,
    /// `artist` parameter, sent only where caps list it.
    pub artist: Option<String>,
    /// `album` parameter, sent only where caps list it.
    pub album: Option<String>,
    /// The year: as the `year` parameter where caps list it, else appended to `q`.
    pub year: Option<i32>,
}

/// The step of the strategy a variant comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VariantKind {
    ArtistAlbumYear,
    ArtistAlbum,
    Folded,
    WithoutLeadingThe,
    AlbumAlone,
    ArtistAlone,
    /// An admin's force-search text.
    Custom,
}

/// At least this many strong results stop the fallbacks.
pub const ENOUGH_STRONG_RESULTS: usize = 5;

/// Longest `q` sent (indexers truncate or reject longer ones).
const MAX_QUERY_CHARS: usize = 200;

/// Album titles too generic to be searched alone.
const GENERIC_ALBUM_WORDS: [&str; 16] = [
    "greatest",
    "hits",
    "best",
    "live",
    "the",
    "of",
    "collection",
    "album",
    "anthology",
    "remastered",
    "edition",
    "deluxe",
    "ep",
    "single",
    "untitled",
    "volume",
];

/// Collapses whitespace and trims; cuts at `MAX_QUERY_CHARS` characters.
pub fn clean_query(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ").chars().take(MAX_QUERY_CHARS).collect()
}

/// The comparison form of a text: lower case, diacritics folded, punctuation dropped, whitespace collapsed.
pub fn normalise_query(text: &str) -> String {
    let folded = deunicode::deunicode(text).to_lowercase();
    folded.split(|c: char| !c.is_alphanumeric()).filter(|word| !word.is_empty()).collect::<Vec<_>>().join(" ")
}

/// `deunicode` folding of a query, keeping its words.
fn fold_diacritics(text: &str) -> String {
    clean_query(&deunicode::deunicode(text))
}

fn strip_leading_the(text: &str) -> Option<String> {
    let trimmed = text.trim_start();
    let lower = trimmed.get(..4)?.to_ascii_lowercase();
    (lower == "the ").then(|| clean_query(trimmed.get(4..).unwrap_or_default())).filter(|rest| !rest.is_empty())
}

/// Whether an album title is specific enough to find the album without the artist: at least 2 words, 12
/// letters or digits, and at least two words that are not generic.
pub fn is_distinctive_album(album: &str) -> bool {
    let normal = normalise_query(album);
    let words: Vec<&str> = normal.split(' ').filter(|w| !w.is_empty()).collect();
    let letters = normal.chars().filter(|c| c.is_alphanumeric()).count();
    let specific = words.iter().filter(|w| w.len() > 2 && !GENERIC_ALBUM_WORDS.contains(w)).count();
    words.len() >= 2 && letters >= 12 && specific >= 2
}

/// The variants for a ticket, in the order they are tried, without duplicates.
pub fn build_query_variants(hints: &SearchHints) -> Vec<QueryVariant> {
    let artist = clean_query(&hints.artist);
    let album = clean_query(&hints.album);
    let mut variants: Vec<QueryVariant> = Vec::new();
    let mut push = |kind: VariantKind, q: String, artist: Option<&str>, album: Option<&str>, year: Option<i32>| {
        let q = clean_query(&q);
        if q.is_empty() {
            return;
        }
        if variants.iter().any(|v| v.q == q && v.year == year) {
            return;
        }
        variants.push(QueryVariant {
            kind,
            q,
            artist: artist.filter(|a| !a.is_empty()).map(str::to_string),
            album: album.filter(|a| !a.is_empty()).map(str::to_string),
            year,
        });
    };
    let both = format!("{artist} {album}");
    if let Some(year) = hints.year {
        push(VariantKind::ArtistAlbumYear, both.clone(), Some(&artist), Some(&album), Some(year));
    }
    push(VariantKind::ArtistAlbum, both.clone(), Some(&artist), Some(&album), None);
    let folded_artist = fold_diacritics(&artist);
    let folded_album = fold_diacritics(&album);
    let folded = format!("{folded_artist} {folded_album}");
    if clean_query(&folded) != clean_query(&both) {
        push(VariantKind::Folded, folded, Some(&folded_artist), Some(&folded_album), None);
    }
    if let Some(bare_artist) = strip_leading_the(&folded_artist) {
        push(
            VariantKind::WithoutLeadingThe,
            format!("{bare_artist} {folded_album}"),
            Some(&bare_artist),
            Some(&folded_album),
            None,
        );
    }
    if is_distinctive_album(&album) {
        push(VariantKind::AlbumAlone, folded_album.clone(), None, Some(&folded_album), None);
    }
    push(VariantKind::ArtistAlone, folded_artist.clone(), Some(&folded_artist), None, None);
    variants
}

/// The one variant of an admin's force-search.
pub fn custom_query_variant(text: &str) -> Option<QueryVariant> {
    let q = clean_query(text);
    (!q.is_empty()).then_some(QueryVariant { kind: VariantKind::Custom, q, artist: None, album: None, year: None })
}

/// Whether a release title names both the artist and the album (every word of each, diacritics and case folded).
pub fn is_strong_title(title: &str, hints: &SearchHints) -> bool {
    let title_words: Vec<String> = normalise_query(title).split(' ').map(str::to_string).collect();
    let contains_all = |text: &str| {
        let normal = normalise_query(text);
        let words: Vec<&str> = normal.split(' ').filter(|w| !w.is_empty()).collect();
        !words.is_empty() && words.iter().all(|w| title_words.iter().any(|t| t == w))
    };
    let artist = hints.artist.trim();
    let artist_ok = contains_all(artist) || strip_leading_the(artist).is_some_and(|bare| contains_all(&bare));
    artist_ok && contains_all(&hints.album)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hints(artist: &str, album: &str, year: Option<i32>) -> SearchHints {
        SearchHints { artist: artist.into(), album: album.into(), year, label: None, genres: Vec::new() }
    }

    #[test]
    fn full_sequence_for_a_the_band_with_diacritics() {
        let variants = build_query_variants(&hints("The Mötley Crüe", "Dr. Feelgood Extended Edition", Some(1989)));
        let sent: Vec<(VariantKind, &str, Option<i32>)> =
            variants.iter().map(|v| (v.kind, v.q.as_str(), v.year)).collect();
        assert_eq!(
            sent,
            vec![
                (VariantKind::ArtistAlbumYear, "The Mötley Crüe Dr. Feelgood Extended Edition", Some(1989)),
                (VariantKind::ArtistAlbum, "The Mötley Crüe Dr. Feelgood Extended Edition", None),
                (VariantKind::Folded, "The Motley Crue Dr. Feelgood Extended Edition", None),
                (VariantKind::WithoutLeadingThe, "Motley Crue Dr. Feelgood Extended Edition", None),
                (VariantKind::AlbumAlone, "Dr. Feelgood Extended Edition", None),
                (VariantKind::ArtistAlone, "The Motley Crue", None),
            ]
        );
    }

    #[test]
    fn plain_ascii_short_album_skips_folding_and_album_alone() {
        let variants = build_query_variants(&hints("Portishead", "Dummy", None));
        let qs: Vec<&str> = variants.iter().map(|v| v.q.as_str()).collect();
        assert_eq!(qs, vec!["Portishead Dummy", "Portishead"]);
    }

    #[test]
    fn generic_album_titles_are_not_distinctive() {
        assert!(!is_distinctive_album("Greatest Hits"));
        assert!(!is_distinctive_album("Live"));
        assert!(is_distinctive_album("Mezzanine Remastered Deluxe Nights"));
        assert!(is_distinctive_album("In the Aeroplane Over the Sea"));
    }

    #[test]
    fn strong_titles_need_artist_and_album_words() {
        let h = hints("The Beatles", "Abbey Road", Some(1969));
        assert!(is_strong_title("Beatles - Abbey Road (1969) [FLAC]", &h));
        assert!(is_strong_title("The Beatles   Abbey Road", &h));
        assert!(!is_strong_title("The Beatles - Let It Be", &h));
        assert!(is_strong_title("Björk - Homogenic", &hints("Bjork", "Homogenic", None)));
    }

    #[test]
    fn empty_hints_build_no_empty_query() {
        assert!(build_query_variants(&hints("  ", " ", None)).is_empty());
        assert!(custom_query_variant("   ").is_none());
        assert_eq!(custom_query_variant("  a   b ").unwrap().q, "a b");
    }
}
