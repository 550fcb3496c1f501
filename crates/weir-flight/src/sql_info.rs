//! Static server capabilities: `CommandGetSqlInfo` and `CommandGetXdbcTypeInfo`.

use std::collections::BTreeMap;

use arrow_flight::sql::metadata::{
    SqlInfoData, SqlInfoDataBuilder, XdbcTypeInfo, XdbcTypeInfoData, XdbcTypeInfoDataBuilder,
};
use arrow_flight::sql::{
    Nullable, Searchable, SqlInfo, SqlNullOrdering, SqlOuterJoinsSupportLevel,
    SqlSupportedCaseSensitivity, SqlSupportedGroupBy, SqlSupportedResultSetType,
    SqlSupportedSubqueries, SqlSupportedTransaction, SqlSupportedUnions, SqlSupportsConvert,
    SupportedSqlGrammar, XdbcDataType, XdbcDatetimeSubcode,
};
use datafusion::sql::sqlparser::keywords::ALL_KEYWORDS;
use once_cell::sync::Lazy;

/// Arrow IPC format version (Schema.fbs MetadataVersion V5).
const ARROW_FORMAT_VERSION: &str = "1.5";

const NUMERIC_FUNCTIONS: &[&str] = &[
    "abs",
    "acos",
    "acosh",
    "asin",
    "asinh",
    "atan",
    "atan2",
    "atanh",
    "cbrt",
    "ceil",
    "cos",
    "cosh",
    "cot",
    "degrees",
    "exp",
    "factorial",
    "floor",
    "gcd",
    "isnan",
    "iszero",
    "lcm",
    "ln",
    "log",
    "log10",
    "log2",
    "nanvl",
    "pi",
    "power",
    "radians",
    "random",
    "round",
    "signum",
    "sin",
    "sinh",
    "sqrt",
    "tan",
    "tanh",
    "trunc",
];

const STRING_FUNCTIONS: &[&str] = &[
    "ascii",
    "bit_length",
    "btrim",
    "char_length",
    "character_length",
    "chr",
    "concat",
    "concat_ws",
    "ends_with",
    "initcap",
    "instr",
    "left",
    "length",
    "levenshtein",
    "lower",
    "lpad",
    "ltrim",
    "md5",
    "octet_length",
    "overlay",
    "position",
    "regexp_like",
    "regexp_match",
    "regexp_replace",
    "repeat",
    "replace",
    "reverse",
    "right",
    "rpad",
    "rtrim",
    "sha256",
    "split_part",
    "starts_with",
    "strpos",
    "substr",
    "substring",
    "to_hex",
    "translate",
    "trim",
    "upper",
    "uuid",
];

const SYSTEM_FUNCTIONS: &[&str] = &[
    "arrow_cast",
    "arrow_typeof",
    "coalesce",
    "iceberg_at_snapshot",
    "iceberg_at_timestamp",
    "iceberg_snapshots",
    "nullif",
    "nvl",
    "nvl2",
    "version",
];

const DATETIME_FUNCTIONS: &[&str] = &[
    "current_date",
    "current_time",
    "date_bin",
    "date_format",
    "date_part",
    "date_trunc",
    "datepart",
    "datetrunc",
    "extract",
    "from_unixtime",
    "make_date",
    "now",
    "to_char",
    "to_date",
    "to_local_time",
    "to_timestamp",
    "to_timestamp_micros",
    "to_timestamp_millis",
    "to_timestamp_nanos",
    "to_timestamp_seconds",
    "to_unixtime",
];

/// The `SqlInfo` answers, built once.
pub(crate) static SQL_INFO: Lazy<SqlInfoData> = Lazy::new(|| {
    build_sql_info().expect("static SqlInfo data is well-formed (checked by a unit test)")
});

/// The `XdbcTypeInfo` answers, built once.
pub(crate) static XDBC_TYPE_INFO: Lazy<XdbcTypeInfoData> = Lazy::new(|| {
    build_xdbc_type_info()
        .expect("static XdbcTypeInfo data is well-formed (checked by a unit test)")
});

fn bitmask<T: Into<i32>>(values: impl IntoIterator<Item = T>) -> i32 {
    values.into_iter().fold(0, |acc, v| acc | (1 << v.into()))
}

