//! An alert rule and its one text form, `CREATE ALERT`:
//!
//! ```sql
//! CREATE ALERT [IF NOT EXISTS] boiler_hot ON silver.points
//!   [WHERE metric = 'temperature']            -- which rows the rule reads
//!   [BY device_id, metric]                    -- one alert per series
//!   WHEN value > 80                           -- the condition (below)
//!   [CLEAR WHEN value < 75]                   -- hysteresis (default: NOT condition)
//!   [FOR INTERVAL '10 seconds']               -- held this long (event time) before firing
//!   [SEVERITY 'critical']
//!   [NOTIFY 'mqtt://127.0.0.1:1883/alerts/boiler', 'kafka://127.0.0.1:9092/alerts',
//!           'http://127.0.0.1:9000/hook']
//!   [MESSAGE 'boiler too hot']
//! ```
//!
//! Conditions:
//! - any boolean SQL expression over the row (`value > 80`, `quality <> 0
//!   AND value > 3`): a threshold; the value reported is the left side of
//!   the comparison when there is one;
//! - `rate(expr) <op> n`: change of `expr` per second between a series'
//!   consecutive rows;
//! - `zscore(expr, INTERVAL '10 minutes') <op> n`: |x − mean| / stddev of
//!   the series over the window before the row (the seed's anomaly API);
//! - `absent(INTERVAL '30 seconds')`: a series that sent rows and has been
//!   silent that long (wall clock), resolved by its next row.
//!
//! The text stored in the catalog is [`AlertRule::to_sql`], read back with
//! [`parse_create`]: one parser for SQL, TOML declarations and storage.

use std::fmt;
use std::time::Duration;

use datafusion::sql::sqlparser::ast::{
    BinaryOperator, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, UnaryOperator, Value,
};
use datafusion::sql::sqlparser::dialect::Dialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::Token;

use crate::error::{QueryError, Result};

/// A standing rule.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRule {
    /// Lower-case identifier.
    pub name: String,
    /// `namespace.table` the rule reads.
    pub table: String,
    /// SQL predicate choosing the rows (None: every row).
    pub filter: Option<String>,
    /// Columns naming a series (empty: the whole table is one series).
    pub by: Vec<String>,
    pub when: Condition,
    /// When an active alert resolves (None: when `when` no longer holds).
    pub clear: Option<Condition>,
    /// How long `when` must hold (event time) before the alert fires.
    pub hold: Duration,
    pub severity: String,
    /// Notification targets (`mqtt://`, `kafka://`, `http(s)://`).
    pub notify: Vec<String>,
    pub message: Option<String>,
}

/// What a rule tests.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// A boolean SQL expression over one row; `value`: the expression
    /// reported as the alert's value (the comparison's left side).
    Row { expr: String, value: Option<String> },
    /// `rate(value) op limit`, per second.
    Rate {
        value: String,
        op: Comparison,
        limit: f64,
    },
    /// `zscore(value, window) op limit`.
    ZScore {
        value: String,
        window: Duration,
        op: Comparison,
        limit: f64,
    },
    /// `absent(after)`.
    Absent { after: Duration },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    Gt,
    GtEq,
    Lt,
    LtEq,
    Eq,
    NotEq,
}

impl Comparison {
    fn from_op(op: &BinaryOperator) -> Option<Self> {
        Some(match op {
            BinaryOperator::Gt => Comparison::Gt,
            BinaryOperator::GtEq => Comparison::GtEq,
            BinaryOperator::Lt => Comparison::Lt,
            BinaryOperator::LtEq => Comparison::LtEq,
            BinaryOperator::Eq => Comparison::Eq,
            BinaryOperator::NotEq => Comparison::NotEq,
            _ => return None,
        })
    }

    pub fn holds(self, x: f64, limit: f64) -> bool {
        match self {
            Comparison::Gt => x > limit,
            Comparison::GtEq => x >= limit,
            Comparison::Lt => x < limit,
            Comparison::LtEq => x <= limit,
            Comparison::Eq => x == limit,
            Comparison::NotEq => x != limit,
        }
    }
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Comparison::Gt => ">",
            Comparison::GtEq => ">=",
            Comparison::Lt => "<",
            Comparison::LtEq => "<=",
            Comparison::Eq => "=",
            Comparison::NotEq => "<>",
        })
    }
}

