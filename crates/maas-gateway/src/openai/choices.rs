//! The response shapes of chat and text completions: whole answers and streamed chunks with
//! any number of choices, and OpenAI's two `logprobs` layouts (chat's `content` list, text
//! completions' parallel `tokens`/`token_logprobs`/`top_logprobs`/`text_offset` lists, which
//! with `echo` start with the prompt's tokens), and chat answers that call tools.

use std::sync::Arc;

use maas_runtime::generate::{FinishReason, Logprobs, PromptToken, TokenLogprob};
use serde_json::{Map, Value, json};

use super::call_list::CallList;
use super::generation::Usage;
use super::tools::{ToolCall, ToolChoice, Tools};

/// OpenAI's floor for log-probabilities: JSON has no -inf.
const LOGPROB_FLOOR: f32 = -9999.0;

/// One finished choice of a whole answer.
#[derive(Debug, Default)]
pub struct Choice {
    /// The prompt's tokens as the replica reported them (`echo`).
    pub prompt: Option<Vec<PromptToken>>,
    pub text: String,
    pub logprobs: Vec<Logprobs>,
    pub finish: Option<FinishReason>,
}

/// The response shape: chat (`chat.completion[.chunk]`, `message`/`delta`) or text
/// (`text_completion`, `text`), whether the request asked for log-probabilities, and the prompt
/// text of each choice when it is echoed (text completions' `echo`; empty for a prompt of
/// token ids, spelled from its tokens instead).
#[derive(Debug, Clone)]
pub struct Shape {
    pub chat: bool,
    pub logprobs: bool,
    pub echo: Vec<String>,
    pub id: String,
    pub model: String,
    pub created: i64,
    /// A chat request's tools: answers are read for calls.
    pub tools: Option<Arc<Tools>>,
}

/// A streamed chat choice's answer when tools may be called: the text so far, how much of it
/// went out as content, the log-probabilities of the text held back, and the calls streamed so
/// far (a named function's, or those of a `required` list, each with the arguments sent).
#[derive(Debug, Default)]
pub struct Held {
    text: String,
    sent: usize,
    logprobs: Vec<Logprobs>,
    calls: Vec<ToolCall>,
    list: CallList,
}

fn reason(r: FinishReason) -> &'static str {
    match r {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
    }
}

fn token_text(t: &TokenLogprob) -> String {
    String::from_utf8_lossy(&t.bytes).into_owned()
}

fn logprob(t: &TokenLogprob) -> f32 {
    if t.logprob.is_nan() { LOGPROB_FLOOR } else { t.logprob.max(LOGPROB_FLOOR) }
}

impl Shape {
    pub fn new(chat: bool, logprobs: bool, model: String) -> Shape {
        let prefix = if chat { "chatcmpl" } else { "cmpl" };
        let id = format!("{prefix}-{}", uuid::Uuid::new_v4().simple());
        Shape { chat, logprobs, echo: Vec::new(), id, model, created: super::unix_now(), tools: None }
    }

    /// Answers are read for calls of `tools` (unless `tool_choice` is `none`).
    pub fn with_tools(self, tools: Option<Tools>) -> Shape {
        let tools = tools.filter(|t| t.choice != ToolChoice::None).map(Arc::new);
        Shape { tools, ..self }
    }

    /// A whole chat answer's `message` and finish reason: text, or the tool calls read from it.
    fn message(&self, text: &str, finish: Option<FinishReason>) -> (Value, Option<&'static str>) {
        let plain = (json!({ "role": "assistant", "content": text }), finish.map(reason));
        let Some(tools) = self.tools.as_deref() else { return plain };
        let reading = tools.read(text);
        if reading.calls.is_empty() {
            return plain;
        }
        let calls: Vec<Value> = reading.calls.iter().map(ToolCall::json).collect();
        let finish = finish.map(|f| after_calls(tools, f));
        (json!({ "role": "assistant", "content": reading.content, "tool_calls": calls }), finish)
    }

    /// Choice `i`'s text starts with its prompt, `echo[i]` (or its tokens spelled out when
    /// that is empty).
    pub fn with_echo(self, echo: Vec<String>) -> Shape {
        Shape { echo, ..self }
    }

    /// The text choice `index` starts with: its prompt when echoed.
    fn echoed(&self, index: usize, prompt: &[PromptToken]) -> String {
        match self.echo.get(index) {
            Some(text) if !text.is_empty() => text.clone(),
            _ => String::from_utf8_lossy(&prompt.iter().flat_map(|t| t.bytes.iter().copied()).collect::<Vec<u8>>())
                .into_owned(),
        }
    }

