//! Tool calling in chat completions: OpenAI's `tools` and `tool_choice`, and reading the
//! calls out of the model's answer.
//!
//! | `tool_choice` | what the model sees and may write |
//! | --- | --- |
//! | `"none"` | no tools; the answer is text |
//! | `"auto"` (the default when tools are given) | the tools, through the chat template; the answer is text, unless the model writes Hermes-style `<tool_call>{"name": …, "arguments": …}</tool_call>` blocks (Qwen2/2.5/3, Hermes and others), or the whole answer is bare JSON calls — `{"name": …, "parameters": …}` (Llama 3.1+) or a list of `{"name": …, "arguments": …}` (Mistral, after its `[TOOL_CALLS]` token, which has no text) — naming given tools: those become `tool_calls` |
//! | `"required"` | decoding constrained to a JSON list of one or more calls of the given tools, `[{"name": …, "parameters": …}]` (one with `parallel_tool_calls: false`), as vLLM does; streamed call by call as it is written ([`super::call_list`]) |
//! | `{"type": "function", "function": {"name": …}}` | decoding constrained to that function's `parameters` schema: the answer is its arguments |
//!
//! Forced calls (the last two rows) work with any model, since the grammar writes the call's
//! shape; `auto` needs a model trained to call tools in the Hermes format.

use maas_runtime::generate::structured::OutputFormat;
use serde_json::{Value, json};

use super::call_list::{CallList, ListedCall};
use crate::error::ApiError;

const OPEN: &str = "<tool_call>";
const CLOSE: &str = "</tool_call>";

/// A function the model may call.
#[derive(Debug, Clone, PartialEq)]
struct Function {
    name: String,
    /// Its arguments' JSON Schema (an object without properties when none was given).
    parameters: Value,
}

/// What `tool_choice` asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum ToolChoice {
    None,
    Auto,
    Required { parallel: bool },
    Named(String),
}

/// The tools of one chat request and how they may be called.
#[derive(Debug, Clone, PartialEq)]
pub struct Tools {
    /// As sent, for the chat template.
    list: Vec<Value>,
    functions: Vec<Function>,
    pub choice: ToolChoice,
}

/// A call read from the answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// The arguments as a JSON text (OpenAI's `function.arguments`).
    pub arguments: String,
}

impl ToolCall {
    pub fn new(name: String, arguments: String) -> ToolCall {
        let id = format!("call_{}", &uuid::Uuid::new_v4().simple().to_string()[..24]);
        ToolCall { id, name, arguments }
    }

    /// The call in a message's `tool_calls`.
    pub fn json(&self) -> Value {
        json!({ "id": self.id, "type": "function", "function": { "name": self.name, "arguments": self.arguments } })
    }

    /// The call in a streamed chunk's `tool_calls`, at `index`.
    pub fn delta_json(&self, index: usize) -> Value {
        let mut v = self.json();
        v["index"] = json!(index);
        v
    }
}

/// An answer read for tool calls: the text outside them, and the calls.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Reading {
    pub content: Option<String>,
    pub calls: Vec<ToolCall>,
}

