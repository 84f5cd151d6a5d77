//! Reading request bodies: a JSON value tree built on nanoserde's
//! tokenizer, and typed field accessors whose errors name the field.
//!
//! nanoserde's derive ignores unknown keys and cannot tell a missing field
//! from a null one; requests need both, so bodies are read as a tree here
//! and checked field by field. Responses use nanoserde's derive directly.

use nanoserde::{DeJsonState, DeJsonTok};

/// Deeper nesting than this is refused rather than recursed into.
const MAX_DEPTH: usize = 32;

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Array(Vec<Value>),
    Object(Vec<(String, Value)>),
}

impl Value {
    /// The value of field `key` of an object; None for a missing field or
    /// a value that is not an object.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Object(fields) => fields.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(n) => Some(*n),
            _ => None,
        }
    }

    /// A short name of the value's type, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) | Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Array(_) => "an array",
            Value::Object(_) => "an object",
        }
    }
}

/// Parses a whole document; trailing content is an error.
pub fn parse(text: &str) -> Result<Value, String> {
    // nanoserde's tokenizer reads NUL as end of input.
    if text.contains('\0') {
        return Err("invalid JSON: body contains a NUL character".into());
    }
    let mut state = DeJsonState::default();
    let mut chars = text.chars();
    state.next(&mut chars);
    state.next_tok(&mut chars).map_err(syntax)?;
    let value = parse_value(&mut state, &mut chars, 0)?;
    if state.tok != DeJsonTok::Eof {
        return Err(format!(
            "invalid JSON: unexpected content after the value at line {}",
            state.line + 1
        ));
    }
    Ok(value)
}

fn syntax(err: nanoserde::DeJsonErr) -> String {
    format!(
        "invalid JSON at line {} column {}",
        err.line + 1,
        err.col + 1
    )
}

/// Parses the value starting at the current token and advances past it.
fn parse_value(
    state: &mut DeJsonState,
    chars: &mut std::str::Chars,
    depth: usize,
) -> Result<Value, String> {
    if depth > MAX_DEPTH {
        return Err(format!(
            "invalid JSON: nested deeper than {MAX_DEPTH} levels"
        ));
    }
    let value = match state.tok.clone() {
        DeJsonTok::Null => Value::Null,
        DeJsonTok::Bool(b) => Value::Bool(b),
        DeJsonTok::U64(n) => i64::try_from(n)
            .map(Value::Int)
            .unwrap_or(Value::Float(n as f64)),
        DeJsonTok::I64(n) => Value::Int(n),
        DeJsonTok::F64(f) => Value::Float(f),
        DeJsonTok::Str => Value::Str(std::mem::take(&mut state.strbuf)),
        DeJsonTok::BlockOpen => return parse_array(state, chars, depth),
        DeJsonTok::CurlyOpen => return parse_object(state, chars, depth),
        _ => {
            return Err(format!(
                "invalid JSON at line {} column {}",
                state.line + 1,
                state.col
            ));
        }
    };
    state.next_tok(chars).map_err(syntax)?;
    Ok(value)
}

fn parse_array(
    state: &mut DeJsonState,
    chars: &mut std::str::Chars,
    depth: usize,
) -> Result<Value, String> {
    let mut items = Vec::new();
    state.next_tok(chars).map_err(syntax)?;
    while state.tok != DeJsonTok::BlockClose {
        items.push(parse_value(state, chars, depth + 1)?);
        match state.tok {
            DeJsonTok::Comma => state.next_tok(chars).map_err(syntax)?,
            DeJsonTok::BlockClose => {}
            _ => {
                return Err(format!(
                    "invalid JSON: expected ',' or ']' at line {}",
                    state.line + 1
                ));
            }
        }
    }
    state.next_tok(chars).map_err(syntax)?;
    Ok(Value::Array(items))
}

