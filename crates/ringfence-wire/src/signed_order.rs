//! Signed response orders: what makes a kill or quarantine order from the console something an
//! agent can check, rather than something anyone on the path can write into a check-in answer.
//!
//! The console signs each order with its **order key** (Ed25519), a key of its own: not the
//! TLS key and not a content key, so stealing the link's certificate or a content role lets no
//! one order a kill. The signed body binds the order to one agent id, carries the order id
//! (ids only grow, so the agent refuses one it has already seen: a replay), a validity window
//! (refused before `issued_at` less the clock slack and after `not_after`), and for a kill the
//! target process's start time, so a recycled pid is never killed.
//!
//! The envelope carries the body as the exact JSON text that was signed, so no canonical form
//! is needed: the agent checks the signature over those bytes (prefixed with a domain tag),
//! and only then parses them.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::types::{AgentId, Label, OrderAction, ResponseOrder, limits};

/// Prefixed to the body before signing, so an order signature can never pass for another kind.
const DOMAIN: &[u8] = b"ringfence-order-v1\0";
/// Largest signed body accepted.
pub const MAX_BODY_BYTES: usize = 4 * 1024;
/// How far an agent's clock may be behind the console's before a fresh order looks early.
pub const CLOCK_SLACK_SECS: u64 = 300;

/// The order key's public half, as agents pin it: `ed25519:<64 hex digits>`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct OrderKeyPin(VerifyingKey);

impl OrderKeyPin {
    pub fn parse(text: &str) -> Result<OrderKeyPin, String> {
        let t = text.trim();
        let hex_part = t.strip_prefix("ed25519:").unwrap_or(t);
        let bytes = hex::decode(hex_part)
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
            .ok_or_else(|| format!("order key {t:?} is not `ed25519:` and 64 hex digits"))?;
        VerifyingKey::from_bytes(&bytes)
            .map(OrderKeyPin)
            .map_err(|e| format!("order key {t:?}: {e}"))
    }
}

impl std::fmt::Display for OrderKeyPin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ed25519:{}", hex::encode(self.0.as_bytes()))
    }
}

impl std::fmt::Debug for OrderKeyPin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl Serialize for OrderKeyPin {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for OrderKeyPin {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<OrderKeyPin, D::Error> {
        OrderKeyPin::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// The console's order signing key.
pub struct OrderKey(SigningKey);

impl std::fmt::Debug for OrderKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OrderKey({})", self.pin())
    }
}

impl OrderKey {
    /// A new random key.
    pub fn generate() -> Result<OrderKey, String> {
        let mut seed = [0u8; 32];
        getrandom::getrandom(&mut seed).map_err(|e| format!("no randomness: {e}"))?;
        Ok(OrderKey(SigningKey::from_bytes(&seed)))
    }

    /// From the 32-byte seed, hex (the key file's content).
    pub fn from_hex(text: &str) -> Result<OrderKey, String> {
        let bytes = hex::decode(text.trim())
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
            .ok_or("an order key file holds 64 hex digits")?;
        Ok(OrderKey(SigningKey::from_bytes(&bytes)))
    }

    /// The key in `path` (a file of 64 hex digits, 0600), made there if there is none.
    /// Returns the key and whether it was made now.
    pub fn load_or_create(path: &std::path::Path) -> Result<(OrderKey, bool), String> {
        if path.exists() {
            let text = crate::tls::read_text(path).map_err(|e| e.to_string())?;
            return OrderKey::from_hex(&text)
                .map(|k| (k, false))
                .map_err(|e| format!("{}: {e}", path.display()));
        }
        let key = OrderKey::generate()?;
        crate::tls::write_private(path, key.to_hex().as_bytes()).map_err(|e| e.to_string())?;
        Ok((key, true))
    }

    /// The seed, hex, for the key file.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0.to_bytes())
    }

    /// What agents pin.
    pub fn pin(&self) -> OrderKeyPin {
        OrderKeyPin(self.0.verifying_key())
    }

    /// Sign `body`.
    pub fn sign(&self, body: &OrderBody) -> Result<SignedOrder, String> {
        let text = serde_json::to_string(body).map_err(|e| e.to_string())?;
        if text.len() > MAX_BODY_BYTES {
            return Err(format!(
                "order body of {} bytes exceeds {MAX_BODY_BYTES}",
                text.len()
            ));
        }
        let sig = self.0.sign(&signed_bytes(&text));
        Ok(SignedOrder {
            body: text,
            sig: hex::encode(sig.to_bytes()),
        })
    }
}

