//! Structured outputs: decoding constrained to JSON — one JSON object (`response_format:
//! json_object`), a value matching a JSON Schema (`json_schema`, forced tool calls) — or to a
//! regular expression, a list of choices or a Lark grammar (vLLM's `structured_outputs`),
//! through llguidance, the grammar engine vLLM, SGLang and llama.cpp use.
//!
//! [`Grammars`] indexes a replica's vocabulary once (a byte trie over every token; tokens
//! without text, such as `<|im_end|>`, can never be part of the JSON). Each constrained
//! sequence gets an [`OutputConstraint`]: before its next token is sampled,
//! [`OutputConstraint::mask`] sets the logits of every token that cannot continue a valid
//! answer to -inf, and the end of sequence is allowed only once the answer is complete.
//!
//! The JSON is written in one layout (`{"a": 1, "b": [2, 3]}`: a space after `:` and `,`, no
//! other whitespace), so that a model cannot pad an answer with whitespace until it runs out
//! of tokens. Schema keywords llguidance does not enforce are refused, not ignored.

use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{ApproximateTokEnv, TokEnv, TokRxInfo, TokTrie};
use llguidance::{Matcher, ParserFactory};
use serde_json::{Value, json};
use std::sync::Arc;

use super::LmEngine;
use super::gbnf::{self, GbnfError};
use crate::RuntimeError;

/// What the output must be.
#[derive(Debug, Clone, PartialEq)]
pub enum OutputFormat {
    /// One JSON object, any keys (`response_format: {"type": "json_object"}`).
    JsonObject,
    /// A JSON value matching this schema (`json_schema`, or a tool's parameters).
    JsonSchema(Value),
    /// Text matching this regular expression, whole.
    Regex(String),
    /// Exactly one of these texts.
    Choice(Vec<String>),
    /// Text of this context-free grammar, in llguidance's Lark syntax (`start` is the root)
    /// or llama.cpp's GBNF (`root ::= …`, translated by [`super::gbnf`]).
    Grammar(String),
}

impl OutputFormat {
    /// The grammar llguidance compiles. JSON schemas get the layout options (unless the caller
    /// gave llguidance's own `x-guidance` options); choices become an alternation of escaped
    /// texts; GBNF grammars are translated to Lark (a GBNF mistake is the error).
    fn grammar(&self) -> Result<TopLevelGrammar, GbnfError> {
        let mut schema = match self {
            OutputFormat::JsonObject => json!({"type": "object"}),
            OutputFormat::JsonSchema(schema) => schema.clone(),
            OutputFormat::Regex(regex) => return Ok(TopLevelGrammar::from_regex(regex)),
            OutputFormat::Choice(choices) => {
                let alternatives: Vec<String> = choices.iter().map(|c| escape_regex(c)).collect();
                return Ok(TopLevelGrammar::from_regex(&format!("({})", alternatives.join("|"))));
            }
            OutputFormat::Grammar(gbnf) if gbnf::is_gbnf(gbnf) => {
                return Ok(TopLevelGrammar::from_lark(gbnf::to_lark(gbnf)?));
            }
            OutputFormat::Grammar(lark) => return Ok(TopLevelGrammar::from_lark(lark.clone())),
        };
        if let Value::Object(map) = &mut schema {
            map.entry("x-guidance").or_insert_with(
                || json!({"whitespace_flexible": false, "key_separator": ": ", "item_separator": ", "}),
            );
        }
        Ok(TopLevelGrammar::from_json_schema(schema))
    }
}

/// `text` as a regular expression that matches it literally.
fn escape_regex(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if r"\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A replica's vocabulary, indexed for constrained decoding. Made once, on first use.
pub struct Grammars {
    factory: ParserFactory,
    eos_tokens: Vec<u32>,
    /// The end of sequence as llguidance knows it (the first of `eos_tokens`).
    eos: u32,
}

impl std::fmt::Debug for Grammars {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grammars").field("eos_tokens", &self.eos_tokens).finish_non_exhaustive()
    }
}

