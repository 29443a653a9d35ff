//! Fixed-point domain units: contract counts and dollar amounts.
//!
//! The exchange sends counts as strings with up to two decimals (`"10"`, `"10.5"`, `"10.00"`) and
//! prices as dollar strings with up to six (`"0.5600"`). Money and counts never pass through `f64`
//! on the risk path: a [`Contracts`] is an integer number of hundredths of a contract, a
//! [`Dollars`] an integer number of micro-dollars. Parsing is strict: no sign, no exponent, no
//! surrounding spaces, no more decimals than the unit holds. A value the exchange could not
//! have sent is an error that names the text.

use std::fmt;
use std::ops::{Add, AddAssign, Sub, SubAssign};

/// Why a count or amount string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitParseError {
    #[error(
        "{text:?} is not a decimal number (digits with an optional '.' and up to {max_decimals} decimals)"
    )]
    Syntax { text: String, max_decimals: u32 },
    #[error("{text:?} has more than {max_decimals} decimals")]
    TooPrecise { text: String, max_decimals: u32 },
    #[error("{text:?} is too large")]
    Overflow { text: String },
}

/// Parses an unsigned decimal string into an integer count of `10^-decimals` units.
fn parse_fixed(text: &str, decimals: u32) -> Result<i64, UnitParseError> {
    let syntax = || UnitParseError::Syntax {
        text: text.to_owned(),
        max_decimals: decimals,
    };
    let (whole, frac) = match text.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (text, None),
    };
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return Err(syntax());
    }
    let frac = frac.unwrap_or("");
    if text.ends_with('.') || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(syntax());
    }
    if frac.len() > decimals as usize {
        return Err(UnitParseError::TooPrecise {
            text: text.to_owned(),
            max_decimals: decimals,
        });
    }
    let overflow = || UnitParseError::Overflow {
        text: text.to_owned(),
    };
    let scale = 10i64.pow(decimals);
    let whole: i64 = whole.parse().map_err(|_| overflow())?;
    let mut frac_units: i64 = if frac.is_empty() {
        0
    } else {
        frac.parse().map_err(|_| syntax())?
    };
    frac_units *= 10i64.pow(decimals - frac.len() as u32);
    whole
        .checked_mul(scale)
        .and_then(|w| w.checked_add(frac_units))
        .ok_or_else(overflow)
}

fn write_fixed(f: &mut fmt::Formatter<'_>, value: i64, decimals: u32) -> fmt::Result {
    let scale = 10i64.pow(decimals);
    let sign = if value < 0 { "-" } else { "" };
    let abs = value.unsigned_abs();
    let scale = scale as u64;
    write!(
        f,
        "{sign}{}.{:0width$}",
        abs / scale,
        abs % scale,
        width = decimals as usize
    )
}

/// A number of contracts in hundredths (the exchange's `_fp` precision).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Contracts(i64);

impl Contracts {
    pub const ZERO: Contracts = Contracts(0);

    /// From hundredths of a contract.
    #[inline]
    pub const fn from_hundredths(hundredths: i64) -> Self {
        Contracts(hundredths)
    }

    /// From a whole number of contracts.
    #[inline]
    pub const fn from_whole(contracts: i64) -> Self {
        Contracts(contracts * 100)
    }

    #[inline]
    pub const fn hundredths(self) -> i64 {
        self.0
    }

    /// True when the value has no fractional part.
    pub const fn is_whole(self) -> bool {
        self.0 % 100 == 0
    }

    /// The whole number of contracts, when the value is whole.
    pub const fn whole(self) -> Option<i64> {
        if self.is_whole() {
            Some(self.0 / 100)
        } else {
            None
        }
    }

    /// Parses an `_fp` string: `"10"`, `"10.0"` and `"10.00"` are all ten contracts.
    pub fn parse(text: &str) -> Result<Self, UnitParseError> {
        parse_fixed(text, 2).map(Contracts)
    }

    #[inline]
    pub fn checked_add(self, other: Contracts) -> Option<Contracts> {
        self.0.checked_add(other.0).map(Contracts)
    }

    #[inline]
    pub fn min(self, other: Contracts) -> Contracts {
        Contracts(self.0.min(other.0))
    }
}

impl fmt::Display for Contracts {
    /// Always two decimals, as the exchange writes `_fp` fields.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_fixed(f, self.0, 2)
    }
}

impl Add for Contracts {
    type Output = Contracts;
    #[inline]
    fn add(self, rhs: Contracts) -> Contracts {
        Contracts(self.0 + rhs.0)
    }
}

impl AddAssign for Contracts {
    #[inline]
    fn add_assign(&mut self, rhs: Contracts) {
        self.0 += rhs.0;
    }
}

impl Sub for Contracts {
    type Output = Contracts;
    #[inline]
    fn sub(self, rhs: Contracts) -> Contracts {
        Contracts(self.0 - rhs.0)
    }
}