    /// The whole answer (not streamed), choices in index order.
    pub fn answer(&self, choices: &[Choice], usage: Usage) -> Value {
        let choices: Vec<Value> = choices
            .iter()
            .enumerate()
            .map(|(index, c)| {
                let finish_reason = c.finish.map(reason);
                let prompt = c.prompt.as_deref().unwrap_or_default();
                let logprobs = self.logprobs_json(prompt, &c.logprobs, &mut 0);
                if self.chat {
                    let (message, finish_reason) = self.message(&c.text, c.finish);
                    json!({ "index": index, "message": message, "finish_reason": finish_reason, "logprobs": logprobs })
                } else {
                    let echoed = if c.prompt.is_some() { self.echoed(index, prompt) } else { String::new() };
                    let text = format!("{echoed}{}", c.text);
                    json!({ "index": index, "text": text, "finish_reason": finish_reason, "logprobs": logprobs })
                }
            })
            .collect();
        let object = if self.chat { "chat.completion" } else { "text_completion" };
        json!({ "id": self.id, "object": object, "created": self.created, "model": self.model,
                "choices": choices, "usage": usage })
    }

    /// The chunk that opens choice `index` of a stream: chat's `role` (text completions have
    /// none; an echoed prompt comes as [`Shape::prompt`] once the replica has read it).
    pub fn opening(&self, index: usize) -> Option<Value> {
        let choice = json!({ "index": index, "delta": { "role": "assistant", "content": "" },
                             "finish_reason": null, "logprobs": null });
        self.chat.then(|| self.envelope(json!([choice]), None))
    }

    /// The streamed chunk of choice `index`'s echoed prompt, with the prompt tokens'
    /// log-probabilities when asked (`offset` advanced past its characters).
    pub fn prompt(&self, index: usize, prompt: &[PromptToken], offset: &mut usize) -> Value {
        let logprobs = self.logprobs_json(prompt, &[], offset);
        let choice = json!({ "index": index, "text": self.echoed(index, prompt), "finish_reason": null,
                             "logprobs": logprobs });
        self.envelope(json!([choice]), None)
    }

    /// One streamed chunk of choice `index`: new text and its tokens' log-probabilities
    /// (`offset`: the characters of this choice's text before them, advanced past them).
    pub fn delta(&self, index: usize, text: &str, logprobs: &[Logprobs], offset: &mut usize) -> Value {
        let logprobs = self.logprobs_json(&[], logprobs, offset);
        let choice = if self.chat {
            json!({ "index": index, "delta": { "content": text }, "finish_reason": null, "logprobs": logprobs })
        } else {
            json!({ "index": index, "text": text, "finish_reason": null, "logprobs": logprobs })
        };
        self.envelope(json!([choice]), None)
    }

    /// The chunks of new text of choice `index` of a stream (`offset` as for
    /// [`Shape::delta`]); with tools, what may be part of a call is held back in `held` (with
    /// its tokens' log-probabilities), and forced calls go out as they are written: a call opens
    /// with its id and name, then its arguments come piece by piece.
    pub fn stream_delta(
        &self,
        index: usize,
        text: &str,
        logprobs: &[Logprobs],
        offset: &mut usize,
        held: &mut Held,
    ) -> Vec<Value> {
        let Some(tools) = self.tools.as_deref() else {
            let any = !text.is_empty() || !logprobs.is_empty();
            return if any { vec![self.delta(index, text, logprobs, offset)] } else { Vec::new() };
        };
        held.text.push_str(text);
        let calls = match &tools.choice {
            ToolChoice::Named(name) => {
                held.sent = held.text.len();
                stream_calls(&mut held.calls, [(name.as_str(), held.text.as_str())])
            }
            ToolChoice::Required { .. } => {
                held.list.push(text);
                let listed = held.list.calls().iter().map_while(|c| Some((c.name.as_deref()?, c.arguments.as_str())));
                stream_calls(&mut held.calls, listed)
            }
            ToolChoice::None | ToolChoice::Auto => {
                held.logprobs.extend_from_slice(logprobs);
                let ready = tools.streamable(&held.text, held.sent);
                if ready <= held.sent {
                    return Vec::new();
                }
                let content = held.text[held.sent..ready].to_owned();
                held.sent = ready;
                let logprobs = std::mem::take(&mut held.logprobs);
                return vec![self.delta(index, &content, &logprobs, offset)];
            }
        };
        if calls.is_empty() { Vec::new() } else { vec![self.tool_call_chunk(index, calls)] }
    }

