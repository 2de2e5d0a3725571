//! Routes and their validation imported from an OpenAPI 3.0 or 3.1 document (JSON or YAML):
//! one route per operation (its path template and method), its query parameters as a query
//! schema, its JSON request body schema and media types. `$ref`s inside the document resolve;
//! 3.0's `nullable` becomes a `"null"` type.

use serde_json::{json, Map, Value};

use super::validate::{QuerySchema, Schema, Validation};
use crate::config::{problem, Problem};

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// One operation of the document.
#[derive(Debug)]
pub struct Operation {
    /// `operationId`, or `METHOD path`.
    pub name: String,
    /// The path template (with the configured prefix).
    pub path: String,
    /// Upper-case method.
    pub method: String,
    /// What requests must look like.
    pub validation: Validation,
}

/// Parses a document's text (JSON, or YAML).
pub fn parse(text: &str, key: &str) -> Result<Value, Problem> {
    if let Ok(value) = serde_json::from_str::<Value>(text) {
        return Ok(value);
    }
    serde_yaml_ng::from_str::<Value>(text)
        .map_err(|e| problem(key, format!("neither JSON nor YAML: {e}")))
}

/// The operations of `document`, paths prefixed by `prefix`.
pub fn operations(document: &Value, prefix: &str, key: &str) -> Result<Vec<Operation>, Problem> {
    let version = document
        .get("openapi")
        .and_then(Value::as_str)
        .unwrap_or("");
    let is_30 = version.starts_with("3.0");
    if !is_30 && !version.starts_with("3.1") {
        return Err(problem(
            key,
            format!("`openapi: {version}`: only 3.0 and 3.1 documents are read"),
        ));
    }
    let mut root = document.clone();
    if is_30 {
        nullable_to_type(&mut root);
    }
    let paths = root
        .get("paths")
        .and_then(Value::as_object)
        .ok_or_else(|| problem(key, "the document has no `paths`"))?;
    let mut operations = Vec::new();
    for (path, item) in paths {
        if !path.starts_with('/') {
            return Err(problem(key, format!("path `{path}` does not start with /")));
        }
        let shared = item
            .get("parameters")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for method in METHODS {
            let Some(operation) = item.get(method) else {
                continue;
            };
            let pointer = format!("/paths/{}/{method}", escape(path));
            let name = operation
                .get("operationId")
                .and_then(Value::as_str)
                .map_or_else(
                    || format!("{} {path}", method.to_uppercase()),
                    str::to_owned,
                );
            let at = format!("{key} ({name})");
            let mut parameters = shared.clone();
            parameters.extend(
                operation
                    .get("parameters")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
            );
            let query = query_schema(&root, &parameters, &at)?;
            let mut validation = Validation {
                query,
                ..Validation::default()
            };
            if let Some(body) = operation.get("requestBody") {
                let body = resolve(&root, body);
                validation.body_required = body
                    .get("required")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                if let Some(content) = body.get("content").and_then(Value::as_object) {
                    validation.content_types =
                        content.keys().map(|k| k.to_ascii_lowercase()).collect();
                    if let Some((media, media_item)) = content.iter().find(|(m, _)| is_json(m)) {
                        if media_item.get("schema").is_some() {
                            let schema_pointer =
                                format!("{pointer}/requestBody/content/{}/schema", escape(media));
                            // The document is the root, so its `$ref`s resolve; its other
                            // members are unknown keywords, which a schema ignores.
                            let mut wrapper = root.clone();
                            if let Value::Object(map) = &mut wrapper {
                                map.insert("$ref".into(), json!(format!("#{schema_pointer}")));
                            }
                            validation.body = Some(Schema::compile(&wrapper, &at)?);
                        }
                    }
                }
            }
            operations.push(Operation {
                name,
                path: format!("{}{path}", prefix.trim_end_matches('/')),
                method: method.to_uppercase(),
                validation,
            });
        }
    }
    Ok(operations)
}

fn is_json(media: &str) -> bool {
    let media = media.to_ascii_lowercase();
    media == "application/json" || media.ends_with("+json")
}

