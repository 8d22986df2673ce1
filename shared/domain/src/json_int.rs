//! Integers as JSON Schema counts them: `5` and `5.0` are the same integer,
//! so a field of `type: integer` takes both (serde's integers refuse `5.0`).
//! Used with `#[serde(deserialize_with = …)]` by the API's request types.

use serde::de::{Error, Unexpected, Visitor};
use serde::Deserializer;

struct Integer;

impl Visitor<'_> for Integer {
    type Value = i64;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an integer")
    }

    fn visit_i64<E: Error>(self, v: i64) -> Result<i64, E> {
        Ok(v)
    }

    fn visit_u64<E: Error>(self, v: u64) -> Result<i64, E> {
        i64::try_from(v).map_err(|_| E::invalid_value(Unexpected::Unsigned(v), &self))
    }

    fn visit_f64<E: Error>(self, v: f64) -> Result<i64, E> {
        // Exactly representable integers only: 2^63 and beyond do not fit.
        if v.fract() == 0.0 && v.abs() < 9.2e18 {
            Ok(v as i64)
        } else {
            Err(E::invalid_value(Unexpected::Float(v), &self))
        }
    }
}

/// A non-negative optional integer field (`null` or absent is `None`).
pub fn opt_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    match opt(d)? {
        None => Ok(None),
        Some(n) => u64::try_from(n)
            .map(Some)
            .map_err(|_| D::Error::invalid_value(Unexpected::Signed(n), &"a non-negative integer")),
    }
}

/// A list of ISO weekdays (small integers; `3.0` is `3`).
pub fn days<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    struct Days;

    impl<'de> Visitor<'de> for Days {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a list of weekdays 1 to 7")
        }

        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            let mut days = Vec::new();
            while let Some(Day(n)) = seq.next_element()? {
                days.push(n);
            }
            Ok(days)
        }
    }

    struct Day(u8);

    impl<'de> serde::Deserialize<'de> for Day {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Day, D::Error> {
            let n = d.deserialize_any(Integer)?;
            u8::try_from(n)
                .map(Day)
                .map_err(|_| D::Error::invalid_value(Unexpected::Signed(n), &"a weekday 1 to 7"))
        }
    }

    d.deserialize_seq(Days)
}

/// An optional integer field (`null` or absent is `None`).
pub fn opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    struct Optional;

    impl<'de> Visitor<'de> for Optional {
        type Value = Option<i64>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an integer or null")
        }

        fn visit_none<E: Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_unit<E: Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(Integer).map(Some)
        }
    }

    d.deserialize_option(Optional)
}

/// An integer field that may be present as `null` (then `Some(None)`);
/// with `#[serde(default)]`, absent is `None`.
pub fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<i64>>, D::Error> {
    opt(d).map(Some)
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    struct T {
        #[serde(default, deserialize_with = "super::opt")]
        n: Option<i64>,
    }

    fn n(body: &str) -> Result<Option<i64>, String> {
        serde_json::from_str::<T>(body)
            .map(|t| t.n)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn an_integral_float_is_an_integer_and_a_fraction_is_not() {
        assert_eq!(n(r#"{"n": 5}"#), Ok(Some(5)));
        assert_eq!(n(r#"{"n": 5.0}"#), Ok(Some(5)));
        assert_eq!(n(r#"{"n": -3}"#), Ok(Some(-3)));
        assert_eq!(n(r#"{"n": null}"#), Ok(None));
        assert_eq!(n(r#"{}"#), Ok(None));
        assert!(n(r#"{"n": 5.5}"#).is_err());
        assert!(n(r#"{"n": "5"}"#).is_err());
        assert!(n(r#"{"n": 1e300}"#).is_err());
    }
}
