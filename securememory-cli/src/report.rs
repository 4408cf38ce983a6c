//! Output helpers shared by `doctor` and `bench`: verdicts, aligned text tables, byte sizes, progress on stderr.

use std::fmt;
use std::io::{IsTerminal, Write};

use serde::Serialize;

/// The verdict of one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Fail,
    /// Informational: not a guarantee, but worth knowing.
    Warn,
    /// The check cannot be carried out on this host.
    Skip,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Pass => "PASS",
            Status::Fail => "FAIL",
            Status::Warn => "WARN",
            Status::Skip => "SKIP",
        })
    }
}

/// A text table with left-aligned columns.
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table with columns padded to their widest cell; the last column is never padded.
    pub fn render(&self) -> String {
        let cols = self.header.len();
        let mut width = vec![0; cols];
        for row in std::iter::once(&self.header).chain(&self.rows) {
            for (i, cell) in row.iter().enumerate().take(cols) {
                width[i] = width[i].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let mut line = |row: &[String]| {
            let mut text = String::new();
            for (i, cell) in row.iter().enumerate().take(cols) {
                if i + 1 == cols {
                    text.push_str(cell);
                } else {
                    text.push_str(&format!("{cell:<w$}  ", w = width[i]));
                }
            }
            out.push_str(text.trim_end());
            out.push('\n');
        };
        line(&self.header);
        let rule: Vec<String> = width.iter().map(|&w| "-".repeat(w)).collect();
        line(&rule);
        for row in &self.rows {
            line(row);
        }
        out
    }
}

/// "8 MiB", "4 KiB", "123 bytes", "unlimited".
pub fn bytes(b: Option<u64>) -> String {
    match b {
        None => "unlimited".to_owned(),
        Some(0) => "0 bytes".to_owned(),
        Some(b) => memcall::Limit::Bytes(b).to_string(),
    }
}

/// Human-friendly nanoseconds: "812 ns", "1.63 µs", "4.2 ms".
pub fn nanos(ns: f64) -> String {
    if ns < 1_000.0 {
        format!("{ns:.0} ns")
    } else if ns < 1_000_000.0 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{:.2} ms", ns / 1e6)
    }
}

/// Progress messages on stderr, rewritten in place on a terminal and one per line otherwise.
pub struct Progress {
    tty: bool,
    dirty: bool,
}

impl Progress {
    pub fn new() -> Progress {
        Progress {
            tty: std::io::stderr().is_terminal(),
            dirty: false,
        }
    }

    pub fn step(&mut self, message: &str) {
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r\x1b[2K{message}");
            self.dirty = true;
        } else {
            let _ = writeln!(err, "{message}");
        }
        let _ = err.flush();
    }

    pub fn done(&mut self) {
        if self.dirty {
            let _ = write!(std::io::stderr(), "\r\x1b[2K");
            self.dirty = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_columns_line_up_and_the_last_is_not_padded() {
        let mut t = Table::new(&["a", "bb", "c"]);
        t.row(vec!["µµµ".into(), "x".into(), "last".into()]);
        let text = t.render();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines, ["a    bb  c", "---  --  ----", "µµµ  x   last"]);
    }

    #[test]
    fn sizes_and_durations_read_naturally() {
        assert_eq!(bytes(None), "unlimited");
        assert_eq!(bytes(Some(0)), "0 bytes");
        assert_eq!(bytes(Some(8 << 20)), "8 MiB");
        assert_eq!(nanos(812.4), "812 ns");
        assert_eq!(nanos(1_634.0), "1.63 µs");
        assert_eq!(nanos(4_200_000.0), "4.20 ms");
    }
}
