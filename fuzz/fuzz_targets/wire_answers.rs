//! What a console (or anyone on the path) sends an agent: check-in answers with their signed
//! orders and content offers, enrollment answers and upload acknowledgements. Every input
//! parses or is refused; nothing panics; an answer's interval is always within the agent's
//! bounds; and no order verifies unless the fixed order key below signed it, for this agent,
//! in its window, with an id above the last taken.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringfence_wire::{
    AgentId, CheckInResponse, EnrollResponse, FindingsAccepted, OrderKey, checkin_bounds,
};

/// The order key the target trusts.
const KEY_SEED: &str = "0101010101010101010101010101010101010101010101010101010101010101";
const AGENT: &str = "0123456789abcdef0123456789abcdef";
const NOW: u64 = 1_800_000_060;
const LAST_TAKEN: u64 = 5;

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<EnrollResponse>(data);
    let _ = serde_json::from_slice::<FindingsAccepted>(data);
    let Ok(answer) = serde_json::from_slice::<CheckInResponse>(data) else {
        return;
    };
    let (next, jitter) = answer.bounded_interval();
    assert!((checkin_bounds::MIN_INTERVAL_MS..=checkin_bounds::MAX_INTERVAL_MS).contains(&next));
    assert!(jitter <= checkin_bounds::MAX_JITTER_MS);
    let Ok(key) = OrderKey::from_hex(KEY_SEED) else {
        return;
    };
    let Ok(agent) = AgentId::try_from(AGENT.to_owned()) else {
        return;
    };
    let pin = key.pin();
    for order in answer.orders.iter() {
        if let Ok(o) = order.verify(Some(&pin), &agent, NOW, LAST_TAKEN) {
            assert!(o.id > LAST_TAKEN, "a replayed order verified");
        }
    }
});
