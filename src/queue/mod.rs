//! The persistent queue: the SQLite store (every SQL statement, including the leased claims the scheduler in
//! `processor::scheduler` uses), the storage under it (`storage.rs`: write transactions that never leave a pooled
//! connection mid-transaction, disk-full/read-only/deleted-file detection, the database's health) and the one table
//! of legal transitions; `lease.rs` the fence every write of a ticket passes (expected version, a worker's lease). `outbox.rs` holds the statements of the catalog webhook's outbox (its rows are written by
//! the store's transitions, in their transactions). `blocklist.rs` holds the releases the audio verifier refused.

pub mod blocklist;
pub mod lease;
pub mod llm_ledger;
pub mod outbox;
pub mod stats;
pub mod storage;
pub mod store;
pub mod transitions;

pub use blocklist::BlocklistEntry;
pub use lease::{Fence, Lease};
pub use llm_ledger::{CachedLlmAnswer, LlmUsageStats};
pub use outbox::{OutboxBacklog, OutboxEvent, OutboxHead};
pub use stats::StoreStats;
pub use storage::{DatabaseHealth, StorageProblem};
pub use store::{
    CreateOutcome, Store, StoreError, TicketEventRecord, TicketRecord, TicketSummary, TransitionExtras, Transitioned,
};
pub use transitions::{check_transition, is_legal, IllegalTransition};
