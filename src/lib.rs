//! downloader2: fetches music albums for a catalog server.
//!
//! A *ticket* (one album) is posted over the HTTP API, persisted in SQLite, and moved through a state machine by
//! the pipeline stages; each external system is owned by one client module.
//!
//! The modules, in their layers (lowest first; a module imports only from layers below its own, and two modules
//! of one layer never import each other except `converter` -> `placer`; `layering.rs` checks this in a test, and
//! `docs/ARCHITECTURE.md` walks one ticket through them):
//!
//! | layer | module | owns |
//! |---|---|---|
//! | base data | [`models`] | the contract's JSON types: ticket, states, candidates, stage classes, the allowed-roots path policy |
//! | base services | [`config`] | the TOML file + `DOWNLOADER2_*` environment, validated; the bearer tokens in force |
//! | | [`events`] | the broadcast bus the WebSocket and the scheduler listen to |
//! | | [`metrics`] | the Prometheus metrics and their one-line helpers |
//! | | [`logging`] | the log output: text or JSON lines, every field escaped |
//! | programs | [`process`] | the one place that spawns and signals programs: argument vectors, time limits, death with the service |
//! | pure domain | [`release`] | release-title parsing and the text folding names are compared with |
//! | | [`matcher`] | scoring candidates, mapping files to tracks, the typed verdict, the LLM guard rails |
//! | clients | [`searcher`] | Torznab indexers (Jackett, Prowlarr) |
//! | | [`torrent_client`] | qBittorrent's WebUI API and the managed qbittorrent-nox |
//! | | [`converter`] | ffmpeg/ffprobe: transcoding, tags, cover art, CUE splitting, output validation |
//! | | [`placer`] | atomic placement inside the allowed roots |
//! | | [`llm`] | the LLM providers (Anthropic, OpenAI, local), their HTTP, the prompt and the answer parsing |
//! | | [`verifier`] | the audio itself: integrity, transcodes, upsampling, duplicates, loudness (run by `processor::verify`) |
//! | | [`notify`] | the catalog webhook: signed POSTs of ticket events |
//! | persistence | [`queue`] | SQLite: tickets, their history, the legal transitions, leases and the transition fence, the webhook outbox, the blocklist |
//! | commands | [`app`] | `App`, built once and shared: the commands and queries the API calls, the clients, the task spawner |
//! | pipeline | [`processor`] | the scheduler (claims, limits, retries), one function per stage returning the next state, the reaper, the LLM step, the webhook delivery task |
//! | HTTP | [`api`] | the HTTP routes, auth, errors, OpenAPI |
//! | wiring | [`server`] | start-up (tokens, clients, store), `run`/`serve`, the connection limits, shutdown |
//!
//! [`run`] starts the whole service on a given listener and stops it when the shutdown future resolves, so the
//! integration tests drive exactly the code `downloader2 serve` runs.

pub mod api;
pub mod app;
pub mod config;
pub mod converter;
pub mod events;
pub mod llm;
pub mod logging;
pub mod matcher;
pub mod metrics;
pub mod models;
pub mod notify;
pub mod placer;
pub mod process;
pub mod processor;
pub mod queue;
pub mod release;
pub mod searcher;
pub mod server;
pub mod torrent_client;
pub mod verifier;

#[cfg(test)]
mod layering;

pub use app::App;
pub use config::Config;
pub use server::{prepare, run, ServeError};