impl Condition {
    /// The measured expression of `rate`/`zscore` conditions.
    pub fn measured(&self) -> Option<&str> {
        match self {
            Condition::Rate { value, .. } | Condition::ZScore { value, .. } => Some(value),
            _ => None,
        }
    }

    fn same_kind(&self, other: &Condition) -> bool {
        match (self, other) {
            (Condition::Row { .. }, Condition::Row { .. }) => true,
            (Condition::Rate { value: a, .. }, Condition::Rate { value: b, .. }) => a == b,
            (
                Condition::ZScore {
                    value: a,
                    window: wa,
                    ..
                },
                Condition::ZScore {
                    value: b,
                    window: wb,
                    ..
                },
            ) => a == b && wa == wb,
            _ => false,
        }
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Condition::Row { expr, .. } => f.write_str(expr),
            Condition::Rate { value, op, limit } => write!(f, "rate({value}) {op} {limit}"),
            Condition::ZScore {
                value,
                window,
                op,
                limit,
            } => write!(f, "zscore({value}, {}) {op} {limit}", interval(*window)),
            Condition::Absent { after } => write!(f, "absent({})", interval(*after)),
        }
    }
}

fn interval(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("INTERVAL '{} seconds'", ms / 1000)
    } else {
        format!("INTERVAL '{ms} milliseconds'")
    }
}

/// `s` as a SQL string literal.
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

impl AlertRule {
    /// `column = 'text'` when the filter requires it (a top-level AND term):
    /// the evaluator hands such a rule only the rows with that value,
    /// grouping each batch once by the column instead of running every
    /// rule's filter over every row.
    pub fn equality_key(&self) -> Option<(String, String)> {
        let filter = self.filter.as_ref()?;
        let dialect = datafusion::sql::sqlparser::dialect::GenericDialect {};
        let expr = Parser::new(&dialect)
            .try_with_sql(filter)
            .ok()?
            .parse_expr()
            .ok()?;
        fn find(e: &Expr) -> Option<(String, String)> {
            match e {
                Expr::BinaryOp {
                    left,
                    op: BinaryOperator::And,
                    right,
                } => find(left).or_else(|| find(right)),
                Expr::Nested(e) => find(e),
                Expr::BinaryOp {
                    left,
                    op: BinaryOperator::Eq,
                    right,
                } => match (left.as_ref(), right.as_ref()) {
                    (Expr::Identifier(c), v) | (v, Expr::Identifier(c)) => {
                        let Expr::Value(v) = v else { return None };
                        let Value::SingleQuotedString(s) = &v.value else {
                            return None;
                        };
                        // Unquoted names are folded to lower case, as the planner does.
                        let column = match c.quote_style {
                            Some(_) => c.value.clone(),
                            None => c.value.to_ascii_lowercase(),
                        };
                        Some((column, s.clone()))
                    }
                    _ => None,
                },
                _ => None,
            }
        }
        find(&expr)
    }

    /// The rule as the `CREATE ALERT` statement that makes it (what the
    /// catalog stores; [`parse_create`] reads it back to the same rule).
    pub fn to_sql(&self) -> String {
        let clear = self.clear.as_ref().map(ToString::to_string);
        let hold = (!self.hold.is_zero()).then(|| interval(self.hold));
        CreateText {
            name: &self.name,
            on: &self.table,
            filter: self.filter.as_deref(),
            by: &self.by,
            when: &self.when.to_string(),
            clear: clear.as_deref(),
            hold: hold.as_deref(),
            severity: Some(&self.severity),
            notify: &self.notify,
            message: self.message.as_deref(),
        }
        .to_sql()
    }
}

/// The clauses of a `CREATE ALERT` as text (conditions, filter and `FOR`
/// interval as SQL; severity, targets and message as plain strings, quoted
/// here): the one place its text is assembled, for stored rules and for
/// rules declared in TOML.
pub struct CreateText<'a> {
    pub name: &'a str,
    pub on: &'a str,
    pub filter: Option<&'a str>,
    pub by: &'a [String],
    pub when: &'a str,
    pub clear: Option<&'a str>,
    pub hold: Option<&'a str>,
    pub severity: Option<&'a str>,
    pub notify: &'a [String],
    pub message: Option<&'a str>,
}

