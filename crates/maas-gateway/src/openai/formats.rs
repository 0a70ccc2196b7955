//! The output format a chat or text completion asks for (`response_format`, vLLM's
//! `structured_outputs` and `guided_*` fields), read into the runtime's [`OutputFormat`]; at
//! most one per request.

use maas_runtime::generate::structured::OutputFormat;
use serde_json::{Value, json};

use super::generation::Sampling;
use crate::error::ApiError;

impl Sampling {
    /// The output format asked for, if any: through `response_format`, `structured_outputs` or
    /// a `guided_*` field, at most one of them.
    pub(super) fn output_format(&self) -> Result<Option<OutputFormat>, ApiError> {
        let mut asked: Vec<(&str, OutputFormat)> = Vec::new();
        if let Some(format) = self.response_format()? {
            asked.push(("response_format", format));
        }
        if let Some(spec) = &self.structured_outputs {
            asked.extend(structured_outputs(spec)?.into_iter().map(|f| ("structured_outputs", f)));
        }
        if let Some(schema) = &self.guided_json {
            asked.push(("guided_json", json_schema(schema, "guided_json")?));
        }
        if let Some(regex) = &self.guided_regex {
            asked.push(("guided_regex", OutputFormat::Regex(regex.clone())));
        }
        if let Some(choices) = &self.guided_choice {
            asked.push(("guided_choice", choice(choices, "guided_choice")?));
        }
        if let Some(grammar) = &self.guided_grammar {
            asked.push(("guided_grammar", OutputFormat::Grammar(grammar.clone())));
        }
        match asked.len() {
            0 => Ok(None),
            1 => Ok(asked.pop().map(|(_, format)| format)),
            _ => Err(ApiError::invalid(
                asked[1].0,
                "ask for one output format: response_format, one member of structured_outputs, or one guided_* field",
            )),
        }
    }

    /// The output format `response_format` asks for, if any.
    fn response_format(&self) -> Result<Option<OutputFormat>, ApiError> {
        let bad = |message: &str| ApiError::invalid("response_format", message);
        let Some(format) = &self.response_format else { return Ok(None) };
        match format.get("type").and_then(Value::as_str) {
            Some("text") => Ok(None),
            Some("json_object") => Ok(Some(OutputFormat::JsonObject)),
            Some("json_schema") => {
                let Some(spec) = format.get("json_schema").filter(|s| s.is_object()) else {
                    return Err(bad("response_format.json_schema must be an object with the schema"));
                };
                // OpenAI's `schema` is optional: any JSON value then.
                json_schema(spec.get("schema").unwrap_or(&Value::Null), "response_format").map(Some)
            }
            _ => Err(bad("response_format.type must be text, json_object or json_schema")),
        }
    }
}

/// A JSON Schema given as an object, as its JSON text (vLLM takes both), or absent / `true`
/// (any JSON value).
fn json_schema(schema: &Value, param: &str) -> Result<OutputFormat, ApiError> {
    match schema {
        Value::Null | Value::Bool(true) => Ok(OutputFormat::JsonSchema(json!({}))),
        Value::Object(_) => Ok(OutputFormat::JsonSchema(schema.clone())),
        Value::String(text) if text.trim_start().starts_with('{') => match serde_json::from_str::<Value>(text) {
            Ok(parsed @ Value::Object(_)) => Ok(OutputFormat::JsonSchema(parsed)),
            _ => Err(ApiError::invalid(param, format!("{param}: the schema text is not a JSON object"))),
        },
        _ => Err(ApiError::invalid(param, format!("{param}: the schema must be a JSON Schema object"))),
    }
}

fn choice(choices: &[String], param: &str) -> Result<OutputFormat, ApiError> {
    if choices.is_empty() {
        return Err(ApiError::invalid(param, format!("{param} must list at least one text")));
    }
    Ok(OutputFormat::Choice(choices.to_vec()))
}

/// vLLM's `structured_outputs` object: the formats its members ask for.
fn structured_outputs(spec: &Value) -> Result<Vec<OutputFormat>, ApiError> {
    let param = "structured_outputs";
    let bad = |message: String| ApiError::invalid(param, message);
    let Some(members) = spec.as_object() else { return Err(bad(format!("{param} must be an object"))) };
    let mut formats = Vec::new();
    for (key, value) in members {
        let format = match (key.as_str(), value) {
            (_, Value::Null) | ("json_object", Value::Bool(false)) => continue,
            ("json", schema) => json_schema(schema, param)?,
            ("regex", Value::String(regex)) => OutputFormat::Regex(regex.clone()),
            ("grammar", Value::String(grammar)) => OutputFormat::Grammar(grammar.clone()),
            ("json_object", Value::Bool(true)) => OutputFormat::JsonObject,
            ("choice", Value::Array(items)) => {
                let texts: Option<Vec<String>> = items.iter().map(|i| i.as_str().map(str::to_owned)).collect();
                choice(&texts.ok_or_else(|| bad(format!("{param}.choice must list texts")))?, param)?
            }
            // vLLM's layout and fallback options: the JSON layout here is fixed (decision 012).
            (
                "disable_any_whitespace" | "disable_additional_properties" | "whitespace_pattern" | "disable_fallback",
                _,
            ) => {
                continue;
            }
            (key, _) => {
                return Err(bad(format!(
                    "{param}.{key} is not supported (json, regex, choice, grammar or json_object)"
                )));
            }
        };
        formats.push(format);
    }
    Ok(formats)
}
