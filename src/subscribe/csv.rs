//! Subscriber CSV files: a header row with an `email` column, optionally
//! `name` and `timezone` (an IANA name such as `America/New_York`, for
//! lists sent at each reader's hour; other columns are ignored, so a
//! spreadsheet export works). A
//! `status` column, when present, keeps only rows that are `confirmed`, so
//! `herald subscribers export --all` can be read back safely.
//!
//! Names come from readers (the sign-up form), so an export must never hand
//! a spreadsheet a formula: a cell that starts with `=`, `+`, `-`, `@`, a tab
//! or a carriage return is written with a `'` before it ([`neutralise`]),
//! which spreadsheets show as text. Reading a file takes that `'` off again
//! ([`restore`]), so an export reads back exactly.

use std::path::Path;

use crate::collect::Problem;
use crate::email::{clean_display_name, EmailAddress};

/// A row read from a CSV file.
pub type Row = (EmailAddress, Option<String>);

/// A reader's time zone from the `timezone` column.
pub type Zone = (EmailAddress, chrono_tz::Tz);

/// What a CSV file holds: its good rows, the time zones its `timezone`
/// column gives, and its bad rows as problems.
pub type Read = (Vec<Row>, Vec<Zone>, Vec<Problem>);

/// Reads `path`. Bad rows become problems naming file and line; good rows
/// are returned in file order, without duplicates.
pub fn read_csv(path: &Path) -> Result<Read, Problem> {
    let bytes =
        std::fs::read(path).map_err(|e| Problem::new(path, None, format!("cannot read: {e}")))?;
    read_csv_bytes(path, &bytes)
}

pub fn read_csv_bytes(path: &Path, bytes: &[u8]) -> Result<Read, Problem> {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    // A file in another encoding would import every accented name wrongly:
    // none of it is read.
    if let Err(e) = std::str::from_utf8(bytes) {
        let line = bytes[..e.valid_up_to()].iter().filter(|b| **b == b'\n').count() + 1;
        return Err(Problem::new(
            path,
            Some(line),
            "is not UTF-8 text, so nothing in it was imported; save it as UTF-8 (spreadsheets call it \"CSV UTF-8\") and import it again".into(),
        ));
    }
    let mut reader =
        csv::ReaderBuilder::new().flexible(true).trim(csv::Trim::All).from_reader(bytes);
    let headers = reader
        .headers()
        .map_err(|e| Problem::new(path, Some(1), format!("cannot read the header row: {e}")))?
        .clone();
    let column = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
    let Some(email_col) = column("email") else {
        return Err(Problem::new(
            path,
            Some(1),
            format!("the header row has no `email` column (found: {}); the first line must be `email,name`", headers.iter().collect::<Vec<_>>().join(",")),
        ));
    };
    let name_col = column("name");
    let status_col = column("status");
    let zone_col = column("timezone");
    let mut rows: Vec<Row> = Vec::new();
    let mut zones: Vec<Zone> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut problems = Vec::new();
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map(|p| p.line() as usize);
                problems.push(Problem::new(path, line, format!("cannot read this row: {e}")));
                continue;
            }
        };
        let line = record.position().map(|p| p.line() as usize);
        if record.iter().all(str::is_empty) {
            continue;
        }
        if let Some(status) = status_col.and_then(|c| record.get(c)) {
            if !status.is_empty() && status != "confirmed" {
                continue;
            }
        }
        let raw = restore(record.get(email_col).unwrap_or(""));
        match EmailAddress::parse(raw) {
            Ok(email) => {
                if seen.insert(email.clone()) {
                    let name = name_col
                        .and_then(|c| record.get(c))
                        .map(restore)
                        .and_then(clean_display_name);
                    if let Some(zone) =
                        zone_col.and_then(|c| record.get(c)).filter(|z| !z.is_empty())
                    {
                        match zone.parse::<chrono_tz::Tz>() {
                            Ok(tz) => zones.push((email.clone(), tz)),
                            Err(_) => problems.push(Problem::new(
                                path,
                                line,
                                format!("`{}` is not an IANA time zone name like \"America/New_York\"; the reader gets the list's", crate::text::clean_line(zone)),
                            )),
                        }
                    }
                    rows.push((email, name));
                }
            }
            Err(e) => problems.push(Problem::new(path, line, format!("{e}; row skipped"))),
        }
    }
    Ok((rows, zones, problems))
}

