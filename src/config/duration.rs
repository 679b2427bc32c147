//! Durations as the configuration spells them: `<integer><unit>`, units
//! `s`, `m`, `h`, `d` (`90s`, `30m`, `1h`, `2d`).
//!
//! Deliberately narrow: one number, one unit, no spaces, no sign, no
//! fractions, no compound forms. Anything else is refused with a message
//! that says what was expected; nothing is guessed.

use std::fmt;
use std::time::Duration;

/// What [`parse_duration`] expects, quoted by each refusal.
const EXPECTED: &str =
    "expected <integer><unit> with unit s, m, h or d, such as \"90s\", \"30m\", \"1h\" or \"2d\"";

/// Why a text is not a duration. Each message says what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DurationError {
    /// The text is empty.
    Empty,
    /// The text starts with `-`.
    Negative(String),
    /// The text does not start with a digit.
    NoNumber(String),
    /// A number without a unit.
    NoUnit(String),
    /// A unit other than `s`, `m`, `h` or `d`.
    UnknownUnit {
        /// The whole text.
        text: String,
        /// What follows the number.
        unit: String,
    },
    /// More seconds than a `u64` holds.
    TooLarge(String),
    /// A command-line value that starts with `-` but not `-<digit>`: most
    /// likely the next flag, not a negative duration.
    LooksLikeAFlag(String),
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DurationError::Empty => write!(f, "empty duration; {EXPECTED}"),
            DurationError::Negative(text) => write!(f, "{text:?} is negative; {EXPECTED}"),
            DurationError::NoNumber(text) => {
                write!(f, "{text:?} does not start with a number; {EXPECTED}")
            }
            DurationError::NoUnit(text) => write!(f, "{text:?} has no unit; {EXPECTED}"),
            DurationError::UnknownUnit { text, unit } => {
                write!(f, "{text:?} has unknown unit {unit:?}; {EXPECTED}")
            }
            DurationError::TooLarge(text) => write!(f, "{text:?} is too large (it overflows)"),
            DurationError::LooksLikeAFlag(text) => {
                write!(f, "expected a duration such as 10s, found {text:?}")
            }
        }
    }
}

impl std::error::Error for DurationError {}

/// Parses `<integer><unit>` into a [`Duration`], or says what is wrong.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    if text.is_empty() {
        return Err(DurationError::Empty);
    }
    if text.starts_with('-') {
        return Err(DurationError::Negative(text.to_owned()));
    }
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    if digits.is_empty() {
        return Err(DurationError::NoNumber(text.to_owned()));
    }
    let seconds_per_unit: u64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 60 * 60,
        "d" => 24 * 60 * 60,
        "" => return Err(DurationError::NoUnit(text.to_owned())),
        other => {
            return Err(DurationError::UnknownUnit {
                text: text.to_owned(),
                unit: other.to_owned(),
            })
        }
    };
    let too_large = || DurationError::TooLarge(text.to_owned());
    let count: u64 = digits.parse().map_err(|_| too_large())?;
    let seconds = count.checked_mul(seconds_per_unit).ok_or_else(too_large)?;
    Ok(Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_each_unit() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(30 * 60)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(2 * 86_400)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
    }

    fn refusal(text: &str) -> String {
        match parse_duration(text) {
            Ok(d) => panic!("{text:?} was accepted as {d:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn refuses_malformed_durations_with_a_reason() {
        assert!(refusal("").starts_with("empty duration"));
        assert!(refusal("10").contains("has no unit"));
        assert!(refusal("10w").contains("unknown unit \"w\""));
        assert!(refusal("1h30m").contains("unknown unit \"h30m\""));
        assert!(refusal("1 h").contains("unknown unit \" h\""));
        assert!(refusal("-1h").contains("is negative"));
        assert!(refusal("h").contains("does not start with a number"));
        assert!(refusal("+1h").contains("does not start with a number"));
        assert!(refusal("1.5h").contains("unknown unit \".5h\""));
        assert!(refusal("99999999999999999999s").contains("too large"));
        assert!(refusal("9999999999999999d").contains("too large"));
    }
}
