use super::prefilter::{may_matter, rule_word_at, rule_words_end};
use super::*;
use crate::sql::words::letter_mask;
use Violation::*;

fn guard() -> Guard {
    Guard::new(&SettingName::parse("app.current_tenant").unwrap(), false)
}

fn guard_do() -> Guard {
    Guard::new(&SettingName::parse("app.current_tenant").unwrap(), true)
}

#[track_caller]
fn refused(g: &Guard, cases: &[(&str, Violation)]) {
    for (sql, want) in cases {
        assert_eq!(g.check(sql.as_bytes()), Err(*want), "should refuse: {sql}");
        // The prefilter must never let through what the full check refuses.
        assert!(may_matter(sql.as_bytes()), "prefilter missed: {sql}");
    }
}

#[track_caller]
fn allowed(g: &Guard, cases: &[&str]) {
    for sql in cases {
        assert_eq!(g.check(sql.as_bytes()), Ok(()), "should allow: {sql}");
    }
}

#[test]
fn set_of_the_setting() {
    refused(
        &guard(),
        &[
            ("SET app.current_tenant = 'other'", SetSetting),
            ("set app.current_tenant to 'other'", SetSetting),
            ("SET SESSION app.current_tenant = 'x'", SetSetting),
            ("SET LOCAL app.current_tenant = 'x'", SetSetting),
            ("set local APP.Current_Tenant = 'x'", SetSetting),
            ("SET \"app\".current_tenant = 'x'", SetSetting),
            ("SET \"app\".\"current_tenant\" = 'x'", SetSetting),
            ("SET \"app.current_tenant\" = 'x'", SetSetting),
            ("SET \"APP\".\"CURRENT_TENANT\" = 'x'", SetSetting),
            ("SET app . current_tenant = 'x'", SetSetting),
            ("SET app/* c */./* d */current_tenant = 'x'", SetSetting),
            ("SET app\n.--c\ncurrent_tenant = 'x'", SetSetting),
            ("SET/**/app.current_tenant='x'", SetSetting),
            ("  \n\t SET app.current_tenant = 'x'", SetSetting),
            ("/* hi */ SET app.current_tenant = 'x'", SetSetting),
            ("-- hi\nSET app.current_tenant = 'x'", SetSetting),
            (
                "/* nested /* c */ still */ SET app.current_tenant = 1",
                SetSetting,
            ),
            ("SET U&\"app\".U&\"current\\005ftenant\" = 'x'", SetSetting),
            ("SET app.U&\"current\\005ftenant\" = 'x'", SetSetting),
            ("SET U&\"app\\002ecurrent_tenant\" = 'x'", SetSetting),
            (
                "SET U&\"\\0061pp\".U&\"current\\+00005Ftenant\" = 'x'",
                SetSetting,
            ),
            (
                "SET app.U&\"current!005ftenant\" UESCAPE '!' = 'x'",
                SetSetting,
            ),
            (
                "SET app.U&\"current!005ftenant\" /*c*/ uescape /*c*/ '!' = 'x'",
                SetSetting,
            ),
            (
                "SET app.U&\"current#005ftenant\" UESCAPE E'#' = 'x'",
                SetSetting,
            ),
            (
                "SET app.U&\"current#005ftenant\" UESCAPE $$#$$ = 'x'",
                SetSetting,
            ),
            // An unreadable UESCAPE clause matches every name.
            (
                "SET app.U&\"current#005ftenant\" UESCAPE U&'#' = 'x'",
                SetSetting,
            ),
            ("SET app.current_tenant FROM CURRENT", SetSetting),
            ("SET app.current_tenant TO DEFAULT", SetSetting),
            ("SET app.current_tenant", SetSetting),
            ("select 1; SET app.current_tenant = 'x'", SetSetting),
            (
                "begin; set local app.current_tenant = 'x'; select * from t; commit",
                SetSetting,
            ),
            ("select 'a;b'; set app.current_tenant = 'x'", SetSetting),
            ("select $$;$$; set app.current_tenant = 'x'", SetSetting),
            ("select \"a;\"; set app.current_tenant = 'x'", SetSetting),
            // Odd places still count.
            ("update t set app.current_tenant = 1", SetSetting),
        ],
    );
}

#[test]
fn reset_of_the_setting() {
    refused(
        &guard(),
        &[
            ("RESET app.current_tenant", ResetSetting),
            ("reset \"app\".\"current_tenant\"", ResetSetting),
            ("ReSeT APP.CURRENT_TENANT", ResetSetting),
            ("select 1; reset app.current_tenant", ResetSetting),
            ("RESET U&\"app\\002eCURRENT_TENANT\"", ResetSetting),
        ],
    );
}

