//! Date parts (RFC 5260 section 4.2) and RFC 5322 date-time parsing.
//!
//! Calendar arithmetic is done here on the proleptic Gregorian calendar,
//! with Euclidean division so dates before 1970 (and before year 1) come
//! out right. Input is message data, so parsing never panics and refuses
//! anything it cannot place in years 1 to 9999.

/// A moment and the zone it is shown in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateTime {
    /// Seconds since the Unix epoch, UTC.
    pub timestamp: i64,
    /// The zone, in minutes east of UTC (e.g. -300 for -0500).
    pub offset_minutes: i32,
}

const SECONDS_PER_DAY: i64 = 86_400;
/// Days from 0001-01-01 to 1970-01-01.
const DAYS_BEFORE_EPOCH: i64 = 719_162;
/// The Modified Julian Day of 1970-01-01.
const MJD_OF_EPOCH: i64 = 40_587;
/// Days in 400, 100, 4 and 1 Gregorian years (the longer kinds).
const DAYS_PER_400Y: i64 = 146_097;
const DAYS_PER_100Y: i64 = 36_524;
const DAYS_PER_4Y: i64 = 1_461;
const DAYS_PER_Y: i64 = 365;
/// Days before each month in a common year.
const MONTH_STARTS: [i64; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
const MONTH_NAMES: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
const MONTH_FULL_NAMES: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
/// Day names from Sunday, the order of the "weekday" date part.
const DAY_NAMES: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const DAY_FULL_NAMES: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];
/// More tokens than a date-time can have (12 at most): stop early on junk.
const MAX_TOKENS: usize = 16;
/// Longest digit run accepted, so numbers fit in a u32.
const MAX_DIGITS: usize = 9;

// ---------------------------------------------------------------------
// Calendar
// ---------------------------------------------------------------------

/// Whether `year` is a Gregorian leap year.
fn is_leap(year: i64) -> bool {
    year.rem_euclid(4) == 0 && (year.rem_euclid(100) != 0 || year.rem_euclid(400) == 0)
}

/// Days in `month` (1-12) of `year`.
fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to the given date (negative before it). `month`
/// must be 1-12; `day` is not checked against the month.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let before = year - 1;
    let days_before_year = DAYS_PER_Y * before + before.div_euclid(4) - before.div_euclid(100)
        + before.div_euclid(400);
    let index = usize::try_from(month.saturating_sub(1))
        .unwrap_or(0)
        .min(11);
    let leap_day = i64::from(month > 2 && is_leap(year));
    days_before_year + MONTH_STARTS[index] + leap_day + i64::from(day) - 1 - DAYS_BEFORE_EPOCH
}

/// The date (year, month 1-12, day 1-31) `days` after 1970-01-01.
///
/// Counts whole 400-year cycles from 0001-01-01, then centuries, 4-year
/// blocks and years; the last century of a cycle and the last year of a
/// block are the ones a day longer, hence the caps at 3.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let n = days + DAYS_BEFORE_EPOCH;
    let cycles = n.div_euclid(DAYS_PER_400Y);
    let mut rest = n.rem_euclid(DAYS_PER_400Y);
    let centuries = (rest / DAYS_PER_100Y).min(3);
    rest -= centuries * DAYS_PER_100Y;
    let blocks = rest / DAYS_PER_4Y;
    rest -= blocks * DAYS_PER_4Y;
    let years = (rest / DAYS_PER_Y).min(3);
    rest -= years * DAYS_PER_Y;
    let year = 400 * cycles + 100 * centuries + 4 * blocks + years + 1;
    let (month, day) = month_and_day(year, rest);
    (year, month, day)
}

/// Month and day of the 0-based `day_of_year` in `year`.
fn month_and_day(year: i64, day_of_year: i64) -> (u32, u32) {
    let mut rest = day_of_year;
    for month in 1..=12 {
        let length = i64::from(days_in_month(year, month));
        if rest < length {
            let day = u32::try_from(rest + 1).unwrap_or(1);
            return (month, day);
        }
        rest -= length;
    }
    (12, 31)
}

// ---------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------

/// A lexical piece of a date-time once comments are gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token<'a> {
    Number(&'a str),
    Word(&'a str),
    Comma,
    Colon,
    Plus,
    Minus,
}

/// Replaces each comment (nested parentheses, with `\` quoting the next
/// character) by a space. None if the parentheses do not balance.
fn strip_comments(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut depth = 0usize;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '(' => depth += 1,
            ')' if depth == 0 => return None,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    out.push(' ');
                }
            }
            '\\' if depth > 0 => {
                chars.next();
            }
            _ if depth > 0 => {}
            _ => out.push(c),
        }
    }
    (depth == 0).then_some(out)
}

