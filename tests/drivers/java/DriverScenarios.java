// PostgreSQL JDBC (pgjdbc) through tenantpool, server-side prepared
// statements from the first execution (prepareThreshold=1).
//
// pgjdbc names server-side statements itself, per connection: S_1, S_2, ...
// in the order it first prepares them, and keeps them in a per-connection
// cache keyed by SQL text. Each scenario runs TP_WORKERS connections at once
// (tenants alternating, one thread each) so that, in transaction mode, server
// connections are shuffled between their transactions.
//
// Prints `ok <scenario>` / `FAIL <scenario>: <reason>` per scenario and a
// total line; exits 1 on any failure. Compiled by tests/driver_matrix.rs with
// javac against Debian's /usr/share/java/postgresql.jar.

import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

public class DriverScenarios {
    static final String HOST = env("TP_HOST", "127.0.0.1");
    static final int PORT = Integer.parseInt(env("TP_PORT", "6432"));
    static final String DB = env("TP_DB", "app");
    static final String PASSWORD = env("TP_PASSWORD", "app-secret");
    static final Map<String, String> USERS = Map.of(
            "acme", env("TP_USER_ACME", "app.acme"),
            "globex", env("TP_USER_GLOBEX", "app.globex"));
    static final int WORKERS = Integer.parseInt(env("TP_WORKERS", "4"));
    static final int REPEAT = Integer.parseInt(env("TP_REPEAT", "50"));
    static final long SCENARIO_TIMEOUT_S = Long.parseLong(env("TP_SCENARIO_TIMEOUT", "60"));

    // The demo schema's rows, in id order (src/demo/schema.sql).
    static final Map<String, List<String>> EXPECTED = Map.of(
            "acme", List.of("acme anvil", "acme rocket skates", "acme giant magnet"),
            "globex", List.of("globex doomsday device", "globex hammock"));

    static final String MAIN =
            "select tenant_id, name, pg_backend_pid() from items where id > ? order by id";
    // A different statement for scenario same_name: other parameter type, other columns.
    static final String OTHER =
            "select count(*)::int, current_setting('app.current_tenant') from items where name <> ?";
    static final String DIV = "select 10 / ?::int";
    static final String INSERT = "insert into items (tenant_id, name) values (?, ?) returning id";
    static final String BY_NAME = "select tenant_id, name from items where name = ?";
    static final String DELETE = "delete from items where id = ?";

    static String env(String name, String dflt) {
        String v = System.getenv(name);
        return v == null || v.isEmpty() ? dflt : v;
    }

    /** Workers alternate tenants: 0 acme, 1 globex, 2 acme, ... */
    static String tenantOf(int worker) {
        return worker % 2 == 0 ? "acme" : "globex";
    }

    static Connection connect(String tenant) throws SQLException {
        Properties p = new Properties();
        p.setProperty("user", USERS.get(tenant));
        p.setProperty("password", PASSWORD);
        p.setProperty("prepareThreshold", "1");
        p.setProperty("connectTimeout", "10");
        p.setProperty("socketTimeout", "60");
        return DriverManager.getConnection("jdbc:postgresql://" + HOST + ":" + PORT + "/" + DB, p);
    }

    /** Only this tenant's rows, all of them, in order; returns the pid column if there is one. */
    static int checkRows(String tenant, ResultSet rs, String what) throws SQLException {
        List<String> got = new ArrayList<>();
        int pid = 0;
        boolean hasPid = rs.getMetaData().getColumnCount() >= 3;
        while (rs.next()) {
            got.add(rs.getString(1) + "/" + rs.getString(2));
            if (hasPid) {
                pid = rs.getInt(3);
            }
        }
        List<String> want = new ArrayList<>();
        for (String n : EXPECTED.get(tenant)) {
            want.add(tenant + "/" + n);
        }
        if (!got.equals(want)) {
            throw new AssertionError(what + ": " + tenant + " expected " + want + ", got " + got);
        }
        return pid;
    }

    /** Runs MAIN (prepared; pgjdbc reuses its server statement per SQL text), checks isolation, returns the pid. */
    static int mainQuery(Connection c, String tenant, String what) throws SQLException {
        try (PreparedStatement ps = c.prepareStatement(MAIN)) {
            ps.setLong(1, 0);
            try (ResultSet rs = ps.executeQuery()) {
                return checkRows(tenant, rs, what);
            }
        }
    }

    interface SqlCall {
        void run() throws SQLException;
    }