fn supported_conversions() -> BTreeMap<i32, Vec<i32>> {
    use SqlSupportsConvert::*;
    let numeric = [
        SqlConvertBigint,
        SqlConvertDecimal,
        SqlConvertFloat,
        SqlConvertInteger,
        SqlConvertNumeric,
        SqlConvertReal,
        SqlConvertSmallint,
        SqlConvertTinyint,
        SqlConvertVarchar,
        SqlConvertChar,
        SqlConvertLongvarchar,
    ];
    let as_i32 = |v: &[SqlSupportsConvert]| v.iter().map(|c| *c as i32).collect::<Vec<_>>();
    let mut map = BTreeMap::new();
    for from in numeric {
        map.insert(from as i32, as_i32(&numeric));
    }
    map.insert(
        SqlConvertBit as i32,
        as_i32(&[SqlConvertBit, SqlConvertVarchar, SqlConvertInteger]),
    );
    map.insert(
        SqlConvertDate as i32,
        as_i32(&[SqlConvertDate, SqlConvertTimestamp, SqlConvertVarchar]),
    );
    map.insert(
        SqlConvertTimestamp as i32,
        as_i32(&[
            SqlConvertDate,
            SqlConvertTime,
            SqlConvertTimestamp,
            SqlConvertVarchar,
        ]),
    );
    map.insert(
        SqlConvertTime as i32,
        as_i32(&[SqlConvertTime, SqlConvertVarchar]),
    );
    map.insert(
        SqlConvertBinary as i32,
        as_i32(&[
            SqlConvertBinary,
            SqlConvertVarbinary,
            SqlConvertLongvarbinary,
        ]),
    );
    map.insert(
        SqlConvertVarbinary as i32,
        as_i32(&[
            SqlConvertBinary,
            SqlConvertVarbinary,
            SqlConvertLongvarbinary,
        ]),
    );
    // Strings parse into nearly everything.
    let from_string = as_i32(&[
        SqlConvertBigint,
        SqlConvertBinary,
        SqlConvertBit,
        SqlConvertChar,
        SqlConvertDate,
        SqlConvertDecimal,
        SqlConvertFloat,
        SqlConvertInteger,
        SqlConvertLongvarchar,
        SqlConvertNumeric,
        SqlConvertReal,
        SqlConvertSmallint,
        SqlConvertTime,
        SqlConvertTimestamp,
        SqlConvertTinyint,
        SqlConvertVarbinary,
        SqlConvertVarchar,
    ]);
    for from in [SqlConvertVarchar, SqlConvertChar, SqlConvertLongvarchar] {
        map.insert(from as i32, from_string.clone());
    }
    map
}

fn build_sql_info() -> Result<SqlInfoData, arrow_flight::error::FlightError> {
    let mut b = SqlInfoDataBuilder::new();
    server_info(&mut b);
    sql_language(&mut b);
    sql_capabilities(&mut b);
    limits_and_transactions(&mut b);
    b.build()
}

/// Server information (0..=11, 100, 101).
fn server_info(b: &mut SqlInfoDataBuilder) {
    b.append(SqlInfo::FlightSqlServerName, "Weir");
    b.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    b.append(SqlInfo::FlightSqlServerArrowVersion, ARROW_FORMAT_VERSION);
    b.append(SqlInfo::FlightSqlServerReadOnly, false);
    b.append(SqlInfo::FlightSqlServerSql, true);
    b.append(SqlInfo::FlightSqlServerSubstrait, false);
    b.append(
        SqlInfo::FlightSqlServerTransaction,
        SqlSupportedTransaction::None as i32,
    );
    b.append(SqlInfo::FlightSqlServerCancel, false);
    b.append(SqlInfo::FlightSqlServerBulkIngestion, false);
    b.append(SqlInfo::FlightSqlServerIngestTransactionsSupported, false);
    b.append(SqlInfo::FlightSqlServerStatementTimeout, 0i32);
    b.append(SqlInfo::FlightSqlServerTransactionTimeout, 0i32);
}

