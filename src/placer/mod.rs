//! Placement of converted files at their destinations. `paths` owns the allowed-roots rule (shared with ticket
//! validation).

pub mod paths;
