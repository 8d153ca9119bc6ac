//! `columnMetadata` (`includeResultMetadata: true`) as Aurora PostgreSQL's Data API reports it.
//!
//! The API reference defines the fields only loosely ("ColumnMetadata: Contains the metadata
//! for a column. ... nullable: A value that indicates whether the column is nullable. ...
//! precision: The precision value of a decimal number column.",
//! <https://docs.aws.amazon.com/rdsdataservice/latest/APIReference/API_ColumnMetadata.html>),
//! and the Data API's own type mapping is stated in JDBC terms ("JDBC data type" column of
//! <https://docs.aws.amazon.com/AmazonRDS/latest/AuroraUserGuide/data-api-json.html>). The
//! values Aurora PostgreSQL answers are those of PostgreSQL's JDBC driver (pgJDBC)
//! `ResultSetMetaData`: a `serial` column comes back `typeName: "serial"`, `nullable: 0`,
//! `schemaName: ""`, a `text` column `precision: 2147483647`, a `timestamptz` one
//! `precision: 35, scale: 6` - each the pgJDBC answer (`PgResultSetMetaData`,
//! `TypeInfoCache`). So this module derives every field the way pgJDBC does, from the
//! RowDescription (type OID and modifier) and, for columns read from a table, the catalog
//! (`pg_attribute.attnotnull`, identity or `nextval` default).

use crate::pgvalue;
use serde_json::{json, Value};
use std::collections::HashMap;
use tokio_postgres::types::{Kind, Type};
use tokio_postgres::{Client, Column};

/// What pgJDBC answers for a length it cannot know (its `unknownLength` default,
/// `Integer.MAX_VALUE`): unbounded `text`, `varchar`, `bytea`, `json`, ...
const UNKNOWN_LENGTH: i32 = i32::MAX;

/// A result column's source: the table column it was read from.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SourceColumn {
    /// The table's name (`pg_class.relname`).
    pub table: String,
    /// `NOT NULL` (`pg_attribute.attnotnull`, or a `NOT NULL` domain).
    pub not_null: bool,
    /// An identity column, or one defaulting to `nextval(...)` (`serial`).
    pub auto_increment: bool,
}

/// Source columns by `(table OID, column number)`.
pub type SourceColumns = HashMap<(u32, i16), SourceColumn>;

/// Looks up, in one catalog query, the table columns the result columns were read from
/// (the same query pgJDBC's `fetchFieldMetaData` runs). Expressions have no source.
pub async fn source_columns(client: &Client, columns: &[Column]) -> Result<SourceColumns, tokio_postgres::Error> {
    let keys: Vec<(u32, i16)> = columns
        .iter()
        .filter_map(|c| Some((c.table_oid()?, c.column_id()?)))
        .collect();
    if keys.is_empty() {
        return Ok(SourceColumns::new());
    }
    // The keys are numbers from the server's RowDescription, never client text.
    let values: Vec<String> = keys.iter().map(|(t, a)| format!("({t}::oid, {a}::int2)")).collect();
    let sql = format!(
        "SELECT a.attrelid, a.attnum, c.relname::text, \
         a.attnotnull OR (t.typtype = 'd' AND t.typnotnull), \
         a.attidentity <> '' OR COALESCE(pg_catalog.pg_get_expr(d.adbin, d.adrelid) LIKE '%nextval(%', false) \
         FROM pg_catalog.pg_attribute a \
         JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
         JOIN pg_catalog.pg_type t ON t.oid = a.atttypid \
         LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
         WHERE (a.attrelid, a.attnum) IN (VALUES {})",
        values.join(", ")
    );
    let mut out = SourceColumns::new();
    for row in client.query(sql.as_str(), &[]).await? {
        out.insert(
            (row.try_get(0)?, row.try_get(1)?),
            SourceColumn {
                table: row.try_get(2)?,
                not_null: row.try_get(3)?,
                auto_increment: row.try_get(4)?,
            },
        );
    }
    Ok(out)
}

/// The `ColumnMetadata` of every result column.
pub async fn describe_all(client: &Client, columns: &[Column]) -> Result<Vec<Value>, tokio_postgres::Error> {
    let sources = source_columns(client, columns).await?;
    Ok(columns
        .iter()
        .map(|c| {
            let source = c.table_oid().zip(c.column_id()).and_then(|key| sources.get(&key));
            describe(c.name(), c.type_(), c.type_modifier(), source)
        })
        .collect())
}

/// Arrays are described by their element type (pgJDBC's `convertArrayToBaseOid`).
fn element(ty: &Type) -> &Type {
    match ty.kind() {
        Kind::Array(e) => e,
        _ => ty,
    }
}

