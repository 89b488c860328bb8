//! The persistent queue: the SQLite store (every SQL statement), the one table of legal transitions, and (with the
//! pipeline) the manager that claims work with leases.

pub mod store;
pub mod transitions;

pub use store::{
    CreateOutcome, Store, StoreError, StoreStats, TicketEventRecord, TicketRecord, TicketSummary, TransitionExtras,
    Transitioned,
};
pub use transitions::{check_transition, is_legal, IllegalTransition};
