//! Input validation of a route: accepted content types, body size, required headers, the JSON
//! body against a JSON Schema (draft 2020-12) and the query against another. Failures are 400
//! (malformed), 415 (media type) or 422 (schema) with the failing JSON pointers, never values.
//! Only routes with a body schema read the body before forwarding it.

use std::{collections::HashMap, sync::Arc};

use http::{header, HeaderMap, HeaderName};
use jsonschema::{
    json::{Json, SerdeJson},
    Validator,
};
use serde_json::{Map, Value};

use super::{
    auth::percent_decode,
    json_tape::{Tape, TapeError, TapeJson},
    quick_check::QuickCheck,
};
use crate::{
    config::{problem, Problem, Source, ValidateConfig},
    refusal::{Denial, FieldError, Refusal, MAX_FIELD_ERRORS},
};

/// A compiled JSON Schema for one representation: parsed bodies ([`Tape`], the default) or
/// `Value`s (queries, built from their parameters).
pub struct Schema<F: Json = TapeJson> {
    validator: Arc<Validator<F>>,
    /// The quick yes for valid bodies, when the schema's keywords allow one.
    quick: Option<Arc<QuickCheck>>,
}

impl<F: Json> std::fmt::Debug for Schema<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Schema")
    }
}

impl<F: Json> Clone for Schema<F> {
    fn clone(&self) -> Self {
        Schema {
            validator: Arc::clone(&self.validator),
            quick: self.quick.clone(),
        }
    }
}

impl<F: Json> Schema<F> {
    /// Compiles `schema` as draft 2020-12 (found at `key`).
    pub fn compile(schema: &Value, key: &str) -> Result<Schema<F>, Problem> {
        jsonschema::options_for::<F>()
            .with_draft(jsonschema::Draft::Draft202012)
            .build(schema)
            .map(|v| Schema {
                validator: Arc::new(v),
                quick: QuickCheck::compile(schema).map(Arc::new),
            })
            .map_err(|e| problem(key, format!("not a valid JSON Schema: {e}")))
    }

    /// Reads and compiles a schema file.
    pub fn load(path: &std::path::Path, key: &str) -> Result<Schema<F>, Problem> {
        let text = std::fs::read(path)
            .map_err(|e| problem(key, format!("cannot read {}: {e}", path.display())))?;
        let value: Value = serde_json::from_slice(&text)
            .map_err(|e| problem(key, format!("{} is not JSON: {e}", path.display())))?;
        Schema::compile(&value, key)
    }
}

impl Schema<SerdeJson> {
    /// The failing places of `instance`, prefixed by `prefix`, at most [`MAX_FIELD_ERRORS`].
    pub fn errors(&self, instance: &Value, prefix: &str) -> Vec<FieldError> {
        // Most requests are valid: a yes/no check is several times cheaper than collecting
        // errors, which is done only for the failures.
        if self.validator.is_valid(instance) {
            return Vec::new();
        }
        field_errors(self.validator.iter_errors(instance), prefix)
    }
}

impl Schema<TapeJson> {
    /// Whether the quick check ([`QuickCheck`]) finds `body` valid; `false` means "not sure".
    pub fn accepts_quickly(&self, body: &[u8]) -> bool {
        self.quick.as_ref().is_some_and(|quick| quick.accepts(body))
    }

    /// The failing places of a parsed body, at most [`MAX_FIELD_ERRORS`].
    pub fn body_errors(&self, body: &Tape<'_>) -> Vec<FieldError> {
        if self.validator.is_valid(body.root()) {
            return Vec::new();
        }
        field_errors(self.validator.iter_errors(body.root()), "")
    }
}

fn field_errors<'i>(
    errors: impl Iterator<Item = jsonschema::ValidationError<'i>>,
    prefix: &str,
) -> Vec<FieldError> {
    errors
        .take(MAX_FIELD_ERRORS)
        .map(|e| FieldError {
            pointer: format!("{prefix}{}", e.instance_path().as_str()),
            keyword: e.kind().keyword().to_owned(),
        })
        .collect()
}

/// The types query parameters are read as (they arrive as text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamType {
    /// Left as text.
    String,
    /// A JSON integer when it reads as one.
    Integer,
    /// A JSON number when it reads as one.
    Number,
    /// `true`/`false`.
    Boolean,
    /// Every occurrence, as an array of text.
    Array,
}

impl ParamType {
    /// From a schema's `type`.
    pub fn of(schema: &Value) -> ParamType {
        let kind = match schema.get("type") {
            Some(Value::String(t)) => t.as_str(),
            Some(Value::Array(types)) => types
                .iter()
                .filter_map(Value::as_str)
                .find(|t| *t != "null")
                .unwrap_or("string"),
            _ => "string",
        };
        match kind {
            "integer" => ParamType::Integer,
            "number" => ParamType::Number,
            "boolean" => ParamType::Boolean,
            "array" => ParamType::Array,
            _ => ParamType::String,
        }
    }
}