impl CreateText<'_> {
    pub fn to_sql(&self) -> String {
        let mut s = format!("CREATE ALERT {} ON {}", self.name, self.on);
        if let Some(f) = self.filter {
            s += &format!(" WHERE {f}");
        }
        if !self.by.is_empty() {
            s += &format!(" BY {}", self.by.join(", "));
        }
        s += &format!(" WHEN {}", self.when);
        if let Some(c) = self.clear {
            s += &format!(" CLEAR WHEN {c}");
        }
        if let Some(h) = self.hold {
            s += &format!(" FOR {h}");
        }
        if let Some(v) = self.severity {
            s += &format!(" SEVERITY {}", quote(v));
        }
        if !self.notify.is_empty() {
            let targets: Vec<String> = self.notify.iter().map(|t| quote(t)).collect();
            s += &format!(" NOTIFY {}", targets.join(", "));
        }
        if let Some(m) = self.message {
            s += &format!(" MESSAGE {}", quote(m));
        }
        s
    }
}

fn syntax(e: impl fmt::Display) -> QueryError {
    QueryError::Syntax(e.to_string())
}

/// Reads `CREATE ALERT …` after its first two words; `parser` is positioned
/// after `ALERT`. Returns the rule and whether `IF NOT EXISTS` was given.
pub(crate) fn parse_create_body(parser: &mut Parser) -> Result<(AlertRule, bool)> {
    let if_not_exists = parser.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let name = alert_name(parser)?;
    if !parser.parse_keyword(Keyword::ON) {
        return Err(QueryError::Syntax(format!(
            "CREATE ALERT {name} ON table … WHEN condition: ON is missing"
        )));
    }
    let table = parser.parse_object_name(false).map_err(syntax)?;
    let table = table
        .0
        .iter()
        .map(|p| p.to_string().trim_matches('"').to_string())
        .collect::<Vec<_>>()
        .join(".");
    let mut rule = AlertRule {
        name,
        table,
        filter: None,
        by: Vec::new(),
        when: Condition::Absent {
            after: Duration::ZERO,
        },
        clear: None,
        hold: Duration::ZERO,
        severity: "warning".into(),
        notify: Vec::new(),
        message: None,
    };
    let when = parse_clauses(parser, &mut rule)?;
    while parser.consume_token(&Token::SemiColon) {}
    if parser.peek_token().token != Token::EOF {
        return Err(QueryError::Syntax(format!(
            "unexpected `{}` in CREATE ALERT (clauses: WHERE, BY, WHEN, CLEAR WHEN, FOR, SEVERITY, NOTIFY, MESSAGE)",
            parser.peek_token().token
        )));
    }
    rule.when = when.ok_or_else(|| {
        QueryError::Syntax(format!(
            "CREATE ALERT {}: WHEN condition is missing",
            rule.name
        ))
    })?;
    validate(&rule)?;
    Ok((rule, if_not_exists))
}

/// Reads the clauses of `CREATE ALERT` after `ON table` (in any order)
/// into `rule`, up to the first word that starts none; returns the WHEN
/// condition, if given.
fn parse_clauses(parser: &mut Parser, rule: &mut AlertRule) -> Result<Option<Condition>> {
    let mut when = None;
    loop {
        if parser.parse_keyword(Keyword::WHERE) {
            rule.filter = Some(parser.parse_expr().map_err(syntax)?.to_string());
        } else if parser.parse_keyword(Keyword::BY) {
            let paren = parser.consume_token(&Token::LParen);
            rule.by = parser
                .parse_comma_separated(|p| p.parse_identifier())
                .map_err(syntax)?
                .into_iter()
                .map(|i| i.value)
                .collect();
            if paren {
                parser.expect_token(&Token::RParen).map_err(syntax)?;
            }
        } else if parser.parse_keyword(Keyword::WHEN) {
            when = Some(condition(parser)?);
        } else if parser.parse_keywords(&[Keyword::CLEAR, Keyword::WHEN]) {
            rule.clear = Some(condition(parser)?);
        } else if parser.parse_keyword(Keyword::FOR) {
            let e = parser.parse_expr().map_err(syntax)?;
            rule.hold = duration(&e)?;
        } else if word(parser, "SEVERITY") {
            rule.severity = string(parser, "SEVERITY")?.to_ascii_lowercase();
        } else if word(parser, "NOTIFY") {
            rule.notify = parser
                .parse_comma_separated(|p| {
                    p.parse_literal_string().map_err(|e| {
                        datafusion::sql::sqlparser::parser::ParserError::ParserError(e.to_string())
                    })
                })
                .map_err(syntax)?;
        } else if word(parser, "MESSAGE") {
            rule.message = Some(string(parser, "MESSAGE")?);
        } else {
            break;
        }
    }
    Ok(when)
}