    static void expectError(SqlCall call, String sqlstate) throws SQLException {
        try {
            call.run();
        } catch (SQLException e) {
            if (!sqlstate.equals(e.getSQLState())) {
                throw e;
            }
            return;
        }
        throw new AssertionError("expected SQLSTATE " + sqlstate + ", the statement succeeded");
    }

    static void query(Connection c, String sql, Object... params) throws SQLException {
        try (PreparedStatement ps = c.prepareStatement(sql)) {
            for (int i = 0; i < params.length; i++) {
                ps.setObject(i + 1, params[i]);
            }
            ps.execute();
        }
    }

    static String describe(Throwable e) {
        String state = e instanceof SQLException ? ((SQLException) e).getSQLState() : null;
        String text = e.getClass().getSimpleName() + ": " + e.getMessage();
        return (state != null ? text + " [" + state + "]" : text).replace("\n", " | ");
    }

    interface Work {
        Object run(int worker, String tenant, Connection c) throws Exception;
    }

    /** Runs work on each worker's own connection at once; lets all finish, then throws the first failure. */
    static List<Object> concurrently(Work work) throws Exception {
        ExecutorService pool = Executors.newFixedThreadPool(WORKERS, r -> {
            Thread t = new Thread(r);
            t.setDaemon(true);
            return t;
        });
        try {
            List<Future<Object>> futures = new ArrayList<>();
            for (int w = 0; w < WORKERS; w++) {
                final int worker = w;
                futures.add(pool.submit(() -> {
                    try (Connection c = connect(tenantOf(worker))) {
                        return work.run(worker, tenantOf(worker), c);
                    }
                }));
            }
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(SCENARIO_TIMEOUT_S);
            List<Object> results = new ArrayList<>();
            Exception first = null;
            for (int w = 0; w < WORKERS; w++) {
                try {
                    results.add(futures.get(w).get(Math.max(0, deadline - System.nanoTime()), TimeUnit.NANOSECONDS));
                } catch (ExecutionException e) {
                    if (first == null) {
                        first = new Exception("worker " + w + " (" + tenantOf(w) + "): " + describe(e.getCause()));
                    }
                } catch (TimeoutException e) {
                    throw new Exception("timed out after " + SCENARIO_TIMEOUT_S + " s");
                }
            }
            if (first != null) {
                throw first;
            }
            return results;
        } finally {
            pool.shutdownNow();
        }
    }

    static Object isolation() throws Exception {
        concurrently((w, tenant, c) -> {
            for (int i = 0; i < 10; i++) {
                try (PreparedStatement ps = c.prepareStatement(
                        "select tenant_id, name from items where current_setting('app.current_tenant') = ? order by id")) {
                    ps.setString(1, tenant);
                    try (ResultSet rs = ps.executeQuery()) {
                        checkRows(tenant, rs, "select without a tenant_id filter #" + i);
                    }
                }
            }
            return null;
        });
        return null;
    }

    static Object repeat() throws Exception {
        List<Object> results = concurrently((w, tenant, c) -> {
            Set<Integer> pids = new HashSet<>();
            // One PreparedStatement object, executed REPEAT times (autocommit:
            // one transaction each).
            try (PreparedStatement ps = c.prepareStatement(MAIN)) {
                for (int i = 0; i < REPEAT; i++) {
                    ps.setLong(1, 0);
                    try (ResultSet rs = ps.executeQuery()) {
                        pids.add(checkRows(tenant, rs, "execution " + i));
                    }
                }
            }
            return pids;
        });
        Set<Object> pids = new HashSet<>();
        for (Object r : results) {
            pids.addAll((Set<?>) r);
        }
        return results.size() + " workers x " + REPEAT + " transactions, " + pids.size() + " server backends seen";
    }

    static Object sameName() throws Exception {
        // pgjdbc names statements itself: on a fresh connection the first one
        // it prepares is S_1. Even workers prepare MAIN first, odd ones OTHER,
        // so the same name S_1 means different SQL on different connections.
        concurrently((w, tenant, c) -> {
            for (int i = 0; i < 20; i++) {
                if (w % 2 == 0) {
                    mainQuery(c, tenant, "MAIN as S_1 #" + i);
                } else {
                    try (PreparedStatement ps = c.prepareStatement(OTHER)) {
                        ps.setString(1, "no such name");
                        try (ResultSet rs = ps.executeQuery()) {
                            rs.next();
                            String got = rs.getInt(1) + "/" + rs.getString(2);
                            String want = EXPECTED.get(tenant).size() + "/" + tenant;
                            if (!got.equals(want) || rs.next()) {
                                throw new AssertionError("OTHER as S_1 #" + i + ": got " + got);
                            }
                        }
                    }
                }
            }
            return null;
        });
        return null;
    }

