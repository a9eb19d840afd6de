//! Reading an accessor's values out of an event without allocating: strings are borrowed,
//! numbers and addresses are formatted into a stack buffer when a text match needs them.

use std::fmt::Write as _;
use std::net::IpAddr;

use ringfence_event::{Event, EventKind, Field, Value};

use crate::mapping::{Accessor, audit_types};

/// One value of a field, borrowed from the event.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Val<'a> {
    Str(&'a str),
    Int(i64),
    Ip(IpAddr),
    Bool(bool),
}

/// Calls `f` on each value of `acc` in `e` until it returns `true`.
///
/// Returns `None` when the event has no value for `acc`, else whether `f` accepted one.
#[inline]
pub fn any_value<'e>(
    acc: Accessor,
    e: &'e Event,
    mut f: impl FnMut(Val<'e>) -> bool,
) -> Option<bool> {
    match acc {
        Accessor::Field(field) => any_of_field(field, e, f),
        Accessor::Arg(n) => {
            let args = &e.process.as_ref()?.args;
            args.get(n).map(|a| f(Val::Str(a)))
        }
        Accessor::AuditType => {
            let kind = e.kind?;
            let types = audit_types(kind);
            if types.is_empty() {
                return None;
            }
            Some(types.iter().any(|t| f(Val::Str(t))))
        }
        Accessor::AuditSyscall => {
            if e.kind == Some(EventKind::ProcessExec) {
                return Some(f(Val::Str("execve")));
            }
            e.syscall.as_deref().map(|s| f(Val::Str(s)))
        }
        Accessor::AuditNameType => {
            let name = match e.kind? {
                EventKind::FileCreate => "CREATE",
                EventKind::FileDelete => "DELETE",
                EventKind::FileModify | EventKind::FileExecOpen => "NORMAL",
                EventKind::FileRename => {
                    return Some(f(Val::Str("CREATE")) || f(Val::Str("DELETE")));
                }
                _ => return None,
            };
            Some(f(Val::Str(name)))
        }
        Accessor::Initiated => {
            let dir = e.network.as_ref()?.direction.as_deref()?;
            Some(f(Val::Bool(dir == "egress")))
        }
    }
}

#[inline]
fn any_of_field<'e>(
    field: Field,
    e: &'e Event,
    mut f: impl FnMut(Val<'e>) -> bool,
) -> Option<bool> {
    Some(match field.get(e)? {
        Value::Str(s) => f(Val::Str(s)),
        Value::Int(i) => f(Val::Int(i)),
        Value::Ip(ip) => f(Val::Ip(ip)),
        Value::Bool(b) => f(Val::Bool(b)),
        Value::Time(t) => f(Val::Int(t.as_nanos())),
        Value::StrList(list) => list.iter().any(|s| f(Val::Str(s))),
        Value::IntList(list) => list.iter().any(|i| f(Val::Int(*i))),
    })
}

/// A small stack buffer for the text form of numbers and addresses.
pub struct TextBuf {
    buf: [u8; 48],
    len: usize,
}

impl std::fmt::Write for TextBuf {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        let slot = self.buf.get_mut(self.len..end).ok_or(std::fmt::Error)?;
        slot.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// Runs `f` on the text form of `v` (borrowed for strings, formatted on the stack otherwise).
#[inline]
pub fn with_text<R>(v: Val<'_>, f: impl FnOnce(&[u8]) -> R) -> R {
    match v {
        Val::Str(s) => f(s.as_bytes()),
        Val::Bool(true) => f(b"true"),
        Val::Bool(false) => f(b"false"),
        Val::Int(i) => {
            let mut b = TextBuf {
                buf: [0; 48],
                len: 0,
            };
            let _ = write!(b, "{i}");
            f(&b.buf[..b.len])
        }
        Val::Ip(ip) => {
            let mut b = TextBuf {
                buf: [0; 48],
                len: 0,
            };
            let _ = write!(b, "{ip}");
            f(&b.buf[..b.len])
        }
    }
}

/// The value as a number, if it is one (or a string holding one).
#[inline]
pub fn as_number(v: Val<'_>) -> Option<f64> {
    match v {
        Val::Int(i) => Some(i as f64),
        Val::Str(s) => s.trim().parse::<f64>().ok(),
        Val::Bool(_) | Val::Ip(_) => None,
    }
}

/// The value as an address, if it is one (or a string holding one).
#[inline]
pub fn as_ip(v: Val<'_>) -> Option<IpAddr> {
    match v {
        Val::Ip(ip) => Some(ip),
        Val::Str(s) => s.trim().parse().ok(),
        Val::Int(_) | Val::Bool(_) => None,
    }
}
