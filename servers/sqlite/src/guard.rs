//! The read-only guard: whether a piece of SQL from a caller may run.
//!
//! Three checks, each covering what the others cannot:
//! - SQLite's authorizer sees every action a statement would take while it is compiled, so
//!   writes (also inside a CTE or an `EXPLAIN`), schema changes, temp tables, `ATTACH`/`DETACH`,
//!   transactions, state-changing pragmas and code-loading functions are refused there with
//!   their reason.
//! - Exactly one statement: the text after the first statement may only be whitespace,
//!   semicolons and comments.
//! - `sqlite3_stmt_readonly` must hold, which also catches statements the authorizer has no
//!   action code for (`VACUUM`).
//!
//! The connection itself is opened read-only as well; the guard is what turns an attempt into a
//! clear refusal instead of an SQLite error, and it covers what a read-only file does not (temp
//! tables, `ATTACH ':memory:'`, `VACUUM INTO`, pragmas).

use std::sync::{Arc, Mutex, PoisonError};

use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::{Connection, Statement};

/// Why SQL was not run. The messages are shown to the caller (and so to an LLM): they say what
/// was refused and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("refused: only read-only statements are allowed ({0} writes)")]
    Writes(String),
    #[error("refused: {0} is not allowed")]
    NotAllowed(String),
    #[error("refused: PRAGMA {0} changes state")]
    PragmaChangesState(String),
    #[error("refused: one statement at a time (found a second: {0})")]
    SecondStatement(String),
    #[error("refused: no SQL statement found")]
    Empty,
    #[error("refused: parameters are not supported; write the values into the SQL")]
    Parameters,
}

/// Why a statement could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error("SQLite error: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// The guard installed on one connection: its authorizer records the first refusal here.
pub struct Guard {
    refusal: Arc<Mutex<Option<Refusal>>>,
}