    static Object errorRecovery() throws Exception {
        concurrently((w, tenant, c) -> {
            mainQuery(c, tenant, "before errors");
            // Parse fails.
            expectError(() -> query(c, "selec 1"), "42601");
            // Parse succeeds, execution fails: division by zero.
            expectError(() -> query(c, DIV, 0), "22012");
            for (int i = 0; i < 10; i++) {
                mainQuery(c, tenant, "after errors #" + i);
            }
            try (PreparedStatement ps = c.prepareStatement(DIV)) {
                ps.setInt(1, 5);
                try (ResultSet rs = ps.executeQuery()) {
                    rs.next();
                    if (rs.getInt(1) != 2) {
                        throw new AssertionError("10 / 5 is not 2");
                    }
                }
            }
            return null;
        });
        return null;
    }

    static Object deallocateAll() throws Exception {
        concurrently((w, tenant, c) -> {
            mainQuery(c, tenant, "before DEALLOCATE ALL");
            try (Statement st = c.createStatement()) {
                // Not server-prepared (a plain Statement); pgjdbc sees the
                // DEALLOCATE ALL command tag and forgets its server statements.
                st.execute("DEALLOCATE ALL");
            }
            for (int i = 0; i < 10; i++) {
                mainQuery(c, tenant, "after DEALLOCATE ALL #" + i);
            }
            return null;
        });
        return null;
    }

    static Object rollbackRetry() throws Exception {
        concurrently((w, tenant, c) -> {
            String name = "retry " + tenant + " " + w;
            // Attempt 1: prepares INSERT and DIV inside the transaction, then fails.
            c.setAutoCommit(false);
            query(c, INSERT, tenant, name);
            expectError(() -> query(c, DIV, 0), "22012");
            c.rollback();
            c.setAutoCommit(true);
            try (PreparedStatement ps = c.prepareStatement(BY_NAME)) {
                ps.setString(1, name);
                try (ResultSet rs = ps.executeQuery()) {
                    if (rs.next()) {
                        throw new AssertionError("the rolled back insert is visible");
                    }
                }
            }
            // Attempt 2: the same prepared statements, in a new transaction.
            c.setAutoCommit(false);
            long id;
            try (PreparedStatement ps = c.prepareStatement(INSERT)) {
                ps.setString(1, tenant);
                ps.setString(2, name);
                try (ResultSet rs = ps.executeQuery()) {
                    rs.next();
                    id = rs.getLong(1);
                }
            }
            try (PreparedStatement ps = c.prepareStatement(BY_NAME)) {
                ps.setString(1, name);
                try (ResultSet rs = ps.executeQuery()) {
                    List<String> got = new ArrayList<>();
                    while (rs.next()) {
                        got.add(rs.getString(1) + "/" + rs.getString(2));
                    }
                    if (!got.equals(List.of(tenant + "/" + name))) {
                        throw new AssertionError("retried insert not visible in its transaction: " + got);
                    }
                }
            }
            query(c, DELETE, id);
            c.commit();
            c.setAutoCommit(true);
            mainQuery(c, tenant, "after retry");
            return null;
        });
        return null;
    }

    interface Scenario {
        Object run() throws Exception;
    }

    static int passed = 0;
    static int failed = 0;

    static void scenario(String name, Scenario s) {
        try {
            Object detail = s.run();
            passed++;
            System.out.println("ok " + name + (detail != null ? " -- " + detail : ""));
        } catch (Throwable e) {
            failed++;
            String reason = e.getClass() == Exception.class ? e.getMessage() : describe(e);
            System.out.println("FAIL " + name + ": " + reason.replace("\n", " | "));
            if (System.getenv("TP_VERBOSE") != null) {
                e.printStackTrace();
            }
        }
        System.out.flush();
    }

    public static void main(String[] args) {
        scenario("isolation", DriverScenarios::isolation);
        scenario("repeat", DriverScenarios::repeat);
        scenario("same_name", DriverScenarios::sameName);
        scenario("error_recovery", DriverScenarios::errorRecovery);
        scenario("deallocate_all", DriverScenarios::deallocateAll);
        scenario("rollback_retry", DriverScenarios::rollbackRetry);
        System.out.println("pgjdbc " + org.postgresql.util.DriverInfo.DRIVER_VERSION + ": "
                + passed + " passed, " + failed + " failed");
        System.exit(failed == 0 ? 0 : 1);
    }
}
