//! Ringfence's shared vocabulary: the [`Event`] every source produces, the [`Field`] schema that
//! content is checked against, and the ECS JSON form both are written in.
//!
//! This crate depends on nothing of ours. Sensors build events, the detection engine reads them
//! through [`Field::get`] without allocating, and outputs write them with [`Event::to_ecs_line`].
//! The schema (`ringfence schema`) is generated from the same table that `Field::get` matches
//! on, so a field cannot be added to one without the other.
#![forbid(unsafe_code)]

pub mod ecs;
pub mod event;
pub mod field;
pub mod kind;
pub mod time;

pub use ecs::EcsError;
pub use event::{
    Ancestry, Container, Detail, Dns, Event, File, Health, Log, Mode, Network, Outcome, Parent,
    Privilege, Process, SourceKind, TargetProcess, User, Web,
};
pub use field::{Field, FieldSpec, FieldType, SCHEMA_VERSION, Schema, Value};
pub use kind::{Category, EventKind, KindSet};
pub use time::Timestamp;