impl Grammars {
    /// Indexes every token of `engine`'s model.
    pub fn of(engine: &dyn LmEngine) -> Result<Grammars, RuntimeError> {
        let info = engine.info();
        let pieces = (0..info.vocab_size as u32).map(|t| engine.token_bytes(t)).collect();
        Grammars::new(pieces, info.eos_tokens.clone())
    }

    /// Indexes `pieces` (each token's bytes by id); `eos_tokens` end a sequence.
    pub fn new(mut pieces: Vec<Vec<u8>>, eos_tokens: Vec<u32>) -> Result<Grammars, RuntimeError> {
        let unusable = |e: String| RuntimeError::Inference(format!("structured outputs: {e}"));
        let eos = *eos_tokens.first().ok_or_else(|| unusable("the model names no end-of-sequence token".into()))?;
        // The end of sequence is a special token (the marker byte first): no JSON contains it.
        for &token in &eos_tokens {
            if let Some(piece) = pieces.get_mut(token as usize) {
                *piece = [&[TokTrie::SPECIAL_TOKEN_MARKER], format!("<eos {token}>").as_bytes()].concat();
            }
        }
        let info = TokRxInfo::new(pieces.len() as u32, eos);
        let env: TokEnv = Arc::new(ApproximateTokEnv::new(TokTrie::from(&info, &pieces)));
        let mut factory = ParserFactory::new_simple(&env).map_err(|e| unusable(e.to_string()))?;
        factory.quiet();
        Ok(Grammars { factory, eos_tokens, eos })
    }

    /// A constraint for one sequence; a schema, regex or grammar llguidance cannot compile is
    /// the caller's error.
    pub fn constrain(&self, format: &OutputFormat) -> Result<OutputConstraint, RuntimeError> {
        let what = match format {
            OutputFormat::JsonObject | OutputFormat::JsonSchema(_) => "the JSON schema",
            OutputFormat::Regex(_) => "the regular expression",
            OutputFormat::Choice(_) => "the choices",
            OutputFormat::Grammar(_) => "the grammar",
        };
        let refused = |e: &dyn std::fmt::Display| {
            RuntimeError::InvalidInput(format!("structured output: {what} cannot be enforced: {e}"))
        };
        let grammar = format.grammar().map_err(|e| refused(&e))?;
        let parser = self.factory.create_parser(grammar).map_err(|e| refused(&e))?;
        Ok(OutputConstraint { matcher: Matcher::new(Ok(parser)), eos_tokens: self.eos_tokens.clone(), eos: self.eos })
    }
}

/// Structured output for one sequence: what its answer may continue with.
pub struct OutputConstraint {
    matcher: Matcher,
    eos_tokens: Vec<u32>,
    eos: u32,
}

impl std::fmt::Debug for OutputConstraint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutputConstraint").field("stopped", &self.matcher.is_stopped()).finish_non_exhaustive()
    }
}

impl OutputConstraint {
    /// Sets the logits of the tokens that cannot come next to -inf. The end of sequence stays
    /// only once the answer is complete — or when nothing else can go on (the grammar engine
    /// failed, or its step budget ran out), so that the sequence ends rather than loops.
    pub fn mask(&mut self, logits: &mut [f32]) {
        let allowed = match self.matcher.compute_mask() {
            Ok(allowed) => allowed,
            Err(e) => {
                tracing::warn!(error = %e, "structured output: no token can continue; ending the answer");
                logits.fill(f32::NEG_INFINITY);
                self.set_eos(logits, 0.0);
                return;
            }
        };
        let eos = allowed.is_allowed(self.eos);
        for (id, logit) in logits.iter_mut().enumerate() {
            if !allowed.is_allowed(id as u32) {
                *logit = f32::NEG_INFINITY;
            }
        }
        self.set_eos(logits, f32::NEG_INFINITY);
        if eos || !logits.iter().any(|l| l.is_finite()) {
            self.set_eos(logits, 0.0);
        }
    }

