//! Audit netlink datagrams and record text: framing, `key=value` parsing, hex decoding,
//! SOCKADDR addresses and record assembly must never panic and must stay bounded.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringfence_sensor::audit::parse::{
    Assembler, NlMessage, fields, netlink_messages, parse_sockaddr, record_header,
};

fuzz_target!(|data: &[u8]| {
    let mut asm = Assembler::default();
    let mut out = Vec::new();
    for m in netlink_messages(data) {
        asm.push(m, &mut out);
    }
    // The same bytes as the text of each record type the assembler reads.
    for t in [1300u16, 1306, 1307, 1309, 1320] {
        asm.push(NlMessage { msg_type: t, payload: data }, &mut out);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = record_header(text);
        let _ = fields(text);
        let _ = parse_sockaddr(text);
    }
    // A connect group with the input as its address: assembly must hold up to any saddr.
    let hex: String = data.iter().take(128).map(|b| format!("{b:02X}")).collect();
    for (t, text) in [
        (1300u16, "audit(1.000:1): arch=c000003e syscall=42 success=yes exit=0 pid=1".to_owned()),
        (1306, format!("audit(1.000:1): saddr={hex}")),
        (1320, "audit(1.000:1): ".to_owned()),
    ] {
        asm.push(NlMessage { msg_type: t, payload: text.as_bytes() }, &mut out);
    }
});
