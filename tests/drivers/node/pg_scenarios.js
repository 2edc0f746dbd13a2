// node-postgres (pg) through tenantpool, with named queries.
//
// A query config with `name` makes pg send Parse under that name the first
// time on a connection and only Bind/Execute afterwards (it remembers parsed
// names per connection). Each scenario runs TP_WORKERS connections at once
// (tenants alternating) so that, in transaction mode, server connections are
// shuffled between their transactions.
'use strict'

const pg = require('pg')
const {
  HOST, PORT, DB, PASSWORD, USERS, REPEAT, EXPECTED,
  checkRows, expectError, concurrently, installedVersion, Report,
} = require('./common')

const MAIN = 'select tenant_id, name, pg_backend_pid() as pid from items where id > $1 order by id'
// A different statement for scenario same_name: other parameter type, other columns.
const OTHER =
  "select count(*)::int as n, current_setting('app.current_tenant') as t from items where name <> $1"
const DIV = 'select 10 / $1::int as q'

const main = (values = [0]) => ({ name: 'main', text: MAIN, values })

async function withClient(tenant, fn) {
  const client = new pg.Client({
    host: HOST, port: PORT, database: DB, user: USERS[tenant], password: PASSWORD,
    connectionTimeoutMillis: 10000,
  })
  await client.connect()
  try {
    return await fn(client)
  } finally {
    await client.end()
  }
}

// Runs MAIN (named), checks isolation, returns the server pid.
async function mainQuery(client, tenant, what) {
  const { rows } = await client.query(main())
  checkRows(tenant, rows, what)
  return rows[0].pid
}

async function isolation() {
  await concurrently((w, tenant) => withClient(tenant, async (client) => {
    for (let i = 0; i < 10; i++) {
      const { rows } = await client.query({
        name: 'all-rows',
        text: "select tenant_id, name, current_setting('app.current_tenant') as t from items order by id",
      })
      checkRows(tenant, rows, `select without WHERE #${i}`)
      if (rows.some((r) => r.t !== tenant)) throw new Error(`app.current_tenant is ${rows[0].t}`)
    }
  }))
}

async function repeat() {
  const results = await concurrently((w, tenant) => withClient(tenant, async (client) => {
    const pids = new Set()
    for (let i = 0; i < REPEAT; i++) pids.add(await mainQuery(client, tenant, `execution ${i}`))
    return pids
  }))
  const pids = new Set(results.flatMap((s) => [...s]))
  return `${results.length} workers x ${REPEAT} transactions, ${pids.size} server backends seen`
}

async function sameName() {
  // Every worker names its statement "by-tenant": even workers with MAIN,
  // odd ones with OTHER (other parameter type and columns).
  await concurrently((w, tenant) => withClient(tenant, async (client) => {
    for (let i = 0; i < 20; i++) {
      if (w % 2 === 0) {
        const { rows } = await client.query({ name: 'by-tenant', text: MAIN, values: [0] })
        checkRows(tenant, rows, `MAIN as by-tenant #${i}`)
      } else {
        const { rows } = await client.query({ name: 'by-tenant', text: OTHER, values: ['no such name'] })
        const got = JSON.stringify(rows)
        if (got !== JSON.stringify([{ n: EXPECTED[tenant].length, t: tenant }])) {
          throw new Error(`OTHER as by-tenant #${i}: got ${got}`)
        }
      }
    }
  }))
}

async function errorRecovery() {
  await concurrently((w, tenant) => withClient(tenant, async (client) => {
    await mainQuery(client, tenant, 'before errors')
    // Parse fails: the name stays free on both sides, so it can be reused.
    await expectError(client.query({ name: 'recover', text: 'selec 1' }), '42601')
    // Parse succeeds, execution fails: division by zero.
    await expectError(client.query({ name: 'div', text: DIV, values: [0] }), '22012')
    for (let i = 0; i < 10; i++) await mainQuery(client, tenant, `after errors #${i}`)
    const { rows } = await client.query({ name: 'recover', text: DIV, values: [5] })
    if (rows[0].q !== 2) throw new Error(`10 / 5 gave ${JSON.stringify(rows)}`)
    const again = await client.query({ name: 'div', text: DIV, values: [5] })
    if (again.rows[0].q !== 2) throw new Error(`10 / 5 gave ${JSON.stringify(again.rows)}`)
  }))
}

async function deallocateAll() {
  await concurrently((w, tenant) => withClient(tenant, async (client) => {
    await mainQuery(client, tenant, 'before DEALLOCATE ALL')
    await client.query('DEALLOCATE ALL') // simple query protocol
    // pg does not notice DEALLOCATE ALL: it would send only Bind for "main"
    // and get 26000 even straight to PostgreSQL. Forget its parsed names
    // (pg keeps them in connection.parsedStatements) so it sends Parse again.
    client.connection.parsedStatements = {}
    for (let i = 0; i < 10; i++) await mainQuery(client, tenant, `after DEALLOCATE ALL #${i}`)
  }))
}

const INSERT = 'insert into items (tenant_id, name) values ($1, $2) returning id'
const BY_NAME = 'select tenant_id, name from items where name = $1'
const DELETE = 'delete from items where id = $1'

async function rollbackRetry() {
  await concurrently((w, tenant) => withClient(tenant, async (client) => {
    const name = `retry ${tenant} ${w}`
    const insert = { name: 'insert', text: INSERT, values: [tenant, name] }
    // Attempt 1: prepares "insert" and "div" inside the transaction, then fails.
    await client.query('BEGIN')
    await client.query(insert)
    await expectError(client.query({ name: 'div', text: DIV, values: [0] }), '22012')
    await client.query('ROLLBACK')
    const gone = await client.query({ name: 'by-name', text: BY_NAME, values: [name] })
    if (gone.rows.length) throw new Error('the rolled back insert is visible')
    // Attempt 2: the same prepared statements, in a new transaction.
    await client.query('BEGIN')
    const { rows: [{ id }] } = await client.query(insert)
    const { rows } = await client.query({ name: 'by-name', text: BY_NAME, values: [name] })
    if (JSON.stringify(rows) !== JSON.stringify([{ tenant_id: tenant, name }])) {
      throw new Error(`retried insert not visible in its transaction: ${JSON.stringify(rows)}`)
    }
    await client.query({ name: 'delete', text: DELETE, values: [id] })
    await client.query('COMMIT')
    await mainQuery(client, tenant, 'after retry')
  }))
}

async function run() {
  const report = new Report(`node-postgres ${installedVersion('pg')}`)
  await report.scenario('isolation', isolation)
  await report.scenario('repeat', repeat)
  await report.scenario('same_name', sameName)
  await report.scenario('error_recovery', errorRecovery)
  await report.scenario('deallocate_all', deallocateAll)
  await report.scenario('rollback_retry', rollbackRetry)
  report.finish()
}

run()