#[test]
fn set_config_calls() {
    refused(
        &guard(),
        &[
            ("select set_config('app.current_tenant', 'x', false)", SetConfig),
            ("SELECT SET_CONFIG('APP.CURRENT_TENANT', 'x', false)", SetConfig),
            ("select pg_catalog.set_config('app.current_tenant', 'x', true)", SetConfig),
            ("select \"set_config\"('app.current_tenant', 'x', false)", SetConfig),
            ("select pg_catalog.\"set_config\"('app.current_tenant', 'x', false)", SetConfig),
            ("select U&\"set\\005fconfig\"('app.current_tenant', 'x', false)", SetConfig),
            ("select set_config /* c */ ('app.current_tenant', 'x', false)", SetConfig),
            ("select set_config\n--c\n('app.current_tenant', 'x', false)", SetConfig),
            ("select set_config( 'app.current_tenant' , 'x', false)", SetConfig),
            ("select set_config(E'app.current\\x5ftenant', 'x', false)", SetConfig),
            ("select set_config(E'app.current\\137tenant', 'x', false)", SetConfig),
            ("select set_config(E'app.current\\u005ftenant', 'x', false)", SetConfig),
            ("select set_config(e'\\app.current_tenant', 'x', false)", SetConfig),
            ("select set_config(U&'app.current\\005ftenant', 'x', false)", SetConfig),
            ("select set_config(U&'app.current!005ftenant' UESCAPE '!', 'x', false)", SetConfig),
            ("select set_config($$app.current_tenant$$, 'x', false)", SetConfig),
            ("select set_config($t$app.current_tenant$t$, 'x', false)", SetConfig),
            ("select set_config(' app.current_tenant ', 'x', false)", SetConfig),
            // Not a plain constant: cannot be verified.
            ("select set_config($1, $2, false)", SetConfig),
            ("select set_config('app.' || 'current_tenant', 'x', false)", SetConfig),
            ("select set_config('app.current' '_tenant', 'x', false)", SetConfig),
            ("select set_config('app.current'\n'_tenant', 'x', false)", SetConfig),
            ("select set_config(lower('APP.CURRENT_TENANT'), 'x', false)", SetConfig),
            ("select set_config('search_path'::text, 'x', false)", SetConfig),
            ("select set_config(('search_path'), 'x', false)", SetConfig),
            ("select set_config(name, 'x', false) from t", SetConfig),
            ("select set_config(setting_name => 'search_path', new_value => 'x', is_local => false)", SetConfig),
            ("select set_config(n'search_path', 'x', false)", SetConfig),
            ("select set_config(", SetConfig),
            ("select set_config('search_path'", SetConfig),
            // Anywhere: wrapped, prepared, explained, in a CTE, second statement.
            ("PREPARE p AS SELECT set_config('app.current_tenant', $1, false)", SetConfig),
            ("PREPARE p(text) AS SELECT set_config($1, 'x', false)", SetConfig),
            ("EXPLAIN ANALYZE SELECT set_config('app.current_tenant', 'x', false)", SetConfig),
            ("with x as (select set_config('app.current_tenant', 'x', false)) select * from x", SetConfig),
            ("select 1; select set_config('app.current_tenant','x',false)", SetConfig),
            ("select * from t where id = 1 and set_config('app.current_tenant', t.o, false) is not null", SetConfig),
            ("COPY (SELECT set_config('app.current_tenant','x',false)) TO STDOUT", SetConfig),
            ("create view v as select set_config('app.current_tenant','x',false)", SetConfig),
            // The pg_settings rule calls set_config.
            ("UPDATE pg_settings SET setting = 'x' WHERE name = 'app.current_tenant'", SetConfig),
            ("update only pg_catalog.pg_settings set setting = 'x'", SetConfig),
            ("update \"pg_settings\" set setting = 'x'", SetConfig),
            ("with u as (update pg_settings set setting = 'x' returning 1) select 1", SetConfig),
            // Role spelled through set_config.
            ("select set_config('role', 'admin', false)", SetRole),
            ("select set_config('ROLE', 'admin', false)", SetRole),
            ("select set_config('session_authorization', 'admin', false)", SessionAuthorization),
        ],
    );
}

