//! Budget periods: which period an instant falls in, computed from the
//! clock alone, so periods roll over on their boundary with no job that
//! must run (each period counts under a key of its own).

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};

/// A budget's period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// 00:00 UTC to 00:00 UTC.
    Day,
    /// Monday 00:00 UTC to the next Monday.
    Week,
    /// The 1st, 00:00 UTC, to the next month's 1st.
    Month,
    /// Fixed lengths counted from the Unix epoch.
    Custom(u64),
}

/// Longest custom period: a leap year.
pub const MAX_CUSTOM_SECONDS: u64 = 366 * 24 * 3600;

impl Period {
    /// The name stored and shown (`day`, `week`, `month`, `custom`).
    pub fn name(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Week => "week",
            Period::Month => "month",
            Period::Custom(_) => "custom",
        }
    }

    /// From a stored name and length.
    pub fn from_parts(name: &str, seconds: Option<u64>) -> Option<Period> {
        match (name, seconds) {
            ("day", _) => Some(Period::Day),
            ("week", _) => Some(Period::Week),
            ("month", _) => Some(Period::Month),
            ("custom", Some(s)) if (1..=MAX_CUSTOM_SECONDS).contains(&s) => Some(Period::Custom(s)),
            _ => None,
        }
    }

    /// The period holding `now` (seconds since the epoch): its start and
    /// its end, in seconds since the epoch.
    pub fn around(self, now: i64) -> (i64, i64) {
        let at = Utc.timestamp_opt(now, 0).single().unwrap_or_default();
        let midnight = |date: NaiveDate| {
            Utc.from_utc_datetime(&date.and_hms_opt(0, 0, 0).expect("midnight exists"))
        };
        let (start, end): (DateTime<Utc>, DateTime<Utc>) = match self {
            Period::Day => {
                let start = midnight(at.date_naive());
                (start, start + Duration::days(1))
            }
            Period::Week => {
                let back = i64::from(at.weekday().num_days_from_monday());
                let start = midnight(at.date_naive()) - Duration::days(back);
                (start, start + Duration::days(7))
            }
            Period::Month => {
                let first = NaiveDate::from_ymd_opt(at.year(), at.month(), 1).expect("a 1st");
                let next = first
                    .checked_add_months(chrono::Months::new(1))
                    .expect("a next month");
                (midnight(first), midnight(next))
            }
            Period::Custom(seconds) => {
                let length = seconds as i64;
                let start = now - now.rem_euclid(length);
                return (start, start + length);
            }
        };
        (start.timestamp(), end.timestamp())
    }
}

#[cfg(test)]
mod tests {
    use super::Period;

    fn at(text: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(text)
            .unwrap()
            .timestamp()
    }

    #[test]
    fn calendar_periods_start_at_utc_midnight() {
        let now = at("2026-11-26T15:30:00Z"); // a Thursday
        assert_eq!(
            Period::Day.around(now),
            (at("2026-11-26T00:00:00Z"), at("2026-11-27T00:00:00Z"))
        );
        assert_eq!(
            Period::Week.around(now),
            (at("2026-11-23T00:00:00Z"), at("2026-11-30T00:00:00Z"))
        );
        assert_eq!(
            Period::Month.around(now),
            (at("2026-11-01T00:00:00Z"), at("2026-12-01T00:00:00Z"))
        );
        assert_eq!(
            Period::Month.around(at("2026-12-31T23:59:59Z")),
            (at("2026-12-01T00:00:00Z"), at("2027-01-01T00:00:00Z"))
        );
        // Monday 00:00 starts a week of its own.
        assert_eq!(
            Period::Week.around(at("2026-11-30T00:00:00Z")).0,
            at("2026-11-30T00:00:00Z")
        );
    }

    #[test]
    fn custom_periods_are_counted_from_the_epoch() {
        assert_eq!(Period::Custom(5).around(12), (10, 15));
        assert_eq!(Period::Custom(5).around(15), (15, 20));
        assert_eq!(Period::from_parts("custom", None), None);
        assert_eq!(Period::from_parts("custom", Some(0)), None);
        assert_eq!(Period::from_parts("week", None), Some(Period::Week));
    }
}
