//! The database the server reads: opened read-only for every call, with the guard, a row cap
//! and a time limit, and its values turned into JSON.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::limits::Limit;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, ErrorCode, OpenFlags, Statement};
use serde::Serialize;
use serde_json::Value;

use crate::guard::{Guard, PrepareError, Refusal};

/// Virtual-machine steps between two looks at the clock.
const PROGRESS_STEPS: i32 = 1000;
/// The longest string or blob a query may build (a `randomblob(1e9)` would otherwise allocate it).
const MAX_VALUE_BYTES: i32 = 16 * 1024 * 1024;
/// The longest SQL text accepted.
const MAX_SQL_BYTES: i32 = 100 * 1024;

/// What one call may use.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_rows: usize,
    pub time_limit: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("--database {path}: no such file")]
    Missing { path: String },
    #[error("--database {path}: not a readable SQLite database: {reason}")]
    Unreadable { path: String, reason: String },
}

/// Why a call failed; the message is what the caller sees as the tool error.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error("the query ran longer than {} s and was stopped; narrow it down (WHERE, LIMIT) or aggregate", .0.as_secs_f32())]
    TimedOut(Duration),
    #[error("no table named `{0}` (list_tables shows the tables)")]
    UnknownTable(String),
    #[error("SQLite error: {0}")]
    Sqlite(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct TableList {
    pub tables: Vec<TableSummary>,
}

#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct TableSummary {
    pub name: String,
    pub rows: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct TableDescription {
    pub table: String,
    pub columns: Vec<ColumnDescription>,
    /// The columns that reference another table, for joins.
    pub foreign_keys: Vec<ForeignKey>,
}

#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct ColumnDescription {
    pub name: String,
    /// The declared type (`INTEGER`, `TEXT`, `REAL`…), empty when none was declared.
    #[serde(rename = "type")]
    pub column_type: String,
    pub notnull: bool,
    /// Part of the primary key.
    pub pk: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct ForeignKey {
    pub column: String,
    pub references_table: String,
    /// Null when the reference names only the table (its primary key).
    pub references_column: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct QueryResult {
    pub columns: Vec<String>,
    /// One array per row, values in column order: numbers, strings, null; a blob as
    /// `"<blob N bytes>"`.
    pub rows: Vec<Vec<Value>>,
    pub row_count: usize,
    /// More rows matched than were returned.
    pub truncated: bool,
}

/// The database file and the limits every call runs under.
#[derive(Debug, Clone)]
pub struct Database {
    path: PathBuf,
    limits: Limits,
}

impl Database {
    /// Checks that `path` is an SQLite database this process can read.
    pub fn open(path: &Path, limits: Limits) -> Result<Self, OpenError> {
        let shown = path.display().to_string();
        if !path.is_file() {
            return Err(OpenError::Missing { path: shown });
        }
        let database = Self {
            path: path.to_path_buf(),
            limits,
        };
        database.list_tables().map_err(|e| OpenError::Unreadable {
            path: shown,
            reason: e.to_string(),
        })?;
        Ok(database)
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Every table (not SQLite's own) with its row count.
    pub fn list_tables(&self) -> Result<TableList, QueryError> {
        let (connection, _guard) = self.connect()?;
        list_tables(&connection).map_err(|e| self.sqlite_error(e))
    }

    /// The columns and foreign keys of one table.
    pub fn describe_table(&self, table: &str) -> Result<TableDescription, QueryError> {
        let (connection, _guard) = self.connect()?;
        let description = describe_table(&connection, table).map_err(|e| self.sqlite_error(e))?;
        if description.columns.is_empty() {
            return Err(QueryError::UnknownTable(table.to_string()));
        }
        Ok(description)
    }

    /// Runs one read-only statement, keeping at most `max_rows` rows.
    pub fn query(&self, sql: &str) -> Result<QueryResult, QueryError> {
        let (connection, guard) = self.connect()?;
        let mut statement = guard.prepare(&connection, sql).map_err(|e| match e {
            PrepareError::Refused(why) => QueryError::Refused(why),
            PrepareError::Sqlite(e) => self.sqlite_error(e),
        })?;
        read_rows(&mut statement, self.limits.max_rows).map_err(|e| self.sqlite_error(e))
    }

    /// A fresh read-only connection with the guard, the size limits and this call's deadline.
    /// One connection per call: opening an SQLite file is cheap, and calls never share state.
    fn connect(&self) -> Result<(Connection, Guard), QueryError> {
        let connection = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| self.sqlite_error(e))?;
        connection.set_limit(Limit::SQLITE_LIMIT_LENGTH, MAX_VALUE_BYTES);
        connection.set_limit(Limit::SQLITE_LIMIT_SQL_LENGTH, MAX_SQL_BYTES);
        connection.set_limit(Limit::SQLITE_LIMIT_ATTACHED, 0);
        let deadline = Instant::now() + self.limits.time_limit;
        connection.progress_handler(PROGRESS_STEPS, Some(move || Instant::now() >= deadline));
        let guard = Guard::install(&connection);
        Ok((connection, guard))
    }

    /// The progress handler is the only thing that interrupts a statement here.
    fn sqlite_error(&self, error: rusqlite::Error) -> QueryError {
        match error.sqlite_error_code() {
            Some(ErrorCode::OperationInterrupted) => QueryError::TimedOut(self.limits.time_limit),
            _ => QueryError::Sqlite(error.to_string()),
        }
    }
}

fn list_tables(connection: &Connection) -> rusqlite::Result<TableList> {
    let names: Vec<String> = connection
        .prepare(
            "SELECT name FROM sqlite_schema \
             WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name",
        )?
        .query_map([], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    let mut tables = Vec::with_capacity(names.len());
    for name in names {
        let rows = connection.query_row(
            &format!("SELECT count(*) FROM {}", quote_identifier(&name)),
            [],
            |row| row.get(0),
        )?;
        tables.push(TableSummary { name, rows });
    }
    Ok(TableList { tables })
}

/// No columns: there is no such table.
fn describe_table(connection: &Connection, table: &str) -> rusqlite::Result<TableDescription> {
    let columns = connection
        .prepare(r#"SELECT name, type, "notnull", pk FROM pragma_table_info(?1)"#)?
        .query_map([table], |row| {
            Ok(ColumnDescription {
                name: row.get(0)?,
                column_type: row.get(1)?,
                notnull: row.get(2)?,
                pk: row.get::<_, i64>(3)? > 0,
            })
        })?
        .collect::<Result<_, _>>()?;
    let foreign_keys = connection
        .prepare(
            r#"SELECT "from", "table", "to" FROM pragma_foreign_key_list(?1) ORDER BY id, seq"#,
        )?
        .query_map([table], |row| {
            Ok(ForeignKey {
                column: row.get(0)?,
                references_table: row.get(1)?,
                references_column: row.get(2)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(TableDescription {
        table: table.to_string(),
        columns,
        foreign_keys,
    })
}

/// The statement's rows as JSON, at most `max_rows` of them.
fn read_rows(statement: &mut Statement<'_>, max_rows: usize) -> rusqlite::Result<QueryResult> {
    let columns: Vec<String> = statement
        .column_names()
        .into_iter()
        .map(str::to_string)
        .collect();
    let width = columns.len();
    let mut rows = Vec::new();
    let mut truncated = false;
    let mut cursor = statement.raw_query();
    while let Some(row) = cursor.next()? {
        if rows.len() == max_rows {
            truncated = true;
            break;
        }
        let values = (0..width)
            .map(|i| row.get_ref(i).map(to_json))
            .collect::<Result<_, _>>()?;
        rows.push(values);
    }
    Ok(QueryResult {
        columns,
        row_count: rows.len(),
        rows,
        truncated,
    })
}

/// One SQLite value as JSON.
pub fn to_json(value: ValueRef<'_>) -> Value {
    match value {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::from(i),
        // JSON has no infinity (SQLite has no NaN: it stores NULL).
        ValueRef::Real(f) => serde_json::Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or_else(|| Value::String(f.to_string())),
        ValueRef::Text(bytes) => Value::String(String::from_utf8_lossy(bytes).into_owned()),
        ValueRef::Blob(bytes) => Value::String(format!("<blob {} bytes>", bytes.len())),
    }
}

/// `name` as an SQL identifier, whatever it contains.
fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn database(max_rows: usize, time_limit: Duration) -> (tempfile::TempDir, Database) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.db");
        Connection::open(&path)
            .expect("create")
            .execute_batch(
                "CREATE TABLE owners (owner_id INTEGER PRIMARY KEY, name TEXT NOT NULL);
                 CREATE TABLE pets (pet_id INTEGER PRIMARY KEY, name TEXT NOT NULL,
                     owner_id INTEGER REFERENCES owners, weight REAL, photo BLOB);
                 INSERT INTO owners VALUES (1, 'Ada'), (2, 'Grace');
                 INSERT INTO pets VALUES (1, 'Rex', 1, 12.5, x'00010203'), (2, 'Tom', 2, NULL, NULL),
                     (3, 'Kit', 2, 3.25, NULL);",
            )
            .expect("setup");
        let limits = Limits {
            max_rows,
            time_limit,
        };
        let database = Database::open(&path, limits).expect("open");
        (dir, database)
    }

    fn small() -> (tempfile::TempDir, Database) {
        database(500, Duration::from_secs(5))
    }

    #[test]
    fn tables_are_listed_with_row_counts() {
        let (_dir, db) = small();
        let list = db.list_tables().expect("list");
        assert_eq!(
            serde_json::to_value(list).expect("json"),
            json!({"tables": [{"name": "owners", "rows": 2}, {"name": "pets", "rows": 3}]})
        );
    }

    #[test]
    fn a_table_is_described_with_its_columns_and_foreign_keys() {
        let (_dir, db) = small();
        let description =
            serde_json::to_value(db.describe_table("pets").expect("describe")).expect("json");
        assert_eq!(description["table"], "pets");
        assert_eq!(
            description["columns"][0],
            json!({"name": "pet_id", "type": "INTEGER", "notnull": false, "pk": true})
        );
        assert_eq!(
            description["columns"][1],
            json!({"name": "name", "type": "TEXT", "notnull": true, "pk": false})
        );
        assert_eq!(
            description["foreign_keys"],
            json!([{"column": "owner_id", "references_table": "owners", "references_column": null}])
        );
    }

    #[test]
    fn an_unknown_table_is_named_in_the_error() {
        let (_dir, db) = small();
        let error = db.describe_table("invoices").expect_err("unknown");
        assert_eq!(
            error.to_string(),
            "no table named `invoices` (list_tables shows the tables)"
        );
    }

    #[test]
    fn values_map_to_json() {
        let (_dir, db) = small();
        let result = db
            .query("SELECT pet_id, name, weight, photo, 1e999, -1e999 FROM pets ORDER BY pet_id")
            .expect("query");
        assert_eq!(
            result.columns,
            ["pet_id", "name", "weight", "photo", "1e999", "-1e999"]
        );
        assert_eq!(
            result.rows[0],
            vec![
                json!(1),
                json!("Rex"),
                json!(12.5),
                json!("<blob 4 bytes>"),
                json!("inf"),
                json!("-inf")
            ]
        );
        assert_eq!(result.rows[1][2], Value::Null);
        assert_eq!(result.rows[1][3], Value::Null);
        assert_eq!(result.row_count, 3);
        assert!(!result.truncated);
        assert_eq!(to_json(ValueRef::Text("é".as_bytes())), json!("é"));
    }

    #[test]
    fn rows_are_capped_and_the_cap_is_reported() {
        let (_dir, db) = database(2, Duration::from_secs(5));
        let result = db
            .query("SELECT name FROM pets ORDER BY pet_id")
            .expect("query");
        assert_eq!(result.rows, vec![vec![json!("Rex")], vec![json!("Tom")]]);
        assert_eq!(result.row_count, 2);
        assert!(result.truncated);
        let exact = db.query("SELECT name FROM owners").expect("query");
        assert_eq!(exact.row_count, 2);
        assert!(!exact.truncated, "exactly max_rows rows is not truncated");
    }

    #[test]
    fn a_runaway_query_is_stopped_at_the_time_limit() {
        let (_dir, db) = database(500, Duration::from_millis(200));
        let started = Instant::now();
        let error = db
            .query("WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c) SELECT count(*) FROM c")
            .expect_err("runaway");
        assert!(matches!(error, QueryError::TimedOut(_)), "{error}");
        assert!(error
            .to_string()
            .starts_with("the query ran longer than 0.2 s"));
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn huge_values_are_refused_by_the_length_limit() {
        let (_dir, db) = small();
        let error = db
            .query("SELECT length(zeroblob(1000000000))")
            .expect_err("too big");
        assert!(matches!(error, QueryError::Sqlite(_)), "{error}");
    }

    #[test]
    fn refusals_and_sql_errors_are_query_errors() {
        let (_dir, db) = small();
        assert_eq!(
            db.query("DELETE FROM pets").expect_err("write").to_string(),
            "refused: only read-only statements are allowed (DELETE writes)"
        );
        assert!(db
            .query("SELECT nope FROM pets")
            .expect_err("bad column")
            .to_string()
            .starts_with("SQLite error: "));
        // The file is untouched.
        assert_eq!(db.list_tables().expect("list").tables[1].rows, 3);
    }

    #[test]
    fn a_missing_file_or_a_non_database_is_refused_at_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let limits = Limits {
            max_rows: 1,
            time_limit: Duration::from_secs(1),
        };
        assert!(matches!(
            Database::open(&dir.path().join("none.db"), limits),
            Err(OpenError::Missing { .. })
        ));
        let text = dir.path().join("text.db");
        std::fs::write(
            &text,
            "this is not a database, just text long enough to be read",
        )
        .expect("write");
        assert!(matches!(
            Database::open(&text, limits),
            Err(OpenError::Unreadable { .. })
        ));
    }
}
