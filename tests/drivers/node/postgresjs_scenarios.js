// postgres.js through tenantpool: every query is prepared by name (its
// default, prepare: true).
//
// postgres.js names statements itself, per connection, with a random prefix
// and a counter, and caches them by query text and parameter types. A query
// with parameters that is not prepared yet is sent as Parse/Describe/Sync,
// then Bind/Execute/Sync once the parameter types are known: two round trips,
// which in transaction mode can land on different server connections. Each
// scenario runs TP_WORKERS connections at once (tenants alternating).
'use strict'

const postgres = require('postgres')
const {
  HOST, PORT, DB, PASSWORD, USERS, REPEAT, EXPECTED,
  checkRows, expectError, concurrently, installedVersion, Report,
} = require('./common')

// One connection per worker (max: 1), closed afterwards.
async function withSql(tenant, fn) {
  const sql = postgres({
    host: HOST, port: PORT, database: DB, username: USERS[tenant], password: PASSWORD,
    max: 1, connect_timeout: 10, prepare: true, onnotice: () => {},
  })
  try {
    return await fn(sql)
  } finally {
    await sql.end({ timeout: 5 })
  }
}

// Runs MAIN (prepared), checks isolation, returns the server pid.
async function mainQuery(sql, tenant, what) {
  const rows = await sql`select tenant_id, name, pg_backend_pid() as pid from items where id > ${0} order by id`
  checkRows(tenant, rows, what)
  return rows[0].pid
}

async function isolation() {
  await concurrently((w, tenant) => withSql(tenant, async (sql) => {
    for (let i = 0; i < 10; i++) {
      const rows = await sql`select tenant_id, name, current_setting('app.current_tenant') as t from items order by id`
      checkRows(tenant, rows, `select without WHERE #${i}`)
      if (rows.some((r) => r.t !== tenant)) throw new Error(`app.current_tenant is ${rows[0].t}`)
    }
  }))
}

async function repeat() {
  const results = await concurrently((w, tenant) => withSql(tenant, async (sql) => {
    const pids = new Set()
    for (let i = 0; i < REPEAT; i++) pids.add(await mainQuery(sql, tenant, `execution ${i}`))
    return pids
  }))
  const pids = new Set(results.flatMap((s) => [...s]))
  return `${results.length} workers x ${REPEAT} transactions, ${pids.size} server backends seen`
}

async function sameName() {
  // postgres.js cannot be given a statement name, and its generated names
  // start with a random per-connection prefix, so two clients never share
  // one. What this can check: clients preparing different SQL (even workers
  // MAIN, odd ones OTHER, with another parameter type and columns) at once
  // each get their own statement's results.
  await concurrently((w, tenant) => withSql(tenant, async (sql) => {
    for (let i = 0; i < 20; i++) {
      if (w % 2 === 0) {
        await mainQuery(sql, tenant, `MAIN #${i}`)
      } else {
        const rows = await sql`select count(*)::int as n, current_setting('app.current_tenant') as t from items where name <> ${'no such name'}`
        const got = JSON.stringify(rows.map((r) => ({ ...r })))
        if (got !== JSON.stringify([{ n: EXPECTED[tenant].length, t: tenant }])) {
          throw new Error(`OTHER #${i}: got ${got}`)
        }
      }
    }
  }))
  return 'driver-generated names are unique per connection; different SQL on concurrent clients'
}

async function errorRecovery() {
  await concurrently((w, tenant) => withSql(tenant, async (sql) => {
    await mainQuery(sql, tenant, 'before errors')
    // Parse fails (sql.unsafe is prepared too unless told otherwise).
    await expectError(sql.unsafe('selec 1'), '42601')
    // Parse succeeds, execution fails: division by zero.
    await expectError(sql`select 10 / ${0}::int as q`, '22012')
    for (let i = 0; i < 10; i++) await mainQuery(sql, tenant, `after errors #${i}`)
    const [{ q }] = await sql`select 10 / ${5}::int as q`
    if (q !== 2) throw new Error(`10 / 5 gave ${q}`)
  }))
}

async function deallocateAll() {
  await concurrently((w, tenant) => withSql(tenant, async (sql) => {
    await mainQuery(sql, tenant, 'before DEALLOCATE ALL')
    await sql`deallocate all`.simple() // simple query protocol, not prepared
    // postgres.js does not watch for DEALLOCATE ALL; outside a transaction it
    // re-prepares a statement the server reports missing (26000) once.
    for (let i = 0; i < 10; i++) await mainQuery(sql, tenant, `after DEALLOCATE ALL #${i}`)
  }))
}

async function rollbackRetry() {
  await concurrently((w, tenant) => withSql(tenant, async (sql) => {
    const name = `retry ${tenant} ${w}`
    // Attempt 1: prepares the insert and the division inside the transaction, then fails.
    await expectError(sql.begin(async (tx) => {
      await tx`insert into items (tenant_id, name) values (${tenant}, ${name}) returning id`
      await tx`select 10 / ${0}::int as q`
    }), '22012')
    const gone = await sql`select tenant_id, name from items where name = ${name}`
    if (gone.length) throw new Error('the rolled back insert is visible')
    // Attempt 2: the same prepared statements, in a new transaction.
    await sql.begin(async (tx) => {
      const [{ id }] = await tx`insert into items (tenant_id, name) values (${tenant}, ${name}) returning id`
      const rows = await tx`select tenant_id, name from items where name = ${name}`
      const got = JSON.stringify(rows.map((r) => ({ ...r })))
      if (got !== JSON.stringify([{ tenant_id: tenant, name }])) {
        throw new Error(`retried insert not visible in its transaction: ${got}`)
      }
      await tx`delete from items where id = ${id}`
    })
    await mainQuery(sql, tenant, 'after retry')
  }))
}

async function run() {
  const report = new Report(`postgres.js ${installedVersion('postgres')}`)
  await report.scenario('isolation', isolation)
  await report.scenario('repeat', repeat)
  await report.scenario('same_name', sameName)
  await report.scenario('error_recovery', errorRecovery)
  await report.scenario('deallocate_all', deallocateAll)
  await report.scenario('rollback_retry', rollbackRetry)
  report.finish()
}

run()
