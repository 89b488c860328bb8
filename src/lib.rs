//! downloader2: fetches music albums for a catalog server.
//!
//! A *ticket* (one album) is posted over the HTTP API, persisted in SQLite, and moved through a state machine by
//! the pipeline stages, each in its own module that owns one external system:
//!
//! | module | owns |
//! |---|---|
//! | [`models`] | the contract's JSON types: ticket, states, candidates |
//! | [`config`] | the TOML file + `DOWNLOADER2_*` environment, validated |
//! | [`queue`] | SQLite: tickets, their event history, the legal transitions, leases, the webhook outbox, the blocklist |
//! | [`events`] | the broadcast bus the WebSocket and the scheduler listen to |
//! | [`searcher`] | Torznab indexers (Jackett, Prowlarr) and release-title parsing |
//! | [`matcher`] | scoring candidates and mapping files to tracks |
//! | [`torrent_client`] | qBittorrent's WebUI API and the managed qbittorrent-nox |
//! | [`converter`] | ffmpeg/ffprobe: transcoding, tags, cover art, CUE splitting, output validation |
//! | [`process`] | the one place that spawns programs: argument vectors, time limits, death with the service |
//! | [`placer`] | atomic placement inside the allowed roots |
//! | [`verifier`] | the audio itself: integrity, transcodes, upsampling, duplicates, loudness (run by `processor::verify`) |
//! | [`notify`] | the catalog webhook: signed POSTs of ticket events, backoff |
//! | [`processor`] | the scheduler (claims, limits, retries), one function per stage returning the next state, the reaper, the webhook delivery task |
//! | [`api`] | the HTTP routes, auth, errors, OpenAPI |
//! | [`app`] | `App`, built once and shared: the commands the API calls |
//! | [`logging`] | the log output: text or JSON lines, every field escaped |
//!
//! [`run`] starts the whole service on a given listener and stops it when the shutdown future resolves, so the
//! integration tests drive exactly the code `downloader2 serve` runs.

pub mod api;
pub mod app;
pub mod config;
pub mod converter;
pub mod events;
pub mod logging;
pub mod matcher;
pub mod metrics;
pub mod models;
pub mod notify;
pub mod placer;
pub mod process;
pub mod processor;
pub mod queue;
pub mod searcher;
pub mod server;
pub mod torrent_client;
pub mod verifier;

pub use app::App;
pub use config::Config;
pub use server::{prepare, run, ServeError};
