"""psycopg 3 through tenantpool, every statement prepared by name.

prepare_threshold=0 makes psycopg prepare each query on its first execution,
under names it generates per connection (_pg3_0, _pg3_1, ...), and reuse the
name afterwards. Each scenario runs TP_WORKERS connections at once (tenants
alternating) so that, in transaction mode, server connections are shuffled
between their transactions.
"""

import asyncio

import psycopg
from psycopg import errors

from common import DB, EXPECTED, HOST, PASSWORD, PORT, REPEAT, USERS, Report, check_rows, concurrently

MAIN = "select tenant_id, name, pg_backend_pid() from items where id > %s order by id"
# A different statement for scenario same_name: other parameter type, other columns.
OTHER = "select count(*)::int, current_setting('app.current_tenant') from items where name <> %s"
DIV = "select 10 / %s::int"


async def connect(tenant):
    return await psycopg.AsyncConnection.connect(
        host=HOST,
        port=PORT,
        dbname=DB,
        user=USERS[tenant],
        password=PASSWORD,
        autocommit=True,
        prepare_threshold=0,
        connect_timeout=10,
    )


async def main_query(conn, tenant, what):
    """Runs MAIN (prepared), checks isolation, returns the server pid."""
    cur = await conn.execute(MAIN, (0,))
    rows = await cur.fetchall()
    check_rows(tenant, rows, what)
    return rows[0][2]


async def expect_error(coro, sqlstate):
    try:
        await coro
    except psycopg.Error as e:
        if e.sqlstate != sqlstate:
            raise
        return
    raise AssertionError(f"expected SQLSTATE {sqlstate}, the statement succeeded")


async def isolation():
    async def work(w, tenant):
        async with await connect(tenant) as conn:
            for i in range(10):
                cur = await conn.execute(
                    "select tenant_id, name, current_setting('app.current_tenant') from items order by id"
                )
                rows = await cur.fetchall()
                check_rows(tenant, rows, f"select without WHERE #{i}")
                if any(r[2] != tenant for r in rows):
                    raise AssertionError(f"app.current_tenant is {rows[0][2]!r}")

    await concurrently(work)


async def repeat():
    async def work(w, tenant):
        pids = set()
        async with await connect(tenant) as conn:
            for i in range(REPEAT):
                pids.add(await main_query(conn, tenant, f"execution {i}"))
        return pids

    results = await concurrently(work)
    pids = set().union(*results)
    return f"{len(results)} workers x {REPEAT} transactions, {len(pids)} server backends seen"


async def same_name():
    # psycopg names statements itself: on a fresh connection the first prepared
    # query is _pg3_0. Even workers prepare MAIN first, odd ones OTHER, so the
    # same name _pg3_0 means different SQL on different client connections.
    async def work(w, tenant):
        async with await connect(tenant) as conn:
            for i in range(20):
                if w % 2 == 0:
                    await main_query(conn, tenant, f"MAIN as _pg3_0 #{i}")
                else:
                    cur = await conn.execute(OTHER, ("no such name",))
                    row = await cur.fetchone()
                    if row != (len(EXPECTED[tenant]), tenant):
                        raise AssertionError(f"OTHER as _pg3_0 #{i}: got {row}")

    await concurrently(work)


async def error_recovery():
    async def work(w, tenant):
        async with await connect(tenant) as conn:
            await main_query(conn, tenant, "before errors")
            # Parse fails: the statement must not exist afterwards on either side.
            await expect_error(conn.execute("selec 1"), "42601")
            # Parse succeeds, execution fails: division by zero.
            await expect_error(conn.execute(DIV, (0,)), "22012")
            for i in range(10):
                await main_query(conn, tenant, f"after errors #{i}")
            # The statement that failed at execution still works with a good argument.
            cur = await conn.execute(DIV, (5,))
            if (await cur.fetchone())[0] != 2:
                raise AssertionError("10 / 5 is not 2")

    await concurrently(work)


async def deallocate_all():
    async def work(w, tenant):
        async with await connect(tenant) as conn:
            await main_query(conn, tenant, "before DEALLOCATE ALL")
            # Not prepared itself; psycopg sees the DEALLOCATE ALL command tag
            # and forgets its prepared statements, so MAIN is prepared again.
            await conn.execute("DEALLOCATE ALL", prepare=False)
            for i in range(10):
                await main_query(conn, tenant, f"after DEALLOCATE ALL #{i}")

    await concurrently(work)


INSERT = "insert into items (tenant_id, name) values (%s, %s) returning id"
BY_NAME = "select tenant_id, name from items where name = %s"
DELETE = "delete from items where id = %s"


async def rollback_retry():
    async def work(w, tenant):
        name = f"retry {tenant} {w}"
        async with await connect(tenant) as conn:
            # Attempt 1: prepares INSERT and DIV inside the transaction, then fails.
            try:
                async with conn.transaction():
                    await conn.execute(INSERT, (tenant, name))
                    await conn.execute(DIV, (0,))
                raise AssertionError("attempt 1 did not fail")
            except errors.DivisionByZero:
                pass
            cur = await conn.execute(BY_NAME, (name,))
            if await cur.fetchall():
                raise AssertionError("the rolled back insert is visible")
            # Attempt 2: the same prepared statements, in a new transaction.
            async with conn.transaction():
                cur = await conn.execute(INSERT, (tenant, name))
                (new_id,) = await cur.fetchone()
                cur = await conn.execute(BY_NAME, (name,))
                if await cur.fetchall() != [(tenant, name)]:
                    raise AssertionError("retried insert not visible in its transaction")
                await conn.execute(DELETE, (new_id,))
            await main_query(conn, tenant, "after retry")

    await concurrently(work)



async def main():
    report = Report(f"psycopg {psycopg.__version__}")
    await report.scenario("isolation", isolation)
    await report.scenario("repeat", repeat)
    await report.scenario("same_name", same_name)
    await report.scenario("error_recovery", error_recovery)
    await report.scenario("deallocate_all", deallocate_all)
    await report.scenario("rollback_retry", rollback_retry)
    report.finish()


if __name__ == "__main__":
    asyncio.run(main())
