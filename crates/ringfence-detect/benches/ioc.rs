//! IOC sets at scale: load 1M SHA-256 hashes plus 100k addresses, 10k ranges and 100k domains
//! from the text format, then look up hits and misses of each kind.
//!
//! `cargo bench -p ringfence-detect --bench ioc`. Prints figures; asserts only that lookups
//! find what was loaded.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "benchmark: a failure is the benchmark failing"
)]

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use ringfence_detect::IocSet;

/// xorshift64*: a fixed, dependency-free stream of test values.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn sha256(&mut self) -> String {
        let mut s = String::with_capacity(64);
        for _ in 0..4 {
            let _ = write!(s, "{:016x}", self.next());
        }
        s
    }

    fn ipv4(&mut self) -> Ipv4Addr {
        Ipv4Addr::from(u32::try_from(self.next() >> 32).unwrap_or(0))
    }

    fn domain(&mut self) -> String {
        format!("h{:x}.example{}.net", self.next() >> 20, self.next() % 97)
    }
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn per_lookup(n: usize, f: impl FnMut(usize) -> bool) -> (f64, usize) {
    let start = Instant::now();
    let hits = (0..n).map(f).filter(|&h| h).count();
    (start.elapsed().as_secs_f64() * 1e9 / n as f64, hits)
}

fn main() {
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let hashes: Vec<String> = (0..1_000_000).map(|_| rng.sha256()).collect();
    let ips: Vec<Ipv4Addr> = (0..100_000).map(|_| rng.ipv4()).collect();
    let domains: Vec<String> = (0..100_000).map(|_| rng.domain()).collect();
    let mut text = String::with_capacity(80 * 1_300_000);
    for h in &hashes {
        let _ = writeln!(text, "sha256:{h}");
    }
    for ip in &ips {
        let _ = writeln!(text, "{ip} c2");
    }
    for i in 0..10_000u32 {
        let _ = writeln!(
            text,
            "cidr:{}.{}.{}.0/24",
            10 + (i >> 16),
            (i >> 8) & 255,
            i & 255
        );
    }
    for d in &domains {
        let _ = writeln!(text, "domain:{d}");
    }
    let lines = 1_000_000 + 100_000 + 10_000 + 100_000;
    let entries = lines;
    let before = rss_kib();
    let start = Instant::now();
    let (set, errors) = IocSet::parse("bench", &text);
    let load = start.elapsed();
    let grew = rss_kib().saturating_sub(before);
    assert!(errors.is_empty(), "{:?}", errors.first());
    // Random addresses and names may repeat; a duplicate is one indicator.
    assert!(set.len() + 100 >= entries, "{} of {entries}", set.len());
    println!(
        "load: {entries} indicators ({:.1} MB of text) in {:.0} ms; resident memory +{:.1} MiB",
        text.len() as f64 / 1e6,
        load.as_secs_f64() * 1e3,
        grew as f64 / 1024.0
    );

    let n = 1_000_000;
    let misses: Vec<String> = (0..1000).map(|_| rng.sha256()).collect();
    let (ns, hits) = per_lookup(n, |i| {
        set.match_sha256(&hashes[(i * 7919) % hashes.len()])
            .is_some()
    });
    assert_eq!(hits, n);
    println!("sha256 hit:  {ns:.0} ns/lookup");
    let (ns, _) = per_lookup(n, |i| set.match_sha256(&misses[i % misses.len()]).is_some());
    println!("sha256 miss: {ns:.0} ns/lookup");
    let (ns, hits) = per_lookup(n, |i| {
        set.match_ip(IpAddr::V4(ips[(i * 31) % ips.len()]))
            .is_some()
    });
    assert_eq!(hits, n);
    println!("ip hit:      {ns:.0} ns/lookup");
    let (ns, hits) = per_lookup(n, |i| {
        let i = u32::try_from(i % 10_000).unwrap_or(0);
        let ip = Ipv4Addr::new(10, ((i >> 8) & 255) as u8, (i & 255) as u8, 77);
        set.match_ip(IpAddr::V4(ip)).is_some()
    });
    assert_eq!(hits, n);
    println!("range hit:   {ns:.0} ns/lookup");
    let (ns, _) = per_lookup(n, |_| set.match_ip(IpAddr::V4(rng.ipv4())).is_some());
    println!("ip miss:     {ns:.0} ns/lookup (random address, all range lengths tried)");
    let (ns, hits) = per_lookup(n, |i| {
        let d = &domains[(i * 13) % domains.len()];
        set.match_domain(&format!("www.cdn.{d}")).is_some()
    });
    assert_eq!(hits, n);
    println!("domain hit:  {ns:.0} ns/lookup (subdomain of an indicator, includes formatting)");
}
