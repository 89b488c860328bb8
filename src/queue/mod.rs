//! The persistent queue: the SQLite store (every SQL statement, including the leased claims the scheduler in
//! `processor::scheduler` uses), the storage under it (`storage.rs`: write transactions that never leave a pooled
//! connection mid-transaction, disk-full/read-only/deleted-file detection, the database's health) and the one table
//! of legal transitions. `outbox.rs` holds the statements of the catalog webhook's outbox (its rows are written by
//! the store's transitions, in their transactions). `blocklist.rs` holds the releases the audio verifier refused.

pub mod blocklist;
pub mod outbox;
pub mod storage;
pub mod store;
pub mod transitions;

pub use blocklist::BlocklistEntry;
pub use outbox::{OutboxBacklog, OutboxEvent, OutboxHead};
pub use storage::{DatabaseHealth, StorageProblem};
pub use store::{
    CachedLlmAnswer, CreateOutcome, LlmUsageStats, Store, StoreError, StoreStats, TicketEventRecord, TicketRecord,
    TicketSummary, TransitionExtras, Transitioned,
};
pub use transitions::{check_transition, is_legal, IllegalTransition};