/// Splits comment-free text into tokens. None on any other character, a
/// digit run too long to be a date field, or too many tokens.
fn tokenize(s: &str) -> Option<Vec<Token<'_>>> {
    let mut tokens = Vec::new();
    let mut rest = s;
    while let Some(c) = rest.chars().next() {
        let (token, len) = match c {
            ' ' | '\t' | '\r' | '\n' => (None, 1),
            ',' => (Some(Token::Comma), 1),
            ':' => (Some(Token::Colon), 1),
            '+' => (Some(Token::Plus), 1),
            '-' => (Some(Token::Minus), 1),
            '0'..='9' => {
                let len = run_length(rest, |c| c.is_ascii_digit());
                if len > MAX_DIGITS {
                    return None;
                }
                (Some(Token::Number(&rest[..len])), len)
            }
            'a'..='z' | 'A'..='Z' => {
                let len = run_length(rest, |c| c.is_ascii_alphabetic());
                (Some(Token::Word(&rest[..len])), len)
            }
            _ => return None,
        };
        tokens.extend(token);
        if tokens.len() > MAX_TOKENS {
            return None;
        }
        rest = &rest[len..];
    }
    Some(tokens)
}

/// Length in bytes of the leading run of ASCII characters passing `keep`.
fn run_length(s: &str, keep: impl Fn(char) -> bool) -> usize {
    s.find(|c: char| !keep(c)).unwrap_or(s.len())
}

/// Index (0-based) of a name in a short or full name list, ignoring case.
fn name_index(word: &str, short: &[&str], full: &[&str]) -> Option<usize> {
    short
        .iter()
        .position(|n| n.eq_ignore_ascii_case(word))
        .or_else(|| full.iter().position(|n| n.eq_ignore_ascii_case(word)))
}

/// A number token of `min..=max` digits, as a value.
fn number(token: Option<Token<'_>>, min: usize, max: usize) -> Option<u32> {
    match token {
        Some(Token::Number(digits)) if (min..=max).contains(&digits.len()) => digits.parse().ok(),
        _ => None,
    }
}

/// A year: four or more digits as written; obsolete two-digit years are
/// 1950-2049 and three-digit years are counted from 1900 (RFC 5322
/// section 4.3).
fn year(token: Option<Token<'_>>) -> Option<i64> {
    let Some(Token::Number(digits)) = token else {
        return None;
    };
    let value = i64::from(digits.parse::<u32>().ok()?);
    match digits.len() {
        0 | 1 => None,
        2 if value < 50 => Some(2000 + value),
        2 | 3 => Some(1900 + value),
        _ => Some(value),
    }
}

/// The zone at the end of a date-time, in minutes east of UTC.
///
/// Numeric zones must have minutes 00-59. The obsolete US names have their
/// RFC 822 meanings; any other alphabetic zone, military letters included,
/// is "-0000" (unknown, so UTC), as RFC 5322 section 4.3 says. A missing
/// zone is read the same way.
fn zone<'a>(tokens: &mut impl Iterator<Item = Token<'a>>) -> Option<i32> {
    let sign = match tokens.next() {
        None => return Some(0),
        Some(Token::Word(name)) => return Some(named_zone(name)),
        Some(Token::Plus) => 1,
        Some(Token::Minus) => -1,
        Some(_) => return None,
    };
    let value = i32::try_from(number(tokens.next(), 4, 4)?).ok()?;
    let (hours, minutes) = (value / 100, value % 100);
    (minutes < 60).then_some(sign * (hours * 60 + minutes))
}

/// Offset of an alphabetic zone name (RFC 5322 section 4.3).
fn named_zone(name: &str) -> i32 {
    const ZONES: [(&str, i32); 10] = [
        ("UT", 0),
        ("GMT", 0),
        ("EST", -5),
        ("EDT", -4),
        ("CST", -6),
        ("CDT", -5),
        ("MST", -7),
        ("MDT", -6),
        ("PST", -8),
        ("PDT", -7),
    ];
    ZONES
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map_or(0, |&(_, hours)| hours * 60)
}

/// Fields of a date-time as written, before checking ranges.
struct Fields {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    offset: i32,
}