/// pgJDBC `TypeInfoCache.getDisplaySize` for the date and time types.
fn datetime_size(ty: &Type, typmod: i32) -> i32 {
    let seconds = match typmod {
        -1 => 6 + 1,
        0 => 0,
        // `SELECT '0:0:0.1'::time(1)` shows 2 digits.
        1 => 2 + 1,
        n => n + 1,
    };
    match *ty {
        Type::TIME => 8 + seconds,
        Type::TIMETZ => 8 + seconds + 6,
        Type::TIMESTAMP => 13 + 1 + 8 + seconds,
        _ => 13 + 1 + 8 + seconds + 6,
    }
}

/// `precision`: digits of a number, characters of a string or of a date/time's text
/// (pgJDBC `TypeInfoCache.getPrecision`); `numeric(10,2)` is 10, `varchar(40)` 40.
pub fn precision(ty: &Type, typmod: i32) -> i32 {
    let ty = element(ty);
    match *ty {
        Type::INT2 => 5,
        Type::INT4 | Type::OID => 10,
        Type::INT8 => 19,
        // float4 and float8 give 6 and 15 significant digits, extra_float_digits up to 2 more.
        Type::FLOAT4 => 8,
        Type::FLOAT8 => 17,
        Type::NUMERIC if typmod == -1 => 0,
        // numeric's typmod is ((precision << 16) | scale) + 4.
        Type::NUMERIC => ((typmod - 4) >> 16) & 0xFFFF,
        Type::CHAR | Type::BOOL => 1,
        Type::BPCHAR | Type::VARCHAR if typmod == -1 => UNKNOWN_LENGTH,
        // char(n) and varchar(n) keep n + 4.
        Type::BPCHAR | Type::VARCHAR => typmod - 4,
        Type::DATE => 13,
        Type::TIME | Type::TIMETZ | Type::TIMESTAMP | Type::TIMESTAMPTZ => datetime_size(ty, typmod),
        Type::INTERVAL => 49,
        Type::BIT => typmod,
        Type::VARBIT if typmod == -1 => UNKNOWN_LENGTH,
        Type::VARBIT => typmod,
        _ => UNKNOWN_LENGTH,
    }
}

/// `scale`: digits after the point (pgJDBC `TypeInfoCache.getScale`); `numeric(10,2)` is 2.
pub fn scale(ty: &Type, typmod: i32) -> i32 {
    let ty = element(ty);
    match *ty {
        Type::FLOAT4 => 8,
        Type::FLOAT8 => 17,
        Type::NUMERIC if typmod == -1 => 0,
        Type::NUMERIC => (typmod - 4) & 0xFFFF,
        Type::TIME | Type::TIMETZ | Type::TIMESTAMP | Type::TIMESTAMPTZ if typmod == -1 => 6,
        Type::TIME | Type::TIMETZ | Type::TIMESTAMP | Type::TIMESTAMPTZ => typmod,
        Type::INTERVAL if typmod == -1 => 6,
        Type::INTERVAL => typmod & 0xFFFF,
        _ => 0,
    }
}

/// `isCaseSensitive`: every type but numbers, booleans, bit strings and dates/times
/// (pgJDBC: "Any field that is not obviously case insensitive is assumed to be case sensitive").
fn case_sensitive(ty: &Type) -> bool {
    !matches!(
        *element(ty),
        Type::OID
            | Type::INT2
            | Type::INT4
            | Type::INT8
            | Type::FLOAT4
            | Type::FLOAT8
            | Type::NUMERIC
            | Type::BOOL
            | Type::BIT
            | Type::VARBIT
            | Type::DATE
            | Type::TIME
            | Type::TIMETZ
            | Type::TIMESTAMP
            | Type::TIMESTAMPTZ
            | Type::INTERVAL
    )
}

/// `isSigned`: "In PostgreSQL, all numbers are signed" (pgJDBC); `oid` is not a number here.
fn signed(ty: &Type) -> bool {
    matches!(
        *element(ty),
        Type::INT2 | Type::INT4 | Type::INT8 | Type::FLOAT4 | Type::FLOAT8 | Type::NUMERIC
    )
}

