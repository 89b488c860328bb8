//! Search: turning a ticket's hints into torrent candidates through Torznab indexers (Jackett, Prowlarr).
//! `release` parses release titles (pure, used by the matcher too).

pub mod release;