impl SubAssign for Contracts {
    #[inline]
    fn sub_assign(&mut self, rhs: Contracts) {
        self.0 -= rhs.0;
    }
}

/// A dollar amount in micro-dollars (the exchange's six-decimal `_dollars` precision).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Dollars(i64);

impl Dollars {
    pub const ZERO: Dollars = Dollars(0);
    pub const ONE: Dollars = Dollars(1_000_000);

    #[inline]
    pub const fn from_micros(micros: i64) -> Self {
        Dollars(micros)
    }

    #[inline]
    pub const fn micros(self) -> i64 {
        self.0
    }

    /// Parses a `_dollars` string such as `"0.5600"` or `"12"`.
    pub fn parse(text: &str) -> Result<Self, UnitParseError> {
        parse_fixed(text, 6).map(Dollars)
    }

    /// The value of `count` contracts at this price per contract, rounded down to a micro-dollar.
    #[inline]
    pub fn times(self, count: Contracts) -> Dollars {
        Dollars(((self.0 as i128 * count.0 as i128) / 100) as i64)
    }

    /// Formats with a fixed number of decimals (at most six), as the exchange does for prices
    /// (`"0.5600"`, four) and fees (six).
    pub fn to_string_with(self, decimals: u32) -> String {
        let decimals = decimals.min(6);
        let cut = 10i64.pow(6 - decimals);
        struct W(i64, u32);
        impl fmt::Display for W {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write_fixed(f, self.0, self.1)
            }
        }
        W(self.0 / cut, decimals).to_string()
    }
}

impl fmt::Display for Dollars {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_fixed(f, self.0, 6)
    }
}

impl Add for Dollars {
    type Output = Dollars;
    #[inline]
    fn add(self, rhs: Dollars) -> Dollars {
        Dollars(self.0 + rhs.0)
    }
}

impl Sub for Dollars {
    type Output = Dollars;
    #[inline]
    fn sub(self, rhs: Dollars) -> Dollars {
        Dollars(self.0 - rhs.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contracts_accept_zero_to_two_decimals() {
        for text in ["10", "10.0", "10.00"] {
            assert_eq!(
                Contracts::parse(text),
                Ok(Contracts::from_whole(10)),
                "{text}"
            );
        }
        assert_eq!(Contracts::parse("0.05"), Ok(Contracts::from_hundredths(5)));
        assert_eq!(Contracts::parse("3.5").unwrap().to_string(), "3.50");
    }

    #[test]
    fn contracts_refuse_what_the_exchange_cannot_send() {
        for text in [
            "", ".5", "5.", "-1", "+1", "1e3", " 1", "1 ", "1.2.3", "abc", "1,5",
        ] {
            assert!(
                matches!(Contracts::parse(text), Err(UnitParseError::Syntax { .. })),
                "{text:?} should be a syntax error"
            );
        }
        assert!(matches!(
            Contracts::parse("1.001"),
            Err(UnitParseError::TooPrecise { .. })
        ));
        assert!(matches!(
            Contracts::parse("99999999999999999999"),
            Err(UnitParseError::Overflow { .. })
        ));
    }

    #[test]
    fn dollars_parse_and_format() {
        let p = Dollars::parse("0.5600").unwrap();
        assert_eq!(p.micros(), 560_000);
        assert_eq!(p.to_string_with(4), "0.5600");
        assert_eq!(Dollars::parse("0.000001").unwrap().micros(), 1);
        assert!(Dollars::parse("0.0000001").is_err());
        assert_eq!(
            p.times(Contracts::from_whole(10)).to_string_with(4),
            "5.6000"
        );
        assert_eq!(Dollars::from_micros(-1_500_000).to_string_with(2), "-1.50");
    }

    #[test]
    fn whole_contracts() {
        assert_eq!(Contracts::from_whole(7).whole(), Some(7));
        assert_eq!(Contracts::from_hundredths(750).whole(), None);
    }
}

/// Both units serialise as exact decimal strings (`"10.00"`, `"0.560000"`), as the exchange
/// writes them, so state files and audit records never round through floating point.
mod serde_impls {
    use super::{Contracts, Dollars};
    use serde::{Deserialize, Deserializer, Serialize, Serializer, de::Error as _};

    impl Serialize for Contracts {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_str(self)
        }
    }

    impl<'de> Deserialize<'de> for Contracts {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let text = String::deserialize(d)?;
            Contracts::parse(&text).map_err(D::Error::custom)
        }
    }

    impl Serialize for Dollars {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_str(self)
        }
    }

    impl<'de> Deserialize<'de> for Dollars {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let text = String::deserialize(d)?;
            let negative = text.starts_with('-');
            let value = Dollars::parse(text.trim_start_matches('-')).map_err(D::Error::custom)?;
            Ok(if negative {
                Dollars::ZERO - value
            } else {
                value
            })
        }
    }
}
