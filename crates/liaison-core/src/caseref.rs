//! Case references liaison assigns: `ECO-2026-000123` — the opening sender's agency code in
//! capitals, the year of acceptance in China Standard Time, and a six-digit sequence per
//! agency and year (more digits once a year passes 999,999). The form is reserved: a
//! message may name such a reference only once liaison has assigned it.

use time::{OffsetDateTime, UtcOffset};

use crate::agency::AgencyCode;

/// The prefix of the references assigned to `agency`'s cases.
pub fn prefix(agency: &AgencyCode) -> String {
    agency.as_str().to_ascii_uppercase()
}

/// The year a case opened at `at` is numbered in: China Standard Time (UTC+08:00).
pub fn year(at: OffsetDateTime) -> i32 {
    let cst = UtcOffset::from_hms(8, 0, 0).unwrap_or(UtcOffset::UTC);
    at.to_offset(cst).year()
}

pub fn format(prefix: &str, year: i32, number: i64) -> String {
    format!("{prefix}-{year:04}-{number:06}")
}

/// Whether `caseref` has the form of an assigned reference: capitals, digits or `-`…
/// then `-YYYY-` and six or more digits.
pub fn is_assigned_form(caseref: &str) -> bool {
    let mut parts = caseref.rsplitn(3, '-');
    let (Some(number), Some(year), Some(prefix)) = (parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    number.len() >= 6
        && number.bytes().all(|b| b.is_ascii_digit())
        && year.len() == 4
        && year.bytes().all(|b| b.is_ascii_digit())
        && !prefix.is_empty()
        && prefix
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn assigned_references_read_as_agency_year_and_number() {
        let eco = AgencyCode::new("eco").unwrap();
        assert_eq!(format(&prefix(&eco), 2026, 123), "ECO-2026-000123");
        assert_eq!(format("ECO", 2026, 1_234_567), "ECO-2026-1234567");
        assert!(is_assigned_form("ECO-2026-000123"));
        assert!(is_assigned_form("HOTLINE12345-2026-000001"));
        assert!(!is_assigned_form("SD-2026-0001"));
        assert!(!is_assigned_form("eco-2026-000123"));
        assert!(!is_assigned_form("山丹检公益〔2026〕12号"));
        assert!(!is_assigned_form("-2026-000123"));
    }

    #[test]
    fn the_year_is_china_standard_time() {
        // 2026-12-31 17:00 UTC is already 2027-01-01 01:00 in China.
        assert_eq!(year(datetime!(2026-12-31 17:00 UTC)), 2027);
        assert_eq!(year(datetime!(2026-12-31 15:59 UTC)), 2026);
    }
}
