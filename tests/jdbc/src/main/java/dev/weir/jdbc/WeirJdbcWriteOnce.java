// Write-once sweep through the Arrow Flight SQL JDBC driver (issue 18, item 0 for JDBC): every
// statement that changes data takes effect exactly once, whatever the client reads.
// Statement kinds (INSERT VALUES, INSERT SELECT, CTAS, REFRESH MATERIALIZED VIEW, COPY when
// WEIR_JDBC_EXPORT_DIR names the server's --export-dir) × JDBC call patterns (Statement.execute,
// executeUpdate, executeQuery with the result ignored, execute + close without reading,
// PreparedStatement executeUpdate with parameters, PreparedStatement addBatch/executeBatch,
// Statement addBatch/executeBatch), each with its effect counted afterwards on another connection.
//
//   tests/scripts/jdbc.sh write-once 'jdbc:arrow-flight-sql://127.0.0.1:PORT?useEncryption=false' [USER PASSWORD]
// Output as WeirJdbcSmoke: OK / FAILED / GAP (known driver gap) lines, then the summary.
package dev.weir.jdbc;

import static dev.weir.jdbc.WeirJdbcSmoke.KnownGap;
import static dev.weir.jdbc.WeirJdbcSmoke.check;
import static dev.weir.jdbc.WeirJdbcSmoke.isStatementBatchNpe;
import static dev.weir.jdbc.WeirJdbcSmoke.require;

import java.nio.file.*;
import java.sql.*;
import java.util.*;

public class WeirJdbcWriteOnce {
  static String url;
  static Properties props;
  static Connection main;    // setup and the prepared/plain patterns
  static Connection checker; // counts
  static int names = 0;
  static final String RUN = Long.toString(System.currentTimeMillis() % 1_000_000_000L, 36);

  static String fresh(String prefix) { return prefix + "_" + RUN + "_" + (names++); }

  static void exec(Connection c, String sql) throws SQLException {
    try (Statement s = c.createStatement()) { s.execute(sql); }
  }

  static long scalar(String sql) throws SQLException {
    try (Statement s = checker.createStatement(); ResultSet rs = s.executeQuery(sql)) {
      require(rs.next(), "no row from " + sql);
      return rs.getLong(1);
    }
  }

  static boolean tableExists(String schema, String table) throws SQLException {
    try (ResultSet rs = checker.getMetaData().getTables(null, schema, table, null)) { return rs.next(); }
  }

  /** One statement kind, set up afresh for each pattern. Effects are numbers: rows of a table,
   *  data lines of a file; -1 when the target does not exist. */
  abstract static class Kind {
    final String name;
    Kind(String name) { this.name = name; }
    abstract void setup() throws Exception;
    abstract String plain();                 // its effect: plainEffect
    abstract long plainEffect();
    abstract String prepared();              // with parameters where the statement takes them
    abstract Object[] params();              // for one executeUpdate; effect: preparedEffect
    abstract long preparedEffect();
    abstract List<Object[]> batchParams();   // for PreparedStatement.executeBatch; effect: batchEffect
    abstract long batchEffect();
    List<String> statementBatch() { return List.of(plain()); }  // effect: statementBatchEffect
    long statementBatchEffect() { return plainEffect(); }
    abstract long noEffect();                // before the statement ran
    abstract long effect() throws Exception;
    /** The update count executeUpdate must return, or null if not checked. */
    Long updateCount(long effect) { return null; }
  }

  static final class InsertValues extends Kind {
    String t;
    InsertValues() { super("INSERT VALUES"); }
    void setup() throws SQLException { t = "public." + fresh("wo_iv"); exec(main, "CREATE TABLE " + t + " (a BIGINT, b VARCHAR)"); }
    String plain() { return "INSERT INTO " + t + " VALUES (1, 'a'), (2, 'b')"; }
    long plainEffect() { return 2; }
    String prepared() { return "INSERT INTO " + t + " VALUES (?, ?)"; }
    Object[] params() { return new Object[] {7L, "seven"}; }
    long preparedEffect() { return 1; }
    List<Object[]> batchParams() { return List.of(new Object[] {1L, "a"}, new Object[] {2L, "b"}, new Object[] {3L, "c"}); }
    long batchEffect() { return 3; }
    List<String> statementBatch() { return List.of(plain(), "INSERT INTO " + t + " VALUES (3, 'c')"); }
    long statementBatchEffect() { return 3; }
    long noEffect() { return 0; }
    long effect() throws SQLException { return scalar("SELECT count(*) FROM " + t); }
    Long updateCount(long effect) { return effect; }
  }

