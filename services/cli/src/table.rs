//! Human output: aligned tables with capitalised headers, and `KEY  value`
//! listings for one object. Plain text, no colours, no trailing spaces, so
//! the output pipes and diffs cleanly.

use std::io::{self, Write};

/// Space between columns.
const GAP: &str = "  ";

/// A table of fixed columns; cells are text, an empty cell prints `-`.
pub struct Table {
    headers: Vec<&'static str>,
    right: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&'static str]) -> Table {
        Table {
            headers: headers.to_vec(),
            right: vec![false; headers.len()],
            rows: Vec::new(),
        }
    }

    /// Aligns the column `header` to the right (numbers).
    pub fn right(mut self, header: &str) -> Table {
        if let Some(i) = self.headers.iter().position(|h| *h == header) {
            self.right[i] = true;
        }
        self
    }

    pub fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.headers.len(), "one cell per column");
        self.rows.push(cells);
    }

    pub fn write(&self, out: &mut impl Write) -> io::Result<()> {
        let cells = |row: &[String]| -> Vec<String> {
            row.iter()
                .map(|c| {
                    if c.is_empty() {
                        "-".to_owned()
                    } else {
                        c.clone()
                    }
                })
                .collect()
        };
        let rows: Vec<Vec<String>> = self.rows.iter().map(|r| cells(r)).collect();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &rows {
            for (w, c) in widths.iter_mut().zip(row) {
                *w = (*w).max(c.chars().count());
            }
        }
        let headers: Vec<String> = self.headers.iter().map(|h| (*h).to_owned()).collect();
        for row in std::iter::once(&headers).chain(&rows) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i > 0 {
                    line.push_str(GAP);
                }
                let pad = " ".repeat(widths[i].saturating_sub(cell.chars().count()));
                if self.right[i] {
                    line.push_str(&pad);
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    line.push_str(&pad);
                }
            }
            writeln!(out, "{}", line.trim_end())?;
        }
        Ok(())
    }
}

/// One object as `KEY  value` lines, keys aligned.
pub fn pairs(out: &mut impl Write, pairs: &[(&str, String)]) -> io::Result<()> {
    let width = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (key, value) in pairs {
        let value = if value.is_empty() { "-" } else { value };
        writeln!(out, "{key:<width$}{GAP}{value}")?;
    }
    Ok(())
}

/// An optional value as a cell: empty when absent.
pub fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

/// A flag as a cell.
pub fn yes(b: bool) -> String {
    if b { "yes" } else { "no" }.to_owned()
}

/// A free-form JSON object (a provider's config, a message's metadata) as a
/// cell: compact JSON.
pub fn json(v: &impl serde::Serialize) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// A time as the CLI prints it: RFC 3339 in UTC.
pub fn time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_aligned_with_numbers_to_the_right_and_no_trailing_space() {
        let mut t = Table::new(&["NAME", "COUNT", "NOTE"]).right("COUNT");
        t.row(vec!["a".into(), "7".into(), String::new()]);
        t.row(vec!["longer".into(), "1234".into(), "x".into()]);
        let mut out = Vec::new();
        t.write(&mut out).expect("write");
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            "NAME    COUNT  NOTE\n\
             a           7  -\n\
             longer   1234  x\n"
        );
    }

    #[test]
    fn pairs_align_their_keys() {
        let mut out = Vec::new();
        pairs(&mut out, &[("ID", "1".into()), ("STATUS", String::new())]).expect("write");
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            "ID      1\nSTATUS  -\n"
        );
    }
}