/// Reads a whole `CREATE ALERT` statement (the stored form).
pub fn parse_create(dialect: &dyn Dialect, sql: &str) -> Result<AlertRule> {
    let mut parser = Parser::new(dialect).try_with_sql(sql).map_err(syntax)?;
    if !(parser.parse_keyword(Keyword::CREATE) && word(&mut parser, "ALERT")) {
        return Err(QueryError::Syntax(format!("not a CREATE ALERT: {sql}")));
    }
    Ok(parse_create_body(&mut parser)?.0)
}

fn validate(rule: &AlertRule) -> Result<()> {
    if let Some(clear) = &rule.clear {
        if matches!(rule.when, Condition::Absent { .. }) {
            return Err(QueryError::Invalid(
                "an absent(…) alert resolves when the series sends again; CLEAR WHEN does not apply".into(),
            ));
        }
        if !rule.when.same_kind(clear) {
            return Err(QueryError::Invalid(format!(
                "CLEAR WHEN {clear} must test what WHEN {} tests (the same rate(…)/zscore(…) or a row condition)",
                rule.when
            )));
        }
    }
    match &rule.when {
        Condition::Absent { after } if after.is_zero() => {
            return Err(QueryError::Invalid(
                "absent(…) needs a positive interval".into(),
            ));
        }
        Condition::ZScore { window, .. } if window.is_zero() => {
            return Err(QueryError::Invalid(
                "zscore(…) needs a positive window".into(),
            ));
        }
        _ => {}
    }
    if !matches!(rule.severity.as_str(), "info" | "warning" | "critical") {
        return Err(QueryError::Invalid(format!(
            "SEVERITY '{}': one of 'info', 'warning', 'critical'",
            rule.severity
        )));
    }
    for target in &rule.notify {
        Target::parse(target)?;
    }
    Ok(())
}

/// A notification target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `mqtt://host:port/topic/levels`
    Mqtt {
        host: String,
        port: u16,
        topic: String,
    },
    /// `kafka://brokers/topic`
    Kafka { brokers: String, topic: String },
    /// `http://…` or `https://…`: POST of the transition as JSON.
    Webhook { url: String },
    /// `postgres://…`: the gateway schema's `alert_history` (rules of that
    /// database's `alert_rules`; `weir-alert` `registry_pg.rs`).
    Postgres { url: String },
}

impl Target {
    pub fn parse(text: &str) -> Result<Target> {
        let bad = |why: &str| {
            QueryError::Invalid(format!(
                "NOTIFY '{text}': {why} (mqtt://host:port/topic, kafka://host:port/topic, http(s)://… or postgres://…)"
            ))
        };
        let (scheme, rest) = text.split_once("://").ok_or_else(|| bad("no scheme"))?;
        match scheme.to_ascii_lowercase().as_str() {
            "http" | "https" => Ok(Target::Webhook { url: text.into() }),
            "postgres" | "postgresql" => Ok(Target::Postgres { url: text.into() }),
            "mqtt" => {
                let (addr, topic) = rest.split_once('/').ok_or_else(|| bad("no topic"))?;
                let (host, port) = match addr.rsplit_once(':') {
                    Some((h, p)) => (h, p.parse().map_err(|_| bad("bad port"))?),
                    None => (addr, 1883),
                };
                if topic.is_empty() || host.is_empty() || topic.contains(['+', '#']) {
                    return Err(bad("a host and a topic without wildcards are needed"));
                }
                Ok(Target::Mqtt {
                    host: host.into(),
                    port,
                    topic: topic.into(),
                })
            }
            "kafka" => {
                let (brokers, topic) = rest.split_once('/').ok_or_else(|| bad("no topic"))?;
                if brokers.is_empty() || topic.is_empty() || topic.contains('/') {
                    return Err(bad("brokers and one topic are needed"));
                }
                Ok(Target::Kafka {
                    brokers: brokers.into(),
                    topic: topic.into(),
                })
            }
            _ => Err(bad("unknown scheme")),
        }
    }

    /// Short kind for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Target::Mqtt { .. } => "mqtt",
            Target::Kafka { .. } => "kafka",
            Target::Webhook { .. } => "webhook",
            Target::Postgres { .. } => "postgres",
        }
    }
}

