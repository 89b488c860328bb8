//! `App`: configuration, store, bus and clients, built once and shared (being written for the foundation issue).

/// The running service's shared state.
#[derive(Debug)]
pub struct App {
    pub config: crate::config::Config,
}
