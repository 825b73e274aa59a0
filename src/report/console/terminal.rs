//! Where the console output goes, whether it gets colour, and how wide it may be.

use std::ffi::OsStr;
use std::fmt;
use std::io::{self, IsTerminal, Write};

/// Width when neither `COLUMNS` nor a terminal says otherwise.
pub(crate) const DEFAULT_WIDTH: usize = 120;

/// The output stream.
pub(crate) enum Target {
    Stderr,
    Stdout,
    /// Any writer; never treated as a terminal.
    Writer(Box<dyn Write + Send>),
}

impl Target {
    pub(crate) fn is_terminal(&self) -> bool {
        match self {
            Target::Stderr => io::stderr().is_terminal(),
            Target::Stdout => io::stdout().is_terminal(),
            Target::Writer(_) => false,
        }
    }

    fn tty_width(&self) -> Option<usize> {
        let size = match self {
            Target::Stderr => terminal_size::terminal_size_of(io::stderr()),
            Target::Stdout => terminal_size::terminal_size_of(io::stdout()),
            Target::Writer(_) => None,
        };
        size.map(|(w, _)| usize::from(w.0))
    }

    /// The width to render at now: `COLUMNS`, else the terminal's, else 120.
    pub(crate) fn width(&self) -> usize {
        let columns = std::env::var_os("COLUMNS");
        resolve_width(columns.as_deref(), || self.tty_width())
    }

    /// Writes one whole block (a locked write, so other output does not interleave).
    pub(crate) fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Target::Stderr => io::stderr().lock().write_all(buf),
            Target::Stdout => {
                let mut out = io::stdout().lock();
                out.write_all(buf)?;
                out.flush()
            }
            Target::Writer(w) => w.write_all(buf),
        }
    }

    pub(crate) fn flush(&mut self) -> io::Result<()> {
        match self {
            Target::Stderr => io::stderr().flush(),
            Target::Stdout => io::stdout().flush(),
            Target::Writer(w) => w.flush(),
        }
    }
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Target::Stderr => "stderr",
            Target::Stdout => "stdout",
            Target::Writer(_) => "writer",
        })
    }
}

/// Colour when writing to a terminal and `NO_COLOR` is unset or empty
/// (<https://no-color.org>).
pub(crate) fn auto_color(is_terminal: bool, no_color: Option<&OsStr>) -> bool {
    is_terminal && no_color.is_none_or(OsStr::is_empty)
}

/// A positive `COLUMNS`, else the terminal width, else [`DEFAULT_WIDTH`].
pub(crate) fn resolve_width(columns: Option<&OsStr>, tty: impl FnOnce() -> Option<usize>) -> usize {
    columns
        .and_then(OsStr::to_str)
        .and_then(|c| c.trim().parse::<usize>().ok())
        .filter(|&c| c > 0)
        .or_else(|| tty().filter(|&w| w > 0))
        .unwrap_or(DEFAULT_WIDTH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_needs_a_terminal_and_no_no_color() {
        assert!(auto_color(true, None));
        assert!(auto_color(true, Some(OsStr::new(""))));
        assert!(!auto_color(true, Some(OsStr::new("1"))));
        assert!(!auto_color(false, None));
    }

    #[test]
    fn width_prefers_columns_then_the_terminal() {
        let c = |s: &str| Some(OsStr::new(s).to_owned());
        assert_eq!(resolve_width(c("80").as_deref(), || Some(200)), 80);
        assert_eq!(resolve_width(c(" 90 ").as_deref(), || None), 90);
        assert_eq!(resolve_width(c("0").as_deref(), || Some(200)), 200);
        assert_eq!(resolve_width(c("wide").as_deref(), || None), DEFAULT_WIDTH);
        assert_eq!(resolve_width(None, || Some(0)), DEFAULT_WIDTH);
        assert_eq!(resolve_width(None, || None), DEFAULT_WIDTH);
    }
}
