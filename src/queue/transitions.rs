//! The one table of legal state moves. Pure: the store asks `check_transition` inside every transition's
//! transaction, and nothing else in the crate decides legality.
//!
//! The pipeline's forward path: pending -> searching -> matching -> (auto_approved | needs_approval);
//! needs_approval -> (approved | rejected | searching on force-search); (auto_approved | approved) -> downloading ->
//! converting -> placing -> completed (placing -> converting when a restart finds the converted files gone). A download whose audio does not fit the ticket goes back to needs_approval;
//! a download the audio verifier refuses (converting) falls back to the next auto-approvable candidate or an admin
//! (converting -> auto_approved | needs_approval); a dead download may fall back to another candidate (downloading -> auto_approved | approved). Every working
//! state may fail; `failed` may be retried (-> pending, searching, downloading, converting) or force-searched.
//! Any non-terminal state may be cancelled. completed, rejected and cancelled are terminal.

use crate::models::StateKind;

/// Why a move is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("illegal transition from {from} to {to}")]
pub struct IllegalTransition {
    pub from: StateKind,
    pub to: StateKind,
}

/// Whether the state machine allows moving from `from` to `to`.
pub fn is_legal(from: StateKind, to: StateKind) -> bool {
    use StateKind::*;
    if from.is_terminal() {
        return false;
    }
    if to == Cancelled {
        return true;
    }
    match from {
        Pending => matches!(to, Searching | Failed),
        Searching => matches!(to, Matching | Failed),
        Matching => matches!(to, NeedsApproval | AutoApproved | Failed),
        NeedsApproval => matches!(to, Approved | Rejected | Searching),
        AutoApproved => matches!(to, Downloading | Failed),
        Approved => matches!(to, Downloading | Failed),
        Downloading => matches!(to, Converting | NeedsApproval | AutoApproved | Approved | Failed),
        Converting => matches!(to, Placing | NeedsApproval | AutoApproved | Failed),
        Placing => matches!(to, Completed | Converting | Failed),
        Failed => matches!(to, Pending | Searching | Downloading | Converting),
        Completed | Rejected | Cancelled => false,
    }
}

/// `is_legal` as a `Result`.
pub fn check_transition(from: StateKind, to: StateKind) -> Result<(), IllegalTransition> {
    if is_legal(from, to) {
        Ok(())
    } else {
        Err(IllegalTransition { from, to })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use StateKind::*;

    /// The legal moves, written out by hand from the contract's diagram (plus cancel and retry), independently of
    /// the `match` above. Every pair not listed here must be illegal.
    const LEGAL: &[(StateKind, StateKind)] = &[
        (Pending, Searching),
        (Pending, Failed),
        (Pending, Cancelled),
        (Searching, Matching),
        (Searching, Failed),
        (Searching, Cancelled),
        (Matching, NeedsApproval),
        (Matching, AutoApproved),
        (Matching, Failed),
        (Matching, Cancelled),
        (NeedsApproval, Approved),
        (NeedsApproval, Rejected),
        (NeedsApproval, Searching),
        (NeedsApproval, Cancelled),
        (AutoApproved, Downloading),
        (AutoApproved, Failed),
        (AutoApproved, Cancelled),
        (Approved, Downloading),
        (Approved, Failed),
        (Approved, Cancelled),
        (Downloading, Converting),
        (Downloading, NeedsApproval),
        (Downloading, AutoApproved),
        (Downloading, Approved),
        (Downloading, Failed),
        (Downloading, Cancelled),
        (Converting, Placing),
        (Converting, NeedsApproval),
        (Converting, AutoApproved),
        (Converting, Failed),
        (Converting, Cancelled),
        (Placing, Completed),
        (Placing, Converting),
        (Placing, Failed),
        (Placing, Cancelled),
        (Failed, Pending),
        (Failed, Searching),
        (Failed, Downloading),
        (Failed, Converting),
        (Failed, Cancelled),
    ];

    #[test]
    fn every_pair_matches_the_diagram() {
        let mut checked = 0;
        for from in StateKind::ALL {
            for to in StateKind::ALL {
                let expected = LEGAL.contains(&(from, to));
                assert_eq!(is_legal(from, to), expected, "{from} -> {to}");
                checked += 1;
            }
        }
        assert_eq!(checked, 13 * 13);
    }

    #[test]
    fn terminal_states_go_nowhere() {
        for from in [Completed, Rejected, Cancelled] {
            for to in StateKind::ALL {
                assert!(check_transition(from, to).is_err(), "{from} -> {to}");
            }
        }
    }
}