fn parse_object(
    state: &mut DeJsonState,
    chars: &mut std::str::Chars,
    depth: usize,
) -> Result<Value, String> {
    let mut fields: Vec<(String, Value)> = Vec::new();
    state.next_tok(chars).map_err(syntax)?;
    while state.tok != DeJsonTok::CurlyClose {
        if state.tok != DeJsonTok::Str {
            return Err(format!(
                "invalid JSON: expected a field name at line {}",
                state.line + 1
            ));
        }
        let key = std::mem::take(&mut state.strbuf);
        state.next_tok(chars).map_err(syntax)?;
        if state.tok != DeJsonTok::Colon {
            return Err(format!("invalid JSON: expected ':' after \"{key}\""));
        }
        state.next_tok(chars).map_err(syntax)?;
        let value = parse_value(state, chars, depth + 1)?;
        if fields.iter().any(|(k, _)| *k == key) {
            return Err(format!("{key}: given twice"));
        }
        fields.push((key, value));
        match state.tok {
            DeJsonTok::Comma => state.next_tok(chars).map_err(syntax)?,
            DeJsonTok::CurlyClose => {}
            _ => {
                return Err(format!(
                    "invalid JSON: expected ',' or '}}' at line {}",
                    state.line + 1
                ));
            }
        }
    }
    state.next_tok(chars).map_err(syntax)?;
    Ok(Value::Object(fields))
}

/// Typed access to one field of an object, with errors naming it.
pub struct Field<'a> {
    pub name: &'a str,
    pub value: &'a Value,
}

impl Field<'_> {
    fn wrong(&self, expected: &str) -> String {
        format!(
            "{}: expected {expected}, got {}",
            self.name,
            self.value.kind()
        )
    }

    pub fn string(&self) -> Result<String, String> {
        match self.value {
            Value::Str(s) => Ok(s.clone()),
            _ => Err(self.wrong("a string")),
        }
    }

    /// A string where null means empty.
    pub fn string_or_null(&self) -> Result<String, String> {
        match self.value {
            Value::Null => Ok(String::new()),
            _ => self.string(),
        }
    }

    pub fn integer(&self) -> Result<i64, String> {
        match self.value {
            Value::Int(n) => Ok(*n),
            Value::Float(_) => Err(format!("{}: expected a whole number", self.name)),
            _ => Err(self.wrong("a whole number")),
        }
    }

    /// Null, or what `read` makes of the value.
    pub fn optional<T>(&self, read: fn(&Self) -> Result<T, String>) -> Result<Option<T>, String> {
        match self.value {
            Value::Null => Ok(None),
            _ => read(self).map(Some),
        }
    }

    /// An object whose values are all strings, in the order given.
    pub fn string_map(&self) -> Result<Vec<(String, String)>, String> {
        let Value::Object(fields) = self.value else {
            return Err(self.wrong("an object of strings"));
        };
        fields
            .iter()
            .map(|(k, v)| match v {
                Value::Str(s) => Ok((k.clone(), s.clone())),
                other => Err(format!(
                    "{}.{k}: expected a string, got {}",
                    self.name,
                    other.kind()
                )),
            })
            .collect()
    }

    pub fn boolean(&self) -> Result<bool, String> {
        match self.value {
            Value::Bool(b) => Ok(*b),
            _ => Err(self.wrong("true or false")),
        }
    }
}

/// Escapes a string as a JSON string literal, quotes included.
pub fn quote(s: &str) -> String {
    nanoserde::SerJson::serialize_json(&s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nested_documents() {
        let v = parse(r#"{"a": [1, -2, 2.5, "x\n", true, null], "b": {}}"#).unwrap();
        let Value::Object(fields) = v else {
            panic!("not an object")
        };
        assert_eq!(fields[0].0, "a");
        assert_eq!(
            fields[0].1,
            Value::Array(vec![
                Value::Int(1),
                Value::Int(-2),
                Value::Float(2.5),
                Value::Str("x\n".into()),
                Value::Bool(true),
                Value::Null
            ])
        );
        assert_eq!(fields[1].1, Value::Object(vec![]));
    }

    #[test]
    fn rejects_malformed_input() {
        for bad in [
            "",
            "{",
            "{\"a\" 1}",
            "[1,]x",
            "{\"a\":1}}",
            "nul",
            "{\"a\":1,\"a\":2}",
            "\"\0\"",
        ] {
            assert!(parse(bad).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn refuses_deep_nesting_without_overflowing() {
        let deep = "[".repeat(10_000);
        assert!(parse(&deep).unwrap_err().contains("nested"));
    }

    #[test]
    fn field_errors_name_the_field() {
        let v = Value::Str("3".into());
        let f = Field {
            name: "max_retries",
            value: &v,
        };
        assert_eq!(
            f.integer().unwrap_err(),
            "max_retries: expected a whole number, got a string"
        );
    }

    #[test]
    fn quote_escapes() {
        assert_eq!(quote("a\"b\\c\n"), r#""a\"b\\c\n""#);
    }
}