/// Reads the fields from tokens in RFC 5322 order:
/// `[day-of-week [","]] day month year hour ":" minute [":" second] [zone]`.
/// A day-of-week is accepted but not checked against the date.
fn fields(tokens: Vec<Token<'_>>) -> Option<Fields> {
    let mut tokens = tokens.into_iter().peekable();
    if let Some(Token::Word(name)) = tokens.peek() {
        name_index(name, &DAY_NAMES, &DAY_FULL_NAMES)?;
        tokens.next();
        if tokens.peek() == Some(&Token::Comma) {
            tokens.next();
        }
    }
    let day = number(tokens.next(), 1, 2)?;
    let Some(Token::Word(month_name)) = tokens.next() else {
        return None;
    };
    let month = name_index(month_name, &MONTH_NAMES, &MONTH_FULL_NAMES)?;
    let year = year(tokens.next())?;
    let hour = number(tokens.next(), 1, 2)?;
    (tokens.next() == Some(Token::Colon)).then_some(())?;
    let minute = number(tokens.next(), 1, 2)?;
    let second = if tokens.peek() == Some(&Token::Colon) {
        tokens.next();
        number(tokens.next(), 1, 2)?
    } else {
        0
    };
    let offset = zone(&mut tokens)?;
    if tokens.next().is_some() {
        return None;
    }
    Some(Fields {
        year,
        month: u32::try_from(month + 1).ok()?,
        day,
        hour,
        minute,
        second,
        offset,
    })
}

/// The moment the fields describe, if they name a real date and time in
/// years 1-9999. A leap second (60) is read as 59, as a timestamp cannot
/// hold it.
fn to_datetime(f: &Fields) -> Option<DateTime> {
    let valid = (1..=9999).contains(&f.year)
        && (1..=days_in_month(f.year, f.month)).contains(&f.day)
        && f.hour < 24
        && f.minute < 60
        && f.second <= 60;
    if !valid {
        return None;
    }
    let seconds = i64::from(f.hour * 3600 + f.minute * 60 + f.second.min(59));
    let local = days_from_civil(f.year, f.month, f.day) * SECONDS_PER_DAY + seconds;
    Some(DateTime {
        timestamp: local - i64::from(f.offset) * 60,
        offset_minutes: f.offset,
    })
}

/// Parses an RFC 5322 date-time, and the obsolete RFC 822 forms: two- and
/// three-digit years, named zones (UT, GMT, EST/EDT, CST/CDT, MST/MDT,
/// PST/PDT), military and unknown alphabetic zones as -0000, missing
/// seconds, optional day-of-week (and its comma), comments in
/// parentheses, and extra whitespace. A missing zone is taken as -0000.
/// None if unparseable, not a real date (e.g. 29 Feb 2023) or outside
/// years 1-9999.
pub fn parse_rfc5322(s: &str) -> Option<DateTime> {
    let text = strip_comments(s)?;
    let tokens = tokenize(&text)?;
    to_datetime(&fields(tokens)?)
}

/// Parses a `:zone` argument, `("+" / "-") 4DIGIT` with minutes 00-59
/// (RFC 5260 section 4.1), into minutes east of UTC.
pub fn parse_zone(s: &str) -> Option<i32> {
    let (sign, digits) = match s.as_bytes().first()? {
        b'+' => (1, s.get(1..)?),
        b'-' => (-1, s.get(1..)?),
        _ => return None,
    };
    if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let value: i32 = digits.parse().ok()?;
    let (hours, minutes) = (value / 100, value % 100);
    (minutes < 60).then_some(sign * (hours * 60 + minutes))
}

/// The same moment shown in another zone.
pub fn in_zone(dt: DateTime, offset_minutes: i32) -> DateTime {
    DateTime {
        timestamp: dt.timestamp,
        offset_minutes,
    }
}

// ---------------------------------------------------------------------
// Date parts
// ---------------------------------------------------------------------

/// The date parts of RFC 5260 section 4.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Year,
    Month,
    Day,
    Date,
    Julian,
    Hour,
    Minute,
    Second,
    Time,
    Iso8601,
    Std11,
    Zone,
    Weekday,
}

