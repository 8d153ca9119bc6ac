//! PostgreSQL values (binary wire format) as Data API `Field`s and as the JSON of
//! `formattedRecords`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};
use time::{Date, Duration, PrimitiveDateTime, Time};
use tokio_postgres::types::{FromSql, Kind, Type};

/// A column value as received, decoded later by its type.
pub struct Raw(pub Option<Vec<u8>>);

impl<'a> FromSql<'a> for Raw {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(Some(raw.to_vec())))
    }
    fn from_sql_null(_: &Type) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(None))
    }
    fn accepts(_: &Type) -> bool {
        true
    }
}

/// How DECIMAL and BIGINT come back (`resultSetOptions`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// `decimalReturnType: DOUBLE_OR_LONG`.
    pub decimal_as_number: bool,
    /// `longReturnType: STRING`.
    pub long_as_string: bool,
}

/// A decoded scalar.
#[derive(Clone, Debug, PartialEq)]
enum Scalar {
    Bool(bool),
    Long(i64),
    Double(f64),
    Text(String),
    Blob(Vec<u8>),
}

/// A type the Data API does not return.
#[derive(Debug)]
pub struct Unsupported(pub String);

fn be<const N: usize>(b: &[u8]) -> Result<[u8; N], Unsupported> {
    b.get(..N)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| Unsupported("truncated value".into()))
}

fn epoch() -> PrimitiveDateTime {
    PrimitiveDateTime::new(
        Date::from_calendar_date(2000, time::Month::January, 1).expect("valid"),
        Time::MIDNIGHT,
    )
}

/// PostgreSQL's text form of fractional seconds: trailing zeros dropped.
fn frac(micros: u32) -> String {
    if micros == 0 {
        String::new()
    } else {
        format!(".{micros:06}").trim_end_matches('0').to_string()
    }
}

fn timestamp(us: i64) -> String {
    match us {
        i64::MAX => "infinity".into(),
        i64::MIN => "-infinity".into(),
        _ => {
            let t = epoch() + Duration::microseconds(us);
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02}:{:02}{}",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second(),
                frac(t.microsecond())
            )
        }
    }
}

fn numeric(b: &[u8]) -> Result<String, Unsupported> {
    let u16_at = |i: usize| -> Result<u16, Unsupported> { Ok(u16::from_be_bytes(be::<2>(&b[i.min(b.len())..])?)) };
    let ndigits = u16_at(0)? as usize;
    let weight = u16_at(2)? as i16 as i32;
    let sign = u16_at(4)?;
    let dscale = u16_at(6)? as usize;
    match sign {
        0xC000 => return Ok("NaN".into()),
        0xD000 => return Ok("Infinity".into()),
        0xF000 => return Ok("-Infinity".into()),
        _ => {}
    }
    let digits: Vec<u16> = (0..ndigits).map(|k| u16_at(8 + 2 * k)).collect::<Result<_, _>>()?;
    let mut int_part = String::new();
    for k in 0..=weight.max(-1) {
        let d = digits.get(k as usize).copied().unwrap_or(0);
        if int_part.is_empty() {
            if d != 0 || k == weight {
                int_part = d.to_string();
            }
        } else {
            int_part.push_str(&format!("{d:04}"));
        }
    }
    if int_part.is_empty() {
        int_part.push('0');
    }
    let mut frac_part = String::new();
    let mut k = weight + 1;
    while frac_part.len() < dscale {
        let d = if k >= 0 {
            digits.get(k as usize).copied().unwrap_or(0)
        } else {
            0
        };
        frac_part.push_str(&format!("{d:04}"));
        k += 1;
    }
    frac_part.truncate(dscale);
    let mut s = String::new();
    if sign == 0x4000 {
        s.push('-');
    }
    s.push_str(&int_part);
    if dscale > 0 {
        s.push('.');
        s.push_str(&frac_part);
    }
    Ok(s)
}

