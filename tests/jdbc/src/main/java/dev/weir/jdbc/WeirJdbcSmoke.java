// Smoke test of the Arrow Flight SQL JDBC driver (the driver DBeaver, DataGrip and
// Tableau load) against a running Weir: what a BI tool does at connect time, then
// plain statements, DML, prepared statements, sessions, errors and cancellation.
//
// tests/scripts/jdbc.sh installs the driver, compiles this and runs it:
//   tests/scripts/jdbc.sh smoke 'jdbc:arrow-flight-sql://127.0.0.1:PORT?useEncryption=false' [USER PASSWORD]
// (tests/python/test_jdbc.py does, against servers without and with users). Prints one line per
// check: "OK     name: detail", "FAILED name: exception" or "GAP    name: detail" (a known gap of
// the driver, not of Weir: not a failure), then "N passed, N failed, N known driver gaps";
// exits 1 on a failure.
package dev.weir.jdbc;

import java.sql.*;
import java.util.*;
import java.util.concurrent.*;
import java.util.logging.Level;
import java.util.logging.Logger;

public class WeirJdbcSmoke {
  interface Check { String run() throws Exception; }

  /** A known gap of the driver (what it does instead): reported, not failed. */
  static final class KnownGap extends Exception {
    KnownGap(String what) { super(what); }
  }

  static int passed = 0, failed = 0, gaps = 0;
  static final List<String> failures = new ArrayList<>();
  // The driver logs through (shaded) java.util.logging: its INFO lines about Arrow's allocator
  // are noise here. Held in a field: JUL keeps loggers weakly.
  static final Logger ARROW_LOG = Logger.getLogger("org.apache.arrow");

  static void quietDriverLogs() { ARROW_LOG.setLevel(Level.WARNING); }

  static void check(String name, Check c) {
    try {
      String detail = c.run();
      passed++;
      System.out.println("OK     " + name + (detail == null ? "" : ": " + detail));
    } catch (KnownGap g) {
      gaps++;
      System.out.println("GAP    " + name + ": known driver gap: " + g.getMessage());
    } catch (Throwable t) {
      failed++;
      failures.add(name);
      String msg = String.valueOf(t);
      Throwable cause = t.getCause();
      int depth = 0;
      while (cause != null && depth++ < 3) { msg += " | caused by " + cause; cause = cause.getCause(); }
      System.out.println("FAILED " + name + ": " + msg.replace('\n', ' '));
      if (System.getenv("WEIR_JDBC_TRACE") != null) t.printStackTrace(System.out);
    }
    System.out.flush();
  }

  static void summary() {
    System.out.println(passed + " passed, " + failed + " failed, " + gaps + " known driver gaps"
        + (failures.isEmpty() ? "" : "  (failed: " + String.join(", ", failures) + ")"));
    System.out.flush();
  }

  static void require(boolean cond, String what) {
    if (!cond) throw new AssertionError(what);
  }

  /** Statement.executeBatch of the driver: AvaticaConnection.prepareAndUpdateBatch gets null
   *  from ArrowFlightMetaImpl.prepareAndExecuteBatch (a stub) and throws an NPE before
   *  anything reaches the server. */
  static boolean isStatementBatchNpe(Throwable t) {
    for (; t != null; t = t.getCause()) {
      if (t instanceof NullPointerException && String.valueOf(t.getMessage()).contains("prepareAndUpdateBatch")) return true;
    }
    return false;
  }

  /** First column of every row, rendered as strings. */
  static List<String> col(ResultSet rs, String column) throws SQLException {
    List<String> out = new ArrayList<>();
    try (rs) { while (rs.next()) out.add(rs.getString(column)); }
    return out;
  }

  static String rows(ResultSet rs, int limit) throws SQLException {
    StringBuilder sb = new StringBuilder();
    try (rs) {
      ResultSetMetaData md = rs.getMetaData();
      int n = 0;
      while (rs.next()) {
        if (n++ >= limit) continue;
        sb.append(n == 1 ? "" : "; ").append('(');
        for (int i = 1; i <= md.getColumnCount(); i++) {
          sb.append(i == 1 ? "" : ", ").append(rs.getObject(i));
        }
        sb.append(')');
      }
      sb.append(" [").append(n).append(" rows]");
    }
    return sb.toString();
  }

