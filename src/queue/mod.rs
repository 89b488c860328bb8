//! The persistent queue: the SQLite store (every SQL statement, including the leased claims the scheduler in
//! `processor::scheduler` uses), the storage under it (`storage.rs`: write transactions that never leave a pooled
//! connection mid-transaction, disk-full/read-only/deleted-file detection, the database's health) and the one table
//! of legal transitions.

pub mod storage;
pub mod store;
pub mod transitions;

pub use storage::{DatabaseHealth, StorageProblem};
pub use store::{
    CachedLlmAnswer, CreateOutcome, LlmUsageStats, Store, StoreError, StoreStats, TicketEventRecord, TicketRecord,
    TicketSummary, TransitionExtras, Transitioned,
};
pub use transitions::{check_transition, is_legal, IllegalTransition};