fn scalar(ty: &Type, b: &[u8], o: Options) -> Result<Scalar, Unsupported> {
    Ok(match *ty {
        Type::BOOL => Scalar::Bool(b.first().copied().unwrap_or(0) != 0),
        Type::INT2 => Scalar::Long(i16::from_be_bytes(be(b)?).into()),
        Type::INT4 => Scalar::Long(i32::from_be_bytes(be(b)?).into()),
        Type::OID => Scalar::Long(u32::from_be_bytes(be(b)?).into()),
        Type::INT8 => {
            let v = i64::from_be_bytes(be(b)?);
            if o.long_as_string {
                Scalar::Text(v.to_string())
            } else {
                Scalar::Long(v)
            }
        }
        Type::FLOAT4 => Scalar::Double(f32::from_be_bytes(be(b)?).into()),
        Type::FLOAT8 => Scalar::Double(f64::from_be_bytes(be(b)?)),
        Type::NUMERIC => {
            let text = numeric(b)?;
            if o.decimal_as_number {
                match text.parse::<i64>() {
                    Ok(l) => Scalar::Long(l),
                    Err(_) => Scalar::Double(text.parse().unwrap_or(f64::NAN)),
                }
            } else {
                Scalar::Text(text)
            }
        }
        Type::TEXT
        | Type::VARCHAR
        | Type::BPCHAR
        | Type::NAME
        | Type::CHAR
        | Type::JSON
        | Type::UNKNOWN
        | Type::XML => Scalar::Text(String::from_utf8_lossy(b).into_owned()),
        Type::JSONB => Scalar::Text(String::from_utf8_lossy(b.get(1..).unwrap_or_default()).into_owned()),
        Type::UUID => {
            let h: Vec<String> = b.iter().map(|x| format!("{x:02x}")).collect();
            let h = h.concat();
            if h.len() != 32 {
                return Err(Unsupported("bad uuid".into()));
            }
            Scalar::Text(format!(
                "{}-{}-{}-{}-{}",
                &h[0..8],
                &h[8..12],
                &h[12..16],
                &h[16..20],
                &h[20..32]
            ))
        }
        Type::BYTEA => Scalar::Blob(b.to_vec()),
        Type::DATE => {
            let days = i32::from_be_bytes(be(b)?);
            let d = epoch().date() + Duration::days(days.into());
            Scalar::Text(format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day()))
        }
        Type::TIME => {
            let us = i64::from_be_bytes(be(b)?);
            let (s, micros) = (us / 1_000_000, (us % 1_000_000) as u32);
            Scalar::Text(format!(
                "{:02}:{:02}:{:02}{}",
                s / 3600,
                (s / 60) % 60,
                s % 60,
                frac(micros)
            ))
        }
        Type::TIMESTAMP | Type::TIMESTAMPTZ => Scalar::Text(timestamp(i64::from_be_bytes(be(b)?))),
        _ => return Err(Unsupported(ty.name().to_string())),
    })
}

fn scalar_field(s: Scalar) -> Value {
    match s {
        Scalar::Bool(v) => json!({ "booleanValue": v }),
        Scalar::Long(v) => json!({ "longValue": v }),
        Scalar::Double(v) => json!({ "doubleValue": v }),
        Scalar::Text(v) => json!({ "stringValue": v }),
        Scalar::Blob(v) => json!({ "blobValue": STANDARD.encode(v) }),
    }
}

fn scalar_json(s: Scalar) -> Value {
    match s {
        Scalar::Bool(v) => json!(v),
        Scalar::Long(v) => json!(v),
        Scalar::Double(v) => json!(v),
        Scalar::Text(v) => json!(v),
        Scalar::Blob(v) => json!(STANDARD.encode(v)),
    }
}