/// SQL language (500..=576): identifiers, keywords and functions.
fn sql_language(b: &mut SqlInfoDataBuilder) {
    b.append(SqlInfo::SqlDdlCatalog, false);
    b.append(SqlInfo::SqlDdlSchema, true);
    b.append(SqlInfo::SqlDdlTable, true);
    b.append(
        SqlInfo::SqlIdentifierCase,
        SqlSupportedCaseSensitivity::SqlCaseSensitivityLowercase as i32,
    );
    b.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
    b.append(
        SqlInfo::SqlQuotedIdentifierCase,
        SqlSupportedCaseSensitivity::SqlCaseSensitivityCaseInsensitive as i32,
    );
    b.append(SqlInfo::SqlAllTablesAreSelectable, true);
    b.append(
        SqlInfo::SqlNullOrdering,
        SqlNullOrdering::SqlNullsSortedHigh as i32,
    );
    b.append(SqlInfo::SqlKeywords, ALL_KEYWORDS);
    b.append(SqlInfo::SqlNumericFunctions, NUMERIC_FUNCTIONS);
    b.append(SqlInfo::SqlStringFunctions, STRING_FUNCTIONS);
    b.append(SqlInfo::SqlSystemFunctions, SYSTEM_FUNCTIONS);
    b.append(SqlInfo::SqlDatetimeFunctions, DATETIME_FUNCTIONS);
    b.append(SqlInfo::SqlSearchStringEscape, "\\");
    b.append(SqlInfo::SqlExtraNameCharacters, "");
    b.append(SqlInfo::SqlSupportsColumnAliasing, true);
    b.append(SqlInfo::SqlNullPlusNullIsNull, true);
    b.append(SqlInfo::SqlSupportsConvert, supported_conversions());
}

/// What the SQL supports: grammar, joins, subqueries, unions, terms.
fn sql_capabilities(b: &mut SqlInfoDataBuilder) {
    b.append(SqlInfo::SqlSupportsTableCorrelationNames, true);
    b.append(SqlInfo::SqlSupportsDifferentTableCorrelationNames, false);
    b.append(SqlInfo::SqlSupportsExpressionsInOrderBy, true);
    b.append(SqlInfo::SqlSupportsOrderByUnrelated, true);
    b.append(
        SqlInfo::SqlSupportedGroupBy,
        bitmask([
            SqlSupportedGroupBy::SqlGroupByUnrelated as i32,
            SqlSupportedGroupBy::SqlGroupByBeyondSelect as i32,
        ]),
    );
    b.append(SqlInfo::SqlSupportsLikeEscapeClause, true);
    b.append(SqlInfo::SqlSupportsNonNullableColumns, true);
    b.append(
        SqlInfo::SqlSupportedGrammar,
        bitmask([
            SupportedSqlGrammar::SqlMinimumGrammar as i32,
            SupportedSqlGrammar::SqlCoreGrammar as i32,
        ]),
    );
    b.append(
        SqlInfo::SqlAnsi92SupportedLevel,
        // SupportedAnsi92SqlGrammarLevel (not re-exported by arrow-flight):
        // ANSI92_ENTRY_SQL = 0, ANSI92_INTERMEDIATE_SQL = 1.
        bitmask([0, 1]),
    );
    b.append(SqlInfo::SqlSupportsIntegrityEnhancementFacility, false);
    b.append(
        SqlInfo::SqlOuterJoinsSupportLevel,
        SqlOuterJoinsSupportLevel::SqlFullOuterJoins as i32,
    );
    b.append(SqlInfo::SqlSchemaTerm, "schema");
    b.append(SqlInfo::SqlProcedureTerm, "procedure");
    b.append(SqlInfo::SqlCatalogTerm, "catalog");
    b.append(SqlInfo::SqlCatalogAtStart, true);
    b.append(SqlInfo::SqlSchemasSupportedActions, 0i32);
    b.append(SqlInfo::SqlCatalogsSupportedActions, 0i32);
    b.append(SqlInfo::SqlSupportedPositionedCommands, 0i32);
    b.append(SqlInfo::SqlSelectForUpdateSupported, false);
    b.append(SqlInfo::SqlStoredProceduresSupported, false);
    b.append(
        SqlInfo::SqlSupportedSubqueries,
        bitmask([
            SqlSupportedSubqueries::SqlSubqueriesInComparisons as i32,
            SqlSupportedSubqueries::SqlSubqueriesInExists as i32,
            SqlSupportedSubqueries::SqlSubqueriesInIns as i32,
        ]),
    );
    b.append(SqlInfo::SqlCorrelatedSubqueriesSupported, true);
    b.append(
        SqlInfo::SqlSupportedUnions,
        bitmask([
            SqlSupportedUnions::SqlUnion as i32,
            SqlSupportedUnions::SqlUnionAll as i32,
        ]),
    );
}

