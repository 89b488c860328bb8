//! Matching: scoring candidates against a ticket and mapping torrent files to catalog tracks (placeholder).
