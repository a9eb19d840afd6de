//! One module per subcommand, plus the little output helpers they share.

pub mod agent;
pub mod bench;
pub mod bench_latency;
pub mod console;
pub mod console_admin;
pub mod console_api;
pub mod content;
pub mod doctor;
pub mod eval;
pub mod exceptions;
pub mod findings;
pub mod fleet;
pub mod fleet_inventory;
pub mod posture;
pub mod release;
pub mod replay;
pub mod respond;
pub mod rollout;
pub mod rules;
pub mod scan;
pub mod schema;
pub mod up;

use std::io::{self, Write};

/// Write `text` and a newline to stdout. A closed pipe (`ringfence schema | head`) ends the
/// output quietly instead of panicking as `println!` would.
pub fn print_line(text: &str) -> io::Result<()> {
    let mut out = io::stdout().lock();
    match out
        .write_all(text.as_bytes())
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush())
    {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}