impl Guard {
    /// Installs the authorizer on `connection`; prepare caller SQL only with [`Guard::prepare`].
    pub fn install(connection: &Connection) -> Self {
        let refusal = Arc::new(Mutex::new(None));
        let slot = Arc::clone(&refusal);
        connection.authorizer(Some(move |context: AuthContext<'_>| {
            match authorize(&context.action) {
                Ok(()) => Authorization::Allow,
                Err(why) => {
                    slot.lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .get_or_insert(why);
                    Authorization::Deny
                }
            }
        }));
        Self { refusal }
    }

    /// Prepares `sql` if it is exactly one read-only statement without parameters.
    pub fn prepare<'c>(
        &self,
        connection: &'c Connection,
        sql: &str,
    ) -> Result<Statement<'c>, PrepareError> {
        self.take_refusal();
        let statement = match connection.prepare(sql) {
            Ok(statement) => statement,
            Err(error) => {
                return Err(match self.take_refusal() {
                    // SQLite checks the write to its schema table before the statement's own
                    // action (DROP TABLE deletes a schema row first): name the statement.
                    Some(Refusal::Writes(what)) if what == SCHEMA_WRITE => {
                        Refusal::Writes(statement_kind(sql)).into()
                    }
                    Some(why) => why.into(),
                    None => error.into(),
                });
            }
        };
        // A statement with parameters would expand differently from the text it came from.
        if statement.parameter_count() > 0 {
            return Err(Refusal::Parameters.into());
        }
        let first = statement.expanded_sql().ok_or(Refusal::Empty)?;
        let rest = sql.strip_prefix(first.as_str()).unwrap_or_default();
        if first.trim().is_empty() {
            return Err(Refusal::Empty.into());
        }
        if let Some(second) = second_statement(rest) {
            return Err(Refusal::SecondStatement(excerpt(second)).into());
        }
        if !statement.readonly() {
            return Err(Refusal::Writes(statement_kind(&first)).into());
        }
        Ok(statement)
    }

    fn take_refusal(&self) -> Option<Refusal> {
        self.refusal
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

/// Stands for "a write to SQLite's schema table" until the statement is named.
const SCHEMA_WRITE: &str = "the schema";

/// The tables where SQLite keeps the schema.
fn is_schema_table(name: &str) -> bool {
    [
        "sqlite_master",
        "sqlite_schema",
        "sqlite_temp_master",
        "sqlite_temp_schema",
    ]
    .iter()
    .any(|t| t.eq_ignore_ascii_case(name))
}

/// The authorizer's decision for one action of a statement being compiled.
pub fn authorize(action: &AuthAction<'_>) -> Result<(), Refusal> {
    let writes = |what: &str| Err(Refusal::Writes(what.to_string()));
    match action {
        AuthAction::Insert { table_name }
        | AuthAction::Update { table_name, .. }
        | AuthAction::Delete { table_name }
            if is_schema_table(table_name) =>
        {
            writes(SCHEMA_WRITE)
        }
        AuthAction::Select | AuthAction::Read { .. } | AuthAction::Recursive => Ok(()),
        AuthAction::Function { function_name } => function(function_name),
        AuthAction::Pragma {
            pragma_name,
            pragma_value,
        } => pragma(pragma_name, *pragma_value),
        AuthAction::Insert { .. } => writes("INSERT"),
        AuthAction::Update { .. } => writes("UPDATE"),
        AuthAction::Delete { .. } => writes("DELETE"),
        AuthAction::CreateTable { .. } => writes("CREATE TABLE"),
        AuthAction::CreateTempTable { .. } => writes("CREATE TEMP TABLE"),
        AuthAction::CreateIndex { .. } | AuthAction::CreateTempIndex { .. } => {
            writes("CREATE INDEX")
        }
        AuthAction::CreateView { .. } | AuthAction::CreateTempView { .. } => writes("CREATE VIEW"),
        AuthAction::CreateTrigger { .. } | AuthAction::CreateTempTrigger { .. } => {
            writes("CREATE TRIGGER")
        }
        AuthAction::CreateVtable { .. } => writes("CREATE VIRTUAL TABLE"),
        AuthAction::DropTable { .. } | AuthAction::DropTempTable { .. } => writes("DROP TABLE"),
        AuthAction::DropIndex { .. } | AuthAction::DropTempIndex { .. } => writes("DROP INDEX"),
        AuthAction::DropView { .. } | AuthAction::DropTempView { .. } => writes("DROP VIEW"),
        AuthAction::DropTrigger { .. } | AuthAction::DropTempTrigger { .. } => {
            writes("DROP TRIGGER")
        }
        AuthAction::DropVtable { .. } => writes("DROP TABLE"),
        AuthAction::AlterTable { .. } => writes("ALTER TABLE"),
        AuthAction::Reindex { .. } => writes("REINDEX"),
        AuthAction::Analyze { .. } => writes("ANALYZE"),
        AuthAction::Attach { .. } => Err(Refusal::NotAllowed("ATTACH".into())),
        AuthAction::Detach { .. } => Err(Refusal::NotAllowed("DETACH".into())),
        // Each query runs alone on its own connection: there is nothing to group.
        AuthAction::Transaction { .. } => Err(Refusal::NotAllowed(
            "transaction control (BEGIN, COMMIT, ROLLBACK)".into(),
        )),
        AuthAction::Savepoint { .. } => Err(Refusal::NotAllowed("SAVEPOINT".into())),
        AuthAction::Unknown { code, .. } => Err(Refusal::NotAllowed(format!(
            "an SQLite action this server does not know (code {code})"
        ))),
        // AuthAction is non-exhaustive: whatever a newer rusqlite adds is refused until reviewed.
        _ => Err(Refusal::NotAllowed(format!("{action:?}"))),
    }
}

/// Functions that load code or hand out pointers (`load_extension` is also disabled on the
/// connection; this refusal names it instead of failing obscurely).
const CODE_LOADING_FUNCTIONS: &[&str] = &["load_extension", "fts3_tokenizer"];

fn function(name: &str) -> Result<(), Refusal> {
    if CODE_LOADING_FUNCTIONS
        .iter()
        .any(|f| f.eq_ignore_ascii_case(name))
    {
        return Err(Refusal::NotAllowed(format!("the function {name}()")));
    }
    Ok(())
}

/// Pragmas whose argument names what to read (`PRAGMA table_info(orders)`), not a new value.
const READ_PRAGMAS_WITH_ARGUMENT: &[&str] = &[
    "table_info",
    "table_xinfo",
    "table_list",
    "index_info",
    "index_xinfo",
    "index_list",
    "foreign_key_list",
    "foreign_key_check",
    "integrity_check",
    "quick_check",
];

/// Pragmas that change something even without a value.
const STATE_CHANGING_PRAGMAS: &[&str] = &[
    "optimize",
    "shrink_memory",
    "incremental_vacuum",
    "wal_checkpoint",
];

/// A pragma may run when it only reads: either one of the readers above, or any other pragma
/// without a value (`PRAGMA journal_mode` reports the mode; `PRAGMA journal_mode = WAL` sets it).
pub fn pragma(name: &str, value: Option<&str>) -> Result<(), Refusal> {
    let name = name.to_ascii_lowercase();
    if READ_PRAGMAS_WITH_ARGUMENT.contains(&name.as_str()) {
        return Ok(());
    }
    if STATE_CHANGING_PRAGMAS.contains(&name.as_str()) {
        return Err(Refusal::PragmaChangesState(name));
    }
    match value {
        None => Ok(()),
        Some(value) => Err(Refusal::PragmaChangesState(format!("{name} = {value}"))),
    }
}

/// The start of a second statement in the text after the first one, if there is one: anything
/// but whitespace, semicolons and comments.
pub fn second_statement(rest: &str) -> Option<&str> {
    let start = skip_insignificant(rest);
    (start < rest.len()).then(|| &rest[start..])
}

/// Index of the first byte in `text` that is not whitespace, `;` or inside a comment.
fn skip_insignificant(text: &str) -> usize {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b';' => i += 1,
            b if b.is_ascii_whitespace() => i += 1,
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                i = text[i..].find('\n').map_or(bytes.len(), |n| i + n + 1);
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                // An unterminated block comment runs to the end, as in SQLite.
                i = text[i + 2..]
                    .find("*/")
                    .map_or(bytes.len(), |n| i + 2 + n + 2);
            }
            _ => break,
        }
    }
    i
}

