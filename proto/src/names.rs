//! The one name table of every enum that is written somewhere: in a record, on the
//! wire, in a metric label, in a database column. [`named!`](crate::named) declares
//! the enum with its names once; `as_str`, `FromStr`, `Display`, serde and the list of
//! values all come from that table, so no two places can spell a value differently.
//!
//! Every such enum carries `Unknown`, what a reader makes of a name written by a newer
//! version: readers tolerate values they do not know (the schema's compatibility rule),
//! while `FromStr`, used for what a person types, refuses them with the list of names.

/// Declares an enum whose every value has one wire name.
///
/// ```
/// sonde_proto::named! {
///     /// A colour.
///     pub enum Colour {
///         /// Red.
///         Red = "red",
///         /// Dark blue.
///         DarkBlue = "dark_blue",
///     }
/// }
/// assert_eq!(Colour::DarkBlue.as_str(), "dark_blue");
/// assert_eq!("red".parse::<Colour>(), Ok(Colour::Red));
/// assert_eq!(serde_json::from_str::<Colour>("\"green\"").ok(), Some(Colour::Unknown));
/// ```
#[macro_export]
macro_rules! named {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )*
            /// A value written by a newer version.
            Unknown,
        }

        impl $name {
            /// Every known value, in declaration order (`Unknown` excluded).
            pub const ALL: &'static [$name] = &[$($name::$variant),*];

            /// The wire name: in records, frames, metric labels and columns.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)*
                    $name::Unknown => "unknown",
                }
            }

            /// The value named `s`, or `Unknown` (a name from a newer version).
            pub fn from_name(s: &str) -> Self {
                match s {
                    $($text => $name::$variant,)*
                    _ => $name::Unknown,
                }
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match $name::from_name(s) {
                    $name::Unknown => Err(format!(
                        "unknown {} {s:?} (expected {})",
                        $crate::names::noun(stringify!($name)),
                        $crate::names::list(&[$($text),*])
                    )),
                    v => Ok(v),
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_str($crate::names::NameVisitor($name::from_name))
            }
        }
    };
}

/// Reads a string and maps it to a value (used by [`named!`]).
#[doc(hidden)]
#[derive(Debug)]
pub struct NameVisitor<T>(pub fn(&str) -> T);

impl<T> serde::de::Visitor<'_> for NameVisitor<T> {
    type Value = T;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a name")
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<T, E> {
        Ok((self.0)(v))
    }
}

/// `AccessKind` → "access kind", for error messages (used by [`named!`]).
#[doc(hidden)]
pub fn noun(type_name: &str) -> String {
    let mut out = String::new();
    for (i, c) in type_name.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push(' ');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// "a, b or c" (used by [`named!`]).
#[doc(hidden)]
pub fn list(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [one] => (*one).to_string(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use crate::wire::RejectReason;
    use crate::*;

    /// Every name of `T` reads back as its value through serde and `FromStr`, and no
    /// two values share a name.
    fn round_trip<T>(all: &[T])
    where
        T: Copy
            + PartialEq
            + std::fmt::Debug
            + std::fmt::Display
            + std::str::FromStr
            + serde::Serialize
            + serde::de::DeserializeOwned,
    {
        let mut seen = std::collections::HashSet::new();
        for v in all {
            let name = v.to_string();
            assert!(seen.insert(name.clone()), "{name} twice");
            let json = serde_json::to_string(v).expect("names encode");
            assert_eq!(json, format!("\"{name}\""));
            assert_eq!(serde_json::from_str::<T>(&json).ok(), Some(*v));
            assert!(name.parse::<T>().ok() == Some(*v), "{name}");
        }
    }

    #[test]
    fn every_name_reads_back_and_unknown_names_are_tolerated_or_refused() {
        round_trip(AccessKind::ALL);
        round_trip(Engine::ALL);
        round_trip(Direction::ALL);
        round_trip(MeasuredAt::ALL);
        round_trip(Counting::ALL);
        round_trip(StopReason::ALL);
        round_trip(Flag::ALL);
        round_trip(VerdictOutcome::ALL);
        round_trip(Outcome::ALL);
        round_trip(FailureReason::ALL);
        round_trip(RejectReason::ALL);
        assert_eq!(
            serde_json::from_str::<Flag>("\"from_2030\"").ok(),
            Some(Flag::Unknown)
        );
        let e = "fibre".parse::<AccessKind>().expect_err("not a kind");
        assert_eq!(
            e,
            "unknown access kind \"fibre\" (expected ftth, 4g, wifi or other)"
        );
        assert!("unknown".parse::<Outcome>().is_err());
    }

    #[test]
    fn the_names_are_the_ones_records_already_carry() {
        // Names written by earlier versions must read the same forever.
        assert_eq!(AccessKind::FourG.as_str(), "4g");
        assert_eq!(Engine::SondeHttp.as_str(), "sonde-http");
        assert_eq!(VerdictOutcome::PortLimited.as_str(), "port_limited");
        assert_eq!(StopReason::MaxDuration.as_str(), "max_duration");
        assert_eq!(Counting::TcpSegments.as_str(), "tcp_segments");
        assert_eq!(FailureReason::EchoUnreachable.as_str(), "echo_unreachable");
        assert_eq!(
            RejectReason::UnsupportedVersion.as_str(),
            "unsupported_version"
        );
        let example = ResultRecord::schema_example();
        let v = serde_json::to_value(&example).expect("encodes");
        assert_eq!(v["access"]["kind"], example.access.kind.as_str());
        assert_eq!(v["status"]["outcome"], example.status.outcome.as_str());
    }
}