  static long count(Connection c, String table) throws SQLException {
    try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery("SELECT count(*) FROM " + table)) {
      rs.next();
      return rs.getLong(1);
    }
  }

  /** On a new connection: SET the setting to 777, then SHOW it in a second statement; the
   *  connection's close() exception (if any) goes to closeError[0]. */
  static String sessionSetSurvives(String url, Properties props, String setting, Throwable[] closeError)
      throws SQLException {
    Connection c = DriverManager.getConnection(url, props);
    try (Statement s = c.createStatement()) {
      s.execute("SET " + setting + " = 777");
      try (ResultSet rs = s.executeQuery("SHOW " + setting)) {
        require(rs.next(), "SHOW returned no row");
        return rs.getString(rs.getMetaData().getColumnCount());
      }
    } finally {
      try { c.close(); } catch (SQLException e) { closeError[0] = e; }
    }
  }

  public static void main(String[] args) throws Exception {
    if (args.length < 1) {
      System.err.println("usage: WeirJdbcSmoke JDBC_URL [USER PASSWORD]");
      System.exit(2);
    }
    String url = args[0];
    Properties props = new Properties();
    if (args.length >= 3) { props.setProperty("user", args[1]); props.setProperty("password", args[2]); }
    String suffix = Long.toString(System.currentTimeMillis() % 1_000_000_000L);
    String t = "jdbc_smoke_" + suffix;           // created in the default schema
    String tb = "jdbc_smoke_batch_" + suffix;

    quietDriverLogs();
    Class.forName("org.apache.arrow.driver.jdbc.ArrowFlightJdbcDriver");
    final Connection[] holder = new Connection[1];
    check("connect", () -> {
      holder[0] = DriverManager.getConnection(url, props);
      DatabaseMetaData md = holder[0].getMetaData();
      return md.getDriverName() + " " + md.getDriverVersion() + " -> " + md.getDatabaseProductName() + " " + md.getDatabaseProductVersion();
    });
    Connection c = holder[0];
    if (c == null) { summary(); System.exit(1); }
    DatabaseMetaData md = c.getMetaData();

    // --- what a BI tool asks at connect time -----------------------------------------------
    check("metadata.sqlInfo", () -> "identifierQuote=" + md.getIdentifierQuoteString()
        + " keywords=" + md.getSQLKeywords().length() + "ch numericFns=" + md.getNumericFunctions().length()
        + "ch readOnly=" + md.isReadOnly() + " txn=" + md.supportsTransactions()
        + " catalogTerm=" + md.getCatalogTerm() + " schemaTerm=" + md.getSchemaTerm());
    check("connection.getCatalog/getSchema", () -> "catalog=" + c.getCatalog() + " schema=" + c.getSchema());
    check("metadata.getCatalogs", () -> col(md.getCatalogs(), "TABLE_CAT").toString());
    check("metadata.getSchemas()", () -> {
      List<String> s = new ArrayList<>();
      try (ResultSet rs = md.getSchemas()) { while (rs.next()) s.add(rs.getString("TABLE_CATALOG") + "." + rs.getString("TABLE_SCHEM")); }
      require(s.stream().anyMatch(x -> x.endsWith(".silver")), "no silver schema in " + s);
      return s.toString();
    });
    check("metadata.getSchemas(null,'sil%')", () -> col(md.getSchemas(null, "sil%"), "TABLE_SCHEM").toString());
    check("metadata.getTableTypes", () -> col(md.getTableTypes(), "TABLE_TYPE").toString());
    check("metadata.getTables(all)", () -> {
      List<String> s = new ArrayList<>();
      try (ResultSet rs = md.getTables(null, null, "%", null)) {
        while (rs.next()) s.add(rs.getString("TABLE_SCHEM") + "." + rs.getString("TABLE_NAME") + ":" + rs.getString("TABLE_TYPE"));
      }
      require(s.stream().anyMatch(x -> x.startsWith("silver.points:")), "silver.points missing from " + s);
      return s.size() + " tables " + s;
    });
    check("metadata.getTables(types TABLE,VIEW)", () -> {
      List<String> s = new ArrayList<>();
      try (ResultSet rs = md.getTables(null, null, "%", new String[] {"TABLE", "VIEW"})) {
        while (rs.next()) s.add(rs.getString("TABLE_SCHEM") + "." + rs.getString("TABLE_NAME") + ":" + rs.getString("TABLE_TYPE"));
      }
      require(s.stream().anyMatch(x -> x.startsWith("silver.points:")), "silver.points missing from " + s);
      return s.size() + " tables";
    });
    check("metadata.getTables(silver, points)", () -> rows(md.getTables(null, "silver", "points", null), 3));
    check("metadata.getColumns(silver.points)", () -> {
      StringBuilder sb = new StringBuilder();
      int n = 0;
      try (ResultSet rs = md.getColumns(null, "silver", "points", "%")) {
        while (rs.next()) {
          n++;
          sb.append(rs.getString("COLUMN_NAME")).append(' ').append(rs.getString("TYPE_NAME"))
              .append("/").append(rs.getInt("DATA_TYPE"))
              .append(rs.getInt("NULLABLE") == DatabaseMetaData.columnNoNulls ? " NOT NULL" : "")
              .append(" pos=").append(rs.getInt("ORDINAL_POSITION")).append("; ");
        }
      }
      require(n > 0, "no columns");
      return sb.toString();
    });
    check("metadata.getTypeInfo", () -> {
      List<String> s = col(md.getTypeInfo(), "TYPE_NAME");
      // The driver does not override getTypeInfo: Avatica's default answers an empty result
      // without asking the server (Weir answers CommandGetXdbcTypeInfo: test_flight_sql.py).
      if (s.isEmpty()) throw new KnownGap("getTypeInfo is empty: the driver never sends CommandGetXdbcTypeInfo");
      return s.size() + " types " + s;
    });
    check("metadata.getPrimaryKeys(silver.points)", () -> rows(md.getPrimaryKeys(null, "silver", "points"), 5));
    check("metadata.getImportedKeys(silver.points)", () -> rows(md.getImportedKeys(null, "silver", "points"), 5));
    check("metadata.getExportedKeys(silver.points)", () -> rows(md.getExportedKeys(null, "silver", "points"), 5));

    // --- queries ---------------------------------------------------------------------------
    check("query SELECT 1", () -> {
      try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery("SELECT 1 AS one, 'x' AS s")) {
        require(rs.next(), "no row");
        require(rs.getInt("one") == 1, "one != 1");
        return rs.getMetaData().getColumnTypeName(1) + "," + rs.getMetaData().getColumnTypeName(2);
      }
    });
    check("query timestamps", () -> {
      try (Statement s = c.createStatement();
           ResultSet rs = s.executeQuery("SELECT now() AS n, CAST('2026-01-01T00:00:00Z' AS TIMESTAMP) AS t, "
               + "CAST('2026-01-01' AS DATE) AS d")) {
        require(rs.next(), "no row");
        Timestamp ts = rs.getTimestamp("t");
        return "now=" + rs.getTimestamp("n") + " t=" + ts + " (epoch ms " + ts.getTime() + ") d=" + rs.getDate("d")
            + " types=" + rs.getMetaData().getColumnTypeName(1) + "," + rs.getMetaData().getColumnTypeName(2);
      }
    });
    check("query list make_array(1,2)", () -> {
      try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery("SELECT make_array(1, 2) AS a")) {
        require(rs.next(), "no row");
        Array a = rs.getArray("a");
        return "getObject=" + rs.getObject("a") + " getArray=" + Arrays.toString((Object[]) a.getArray());
      }
    });
    check("query map", () -> {
      try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery("SELECT map(['a','b'], [1, 2]) AS m")) {
        require(rs.next(), "no row");
        return String.valueOf(rs.getObject("m"));
      }
    });
    check("query silver.points LIMIT 5", () -> {
      try (Statement s = c.createStatement()) {
        return rows(s.executeQuery("SELECT * FROM silver.points LIMIT 5"), 2);
      }
    });
    check("query maxRows", () -> {
      try (Statement s = c.createStatement()) {
        s.setMaxRows(2);
        return rows(s.executeQuery("SELECT * FROM (VALUES (1),(2),(3),(4)) AS v(x)"), 10);
      }
    });

    // --- DML / DDL -------------------------------------------------------------------------
    check("executeUpdate CREATE TABLE", () -> {
      try (Statement s = c.createStatement()) {
        int n = s.executeUpdate("CREATE TABLE " + t + " (id BIGINT, name VARCHAR)");
        return "count=" + n;
      }
    });
    check("executeUpdate INSERT (count 2, rows landed)", () -> {
      try (Statement s = c.createStatement()) {
        int n = s.executeUpdate("INSERT INTO " + t + " VALUES (1, 'a'), (2, 'b')");
        long rows = count(c, t);
        require(n == 2, "update count " + n + " != 2");
        require(rows == 2, "table has " + rows + " rows, want 2");
        return "count=" + n + " rows=" + rows;
      }
    });
    check("execute INSERT without reading (rows landed)", () -> {
      try (Statement s = c.createStatement()) {
        boolean isResultSet = s.execute("INSERT INTO " + t + " VALUES (3, 'c')");
        long rows = count(c, t);
        require(rows == 3, "table has " + rows + " rows, want 3");
        return "execute()=" + isResultSet + " updateCount=" + s.getUpdateCount() + " rows=" + rows;
      }
    });
    check("execute SELECT (returns result set)", () -> {
      try (Statement s = c.createStatement()) {
        boolean isResultSet = s.execute("SELECT id FROM " + t + " ORDER BY id");
        require(isResultSet, "execute(SELECT) returned false");
        return rows(s.getResultSet(), 5);
      }
    });

    // --- prepared statements ---------------------------------------------------------------
    check("prepared SELECT ? + 1", () -> {
      try (PreparedStatement p = c.prepareStatement("SELECT ? + 1 AS v")) {
        p.setLong(1, 41);
        try (ResultSet rs = p.executeQuery()) {
          require(rs.next(), "no row");
          require(rs.getLong(1) == 42, "got " + rs.getLong(1));
          return "v=" + rs.getLong(1);
        }
      }
    });
    check("prepared SELECT $1 (parameter metadata)", () -> {
      try (PreparedStatement p = c.prepareStatement("SELECT * FROM " + t + " WHERE id = $1")) {
        ParameterMetaData pm = p.getParameterMetaData();
        p.setLong(1, 2);
        return "params=" + pm.getParameterCount() + " rows: " + rows(p.executeQuery(), 5);
      }
    });
    check("prepared SELECT no params, run twice", () -> {
      try (PreparedStatement p = c.prepareStatement("SELECT count(*) FROM " + t)) {
        String a = rows(p.executeQuery(), 1), b = rows(p.executeQuery(), 1);
        return a + " / " + b + " cols=" + p.getMetaData().getColumnCount();
      }
    });
    check("prepared INSERT executeUpdate", () -> {
      try (PreparedStatement p = c.prepareStatement("INSERT INTO " + t + " VALUES (?, ?)")) {
        p.setLong(1, 10);
        p.setString(2, "ten");
        int n = p.executeUpdate();
        require(n == 1, "update count " + n);
        return "count=" + n + " rows=" + count(c, t);
      }
    });
    check("prepared INSERT addBatch/executeBatch", () -> {
      try (Statement s = c.createStatement()) { s.executeUpdate("CREATE TABLE " + tb + " (id BIGINT, name VARCHAR)"); }
      try (PreparedStatement p = c.prepareStatement("INSERT INTO " + tb + " VALUES (?, ?)")) {
        for (int i = 0; i < 3; i++) { p.setLong(1, i); p.setString(2, "n" + i); p.addBatch(); }
        int[] r = p.executeBatch();
        long rows = count(c, tb);
        require(rows == 3, "table has " + rows + " rows, want 3; counts=" + Arrays.toString(r));
        return "counts=" + Arrays.toString(r) + " rows=" + rows;
      }
    });
    check("Statement addBatch/executeBatch", () -> {
      long before = count(c, t);
      try (Statement s = c.createStatement()) {
        s.addBatch("INSERT INTO " + t + " VALUES (20, 'x')");
        s.addBatch("INSERT INTO " + t + " VALUES (21, 'y')");
        int[] r;
        try {
          r = s.executeBatch();
        } catch (Exception e) {
          if (!isStatementBatchNpe(e)) throw e;
          long after = count(c, t);
          require(after == before, "rows " + before + " -> " + after + " after the failed batch");
          throw new KnownGap("Statement.executeBatch throws " + e + " (nothing runs; rows stay " + after + ")");
        }
        long after = count(c, t);
        require(after == before + 2, "rows " + before + " -> " + after + ", want +2; counts=" + Arrays.toString(r));
        return "counts=" + Arrays.toString(r) + " rows=" + after;
      }
    });

    // --- sessions ----------------------------------------------------------------------------
    // The driver keeps cookies (connection property retainCookies, default true) but opens a
    // A SQL SET lasts for the connection: Weir keys sessions by cookie, else by connection
    // (the driver sends SetSessionOptions, and so gets a cookie, only with the property
    // `catalog`).
    final Throwable[] closeError = new Throwable[1];
    check("session: SET lasts across statements of the connection", () -> {
      String setting = "datafusion.execution.batch_size";
      String plain = sessionSetSurvives(url, props, setting, new Throwable[1]);
      require(plain.equals("777"), "without catalog: SET " + setting + " = 777, then SHOW gave " + plain);
      Properties withCatalog = new Properties();
      withCatalog.putAll(props);
      withCatalog.setProperty("catalog", "weir");
      String session = sessionSetSurvives(url, withCatalog, setting, closeError);
      require(session.equals("777"), "with catalog=weir: SET " + setting + " = 777, then SHOW gave " + session);
      try (Connection fresh = DriverManager.getConnection(url, props);
           Statement s = fresh.createStatement();
           ResultSet rs = s.executeQuery("SHOW " + setting)) {
        require(rs.next(), "SHOW returned no row");
        String other = rs.getString(rs.getMetaData().getColumnCount());
        require(!other.equals("777"), "a new connection saw the other connection's SET: " + other);
        return "without catalog: " + plain + "; with catalog=weir: " + session + "; new connection: " + other;
      }
    });
    check("session: Connection.close with catalog=weir", () -> {
      Throwable e = closeError[0];
      if (e == null) return "closed";
      // ArrowFlightConnection.close closes its client handler twice: the first close sends
      // CloseSession and shuts the channel down, the second sends CloseSession again on it.
      if (String.valueOf(e.getMessage()).contains("Channel shutdown invoked")) {
        throw new KnownGap("Connection.close() throws " + e + " (the session was closed by the first CloseSession)");
      }
      throw new AssertionError("close() threw", e);
    });

    // --- errors and cancellation -----------------------------------------------------------
    check("error SELECT * FROM nope -> SQLException", () -> {
      try (Statement s = c.createStatement()) {
        s.executeQuery("SELECT * FROM nope");
        throw new AssertionError("no exception");
      } catch (SQLException e) {
        String m = String.valueOf(e.getMessage());
        require(m.toLowerCase().contains("nope"), "message does not name the table: " + m);
        return "SQLState=" + e.getSQLState() + " message=" + m.replace('\n', ' ');
      }
    });
    check("error syntax -> SQLException", () -> {
      try (Statement s = c.createStatement()) {
        s.executeQuery("SELEC 1");
        throw new AssertionError("no exception");
      } catch (SQLException e) {
        return "message=" + String.valueOf(e.getMessage()).replace('\n', ' ');
      }
    });
    check("connection usable after error", () -> rows(c.createStatement().executeQuery("SELECT 2"), 1));
    check("setQueryTimeout(1) on a slow query", () -> {
      try (Statement s = c.createStatement()) {
        s.setQueryTimeout(1);
        long t0 = System.nanoTime();
        try {
          String r = rows(s.executeQuery("SELECT count(*) FROM generate_series(1, 3000000000) a"), 1);
          return "no timeout after " + (System.nanoTime() - t0) / 1_000_000 + " ms: " + r;
        } catch (SQLException e) {
          long ms = (System.nanoTime() - t0) / 1_000_000;
          require(ms < 10_000, "took " + ms + " ms");
          return "SQLException after " + ms + " ms: " + e.getMessage();
        }
      }
    });
    check("Statement.cancel from another thread", () -> {
      try (Statement s = c.createStatement()) {
        ScheduledExecutorService ex = Executors.newSingleThreadScheduledExecutor();
        ex.schedule(() -> { try { s.cancel(); } catch (SQLException e) { System.out.println("  cancel(): " + e); } return null; },
            500, TimeUnit.MILLISECONDS);
        long t0 = System.nanoTime();
        try {
          String r = rows(s.executeQuery("SELECT count(*) FROM generate_series(1, 3000000000) a"), 1);
          return "not cancelled, finished after " + (System.nanoTime() - t0) / 1_000_000 + " ms: " + r;
        } catch (SQLException e) {
          long ms = (System.nanoTime() - t0) / 1_000_000;
          require(ms < 10_000, "took " + ms + " ms");
          return "SQLException after " + ms + " ms: " + e.getMessage();
        } finally {
          ex.shutdownNow();
        }
      }
    });

    // --- clean up --------------------------------------------------------------------------
    check("DROP TABLE", () -> {
      try (Statement s = c.createStatement()) {
        s.executeUpdate("DROP TABLE " + t);
        s.executeUpdate("DROP TABLE IF EXISTS " + tb);
        return null;
      }
    });
    check("close", () -> { c.close(); return null; });

    summary();
    System.exit(failed == 0 ? 0 : 1);
  }
}