#[test]
fn alter_and_create_with_the_setting() {
    refused(
        &guard(),
        &[
            ("ALTER ROLE app SET app.current_tenant = 'x'", AlterSetting),
            ("alter user app set \"app\".\"current_tenant\" to 'x'", AlterSetting),
            ("ALTER ROLE app IN DATABASE d SET app.current_tenant = 'x'", AlterSetting),
            ("ALTER ROLE ALL SET app.current_tenant FROM CURRENT", AlterSetting),
            ("ALTER ROLE app RESET app.current_tenant", AlterSetting),
            ("ALTER DATABASE d SET app.current_tenant = 'x'", AlterSetting),
            ("ALTER SYSTEM SET app.current_tenant = 'x'", AlterSetting),
            ("ALTER SYSTEM RESET app.current_tenant", AlterSetting),
            ("ALTER FUNCTION f() SET app.current_tenant = 'x'", AlterSetting),
            ("ALTER PROCEDURE p(int) SET app.current_tenant TO 'x'", AlterSetting),
            ("ALTER ROUTINE r RESET app.current_tenant", AlterSetting),
            ("CREATE FUNCTION f() RETURNS int LANGUAGE sql SET app.current_tenant = 'x' AS 'select 1'", AlterSetting),
            ("CREATE OR REPLACE FUNCTION f() RETURNS int SET app.current_tenant FROM CURRENT AS $$select 1$$ LANGUAGE sql", AlterSetting),
            ("create procedure p() language sql set APP.current_tenant = 'x' as $$ select 1 $$", AlterSetting),
            ("ALTER ROLE app SET role = 'admin'", SetRole),
            ("CREATE FUNCTION f() RETURNS int SET role TO admin AS 'select 1' LANGUAGE sql", SetRole),
            ("ALTER FUNCTION f() SET session_authorization = 'admin'", SessionAuthorization),
        ],
    );
}

#[test]
fn role_changes() {
    refused(
        &guard(),
        &[
            ("SET ROLE admin", SetRole),
            ("set role none", SetRole),
            ("SET SESSION ROLE admin", SetRole),
            ("SET LOCAL ROLE admin", SetRole),
            ("set role = 'admin'", SetRole),
            ("SET \"role\" TO 'admin'", SetRole),
            ("SET U&\"r\\006Fle\" TO 'admin'", SetRole),
            ("select 1; set role admin", SetRole),
            ("SET SESSION AUTHORIZATION admin", SessionAuthorization),
            ("set session authorization default", SessionAuthorization),
            (
                "SET LOCAL SESSION AUTHORIZATION admin",
                SessionAuthorization,
            ),
            (
                "SET SESSION SESSION AUTHORIZATION admin",
                SessionAuthorization,
            ),
            ("SET session_authorization = 'admin'", SessionAuthorization),
            (
                "SET/**/SESSION/**/AUTHORIZATION admin",
                SessionAuthorization,
            ),
        ],
    );
}

#[test]
fn do_blocks() {
    let g = guard();
    refused(
        &g,
        &[
            ("DO $$ BEGIN NULL; END $$", DoBlock),
            ("do 'begin null; end'", DoBlock),
            ("DO LANGUAGE plpgsql $$ BEGIN NULL; END $$", DoBlock),
            ("select 1; DO $$ begin perform 1; end $$", DoBlock),
            ("/* c */ do $$ begin end $$", DoBlock),
            // A function body that runs a DO block.
            (
                "create function f() returns void language sql as $f$ do $$ begin end $$ $f$",
                DoBlock,
            ),
        ],
    );
    // Allowed DO blocks are checked inside.
    let g = guard_do();
    allowed(
        &g,
        &[
            "DO $$ BEGIN RAISE NOTICE 'hi'; END $$",
            "do language plpgsql $$ declare r record; begin for r in select 1 loop null; end loop; end $$",
            "DO $$ BEGIN PERFORM current_setting('app.current_tenant'); END $$",
        ],
    );
    refused(
        &g,
        &[
            ("DO $$ BEGIN PERFORM set_config('app.current_tenant', 'x', false); END $$", SetConfig),
            ("DO $$ BEGIN SET app.current_tenant = 'x'; END $$", SetSetting),
            ("DO $$ BEGIN SET ROLE admin; END $$", SetRole),
            ("DO $$ BEGIN IF true THEN SET LOCAL ROLE admin; END IF; END $$", SetRole),
            ("DO $$ BEGIN EXECUTE 'SET app.current_tenant = ''x'''; END $$", SetSetting),
            ("DO $$ BEGIN EXECUTE 'select set_config(''app.current_tenant'', ''x'', false)'; END $$", SetConfig),
            ("DO E'BEGIN PERFORM set_config(\\'app.current_tenant\\', \\'x\\', false); END'", SetConfig),
            ("do language plpgsql 'begin perform set_config(''app.current_tenant'', ''x'', false); end'", SetConfig),
            ("DO $a$ BEGIN EXECUTE $b$ DO $c$ BEGIN PERFORM set_config('app.current_tenant','x',false); END $c$ $b$; END $a$", SetConfig),
        ],
    );
}