/// Limits (0 means "no limit / unknown"), transactions and result sets.
fn limits_and_transactions(b: &mut SqlInfoDataBuilder) {
    for limit in [
        SqlInfo::SqlMaxBinaryLiteralLength,
        SqlInfo::SqlMaxCharLiteralLength,
        SqlInfo::SqlMaxColumnNameLength,
        SqlInfo::SqlMaxColumnsInGroupBy,
        SqlInfo::SqlMaxColumnsInIndex,
        SqlInfo::SqlMaxColumnsInOrderBy,
        SqlInfo::SqlMaxColumnsInSelect,
        SqlInfo::SqlMaxColumnsInTable,
        SqlInfo::SqlMaxConnections,
        SqlInfo::SqlMaxCursorNameLength,
        SqlInfo::SqlMaxIndexLength,
        SqlInfo::SqlDbSchemaNameLength,
        SqlInfo::SqlMaxProcedureNameLength,
        SqlInfo::SqlMaxCatalogNameLength,
        SqlInfo::SqlMaxRowSize,
        SqlInfo::SqlMaxStatementLength,
        SqlInfo::SqlMaxStatements,
        SqlInfo::SqlMaxTableNameLength,
        SqlInfo::SqlMaxTablesInSelect,
        SqlInfo::SqlMaxUsernameLength,
    ] {
        b.append(limit, 0i64);
    }
    b.append(SqlInfo::SqlMaxRowSizeIncludesBlobs, true);
    b.append(SqlInfo::SqlDefaultTransactionIsolation, 0i64);
    b.append(SqlInfo::SqlTransactionsSupported, false);
    b.append(SqlInfo::SqlSupportedTransactionsIsolationLevels, 0i32);
    b.append(SqlInfo::SqlDataDefinitionCausesTransactionCommit, false);
    b.append(SqlInfo::SqlDataDefinitionsInTransactionsIgnored, true);
    b.append(
        SqlInfo::SqlSupportedResultSetTypes,
        bitmask([SqlSupportedResultSetType::SqlResultSetTypeForwardOnly as i32]),
    );
    for concurrency in [
        SqlInfo::SqlSupportedConcurrenciesForResultSetUnspecified,
        SqlInfo::SqlSupportedConcurrenciesForResultSetForwardOnly,
        SqlInfo::SqlSupportedConcurrenciesForResultSetScrollSensitive,
        SqlInfo::SqlSupportedConcurrenciesForResultSetScrollInsensitive,
    ] {
        // Bit 1 = SQL_RESULT_SET_CONCURRENCY_READ_ONLY.
        b.append(concurrency, 1i32 << 1);
    }
    b.append(SqlInfo::SqlBatchUpdatesSupported, true);
    b.append(SqlInfo::SqlSavepointsSupported, false);
    b.append(SqlInfo::SqlNamedParametersSupported, false);
    b.append(SqlInfo::SqlLocatorsUpdateCopy, false);
    b.append(SqlInfo::SqlStoredFunctionsUsingCallSyntaxSupported, false);
}

/// One row of the XDBC type table with the usual defaults.
fn xdbc(name: &str, data_type: XdbcDataType) -> XdbcTypeInfo {
    XdbcTypeInfo {
        type_name: name.into(),
        data_type,
        column_size: None,
        literal_prefix: None,
        literal_suffix: None,
        create_params: None,
        nullable: Nullable::NullabilityNullable,
        case_sensitive: false,
        searchable: Searchable::Full,
        unsigned_attribute: None,
        fixed_prec_scale: false,
        auto_increment: Some(false),
        local_type_name: Some(name.into()),
        minimum_scale: None,
        maximum_scale: None,
        sql_data_type: data_type,
        datetime_subcode: None,
        num_prec_radix: None,
        interval_precision: None,
    }
}

fn integer(name: &str, data_type: XdbcDataType, bits: i32) -> XdbcTypeInfo {
    XdbcTypeInfo {
        column_size: Some(bits),
        unsigned_attribute: Some(false),
        fixed_prec_scale: true,
        minimum_scale: Some(0),
        maximum_scale: Some(0),
        num_prec_radix: Some(2),
        ..xdbc(name, data_type)
    }
}

fn float(name: &str, data_type: XdbcDataType, bits: i32) -> XdbcTypeInfo {
    XdbcTypeInfo {
        column_size: Some(bits),
        unsigned_attribute: Some(false),
        num_prec_radix: Some(2),
        ..xdbc(name, data_type)
    }
}

fn string(name: &str, data_type: XdbcDataType) -> XdbcTypeInfo {
    XdbcTypeInfo {
        column_size: Some(i32::MAX),
        literal_prefix: Some("'".into()),
        literal_suffix: Some("'".into()),
        case_sensitive: true,
        ..xdbc(name, data_type)
    }
}

