//! Test support: launchers for real programs and wire-level test servers, all on 127.0.0.1.

pub mod app;
pub mod audio;
pub mod browser;
pub mod corpus;
pub mod llm_server;
pub mod music;
pub mod pipeline;
pub mod prometheus;
pub mod swarm;
pub mod torznab_server;
