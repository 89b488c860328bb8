//! The contract's data types: what the catalog server posts (`ticket`), what the API and WebSocket show (`state`),
//! and what the searcher hands to the matcher (`torrent`). Pure data plus validation; the only I/O is `paths`'s
//! `canonicalize` of the part of a destination that already exists (the `allowed_roots` policy, shared by ticket
//! validation and the placer).

pub mod address;
pub mod metainfo;
pub mod paths;
pub mod stage_class;
pub mod state;
pub mod ticket;
pub mod torrent;
pub mod verdict;
pub mod verification;
pub mod webhook;
pub mod work;

pub use stage_class::{occupies_slot, StageClass};
pub use state::{ApprovalReason, CompletionStats, ScoredCandidate, StateKind, TicketState, TrackMapping};
pub use ticket::{
    Constraints, ImageType, OutputFormat, SearchHints, Ticket, TicketImage, TicketTrack, TicketValidationError,
};
pub use torrent::{bound_file_list, InfoHash, InvalidInfoHash, TorrentCandidate, TorrentFile};
pub use verdict::{Doubt, HardReject, UnaskedKind};
pub use webhook::{WebhookDelivery, WebhookEvent, WEBHOOK_STATES};
pub use work::{ConversionRecord, ConvertedFileRecord, TicketWork};
