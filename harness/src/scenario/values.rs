//! Values scenario files write: byte sizes with binary suffixes, expected errnos.

use schemars::JsonSchema;
use serde::Deserialize;

/// An errno name the step must fail with, e.g. `EEXIST`.
pub type Expect = Option<String>;

/// A byte count: a number, or a string with a K/M/G suffix (binary units).
#[derive(Debug, Clone, Copy, PartialEq, Eq, JsonSchema)]
#[schemars(with = "SizeRepr")]
pub struct Size(pub u64);

#[allow(dead_code)]
#[derive(JsonSchema)]
#[serde(untagged)]
enum SizeRepr {
    Bytes(u64),
    WithSuffix(String),
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Size, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(Size(n)),
            Raw::S(s) => parse_size(&s).map(Size).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "invalid size {s:?}: expected bytes, or a number with K, M or G"
                ))
            }),
        }
    }
}

pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = match s.chars().last()? {
        'K' | 'k' => (&s[..s.len() - 1], 1 << 10),
        'M' => (&s[..s.len() - 1], 1 << 20),
        'G' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.trim().parse::<u64>().ok()?.checked_mul(mult)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn sizes() {
        assert_eq!(parse_size("4M"), Some(4 << 20));
        assert_eq!(parse_size("16K"), Some(16 << 10));
        assert_eq!(parse_size("123"), Some(123));
        assert_eq!(parse_size("x"), None);
        assert_eq!(parse_size("99999999999G"), None);
    }
}
