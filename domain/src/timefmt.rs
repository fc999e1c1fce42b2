//! Discord's timestamp form: `2024-01-01T12:34:56.789000+00:00` (microseconds, `+00:00`).

use time::OffsetDateTime;

/// Formats a time as Discord does.
pub fn discord(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}+00:00",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond()
    )
}

/// Formats Unix milliseconds as Discord does.
pub fn discord_ms(ms: u64) -> String {
    let t = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    discord(t)
}

/// Unix milliseconds of a time.
pub fn unix_ms(t: OffsetDateTime) -> u64 {
    (t.unix_timestamp_nanos() / 1_000_000).max(0) as u64
}

/// Unix milliseconds now, by the system clock.
pub fn now_ms() -> u64 {
    unix_ms(OffsetDateTime::now_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_end_in_utc_offset_with_microseconds() {
        assert_eq!(
            discord_ms(1_704_112_496_789),
            "2024-01-01T12:34:56.789000+00:00"
        );
    }
}
