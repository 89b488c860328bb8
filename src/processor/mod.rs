//! The pipeline stages: one async function per stage returning the next state or a typed error (stages never write
//! state themselves), and the retry policy the scheduler applies to their failures. The stage functions arrive
//! with the pipeline issue; `retry` is the policy they will share.

pub mod retry;
