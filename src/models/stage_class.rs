//! Stage classes: which states share one concurrency limit, and which of them count against it. The scheduler
//! claims work by class, the metrics label their gauges by it; it lives with the states so that neither has to
//! import the other.

use crate::models::StateKind;

/// A group of states sharing one limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StageClass {
    Search,
    Download,
    Convert,
    Place,
}

impl StageClass {
    /// Claim order: later stages first, so finished work drains before new work starts.
    pub const ALL: [StageClass; 4] = [StageClass::Place, StageClass::Convert, StageClass::Download, StageClass::Search];

    /// The class whose slot a ticket in `kind` needs to be worked on (`None`: nothing to do without a human).
    pub fn of(kind: StateKind) -> Option<StageClass> {
        match kind {
            StateKind::Pending | StateKind::Searching | StateKind::Matching => Some(StageClass::Search),
            StateKind::AutoApproved | StateKind::Approved | StateKind::Downloading => Some(StageClass::Download),
            StateKind::Converting => Some(StageClass::Convert),
            StateKind::Placing => Some(StageClass::Place),
            StateKind::NeedsApproval
            | StateKind::Completed
            | StateKind::Rejected
            | StateKind::Failed
            | StateKind::Cancelled => None,
        }
    }

    /// The states claimed for this class.
    pub fn kinds(self) -> &'static [StateKind] {
        match self {
            StageClass::Search => &[StateKind::Pending, StateKind::Searching, StateKind::Matching],
            StageClass::Download => &[StateKind::AutoApproved, StateKind::Approved, StateKind::Downloading],
            StageClass::Convert => &[StateKind::Converting],
            StageClass::Place => &[StateKind::Placing],
        }
    }
}

/// Whether a ticket in `kind` is being worked on (counts against its class's limit), as opposed to waiting for a
/// slot (`pending`, `auto_approved`, `approved`).
pub fn occupies_slot(kind: StateKind) -> bool {
    matches!(kind, StateKind::Searching | StateKind::Matching | StateKind::Downloading)
        || matches!(kind, StateKind::Converting | StateKind::Placing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_with_work_belongs_to_exactly_the_class_that_claims_it() {
        for kind in StateKind::ALL {
            let claimed_by: Vec<StageClass> =
                StageClass::ALL.into_iter().filter(|class| class.kinds().contains(&kind)).collect();
            match StageClass::of(kind) {
                Some(class) => assert_eq!(claimed_by, [class], "{kind}"),
                None => assert!(claimed_by.is_empty(), "{kind} waits for a human or is done"),
            }
            let has_work = kind.is_working() || kind == StateKind::Pending;
            assert_eq!(StageClass::of(kind).is_some(), has_work, "{kind}");
        }
    }

    #[test]
    fn only_states_doing_work_occupy_a_slot() {
        let occupying: Vec<StateKind> = StateKind::ALL.into_iter().filter(|kind| occupies_slot(*kind)).collect();
        assert_eq!(
            occupying,
            [
                StateKind::Searching,
                StateKind::Matching,
                StateKind::Downloading,
                StateKind::Converting,
                StateKind::Placing
            ]
        );
    }
}
