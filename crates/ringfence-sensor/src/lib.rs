//! Ringfence's sources: everything that turns kernel or log activity into typed events.
//!
//! Driver mode reads eBPF programs (`ebpf`); driverless mode reads the netlink process
//! connector, audit, fanotify and /proc. Both modes read logs (`logs`). Every source produces
//! the same [`ringfence_event::Event`] types.

pub mod audit;
pub mod container;
pub mod dns;
pub mod ebpf;
pub mod fanotify;
pub mod logs;
pub mod privilege;
pub mod probe;
pub mod proc_connector;
pub mod proc_info;
pub mod source;
pub mod sys;

pub use source::{
    CounterSnapshot, EventSender, Sent, Source, SourceCounters, SourceError, StopSignal,
};