/// What a statement is, from its leading keywords (`VACUUM`, `DROP TABLE`, `PRAGMA
/// journal_mode`), for the refusal of a statement that writes.
fn statement_kind(sql: &str) -> String {
    let start = skip_insignificant(sql);
    let mut words = sql[start..]
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
        .filter(|w| !w.is_empty());
    let Some(first) = words.next().map(str::to_ascii_uppercase) else {
        return "this statement".into();
    };
    match first.as_str() {
        "PRAGMA" => match words.next() {
            Some(name) => format!("PRAGMA {}", name.to_ascii_lowercase()),
            None => first,
        },
        "CREATE" | "DROP" | "ALTER" => {
            let mut kind = vec![first];
            for word in words.take(3).map(str::to_ascii_uppercase) {
                let object = matches!(word.as_str(), "TABLE" | "INDEX" | "VIEW" | "TRIGGER");
                kind.push(if word == "TEMPORARY" {
                    "TEMP".into()
                } else {
                    word
                });
                if object {
                    break;
                }
            }
            kind.join(" ")
        }
        _ => first,
    }
}

/// The first line of a statement, cut short, to quote in a refusal.
fn excerpt(sql: &str) -> String {
    const MAX: usize = 60;
    let line = sql.lines().next().unwrap_or_default().trim();
    if line.chars().count() > MAX {
        format!("{}…", line.chars().take(MAX).collect::<String>())
    } else if sql.trim() != line {
        format!("{line}…")
    } else {
        line.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::OpenFlags;

    /// A small database opened the way the server opens one: read-only, guard installed.
    fn connection() -> (tempfile::TempDir, Connection, Guard) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.db");
        let setup = Connection::open(&path).expect("create");
        setup
            .execute_batch(
                "CREATE TABLE x (id INTEGER PRIMARY KEY, name TEXT);
                 INSERT INTO x VALUES (1, 'a'), (2, 'b');
                 CREATE INDEX x_by_name ON x(name);",
            )
            .expect("setup");
        drop(setup);
        let connection = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .expect("open");
        let guard = Guard::install(&connection);
        (dir, connection, guard)
    }

    fn refusal(sql: &str) -> String {
        let (_dir, connection, guard) = connection();
        let outcome = match guard.prepare(&connection, sql) {
            Ok(_) => panic!("{sql} was allowed"),
            Err(PrepareError::Refused(why)) => why.to_string(),
            Err(PrepareError::Sqlite(e)) => panic!("{sql}: SQLite error instead of a refusal: {e}"),
        };
        outcome
    }

    fn allowed(sql: &str) {
        let (_dir, connection, guard) = connection();
        let outcome = guard.prepare(&connection, sql).map(|_| ());
        if let Err(e) = outcome {
            panic!("{sql} was refused: {e}");
        }
    }

    #[test]
    fn reads_are_allowed() {
        allowed("SELECT * FROM x");
        allowed("  select count(*) from x ;  ");
        allowed("SELECT 1;;  -- done\n");
        allowed("SELECT 1; /* a comment */ ; -- and another");
        allowed("-- leading comment\nSELECT name FROM x WHERE name = 'a;b'");
        allowed("WITH t AS (SELECT id FROM x) SELECT * FROM t");
        allowed("WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 5) SELECT n FROM c");
        allowed("EXPLAIN QUERY PLAN SELECT * FROM x WHERE name = 'a'");
        allowed("SELECT name FROM sqlite_schema");
        allowed("SELECT * FROM pragma_table_info('x')");
        allowed("SELECT 'é' || name FROM x");
    }

    #[test]
    fn writes_of_every_kind_are_refused_naming_the_write() {
        for (sql, what) in [
            ("INSERT INTO x VALUES (3, 'c')", "INSERT"),
            ("REPLACE INTO x VALUES (1, 'c')", "INSERT"),
            ("UPDATE x SET name = 'z'", "UPDATE"),
            ("DELETE FROM x", "DELETE"),
            ("DROP TABLE x", "DROP TABLE"),
            ("DROP INDEX x_by_name", "DROP INDEX"),
            ("CREATE TABLE y (a)", "CREATE TABLE"),
            ("CREATE TABLE y AS SELECT * FROM x", "CREATE TABLE"),
            ("CREATE INDEX y ON x(name)", "CREATE INDEX"),
            ("CREATE VIEW v AS SELECT 1", "CREATE VIEW"),
            (
                "CREATE TRIGGER t AFTER INSERT ON x BEGIN SELECT 1; END",
                "CREATE TRIGGER",
            ),
            ("ALTER TABLE x ADD COLUMN z", "ALTER TABLE"),
            ("ALTER TABLE x RENAME TO y", "ALTER TABLE"),
            ("REINDEX", "REINDEX"),
            ("REINDEX x_by_name", "REINDEX"),
            ("ANALYZE", "ANALYZE"),
            ("CREATE TEMP TABLE t (a)", "CREATE TEMP TABLE"),
            ("CREATE TEMPORARY TABLE t AS SELECT 1", "CREATE TEMP TABLE"),
            ("CREATE TEMP VIEW v AS SELECT 1", "CREATE TEMP VIEW"),
            ("WITH t AS (SELECT 1) DELETE FROM x", "DELETE"),
            (
                "WITH t AS (SELECT 1 AS id) INSERT INTO x SELECT id, 'q' FROM t",
                "INSERT",
            ),
            ("EXPLAIN DELETE FROM x", "DELETE"),
        ] {
            assert_eq!(
                refusal(sql),
                format!("refused: only read-only statements are allowed ({what} writes)"),
                "{sql}"
            );
        }
    }

    #[test]
    fn vacuum_is_refused() {
        // VACUUM has no authorizer action; sqlite3_stmt_readonly catches it.
        assert_eq!(
            refusal("VACUUM"),
            "refused: only read-only statements are allowed (VACUUM writes)"
        );
        assert_eq!(
            refusal("vacuum into '/tmp/copy-of-the-database.db'"),
            "refused: only read-only statements are allowed (VACUUM writes)"
        );
    }

    #[test]
    fn attach_detach_and_transactions_are_refused() {
        assert_eq!(
            refusal("ATTACH DATABASE ':memory:' AS scratch"),
            "refused: ATTACH is not allowed"
        );
        assert_eq!(
            refusal("ATTACH '/etc/passwd' AS p"),
            "refused: ATTACH is not allowed"
        );
        assert_eq!(
            refusal("DETACH DATABASE temp"),
            "refused: DETACH is not allowed"
        );
        assert!(refusal("BEGIN").contains("transaction control"));
        assert!(refusal("COMMIT").contains("transaction control"));
        assert_eq!(refusal("SAVEPOINT s"), "refused: SAVEPOINT is not allowed");
    }

    #[test]
    fn a_second_statement_is_refused_and_quoted() {
        assert_eq!(
            refusal("SELECT 1; DROP TABLE x"),
            "refused: one statement at a time (found a second: DROP TABLE x)"
        );
        assert_eq!(
            refusal("SELECT 1; SELECT 2;"),
            "refused: one statement at a time (found a second: SELECT 2;)"
        );
        assert_eq!(
            refusal("SELECT 1; -- fine\n not sql at all"),
            "refused: one statement at a time (found a second: not sql at all)"
        );
        // A write first is refused for the write.
        assert!(refusal("DELETE FROM x; SELECT 1").contains("DELETE writes"));
    }

    #[test]
    fn read_pragmas_run_and_writing_pragmas_are_refused() {
        allowed("PRAGMA table_info(x)");
        allowed("PRAGMA main.table_info('x')");
        allowed("PRAGMA index_list(x)");
        allowed("PRAGMA foreign_key_list(x)");
        allowed("PRAGMA page_count");
        allowed("PRAGMA user_version");
        allowed("PRAGMA integrity_check");
        assert_eq!(
            refusal("PRAGMA journal_mode = WAL"),
            "refused: PRAGMA journal_mode = WAL changes state"
        );
        assert_eq!(
            refusal("pragma USER_VERSION=7"),
            "refused: PRAGMA user_version = 7 changes state"
        );
        assert!(refusal("PRAGMA writable_schema = ON").contains("writable_schema = ON"));
        assert!(refusal("PRAGMA query_only = 0").contains("query_only = 0"));
        assert!(refusal("PRAGMA cache_size(10)").contains("cache_size = 10"));
        // Reading the journal mode may change it (a WAL file); SQLite says it is not read-only.
        assert_eq!(
            refusal("PRAGMA journal_mode"),
            "refused: only read-only statements are allowed (PRAGMA journal_mode writes)"
        );
        assert_eq!(
            refusal("PRAGMA optimize"),
            "refused: PRAGMA optimize changes state"
        );
        assert!(refusal("PRAGMA wal_checkpoint(TRUNCATE)").contains("wal_checkpoint"));
    }

    #[test]
    fn code_loading_functions_are_refused() {
        assert_eq!(
            refusal("SELECT load_extension('/tmp/evil.so')"),
            "refused: the function load_extension() is not allowed"
        );
    }

    #[test]
    fn empty_sql_and_parameters_are_refused() {
        assert_eq!(refusal(""), "refused: no SQL statement found");
        assert_eq!(
            refusal("  ;  -- nothing\n"),
            "refused: no SQL statement found"
        );
        assert_eq!(
            refusal("SELECT * FROM x WHERE id = ?"),
            "refused: parameters are not supported; write the values into the SQL"
        );
    }

    #[test]
    fn bad_sql_is_an_sqlite_error_not_a_refusal() {
        let (_dir, connection, guard) = connection();
        assert!(matches!(
            guard.prepare(&connection, "SELEC 1"),
            Err(PrepareError::Sqlite(_))
        ));
        assert!(matches!(
            guard.prepare(&connection, "SELECT * FROM no_such_table"),
            Err(PrepareError::Sqlite(_))
        ));
        // A refusal does not linger into the next statement.
        assert!(guard.prepare(&connection, "DELETE FROM x").is_err());
        assert!(guard.prepare(&connection, "SELECT 1").is_ok());
    }

    #[test]
    fn second_statement_skips_only_insignificant_text() {
        assert_eq!(second_statement(""), None);
        assert_eq!(second_statement(" ;\n;\t"), None);
        assert_eq!(second_statement("-- x\n/* y */ ;"), None);
        assert_eq!(second_statement("/* unterminated"), None);
        assert_eq!(second_statement("-- x\nDROP x"), Some("DROP x"));
        assert_eq!(second_statement(" - 1"), Some("- 1"));
    }
}