fn datetime(
    name: &str,
    data_type: XdbcDataType,
    subcode: XdbcDatetimeSubcode,
    size: i32,
) -> XdbcTypeInfo {
    XdbcTypeInfo {
        column_size: Some(size),
        literal_prefix: Some(format!("{name} '")),
        literal_suffix: Some("'".into()),
        searchable: Searchable::Basic,
        datetime_subcode: Some(subcode),
        sql_data_type: XdbcDataType::XdbcDatetime,
        ..xdbc(name, data_type)
    }
}

fn build_xdbc_type_info() -> Result<XdbcTypeInfoData, arrow_flight::error::FlightError> {
    use XdbcDataType::*;
    let mut b = XdbcTypeInfoDataBuilder::new();
    b.append(integer("BIGINT", XdbcBigint, 64));
    b.append(integer("INTEGER", XdbcInteger, 32));
    b.append(integer("SMALLINT", XdbcSmallint, 16));
    b.append(integer("TINYINT", XdbcTinyint, 8));
    b.append(float("DOUBLE", XdbcDouble, 53));
    b.append(float("FLOAT", XdbcFloat, 24));
    b.append(float("REAL", XdbcReal, 24));
    b.append(XdbcTypeInfo {
        column_size: Some(38),
        create_params: Some(vec!["precision".into(), "scale".into()]),
        unsigned_attribute: Some(false),
        fixed_prec_scale: true,
        minimum_scale: Some(0),
        maximum_scale: Some(38),
        num_prec_radix: Some(10),
        ..xdbc("DECIMAL", XdbcDecimal)
    });
    b.append(XdbcTypeInfo {
        column_size: Some(1),
        searchable: Searchable::Basic,
        ..xdbc("BOOLEAN", XdbcBit)
    });
    b.append(string("VARCHAR", XdbcVarchar));
    b.append(string("CHAR", XdbcChar));
    b.append(string("TEXT", XdbcLongvarchar));
    b.append(XdbcTypeInfo {
        column_size: Some(i32::MAX),
        searchable: Searchable::Basic,
        ..xdbc("BINARY", XdbcBinary)
    });
    b.append(XdbcTypeInfo {
        column_size: Some(i32::MAX),
        searchable: Searchable::Basic,
        ..xdbc("VARBINARY", XdbcVarbinary)
    });
    // XDBC_SUBCODE_DATE is an alias of XDBC_SUBCODE_YEAR (1) in FlightSql.proto.
    b.append(datetime(
        "DATE",
        XdbcDate,
        XdbcDatetimeSubcode::XdbcSubcodeYear,
        10,
    ));
    b.append(datetime(
        "TIME",
        XdbcTime,
        XdbcDatetimeSubcode::XdbcSubcodeTime,
        15,
    ));
    b.append(datetime(
        "TIMESTAMP",
        XdbcTimestamp,
        XdbcDatetimeSubcode::XdbcSubcodeTimestamp,
        26,
    ));
    b.build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Int32Type, UInt32Type};

    #[test]
    fn sql_info_covers_required_ids() {
        let batch = SQL_INFO.record_batch(Vec::<u32>::new()).unwrap();
        let ids: Vec<u32> = batch
            .column(0)
            .as_primitive::<UInt32Type>()
            .values()
            .to_vec();
        for id in [0, 1, 2, 3, 4, 5, 8] {
            assert!(ids.contains(&id), "missing SqlInfo {id}");
        }
        let sql_ids = ids.iter().filter(|id| (500..=576).contains(*id)).count();
        assert_eq!(sql_ids, 77, "all of 500..=576 are answered");
        let selected = SQL_INFO.record_batch([0, 8]).unwrap();
        assert_eq!(selected.num_rows(), 2);
    }

    #[test]
    fn xdbc_type_info_filters_by_data_type() {
        let all = XDBC_TYPE_INFO.record_batch(None).unwrap();
        assert!(all.num_rows() >= 10);
        let bigint = XDBC_TYPE_INFO
            .record_batch(Some(XdbcDataType::XdbcBigint as i32))
            .unwrap();
        assert_eq!(bigint.num_rows(), 1);
        let data_type = bigint.column_by_name("data_type").unwrap();
        assert_eq!(data_type.as_primitive::<Int32Type>().value(0), -5);
        assert_eq!(data_type.null_count(), 0);
    }
}