impl Part {
    /// The part named `name`, ignoring ASCII case.
    fn from_name(name: &str) -> Option<Part> {
        const PARTS: [(&str, Part); 13] = [
            ("year", Part::Year),
            ("month", Part::Month),
            ("day", Part::Day),
            ("date", Part::Date),
            ("julian", Part::Julian),
            ("hour", Part::Hour),
            ("minute", Part::Minute),
            ("second", Part::Second),
            ("time", Part::Time),
            ("iso8601", Part::Iso8601),
            ("std11", Part::Std11),
            ("zone", Part::Zone),
            ("weekday", Part::Weekday),
        ];
        PARTS
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|&(_, p)| p)
    }
}

/// A moment broken into its local calendar fields.
struct Local {
    /// Days from 1970-01-01 to the local date.
    days: i64,
    year: i64,
    month: u32,
    day: u32,
    hour: i64,
    minute: i64,
    second: i64,
    offset: i32,
}

impl Local {
    /// The local fields of `dt`, or None if its local date falls outside
    /// years 0000-9999 (which four-digit parts cannot show).
    fn of(dt: DateTime) -> Option<Local> {
        let local = dt
            .timestamp
            .checked_add(i64::from(dt.offset_minutes) * 60)?;
        let days = local.div_euclid(SECONDS_PER_DAY);
        let seconds = local.rem_euclid(SECONDS_PER_DAY);
        let (year, month, day) = civil_from_days(days);
        (0..=9999).contains(&year).then_some(Local {
            days,
            year,
            month,
            day,
            hour: seconds / 3600,
            minute: seconds / 60 % 60,
            second: seconds % 60,
            offset: dt.offset_minutes,
        })
    }