/// The query parameters as one object schema.
fn query_schema(
    root: &Value,
    parameters: &[Value],
    at: &str,
) -> Result<Option<QuerySchema>, Problem> {
    let mut properties = Map::new();
    let mut required = Vec::new();
    for parameter in parameters {
        let parameter = resolve(root, parameter);
        if parameter.get("in").and_then(Value::as_str) != Some("query") {
            continue;
        }
        let Some(name) = parameter.get("name").and_then(Value::as_str) else {
            continue;
        };
        let schema = parameter
            .get("schema")
            .map_or_else(|| json!({}), |s| resolve(root, s).clone());
        if parameter.get("required").and_then(Value::as_bool) == Some(true) {
            required.push(json!(name));
        }
        properties.insert(name.to_owned(), schema);
    }
    if properties.is_empty() {
        return Ok(None);
    }
    let mut schema = json!({"type": "object", "properties": properties, "required": required});
    if let (Value::Object(map), Some(components)) = (&mut schema, root.get("components")) {
        // Parameter schemas may `$ref` components: keep them resolvable from this root.
        map.insert("components".into(), components.clone());
    }
    QuerySchema::new(&schema, at).map(Some)
}

/// Follows a local `$ref` (`#/components/...`) once.
fn resolve<'a>(root: &'a Value, value: &'a Value) -> &'a Value {
    match value
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix('#'))
    {
        Some(pointer) => root.pointer(pointer).unwrap_or(value),
        None => value,
    }
}

/// JSON pointer escaping of one token.
fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// OpenAPI 3.0 `nullable: true` as a JSON Schema `"null"` type, everywhere.
fn nullable_to_type(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if map.remove("nullable") == Some(Value::Bool(true)) {
                match map.get_mut("type") {
                    Some(Value::String(t)) => {
                        let t = t.clone();
                        map.insert("type".into(), json!([t, "null"]));
                    }
                    Some(Value::Array(types)) => types.push(json!("null")),
                    _ => {}
                }
            }
            map.values_mut().for_each(nullable_to_type);
        }
        Value::Array(items) => items.iter_mut().for_each(nullable_to_type),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = r##"
openapi: 3.0.3
info: {title: t, version: "1"}
paths:
  /orders:
    post:
      operationId: createOrder
      requestBody:
        required: true
        content:
          application/json:
            schema: {$ref: "#/components/schemas/Order"}
    get:
      parameters:
        - {name: limit, in: query, schema: {type: integer, maximum: 50}}
  /orders/{id}:
    get:
      operationId: getOrder
components:
  schemas:
    Order:
      type: object
      required: [item]
      properties:
        item: {type: string}
        note: {type: string, nullable: true}
"##;

    #[test]
    fn operations_become_routes_with_validation() {
        let doc = parse(DOC, "openapi[0]").unwrap();
        let ops = operations(&doc, "/api/v1/", "openapi[0]").unwrap();
        let names: Vec<(&str, &str, &str)> = ops
            .iter()
            .map(|o| (o.name.as_str(), o.method.as_str(), o.path.as_str()))
            .collect();
        assert_eq!(
            names,
            vec![
                ("GET /orders", "GET", "/api/v1/orders"),
                ("createOrder", "POST", "/api/v1/orders"),
                ("getOrder", "GET", "/api/v1/orders/{id}"),
            ]
        );
        let create = &ops[1].validation;
        assert!(create.body_required);
        assert_eq!(create.content_types, vec!["application/json"]);
        assert!(create.check_body(br#"{"item":"x","note":null}"#).is_ok());
        let err = create.check_body(br#"{"note":1}"#).unwrap_err();
        let found: Vec<(&str, &str)> = err
            .errors
            .iter()
            .map(|e| (e.pointer.as_str(), e.keyword.as_str()))
            .collect();
        assert!(found.contains(&("", "required")), "{found:?}");
        assert!(found.contains(&("/note", "type")), "{found:?}");
        let list = &ops[0].validation;
        assert!(list
            .check_head(&http::HeaderMap::new(), Some("limit=10"))
            .is_ok());
        assert!(list
            .check_head(&http::HeaderMap::new(), Some("limit=99"))
            .is_err());
    }

    #[test]
    fn other_versions_are_refused() {
        let doc = parse(r#"{"swagger": "2.0", "paths": {}}"#, "k").unwrap();
        assert!(operations(&doc, "", "k").is_err());
    }
}
