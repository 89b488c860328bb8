//! Test support: launchers for real programs and wire-level test servers, all on 127.0.0.1.

pub mod app;
pub mod audio;
pub mod browser;
pub mod canary;
pub mod corpus;
pub mod llm_server;
pub mod music;
pub mod pipeline;
pub mod prometheus;
pub mod qbittorrent_root;
pub mod reverse_proxy;
pub mod service_process;
pub mod swarm;
pub mod torrent_file;
pub mod torznab_server;
pub mod verify_corpus;
pub mod webhook_receiver;
