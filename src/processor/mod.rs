//! The pipeline stages: one async function per stage returning the next state (placeholder until the pipeline
//! issue).