#[test]
fn function_bodies() {
    refused(
        &guard(),
        &[
            ("create function f() returns void language sql as $$ select set_config('app.current_tenant','x',false) $$", SetConfig),
            ("CREATE OR REPLACE FUNCTION f() RETURNS void AS $body$ BEGIN SET app.current_tenant = 'x'; END $body$ LANGUAGE plpgsql", SetSetting),
            ("create function f() returns void as 'begin perform set_config(''app.current_tenant'', ''x'', false); end' language plpgsql", SetConfig),
            ("create function f() returns void as E'select set_config(\\'app.current_tenant\\',\\'x\\',false)' language sql", SetConfig),
            ("create function f() returns void as E'select \\x73et_config(\\'app.current_tenant\\',\\'x\\',false)' language sql", SetConfig),
            ("create function f() returns void as U&'select set\\005fconfig(''app.current_tenant'',''x'',false)' language sql", SetConfig),
            ("create procedure p() language plpgsql as $$ begin set role admin; end $$", SetRole),
            ("create procedure p() language plpgsql as $$ begin if x then reset app.current_tenant; end if; end $$", ResetSetting),
            ("create function f() returns void language plpgsql as $$ begin execute 'set session authorization admin'; end $$", SessionAuthorization),
            ("create function f() returns void language sql begin atomic; select set_config('app.current_tenant','x',false); end", SetConfig),
            ("select 1; create function f() returns void language sql as $$ update pg_settings set setting = 'x' $$", SetConfig),
            // Nesting deeper than MAX_DEPTH fails closed.
            ("create function f() returns void language sql as $a$ create function g() returns void language sql as $b$ create function h() returns void language sql as $c$ create function i() returns void language sql as $d$ set search_path = x $d$ $c$ $b$ $a$", AlterSetting),
        ],
    );
    allowed(
        &guard(),
        &[
            "create function f() returns text language sql stable as $$ select current_setting('app.current_tenant') $$",
            "create function f() returns void language plpgsql as $$ begin update t set role = 'x' where id = 1; end $$",
            "create function f(a int default 5) returns int language sql set search_path = public as 'select a + 1'",
            "create or replace function touch() returns trigger language plpgsql as $$ begin new.updated_at := now(); return new; end $$",
        ],
    );
}

#[test]
fn lexer_tricks() {
    refused(
        &guard(),
        &[
            // standard_conforming_strings off (a client may turn it off): then this string
            // ends at the second quote and the SET runs.
            (
                "select 'a\\' , ' ; set app.current_tenant = 1; -- '",
                SetSetting,
            ),
            // ... and the other way round.
            ("select 'a\\'; set app.current_tenant = 1; --'", SetSetting),
            // E-strings: \' does not end the string, '' does not either.
            ("select E'\\''; set app.current_tenant = 1", SetSetting),
            ("select E'a''b'; set role x", SetRole),
            // SJIS-like client encodings: 0x95 0x5C is one character; the server never
            // sees that backslash.
            (
                "select E'\u{95}\\'; set app.current_tenant = 1; select E'\\''",
                SetSetting,
            ),
            // Unterminated constructs: fail closed.
            (
                "select 'unterminated; set app.current_tenant = 1",
                SetSetting,
            ),
            ("select \"unterminated; set role x", SetRole),
            (
                "select $$unterminated; select set_config('x', 'y', false)",
                SetConfig,
            ),
            (
                "select 1 /* unterminated set app.current_tenant = 1",
                SetSetting,
            ),
            (
                "select E'unterminated \\'; set app.CURRENT_TENANT = 1",
                SetSetting,
            ),
            ("select U&'unterminated set_config", SetConfig),
            // Dollar quotes need the exact tag.
            ("select $a$ $b$ $a$; set app.current_tenant = 1", SetSetting),
            ("select $a$ $A$ ; set role x", SetRole),
        ],
    );
    allowed(
        &guard(),
        &[
            "select 'a\\' , 'b'",
            "select $a$ ; set app.current_tenant = 1 $a$",
            "select $a$ $$ set role x $$ $a$",
            "select E'\\\\'",
            "select e'it''s'",
            "select 1 -- set app.current_tenant = 1",
            "select /* set role x; /* nested */ set app.current_tenant = 1 */ 1",
            "select \"set role\" from t",
            "select x$$ from t -- $$ is part of the identifier x$$",
            // `do$x$` is one identifier (a syntax error), not a DO block.
            "do$x$ begin end $x$",
            // Truncated to 63 bytes this is still another name.
            "SET app.current_tenantxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx = 1",
            // Unterminated, but without any word a rule needs: the prefilter lets it
            // through, and the server rejects it as a syntax error.
            "select 'app.current_tenant",
        ],
    );
}

/// A 63-byte last part, so truncation matters.
#[test]
fn truncation_at_63_bytes() {
    let long = "a".repeat(63);
    let g = Guard::new(&SettingName::parse(&format!("app.{long}")).unwrap(), false);
    refused(
        &g,
        &[
            (&format!("SET app.{long}zzz = 1"), SetSetting),
            (&format!("SET app.\"{long}ZZZ\" = 1"), SetSetting),
        ],
    );
    allowed(&g, &[&format!("SET app.{} = 1", "a".repeat(62))]);
}

