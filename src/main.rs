//! The `downloader2` command line (placeholder until the foundation issue lands).
fn main() {}
