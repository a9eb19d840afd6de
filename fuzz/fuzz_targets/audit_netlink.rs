//! Audit netlink datagrams and record text: framing, `key=value` parsing, hex decoding and
//! record assembly must never panic and must stay bounded.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringfence_sensor::audit::parse::{Assembler, NlMessage, fields, netlink_messages, record_header};

fuzz_target!(|data: &[u8]| {
    let mut asm = Assembler::default();
    let mut out = Vec::new();
    for m in netlink_messages(data) {
        asm.push(m, &mut out);
    }
    // The same bytes as the text of each record type the assembler reads.
    for t in [1300u16, 1307, 1309, 1320] {
        asm.push(NlMessage { msg_type: t, payload: data }, &mut out);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = record_header(text);
        let _ = fields(text);
    }
});
