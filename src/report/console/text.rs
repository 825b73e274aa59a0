//! Text helpers: human durations, gRPC code names, short stack strings and writing text into
//! a fixed number of terminal columns.
//!
//! Widths are counted in terminal columns, as `unicode-width` measures each character:
//! box-drawing characters, `…`, `µ` and the bar blocks are one column each, East Asian wide
//! characters (CJK, most emoji) two, combining marks none.

use std::fmt;
use std::time::Duration;

use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
use unicode_width::UnicodeWidthChar;

/// A character that must not reach the terminal as it is: a control character (`Cc`:
/// newlines, tabs, the escape that starts terminal codes) or a format character (`Cf`: the
/// bidi overrides and isolates U+202A–U+202E and U+2066–U+2069, zero-width characters
/// U+200B–U+200F, U+FEFF, U+061C, the soft hyphen U+00AD…), which can reorder or hide the
/// text around it. The `Cf` table is `unicode-properties`'.
pub(crate) fn is_unsafe(c: char) -> bool {
    c.is_control() || c.general_category() == GeneralCategory::Format
}

/// `c`, or a space in its place when it [`is_unsafe`].
pub(crate) fn safe(c: char) -> char {
    if is_unsafe(c) {
        ' '
    } else {
        c
    }
}

/// Columns `c` takes once written, after [`safe`].
pub(crate) fn char_width(c: char) -> usize {
    // Unsafe characters are written as one space.
    if is_unsafe(c) {
        return 1;
    }
    c.width().unwrap_or(1)
}

/// A short string kept on the stack: a duration, a status code. It knows its width and
/// holds no control characters, so it can be copied into the output as it is.
#[derive(Clone, Copy)]
pub(crate) struct Short {
    buf: [u8; 32],
    len: u8,
    width: u8,
}

impl Short {
    pub(crate) const EMPTY: Short = Short {
        buf: [0; 32],
        len: 0,
        width: 0,
    };

    /// `s` with control and format characters as spaces (see [`is_unsafe`]), cut to the
    /// buffer on a character boundary.
    pub(crate) fn new(s: &str) -> Short {
        let mut short = Short::EMPTY;
        for c in s.chars() {
            let c = safe(c);
            if fmt::Write::write_char(&mut short, c).is_err() {
                break;
            }
        }
        short
    }

    pub(crate) fn as_str(&self) -> &str {
        // Only whole `&str`s are ever copied in, so the bytes are valid UTF-8.
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }

    /// Columns taken.
    pub(crate) fn width(&self) -> usize {
        usize::from(self.width)
    }
}

impl fmt::Write for Short {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let start = usize::from(self.len);
        let end = start + s.len();
        if end > self.buf.len() {
            return Err(fmt::Error);
        }
        self.buf[start..end].copy_from_slice(s.as_bytes());
        // `end <= 32`, and no character takes more columns than bytes, so both fit a `u8`.
        // Callers write text without control characters (numbers, units, `Short::new`'s
        // cleaned characters).
        self.len = end as u8;
        self.width += width(s) as u8;
        Ok(())
    }
}