    fn date(&self) -> String {
        format!("{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }

    fn time(&self) -> String {
        format!("{:02}:{:02}:{:02}", self.hour, self.minute, self.second)
    }

    /// 0 for Sunday to 6 for Saturday; 1970-01-01 was a Thursday.
    fn weekday(&self) -> i64 {
        (self.days + 4).rem_euclid(7)
    }

    /// The zone as "+hhmm"/"-hhmm"; zero is "+0000" (RFC 5260).
    fn zone(&self) -> String {
        let (sign, hours, minutes) = self.zone_fields();
        format!("{sign}{hours:02}{minutes:02}")
    }

    /// The zone as RFC 3339 writes it, with zero as "Z" (RFC 5260 section
    /// 4.2 requires that, and upper case).
    fn iso_zone(&self) -> String {
        if self.offset == 0 {
            return "Z".to_owned();
        }
        let (sign, hours, minutes) = self.zone_fields();
        format!("{sign}{hours:02}:{minutes:02}")
    }

    fn zone_fields(&self) -> (char, u32, u32) {
        let sign = if self.offset < 0 { '-' } else { '+' };
        let magnitude = self.offset.unsigned_abs();
        (sign, magnitude / 60, magnitude % 60)
    }

    /// An RFC 5322 date-time, e.g. "Mon, 7 Dec 2026 10:00:00 +0100".
    fn std11(&self) -> String {
        let weekday = usize::try_from(self.weekday()).unwrap_or(0);
        let month = usize::try_from(self.month.saturating_sub(1)).unwrap_or(0);
        format!(
            "{}, {} {} {:04} {} {}",
            DAY_NAMES.get(weekday).unwrap_or(&"Sun"),
            self.day,
            MONTH_NAMES.get(month).unwrap_or(&"Jan"),
            self.year,
            self.time(),
            self.zone()
        )
    }

    fn render(&self, part: Part) -> String {
        match part {
            Part::Year => format!("{:04}", self.year),
            Part::Month => format!("{:02}", self.month),
            Part::Day => format!("{:02}", self.day),
            Part::Date => self.date(),
            Part::Julian => (self.days + MJD_OF_EPOCH).to_string(),
            Part::Hour => format!("{:02}", self.hour),
            Part::Minute => format!("{:02}", self.minute),
            Part::Second => format!("{:02}", self.second),
            Part::Time => self.time(),
            Part::Iso8601 => format!("{}T{}{}", self.date(), self.time(), self.iso_zone()),
            Part::Std11 => self.std11(),
            Part::Zone => self.zone(),
            Part::Weekday => self.weekday().to_string(),
        }
    }
}

/// The date part named `part` (RFC 5260 section 4.2, names ASCII
/// case-insensitive) of `dt` in its zone. "julian" is the Modified Julian
/// Day of the local date; "iso8601" is RFC 3339 with "Z" for a zero
/// offset. None for an unknown part name, or a moment whose local date is
/// outside years 0000-9999.
pub fn part(dt: DateTime, part: &str) -> Option<String> {
    let part = Part::from_name(part)?;
    Some(Local::of(dt)?.render(part))
}

/// Whether `part` is a known date-part name (the parser checks constant
/// part names).
pub fn is_part(part: &str) -> bool {
    Part::from_name(part).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(s: &str) -> DateTime {
        parse_rfc5322(s).unwrap_or_else(|| panic!("did not parse {s:?}"))
    }

    fn show(s: &str, name: &str) -> String {
        part(parsed(s), name).unwrap_or_else(|| panic!("no part {name}"))
    }

    #[test]
    fn civil_round_trips_across_the_whole_range() {
        let first = days_from_civil(1, 1, 1);
        let last = days_from_civil(9999, 12, 31);
        let mut expected = (1, 1, 1);
        for days in first..=last {
            let got = civil_from_days(days);
            assert_eq!(got, expected, "day {days}");
            assert_eq!(days_from_civil(got.0, got.1, got.2), days);
            expected = if got.2 < days_in_month(got.0, got.1) {
                (got.0, got.1, got.2 + 1)
            } else if got.1 < 12 {
                (got.0, got.1 + 1, 1)
            } else {
                (got.0 + 1, 1, 1)
            };
        }
    }

    #[test]
    fn known_day_numbers() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
        assert_eq!(days_from_civil(1, 1, 1), -DAYS_BEFORE_EPOCH);
        assert_eq!(civil_from_days(11_017), (2000, 3, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        // Year 0 (1 BC) is a leap year in the proleptic calendar.
        assert_eq!(civil_from_days(-DAYS_BEFORE_EPOCH - 1), (0, 12, 31));
        assert_eq!(civil_from_days(-DAYS_BEFORE_EPOCH - 366), (0, 1, 1));
    }

    #[test]
    fn leap_years() {
        assert!(!is_leap(1900));
        assert!(is_leap(2000));
        assert!(is_leap(2024));
        assert!(!is_leap(2023));
        assert!(parse_rfc5322("29 Feb 1900 00:00:00 +0000").is_none());
        assert!(parse_rfc5322("29 Feb 2000 00:00:00 +0000").is_some());
        assert!(parse_rfc5322("29 Feb 2024 00:00:00 +0000").is_some());
        assert!(parse_rfc5322("29 Feb 2023 00:00:00 +0000").is_none());
    }

    #[test]
    fn timestamps_of_known_moments() {
        assert_eq!(parsed("Thu, 1 Jan 1970 00:00:00 +0000").timestamp, 0);
        assert_eq!(
            parsed("Sat, 01 Jan 2000 00:00:00 GMT").timestamp,
            946_684_800
        );
        assert_eq!(parsed("31 Dec 1969 23:59:59 +0000").timestamp, -1);
        assert_eq!(
            parsed("1 Jan 0001 00:00:00 +0000").timestamp,
            -62_135_596_800
        );
        assert_eq!(
            parsed("31 Dec 9999 23:59:59 +0000").timestamp,
            253_402_300_799
        );
        let dt = parsed("Mon, 7 Dec 2026 10:00:00 +0100");
        assert_eq!(dt.offset_minutes, 60);
        assert_eq!(
            dt.timestamp,
            days_from_civil(2026, 12, 7) * SECONDS_PER_DAY + 9 * 3600
        );
    }

    #[test]
    fn julian_is_the_modified_julian_day() {
        assert_eq!(show("1 Jan 1970 00:00:00 +0000", "julian"), "40587");
        assert_eq!(show("1 Mar 2000 12:00:00 +0000", "julian"), "51604");
        assert_eq!(show("17 Nov 1858 00:00:00 +0000", "julian"), "0");
        assert_eq!(show("16 Nov 1858 00:00:00 +0000", "julian"), "-1");
        assert_eq!(show("1 Jan 0001 00:00:00 +0000", "julian"), "-678575");
    }

    #[test]
    fn all_parts_of_one_moment() {
        let s = "Mon, 7 Dec 2026 10:05:09 +0100";
        let expect = [
            ("year", "2026"),
            ("month", "12"),
            ("day", "07"),
            ("date", "2026-12-07"),
            ("hour", "10"),
            ("minute", "05"),
            ("second", "09"),
            ("time", "10:05:09"),
            ("iso8601", "2026-12-07T10:05:09+01:00"),
            ("std11", "Mon, 7 Dec 2026 10:05:09 +0100"),
            ("zone", "+0100"),
            ("weekday", "1"),
            ("YEAR", "2026"),
            ("Iso8601", "2026-12-07T10:05:09+01:00"),
        ];
        for (name, value) in expect {
            assert_eq!(show(s, name), value, "{name}");
        }
        assert_eq!(part(parsed(s), "week"), None);
        assert_eq!(part(parsed(s), ""), None);
    }

    #[test]
    fn iso8601_uses_z_for_utc_and_signed_offsets_otherwise() {
        let dt = parsed("Mon, 7 Dec 2026 10:00:00 +0100");
        let utc = in_zone(dt, 0);
        assert_eq!(
            part(utc, "iso8601").as_deref(),
            Some("2026-12-07T09:00:00Z")
        );
        assert_eq!(part(utc, "zone").as_deref(), Some("+0000"));
        let india = in_zone(dt, 330);
        assert_eq!(
            part(india, "iso8601").as_deref(),
            Some("2026-12-07T14:30:00+05:30")
        );
        let west = in_zone(dt, -210);
        assert_eq!(part(west, "zone").as_deref(), Some("-0330"));
        assert_eq!(
            part(west, "iso8601").as_deref(),
            Some("2026-12-07T05:30:00-03:30")
        );
    }

    #[test]
    fn shifting_zone_crosses_midnight() {
        let dt = parsed("Tue, 1 Jul 2003 02:30:00 +0000");
        let east_coast = in_zone(dt, parse_zone("-0500").unwrap_or_default());
        assert_eq!(east_coast.timestamp, dt.timestamp);
        assert_eq!(part(east_coast, "date").as_deref(), Some("2003-06-30"));
        assert_eq!(part(east_coast, "time").as_deref(), Some("21:30:00"));
        assert_eq!(part(east_coast, "weekday").as_deref(), Some("1"));
        assert_eq!(part(dt, "weekday").as_deref(), Some("2"));
        assert_eq!(
            part(east_coast, "std11").as_deref(),
            Some("Mon, 30 Jun 2003 21:30:00 -0500")
        );
        // And forwards into the next year.
        let late = parsed("31 Dec 2023 23:30:00 +0000");
        assert_eq!(part(in_zone(late, 60), "year").as_deref(), Some("2024"));
    }

    #[test]
    fn weekdays_of_known_dates() {
        assert_eq!(show("1 Jan 1970 00:00:00 +0000", "weekday"), "4");
        assert_eq!(show("1 Jan 2000 00:00:00 +0000", "weekday"), "6");
        assert_eq!(show("29 Feb 2024 00:00:00 +0000", "weekday"), "4");
        assert_eq!(show("7 Dec 2026 00:00:00 +0000", "weekday"), "1");
        assert_eq!(show("4 Jul 1776 00:00:00 +0000", "weekday"), "4");
    }

    #[test]
    fn obsolete_forms() {
        let dt = parsed("7 Dec 26 10:00 EST");
        assert_eq!(dt.offset_minutes, -300);
        assert_eq!(
            part(dt, "iso8601").as_deref(),
            Some("2026-12-07T10:00:00-05:00")
        );
        assert_eq!(show("1 Jan 49 00:00 GMT", "year"), "2049");
        assert_eq!(show("1 Jan 50 00:00 GMT", "year"), "1950");
        assert_eq!(show("1 Jan 99 00:00 UT", "year"), "1999");
        assert_eq!(show("1 Jan 126 00:00 UT", "year"), "2026");
        for (zone, minutes) in [
            ("UT", 0),
            ("GMT", 0),
            ("EDT", -240),
            ("CST", -360),
            ("CDT", -300),
            ("MST", -420),
            ("MDT", -360),
            ("PST", -480),
            ("pdt", -420),
            ("A", 0),
            ("z", 0),
            ("CEST", 0),
        ] {
            let dt = parsed(&format!("1 Jan 2020 12:00:00 {zone}"));
            assert_eq!(dt.offset_minutes, minutes, "{zone}");
        }
    }

    #[test]
    fn comments_whitespace_and_day_names() {
        let base = parsed("Mon, 7 Dec 2026 10:00:00 +0100");
        for s in [
            "Mon, 7 Dec 2026 10:00:00 +0100 (CET)",
            "  Mon ,  07   Dec 2026\r\n 10 : 00 : 00   +0100  ",
            "(sent) Mon, 7 Dec 2026 10:00:00 +0100",
            "Mon, 7 (the (seventh)) Dec 2026 10:00:00 +0100 (a \\) b)",
            "7 Dec 2026 10:00:00 +0100",
            "Monday, 7 December 2026 10:00:00 +0100",
            "mon, 7 dec 2026 10:00:00 +0100",
            "Mon 7 Dec 2026 10:00:00 +0100",
        ] {
            assert_eq!(parse_rfc5322(s), Some(base), "{s:?}");
        }
        let no_seconds = parsed("Mon, 7 Dec 2026 10:00 +0100");
        assert_eq!(no_seconds, base);
        let no_zone = parsed("Mon, 7 Dec 2026 10:00:00");
        assert_eq!(no_zone.offset_minutes, 0);
        assert_eq!(no_zone.timestamp, base.timestamp + 3600);
        assert_eq!(parsed("1 Jan 2020 00:00:00 -0000").offset_minutes, 0);
    }

    #[test]
    fn leap_second_is_read_as_59() {
        let dt = parsed("31 Dec 2016 23:59:60 +0000");
        assert_eq!(part(dt, "second").as_deref(), Some("59"));
        assert!(parse_rfc5322("31 Dec 2016 23:59:61 +0000").is_none());
    }

    #[test]
    fn rejects_bad_dates() {
        for s in [
            "",
            "garbage",
            "Mon, 32 Jan 2020 00:00:00 +0000",
            "Mon, 0 Jan 2020 00:00:00 +0000",
            "31 Apr 2020 00:00:00 +0000",
            "1 Foo 2020 00:00:00 +0000",
            "1 Jan 2020 24:00:00 +0000",
            "1 Jan 2020 12:60:00 +0000",
            "1 Jan 2020 12:00:00 +0160",
            "1 Jan 2020 12:00:00 +100",
            "1 Jan 2020 12:00:00 +0000 extra",
            "1 Jan 2020 12:00:00 +0000 (unclosed",
            "1 Jan 2020 12:00:00 +0000 )",
            "1 Jan 10000 12:00:00 +0000",
            "1 Jan 0000 12:00:00 +0000",
            "1 Jan 2020 12:00:00.5 +0000",
            "Xyz, 1 Jan 2020 12:00:00 +0000",
            "1 Jan 2020 12 +0000",
            "1 Jan 9999999999 12:00:00 +0000",
            "1 Jan 2020 12:00:00 +0000 +0000 +0000 +0000 +0000 +0000 +0000",
            "1 Jan 2020 12:00:00 \u{1F600}",
        ] {
            assert_eq!(parse_rfc5322(s), None, "{s:?}");
        }
    }

    #[test]
    fn zone_arguments() {
        assert_eq!(parse_zone("+0100"), Some(60));
        assert_eq!(parse_zone("-0530"), Some(-330));
        assert_eq!(parse_zone("+0000"), Some(0));
        assert_eq!(parse_zone("-0000"), Some(0));
        assert_eq!(parse_zone("+1400"), Some(840));
        for bad in [
            "", "+", "0100", "+01:00", "+0160", "+01000", "+010", "+01a0", "−0100",
        ] {
            assert_eq!(parse_zone(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn part_names() {
        for name in [
            "year", "month", "day", "date", "julian", "hour", "minute", "second", "time",
            "iso8601", "std11", "zone", "weekday", "Weekday",
        ] {
            assert!(is_part(name), "{name}");
        }
        assert!(!is_part("week"));
        assert!(!is_part("years"));
    }

    #[test]
    fn extreme_moments_never_panic() {
        for timestamp in [i64::MIN, i64::MAX, -62_135_596_801, 253_402_387_200] {
            for offset in [i32::MIN, -5999, 0, 5999, i32::MAX] {
                let dt = DateTime {
                    timestamp,
                    offset_minutes: offset,
                };
                for name in ["year", "std11", "iso8601", "julian", "zone"] {
                    // Out of range moments have no parts; none may panic.
                    let _ = part(dt, name);
                }
            }
        }
        let before_year_one = DateTime {
            timestamp: -62_135_596_800,
            offset_minutes: -60,
        };
        assert_eq!(part(before_year_one, "date").as_deref(), Some("0000-12-31"));
        let after_9999 = DateTime {
            timestamp: 253_402_300_799,
            offset_minutes: 60,
        };
        assert_eq!(part(after_9999, "year"), None);
    }
}
