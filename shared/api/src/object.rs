//! Structs read only from JSON objects. serde's derive also reads a struct
//! from an array of its fields in order (`"quota": []` as an empty quota),
//! which the API's schema does not allow; these wrappers refuse it, keeping
//! serde_path_to_error's field paths.

use serde::de::{Deserialize, Deserializer, Visitor};

/// A deserializer that reads structs as maps only, forwarding the rest.
struct MapsOnly<D>(D);

macro_rules! forward {
    ($($method:ident),* $(,)?) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
                self.0.$method(visitor)
            }
        )*
    };
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for MapsOnly<D> {
    type Error = D::Error;

    forward!(
        deserialize_any,
        deserialize_bool,
        deserialize_i8,
        deserialize_i16,
        deserialize_i32,
        deserialize_i64,
        deserialize_i128,
        deserialize_u8,
        deserialize_u16,
        deserialize_u32,
        deserialize_u64,
        deserialize_u128,
        deserialize_f32,
        deserialize_f64,
        deserialize_char,
        deserialize_str,
        deserialize_string,
        deserialize_bytes,
        deserialize_byte_buf,
        deserialize_option,
        deserialize_unit,
        deserialize_seq,
        deserialize_map,
        deserialize_identifier,
        deserialize_ignored_any,
    );

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_unit_struct(name, visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_newtype_struct(name, visitor)
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_tuple(len, visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_tuple_struct(name, len, visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_enum(name, variants, visitor)
    }

    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }
}

/// A `T` read from a JSON object only.
pub struct Object<T>(pub T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        T::deserialize(MapsOnly(d)).map(Object)
    }
}

/// An optional struct field (`null` or absent is `None`).
pub fn opt<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    Option::<Object<T>>::deserialize(d).map(|o| o.map(|Object(t)| t))
}

/// A struct field that may be present as `null` (then `Some(None)`).
pub fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    opt(d).map(Some)
}

/// A list of structs.
pub fn vec<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    Vec::<Object<T>>::deserialize(d).map(|v| v.into_iter().map(|Object(t)| t).collect())
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use crate::parse::{parse_body, ParseError};

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Inner {
        a: Option<u32>,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Outer {
        #[serde(default, deserialize_with = "super::opt")]
        one: Option<Inner>,
        #[serde(default, deserialize_with = "super::vec")]
        many: Vec<Inner>,
    }

    fn field(body: &str) -> Option<String> {
        match parse_body::<Outer>(body.as_bytes()) {
            Ok(_) => None,
            Err(ParseError::Field(e)) => Some(e.field),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn a_nested_struct_is_read_from_an_object_only_and_errors_keep_their_path() {
        assert_eq!(field(r#"{"one": {"a": 1}, "many": [{"a": 2}]}"#), None);
        assert_eq!(field(r#"{"one": null}"#), None);
        assert_eq!(field(r#"{"one": []}"#).as_deref(), Some("one"));
        assert_eq!(field(r#"{"many": [{}, [1]]}"#).as_deref(), Some("many[1]"));
        assert_eq!(
            field(r#"{"many": [{"a": "x"}]}"#).as_deref(),
            Some("many[0].a")
        );
    }
}