    fn set_eos(&self, logits: &mut [f32], value: f32) {
        for &token in &self.eos_tokens {
            if let Some(logit) = logits.get_mut(token as usize) {
                *logit = value;
            }
        }
    }

    /// Moves past a sampled token (one [`OutputConstraint::mask`] allowed).
    pub fn accept(&mut self, token: u32) {
        let token = if self.eos_tokens.contains(&token) { self.eos } else { token };
        if let Err(e) = self.matcher.consume_token(token) {
            tracing::warn!(error = %e, token, "structured output: token refused by the grammar");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PIECES: [&str; 14] =
        ["{", "}", "\"", "name", "age", ":", ",", " ", "\n", "1", "2", "Bob", "true", "<|im_end|>"];
    const EOS: u32 = 13;

    fn grammars() -> Grammars {
        let mut pieces: Vec<Vec<u8>> = PIECES.iter().map(|s| s.as_bytes().to_vec()).collect();
        pieces[EOS as usize].clear(); // control tokens have no text
        Grammars::new(pieces, vec![EOS]).unwrap()
    }

    fn allowed(constraint: &mut OutputConstraint) -> Vec<&'static str> {
        let mut logits = vec![0.0; PIECES.len()];
        constraint.mask(&mut logits);
        logits.iter().zip(PIECES).filter(|(l, _)| l.is_finite()).map(|(_, p)| p).collect()
    }

    /// Feeds `text` piece by piece (each must be allowed), greedily longest first.
    fn feed(constraint: &mut OutputConstraint, text: &str) {
        let mut rest = text;
        while !rest.is_empty() {
            let allowed = allowed(constraint);
            let (id, piece) = PIECES
                .iter()
                .enumerate()
                .filter(|(_, p)| !p.is_empty() && rest.starts_with(*p) && allowed.contains(p))
                .max_by_key(|(_, p)| p.len())
                .unwrap_or_else(|| panic!("no allowed piece for {rest:?} (allowed {allowed:?})"));
            constraint.accept(id as u32);
            rest = &rest[piece.len()..];
        }
    }

    #[test]
    fn a_schema_leads_the_answer_and_the_end_comes_only_when_it_is_complete() {
        let schema = json!({
            "type": "object",
            "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
            "required": ["name", "age"],
            "additionalProperties": false
        });
        let mut constraint = grammars().constrain(&OutputFormat::JsonSchema(schema)).unwrap();
        assert_eq!(allowed(&mut constraint), vec!["{"]);
        feed(&mut constraint, "{\"name\": \"Bob\"");
        assert_eq!(allowed(&mut constraint), vec![","], "age is required; no whitespace but the layout's");
        feed(&mut constraint, ", \"age\": 12");
        assert!(!allowed(&mut constraint).contains(&"<|im_end|>"), "the object is still open");
        feed(&mut constraint, "}");
        assert_eq!(allowed(&mut constraint), vec!["<|im_end|>"], "only the end once the object is closed");
    }

    #[test]
    fn json_object_takes_any_keys_but_only_an_object() {
        let mut constraint = grammars().constrain(&OutputFormat::JsonObject).unwrap();
        assert_eq!(allowed(&mut constraint), vec!["{"]);
        feed(&mut constraint, "{\"Bob\": true, \"age\": {\"name\": 12}");
        assert!(!allowed(&mut constraint).contains(&"<|im_end|>"), "the outer object is still open");
        feed(&mut constraint, "}");
        assert_eq!(allowed(&mut constraint), vec!["<|im_end|>"]);
    }

    #[test]
    fn schemas_that_cannot_be_enforced_are_refused() {
        for format in [
            OutputFormat::JsonSchema(json!({"type": "strin"})),
            OutputFormat::JsonSchema(json!({"type": "string", "not": {"const": "a"}})),
            OutputFormat::Regex("(unclosed".into()),
            OutputFormat::Grammar("start: undefined_rule".into()),
        ] {
            let err = grammars().constrain(&format).unwrap_err();
            assert!(matches!(err, RuntimeError::InvalidInput(_)), "{format:?}: {err:?}");
        }
    }

    #[test]
    fn regexes_choices_and_grammars_lead_the_text() {
        let mut regex = grammars().constrain(&OutputFormat::Regex("(Bob|1+)!?".into())).unwrap();
        assert_eq!(allowed(&mut regex), vec!["1", "Bob"]);
        feed(&mut regex, "11");
        assert_eq!(allowed(&mut regex), vec!["1", "<|im_end|>"], "more ones, or the end (no `!` piece)");

        // Texts with regex characters are matched literally.
        let choices = OutputFormat::Choice(vec!["{\"age\"}".into(), "Bob".into()]);
        let mut choice = grammars().constrain(&choices).unwrap();
        assert_eq!(allowed(&mut choice), vec!["{", "Bob"]);
        feed(&mut choice, "{\"age");
        assert_eq!(allowed(&mut choice), vec!["\""]);
        feed(&mut choice, "\"}");
        assert_eq!(allowed(&mut choice), vec!["<|im_end|>"]);

        let lark =
            OutputFormat::Grammar("start: name \":\" \" \" NUMBER\nname: \"name\" | \"age\"\nNUMBER: /[12]+/".into());
        let mut grammar = grammars().constrain(&lark).unwrap();
        assert_eq!(allowed(&mut grammar), vec!["name", "age"]);
        feed(&mut grammar, "age: 21");
        assert!(allowed(&mut grammar).contains(&"<|im_end|>"));
    }

    #[test]
    fn gbnf_grammars_are_enforced_like_lark() {
        let gbnf = OutputFormat::Grammar(
            "root ::= field \":\" [ ]? num # llama.cpp syntax\nfield ::= \"name\" | \"age\"\nnum ::= [1-2]{1,3}".into(),
        );
        let mut grammar = grammars().constrain(&gbnf).unwrap();
        assert_eq!(allowed(&mut grammar), vec!["name", "age"]);
        feed(&mut grammar, "age:");
        assert_eq!(allowed(&mut grammar), vec![" ", "1", "2"]);
        feed(&mut grammar, " 212");
        assert_eq!(allowed(&mut grammar), vec!["<|im_end|>"], "at most three digits");

        // A JSON grammar in the style of llama.cpp's grammars/json.gbnf: nested groups over
        // several lines, classes with escapes, bounded repetition.
        let json = r#"
root   ::= object
value  ::= object | array | string | number | ("true" | "false" | "null") ws
object ::=
  "{" ws (
            string ":" ws value
    ("," ws string ":" ws value)*
  )? "}" ws
array  ::= "[" ws ( value ("," ws value)* )? "]" ws
string ::= "\"" ( [^"\\\x7F\x00-\x1F] | "\\" (["\\bfnrt] | "u" [0-9a-fA-F]{4}) )* "\"" ws
number ::= ("-"? ([0-9] | [1-9] [0-9]{0,15})) ("." [0-9]+)? ([eE] [-+]? [0-9] [1-9]{0,15})? ws
ws ::= | " " | "\n" [ \t]{0,20}
"#;
        let mut grammar = grammars().constrain(&OutputFormat::Grammar(json.into())).unwrap();
        assert_eq!(allowed(&mut grammar), vec!["{"]);
        feed(&mut grammar, "{\"name\": 12, \"Bob\":\n true}");
        assert!(allowed(&mut grammar).contains(&"<|im_end|>"), "the object is complete");

        let err = grammars().constrain(&OutputFormat::Grammar("root ::= nope".into())).err().unwrap();
        assert!(err.to_string().contains("GBNF line 1: rule 'nope' is used but not defined"), "{err}");
    }
}
