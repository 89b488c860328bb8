//! The event bus: every committed transition, and every progress report a stage writes (download percentage,
//! track being converted, files placed), is published here after its write commits, for the WebSocket and the
//! scheduler. Publishing never blocks: a lagging subscriber misses events and is
//! told how many.

use serde::Serialize;
use tokio::sync::broadcast;

use crate::models::{StateKind, TicketState};

/// Capacity of the broadcast channel; a subscriber further behind than this lags.
pub const BUS_CAPACITY: usize = 1024;

/// Something that happened to a ticket.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TicketEvent {
    /// A committed transition.
    StateChange { ticket_id: String, old_state: StateKind, new_state: StateKind, details: Box<TicketState> },
    /// Download or conversion progress.
    Progress { ticket_id: String, progress_pct: f64 },
}

impl TicketEvent {
    /// The ticket the event is about.
    pub fn ticket_id(&self) -> &str {
        match self {
            TicketEvent::StateChange { ticket_id, .. } | TicketEvent::Progress { ticket_id, .. } => ticket_id,
        }
    }
}

/// The broadcast bus.
#[derive(Debug, Clone)]
pub struct EventBus {
    sender: broadcast::Sender<TicketEvent>,
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus::new()
    }
}

impl EventBus {
    pub fn new() -> Self {
        let (sender, _) = broadcast::channel(BUS_CAPACITY);
        EventBus { sender }
    }

    /// Publishes an event; having no subscriber is fine.
    pub fn publish(&self, event: TicketEvent) {
        let _ = self.sender.send(event);
    }

    /// A new subscriber that sees events published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<TicketEvent> {
        self.sender.subscribe()
    }
}
