//! The value types every event and read model uses: money in minor units and typed ids.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An amount of money in minor units (cents), in the shop's one currency. Never a float.
///
/// ```
/// use order_example::Money;
///
/// let price = Money::from_minor_units(4_999);
/// assert_eq!(price.to_string(), "49.99");
/// assert_eq!(price.checked_times(3), Some(Money::from_minor_units(14_997)));
/// assert_eq!("49.99".parse::<Money>(), Ok(price));
/// ```
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Money(u64);

impl Money {
    /// No money.
    pub const ZERO: Money = Money(0);

    /// `units` minor units (cents).
    #[must_use]
    pub const fn from_minor_units(units: u64) -> Self {
        Money(units)
    }

    /// The amount in minor units (cents).
    #[must_use]
    pub const fn minor_units(self) -> u64 {
        self.0
    }

    /// The sum, or `None` if it does not fit.
    #[must_use]
    pub const fn checked_add(self, other: Money) -> Option<Money> {
        match self.0.checked_add(other.0) {
            Some(sum) => Some(Money(sum)),
            None => None,
        }
    }

    /// The difference, or `None` if `other` is larger.
    #[must_use]
    pub const fn checked_sub(self, other: Money) -> Option<Money> {
        match self.0.checked_sub(other.0) {
            Some(difference) => Some(Money(difference)),
            None => None,
        }
    }

    /// This amount `quantity` times, or `None` if it does not fit.
    #[must_use]
    pub const fn checked_times(self, quantity: u32) -> Option<Money> {
        match self.0.checked_mul(quantity as u64) {
            Some(product) => Some(Money(product)),
            None => None,
        }
    }

    /// This amount shared equally `count` ways, rounded down; `None` for zero ways.
    #[must_use]
    pub const fn checked_div(self, count: u64) -> Option<Money> {
        match self.0.checked_div(count) {
            Some(share) => Some(Money(share)),
            None => None,
        }
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02}", self.0 / 100, self.0 % 100)
    }
}

/// The error returned when a text is not an amount like `12`, `12.3` or `12.34`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{input}` is not an amount of money (for example `12.34`)")]
pub struct ParseMoneyError {
    input: String,
}

impl FromStr for Money {
    type Err = ParseMoneyError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = || ParseMoneyError {
            input: text.to_owned(),
        };
        let digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
        let (whole, cents) = match text.split_once('.') {
            None => (text, "00".to_owned()),
            Some((whole, fraction)) if fraction.len() <= 2 && digits(fraction) => {
                (whole, format!("{fraction:0<2}"))
            }
            Some(_) => return Err(error()),
        };
        if !digits(whole) {
            return Err(error());
        }
        let whole: u64 = whole.parse().map_err(|_| error())?;
        let cents: u64 = cents.parse().map_err(|_| error())?;
        whole
            .checked_mul(100)
            .and_then(|units| units.checked_add(cents))
            .map(Money)
            .ok_or_else(error)
    }
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// The id with this text.
            pub fn new(id: impl Into<String>) -> Self {
                $name(id.into())
            }

            /// The id as text.
            #[must_use]
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        // Compares, orders and hashes as its text (derived from the `String`), so maps keyed
        // by it can be searched with a `&str`.
        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(id: &str) -> Self {
                $name(id.to_owned())
            }
        }

        impl From<String> for $name {
            fn from(id: String) -> Self {
                $name(id)
            }
        }
    };
}

id_type!(
    /// Identifies an order; it is also the id of the order's event stream.
    OrderId
);
id_type!(
    /// Identifies a customer.
    CustomerId
);
id_type!(
    /// Identifies a product (a stock-keeping unit).
    ProductId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_prints_and_parses_in_minor_units() {
        for (text, units) in [
            ("0.00", 0),
            ("0.05", 5),
            ("12.30", 1230),
            ("1999.99", 199_999),
        ] {
            assert_eq!(Money::from_minor_units(units).to_string(), text);
            assert_eq!(text.parse::<Money>(), Ok(Money::from_minor_units(units)));
        }
        assert_eq!("7".parse::<Money>(), Ok(Money::from_minor_units(700)));
        assert_eq!("7.5".parse::<Money>(), Ok(Money::from_minor_units(750)));
    }

    #[test]
    fn malformed_amounts_are_errors() {
        for text in [
            "",
            ".",
            "1.",
            ".5",
            "1.234",
            "-1",
            "1,00",
            "abc",
            "99999999999999999999",
        ] {
            assert!(text.parse::<Money>().is_err(), "`{text}` parsed");
        }
    }

    #[test]
    fn arithmetic_is_checked() {
        let max = Money::from_minor_units(u64::MAX);
        assert_eq!(max.checked_add(Money::from_minor_units(1)), None);
        assert_eq!(max.checked_times(2), None);
        assert_eq!(Money::ZERO.checked_sub(Money::from_minor_units(1)), None);
        assert_eq!(Money::from_minor_units(10).checked_div(0), None);
        assert_eq!(
            Money::from_minor_units(10).checked_div(3),
            Some(Money::from_minor_units(3))
        );
    }
}