#[test]
fn ordinary_statements_pass() {
    allowed(
        &guard(),
        &[
            "",
            ";;",
            "select 1",
            "select current_setting('app.current_tenant')",
            "select current_setting('app.current_tenant', true)",
            "SELECT * FROM items WHERE tenant_id = current_setting('app.current_tenant')::uuid",
            "update t set role = 'x', settings = 1",
            "UPDATE users SET role = $1, updated_at = now() WHERE id = $2",
            "select 'set app.current_tenant = 1'",
            "select E'set app.current_tenant = 1'",
            "select $$set app.current_tenant = 1$$",
            "select \"set app.current_tenant = 1\" from t",
            "-- set app.current_tenant = 1\nselect 1",
            "/* set role admin */ select 1",
            "SET search_path = public",
            "SET search_path TO \"$user\", public",
            "SET LOCAL statement_timeout = '5s'",
            "set session statement_timeout to 0",
            "SET application_name = 'app.current_tenant'",
            "SET app.current_tenant_backup = 'x'",
            "SET app.current_tenant.extra = 'x'",
            "SET myapp.current_tenant = 'x'",
            "SET app_current_tenant = 'x'",
            "select set_config('search_path', 'public', false)",
            "select set_config('statement_timeout', '5s', true)",
            "select pg_catalog.set_config('application_name', $1, false)",
            "select set_config($$search_path$$, 'x', false)",
            "select set_config(E'search\\x5fpath', 'x', false)",
            "select set_config('search_path', 'app.current_tenant', false)",
            "RESET ALL",
            "reset all",
            "DISCARD ALL",
            "discard all",
            "RESET ROLE",
            "RESET SESSION AUTHORIZATION",
            "RESET search_path",
            "SET TIME ZONE 'UTC'",
            "SET TIME ZONE LOCAL",
            "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ COMMITTED",
            "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
            "SET CONSTRAINTS ALL DEFERRED",
            "SET NAMES 'UTF8'",
            "SET client_encoding = 'UTF8'",
            "select * from documents do_nothing",
            "insert into t(do) values (1)",
            "insert into t values (1) on conflict (id) do nothing",
            "insert into t values (1) on conflict (id) do update set n = excluded.n",
            "insert into t values (1) on conflict (id) do update set role = excluded.role",
            "create table t (id int references u on delete set null)",
            "create table t (id int, role text)",
            "create rule r as on update to t do instead update u set role = new.role",
            "alter table users alter column role set default 'member'",
            "alter table t set (fillfactor = 70)",
            "alter table t alter column role set not null",
            "select * from pg_settings where name = 'app.current_tenant'",
            "select setting from pg_catalog.pg_settings",
            "select * from t for update",
            "select offset_x, resets, dob, settings, set_at, created_at from t offset 10",
            "select \"set_config\" from t",
            "select set_config from t",
            "select t.set_config from t",
            "EXECUTE p(1)",
            "PREPARE p AS SELECT * FROM t WHERE id = $1",
            "BEGIN; SELECT 1; COMMIT",
            "SHOW app.current_tenant",
            "select 'it''s', E'a\\'b', $$x$$, U&'d\\0061t\\+000061', B'1010', X'1F'",
            "select 1.5, .5, 1e10, 0x1F, 1_000, $1, $12",
            "select a.b.c, (x).y, arr[1:2], 'a'::text, x->>'y', x #>> '{a}'",
        ],
    );
}

#[test]
fn typical_orm_queries_pass() {
    allowed(
        &guard(),
        &[
            // Prisma
            "SELECT \"public\".\"User\".\"id\", \"public\".\"User\".\"email\", \"public\".\"User\".\"name\" FROM \"public\".\"User\" WHERE (\"public\".\"User\".\"tenantId\" = $1 AND \"public\".\"User\".\"deletedAt\" IS NULL) ORDER BY \"public\".\"User\".\"createdAt\" DESC LIMIT $2 OFFSET $3",
            "INSERT INTO \"public\".\"Post\" (\"id\",\"title\",\"authorId\",\"createdAt\") VALUES ($1,$2,$3,$4) RETURNING \"public\".\"Post\".\"id\"",
            "UPDATE \"public\".\"Post\" SET \"title\" = $1, \"updatedAt\" = $2 WHERE (\"public\".\"Post\".\"id\" = $3 AND 1=1) RETURNING \"public\".\"Post\".\"id\"",
            // Rails
            "SELECT \"users\".* FROM \"users\" WHERE \"users\".\"id\" = $1 LIMIT $2",
            "UPDATE \"users\" SET \"sign_in_count\" = $1, \"current_sign_in_at\" = $2, \"role\" = $3 WHERE \"users\".\"id\" = $4",
            "SELECT \"schema_migrations\".\"version\" FROM \"schema_migrations\" ORDER BY \"schema_migrations\".\"version\" ASC",
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod), pg_get_expr(d.adbin, d.adrelid), a.attnotnull, a.atttypid, a.atttypmod, c.collname, col_description(a.attrelid, a.attnum) AS comment FROM pg_attribute a LEFT JOIN pg_attrdef d ON a.attrelid = d.adrelid AND a.attnum = d.adnum LEFT JOIN pg_type t ON a.atttypid = t.oid LEFT JOIN pg_collation c ON a.attcollation = c.oid AND a.attcollation <> t.typcollation WHERE a.attrelid = '\"users\"'::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            "SET client_min_messages TO 'warning'",
            "SET standard_conforming_strings = on",
            "SET intervalstyle = iso_8601",
            "SET SESSION timezone TO 'UTC'",
            // Django
            "SELECT \"django_session\".\"session_key\", \"django_session\".\"session_data\", \"django_session\".\"expire_date\" FROM \"django_session\" WHERE (\"django_session\".\"expire_date\" > '2024-01-01T00:00:00+00:00'::timestamptz AND \"django_session\".\"session_key\" = 'abc') LIMIT 21",
            "UPDATE \"auth_user\" SET \"last_login\" = '2024-01-01T00:00:00+00:00'::timestamptz WHERE \"auth_user\".\"id\" = 1",
            "SAVEPOINT \"s140_x1\"; RELEASE SAVEPOINT \"s140_x1\"",
            // SQLAlchemy / psycopg / node-postgres / JDBC / Npgsql housekeeping
            "select pg_catalog.version()",
            "show standard_conforming_strings",
            "SET extra_float_digits = 3",
            "SET application_name = 'PostgreSQL JDBC Driver'",
            "DISCARD ALL",
            "BEGIN ISOLATION LEVEL READ COMMITTED READ WRITE",
            "SELECT t.oid, typarray FROM pg_type t JOIN pg_namespace ns ON typnamespace = ns.oid WHERE typname = 'hstore'",
        ],
    );
}

