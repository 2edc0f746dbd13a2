"""asyncpg through tenantpool: every statement is prepared by name.

asyncpg prepares each query it runs with arguments or rows (fetch, fetchrow,
fetchval) under a generated name (__asyncpg_stmt_1__, ...) and caches it per
connection; Connection.prepare(name=...) names a statement explicitly. Each
scenario runs TP_WORKERS connections at once (tenants alternating) so that,
in transaction mode, server connections are shuffled between transactions.
"""

import asyncio

import asyncpg

from common import DB, EXPECTED, HOST, PASSWORD, PORT, REPEAT, USERS, Report, check_rows, concurrently

MAIN = "select tenant_id, name, pg_backend_pid() from items where id > $1 order by id"
# A different statement for scenario same_name: other parameter type, other columns.
OTHER = "select count(*)::int, current_setting('app.current_tenant') from items where name <> $1"
DIV = "select 10 / $1::int"


async def connect(tenant):
    return await asyncpg.connect(
        host=HOST, port=PORT, database=DB, user=USERS[tenant], password=PASSWORD, timeout=10
    )


async def main_query(conn, tenant, what):
    """Runs MAIN (prepared through the statement cache), checks isolation, returns the server pid."""
    rows = await conn.fetch(MAIN, 0)
    check_rows(tenant, rows, what)
    return rows[0][2]


async def expect_error(coro, sqlstate):
    try:
        await coro
    except asyncpg.PostgresError as e:
        if e.sqlstate != sqlstate:
            raise
        return
    raise AssertionError(f"expected SQLSTATE {sqlstate}, the statement succeeded")


class Conn:
    """`async with Conn(tenant) as conn`: a connection closed afterwards."""

    def __init__(self, tenant):
        self.tenant = tenant

    async def __aenter__(self):
        self.conn = await connect(self.tenant)
        return self.conn

    async def __aexit__(self, *exc):
        await self.conn.close(timeout=5)


async def isolation():
    async def work(w, tenant):
        async with Conn(tenant) as conn:
            for i in range(10):
                rows = await conn.fetch(
                    "select tenant_id, name, current_setting('app.current_tenant') from items order by id"
                )
                check_rows(tenant, rows, f"select without WHERE #{i}")
                if any(r[2] != tenant for r in rows):
                    raise AssertionError(f"app.current_tenant is {rows[0][2]!r}")

    await concurrently(work)


async def repeat():
    async def work(w, tenant):
        pids = set()
        async with Conn(tenant) as conn:
            for i in range(REPEAT):
                pids.add(await main_query(conn, tenant, f"execution {i}"))
        return pids

    results = await concurrently(work)
    pids = set().union(*results)
    return f"{len(results)} workers x {REPEAT} transactions, {len(pids)} server backends seen"


async def same_name():
    # Explicit names: every worker prepares "by_tenant", even workers as MAIN,
    # odd ones as OTHER (other parameter type and columns).
    async def work(w, tenant):
        async with Conn(tenant) as conn:
            if w % 2 == 0:
                stmt = await conn.prepare(MAIN, name="by_tenant")
            else:
                stmt = await conn.prepare(OTHER, name="by_tenant")
            for i in range(20):
                if w % 2 == 0:
                    check_rows(tenant, await stmt.fetch(0), f"MAIN as by_tenant #{i}")
                else:
                    row = tuple(await stmt.fetchrow("no such name"))
                    if row != (len(EXPECTED[tenant]), tenant):
                        raise AssertionError(f"OTHER as by_tenant #{i}: got {row}")

    await concurrently(work)


async def error_recovery():
    async def work(w, tenant):
        async with Conn(tenant) as conn:
            await main_query(conn, tenant, "before errors")
            # Parse fails: the name stays free on both sides, so it can be reused.
            await expect_error(conn.prepare("selec 1", name="recover"), "42601")
            # Parse succeeds, execution fails: division by zero.
            await expect_error(conn.fetchval(DIV, 0), "22012")
            for i in range(10):
                await main_query(conn, tenant, f"after errors #{i}")
            stmt = await conn.prepare(DIV, name="recover")
            if await stmt.fetchval(5) != 2:
                raise AssertionError("10 / 5 is not 2")

    await concurrently(work)


async def deallocate_all():
    async def work(w, tenant):
        async with Conn(tenant) as conn:
            for i in range(3):
                await main_query(conn, tenant, f"before DEALLOCATE ALL #{i}")
            await conn.execute("DEALLOCATE ALL")  # simple query protocol, not prepared
            # asyncpg does not notice DEALLOCATE ALL: its statement cache would
            # still name __asyncpg_stmt_1__ (26000 even straight to PostgreSQL).
            # reload_schema_state() is its public way to drop the cache; MAIN
            # is then prepared again under a new generated name. (Re-preparing
            # an explicit name here is no good with asyncpg itself: when the
            # old PreparedStatement object is collected, asyncpg sends Close
            # for its name after the new Parse, closing the new statement.)
            await conn.reload_schema_state()
            for i in range(10):
                await main_query(conn, tenant, f"after DEALLOCATE ALL #{i}")

    await concurrently(work)


INSERT = "insert into items (tenant_id, name) values ($1, $2) returning id"
BY_NAME = "select tenant_id, name from items where name = $1"
DELETE = "delete from items where id = $1"


async def rollback_retry():
    async def work(w, tenant):
        name = f"retry {tenant} {w}"
        async with Conn(tenant) as conn:
            # Attempt 1: prepares INSERT and DIV inside the transaction, then fails.
            try:
                async with conn.transaction():
                    await conn.fetchval(INSERT, tenant, name)
                    await conn.fetchval(DIV, 0)
                raise AssertionError("attempt 1 did not fail")
            except asyncpg.DivisionByZeroError:
                pass
            if await conn.fetch(BY_NAME, name):
                raise AssertionError("the rolled back insert is visible")
            # Attempt 2: the same prepared statements, in a new transaction.
            async with conn.transaction():
                new_id = await conn.fetchval(INSERT, tenant, name)
                rows = [tuple(r) for r in await conn.fetch(BY_NAME, name)]
                if rows != [(tenant, name)]:
                    raise AssertionError(f"retried insert not visible in its transaction: {rows}")
                await conn.execute(DELETE, new_id)
            await main_query(conn, tenant, "after retry")

    await concurrently(work)


async def main():
    report = Report(f"asyncpg {asyncpg.__version__}")
    await report.scenario("isolation", isolation)
    await report.scenario("repeat", repeat)
    await report.scenario("same_name", same_name)
    await report.scenario("error_recovery", error_recovery)
    await report.scenario("deallocate_all", deallocate_all)
    await report.scenario("rollback_retry", rollback_retry)
    report.finish()


if __name__ == "__main__":
    asyncio.run(main())
