//! The reader's language and conventions: French or English words, numbers with the
//! reader's decimal mark and digit grouping, dates and times in the sites' zone.

use chrono::{DateTime, Locale, Utc};
use chrono_tz::Tz;
pub use sonde_plot::esc;

/// The language of a report page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// Français.
    Fr,
    /// English.
    En,
}

/// Zones of France, mainland and overseas: a report for them is in French unless
/// asked otherwise.
const FRENCH_ZONES: &[&str] = &[
    "Europe/Paris",
    "America/Cayenne",
    "America/Guadeloupe",
    "America/Martinique",
    "America/Marigot",
    "America/St_Barthelemy",
    "America/Miquelon",
    "Indian/Reunion",
    "Indian/Mayotte",
    "Pacific/Noumea",
    "Pacific/Tahiti",
    "Pacific/Marquesas",
    "Pacific/Gambier",
    "Pacific/Wallis",
];

impl Lang {
    /// French for a zone of France, English otherwise.
    pub fn for_zone(tz: Tz) -> Lang {
        if FRENCH_ZONES.contains(&tz.name()) {
            Lang::Fr
        } else {
            Lang::En
        }
    }

    /// The BCP 47 code (`fr`, `en`).
    pub fn code(self) -> &'static str {
        match self {
            Lang::Fr => "fr",
            Lang::En => "en",
        }
    }

    /// `en` or `fr`, whichever is the reader's.
    pub fn w(self, en: &'static str, fr: &'static str) -> &'static str {
        match self {
            Lang::Fr => fr,
            Lang::En => en,
        }
    }

    fn locale(self) -> Locale {
        match self {
            Lang::Fr => Locale::fr_FR,
            Lang::En => Locale::en_GB,
        }
    }

    /// `x` with `decimals` digits: `1 234,5` in French (narrow no-break spaces),
    /// `1,234.5` in English.
    pub fn number(self, x: f64, decimals: usize) -> String {
        let text = format!("{:.*}", decimals, x.abs());
        let (int, frac) = text.split_once('.').unwrap_or((&text, ""));
        let sep = self.w(",", "\u{202f}");
        let mut grouped = String::new();
        for (i, c) in int.chars().enumerate() {
            if i > 0 && (int.len() - i) % 3 == 0 {
                grouped.push_str(sep);
            }
            grouped.push(c);
        }
        let sign = if x < 0.0 && text.chars().any(|c| c.is_ascii_digit() && c != '0') {
            "−"
        } else {
            ""
        };
        if frac.is_empty() {
            format!("{sign}{grouped}")
        } else {
            format!("{sign}{grouped}{}{frac}", self.w(".", ","))
        }
    }

    /// A count: `12 345` / `12,345`.
    pub fn count(self, n: u64) -> String {
        self.number(n as f64, 0)
    }

    /// A rate: `1.02 Gb/s`, `153.0 Mb/s`; `1,02 Gbit/s` in French; "—" when absent.
    pub fn rate(self, v: Option<f64>) -> String {
        let (g, m, k) = match self {
            Lang::Fr => ("Gbit/s", "Mbit/s", "kbit/s"),
            Lang::En => ("Gb/s", "Mb/s", "kb/s"),
        };
        match v {
            None => "—".into(),
            Some(0.0) => "0".into(),
            Some(x) if x >= 1e9 => format!("{}\u{a0}{g}", self.number(x / 1e9, 2)),
            Some(x) if x >= 1e6 => format!("{}\u{a0}{m}", self.number(x / 1e6, 1)),
            Some(x) => format!("{}\u{a0}{k}", self.number(x / 1e3, 0)),
        }
    }

    /// A share: `45.2%` / `45,2 %` (French sets the sign apart); "—" when absent.
    pub fn pct(self, v: Option<f64>) -> String {
        v.map(|x| format!("{}{}%", self.number(x * 100.0, 1), self.w("", "\u{202f}")))
            .unwrap_or_else(|| "—".into())
    }

    /// A ratio to a target as a share: `72%` / `72 %`.
    pub fn ratio(self, v: Option<f64>) -> String {
        v.map(|x| format!("{}{}%", self.number(x * 100.0, 0), self.w("", "\u{202f}")))
            .unwrap_or_else(|| "—".into())
    }

    /// A duration in milliseconds.
    pub fn ms(self, v: Option<f64>) -> String {
        v.map(|x| format!("{}\u{a0}ms", self.number(x * 1e3, 1)))
            .unwrap_or_else(|| "—".into())
    }

    /// A day in `tz`: `2 November 2026` / `2 novembre 2026`.
    pub fn date(self, t: DateTime<Utc>, tz: Tz) -> String {
        t.with_timezone(&tz)
            .format_localized("%-d %B %Y", self.locale())
            .to_string()
    }

    /// An instant in `tz`, to the minute: `2 November 2026, 19:30` / `2 novembre 2026 à 19:30`.
    pub fn datetime(self, t: DateTime<Utc>, tz: Tz) -> String {
        let local = t.with_timezone(&tz);
        format!(
            "{}{}{}",
            self.date(t, tz),
            self.w(", ", " à "),
            local.format("%H:%M")
        )
    }

    /// An access kind's name.
    pub fn kind(self, kind: &str) -> String {
        match kind {
            "ftth" => "FTTH".into(),
            "4g" => "4G".into(),
            "wifi" => "Wi-Fi".into(),
            "other" => self.w("other", "autre").into(),
            k => esc(k),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn numbers_and_dates_follow_the_reader() {
        assert_eq!(Lang::En.number(1234567.891, 1), "1,234,567.9");
        assert_eq!(Lang::Fr.number(1234567.891, 1), "1\u{202f}234\u{202f}567,9");
        assert_eq!(Lang::Fr.number(-0.04, 1), "0,0");
        assert_eq!(Lang::En.number(-12.0, 0), "−12");
        assert_eq!(Lang::Fr.rate(Some(1.024e9)), "1,02\u{a0}Gbit/s");
        assert_eq!(Lang::En.rate(Some(153e6)), "153.0\u{a0}Mb/s");
        assert_eq!(Lang::Fr.pct(Some(0.4567)), "45,7\u{202f}%");
        assert_eq!(Lang::En.pct(Some(0.4567)), "45.7%");
        let t = Utc
            .with_ymd_and_hms(2026, 11, 2, 18, 30, 0)
            .single()
            .expect("t");
        let paris = chrono_tz::Europe::Paris;
        assert_eq!(Lang::Fr.date(t, paris), "2 novembre 2026");
        assert_eq!(Lang::En.datetime(t, paris), "2 November 2026, 19:30");
        assert_eq!(Lang::Fr.datetime(t, paris), "2 novembre 2026 à 19:30");
        assert_eq!(Lang::for_zone(paris), Lang::Fr);
        assert_eq!(Lang::for_zone(chrono_tz::Indian::Reunion), Lang::Fr);
        assert_eq!(Lang::for_zone(chrono_tz::Asia::Kolkata), Lang::En);
    }
}