#[test]
fn big_generated_query() {
    let mut sql = String::from("INSERT INTO events (tenant_id, kind, payload, created_at) VALUES ");
    let mut i = 0;
    while sql.len() < 100 * 1024 {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&format!(
            "(current_setting('app.current_tenant'), 'kind_{i}', '{{\"n\": {i}, \"s\": \"it''s set\"}}'::jsonb, now())"
        ));
        i += 1;
    }
    sql.push_str(" ON CONFLICT DO NOTHING RETURNING id");
    assert_eq!(guard().check(sql.as_bytes()), Ok(()));
    let spoof = format!("{sql}; SET app.current_tenant = 'x'");
    assert_eq!(guard().check(spoof.as_bytes()), Err(SetSetting));
    let spoof = format!("{sql}; select set_config('app.current_tenant', 'x', false)");
    assert_eq!(guard().check(spoof.as_bytes()), Err(SetConfig));
}

/// The prefilter, a byte at a time: the reference for the SWAR one.
fn rule_words_end_scalar(sql: &[u8]) -> Option<usize> {
    let mut last = None;
    let mut prev = false;
    for (i, &b) in sql.iter().enumerate() {
        let letter = b.is_ascii_alphabetic() || b == b'_' || b >= 0x80;
        if letter && !prev {
            if let Some(len) = rule_word_at(sql, i) {
                last = Some(i + len);
            }
        }
        prev = letter;
    }
    last
}

#[test]
fn prefilter_matches_scalar_reference() {
    for b in 0..=255u8 {
        let mut x = [b'a'; 8];
        x[3] = b;
        let expected = if b.is_ascii_alphabetic() || b == b'_' || b >= 0x80 {
            0x80
        } else {
            0
        };
        assert_eq!(
            letter_mask(u64::from_le_bytes(x)) >> 24 & 0xFF,
            expected,
            "{b:#x}"
        );
    }
    let mut rng = Rng(7);
    let alphabet = b"sSeEtTrRdDoOcCpPuU&_gin $1;.'\"\x80\xff";
    for _ in 0..20_000 {
        let n = rng.below(40);
        let text: Vec<u8> = (0..n)
            .map(|_| {
                if rng.below(4) == 0 {
                    rng.next() as u8
                } else {
                    alphabet[rng.below(alphabet.len())]
                }
            })
            .collect();
        assert_eq!(
            rule_words_end(&text),
            rule_words_end_scalar(&text),
            "{text:?}"
        );
    }
    for sql in [
        "set",
        "xxxxxxxset",
        "xxxxxxx set",
        "xxxxxxxxset_config(",
        "12345678do",
        "abcdefg_do",
    ] {
        assert_eq!(
            rule_words_end(sql.as_bytes()),
            rule_words_end_scalar(sql.as_bytes()),
            "{sql}"
        );
    }
}

#[test]
fn prefilter_skips_plain_queries() {
    for sql in [
        "select 1",
        "SELECT \"users\".* FROM \"users\" WHERE \"users\".\"id\" = $1 LIMIT $2 OFFSET $3",
        "select created_at, dob, documents, resets, settings from t",
        "insert into t values (1, 'x')",
    ] {
        assert!(!may_matter(sql.as_bytes()), "{sql}");
    }
    for sql in [
        "set x = 1",
        "x;Reset y",
        "do $$ $$",
        "CREATE function",
        "update pg_settings",
        "select U&\"x\"",
        "select 1set_config(",
        "\"set_config\"(",
    ] {
        assert!(may_matter(sql.as_bytes()), "{sql}");
    }
}

