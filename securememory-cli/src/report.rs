//! Output helpers shared by `doctor` and `bench`: verdicts, aligned text tables, byte sizes, progress on stderr.

use std::io::{IsTerminal, Write};

pub use proofs::Status;

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
        self.render_within(None)
    }

    /// As [`Table::render`], with the last column wrapped (continuation lines aligned under it) so no line is
    /// wider than `max` columns, when given.
    pub fn render_within(&self, max: Option<usize>) -> String {
        let cols = self.header.len();
        let mut width = vec![0; cols];
        for row in std::iter::once(&self.header).chain(&self.rows) {
            for (i, cell) in row.iter().enumerate().take(cols) {
                width[i] = width[i].max(cell.chars().count());
            }
        }
        let start: usize = width.iter().take(cols - 1).map(|w| w + 2).sum();
        let wrap_at = max.map(|max| max.saturating_sub(start).max(20));
        if let Some(w) = wrap_at {
            width[cols - 1] = width[cols - 1].min(w);
        }
        let mut out = String::new();
        let mut line = |row: &[String]| {
            let mut text = String::new();
            for (i, cell) in row.iter().enumerate().take(cols) {
                if i + 1 < cols {
                    text.push_str(&format!("{cell:<w$}  ", w = width[i]));
                    continue;
                }
                let last = match wrap_at {
                    Some(w) => wrap(cell, w),
                    None => vec![cell.clone()],
                };
                for (n, part) in last.iter().enumerate() {
                    if n > 0 {
                        out.push_str(text.trim_end());
                        out.push('\n');
                        text = " ".repeat(start);
                    }
                    text.push_str(part);
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

/// `text` in lines of at most `width` characters, broken between words (a longer word is split).
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut lines = Vec::new();
    let mut current = String::new();
    for word in text.split_whitespace() {
        let mut word: Vec<char> = word.chars().collect();
        while word.len() > width {
            if !current.is_empty() {
                lines.push(std::mem::take(&mut current));
            }
            lines.push(word.drain(..width).collect());
        }
        let word: String = word.into_iter().collect();
        let len = current.chars().count();
        if len > 0 && len + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut current));
        }
        if !current.is_empty() {
            current.push(' ');
        }
        current.push_str(&word);
    }
    if !current.is_empty() || lines.is_empty() {
        lines.push(current);
    }
    lines
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
    fn long_last_cells_wrap_under_their_column() {
        let mut t = Table::new(&["a", "b"]);
        t.row(vec![
            "x".into(),
            "one two three four five six seven eight nine ten".into(),
        ]);
        let text = t.render_within(Some(24));
        assert!(text.lines().all(|l| l.chars().count() <= 24), "{text}");
        assert!(
            text.contains("\n   "),
            "continuation lines are indented: {text}"
        );
        assert_eq!(wrap("abcdefgh", 3), ["abc", "def", "gh"]);
        assert_eq!(wrap("", 10), [""]);
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