/// One column's `ColumnMetadata`. `name` and `label` are both the result column's label
/// (pgJDBC `getColumnName` returns the label); `schemaName` is always empty (pgJDBC
/// `getSchemaName` returns `""`, and so does the service); `tableName` is the source table.
pub fn describe(label: &str, ty: &Type, typmod: i32, source: Option<&SourceColumn>) -> Value {
    let auto_increment = source.is_some_and(|s| s.auto_increment);
    let type_name = match (auto_increment, ty) {
        (true, &Type::INT4) => "serial",
        (true, &Type::INT8) => "bigserial",
        (true, &Type::INT2) => "smallserial",
        // Arrays are named as in pg_type: `_int4`, `_text`.
        _ => ty.name(),
    };
    let base = match ty.kind() {
        Kind::Array(e) => pgvalue::jdbc_type(e),
        _ => 0,
    };
    // JDBC ResultSetMetaData: columnNoNulls = 0, columnNullable = 1. pgJDBC answers
    // columnNullable for an expression (no source column), never columnNullableUnknown (2).
    let nullable = match source {
        Some(s) if s.not_null => 0,
        _ => 1,
    };
    json!({
        "name": label,
        "label": label,
        "type": pgvalue::jdbc_type(ty),
        "typeName": type_name,
        "arrayBaseColumnType": base,
        "isAutoIncrement": auto_increment,
        "isSigned": signed(ty),
        "isCurrency": *ty == Type::MONEY,
        "isCaseSensitive": case_sensitive(ty),
        "nullable": nullable,
        "precision": precision(ty, typmod),
        "scale": scale(ty, typmod),
        "schemaName": "",
        "tableName": source.map(|s| s.table.as_str()).unwrap_or(""),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PostgreSQL's typmod of `numeric(p, s)`.
    fn numeric(p: i32, s: i32) -> i32 {
        ((p << 16) | s) + 4
    }

    #[test]
    fn precision_and_scale_follow_the_type_modifier() {
        assert_eq!(precision(&Type::NUMERIC, numeric(10, 2)), 10);
        assert_eq!(scale(&Type::NUMERIC, numeric(10, 2)), 2);
        assert_eq!((precision(&Type::NUMERIC, -1), scale(&Type::NUMERIC, -1)), (0, 0));
        assert_eq!(precision(&Type::VARCHAR, 40 + 4), 40);
        assert_eq!(precision(&Type::BPCHAR, 3 + 4), 3);
        assert_eq!(precision(&Type::TEXT, -1), i32::MAX);
        assert_eq!(precision(&Type::VARCHAR_ARRAY, 8 + 4), 8);
        assert_eq!((precision(&Type::INT4, -1), scale(&Type::INT4, -1)), (10, 0));
        assert_eq!((precision(&Type::FLOAT8, -1), scale(&Type::FLOAT8, -1)), (17, 17));
    }

    #[test]
    fn dates_and_times_are_measured_as_text() {
        // The service's answers for these columns, as observed: date 13/0, timestamp
        // 29/6, timestamptz 35/6.
        assert_eq!((precision(&Type::DATE, -1), scale(&Type::DATE, -1)), (13, 0));
        assert_eq!((precision(&Type::TIMESTAMP, -1), scale(&Type::TIMESTAMP, -1)), (29, 6));
        assert_eq!(
            (precision(&Type::TIMESTAMPTZ, -1), scale(&Type::TIMESTAMPTZ, -1)),
            (35, 6)
        );
        assert_eq!((precision(&Type::TIMESTAMP, 0), scale(&Type::TIMESTAMP, 0)), (22, 0));
        assert_eq!((precision(&Type::TIME, 3), scale(&Type::TIME, 3)), (12, 3));
    }

    #[test]
    fn serial_columns_and_expressions() {
        let id = SourceColumn {
            table: "t".into(),
            not_null: true,
            auto_increment: true,
        };
        let m = describe("id", &Type::INT4, -1, Some(&id));
        assert_eq!(m["typeName"], "serial");
        assert_eq!(m["isAutoIncrement"], true);
        assert_eq!(m["nullable"], 0);
        assert_eq!(m["tableName"], "t");
        assert_eq!(m["schemaName"], "");
        let m = describe("?column?", &Type::INT8, -1, None);
        assert_eq!(m["typeName"], "int8");
        assert_eq!(m["nullable"], 1);
        assert_eq!(m["tableName"], "");
        assert_eq!(m["isSigned"], true);
        assert_eq!(m["isCaseSensitive"], false);
        let m = describe("u", &Type::UUID, -1, None);
        assert_eq!(
            (m["isCaseSensitive"].clone(), m["isSigned"].clone()),
            (json!(true), json!(false))
        );
        let m = describe("tags", &Type::TEXT_ARRAY, -1, None);
        assert_eq!(
            (m["typeName"].clone(), m["type"].clone()),
            (json!("_text"), json!(2003))
        );
        assert_eq!(m["arrayBaseColumnType"], 12);
    }
}
