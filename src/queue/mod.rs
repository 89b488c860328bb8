//! The persistent queue: the SQLite store (every SQL statement, including the leased claims the scheduler in
//! `processor::scheduler` uses) and the one table of legal transitions.

pub mod storage;
pub mod store;
pub mod transitions;

pub use storage::{DatabaseHealth, StorageProblem};
pub use store::{
    CachedLlmAnswer, CreateOutcome, LlmUsageStats, Store, StoreError, StoreStats, TicketEventRecord, TicketRecord,
    TicketSummary, TransitionExtras, Transitioned,
};
pub use transitions::{check_transition, is_legal, IllegalTransition};