    /// The chunks that end choice `index` of a stream: with tools, the calls read from what was
    /// held back (or the held text as content), then the finish reason.
    pub fn stream_finished(&self, index: usize, finish: FinishReason, held: &mut Held) -> Vec<Value> {
        let Some(tools) = self.tools.as_deref() else { return vec![self.finished(index, finish)] };
        let mut chunks = Vec::new();
        if held.calls.is_empty() && held.sent < held.text.len() {
            let reading = tools.read(&held.text[held.sent..]);
            if let Some(content) = reading.content.filter(|c| !c.is_empty()) {
                let logprobs = std::mem::take(&mut held.logprobs);
                chunks.push(self.delta(index, &content, &logprobs, &mut 0));
            }
            if !reading.calls.is_empty() {
                chunks.push(
                    self.tool_call_chunk(
                        index,
                        reading.calls.iter().enumerate().map(|(i, c)| c.delta_json(i)).collect(),
                    ),
                );
                held.calls = reading.calls;
            }
            held.sent = held.text.len();
        }
        let finish_reason = if held.calls.is_empty() { reason(finish) } else { after_calls(tools, finish) };
        let choice = json!({ "index": index, "delta": {}, "finish_reason": finish_reason, "logprobs": null });
        chunks.push(self.envelope(json!([choice]), None));
        chunks
    }

    /// A chunk of streamed calls (`calls`: their deltas).
    fn tool_call_chunk(&self, index: usize, calls: Vec<Value>) -> Value {
        let choice =
            json!({ "index": index, "delta": { "tool_calls": calls }, "finish_reason": null, "logprobs": null });
        self.envelope(json!([choice]), None)
    }

    /// The chunk that ends choice `index` of a stream.
    pub fn finished(&self, index: usize, finish: FinishReason) -> Value {
        let choice = if self.chat {
            json!({ "index": index, "delta": {}, "finish_reason": reason(finish), "logprobs": null })
        } else {
            json!({ "index": index, "text": "", "finish_reason": reason(finish), "logprobs": null })
        };
        self.envelope(json!([choice]), None)
    }

    /// The last chunk of a stream that asked for usage: no choices.
    pub fn usage_chunk(&self, usage: Usage) -> Value {
        self.envelope(json!([]), Some(usage))
    }

    fn envelope(&self, choices: Value, usage: Option<Usage>) -> Value {
        let object = if self.chat { "chat.completion.chunk" } else { "text_completion" };
        let mut v = json!({ "id": self.id, "object": object, "created": self.created, "model": self.model,
                            "choices": choices });
        if let Some(u) = usage {
            v["usage"] = json!(u);
        }
        v
    }

    /// A choice's `logprobs`: `null` unless asked for; chat: `{"content": [{token, logprob,
    /// bytes, top_logprobs}]}`; text: `{tokens, token_logprobs, top_logprobs, text_offset}`,
    /// the `prompt`'s tokens first (the first one's log-probability and alternatives `null`),
    /// offsets counted in characters from `offset`, which ends past these tokens.
    fn logprobs_json(&self, prompt: &[PromptToken], entries: &[Logprobs], offset: &mut usize) -> Value {
        if !self.logprobs {
            return Value::Null;
        }
        if self.chat {
            let token = |t: &TokenLogprob| json!({ "token": token_text(t), "logprob": logprob(t), "bytes": t.bytes });
            let content: Vec<Value> = entries
                .iter()
                .map(|e| {
                    let mut v = token(&e.chosen);
                    v["top_logprobs"] = e.top.iter().map(token).collect();
                    v
                })
                .collect();
            return json!({ "content": content, "refusal": null });
        }
        let (mut tokens, mut token_logprobs, mut top_logprobs, mut text_offset) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let prompt = prompt.iter().map(|t| (String::from_utf8_lossy(&t.bytes).into_owned(), t.logprobs.as_ref()));
        let generated = entries.iter().map(|e| (token_text(&e.chosen), Some(e)));
        for (text, entry) in prompt.chain(generated) {
            text_offset.push(*offset);
            *offset += text.chars().count();
            tokens.push(text);
            token_logprobs.push(entry.map_or(Value::Null, |e| json!(logprob(&e.chosen))));
            let top = entry.map(|e| e.top.iter().map(|t| (token_text(t), json!(logprob(t)))).collect::<Map<_, _>>());
            top_logprobs.push(top.map_or(Value::Null, Value::Object));
        }
        json!({ "tokens": tokens, "token_logprobs": token_logprobs, "top_logprobs": top_logprobs,
                "text_offset": text_offset })
    }
}