impl fmt::Debug for Short {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// A duration in human units with one decimal: `850ns`, `12.3µs`, `98.1ms`, `2.5s`.
///
/// Rounds to the nearest tenth and moves to the next unit when the rounding reaches 1000
/// (999.96 ms prints `1.0s`, not `1000.0ms`).
pub(crate) fn duration(d: Duration) -> Short {
    use fmt::Write as _;
    let ns = d.as_nanos();
    let mut out = Short::EMPTY;
    if ns < 1_000 {
        let _ = write!(out, "{ns}ns");
        return out;
    }
    // Tenths of µs, ms and s, rounded half up.
    for (divisor, unit) in [(100u128, "µs"), (100_000, "ms")] {
        let tenths = (ns + divisor / 2) / divisor;
        if tenths < 10_000 {
            // Small enough for u32 formatting, much cheaper than u128's.
            let tenths = tenths as u32;
            let _ = write!(out, "{}.{}{unit}", tenths / 10, tenths % 10);
            return out;
        }
    }
    let tenths = (ns + 50_000_000) / 100_000_000;
    let _ = write!(out, "{}.{}s", tenths / 10, tenths % 10);
    out
}

/// Printable ASCII only: one byte is one column and nothing needs replacing.
fn is_plain(s: &str) -> bool {
    s.bytes().all(|b| (0x20..0x7f).contains(&b))
}

/// Columns `s` takes once written by [`write_fit`].
pub(crate) fn width(s: &str) -> usize {
    if is_plain(s) {
        s.len()
    } else {
        s.chars().map(char_width).sum()
    }
}

/// Writes `s` into at most `max` columns and returns the columns written.
///
/// A longer string is cut and ends in `…`. Control characters (newlines, tabs, escape
/// sequences from untrusted names) and format characters (bidi overrides, zero-width
/// characters) are written as spaces (see [`is_unsafe`]), so a name can neither break a
/// line, inject terminal codes nor reorder what the terminal shows.
pub(crate) fn write_fit(out: &mut Vec<u8>, s: &str, max: usize) -> usize {
    if max == 0 {
        return 0;
    }
    if is_plain(s) {
        if s.len() <= max {
            out.extend_from_slice(s.as_bytes());
            return s.len();
        }
        out.extend_from_slice(&s.as_bytes()[..max - 1]);
        out.extend_from_slice("…".as_bytes());
        return max;
    }
    let fits = width(s) <= max;
    // Room for the `…` when cut; a wide character that would cross it is left out.
    let keep = if fits { max } else { max - 1 };
    let mut written = 0;
    let mut utf8 = [0u8; 4];
    for c in s.chars() {
        let w = char_width(c);
        if written + w > keep {
            break;
        }
        let c = safe(c);
        out.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
        written += w;
    }
    if !fits {
        out.extend_from_slice("…".as_bytes());
        written += 1;
    }
    written
}

/// Writes `n` spaces.
pub(crate) fn pad(out: &mut Vec<u8>, n: usize) {
    out.resize(out.len() + n, b' ');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fit(s: &str, max: usize) -> (String, usize) {
        let mut out = Vec::new();
        let n = write_fit(&mut out, s, max);
        (String::from_utf8(out).unwrap(), n)
    }

    #[test]
    fn durations_use_one_decimal_and_roll_over_to_the_next_unit() {
        let d = |ns: u64| duration(Duration::from_nanos(ns)).as_str().to_owned();
        assert_eq!(d(0), "0ns");
        assert_eq!(d(999), "999ns");
        assert_eq!(d(1_000), "1.0µs");
        assert_eq!(d(12_345), "12.3µs");
        assert_eq!(d(12_350), "12.4µs");
        assert_eq!(d(999_949), "999.9µs");
        assert_eq!(d(999_950), "1.0ms");
        assert_eq!(d(98_100_000), "98.1ms");
        assert_eq!(d(999_960_000), "1.0s");
        assert_eq!(d(2_500_000_000), "2.5s");
        assert_eq!(d(3_600_000_000_000), "3600.0s");
        assert_eq!(
            duration(Duration::MAX).as_str(),
            "18446744073709551616.0s",
            "rounds up the largest duration without overflow"
        );
    }

    #[test]
    fn duration_widths_count_mu_as_one_column() {
        assert_eq!(duration(Duration::from_micros(5)).width(), 5);
        assert_eq!(duration(Duration::from_micros(5)).as_str(), "5.0µs");
    }

    #[test]
    fn fitting_text_cuts_with_an_ellipsis() {
        assert_eq!(fit("checkout", 10), ("checkout".into(), 8));
        assert_eq!(fit("checkout", 8), ("checkout".into(), 8));
        assert_eq!(fit("checkout", 7), ("checko…".into(), 7));
        assert_eq!(fit("checkout", 1), ("…".into(), 1));
        assert_eq!(fit("checkout", 0), ("".into(), 0));
        assert_eq!(fit("", 3), ("".into(), 0));
    }

    #[test]
    fn fitting_counts_characters_not_bytes() {
        assert_eq!(fit("żółw żółw", 9), ("żółw żółw".into(), 9));
        assert_eq!(fit("żółw żółw", 6), ("żółw …".into(), 6));
        assert_eq!(fit("├─ └─", 3), ("├─…".into(), 3));
        assert_eq!(width("├─ └─"), 5);
    }

    #[test]
    fn fitting_counts_wide_characters_as_two_columns_and_marks_as_none() {
        assert_eq!(width("日本語"), 6);
        assert_eq!(fit("日本語", 6), ("日本語".into(), 6));
        // A wide character that would cross the `…` is left out.
        assert_eq!(fit("日本語", 5), ("日本…".into(), 5));
        assert_eq!(fit("日本語", 4), ("日…".into(), 3));
        assert_eq!(width("re\u{301}sume\u{301}"), 6);
        assert_eq!(
            fit("re\u{301}sume\u{301}", 6),
            ("re\u{301}sume\u{301}".into(), 6)
        );
        assert_eq!(Short::new("注文").width(), 4);
    }

    #[test]
    fn control_characters_become_spaces() {
        assert_eq!(fit("a\nb\tc\u{1b}[31m", 20), ("a b c [31m".into(), 10));
        assert_eq!(fit("a\u{85}b", 5), ("a b".into(), 3));
    }

    #[test]
    fn format_characters_become_spaces() {
        // Bidi embeddings and overrides, isolates, zero-width characters, the BOM, the
        // Arabic letter mark, the soft hyphen, a tag character.
        let format = [
            '\u{202a}',
            '\u{202b}',
            '\u{202c}',
            '\u{202d}',
            '\u{202e}',
            '\u{2066}',
            '\u{2067}',
            '\u{2068}',
            '\u{2069}',
            '\u{200b}',
            '\u{200c}',
            '\u{200d}',
            '\u{200e}',
            '\u{200f}',
            '\u{feff}',
            '\u{061c}',
            '\u{00ad}',
            '\u{2060}',
            '\u{e0001}',
        ];
        for c in format {
            assert!(is_unsafe(c), "{c:?}");
            assert_eq!(fit(&format!("a{c}b"), 10), ("a b".into(), 3), "{c:?}");
            assert_eq!(Short::new(&format!("a{c}b")).as_str(), "a b", "{c:?}");
        }
        assert!(!is_unsafe('é') && !is_unsafe('─') && !is_unsafe('µ'));
    }

    #[test]
    fn short_strings_cut_at_a_char_boundary() {
        let s = Short::new(&"µ".repeat(40));
        assert_eq!(s.as_str(), "µ".repeat(16));
        assert_eq!(s.width(), 16);
        assert_eq!(Short::EMPTY.as_str(), "");
    }
}