#[test]
fn invalid_utf8_and_odd_bytes() {
    let g = guard();
    assert_eq!(g.check(b"select '\xff\xfe' \x80\x81"), Ok(()));
    assert_eq!(
        g.check(b"select 1\0; set app.current_tenant = 1"),
        Err(SetSetting)
    );
    assert_eq!(g.check(b"\xffset app.current_tenant = 1"), Ok(())); // one identifier
    assert_eq!(g.check(b"set app.current_tenant\xff = 1"), Ok(())); // another name
    assert_eq!(g.check(b"set \xc3 = 1"), Ok(()));
    assert_eq!(g.check(b"select E'\\"), Ok(()));
    assert_eq!(g.check(b"select U&'\\d800\\"), Ok(()));
    assert_eq!(g.check(b"set U&\"\\d800\\dc00\" = 1"), Ok(()));
    assert_eq!(
        g.check(b"set U&\"app.current_tenant\" UESCAPE"),
        Err(SetSetting)
    );
    assert_eq!(g.check(b"set U&\"x\" UESCAPE '"), Ok(()));
}

#[test]
fn startup_parameters() {
    let g = guard();
    let p = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    for params in [
        p(&[("options", "-c app.current_tenant=x")]),
        p(&[("options", "-capp.current_tenant=x")]),
        p(&[("options", "--app.current_tenant=x")]),
        p(&[("options", "--app.current-tenant=x")]),
        p(&[("options", "-c  search_path=x -c app.current_tenant=y")]),
        p(&[("options", "-c search_path=x\t-c\nAPP.CURRENT_TENANT=y")]),
        p(&[("options", "-c app.current_tenant")]),
        p(&[("options", "-Ec app.current_tenant=x")]),
        p(&[("options", "-c app.current_tenant=a\\ b")]),
        p(&[("options", "-c role=admin")]),
        p(&[("options", "--session-authorization=admin")]),
        p(&[("user", "u"), ("app.current_tenant", "x")]),
        p(&[("APP.Current_Tenant", "x")]),
        p(&[("role", "admin")]),
        p(&[("OPTIONS", "-c app.current_tenant=x")]),
    ] {
        assert_eq!(
            g.check_startup(&params),
            Err(StartupParameter),
            "{params:?}"
        );
    }
    for params in [
        p(&[]),
        p(&[("user", "app.acme"), ("database", "app")]),
        p(&[("options", "-c search_path=x")]),
        p(&[("options", "-c statement_timeout=5s")]),
        p(&[("options", "-c app.current\\ tenant=x")]),
        p(&[("options", "-c search_path=app.current_tenant")]),
        p(&[("options", "-B app.current_tenant=x")]),
        p(&[("options", "")]),
        p(&[("options", "\\")]),
        p(&[("options", "-")]),
        p(&[("options", "-c")]),
        p(&[("application_name", "app.current_tenant")]),
        p(&[("client_encoding", "UTF8")]),
    ] {
        assert_eq!(g.check_startup(&params), Ok(()), "{params:?}");
    }
}

#[test]
fn codes_and_messages() {
    let setting = SettingName::parse("app.current_tenant").unwrap();
    let mut seen = std::collections::HashSet::new();
    for v in Violation::ALL {
        assert!(seen.insert(v.code()));
        assert!((1..=8).contains(&v.code()));
        assert_eq!(Violation::from_code(v.code()), Some(v));
        assert!(v.message(&setting).starts_with("tenantpool: "));
    }
    assert_eq!(Violation::from_code(0), None);
    assert_eq!(Violation::from_code(254), None);
    assert_eq!(Violation::from_code(255), None);
    assert_eq!(
        SetSetting.message(&setting),
        "tenantpool: changing \"app.current_tenant\" is not allowed: the tenant comes from the login"
    );
    assert!(DoBlock.message(&setting).contains("allow_do_blocks"));
}

/// xorshift64*: reproducible without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const PIECES: &[&str] = &[
    "set",
    "SET",
    "reset",
    "local",
    "session",
    "authorization",
    "role",
    "do",
    "create",
    "or",
    "replace",
    "function",
    "procedure",
    "alter",
    "system",
    "update",
    "only",
    "pg_settings",
    "set_config",
    "app",
    "current_tenant",
    "app.current_tenant",
    "\"app\"",
    "\"current_tenant\"",
    "U&\"",
    "U&'",
    "\\005f",
    "\\+00005f",
    "uescape",
    "'!'",
    "E'",
    "'",
    "''",
    "\"",
    "\"\"",
    "$$",
    "$a$",
    "$1",
    "$",
    "--",
    "\n",
    "/*",
    "*/",
    ";",
    ".",
    ",",
    "(",
    ")",
    " ",
    "\\",
    "=",
    "to",
    "1",
    "1.5",
    "begin",
    "then",
    "execute",
    "x",
    "\u{95}",
    "\u{ff}",
    "é",
];