/// A query schema and how to type each parameter before checking it.
#[derive(Debug, Clone)]
pub struct QuerySchema {
    /// The schema of the whole query as an object.
    pub schema: Schema<SerdeJson>,
    /// Parameter types, from the schema's top-level `properties`.
    pub types: HashMap<String, ParamType>,
}

impl QuerySchema {
    /// From a schema of the query object.
    pub fn new(schema_value: &Value, key: &str) -> Result<QuerySchema, Problem> {
        let types = schema_value
            .get("properties")
            .and_then(Value::as_object)
            .map(|props| {
                props
                    .iter()
                    .map(|(name, s)| (name.clone(), ParamType::of(s)))
                    .collect()
            })
            .unwrap_or_default();
        Ok(QuerySchema {
            schema: Schema::compile(schema_value, key)?,
            types,
        })
    }

    /// The query as a JSON object, typed by the parameters' schemas.
    pub fn object(&self, query: &str) -> Value {
        let mut object = Map::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let name = String::from_utf8_lossy(&percent_decode(name)).into_owned();
            let text = String::from_utf8_lossy(&percent_decode(value)).into_owned();
            let kind = self.types.get(&name).copied().unwrap_or(ParamType::String);
            let typed = match kind {
                ParamType::Integer => text.parse::<i64>().map(Value::from).ok(),
                ParamType::Number => text
                    .parse::<f64>()
                    .ok()
                    .and_then(serde_json::Number::from_f64)
                    .map(Value::Number),
                ParamType::Boolean => text.parse::<bool>().map(Value::Bool).ok(),
                ParamType::String | ParamType::Array => None,
            }
            .unwrap_or(Value::String(text));
            if kind == ParamType::Array {
                if let Value::Array(items) = object
                    .entry(name)
                    .or_insert_with(|| Value::Array(Vec::new()))
                {
                    items.push(typed);
                }
            } else {
                object.insert(name, typed);
            }
        }
        Value::Object(object)
    }
}

/// A route's validation, compiled.
#[derive(Debug, Clone, Default)]
pub struct Validation {
    /// Accepted media types (lower case); empty: any.
    pub content_types: Vec<String>,
    /// Largest body.
    pub max_body_bytes: Option<u64>,
    /// Headers that must be present.
    pub required_headers: Vec<HeaderName>,
    /// Schema of the JSON body.
    pub body: Option<Schema>,
    /// Whether a body is required (OpenAPI `requestBody.required`).
    pub body_required: bool,
    /// Schema of the query.
    pub query: Option<QuerySchema>,
}

