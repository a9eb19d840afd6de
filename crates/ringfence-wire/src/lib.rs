//! The protocol a Ringfence agent and the fleet console share, and nothing else they share.
//!
//! Three exchanges, all JSON over HTTPS: **enrollment** (an operator's enrollment token is traded
//! for a per-agent [`Credential`]), **check-in** (health and tags go up; the content version the
//! agent may run now, where to fetch it and when to call again come back), and **findings
//! upload** in batches. A check-in response may carry **response orders** an operator placed
//! for the agent, each signed by the console's order key and bound to the agent
//! ([`signed_order`]); their results ride up in the following check-ins. Content itself is not
//! in the protocol: it is a static signed file the check-in response points at, so any web
//! server or CDN can serve it.
//!
//! [`tls`] is the one place TLS and identity live: the console's CA and server certificate,
//! and the client side that trusts only a pinned CA. The agent, the CLI and the console all go
//! through it.
//!
//! Every type here is *parsed, not validated*: a [`CheckIn`] that deserializes is already
//! within bounds (label lengths, tag counts, timezone offset, finite CPU figure, counters that
//! fit a signed 64-bit column), so the console stores what it parsed without further checks.
//! Bodies are bounded before parsing ([`limits`]). [`client`] is the small async client both
//! the real agent and the fleet simulator use.
#![forbid(unsafe_code)]

pub mod client;
pub mod signed_order;
pub mod tls;
pub mod types;

pub use client::{Client, ClientError, TLS_CHECKS_FAILED};
pub use signed_order::{OrderBody, OrderKey, OrderKeyPin, OrderRefusal, SignedOrder};
pub use tls::{CaPin, Trust};
pub use types::{
    AgentId, BoundedList, CheckIn, CheckInResponse, ContentOffer, Count, CpuPercent, Credential,
    CustomTags, EnrollRequest, EnrollResponse, Findings, FindingsAccepted, FindingsBatch, Health,
    Label, LocalTuning, OrderAction, OrderResult, OrderResults, OrderStatus, Orders, ParseError,
    ReleaseOffer, RenewRequest, RenewResponse, ResponseOrder, SignedOrders, Tags, TzOffset,
    checkin_bounds, is_hidden_char, limits, printable, truncate_at_char,
};

/// Protocol version carried in every request; the console refuses versions it does not speak.
pub const PROTOCOL: u16 = 1;

/// HTTP paths, relative to the console's base URL.
pub mod paths {
    /// `POST` an [`EnrollRequest`](crate::EnrollRequest), get an
    /// [`EnrollResponse`](crate::EnrollResponse).
    pub const ENROLL: &str = "/api/v1/agents/enroll";
    /// `POST` a [`CheckIn`](crate::CheckIn) with the agent's bearer credential.
    pub const CHECKIN: &str = "/api/v1/agents/checkin";
    /// `POST` a [`FindingsBatch`](crate::FindingsBatch) with the agent's bearer credential.
    pub const FINDINGS: &str = "/api/v1/agents/findings";
    /// `POST` a [`RenewRequest`](crate::RenewRequest) with the credential and the current
    /// client certificate.
    pub const RENEW: &str = "/api/v1/agents/renew";
}