fn signed_bytes(body: &str) -> Vec<u8> {
    let mut m = Vec::with_capacity(DOMAIN.len() + body.len());
    m.extend_from_slice(DOMAIN);
    m.extend_from_slice(body.as_bytes());
    m
}

/// What the order key signs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderBody {
    /// The one agent that may run it.
    pub agent_id: AgentId,
    /// The console's order id; ids only grow, so it doubles as the sequence number.
    pub id: u64,
    /// Unix seconds, console clock.
    pub issued_at: u64,
    /// Unix seconds after which the order is refused.
    pub not_after: u64,
    pub action: OrderAction,
    pub requested_by: Label,
    pub reason: String,
}

/// A signed order as it travels in a check-in response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawSignedOrder")]
pub struct SignedOrder {
    /// The signed JSON text of an [`OrderBody`].
    pub body: String,
    /// Ed25519 signature over the domain tag and `body`, hex.
    pub sig: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSignedOrder {
    body: String,
    sig: String,
}

impl TryFrom<RawSignedOrder> for SignedOrder {
    type Error = String;
    fn try_from(r: RawSignedOrder) -> Result<Self, String> {
        if r.body.len() > MAX_BODY_BYTES {
            return Err(format!("signed order body over {MAX_BODY_BYTES} bytes"));
        }
        if r.sig.len() != 128 {
            return Err("an order signature is 128 hex digits".into());
        }
        Ok(SignedOrder {
            body: r.body,
            sig: r.sig,
        })
    }
}

/// Why an agent refused an order. The id is the order's when the body could be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OrderRefusal {
    #[error("no order key is pinned (fleet.order_key): orders are not run")]
    NoKeyPinned,
    #[error("the order's signature does not verify against the pinned order key")]
    BadSignature,
    #[error("the signed order is not readable: {0}")]
    Malformed(String),
    #[error("the order is for agent {0}, not this one")]
    OtherAgent(String),
    #[error("the order expired at {not_after} (now {now})")]
    Expired { not_after: u64, now: u64 },
    #[error("the order was issued at {issued_at}, in the future (now {now})")]
    NotYetValid { issued_at: u64, now: u64 },
    #[error("order {id} replayed: orders up to {last} were already taken")]
    Replayed { id: u64, last: u64 },
    #[error("a kill order must carry the process start time (pid reuse guard)")]
    KillWithoutStartTime,
}

