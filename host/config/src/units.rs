//! Human-friendly sizes (`"64KiB"`, `1048576`) and durations (`"250ms"`, `"5s"`) in config.

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use std::fmt;
use std::time::Duration;

/// A size in bytes. In TOML: an integer (bytes) or a string with a unit: `B`, `KiB`, `MiB`,
/// `GiB` (and `KB`, `MB`, `GB` as powers of ten). At most [`ByteSize::MAX`]: no limit the gateway
/// has needs more, and a bound keeps sums and conversions far from overflowing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// The largest size a config may give: 1 TiB.
    pub const MAX: ByteSize = ByteSize(1 << 40);

    pub const fn kib(n: u64) -> Self {
        ByteSize(n * 1024)
    }
    pub const fn mib(n: u64) -> Self {
        ByteSize(n * 1024 * 1024)
    }
    pub const fn gib(n: u64) -> Self {
        ByteSize(n * 1024 * 1024 * 1024)
    }
    pub fn as_usize(self) -> usize {
        usize::try_from(self.0).unwrap_or(usize::MAX)
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (digits, unit) = s.split_at(split);
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("invalid size {s:?}: expected e.g. \"64KiB\" or \"10MiB\""))?;
        let factor: u64 = match unit.trim() {
            "" | "B" => 1,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            "KB" | "kB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            other => {
                return Err(format!(
                    "invalid size unit {other:?} in {s:?}: use B, KiB, MiB, GiB, KB, MB or GB"
                ));
            }
        };
        n.checked_mul(factor)
            .map(ByteSize)
            .ok_or(())
            .and_then(|size| size.bounded().map_err(|_| ()))
            .map_err(|()| format!("size {s:?} is too large: at most {}", ByteSize::MAX))
    }

    /// `self`, if it is at most [`ByteSize::MAX`].
    fn bounded(self) -> Result<Self, String> {
        if self <= ByteSize::MAX {
            Ok(self)
        } else {
            Err(format!(
                "size of {} bytes is too large: at most {}",
                self.0,
                ByteSize::MAX
            ))
        }
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        if n >= 1 << 30 && n.is_multiple_of(1 << 30) {
            write!(f, "{}GiB", n >> 30)
        } else if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
            write!(f, "{}MiB", n >> 20)
        } else if n >= 1 << 10 && n.is_multiple_of(1 << 10) {
            write!(f, "{}KiB", n >> 10)
        } else {
            write!(f, "{n}B")
        }
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size: bytes as an integer, or a string such as \"64KiB\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map_err(|_| E::custom("a size cannot be negative"))
                    .and_then(|v| self.visit_u64(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                ByteSize(v).bounded().map_err(E::custom)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                ByteSize::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// A duration. In TOML: a string with a unit: `ms`, `s`, `m` (e.g. `"250ms"`, `"5s"`). At most
/// [`Millis::MAX`] (24 hours): every duration the gateway takes is a timeout or an interval, and
/// the bound keeps `Instant + duration` from overflowing at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Millis(pub Duration);

impl Millis {
    /// The longest duration a config may give: 24 hours.
    pub const MAX: Duration = Duration::from_secs(24 * 60 * 60);

    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (digits, unit) = s.split_at(split);
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("invalid duration {s:?}: expected e.g. \"250ms\" or \"5s\""))?;
        let d = match unit.trim() {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            other => {
                return Err(format!(
                    "invalid duration unit {other:?} in {s:?}: use ms, s or m"
                ));
            }
        };
        if d > Millis::MAX {
            return Err(format!(
                "duration {s:?} is too long: at most 24h (\"1440m\")"
            ));
        }
        Ok(Millis(d))
    }
}

impl<'de> Deserialize<'de> for Millis {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Millis::parse(&s).map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(ByteSize::parse("64KiB"), Ok(ByteSize(65536)));
        assert_eq!(ByteSize::parse("10 MiB"), Ok(ByteSize(10 << 20)));
        assert_eq!(ByteSize::parse("3"), Ok(ByteSize(3)));
        assert_eq!(ByteSize::parse("1MB"), Ok(ByteSize(1_000_000)));
        assert!(ByteSize::parse("12 parsecs").unwrap_err().contains("unit"));
        assert!(ByteSize::parse("MiB").is_err());
        assert_eq!(ByteSize::mib(64).to_string(), "64MiB");
        assert_eq!(ByteSize::parse("1024GiB"), Ok(ByteSize::MAX));
        assert!(
            ByteSize::parse("1025GiB")
                .unwrap_err()
                .contains("too large")
        );
        assert!(
            ByteSize::parse("18446744073709551615GiB")
                .unwrap_err()
                .contains("too large")
        );
    }

    #[test]
    fn integer_sizes_are_bounded_too() {
        #[derive(Debug, Deserialize)]
        struct T {
            #[allow(dead_code)]
            s: ByteSize,
        }
        assert!(toml::from_str::<T>("s = 1099511627776").is_ok());
        let e = toml::from_str::<T>("s = 1099511627777").unwrap_err();
        assert!(e.to_string().contains("too large"), "{e}");
        let e = toml::from_str::<T>("s = -1").unwrap_err();
        assert!(e.to_string().contains("negative"), "{e}");
    }

    #[test]
    fn durations() {
        assert_eq!(
            Millis::parse("250ms"),
            Ok(Millis(Duration::from_millis(250)))
        );
        assert_eq!(Millis::parse("5s"), Ok(Millis(Duration::from_secs(5))));
        assert_eq!(Millis::parse("2m"), Ok(Millis(Duration::from_secs(120))));
        assert!(Millis::parse("5").is_err());
        assert!(Millis::parse("5h").is_err());
        assert_eq!(Millis::parse("1440m"), Ok(Millis(Millis::MAX)));
        assert_eq!(Millis::parse("86400s"), Ok(Millis(Millis::MAX)));
        assert!(Millis::parse("86401s").unwrap_err().contains("too long"));
        assert!(
            Millis::parse("18446744073709551615s")
                .unwrap_err()
                .contains("too long")
        );
        assert!(
            Millis::parse("18446744073709551615m")
                .unwrap_err()
                .contains("too long")
        );
        // More digits than a u64 holds is not a number at all.
        assert!(Millis::parse("99999999999999999999999s").is_err());
    }
}
