//! The one integration-test binary (one binary keeps link time down on 2 cores). Each module drives the real code
//! of one area; `support` holds the launchers and wire-level test servers.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::cast_possible_truncation)]

mod support;

mod admin_ui;
mod api;
mod api_contract;
mod api_validation;
mod converter;
mod converter_corpus;
mod database_storage;
mod hostile_destinations;
mod hostile_logs;
mod internal_addresses;
mod llm_cases;
mod llm_providers;
mod llm_refine;
mod matcher_cases;
mod metrics;
mod oversized_results;
mod packaging;
mod pipeline;
mod pipeline_conversion;
mod pipeline_crash;
mod pipeline_fallback;
mod pipeline_faults;
mod pipeline_load;
mod pipeline_qbittorrent;
mod pipeline_verify;
mod placer;
mod replaygain;
mod searcher;
mod service;
mod shutdown;
mod slow_clients;
mod tokens;
mod torrent_client;
mod verifier_accuracy;
mod webhook;
mod ws;
