//! Given/when/then helpers for aggregate tests.

use crate::Aggregate;

/// The state after the given events.
pub fn given<A: Aggregate>(events: &[A::Event]) -> A {
    let mut state = A::default();
    for e in events {
        state.evolve(e);
    }
    state
}
