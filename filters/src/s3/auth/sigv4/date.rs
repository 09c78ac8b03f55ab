//! `x-amz-date` (ISO 8601 basic, UTC) to and from Unix seconds, without a
//! date-time dependency.

/// Parses `yyyymmddThhmmssZ` to Unix seconds.
pub fn parse_amz_date(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        t.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse().ok())?
    };
    let (y, mo, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (h, mi, se) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    Some(days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + se)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Unix seconds as (year, month, day, hour, minute, second), UTC.
fn civil_time(t: i64) -> (i64, i64, i64, i64, i64, i64) {
    let secs = t.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(t.div_euclid(86_400));
    (y, m, d, secs / 3600, (secs / 60) % 60, secs % 60)
}

/// Formats Unix seconds as `yyyymmddThhmmssZ`.
pub fn format_amz_date(t: i64) -> String {
    let (y, m, d, h, mi, s) = civil_time(t);
    if !(0..=9999).contains(&y) {
        return format!("{y:04}{m:02}{d:02}T{h:02}{mi:02}{s:02}Z");
    }
    // Runs for every request signed upstream: two digits at a time, by
    // constant divisors (multiplications once compiled), no formatter.
    let two = |out: &mut String, n: i64| {
        out.push(char::from(b'0' + (n / 10) as u8));
        out.push(char::from(b'0' + (n % 10) as u8));
    };
    let mut out = String::with_capacity(16);
    two(&mut out, y / 100);
    two(&mut out, y % 100);
    two(&mut out, m);
    two(&mut out, d);
    out.push('T');
    two(&mut out, h);
    two(&mut out, mi);
    two(&mut out, s);
    out.push('Z');
    out
}

/// Formats Unix seconds as S3's XML timestamps, `yyyy-mm-ddThh:mm:ss.000Z`.
pub fn format_iso8601(t: i64) -> String {
    let (y, m, d, h, mi, s) = civil_time(t);
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}.000Z")
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Parses an HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`, as
/// `Last-Modified` carries it) to Unix seconds.
pub fn parse_http_date(s: &str) -> Option<i64> {
    let (_, rest) = s.split_once(", ")?;
    let mut f = rest.split(' ');
    let (d, mon, y, time, zone) = (f.next()?, f.next()?, f.next()?, f.next()?, f.next()?);
    if zone != "GMT" || f.next().is_some() || d.len() != 2 || y.len() != 4 {
        return None;
    }
    let m = MONTHS.iter().position(|&x| x == mon)? as i64 + 1;
    let num = |t: &str| -> Option<i64> {
        t.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse().ok())?
    };
    let mut hms = time.split(':');
    let (h, mi, se) = (num(hms.next()?)?, num(hms.next()?)?, num(hms.next()?)?);
    let (d, y) = (num(d)?, num(y)?);
    if hms.next().is_some() || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    Some(days_from_civil(y, m, d) * 86_400 + h * 3600 + mi * 60 + se)
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates_become_s3_timestamps() {
        let t = parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(format_iso8601(t), "1994-11-06T08:49:37.000Z");
        assert_eq!(parse_amz_date("19941106T084937Z"), Some(t));
        let leap = parse_http_date("Thu, 29 Feb 2024 23:59:59 GMT").unwrap();
        assert_eq!(format_iso8601(leap), "2024-02-29T23:59:59.000Z");
        for bad in [
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 6 Nov 1994 08:49:37 GMT",
            "Sun, 06 Foo 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:49:37 GMT",
            "Sun, 06 Nov 1994 08:49 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "",
        ] {
            assert_eq!(parse_http_date(bad), None, "{bad}");
        }
    }
}