fn alert_name(parser: &mut Parser) -> Result<String> {
    let name = parser
        .parse_identifier()
        .map_err(syntax)?
        .value
        .to_ascii_lowercase();
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(QueryError::Invalid(format!(
            "alert name `{name}`: letters, digits, `_` and `-` only"
        )));
    }
    Ok(name)
}

/// Consumes the unquoted word `w` if it is next.
pub(crate) fn word(parser: &mut Parser, w: &str) -> bool {
    match &parser.peek_token().token {
        Token::Word(x) if x.quote_style.is_none() && x.value.eq_ignore_ascii_case(w) => {
            parser.next_token();
            true
        }
        _ => false,
    }
}

fn string(parser: &mut Parser, clause: &str) -> Result<String> {
    parser
        .parse_literal_string()
        .map_err(|e| QueryError::Syntax(format!("{clause} 'text': {e}")))
}

fn condition(parser: &mut Parser) -> Result<Condition> {
    let e = parser.parse_expr().map_err(syntax)?;
    if let Some((name, args)) = function(&e)
        && name == "absent"
    {
        let [after] = args.as_slice() else {
            return Err(QueryError::Invalid("absent(INTERVAL '30 seconds')".into()));
        };
        return Ok(Condition::Absent {
            after: duration(after)?,
        });
    }
    if let Expr::BinaryOp { left, op, right } = &e
        && let Some(cmp) = Comparison::from_op(op)
    {
        if let Some((name, args)) = function(left)
            && (name == "rate" || name == "zscore")
        {
            let limit = number(right).ok_or_else(|| {
                QueryError::Invalid(format!("{name}(…) {cmp} needs a number on the right: {e}"))
            })?;
            return match (name.as_str(), args.as_slice()) {
                ("rate", [value]) => Ok(Condition::Rate {
                    value: value.to_string(),
                    op: cmp,
                    limit,
                }),
                ("zscore", [value, window]) => Ok(Condition::ZScore {
                    value: value.to_string(),
                    window: duration(window)?,
                    op: cmp,
                    limit,
                }),
                _ => Err(QueryError::Invalid(format!(
                    "rate(expr) or zscore(expr, INTERVAL '10 minutes'): {e}"
                ))),
            };
        }
        return Ok(Condition::Row {
            expr: e.to_string(),
            value: Some(left.to_string()),
        });
    }
    Ok(Condition::Row {
        expr: e.to_string(),
        value: None,
    })
}

/// `name(args…)` with plain positional arguments, name lower-cased.
fn function(e: &Expr) -> Option<(String, Vec<Expr>)> {
    let Expr::Function(f) = e else { return None };
    let name = f.name.to_string().to_ascii_lowercase();
    let FunctionArguments::List(list) = &f.args else {
        return Some((name, Vec::new()));
    };
    let args = list
        .args
        .iter()
        .map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e.clone()),
            _ => None,
        })
        .collect::<Option<Vec<_>>>()?;
    Some((name, args))
}

fn number(e: &Expr) -> Option<f64> {
    match e {
        Expr::Value(v) => match &v.value {
            Value::Number(n, _) => n.parse().ok(),
            _ => None,
        },
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => number(expr).map(|n| -n),
        Expr::UnaryOp {
            op: UnaryOperator::Plus,
            expr,
        } => number(expr),
        Expr::Nested(e) => number(e),
        _ => None,
    }
}

/// `INTERVAL '10 seconds'`, `INTERVAL '10' SECOND` or `'10s'`.
fn duration(e: &Expr) -> Result<Duration> {
    let text = match e {
        Expr::Interval(i) => {
            let value = literal(&i.value)
                .ok_or_else(|| QueryError::Invalid(format!("`{e}` is not an interval")))?;
            match &i.leading_field {
                Some(unit) => format!("{value} {unit}"),
                None => value,
            }
        }
        other => literal(other)
            .ok_or_else(|| QueryError::Invalid(format!("`{e}` is not an interval")))?,
    };
    parse_duration(&text)
}

fn literal(e: &Expr) -> Option<String> {
    match e {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) => Some(s.clone()),
            Value::Number(n, _) => Some(n.clone()),
            _ => None,
        },
        _ => None,
    }
}

