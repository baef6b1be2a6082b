//! Byte sizes as operators type them (`500M`, `1G`, `10GiB`, `1048576`) and
//! as the admin commands print them back.
//!
//! Every suffix is binary: `1K` = `1KB` = `1KiB` = 1024 bytes. Mail quotas are
//! compared against stored message sizes, which are bytes; a decimal `1GB`
//! meaning 10^9 would surprise nobody less than a binary one, so one rule it is.

use std::fmt;

/// Why a size was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    #[error("size is empty")]
    Empty,
    #[error(
        "`{0}` is not a size: expected a whole number of bytes, optionally followed by K, M, G or T (e.g. 500M, 1G, 10GiB)"
    )]
    Invalid(String),
    #[error("`{0}` is too large")]
    Overflow(String),
}

const UNITS: [(&str, u32); 5] = [("", 0), ("K", 10), ("M", 20), ("G", 30), ("T", 40)];

/// Parses `123`, `123B`, `500K`, `500KB`, `500KiB` (and M, G, T), case-insensitive,
/// with optional spaces between number and unit.
pub fn parse_size(input: &str) -> Result<u64, SizeError> {
    let s = input.trim();
    if s.is_empty() {
        return Err(SizeError::Empty);
    }
    let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(digits_end);
    if number.is_empty() {
        return Err(SizeError::Invalid(input.to_string()));
    }
    let unit = unit.trim_start().to_ascii_uppercase();
    let unit = unit
        .strip_suffix("IB")
        .or_else(|| unit.strip_suffix('B'))
        .unwrap_or(&unit);
    // A lone "B" means bytes; "IB" alone (as in "10iB") is nonsense.
    let shift = match UNITS.iter().find(|(name, _)| *name == unit) {
        Some((_, shift)) if !(unit.is_empty() && s.to_ascii_uppercase().ends_with("IB")) => *shift,
        _ => return Err(SizeError::Invalid(input.to_string())),
    };
    let value: u64 = number
        .parse()
        .map_err(|_| SizeError::Overflow(input.to_string()))?;
    value
        .checked_mul(1u64 << shift)
        .ok_or_else(|| SizeError::Overflow(input.to_string()))
}

/// A size for people: exact multiples keep their unit (`1 GiB`), anything
/// else gets one decimal in the largest unit that fits (`1.5 MiB`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanSize(pub u64);

impl fmt::Display for HumanSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bytes = self.0;
        let (name, shift) = UNITS
            .iter()
            .rev()
            .find(|(_, shift)| bytes >= 1u64 << shift)
            .copied()
            .unwrap_or(("", 0));
        if shift == 0 {
            return write!(f, "{bytes} B");
        }
        let unit = 1u64 << shift;
        if bytes.is_multiple_of(unit) {
            write!(f, "{} {name}iB", bytes / unit)
        } else {
            write!(f, "{:.1} {name}iB", bytes as f64 / unit as f64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_bytes_and_binary_suffixes() {
        let cases: &[(&str, u64)] = &[
            ("0", 0),
            ("1048576", 1_048_576),
            ("12B", 12),
            ("1K", 1024),
            ("1k", 1024),
            ("2KB", 2048),
            ("2KiB", 2048),
            ("500M", 500 * 1024 * 1024),
            ("500 MiB", 500 * 1024 * 1024),
            ("1G", 1_073_741_824),
            ("1g", 1_073_741_824),
            ("10GiB", 10 * 1_073_741_824),
            ("10gib", 10 * 1_073_741_824),
            ("3T", 3 << 40),
            ("  7M ", 7 << 20),
        ];
        for (input, want) in cases {
            assert_eq!(parse_size(input), Ok(*want), "{input}");
        }
    }

    #[test]
    fn refuses_what_is_not_a_size() {
        for input in [
            "", "  ", "G", "1.5G", "-1", "1X", "1GG", "1 G B", "10iB", "1P", "abc", "1_000",
        ] {
            assert!(parse_size(input).is_err(), "{input} should be refused");
        }
        assert_eq!(parse_size(""), Err(SizeError::Empty));
        assert!(matches!(
            parse_size("99999999999999999999"),
            Err(SizeError::Overflow(_))
        ));
        assert!(matches!(
            parse_size("17000000T"),
            Err(SizeError::Overflow(_))
        ));
    }

    #[test]
    fn prints_sizes_for_people() {
        assert_eq!(HumanSize(0).to_string(), "0 B");
        assert_eq!(HumanSize(1023).to_string(), "1023 B");
        assert_eq!(HumanSize(1024).to_string(), "1 KiB");
        assert_eq!(HumanSize(1_073_741_824).to_string(), "1 GiB");
        assert_eq!(HumanSize(1536 * 1024).to_string(), "1.5 MiB");
        assert_eq!(HumanSize(500 << 20).to_string(), "500 MiB");
    }
}