#[test]
fn random_input_never_panics() {
    let guards = [guard(), guard_do()];
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut buf = Vec::new();
    // GUARD_FUZZ_ROUNDS / GUARD_FUZZ_SEED run it longer or elsewhere.
    let rounds = std::env::var("GUARD_FUZZ_ROUNDS").map_or(20_000, |r| r.parse().unwrap());
    if let Ok(seed) = std::env::var("GUARD_FUZZ_SEED") {
        rng = Rng(seed.parse::<u64>().unwrap() | 1);
    }
    let mut refusals = 0;
    for round in 0..rounds {
        buf.clear();
        if round % 4 == 0 {
            let n = rng.below(64);
            buf.extend((0..n).map(|_| rng.next() as u8));
        } else {
            for _ in 0..rng.below(24) {
                match rng.below(10) {
                    0 => buf.push(rng.next() as u8),
                    1 => buf.push(b' '),
                    _ => buf.extend_from_slice(PIECES[rng.below(PIECES.len())].as_bytes()),
                }
            }
        }
        assert_eq!(rule_words_end(&buf), rule_words_end_scalar(&buf));
        for g in &guards {
            let verdict = g.check(&buf);
            refusals += usize::from(verdict.is_err());
            // The prefilter is sound: anything refused would also have been looked at.
            if verdict.is_err() {
                assert!(may_matter(&buf), "{:?}", String::from_utf8_lossy(&buf));
            }
            // Past the prefilter, checking without it agrees.
            if may_matter(&buf) {
                assert_eq!(
                    g.walk_all(&buf),
                    verdict,
                    "{:?}",
                    String::from_utf8_lossy(&buf)
                );
            }
        }
        let text = String::from_utf8_lossy(&buf).into_owned();
        let _ = guards[0].check_startup(&[("options".into(), text.clone()), (text, "x".into())]);
    }
    // The mixes are meant to hit the rules often.
    assert!(refusals > rounds / 50, "{refusals} of {rounds}");
}

impl Guard {
    /// `check` without the prefilter and without stopping after the last rule word.
    fn walk_all(&self, sql: &[u8]) -> Result<(), Violation> {
        let budget = Cell::new(usize::MAX);
        let notes = self.walk(sql, Mode::default(), 0, usize::MAX, TAILS, &budget)?;
        if notes.plain_backslash || notes.high_backslash {
            for (backslash_plain, shielded) in [(true, false), (false, true), (true, true)] {
                self.walk(
                    sql,
                    Mode {
                        backslash_plain,
                        shielded,
                    },
                    0,
                    usize::MAX,
                    TAILS,
                    &budget,
                )?;
            }
        }
        Ok(())
    }
}

/// Inputs built to make a careless scanner quadratic (or overflow its stack).
#[test]
fn adversarial_inputs_stay_cheap() {
    let g = guard_do();
    let n = 100 * 1024;
    let cases: Vec<(String, Result<(), Violation>)> = vec![
        (format!("set {}x", "set.".repeat(n / 4)), Ok(())),
        (format!("select {}", "$a$ $b$ ".repeat(n / 8)), Ok(())),
        // Unterminated dollar quotes inside each other: only a few levels of content
        // are re-lexed (the server rejects the text anyway), but mentions are caught.
        (
            (0..n / 8).map(|i| format!("$t{i}$ ")).collect::<String>() + "set role x",
            Ok(()),
        ),
        (
            (0..n / 8).map(|i| format!("$t{i}$ ")).collect::<String>()
                + "set app.current_tenant = 1",
            Err(SetSetting),
        ),
        (format!("select {}", "U&\"x\" ".repeat(n / 6)), Ok(())),
        (
            format!("select {}", "U&\"x\" UESCAPE '!' ".repeat(n / 18)),
            Ok(()),
        ),
        (format!("select {}", "'\\' ".repeat(n / 4)), Ok(())),
        (format!("update {}", "update only ".repeat(n / 12)), Ok(())),
        (format!("set {} = 1", "/* c */".repeat(n / 7)), Ok(())),
        ("/*".repeat(n / 2), Ok(())),
        (
            format!(
                "do $a$ {} $a$",
                "do $b$ do $c$ do $d$ do $e$ set x = E'\\\\' $e$ $d$ $c$ $b$ ".repeat(n / 64)
            ),
            Err(DoBlock),
        ),
    ];
    for (sql, want) in cases {
        let started = std::time::Instant::now();
        assert_eq!(g.check(sql.as_bytes()), want, "{}", &sql[..60]);
        let took = started.elapsed();
        assert!(
            took < std::time::Duration::from_secs(5),
            "{took:?}: {}",
            &sql[..60]
        );
    }
}