/// `10s`, `10 seconds`, `1 minute 30 seconds`, `500 milliseconds`.
pub fn parse_duration(text: &str) -> Result<Duration> {
    // humantime knows `ms`/`msec` but not SQL's `milliseconds`.
    let normalized = text
        .trim()
        .to_ascii_lowercase()
        .replace("milliseconds", "ms")
        .replace("millisecond", "ms");
    humantime::parse_duration(&normalized)
        .or_else(|_| humantime::parse_duration(&normalized.replace(' ', "")))
        .map_err(|e| QueryError::Invalid(format!("interval '{text}': {e}")))
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::dialect::GenericDialect;

    use super::*;

    #[test]
    fn rules_read_back_from_their_text() {
        let cases = [
            "CREATE ALERT hot ON silver.points WHERE metric = 'temperature' BY device_id, metric \
             WHEN value > 80 CLEAR WHEN value < 75 FOR INTERVAL '5 seconds' SEVERITY 'critical' \
             NOTIFY 'mqtt://127.0.0.1:1883/alerts/hot', 'http://127.0.0.1:9/h' MESSAGE 'too hot'",
            "CREATE ALERT jump ON t BY (dev) WHEN rate(v) >= 2.5",
            "create alert odd on t by dev when zscore(v, interval '10 minutes') > 3",
            "CREATE ALERT silent ON t BY dev WHEN absent(INTERVAL '30' SECOND)",
            "CREATE ALERT q ON t WHEN quality <> 0 AND value > -3 FOR '1.5s'",
        ];
        for sql in cases {
            let rule = parse_create(&GenericDialect {}, sql).unwrap();
            let again = parse_create(&GenericDialect {}, &rule.to_sql()).unwrap();
            assert_eq!(rule, again, "{sql}\n{}", rule.to_sql());
        }
        let r = parse_create(&GenericDialect {}, cases[0]).unwrap();
        assert_eq!(r.by, ["device_id", "metric"]);
        assert_eq!(r.hold, Duration::from_secs(5));
        assert_eq!(
            r.when,
            Condition::Row {
                expr: "value > 80".into(),
                value: Some("value".into())
            }
        );
        let r = parse_create(&GenericDialect {}, cases[2]).unwrap();
        assert!(matches!(r.when, Condition::ZScore { window, limit, .. }
            if window == Duration::from_secs(600) && limit == 3.0));
        let r = parse_create(&GenericDialect {}, cases[4]).unwrap();
        assert_eq!(r.hold, Duration::from_millis(1500));
    }

    #[test]
    fn equality_keys_route_rules() {
        let key = |sql: &str| {
            parse_create(&GenericDialect {}, sql)
                .unwrap()
                .equality_key()
        };
        assert_eq!(
            key("CREATE ALERT a ON t WHERE metric = 'temp' AND quality = 0 WHEN v > 1"),
            Some(("metric".into(), "temp".into()))
        );
        assert_eq!(
            key("CREATE ALERT a ON t WHERE (q > 1 AND 'x' = Dev) WHEN v > 1"),
            Some(("dev".into(), "x".into()))
        );
        assert_eq!(
            key("CREATE ALERT a ON t WHERE metric = 'a' OR metric = 'b' WHEN v > 1"),
            None
        );
        assert_eq!(key("CREATE ALERT a ON t WHEN v > 1"), None);
    }

    #[test]
    fn bad_rules_are_refused_with_the_reason() {
        for (sql, says) in [
            ("CREATE ALERT a ON t", "WHEN"),
            ("CREATE ALERT a ON t WHEN v > 1 SEVERITY 'loud'", "SEVERITY"),
            (
                "CREATE ALERT a ON t WHEN v > 1 NOTIFY 'ftp://x/y'",
                "unknown scheme",
            ),
            (
                "CREATE ALERT a ON t WHEN v > 1 NOTIFY 'mqtt://h/a/#'",
                "wildcards",
            ),
            (
                "CREATE ALERT a ON t WHEN rate(v) > 1 CLEAR WHEN v < 1",
                "must test",
            ),
            (
                "CREATE ALERT a ON t WHEN absent(INTERVAL '0 seconds')",
                "positive",
            ),
            ("CREATE ALERT a ON t WHEN v > 1 GARBAGE", "unexpected"),
            ("CREATE ALERT a ON t WHEN v > 1 FOR 'soon'", "interval"),
        ] {
            let e = parse_create(&GenericDialect {}, sql)
                .unwrap_err()
                .to_string();
            assert!(e.contains(says), "{sql}: {e}");
        }
    }
}