impl Validation {
    /// Compiles `[routes.validate]` found at `key`.
    pub fn compile(
        config: &ValidateConfig,
        key: &str,
        source: &Source,
    ) -> Result<Validation, Problem> {
        let required_headers = config
            .required_headers
            .iter()
            .map(|h| {
                HeaderName::try_from(h.as_str()).map_err(|_| {
                    problem(
                        format!("{key}.required_headers"),
                        format!("`{h}` is not a header name"),
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        if config.max_body_bytes == Some(0) {
            return Err(problem(
                format!("{key}.max_body_bytes"),
                "must be more than zero",
            ));
        }
        let query = match &config.query_schema {
            Some(path) => {
                let at = format!("{key}.query_schema");
                let path = source.resolve(path);
                let text = std::fs::read(&path)
                    .map_err(|e| problem(&at, format!("cannot read {}: {e}", path.display())))?;
                let value: Value = serde_json::from_slice(&text)
                    .map_err(|e| problem(&at, format!("{} is not JSON: {e}", path.display())))?;
                Some(QuerySchema::new(&value, &at)?)
            }
            None => None,
        };
        Ok(Validation {
            content_types: config
                .content_types
                .iter()
                .map(|t| t.to_ascii_lowercase())
                .collect(),
            max_body_bytes: config.max_body_bytes,
            required_headers,
            body: config
                .body_schema
                .as_ref()
                .map(|p| Schema::load(&source.resolve(p), &format!("{key}.body_schema")))
                .transpose()?,
            body_required: false,
            query,
        })
    }

    /// Whether the body must be read and checked before forwarding.
    pub fn reads_body(&self) -> bool {
        self.body.is_some()
    }

    /// Checks what the head shows: headers, media type, query.
    pub fn check_head(&self, headers: &HeaderMap, query: Option<&str>) -> Result<(), Refusal> {
        if self
            .required_headers
            .iter()
            .any(|h| !headers.contains_key(h))
        {
            return Err(Refusal::new(Denial::InvalidRequest).detail("A required header is missing"));
        }
        let has_body = headers.contains_key(header::TRANSFER_ENCODING)
            || headers
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.trim() != "0");
        if has_body && !self.content_types.is_empty() {
            let media = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(|v| {
                    v.split(';')
                        .next()
                        .unwrap_or("")
                        .trim()
                        .to_ascii_lowercase()
                });
            if !media.is_some_and(|m| self.content_types.contains(&m)) {
                return Err(Refusal::new(Denial::UnsupportedMediaType));
            }
        }
        if self.body_required && !has_body {
            return Err(Refusal::new(Denial::InvalidRequest).detail("A request body is required"));
        }
        if let Some(query_schema) = &self.query {
            let errors = query_schema
                .schema
                .errors(&query_schema.object(query.unwrap_or("")), "#query");
            if !errors.is_empty() {
                return Err(Refusal::new(Denial::SchemaViolation)
                    .detail("The query parameters do not match the schema")
                    .errors(errors));
            }
        }
        Ok(())
    }

    /// Checks a body read in full.
    pub fn check_body(&self, body: &[u8]) -> Result<(), Refusal> {
        let Some(schema) = &self.body else {
            return Ok(());
        };
        if body.is_empty() && !self.body_required {
            return Ok(());
        }
        // Most bodies are valid, and the quick check says so in one pass over the bytes; any
        // other answer is decided (and explained) below.
        if schema.accepts_quickly(body) {
            return Ok(());
        }
        // The parser decodes escapes in place, so it gets its own copy.
        let mut text = body.to_vec();
        let tape = Tape::parse(&mut text).map_err(|error| {
            Refusal::new(Denial::MalformedBody).detail(match error {
                TapeError::Malformed => "The body is not well-formed JSON",
                TapeError::DuplicateName => "The body repeats a member name in an object",
            })
        })?;
        let errors = schema.body_errors(&tape);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(Refusal::new(Denial::SchemaViolation)
                .detail("The body does not match the schema")
                .errors(errors))
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn order_validation() -> Validation {
        Validation {
            content_types: vec!["application/json".into()],
            body: Some(
                Schema::compile(
                    &json!({
                        "type": "object",
                        "required": ["item", "qty"],
                        "properties": {
                            "item": {"type": "string", "maxLength": 8},
                            "qty": {"type": "integer", "minimum": 1}
                        },
                        "additionalProperties": false
                    }),
                    "k",
                )
                .unwrap(),
            ),
            query: Some(
                QuerySchema::new(
                    &json!({
                        "type": "object",
                        "properties": {"limit": {"type": "integer", "maximum": 100}, "tag": {"type": "array"}},
                        "additionalProperties": false
                    }),
                    "k",
                )
                .unwrap(),
            ),
            ..Validation::default()
        }
    }

    #[test]
    fn body_errors_list_pointers_and_keywords_not_values() {
        let v = order_validation();
        assert!(v.check_body(br#"{"item":"tea","qty":2}"#).is_ok());
        let err = v
            .check_body(br#"{"item":"secret-password-value","qty":0}"#)
            .unwrap_err();
        assert_eq!(err.denial, Denial::SchemaViolation);
        let mut found: Vec<(String, String)> = err
            .errors
            .iter()
            .map(|e| (e.pointer.clone(), e.keyword.clone()))
            .collect();
        found.sort();
        assert_eq!(
            found,
            vec![
                ("/item".into(), "maxLength".into()),
                ("/qty".into(), "minimum".into())
            ]
        );
        let rendered = serde_json::to_string(&err.errors).unwrap();
        assert!(!rendered.contains("secret-password"), "{rendered}");
        assert_eq!(
            v.check_body(b"{not json").unwrap_err().denial,
            Denial::MalformedBody
        );
    }

    #[test]
    fn errors_are_bounded() {
        let v = Validation {
            body: Some(
                Schema::compile(&json!({"type": "array", "items": {"type": "integer"}}), "k")
                    .unwrap(),
            ),
            ..Validation::default()
        };
        let many: Vec<&str> = vec!["x"; 1000];
        let err = v
            .check_body(&serde_json::to_vec(&many).unwrap())
            .unwrap_err();
        assert_eq!(err.errors.len(), MAX_FIELD_ERRORS);
    }

    #[test]
    fn media_type_headers_and_query() {
        let mut v = order_validation();
        v.required_headers = vec![HeaderName::from_static("x-tenant")];
        let mut headers = HeaderMap::new();
        headers.insert("x-tenant", "t".parse().unwrap());
        headers.insert(header::CONTENT_LENGTH, "10".parse().unwrap());
        headers.insert(header::CONTENT_TYPE, "text/plain".parse().unwrap());
        assert_eq!(
            v.check_head(&headers, None).unwrap_err().denial,
            Denial::UnsupportedMediaType
        );
        headers.insert(
            header::CONTENT_TYPE,
            "Application/JSON; charset=utf-8".parse().unwrap(),
        );
        assert!(v.check_head(&headers, Some("limit=5&tag=a&tag=b")).is_ok());
        let err = v
            .check_head(&headers, Some("limit=500&extra=1"))
            .unwrap_err();
        let pointers: Vec<&str> = err.errors.iter().map(|e| e.pointer.as_str()).collect();
        assert!(pointers.contains(&"#query/limit"), "{pointers:?}");
        assert!(pointers.contains(&"#query"), "{pointers:?}");
        headers.remove("x-tenant");
        assert_eq!(
            v.check_head(&headers, None).unwrap_err().denial,
            Denial::InvalidRequest
        );
    }
}