/// Decodes a one-dimensional (or nested) array: its elements' scalars, `None` for NULL.
fn array(element: &Type, b: &[u8], o: Options) -> Result<(Value, Value), Unsupported> {
    let i32_at = |i: usize| -> Result<i32, Unsupported> { Ok(i32::from_be_bytes(be::<4>(&b[i.min(b.len())..])?)) };
    let ndim = i32_at(0)? as usize;
    let mut dims = Vec::with_capacity(ndim);
    for d in 0..ndim {
        dims.push(i32_at(12 + 8 * d)? as usize);
    }
    let mut at = 12 + 8 * ndim;
    let mut elements = Vec::new();
    let total: usize = if ndim == 0 { 0 } else { dims.iter().product() };
    for _ in 0..total {
        let len = i32_at(at)?;
        at += 4;
        if len < 0 {
            elements.push(None);
        } else {
            let end = at + len as usize;
            let bytes = b.get(at..end).ok_or_else(|| Unsupported("truncated array".into()))?;
            elements.push(Some(scalar(element, bytes, o)?));
            at = end;
        }
    }
    fn build(dims: &[usize], items: &mut std::vec::IntoIter<Option<Scalar>>) -> (Value, Value) {
        if dims.len() <= 1 {
            let values: Vec<Option<Scalar>> = items.take(dims.first().copied().unwrap_or(0)).collect();
            let kind = match values.iter().flatten().next() {
                Some(Scalar::Bool(_)) => "booleanValues",
                Some(Scalar::Long(_)) => "longValues",
                Some(Scalar::Double(_)) => "doubleValues",
                _ => "stringValues",
            };
            let field_items: Vec<Value> = values
                .iter()
                .map(|v| v.clone().map_or(Value::Null, scalar_json))
                .collect();
            (json!({ kind: field_items.clone() }), Value::Array(field_items))
        } else {
            let mut fields = Vec::new();
            let mut jsons = Vec::new();
            for _ in 0..dims[0] {
                let (f, j) = build(&dims[1..], items);
                fields.push(f);
                jsons.push(j);
            }
            (json!({ "arrayValues": fields }), Value::Array(jsons))
        }
    }
    let mut items = elements.into_iter();
    let (field, value) = build(&dims, &mut items);
    Ok((json!({ "arrayValue": field }), value))
}

/// One value as a `Field` and as formatted-records JSON.
pub fn decode(ty: &Type, raw: &Raw, o: Options) -> Result<(Value, Value), Unsupported> {
    // A `void` result (e.g. `SELECT pg_advisory_lock(1)`) carries no value: JDBC reads it as null.
    let Some(b) = raw.0.as_ref().filter(|_| *ty != Type::VOID) else {
        return Ok((json!({ "isNull": true }), Value::Null));
    };
    if let Kind::Array(element) = ty.kind() {
        return array(element, b, o);
    }
    let s = scalar(ty, b, o)?;
    Ok((scalar_field(s.clone()), scalar_json(s)))
}

/// The JDBC type code (`java.sql.Types`) the Data API reports for a column type: pgJDBC's
/// (`TypeInfoCache`: its core types, then arrays, composites, domains and enums by kind).
pub fn jdbc_type(ty: &Type) -> i32 {
    match ty.kind() {
        Kind::Array(_) => return 2003,
        Kind::Composite(_) => return 2002,
        Kind::Domain(_) => return 2001,
        Kind::Enum(_) => return 12,
        _ => {}
    }
    match *ty {
        Type::BOOL | Type::BIT => -7,
        Type::INT2 => 5,
        Type::INT4 => 4,
        // pgJDBC maps oid (unsigned 32-bit) to BIGINT.
        Type::INT8 | Type::OID => -5,
        Type::FLOAT4 => 7,
        Type::FLOAT8 | Type::MONEY => 8,
        Type::NUMERIC => 2,
        Type::BPCHAR | Type::CHAR => 1,
        Type::TEXT | Type::VARCHAR | Type::NAME => 12,
        Type::DATE => 91,
        Type::TIME | Type::TIMETZ => 92,
        Type::TIMESTAMP | Type::TIMESTAMPTZ => 93,
        Type::BYTEA => -2,
        Type::REFCURSOR => 2012,
        _ => 1111,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numerics_render_like_postgres() {
        // 12345.678: ndigits 3, weight 1, sign +, dscale 3, digits [1, 2345, 6780]
        let b = [0, 3, 0, 1, 0, 0, 0, 3, 0, 1, 0x09, 0x29, 0x1a, 0x7c];
        assert_eq!(numeric(&b).unwrap(), "12345.678");
        // -0.05: ndigits 1, weight -1, sign -, dscale 2, digits [500]
        let b = [0, 1, 0xff, 0xff, 0x40, 0, 0, 2, 0x01, 0xf4];
        assert_eq!(numeric(&b).unwrap(), "-0.05");
        // 0 with dscale 0
        assert_eq!(numeric(&[0, 0, 0, 0, 0, 0, 0, 0]).unwrap(), "0");
    }

    #[test]
    fn timestamps_render_like_postgres() {
        assert_eq!(timestamp(0), "2000-01-01 00:00:00");
        assert_eq!(timestamp(1_500_000), "2000-01-01 00:00:01.5");
        assert_eq!(timestamp(-1), "1999-12-31 23:59:59.999999");
    }
}