impl SignedOrder {
    /// Check the order for this agent at unix time `now`, given the highest order id already
    /// taken. On success, the order to run; on refusal, the reason and the order's id when it
    /// could be read (from the verified body, or unverified when no key is pinned).
    pub fn verify(
        &self,
        key: Option<&OrderKeyPin>,
        agent: &AgentId,
        now: u64,
        last_taken: u64,
    ) -> Result<ResponseOrder, (Option<u64>, OrderRefusal)> {
        let Some(key) = key else {
            // Unverified, the id is only good for answering "refused" to the console, which
            // applies an answer only to an order it delivered to this agent.
            let id = serde_json::from_str::<serde_json::Value>(&self.body)
                .ok()
                .and_then(|v| v.get("id").and_then(serde_json::Value::as_u64));
            return Err((id, OrderRefusal::NoKeyPinned));
        };
        let sig = hex::decode(&self.sig)
            .ok()
            .and_then(|b| <[u8; 64]>::try_from(b.as_slice()).ok())
            .map(|b| Signature::from_bytes(&b))
            .ok_or((None, OrderRefusal::BadSignature))?;
        key.0
            .verify(&signed_bytes(&self.body), &sig)
            .map_err(|_| (None, OrderRefusal::BadSignature))?;
        let body: OrderBody = serde_json::from_str(&self.body)
            .map_err(|e| (None, OrderRefusal::Malformed(e.to_string())))?;
        let id = Some(body.id);
        if &body.agent_id != agent {
            return Err((id, OrderRefusal::OtherAgent(body.agent_id.as_str().into())));
        }
        if body.id <= last_taken {
            return Err((
                id,
                OrderRefusal::Replayed {
                    id: body.id,
                    last: last_taken,
                },
            ));
        }
        if now > body.not_after {
            return Err((
                id,
                OrderRefusal::Expired {
                    not_after: body.not_after,
                    now,
                },
            ));
        }
        if body.issued_at > now.saturating_add(CLOCK_SLACK_SECS) {
            return Err((
                id,
                OrderRefusal::NotYetValid {
                    issued_at: body.issued_at,
                    now,
                },
            ));
        }
        if let OrderAction::Kill {
            start_ticks: None, ..
        } = body.action
        {
            return Err((id, OrderRefusal::KillWithoutStartTime));
        }
        if body.reason.len() > limits::ORDER_TEXT_BYTES {
            return Err((id, OrderRefusal::Malformed("reason too long".into())));
        }
        Ok(ResponseOrder {
            id: body.id,
            action: body.action,
            requested_by: body.requested_by,
            reason: body.reason,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(c: char) -> AgentId {
        AgentId::try_from(c.to_string().repeat(32)).unwrap()
    }

    fn body(id: u64) -> OrderBody {
        OrderBody {
            agent_id: agent('a'),
            id,
            issued_at: 1_000,
            not_after: 1_000 + 3600,
            action: OrderAction::Kill {
                pid: 4242,
                tree: false,
                start_ticks: Some(77),
            },
            requested_by: Label::try_from("alice").unwrap(),
            reason: "ir-7".into(),
        }
    }

    #[test]
    fn a_signed_order_runs_once_for_its_agent_in_its_window() {
        let key = OrderKey::generate().unwrap();
        let pin = key.pin();
        let signed = key.sign(&body(5)).unwrap();
        let ok = signed.verify(Some(&pin), &agent('a'), 1_100, 4).unwrap();
        assert_eq!(ok.id, 5);
        let refusal = |s: &SignedOrder, a: char, now: u64, last: u64| {
            s.verify(Some(&pin), &agent(a), now, last).unwrap_err().1
        };
        assert!(matches!(
            refusal(&signed, 'a', 1_100, 5),
            OrderRefusal::Replayed { .. }
        ));
        assert!(matches!(
            refusal(&signed, 'b', 1_100, 0),
            OrderRefusal::OtherAgent(_)
        ));
        assert!(matches!(
            refusal(&signed, 'a', 9_999, 0),
            OrderRefusal::Expired { .. }
        ));
        assert!(matches!(
            refusal(&signed, 'a', 1, 0),
            OrderRefusal::NotYetValid { .. }
        ));
        assert_eq!(
            signed.verify(None, &agent('a'), 1_100, 0).unwrap_err().1,
            OrderRefusal::NoKeyPinned
        );
        // Another key, or one changed byte of the body, and nothing runs.
        let other = OrderKey::generate().unwrap().pin();
        assert_eq!(
            signed
                .verify(Some(&other), &agent('a'), 1_100, 0)
                .unwrap_err()
                .1,
            OrderRefusal::BadSignature
        );
        let mut tampered = signed.clone();
        tampered.body = tampered.body.replace("4242", "4243");
        assert_eq!(
            refusal(&tampered, 'a', 1_100, 0),
            OrderRefusal::BadSignature
        );
        // A kill without the start time is refused even when signed.
        let mut b = body(6);
        b.action = OrderAction::Kill {
            pid: 9,
            tree: false,
            start_ticks: None,
        };
        let s = key.sign(&b).unwrap();
        assert_eq!(
            refusal(&s, 'a', 1_100, 0),
            OrderRefusal::KillWithoutStartTime
        );
    }

    #[test]
    fn keys_and_pins_round_trip() {
        let key = OrderKey::generate().unwrap();
        let again = OrderKey::from_hex(&key.to_hex()).unwrap();
        assert_eq!(again.pin(), key.pin());
        let pin = OrderKeyPin::parse(&key.pin().to_string()).unwrap();
        assert_eq!(pin, key.pin());
        assert!(OrderKeyPin::parse("ed25519:abcd").is_err());
        let wire: SignedOrder =
            serde_json::from_str(&serde_json::to_string(&key.sign(&body(1)).unwrap()).unwrap())
                .unwrap();
        assert!(wire.verify(Some(&pin), &agent('a'), 1_000, 0).is_ok());
        assert!(serde_json::from_str::<SignedOrder>(r#"{"body":"{}","sig":"00"}"#).is_err());
    }
}
