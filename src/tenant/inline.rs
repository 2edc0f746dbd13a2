//! When the tenant SET may run inside the client's own transaction.
//!
//! A SET sent as a Query of its own is a transaction of its own: PostgreSQL
//! starts and commits it and flushes its answer by itself, which costs a
//! one-row select ~15% of its throughput when most transactions need one (many
//! tenants, few server connections). Sent instead as Parse, Bind and Execute
//! without Sync, it runs at the head of the client's next request, in the same
//! transaction, and its answer leaves with the client's.
//!
//! The setting then lasts only if that transaction commits, and an Execute
//! without Sync makes a pipeline, in which PostgreSQL refuses statements that
//! cannot run in a transaction block (VACUUM, DISCARD ALL, CREATE DATABASE,
//! CREATE INDEX CONCURRENTLY, ...: 25001). So the session sends it this way only
//! when:
//! - the client's next request is all here and runs one statement (a Query of
//!   one statement, or extended messages with one Execute up to a Sync), of a
//!   kind that runs in a transaction wherever it is and cannot leave one open
//!   ([`starts_plain_statement`]); its transaction then ends at that request's
//!   ReadyForQuery, with nothing else of the client's in it;
//! - nothing more of the client's is framed until that ReadyForQuery
//!   (`ClientHalf::hold_after_next_request`); if the transaction failed, the
//!   SET is sent again, as a Query of its own, before anything that follows;
//! - afterwards the server is trusted to hold the tenant only if no error or
//!   ROLLBACK went by and the client did not leave.
//!
//! It is a utility SET, not `set_config()`: a SELECT would take the snapshot
//! that a later `SET TRANSACTION ISOLATION LEVEL` must come before.
//!
//! Where server statements are tracked it is a statement prepared once per
//! server and tenant ([`super::TenantPolicy::set_statement_name`]), then only
//! bound and executed: parsing the SET and caching a plan for it was half of
//! what PostgreSQL spent on it.

/// First keywords of statements that run inside a transaction wherever they
/// are, and cannot leave one open (so not BEGIN: what follows it could end the
/// transaction and run more statements before the pooler knew).
const PLAIN: [&[u8]; 8] = [
    b"select", b"insert", b"update", b"delete", b"with", b"values", b"table", b"merge",
];

/// Whether `sql` (possibly only its first bytes) starts with a statement the
/// tenant SET may run in front of, in one transaction. Unsure means no.
pub fn starts_plain_statement(sql: &[u8]) -> bool {
    let Some(start) = skip_blanks(sql) else {
        return false;
    };
    let rest = &sql[start..];
    let len = rest.iter().take_while(|b| b.is_ascii_alphabetic()).count();
    // The keyword must be seen to end: an identifier byte or the end of what is
    // here may mean a longer word.
    let ends = rest
        .get(len)
        .is_some_and(|&b| !(b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80));
    ends && PLAIN.iter().any(|k| rest[..len].eq_ignore_ascii_case(k))
}

/// Where the first token starts, after white space and comments (nested
/// `/* */` as PostgreSQL allows); `None` if that is not within `sql`.
fn skip_blanks(sql: &[u8]) -> Option<usize> {
    let mut i = 0;
    loop {
        match sql.get(i..)? {
            [b' ' | b'\t' | b'\n' | b'\r' | b'\x0b' | b'\x0c', ..] => i += 1,
            [b'-', b'-', ..] => i += memchr::memchr(b'\n', &sql[i..])? + 1,
            [b'/', b'*', ..] => {
                let mut depth = 0usize;
                loop {
                    match sql.get(i..)? {
                        [b'/', b'*', ..] => {
                            depth += 1;
                            i += 2;
                        }
                        [b'*', b'/', ..] => {
                            depth -= 1;
                            i += 2;
                            if depth == 0 {
                                break;
                            }
                        }
                        [_, ..] => i += 1,
                        [] => return None,
                    }
                }
            }
            [] => return None,
            _ => return Some(i),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::starts_plain_statement as plain;

    #[test]
    fn ordinary_statements_qualify() {
        for sql in [
            "SELECT 1\0",
            "select * from t",
            "  \n\tInsert into t values (1)",
            "-- why\nUPDATE t SET a = 1",
            "/* a /* nested */ comment */ delete from t",
            "WITH x AS (SELECT 1) SELECT * FROM x",
            "VALUES (1)",
            "TABLE t",
            "SELECT(1)",
            "select\0",
        ] {
            assert!(plain(sql.as_bytes()), "{sql:?}");
        }
    }

    #[test]
    fn others_do_not() {
        for sql in [
            "VACUUM",
            "DISCARD ALL",
            "CREATE DATABASE x",
            "CREATE INDEX CONCURRENTLY i ON t (a)",
            "SET app.x = 1",
            "COMMIT",
            "BEGIN",
            "START TRANSACTION",
            "(SELECT 1)",
            "selectx",
            "select_",
            "SELECT", // cut off: may go on
            "/* unterminated SELECT",
            "-- no newline SELECT",
            "",
            "   ",
            "sélect 1",
            "EXPLAIN SELECT 1",
            "CALL p()",
        ] {
            assert!(!plain(sql.as_bytes()), "{sql:?}");
        }
    }
}