  static final class InsertSelect extends Kind {
    String src, t;
    InsertSelect() { super("INSERT SELECT"); }
    void setup() throws SQLException {
      src = "public." + fresh("wo_src");
      t = "public." + fresh("wo_is");
      exec(main, "CREATE TABLE " + src + " (a BIGINT, b VARCHAR)");
      exec(main, "INSERT INTO " + src + " SELECT value, 'x' FROM range(5)");
      exec(main, "CREATE TABLE " + t + " (a BIGINT, b VARCHAR)");
    }
    String plain() { return "INSERT INTO " + t + " SELECT * FROM " + src; }
    long plainEffect() { return 5; }
    String prepared() { return "INSERT INTO " + t + " SELECT * FROM " + src + " WHERE a < ?"; }
    Object[] params() { return new Object[] {3L}; }
    long preparedEffect() { return 3; }
    List<Object[]> batchParams() { return List.of(new Object[] {2L}, new Object[] {3L}); }
    long batchEffect() { return 5; }
    List<String> statementBatch() { return List.of(plain(), "INSERT INTO " + t + " SELECT * FROM " + src + " WHERE a < 2"); }
    long statementBatchEffect() { return 7; }
    long noEffect() { return 0; }
    long effect() throws SQLException { return scalar("SELECT count(*) FROM " + t); }
    Long updateCount(long effect) { return effect; }
  }

  static final class Ctas extends Kind {
    String t;
    Ctas() { super("CTAS"); }
    void setup() { t = fresh("wo_ctas"); }
    String plain() { return "CREATE TABLE public." + t + " AS SELECT value AS a FROM range(4)"; }
    long plainEffect() { return 4; }
    String prepared() { return "CREATE TABLE public." + t + " AS SELECT value AS a FROM range(10) WHERE value < ?"; }
    Object[] params() { return new Object[] {3L}; }
    long preparedEffect() { return 3; }
    List<Object[]> batchParams() { return List.<Object[]>of(new Object[] {2L}); }
    long batchEffect() { return 2; }
    List<String> statementBatch() { return List.of(plain(), "INSERT INTO public." + t + " VALUES (100)"); }
    long statementBatchEffect() { return 5; }
    long noEffect() { return -1; }
    long effect() throws SQLException {
      return tableExists("public", t) ? scalar("SELECT count(*) FROM public." + t) : -1;
    }
  }

  static final class Refresh extends Kind {
    String base, view;
    Refresh() { super("REFRESH MATERIALIZED VIEW"); }
    void setup() throws SQLException {
      base = "public." + fresh("wo_base");
      view = "public." + fresh("wo_mv");
      exec(main, "CREATE TABLE " + base + " (a BIGINT, b VARCHAR)");
      exec(main, "INSERT INTO " + base + " SELECT value, 'x' FROM range(3)");
      exec(main, "CREATE MATERIALIZED VIEW " + view + " AS SELECT b, count(*) AS n FROM " + base + " GROUP BY b");
      exec(main, "INSERT INTO " + base + " VALUES (10, 'y')");
    }
    String plain() { return "REFRESH MATERIALIZED VIEW " + view; }
    long plainEffect() { return 2; }
    String prepared() { return plain(); }     // takes no parameters
    Object[] params() { return new Object[0]; }
    long preparedEffect() { return 2; }
    List<Object[]> batchParams() { return List.<Object[]>of(new Object[0]); }
    long batchEffect() { return 2; }
    long noEffect() { return 1; }
    // The view's own rows (a group per b: 1 before the refresh, 2 after).
    long effect() throws SQLException { return scalar("SELECT count(*) FROM " + view); }
  }

  static final class Copy extends Kind {
    final Path dir;
    String file;
    Copy(Path dir) { super("COPY"); this.dir = dir; }
    void setup() { file = fresh("wo_copy") + ".csv"; }
    String plain() { return "COPY (SELECT 1 AS a UNION ALL SELECT 2) TO '" + file + "' STORED AS CSV"; }
    long plainEffect() { return 2; }
    String prepared() { return "COPY (SELECT value AS a FROM range(10) WHERE value < ?) TO '" + file + "' STORED AS CSV"; }
    Object[] params() { return new Object[] {3L}; }
    long preparedEffect() { return 3; }
    List<Object[]> batchParams() { return List.<Object[]>of(new Object[] {4L}); }
    long batchEffect() { return 4; }
    long noEffect() { return -1; }
    /** Data lines of the file (its header is "a"). */
    long effect() throws Exception {
      Path p = dir.resolve(file);
      if (!Files.exists(p)) return -1;
      List<String> lines = Files.readAllLines(p);
      require(!lines.isEmpty() && lines.get(0).equals("a"), "header of " + p + ": " + lines);
      return lines.size() - 1;
    }
    Long updateCount(long effect) { return effect; }
  }

  static void bind(PreparedStatement p, Object[] values) throws SQLException {
    for (int i = 0; i < values.length; i++) p.setObject(i + 1, values[i]);
  }

  static String expectEffect(Kind k, long want) throws Exception {
    long got = k.effect();
    require(got == want, k.name + ": effect " + got + ", want " + want + " (before: " + k.noEffect() + ")");
    return "effect " + got;
  }

