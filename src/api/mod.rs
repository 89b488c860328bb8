//! The HTTP API (being written for the foundation issue).