impl Tools {
    /// Reads `tools`, `tool_choice` and `parallel_tool_calls`; `None` when there are no tools.
    pub fn parse(
        tools: &[Value],
        tool_choice: Option<&Value>,
        parallel: Option<bool>,
    ) -> Result<Option<Tools>, ApiError> {
        if tools.is_empty() {
            return match tool_choice {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) if s == "none" => Ok(None),
                Some(_) => Err(ApiError::invalid("tool_choice", "tool_choice needs tools")),
            };
        }
        let mut functions: Vec<Function> = Vec::with_capacity(tools.len());
        for (i, tool) in tools.iter().enumerate() {
            let function = match (tool.get("type").and_then(Value::as_str), tool.get("function")) {
                (Some("function"), Some(f)) if f.is_object() => f,
                _ => {
                    return Err(ApiError::invalid(
                        "tools",
                        format!("tools[{i}] must be {{\"type\": \"function\", \"function\": {{…}}}}"),
                    ));
                }
            };
            let name = function.get("name").and_then(Value::as_str).unwrap_or_default();
            let valid = (1..=64).contains(&name.len())
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if !valid {
                return Err(ApiError::invalid(
                    "tools",
                    format!("tools[{i}].function.name must be 1 to 64 letters, digits, _ or -"),
                ));
            }
            if functions.iter().any(|f| f.name == name) {
                return Err(ApiError::invalid(
                    "tools",
                    format!("tools[{i}]: the function name '{name}' is given twice"),
                ));
            }
            let parameters = match function.get("parameters") {
                None | Some(Value::Null) => json!({"type": "object", "properties": {}, "additionalProperties": false}),
                Some(p @ Value::Object(_)) => p.clone(),
                Some(_) => {
                    return Err(ApiError::invalid(
                        "tools",
                        format!("tools[{i}].function.parameters must be a JSON Schema object"),
                    ));
                }
            };
            functions.push(Function { name: name.to_owned(), parameters });
        }
        let choice = match tool_choice {
            None | Some(Value::Null) => ToolChoice::Auto,
            Some(Value::String(s)) => match s.as_str() {
                "none" => ToolChoice::None,
                "auto" => ToolChoice::Auto,
                "required" => ToolChoice::Required { parallel: parallel.unwrap_or(true) },
                other => {
                    return Err(ApiError::invalid(
                        "tool_choice",
                        format!("tool_choice '{other}' is not none, auto or required"),
                    ));
                }
            },
            Some(named) => {
                let name = named.pointer("/function/name").and_then(Value::as_str);
                match name {
                    Some(name) if functions.iter().any(|f| f.name == name) => ToolChoice::Named(name.to_owned()),
                    Some(name) => {
                        return Err(ApiError::invalid(
                            "tool_choice",
                            format!("tool_choice names '{name}', not in tools"),
                        ));
                    }
                    None => {
                        return Err(ApiError::invalid(
                            "tool_choice",
                            "tool_choice must be none, auto, required or {\"type\": \"function\", \"function\": {\"name\": …}}",
                        ));
                    }
                }
            }
        };
        Ok(Some(Tools { list: tools.to_vec(), functions, choice }))
    }

    /// The tools the chat template sees (none with `tool_choice: "none"`).
    pub fn for_template(&self) -> Vec<Value> {
        if self.choice == ToolChoice::None { Vec::new() } else { self.list.clone() }
    }

    /// The output format a forced call needs.
    pub fn forced_format(&self) -> Option<OutputFormat> {
        match &self.choice {
            ToolChoice::None | ToolChoice::Auto => None,
            ToolChoice::Named(name) => {
                self.functions.iter().find(|f| &f.name == name).map(|f| OutputFormat::JsonSchema(f.parameters.clone()))
            }
            ToolChoice::Required { parallel } => {
                let calls: Vec<Value> = self
                    .functions
                    .iter()
                    .map(|f| {
                        json!({ "type": "object",
                                "properties": { "name": { "type": "string", "enum": [f.name] }, "parameters": f.parameters },
                                "required": ["name", "parameters"], "additionalProperties": false })
                    })
                    .collect();
                let mut schema = json!({ "type": "array", "minItems": 1, "items": { "anyOf": calls } });
                if !parallel {
                    schema["maxItems"] = json!(1);
                }
                Some(OutputFormat::JsonSchema(schema))
            }
        }
    }

    /// Whether a call ends the answer with `finish_reason: "tool_calls"` (OpenAI answers a
    /// call of a named function with `"stop"`).
    pub fn finish_as_tool_calls(&self) -> bool {
        !matches!(self.choice, ToolChoice::Named(_))
    }

    /// Reads a whole answer: the calls it makes and the text around them.
    pub fn read(&self, text: &str) -> Reading {
        let content = |t: &str| (!t.trim().is_empty()).then(|| t.trim().to_owned());
        match &self.choice {
            ToolChoice::None => Reading { content: Some(text.to_owned()), calls: Vec::new() },
            ToolChoice::Named(name) => {
                Reading { content: None, calls: vec![ToolCall::new(name.clone(), text.to_owned())] }
            }
            ToolChoice::Required { .. } => {
                let mut list = CallList::default();
                list.push(text);
                let calls = list
                    .closed()
                    .then(|| list.calls().iter().map(|c| self.listed(c)).collect::<Option<Vec<_>>>())
                    .flatten();
                match calls {
                    Some(calls) if !calls.is_empty() => Reading { content: None, calls },
                    // Cut short (max_tokens): the text as it is.
                    _ => Reading { content: content(text), calls: Vec::new() },
                }
            }
            ToolChoice::Auto => {
                let (mut outside, mut calls, mut rest) = (String::new(), Vec::new(), text);
                while let Some(start) = rest.find(OPEN) {
                    let after = &rest[start + OPEN.len()..];
                    let (inner, next) = match after.find(CLOSE) {
                        Some(end) => (&after[..end], &after[end + CLOSE.len()..]),
                        None => (after, ""),
                    };
                    let call = serde_json::from_str::<Value>(inner.trim()).ok().and_then(|v| {
                        let arguments = v.get("arguments").or_else(|| v.get("parameters"))?;
                        self.call(v.get("name")?, arguments)
                    });
                    match call {
                        Some(call) => {
                            outside.push_str(&rest[..start]);
                            calls.push(call);
                        }
                        // Not a call of a given tool: it stays text.
                        None => outside.push_str(&rest[..start + OPEN.len() + inner.len()]),
                    }
                    rest = next;
                }
                outside.push_str(rest);
                if !calls.is_empty() {
                    return Reading { content: content(&outside), calls };
                }
                match self.bare_calls(text) {
                    Some(calls) => Reading { content: None, calls },
                    None => Reading { content: Some(text.to_owned()), calls },
                }
            }
        }
    }

    /// The calls of an answer that is only JSON: one call object or a list of them, each
    /// naming a given tool with its `arguments` (or `parameters`, as Llama 3 writes them).
    fn bare_calls(&self, text: &str) -> Option<Vec<ToolCall>> {
        let value: Value = serde_json::from_str(text.trim()).ok()?;
        let items = match &value {
            Value::Array(items) => items.as_slice(),
            object @ Value::Object(_) => std::slice::from_ref(object),
            _ => return None,
        };
        let calls = items
            .iter()
            .map(|c| self.call(c.get("name")?, c.get("arguments").or_else(|| c.get("parameters"))?))
            .collect::<Option<Vec<_>>>()?;
        (!calls.is_empty()).then_some(calls)
    }

    /// A whole call of a `required` list naming a given function; its arguments as written.
    fn listed(&self, call: &ListedCall) -> Option<ToolCall> {
        let name = call.name.as_deref().filter(|n| self.functions.iter().any(|f| f.name == *n))?;
        serde_json::from_str::<Value>(&call.arguments).ok()?;
        call.complete.then(|| ToolCall::new(name.to_owned(), call.arguments.clone()))
    }

    /// A call of a given function (`arguments` an object, or a JSON text of one).
    fn call(&self, name: &Value, arguments: &Value) -> Option<ToolCall> {
        let name = name.as_str().filter(|n| self.functions.iter().any(|f| f.name == *n))?;
        let arguments = match arguments {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        Some(ToolCall::new(name.to_owned(), arguments))
    }

    /// For streams: how much of the answer so far (`text`, of which the first `sent` bytes went
    /// out already) can go out as content now. Forced calls send no content; `auto` holds back
    /// from a `<tool_call>` on, a tail that may begin one, and an answer that so far is only
    /// JSON (it may be bare calls). Only the text after `sent` is searched: what went out
    /// holds no part of a `<tool_call>`.
    pub fn streamable(&self, text: &str, sent: usize) -> usize {
        let rest = &text[sent..];
        match self.choice {
            ToolChoice::None => text.len(),
            ToolChoice::Named(_) | ToolChoice::Required { .. } => 0,
            ToolChoice::Auto if sent == 0 && matches!(text.trim_start().bytes().next(), None | Some(b'{' | b'[')) => 0,
            ToolChoice::Auto => match rest.find(OPEN) {
                Some(start) => sent + start,
                None => {
                    (1..OPEN.len()).rev().find(|&n| rest.ends_with(&OPEN[..n])).map_or(text.len(), |n| text.len() - n)
                }
            },
        }
    }
}

