//! How answers present numbers and tables: thousands separators, two decimals for money, markdown
//! tables whose cells cannot break the table.

use serde_json::Value;

/// `1234567.891` → `1,234,567.89`.
pub fn format_amount(value: f64) -> String {
    let fixed = format!("{:.2}", value.abs());
    let (int, frac) = fixed.split_once('.').unwrap_or((&fixed, "00"));
    let sign = if value < 0.0 && fixed != "0.00" {
        "-"
    } else {
        ""
    };
    format!("{sign}{}.{frac}", group_thousands(int))
}

/// `1234567` → `1,234,567`.
pub fn format_count(value: i64) -> String {
    let digits = value.unsigned_abs().to_string();
    let sign = if value < 0 { "-" } else { "" };
    format!("{sign}{}", group_thousands(&digits))
}

fn group_thousands(digits: &str) -> String {
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// How a column's values are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    Text,
    /// Money: two decimals, thousands separators, right-aligned.
    Amount,
    /// Whole numbers with thousands separators, right-aligned.
    Count,
}

/// A markdown table; `columns` pairs each header with how its cells are shown.
pub fn table(columns: &[(&str, Column)], rows: &[Vec<Value>]) -> String {
    let mut out = String::new();
    out.push('|');
    for (header, _) in columns {
        out.push_str(&format!(" {} |", cell_text(header)));
    }
    out.push_str("\n|");
    for (_, kind) in columns {
        out.push_str(if *kind == Column::Text {
            "---|"
        } else {
            "---:|"
        });
    }
    for row in rows {
        out.push_str("\n|");
        for (i, (_, kind)) in columns.iter().enumerate() {
            let shown = row.get(i).map(|v| show(v, *kind)).unwrap_or_default();
            out.push_str(&format!(" {} |", cell_text(&shown)));
        }
    }
    out
}

fn show(value: &Value, kind: Column) -> String {
    let number = match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    match (kind, number) {
        (Column::Amount, Some(n)) => format_amount(n),
        (Column::Count, Some(n)) if n.fract() == 0.0 && n.abs() < 9e15 => format_count(n as i64),
        (Column::Count, Some(n)) => format_amount(n),
        _ => plain(value),
    }
}

/// A JSON value as prose: strings without quotes, null as empty.
pub fn plain(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Keeps a cell on one line and its pipes from ending the cell.
fn cell_text(text: &str) -> String {
    text.replace('|', "\\|").replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn amounts_have_separators_and_two_decimals() {
        assert_eq!(format_amount(0.0), "0.00");
        assert_eq!(format_amount(999.999), "1,000.00");
        assert_eq!(format_amount(1234567.891), "1,234,567.89");
        assert_eq!(format_amount(123456.5), "123,456.50");
        assert_eq!(format_amount(-9876543.2), "-9,876,543.20");
        assert_eq!(format_amount(-0.001), "0.00");
    }

    #[test]
    fn counts_have_separators() {
        assert_eq!(format_count(0), "0");
        assert_eq!(format_count(999), "999");
        assert_eq!(format_count(1000), "1,000");
        assert_eq!(format_count(-1234567), "-1,234,567");
    }

    #[test]
    fn tables_align_numbers_and_escape_cells() {
        let t = table(
            &[("Year", Column::Text), ("Sales", Column::Amount)],
            &[
                vec![json!("2022"), json!(1234567.8)],
                vec![json!("a|b\nc"), json!("12.5")],
                vec![json!(null)],
            ],
        );
        assert_eq!(
            t,
            "| Year | Sales |\n|---|---:|\n| 2022 | 1,234,567.80 |\n| a\\|b c | 12.50 |\n|  |  |"
        );
    }
}