/// Characters that make a spreadsheet read a cell as a formula (OWASP's
/// list for CSV injection).
const FORMULA_STARTS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// A cell as it is written to a CSV file: with a `'` before a formula start.
pub fn neutralise(cell: &str) -> std::borrow::Cow<'_, str> {
    if cell.starts_with(FORMULA_STARTS) {
        std::borrow::Cow::Owned(format!("'{cell}"))
    } else {
        std::borrow::Cow::Borrowed(cell)
    }
}

/// A cell as read from a CSV file: the `'` that [`neutralise`] put before a
/// formula start taken off.
pub fn restore(cell: &str) -> &str {
    match cell.strip_prefix('\'') {
        Some(rest) if rest.starts_with(FORMULA_STARTS) => rest,
        _ => cell,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rows_and_reports_bad_lines() {
        let text = "email,name,city\nada@example.com,Ada,London\nnot-an-address,Bob,Paris\n\nADA@example.com,Dup,\n\"grace@example.org\",\"Hopper, Grace\",NYC\n";
        let (rows, _, problems) = read_csv_bytes(Path::new("list.csv"), text.as_bytes()).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].1.as_deref(), Some("Hopper, Grace"));
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].line, Some(3));
        assert!(
            problems[0].to_string().starts_with("list.csv:3: `not-an-address`"),
            "{}",
            problems[0]
        );
    }

    #[test]
    fn formula_cells_are_neutralised_and_read_back() {
        for cell in ["=1+2", "+1", "-x", "@x", "\tx", "\rx"] {
            let written = neutralise(cell);
            assert!(written.starts_with('\''), "{written}");
            assert_eq!(restore(&written), cell);
        }
        for cell in ["Ann", "O'Brien", "'quoted'", "", "a=b"] {
            assert_eq!(neutralise(cell), cell);
            assert_eq!(restore(cell), cell);
        }
    }

    #[test]
    fn a_file_that_is_not_utf8_gets_a_hint() {
        // A spreadsheet's "CSV" in Windows-1252: Zoë's ë is one byte.
        let bytes = b"email,name\nada@example.com,Ada\nzoe@example.com,Zo\xeb\n";
        let problem = read_csv_bytes(Path::new("list.csv"), bytes).unwrap_err();
        let said = problem.to_string();
        assert!(said.starts_with("list.csv:3:"), "{said}");
        assert!(said.contains("save it as UTF-8"), "{said}");
    }

    #[test]
    fn needs_an_email_column_and_honours_status() {
        assert!(read_csv_bytes(Path::new("x.csv"), b"mail,name\na@example.com,A\n").is_err());
        let text = "email,name,status\na@example.com,A,confirmed\nb@example.com,B,unsubscribed\n";
        let (rows, _, _) = read_csv_bytes(Path::new("x.csv"), text.as_bytes()).unwrap();
        assert_eq!(rows.len(), 1);
    }

    #[test]
    fn a_timezone_column_gives_readers_their_zone() {
        let text = "email,name,timezone\na@example.com,A,Australia/Sydney\nb@example.com,B,\nc@example.com,C,Mars/Olympus\n";
        let (rows, zones, problems) = read_csv_bytes(Path::new("x.csv"), text.as_bytes()).unwrap();
        assert_eq!(rows.len(), 3, "a bad zone does not drop the reader");
        assert_eq!(zones.len(), 1);
        assert_eq!(zones[0].0.as_str(), "a@example.com");
        assert_eq!(zones[0].1, chrono_tz::Australia::Sydney);
        assert_eq!(problems.len(), 1);
        let said = problems[0].to_string();
        assert!(said.starts_with("x.csv:4:") && said.contains("Mars/Olympus"), "{said}");
    }
}