  interface Pattern { String run(Kind k) throws Exception; }

  static final Map<String, Pattern> PATTERNS = new LinkedHashMap<>();
  static {
    PATTERNS.put("Statement.execute", k -> {
      try (Statement s = main.createStatement()) {
        boolean rs = s.execute(k.plain());
        return "execute()=" + rs + " updateCount=" + s.getUpdateCount() + ", " + expectEffect(k, k.plainEffect());
      }
    });
    PATTERNS.put("Statement.executeUpdate", k -> {
      try (Statement s = main.createStatement()) {
        int n = s.executeUpdate(k.plain());
        Long want = k.updateCount(k.plainEffect());
        require(want == null || n == want, "executeUpdate returned " + n + ", want " + want);
        return "count=" + n + ", " + expectEffect(k, k.plainEffect());
      }
    });
    PATTERNS.put("Statement.executeQuery, result ignored", k -> {
      String what;
      try (Statement s = main.createStatement()) {
        try {
          ResultSet rs = s.executeQuery(k.plain());
          what = "result set (not read)";
        } catch (SQLException e) {
          // JDBC: executeQuery of a statement without a result set throws, after running it.
          what = "SQLException " + String.valueOf(e.getMessage()).replace('\n', ' ');
        }
      }
      return what + ", " + expectEffect(k, k.plainEffect());
    });
    PATTERNS.put("Statement.execute + close without reading", k -> {
      Connection c = DriverManager.getConnection(url, props);
      Statement s = c.createStatement();
      s.execute(k.plain());
      s.close();
      c.close();
      return expectEffect(k, k.plainEffect());
    });
    PATTERNS.put("PreparedStatement executeUpdate (parameters)", k -> {
      try (PreparedStatement p = main.prepareStatement(k.prepared())) {
        bind(p, k.params());
        int n = p.executeUpdate();
        Long want = k.updateCount(k.preparedEffect());
        require(want == null || n == want, "executeUpdate returned " + n + ", want " + want);
        return "params=" + Arrays.toString(k.params()) + " count=" + n + ", " + expectEffect(k, k.preparedEffect());
      }
    });
    PATTERNS.put("PreparedStatement addBatch/executeBatch", k -> {
      try (PreparedStatement p = main.prepareStatement(k.prepared())) {
        for (Object[] row : k.batchParams()) { bind(p, row); p.addBatch(); }
        int[] counts = p.executeBatch();
        return "counts=" + Arrays.toString(counts) + ", " + expectEffect(k, k.batchEffect());
      }
    });
    PATTERNS.put("Statement addBatch/executeBatch", k -> {
      try (Statement s = main.createStatement()) {
        for (String sql : k.statementBatch()) s.addBatch(sql);
        int[] counts;
        try {
          counts = s.executeBatch();
        } catch (Exception e) {
          if (!isStatementBatchNpe(e)) throw e;
          // Nothing may have run: the driver fails before it sends anything.
          String none = expectEffect(k, k.noEffect());
          throw new KnownGap("Statement.executeBatch throws a NullPointerException (prepareAndExecuteBatch is a stub); " + none);
        }
        return "counts=" + Arrays.toString(counts) + ", " + expectEffect(k, k.statementBatchEffect());
      }
    });
  }

  public static void main(String[] args) throws Exception {
    if (args.length < 1) {
      System.err.println("usage: WeirJdbcWriteOnce JDBC_URL [USER PASSWORD]  (env WEIR_JDBC_EXPORT_DIR: enables COPY)");
      System.exit(2);
    }
    WeirJdbcSmoke.quietDriverLogs();
    url = args[0];
    props = new Properties();
    if (args.length >= 3) { props.setProperty("user", args[1]); props.setProperty("password", args[2]); }
    Class.forName("org.apache.arrow.driver.jdbc.ArrowFlightJdbcDriver");
    main = DriverManager.getConnection(url, props);
    checker = DriverManager.getConnection(url, props);

    List<Kind> kinds = new ArrayList<>(List.of(new InsertValues(), new InsertSelect(), new Ctas(), new Refresh()));
    String export = System.getenv("WEIR_JDBC_EXPORT_DIR");
    if (export != null && !export.isEmpty()) kinds.add(new Copy(Paths.get(export)));
    else System.out.println("(no WEIR_JDBC_EXPORT_DIR: COPY not swept)");

    for (Kind k : kinds) {
      for (Map.Entry<String, Pattern> e : PATTERNS.entrySet()) {
        check(k.name + " via " + e.getKey(), () -> {
          k.setup();
          long before = k.effect();
          require(before == k.noEffect(), "before: effect " + before + ", want " + k.noEffect());
          return e.getValue().run(k);
        });
      }
    }
    main.close();
    checker.close();
    WeirJdbcSmoke.summary();
    System.exit(WeirJdbcSmoke.failed == 0 ? 0 : 1);
  }
}