/// The finish reason of an answer that called tools: `tool_calls` for a model that stopped by
/// itself (OpenAI answers a forced call of a named function with `stop`).
fn after_calls(tools: &Tools, finish: FinishReason) -> &'static str {
    if finish == FinishReason::Stop && tools.finish_as_tool_calls() { "tool_calls" } else { reason(finish) }
}

/// The deltas that bring the streamed `calls` up to `written` (each call's name and its arguments
/// so far, in order): a new call opens with its id, type, name and arguments so far; a known
/// one gets what was added to its arguments.
fn stream_calls<'a>(calls: &mut Vec<ToolCall>, written: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<Value> {
    let mut deltas = Vec::new();
    for (i, (name, arguments)) in written.into_iter().enumerate() {
        match calls.get_mut(i) {
            None => {
                let call = ToolCall::new(name.to_owned(), arguments.to_owned());
                deltas.push(call.delta_json(i));
                calls.push(call);
            }
            Some(call) if arguments.len() > call.arguments.len() => {
                let piece = &arguments[call.arguments.len()..];
                deltas.push(json!({ "index": i, "function": { "arguments": piece } }));
                call.arguments.push_str(piece);
            }
            Some(_) => {}
        }
    }
    deltas
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(token: u32, text: &str, logprob: f32, top: &[(u32, &str, f32)]) -> Logprobs {
        let t = |token, text: &str, logprob| TokenLogprob { token, bytes: text.as_bytes().to_vec(), logprob };
        Logprobs { chosen: t(token, text, logprob), top: top.iter().map(|&(i, s, l)| t(i, s, l)).collect() }
    }

    #[test]
    fn chat_logprobs_list_tokens_with_bytes_and_alternatives() {
        let shape = Shape::new(true, true, "a/m".into());
        let entries =
            [entry(5, "Hi", -0.25, &[(5, "Hi", -0.25), (6, "Hey", -1.5)]), entry(7, "é", f32::NEG_INFINITY, &[])];
        let v = shape.answer(
            &[Choice { text: "Hié".into(), logprobs: entries.to_vec(), ..Choice::default() }],
            Usage::new(3, 2),
        );
        let content = &v["choices"][0]["logprobs"]["content"];
        assert_eq!(
            content[0],
            json!({ "token": "Hi", "logprob": -0.25, "bytes": [72, 105],
            "top_logprobs": [{ "token": "Hi", "logprob": -0.25, "bytes": [72, 105] },
                             { "token": "Hey", "logprob": -1.5, "bytes": [72, 101, 121] }] })
        );
        assert_eq!(content[1]["logprob"], json!(LOGPROB_FLOOR), "-inf is floored, JSON has no infinities");
        assert_eq!(content[1]["bytes"], json!([195, 169]));
        let plain = Shape::new(true, false, "a/m".into());
        assert_eq!(plain.answer(&[Choice::default()], Usage::default())["choices"][0]["logprobs"], Value::Null);
    }

    fn weather_tools(choice: Value) -> Option<Tools> {
        let tools = [json!({"type": "function", "function": {"name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}})];
        Tools::parse(&tools, Some(&choice), None).unwrap()
    }

    #[test]
    fn a_stream_holds_back_what_becomes_a_tool_call() {
        let shape = Shape::new(true, false, "a/m".into()).with_tools(weather_tools(json!("auto")));
        let mut held = Held::default();
        let mut chunks = Vec::new();
        for piece in [
            "Sure. <tool",
            "_call>\n{\"name\": \"get_weather\", ",
            "\"arguments\": {\"city\": \"Paris\"}}\n</tool_call>",
        ] {
            chunks.extend(shape.stream_delta(0, piece, &[], &mut 0, &mut held));
        }
        assert_eq!(chunks.len(), 1, "only the text before the call: {chunks:?}");
        assert_eq!(chunks[0]["choices"][0]["delta"]["content"], "Sure. ");
        let end = shape.stream_finished(0, FinishReason::Stop, &mut held);
        assert_eq!(end.len(), 2, "{end:?}");
        let call = &end[0]["choices"][0]["delta"]["tool_calls"][0];
        assert_eq!((&call["index"], &call["function"]["name"]), (&json!(0), &json!("get_weather")));
        assert_eq!(call["function"]["arguments"], r#"{"city":"Paris"}"#);
        assert_eq!(end[1]["choices"][0]["finish_reason"], "tool_calls");

        // Text that only looked like the start of a call goes out at the end.
        let mut held = Held::default();
        let sent = shape.stream_delta(0, "1 <", &[], &mut 0, &mut held);
        assert_eq!(sent[0]["choices"][0]["delta"]["content"], "1 ");
        let end = shape.stream_finished(0, FinishReason::Length, &mut held);
        assert_eq!(end[0]["choices"][0]["delta"]["content"], "<");
        assert_eq!(end[1]["choices"][0]["finish_reason"], "length");
    }

    #[test]
    fn a_named_call_streams_its_arguments_and_answers_whole_with_stop() {
        let choice = json!({"type": "function", "function": {"name": "get_weather"}});
        let shape = Shape::new(true, false, "a/m".into()).with_tools(weather_tools(choice));
        let mut held = Held::default();
        let first = shape.stream_delta(0, "{\"city\": ", &[], &mut 0, &mut held);
        let next = shape.stream_delta(0, "\"Paris\"}", &[], &mut 0, &mut held);
        let opened = &first[0]["choices"][0]["delta"]["tool_calls"][0];
        assert_eq!((&opened["type"], &opened["function"]["name"]), (&json!("function"), &json!("get_weather")));
        assert!(opened["id"].as_str().unwrap().starts_with("call_"));
        let more = &next[0]["choices"][0]["delta"]["tool_calls"][0];
        assert_eq!(more, &json!({"index": 0, "function": {"arguments": "\"Paris\"}"}}), "no id or name again");
        let end = shape.stream_finished(0, FinishReason::Stop, &mut held);
        assert_eq!(end.len(), 1);
        assert_eq!(end[0]["choices"][0]["finish_reason"], "stop");

        let whole = shape.answer(
            &[Choice { text: r#"{"city": "Paris"}"#.into(), finish: Some(FinishReason::Stop), ..Choice::default() }],
            Usage::default(),
        );
        let message = &whole["choices"][0]["message"];
        assert_eq!(message["content"], Value::Null);
        assert_eq!(message["tool_calls"][0]["function"]["arguments"], r#"{"city": "Paris"}"#);
        assert!(message["tool_calls"][0].get("index").is_none(), "a message's calls have no index");
        assert_eq!(whole["choices"][0]["finish_reason"], "stop");
    }

    #[test]
    fn required_calls_stream_call_by_call_as_they_are_written() {
        let shape = Shape::new(true, false, "a/m".into()).with_tools(weather_tools(json!("required")));
        let mut held = Held::default();
        let mut deltas = Vec::new();
        for piece in [
            "[{\"name\": \"get_wea",
            "ther\", \"parameters\": {\"city\": ",
            "\"Paris\"}}, {\"name\": \"get_weather\", \"parameters\": {\"ci",
            "ty\": \"Lyon\"}}]",
        ] {
            let chunks = shape.stream_delta(0, piece, &[], &mut 0, &mut held);
            deltas.push(
                chunks
                    .iter()
                    .flat_map(|c| c["choices"][0]["delta"]["tool_calls"].as_array().unwrap().clone())
                    .collect::<Vec<_>>(),
            );
        }
        assert!(deltas[0].is_empty(), "nothing before the name is whole: {:?}", deltas[0]);
        let opened = &deltas[1][0];
        assert_eq!((&opened["index"], &opened["function"]["name"]), (&json!(0), &json!("get_weather")));
        assert!(opened["id"].as_str().unwrap().starts_with("call_"));
        assert_eq!(opened["function"]["arguments"], "{\"city\": ");
        assert_eq!(deltas[2][0], json!({"index": 0, "function": {"arguments": "\"Paris\"}"}}));
        assert_eq!((&deltas[2][1]["index"], &deltas[2][1]["function"]["arguments"]), (&json!(1), &json!("{\"ci")));
        assert_eq!(deltas[3], [json!({"index": 1, "function": {"arguments": "ty\": \"Lyon\"}"}})]);
        let end = shape.stream_finished(0, FinishReason::Stop, &mut held);
        assert_eq!(end.len(), 1, "{end:?}");
        assert_eq!(end[0]["choices"][0]["finish_reason"], "tool_calls");
    }

    #[test]
    fn held_back_text_keeps_its_logprobs() {
        let shape = Shape::new(true, true, "a/m".into()).with_tools(weather_tools(json!("auto")));
        let mut held = Held::default();
        let tokens = |chunks: &[Value]| -> Vec<Value> {
            chunks
                .iter()
                .flat_map(|c| c["choices"][0]["logprobs"]["content"].as_array().cloned().unwrap_or_default())
                .collect()
        };
        assert_eq!(shape.stream_delta(0, "1 <", &[entry(1, "1 <", -0.5, &[])], &mut 0, &mut held).len(), 1);
        let sent = shape.stream_delta(0, "t", &[entry(2, "t", -1.0, &[])], &mut 0, &mut held);
        assert!(sent.is_empty(), "\"<t\" may open a call: {sent:?}");
        let sent = shape.stream_delta(0, "o b", &[entry(3, "o b", -2.0, &[])], &mut 0, &mut held);
        assert_eq!(sent[0]["choices"][0]["delta"]["content"], "<to b");
        let logprobs: Vec<Value> = tokens(&sent).iter().map(|t| t["logprob"].clone()).collect();
        assert_eq!(logprobs, [json!(-1.0), json!(-2.0)], "the held token goes out with the text");
        assert!(shape.stream_delta(0, "<", &[entry(4, "<", -3.0, &[])], &mut 0, &mut held).is_empty());
        let end = shape.stream_finished(0, FinishReason::Length, &mut held);
        assert_eq!(end[0]["choices"][0]["delta"]["content"], "<");
        assert_eq!(tokens(&end)[0]["logprob"], json!(-3.0));
    }

    #[test]
    fn text_logprobs_are_parallel_lists_with_character_offsets() {
        let shape = Shape::new(false, true, "a/m".into());
        let mut offset = 0;
        let first =
            shape.delta(1, "é a", &[entry(1, "é", -0.5, &[(1, "é", -0.5)]), entry(2, " a", -1.0, &[])], &mut offset);
        assert_eq!(first["choices"][0]["index"], 1);
        assert_eq!(
            first["choices"][0]["logprobs"],
            json!({ "tokens": ["é", " a"], "token_logprobs": [-0.5, -1.0],
            "top_logprobs": [{ "é": -0.5 }, {}], "text_offset": [0, 1] })
        );
        let next = shape.delta(1, "b", &[entry(3, "b", -2.0, &[])], &mut offset);
        assert_eq!(next["choices"][0]["logprobs"]["text_offset"], json!([3]));
        assert_eq!(offset, 4);
    }

    #[test]
    fn echo_puts_the_prompt_before_the_text() {
        let shape = Shape::new(false, false, "a/m".into()).with_echo(vec!["Once".into(), String::new()]);
        let token = |token, text: &str| PromptToken { token, bytes: text.as_bytes().to_vec(), logprobs: None };
        let tokens = vec![token(1, "Tw"), token(2, "ice")];
        let choices = [
            Choice { prompt: Some(vec![token(3, "On"), token(4, "ce")]), text: " upon".into(), ..Choice::default() },
            Choice { prompt: Some(tokens.clone()), ..Choice::default() },
        ];
        let whole = shape.answer(&choices, Usage::default());
        assert_eq!(
            (&whole["choices"][0]["text"], &whole["choices"][1]["text"]),
            (&json!("Once upon"), &json!("Twice")),
            "a text prompt as sent, token ids spelled out"
        );
        assert!(shape.opening(1).is_none());
        assert_eq!(shape.prompt(1, &tokens, &mut 0)["choices"][0]["text"], "Twice");
    }

    #[test]
    fn echoed_prompt_logprobs_come_first_and_the_first_is_null() {
        let shape = Shape::new(false, true, "a/m".into());
        let first = PromptToken { token: 1, bytes: b"Hi".to_vec(), logprobs: None };
        let second = PromptToken { token: 2, bytes: b" there".to_vec(), logprobs: Some(entry(2, " there", -3.0, &[])) };
        let choice = Choice {
            prompt: Some(vec![first, second]),
            text: "!".into(),
            logprobs: vec![entry(3, "!", -0.5, &[(3, "!", -0.5)])],
            finish: None,
        };
        let v = shape.answer(&[choice], Usage::default());
        assert_eq!(v["choices"][0]["text"], "Hi there!");
        assert_eq!(
            v["choices"][0]["logprobs"],
            json!({ "tokens": ["Hi", " there", "!"], "token_logprobs": [null, -3.0, -0.5],
                    "top_logprobs": [null, {}, { "!": -0.5 }], "text_offset": [0, 2, 8] })
        );
    }
}
