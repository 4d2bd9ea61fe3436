//! The gate state machine as data, and the guard that refuses regressions: a
//! decided gate never returns to Waiting, never flips Approve↔Reject, and a
//! delivery never goes from Delivered back to Pending.

use crate::api::{Decision, DeliveryState, DeploymentGateStatus, DeploymentState, Phase};

/// The verdict of the guard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Guard {
    /// The write may go ahead.
    Allow,
    /// The write would move the gate backwards; `why` is what to log.
    Refuse { why: String },
}

/// Allowed phase transitions (besides staying put).
const PHASE_EDGES: &[(Option<Phase>, Phase)] = &[
    (None, Phase::Pending),
    (None, Phase::Waiting),
    (None, Phase::Approved),
    (None, Phase::Rejected),
    (None, Phase::Unknown),
    (Some(Phase::Pending), Phase::Waiting),
    (Some(Phase::Pending), Phase::Approved),
    (Some(Phase::Pending), Phase::Rejected),
    (Some(Phase::Pending), Phase::Unknown),
    (Some(Phase::Waiting), Phase::Approved),
    (Some(Phase::Waiting), Phase::Rejected),
    (Some(Phase::Waiting), Phase::Unknown),
];

/// Allowed delivery transitions (besides staying put).
const DELIVERY_EDGES: &[(Option<DeliveryState>, DeliveryState)] = &[
    (None, DeliveryState::Pending),
    (None, DeliveryState::Delivered),
    (None, DeliveryState::Settled),
    (None, DeliveryState::Failed),
    (Some(DeliveryState::Pending), DeliveryState::Delivered),
    (Some(DeliveryState::Pending), DeliveryState::Settled),
    (Some(DeliveryState::Pending), DeliveryState::Failed),
];

/// Allowed deployment-outcome transitions (besides staying put); only forward.
const DEPLOYMENT_EDGES: &[(DeploymentState, DeploymentState)] = &[
    (DeploymentState::Pending, DeploymentState::Deploying),
    (DeploymentState::Pending, DeploymentState::Ready),
    (DeploymentState::Pending, DeploymentState::Failed),
    (DeploymentState::Pending, DeploymentState::Unknown),
    (DeploymentState::Deploying, DeploymentState::Ready),
    (DeploymentState::Deploying, DeploymentState::Failed),
    (DeploymentState::Deploying, DeploymentState::Unknown),
    (DeploymentState::Unknown, DeploymentState::Deploying),
    (DeploymentState::Unknown, DeploymentState::Ready),
    (DeploymentState::Unknown, DeploymentState::Failed),
];

/// May the phase go from `current` to `proposed`?
pub fn guard_phase(current: Option<Phase>, proposed: Phase) -> Guard {
    if current == Some(proposed) || PHASE_EDGES.contains(&(current, proposed)) {
        return Guard::Allow;
    }
    Guard::Refuse {
        why: format!(
            "phase {current:?} may not become {proposed:?}: decided and unknown gates are final"
        ),
    }
}

/// May the delivery state go from `current` to `proposed`?
pub fn guard_delivery(current: Option<DeliveryState>, proposed: DeliveryState) -> Guard {
    if current == Some(proposed) || DELIVERY_EDGES.contains(&(current, proposed)) {
        return Guard::Allow;
    }
    Guard::Refuse {
        why: format!(
            "delivery {current:?} may not become {proposed:?}: a finished delivery is final"
        ),
    }
}

/// May the deployment outcome go from `current` to `proposed`? A new deployment
/// id (an explicit redeploy) starts over.
pub fn guard_deployment(
    current: Option<(Option<i64>, DeploymentState)>,
    proposed: (Option<i64>, DeploymentState),
) -> Guard {
    match current {
        None => Guard::Allow,
        Some((id, _)) if id != proposed.0 => Guard::Allow,
        Some((_, state))
            if state == proposed.1 || DEPLOYMENT_EDGES.contains(&(state, proposed.1)) =>
        {
            Guard::Allow
        }
        Some((_, state)) => Guard::Refuse {
            why: format!(
                "deployment {state:?} may not become {:?}: it only moves forward",
                proposed.1
            ),
        },
    }
}

/// A recorded decision never changes.
pub fn guard_decision(current: Option<&Decision>, proposed: Option<&Decision>) -> Guard {
    match (current, proposed) {
        (None, _) => Guard::Allow,
        (Some(c), Some(p)) if c == p => Guard::Allow,
        (Some(c), Some(p)) => Guard::Refuse {
            why: format!(
                "the decision {:?} ({:?}) is final; refusing {:?} ({:?})",
                c.verdict, c.source, p.verdict, p.source
            ),
        },
        (Some(c), None) => Guard::Refuse {
            why: format!(
                "the decision {:?} is final; refusing to erase it",
                c.verdict
            ),
        },
    }
}

/// The three guards over a whole status write.
pub fn guard_status(current: &DeploymentGateStatus, proposed: &DeploymentGateStatus) -> Guard {
    let decision = guard_decision(current.decision.as_ref(), proposed.decision.as_ref());
    if decision != Guard::Allow {
        return decision;
    }
    if let Some(p) = proposed.phase {
        let g = guard_phase(current.phase, p);
        if g != Guard::Allow {
            return g;
        }
    } else if current.phase.is_some() {
        return Guard::Refuse {
            why: "refusing to erase the phase".into(),
        };
    }
    match (current.delivery.as_ref(), proposed.delivery.as_ref()) {
        (_, Some(p)) => {
            let g = guard_delivery(current.delivery.as_ref().map(|d| d.state), p.state);
            if g != Guard::Allow {
                return g;
            }
        }
        (Some(_), None) => {
            return Guard::Refuse {
                why: "refusing to erase the delivery record".into(),
            };
        }
        (None, None) => {}
    }
    match (current.deployment.as_ref(), proposed.deployment.as_ref()) {
        (_, Some(p)) => guard_deployment(
            current.deployment.as_ref().map(|d| (d.id, d.state)),
            (p.id, p.state),
        ),
        (Some(_), None) => Guard::Refuse {
            why: "refusing to erase the deployment outcome".into(),
        },
        (None, None) => Guard::Allow,
    }
}
