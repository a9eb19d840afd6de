//! Seconds since the Unix epoch, and the one timestamp form metadata uses:
//! `YYYY-MM-DDTHH:MM:SSZ` (UTC, no fractions, no offsets), parsed strictly.
//!
//! Nothing in this crate reads the clock: callers pass `now`, so every check is testable and
//! a build is byte-identical for the same input.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// A point in time, whole seconds since 1970-01-01T00:00:00Z.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UnixTime(pub u64);

impl UnixTime {
    /// The system clock (for callers at the edge: the CLI and the agent).
    pub fn now() -> UnixTime {
        UnixTime(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        )
    }

    /// `self + days`, saturating.
    pub fn plus_days(self, days: u64) -> UnixTime {
        UnixTime(self.0.saturating_add(days.saturating_mul(86_400)))
    }

    /// `self + secs`, saturating.
    pub fn plus_secs(self, secs: u64) -> UnixTime {
        UnixTime(self.0.saturating_add(secs))
    }

    /// Parses `YYYY-MM-DDTHH:MM:SSZ` exactly; `None` for anything else.
    pub fn parse(s: &str) -> Option<UnixTime> {
        let b = s.as_bytes();
        if b.len() != 20
            || b[4] != b'-'
            || b[7] != b'-'
            || b[10] != b'T'
            || b[13] != b':'
            || b[16] != b':'
            || b[19] != b'Z'
        {
            return None;
        }
        let num = |range: std::ops::Range<usize>| -> Option<u64> {
            let part = s.get(range)?;
            if !part.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            part.parse().ok()
        };
        let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let (hour, min, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
        if year < 1970 || !(1..=12).contains(&month) || hour > 23 || min > 59 || sec > 59 {
            return None;
        }
        if day < 1 || day > days_in_month(year, month) {
            return None;
        }
        let days = days_from_civil(year, month, day);
        Some(UnixTime(days * 86_400 + hour * 3_600 + min * 60 + sec))
    }
}

impl fmt::Display for UnixTime {
    /// `YYYY-MM-DDTHH:MM:SSZ`; years past 9999 print with more digits (and won't parse back,
    /// which is fine: such an expiry means "never" in practice).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = self.0 / 86_400;
        let secs = self.0 % 86_400;
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
            secs / 3_600,
            secs / 60 % 60,
            secs % 60
        )
    }
}

fn is_leap(y: u64) -> bool {
    (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400)
}

fn days_in_month(y: u64, m: u64) -> u64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 for a date on or after it (Howard Hinnant's algorithm, unsigned).
fn days_from_civil(y: u64, m: u64, d: u64) -> u64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses_known_instants() {
        for (secs, text) in [
            (0, "1970-01-01T00:00:00Z"),
            (951_782_400, "2000-02-29T00:00:00Z"),
            (1_767_225_599, "2025-12-31T23:59:59Z"),
            (4_102_444_800, "2100-01-01T00:00:00Z"),
        ] {
            assert_eq!(UnixTime(secs).to_string(), text);
            assert_eq!(UnixTime::parse(text), Some(UnixTime(secs)), "{text}");
        }
    }

    #[test]
    fn round_trips_every_day_for_a_few_centuries() {
        let mut t = 0;
        while t < 200 * 366 * 86_400 {
            let s = UnixTime(t + 45_296).to_string();
            assert_eq!(UnixTime::parse(&s), Some(UnixTime(t + 45_296)), "{s}");
            t += 86_400;
        }
    }

    #[test]
    fn refuses_anything_but_the_strict_form() {
        for bad in [
            "",
            "2026-01-01",
            "2026-01-01T00:00:00",
            "2026-01-01T00:00:00+00:00",
            "2026-01-01 00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2025-02-29T00:00:00Z",
            "2026-01-01T24:00:00Z",
            "+026-01-01T00:00:00Z",
            "1969-12-31T23:59:59Z",
            "２026-01-01T00:00:00Z",
        ] {
            assert_eq!(UnixTime::parse(bad), None, "{bad}");
        }
    }
}
