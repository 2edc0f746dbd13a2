// Shared by the Node.js driver scripts: connection parameters from the
// environment, the expected demo data, a concurrent worker runner and the
// per-scenario report (`ok <scenario>` / `FAIL <scenario>: <reason>`, then a
// total line; exit status 1 on any failure).
'use strict'

const fs = require('fs')
const path = require('path')

const env = process.env
const HOST = env.TP_HOST || '127.0.0.1'
const PORT = Number(env.TP_PORT || 6432)
const DB = env.TP_DB || 'app'
const PASSWORD = env.TP_PASSWORD || 'app-secret'
const USERS = { acme: env.TP_USER_ACME || 'app.acme', globex: env.TP_USER_GLOBEX || 'app.globex' }
const WORKERS = Number(env.TP_WORKERS || 4)
const REPEAT = Number(env.TP_REPEAT || 50)
const SCENARIO_TIMEOUT_MS = 1000 * Number(env.TP_SCENARIO_TIMEOUT || 60)

// The demo schema's rows, in id order (src/demo/schema.sql).
const EXPECTED = {
  acme: ['acme anvil', 'acme rocket skates', 'acme giant magnet'],
  globex: ['globex doomsday device', 'globex hammock'],
}

// Workers alternate tenants: 0 acme, 1 globex, 2 acme, ...
const tenantOf = (w) => (w % 2 === 0 ? 'acme' : 'globex')

// rows: objects with tenant_id and name. Only this tenant's rows, all of them, in order.
function checkRows(tenant, rows, what) {
  const got = JSON.stringify(rows.map((r) => [r.tenant_id, r.name]))
  const want = JSON.stringify(EXPECTED[tenant].map((n) => [tenant, n]))
  if (got !== want) throw new Error(`${what}: ${tenant} expected ${want}, got ${got}`)
}

// Error text with the SQLSTATE when the driver gives one.
const describe = (e) => `${e && e.message}${e && e.code ? ` [${e.code}]` : ''}`

// Awaits promise and expects it to fail with sqlstate.
async function expectError(promise, sqlstate) {
  try {
    await promise
  } catch (e) {
    if (e.code !== sqlstate) throw e
    return
  }
  throw new Error(`expected SQLSTATE ${sqlstate}, the statement succeeded`)
}

// Runs fn(worker, tenant) for each worker at once; lets all finish, then
// throws the first failure naming its worker. Returns the results.
async function concurrently(fn, workers = WORKERS) {
  const settled = await Promise.allSettled(
    Array.from({ length: workers }, (_, w) => fn(w, tenantOf(w)))
  )
  settled.forEach((s, w) => {
    if (s.status === 'rejected') {
      throw new Error(`worker ${w} (${tenantOf(w)}): ${describe(s.reason)}`)
    }
  })
  return settled.map((s) => s.value)
}

class Report {
  constructor(driver) {
    this.driver = driver
    this.passed = 0
    this.failed = 0
  }

  async scenario(name, fn) {
    let timer
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`timed out after ${SCENARIO_TIMEOUT_MS / 1000} s`)),
        SCENARIO_TIMEOUT_MS
      )
    })
    try {
      const detail = await Promise.race([fn(), timeout])
      this.passed++
      console.log(`ok ${name}${detail ? ` -- ${detail}` : ''}`)
    } catch (e) {
      this.failed++
      console.log(`FAIL ${name}: ${describe(e).replace(/\n/g, ' | ')}`)
      if (env.TP_VERBOSE) console.error(e)
    } finally {
      clearTimeout(timer)
    }
  }

  finish() {
    console.log(`${this.driver}: ${this.passed} passed, ${this.failed} failed`)
    // Connections a timed-out scenario left open must not keep the process alive.
    process.exit(this.failed ? 1 : 0)
  }
}

// The installed version of an npm package (postgres.js does not export its package.json).
function installedVersion(pkg) {
  const file = path.join(__dirname, 'node_modules', pkg, 'package.json')
  return JSON.parse(fs.readFileSync(file, 'utf8')).version
}

module.exports = {
  HOST, PORT, DB, PASSWORD, USERS, WORKERS, REPEAT, EXPECTED,
  installedVersion, tenantOf, checkRows, describe, expectError, concurrently, Report,
}
