"""Shared by the Python driver scripts: connection parameters from the
environment, the expected demo data, a concurrent worker runner and the
per-scenario report (`ok <scenario>` / `FAIL <scenario>: <reason>`, then a
total line; exit status 1 on any failure)."""

import asyncio
import os
import sys
import traceback

HOST = os.environ.get("TP_HOST", "127.0.0.1")
PORT = int(os.environ.get("TP_PORT", "6432"))
DB = os.environ.get("TP_DB", "app")
PASSWORD = os.environ.get("TP_PASSWORD", "app-secret")
USERS = {
    "acme": os.environ.get("TP_USER_ACME", "app.acme"),
    "globex": os.environ.get("TP_USER_GLOBEX", "app.globex"),
}
WORKERS = int(os.environ.get("TP_WORKERS", "4"))
REPEAT = int(os.environ.get("TP_REPEAT", "50"))
SCENARIO_TIMEOUT = float(os.environ.get("TP_SCENARIO_TIMEOUT", "60"))

# The demo schema's rows, in id order (src/demo/schema.sql).
EXPECTED = {
    "acme": ["acme anvil", "acme rocket skates", "acme giant magnet"],
    "globex": ["globex doomsday device", "globex hammock"],
}


def tenant_of(worker):
    """Workers alternate tenants: 0 acme, 1 globex, 2 acme, ..."""
    return "acme" if worker % 2 == 0 else "globex"


def check_rows(tenant, rows, what):
    """rows: (tenant_id, name) pairs. Only this tenant's rows, all of them, in order."""
    got = [tuple(r[:2]) for r in rows]
    want = [(tenant, n) for n in EXPECTED[tenant]]
    if got != want:
        raise AssertionError(f"{what}: {tenant} expected {want}, got {got}")


class Report:
    def __init__(self, driver):
        self.driver = driver
        self.passed = 0
        self.failed = 0

    async def scenario(self, name, fn):
        try:
            detail = await asyncio.wait_for(fn(), SCENARIO_TIMEOUT)
            self.passed += 1
            print(f"ok {name}" + (f" -- {detail}" if detail else ""), flush=True)
        except (asyncio.TimeoutError, TimeoutError):
            self.failed += 1
            print(f"FAIL {name}: timed out after {SCENARIO_TIMEOUT:g} s", flush=True)
        except Exception as e:  # noqa: BLE001 - every failure is a report line
            self.failed += 1
            reason = (str(e) if isinstance(e, WorkerError) else describe(e)).replace("\n", " | ")
            print(f"FAIL {name}: {reason}", flush=True)
            if os.environ.get("TP_VERBOSE"):
                traceback.print_exc()

    def finish(self):
        print(f"{self.driver}: {self.passed} passed, {self.failed} failed", flush=True)
        sys.exit(1 if self.failed else 0)


class WorkerError(Exception):
    """A worker's failure, labelled with the worker and its tenant."""


async def concurrently(fn, workers=None):
    """Runs fn(worker, tenant) for each worker at once; lets all finish, then
    raises the first failure naming its worker. Returns the results."""
    n = workers or WORKERS
    results = await asyncio.gather(
        *(fn(w, tenant_of(w)) for w in range(n)), return_exceptions=True
    )
    for w, r in enumerate(results):
        if isinstance(r, BaseException):
            raise WorkerError(f"worker {w} ({tenant_of(w)}): {describe(r)}") from r
    return results


def describe(e):
    """Exception text with the SQLSTATE when the driver gives one."""
    code = getattr(e, "sqlstate", None)
    text = f"{type(e).__name__}: {e}"
    return f"{text} [{code}]" if code else text