/// An assistant message's `tool_calls` as templates take them: `function.arguments` as an
/// object when it is a JSON text of one (`transformers`' templates write `arguments | tojson`).
pub fn calls_for_template(calls: &[Value]) -> Vec<Value> {
    calls
        .iter()
        .map(|call| {
            let mut call = call.clone();
            if let Some(arguments) = call.pointer_mut("/function/arguments")
                && let Some(parsed) = arguments.as_str().and_then(|t| serde_json::from_str::<Value>(t).ok())
            {
                *arguments = parsed;
            }
            call
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weather() -> Vec<Value> {
        vec![
            json!({"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}),
            json!({"type": "function", "function": {"name": "get_time"}}),
        ]
    }

    fn tools(choice: Value) -> Tools {
        Tools::parse(&weather(), Some(&choice), None).unwrap().unwrap()
    }

    #[test]
    fn tool_choice_forms_and_mistakes() {
        assert_eq!(Tools::parse(&weather(), None, None).unwrap().unwrap().choice, ToolChoice::Auto);
        assert_eq!(tools(json!("required")).choice, ToolChoice::Required { parallel: true });
        let named = tools(json!({"type": "function", "function": {"name": "get_time"}}));
        assert_eq!(named.choice, ToolChoice::Named("get_time".into()));
        assert_eq!(
            named.forced_format(),
            Some(OutputFormat::JsonSchema(json!({"type": "object", "properties": {}, "additionalProperties": false})))
        );
        assert!(tools(json!("none")).for_template().is_empty());
        assert!(Tools::parse(&[], None, None).unwrap().is_none());
        for (tools, choice, param) in [
            (vec![], json!("required"), "tool_choice"),
            (weather(), json!({"type": "function", "function": {"name": "nope"}}), "tool_choice"),
            (weather(), json!("sometimes"), "tool_choice"),
            (vec![json!({"type": "function", "function": {"name": "a b"}})], json!("auto"), "tools"),
            (vec![json!({"type": "retrieval"})], json!("auto"), "tools"),
            ([weather(), weather()].concat(), json!("auto"), "tools"),
        ] {
            let err = Tools::parse(&tools, Some(&choice), None).unwrap_err();
            assert_eq!(err.param.as_deref(), Some(param), "{choice} {}", err.message);
        }
    }

    #[test]
    fn required_calls_are_a_list_the_grammar_writes() {
        let required = tools(json!("required"));
        let Some(OutputFormat::JsonSchema(schema)) = required.forced_format() else { panic!() };
        assert_eq!(schema["items"]["anyOf"][0]["properties"]["name"]["enum"], json!(["get_weather"]));
        assert!(schema.get("maxItems").is_none());
        let reading = required.read(
            r#"[{"name": "get_weather", "parameters": {"city": "Paris"}}, {"name": "get_time", "parameters": {}}]"#,
        );
        let calls: Vec<(&str, &str)> = reading.calls.iter().map(|c| (c.name.as_str(), c.arguments.as_str())).collect();
        assert_eq!(calls, [("get_weather", r#"{"city": "Paris"}"#), ("get_time", "{}")], "arguments as written");
        assert_eq!(required.read(r#"[{"name": "get_wea"#).calls, vec![], "cut short: text");
        let one = Tools::parse(&weather(), Some(&json!("required")), Some(false)).unwrap().unwrap();
        let Some(OutputFormat::JsonSchema(schema)) = one.forced_format() else { panic!() };
        assert_eq!(schema["maxItems"], 1);
    }

    #[test]
    fn auto_reads_hermes_blocks_of_given_tools_only() {
        let auto = tools(json!("auto"));
        let text = "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>";
        let reading = auto.read(text);
        assert_eq!(reading.content.as_deref(), Some("Let me check."));
        assert_eq!(
            (reading.calls[0].name.as_str(), reading.calls[0].arguments.as_str()),
            ("get_weather", r#"{"city":"Paris"}"#)
        );
        assert!(reading.calls[0].id.starts_with("call_"));
        let unknown = "<tool_call>{\"name\": \"rm_rf\", \"arguments\": {}}</tool_call>";
        assert_eq!(auto.read(unknown), Reading { content: Some(unknown.into()), calls: vec![] });
        assert_eq!(auto.read("Paris.").content.as_deref(), Some("Paris."));
    }

    #[test]
    fn auto_reads_bare_json_calls_as_llama_and_mistral_write_them() {
        let auto = tools(json!("auto"));
        let llama = auto.read(r#"{"name": "get_weather", "parameters": {"city": "Paris"}}"#);
        assert_eq!((llama.content, llama.calls[0].arguments.as_str()), (None, r#"{"city":"Paris"}"#));
        let mistral = auto.read(
            r#" [{"name": "get_time", "arguments": {}}, {"name": "get_weather", "arguments": {"city": "Lyon"}}]"#,
        );
        let names: Vec<&str> = mistral.calls.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["get_time", "get_weather"]);
        for text in [
            r#"{"name": "Paris", "parameters": {}}"#,
            r#"{"city": "Paris"}"#,
            "[1, 2]",
            r#"{"name": "get_time"} and more"#,
        ] {
            assert_eq!(auto.read(text), Reading { content: Some(text.into()), calls: vec![] }, "{text}");
        }
    }

    #[test]
    fn streams_hold_back_what_may_become_a_call() {
        let auto = tools(json!("auto"));
        assert_eq!(auto.streamable("Hello", 0), 5);
        assert_eq!(auto.streamable("Hello <tool", 0), 6);
        assert_eq!(auto.streamable("Hello <tool_call>{\"na", 0), 6);
        assert_eq!(auto.streamable("Hello <tool_call>{\"na", 6), 6, "from what went out");
        assert_eq!(auto.streamable("a < b", 0), 5);
        assert_eq!(auto.streamable("  {\"name\": ", 0), 0, "JSON from the start may be a bare call");
        assert_eq!(auto.streamable("Use {braces}", 0), 12);
        assert_eq!(auto.streamable("Use {braces}", 4), 12, "JSON after text is text");
        assert_eq!(tools(json!("required")).streamable("[{", 0), 0);
    }

    #[test]
    fn template_calls_get_their_arguments_as_objects() {
        let calls = [json!({"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{\"a\": 1}"}})];
        assert_eq!(calls_for_template(&calls)[0]["function"]["arguments"], json!({"a": 1}));
    }
}
