//! JSON mode (`response_format: {"type": "json_object"}`): decoding constrained so that the
//! output is one JSON object.
//!
//! [`JsonState`] is a byte-level JSON recognizer small enough to copy (the open containers are
//! bits of a `u64`, so objects and arrays nest at most [`MAX_DEPTH`] deep). Before each token
//! is sampled, [`JsonConstraint::mask`] runs every vocabulary token's bytes through a copy of
//! the state and sets the logits of those that would break the JSON to -inf; once the object
//! is closed only an end-of-sequence token remains. Whitespace between tokens is limited
//! ([`MAX_WHITESPACE`] bytes in a row), so that a model cannot pad forever. Multi-byte UTF-8 is
//! taken as is inside strings (tokens may split a character). Inside a string, where most of a
//! JSON answer's tokens fall, a token without quote, backslash or control bytes is allowed
//! without reading it ([`Vocabulary`] marks those once per replica).

use std::sync::Arc;

use super::LmEngine;

/// How deep objects and arrays may nest.
pub const MAX_DEPTH: u8 = 64;
/// The most whitespace bytes in a row between JSON tokens.
pub const MAX_WHITESPACE: u8 = 12;

/// Where the recognizer is inside a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Number {
    /// After `-`.
    Minus,
    /// After a leading `0`.
    Zero,
    /// Digits of the integer part.
    Int,
    /// After `.`.
    Dot,
    /// Digits of the fraction.
    Frac,
    /// After `e`/`E`.
    Exp,
    /// After the exponent's sign.
    ExpSign,
    /// Digits of the exponent.
    ExpDigits,
}

impl Number {
    /// Whether the number may end here.
    fn complete(self) -> bool {
        matches!(self, Number::Zero | Number::Int | Number::Frac | Number::ExpDigits)
    }

    fn next(self, b: u8) -> Option<Number> {
        use Number::*;
        Some(match (self, b) {
            (Minus, b'0') => Zero,
            (Minus, b'1'..=b'9') => Int,
            (Int, b'0'..=b'9') => Int,
            (Zero | Int, b'.') => Dot,
            (Dot | Frac, b'0'..=b'9') => Frac,
            (Zero | Int | Frac, b'e' | b'E') => Exp,
            (Exp, b'+' | b'-') => ExpSign,
            (Exp | ExpSign | ExpDigits, b'0'..=b'9') => ExpDigits,
            _ => return None,
        })
    }
}

/// What the recognizer expects next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lex {
    /// Nothing read yet: only `{` (after whitespace).
    Start,
    /// A value (after `:`, `[` or `,` in an array).
    Value,
    /// After `[`: a value or `]`.
    ValueOrClose,
    /// After `{`: a key or `}`.
    KeyOrClose,
    /// After `,` in an object: a key.
    Key,
    /// Inside a string; `key` says whether it is an object's key.
    Str {
        key: bool,
    },
    /// After a backslash in a string.
    Escape {
        key: bool,
    },
    /// Inside `\uXXXX`, with this many hex digits to go.
    Unicode {
        key: bool,
        left: u8,
    },
    /// After a key: `:`.
    Colon,
    /// After a value: `,` or the closing bracket of the open container.
    AfterValue,
    Num(Number),
    /// Inside `true`, `false` or `null`: the literal and how many bytes are read.
    Literal {
        word: u8,
        read: u8,
    },
    /// The object is closed: nothing more but the end of sequence.
    Done,
}

const WORDS: [&[u8]; 3] = [b"true", b"false", b"null"];

/// A JSON object read so far, byte by byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonState {
    lex: Lex,
    /// Bit `i` set: the container at depth `i` is an object (else an array).
    objects: u64,
    depth: u8,
    /// Whitespace bytes read in a row.
    whitespace: u8,
}

impl Default for JsonState {
    fn default() -> Self {
        JsonState { lex: Lex::Start, objects: 0, depth: 0, whitespace: 0 }
    }
}

impl JsonState {
    /// Whether a whole object was read.
    pub fn done(&self) -> bool {
        self.lex == Lex::Done
    }

    /// Inside a string, not in an escape: any plain string content keeps the state as it is.
    fn in_plain_string(&self) -> bool {
        matches!(self.lex, Lex::Str { .. })
    }

    /// The state after `bytes`, or `None` if they cannot continue a JSON object.
    pub fn feed(mut self, bytes: &[u8]) -> Option<JsonState> {
        for &b in bytes {
            self = self.byte(b)?;
        }
        Some(self)
    }

    fn in_object(&self) -> bool {
        self.depth > 0 && self.objects & (1 << (self.depth - 1)) != 0
    }

    fn open(mut self, object: bool) -> Option<JsonState> {
        if self.depth >= MAX_DEPTH {
            return None;
        }
        if object {
            self.objects |= 1 << self.depth;
        } else {
            self.objects &= !(1 << self.depth);
        }
        self.depth += 1;
        self.lex = if object { Lex::KeyOrClose } else { Lex::ValueOrClose };
        Some(self)
    }

    fn close(mut self, object: bool) -> Option<JsonState> {
        if self.depth == 0 || self.in_object() != object {
            return None;
        }
        self.depth -= 1;
        self.lex = if self.depth == 0 { Lex::Done } else { Lex::AfterValue };
        Some(self)
    }

    /// A value starting with `b` (in `Value` or `ValueOrClose`).
    fn value(mut self, b: u8) -> Option<JsonState> {
        self.lex = match b {
            b'{' => return self.open(true),
            b'[' => return self.open(false),
            b'"' => Lex::Str { key: false },
            b'-' => Lex::Num(Number::Minus),
            b'0' => Lex::Num(Number::Zero),
            b'1'..=b'9' => Lex::Num(Number::Int),
            b't' => Lex::Literal { word: 0, read: 1 },
            b'f' => Lex::Literal { word: 1, read: 1 },
            b'n' => Lex::Literal { word: 2, read: 1 },
            _ => return None,
        };
        Some(self)
    }

    fn byte(mut self, b: u8) -> Option<JsonState> {
        let whitespace = matches!(b, b' ' | b'\n' | b'\r' | b'\t');
        let between = matches!(
            self.lex,
            Lex::Start | Lex::Value | Lex::ValueOrClose | Lex::KeyOrClose | Lex::Key | Lex::Colon | Lex::AfterValue
        );
        if whitespace && between {
            self.whitespace += 1;
            return (self.whitespace <= MAX_WHITESPACE).then_some(self);
        }
        self.whitespace = 0;
        match self.lex {
            Lex::Start => (b == b'{').then(|| self.open(true)).flatten(),
            Lex::Value => self.value(b),
            Lex::ValueOrClose => match b {
                b']' => self.close(false),
                _ => self.value(b),
            },
            Lex::KeyOrClose | Lex::Key => match b {
                b'"' => Some(JsonState { lex: Lex::Str { key: true }, ..self }),
                b'}' if self.lex == Lex::KeyOrClose => self.close(true),
                _ => None,
            },
            Lex::Str { key } => {
                self.lex = match b {
                    b'"' if key => Lex::Colon,
                    b'"' => Lex::AfterValue,
                    b'\\' => Lex::Escape { key },
                    0..=0x1f => return None,
                    _ => Lex::Str { key },
                };
                Some(self)
            }
            Lex::Escape { key } => {
                self.lex = match b {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Lex::Str { key },
                    b'u' => Lex::Unicode { key, left: 4 },
                    _ => return None,
                };
                Some(self)
            }
            Lex::Unicode { key, left } => {
                if !b.is_ascii_hexdigit() {
                    return None;
                }
                self.lex = if left == 1 { Lex::Str { key } } else { Lex::Unicode { key, left: left - 1 } };
                Some(self)
            }
            Lex::Colon => (b == b':').then_some(JsonState { lex: Lex::Value, ..self }),
            Lex::AfterValue => match b {
                b',' => {
                    let lex = if self.in_object() { Lex::Key } else { Lex::Value };
                    Some(JsonState { lex, ..self })
                }
                b'}' => self.close(true),
                b']' => self.close(false),
                _ => None,
            },
            Lex::Num(n) => match n.next(b) {
                Some(next) => Some(JsonState { lex: Lex::Num(next), ..self }),
                // The number ends; the byte is read after it.
                None if n.complete() => JsonState { lex: Lex::AfterValue, ..self }.byte(b),
                None => None,
            },
            Lex::Literal { word, read } => {
                let text = WORDS[word as usize];
                if text.get(read as usize) != Some(&b) {
                    return None;
                }
                let read = read + 1;
                let lex = if read as usize == text.len() { Lex::AfterValue } else { Lex::Literal { word, read } };
                Some(JsonState { lex, ..self })
            }
            Lex::Done => None,
        }
    }
}

/// The vocabulary as JSON mode reads it: every token's bytes by id, and whether they are plain
/// string content (no quote, backslash or control byte). Made once per replica.
#[derive(Debug)]
pub struct Vocabulary {
    pieces: Vec<Vec<u8>>,
    plain: Vec<bool>,
}

impl Vocabulary {
    /// Every token of `engine`'s model.
    pub fn of(engine: &dyn LmEngine) -> Vocabulary {
        Vocabulary::new((0..engine.info().vocab_size as u32).map(|t| engine.token_bytes(t)).collect())
    }

    pub fn new(pieces: Vec<Vec<u8>>) -> Vocabulary {
        let plain = pieces
            .iter()
            .map(|bytes| !bytes.is_empty() && bytes.iter().all(|&b| b >= 0x20 && b != b'"' && b != b'\\'))
            .collect();
        Vocabulary { pieces, plain }
    }
}

/// JSON mode for one sequence: its recognizer, and the vocabulary to test tokens with.
#[derive(Debug, Clone)]
pub struct JsonConstraint {
    state: JsonState,
    vocabulary: Arc<Vocabulary>,
    eos_tokens: Vec<u32>,
}

impl JsonConstraint {
    pub fn new(vocabulary: Arc<Vocabulary>, eos_tokens: Vec<u32>) -> JsonConstraint {
        JsonConstraint { state: JsonState::default(), vocabulary, eos_tokens }
    }

    /// Sets the logits of the tokens that cannot come next to -inf: those whose bytes break
    /// the JSON, tokens without bytes, and the end of sequence until the object is closed.
    pub fn mask(&self, logits: &mut [f32]) {
        let done = self.state.done();
        let in_string = self.state.in_plain_string();
        // Which first bytes can come next: most tokens are ruled out by their first byte alone.
        let first: [bool; 256] = std::array::from_fn(|b| self.state.byte(b as u8).is_some());
        for (id, logit) in logits.iter_mut().enumerate() {
            let allowed = !done
                && match self.vocabulary.pieces.get(id) {
                    Some(_) if in_string && self.vocabulary.plain[id] => true,
                    Some(bytes) if !bytes.is_empty() => first[bytes[0] as usize] && self.state.feed(bytes).is_some(),
                    _ => false,
                };
            if !allowed {
                *logit = f32::NEG_INFINITY;
            }
        }
        // The end of sequence only once the object is closed, or if no token can go on (a
        // vocabulary without the byte needed), whatever its bytes.
        let set_eos = |logits: &mut [f32], value: f32| {
            for &eos in &self.eos_tokens {
                if let Some(logit) = logits.get_mut(eos as usize) {
                    *logit = value;
                }
            }
        };
        set_eos(logits, f32::NEG_INFINITY);
        if done || !logits.iter().any(|l| l.is_finite()) {
            set_eos(logits, 0.0);
        }
    }

    /// Moves past a sampled token (one [`JsonConstraint::mask`] allowed).
    pub fn accept(&mut self, token: u32) {
        if let Some(next) = self.vocabulary.pieces.get(token as usize).and_then(|bytes| self.state.feed(bytes)) {
            self.state = next;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reads(text: &str) -> Option<JsonState> {
        JsonState::default().feed(text.as_bytes())
    }

    #[test]
    fn whole_objects_are_done() {
        for text in [
            "{}",
            r#"{"a": 1}"#,
            r#" {"a": [1, -2.5e+3, 0, true, false, null, "x\"\u00e9"], "b": {"c": {}}}"#,
            "{\n  \"city\": \"Paris\",\n  \"n\": 0.5\n}",
            r#"{"é": "ü"}"#,
        ] {
            assert!(reads(text).is_some_and(|s| s.done()), "{text}");
        }
    }

    #[test]
    fn prefixes_go_on_and_mistakes_stop() {
        for prefix in [r#"{"a"#, r#"{"a": [1, 2"#, r#"{"a": tr"#, r#"{"a": -"#, r#"{"a": 1.5e"#, r#"{"a": "\u00"#] {
            assert!(reads(prefix).is_some_and(|s| !s.done()), "{prefix}");
        }
        for bad in [
            "[1]",
            "\"a\"",
            "{a: 1}",
            r#"{"a" 1}"#,
            r#"{"a": 01}"#,
            r#"{"a": 1,}"#,
            r#"{"a": [1}"#,
            r#"{"a": tru}"#,
            r#"{"a": "\x"}"#,
            "{\"a\": \"line\nbreak\"}",
            "{} {}",
            r#"{"a": 1.}"#,
        ] {
            assert!(reads(bad).is_none(), "{bad} should be refused");
        }
    }

    #[test]
    fn nesting_and_whitespace_are_bounded() {
        let deep = "[".repeat(MAX_DEPTH as usize);
        assert!(reads(&format!("{{\"a\":{}", &deep[1..])).is_some());
        assert!(reads(&format!("{{\"a\":{deep}")).is_none());
        assert!(reads(&format!("{{{}", " ".repeat(MAX_WHITESPACE as usize))).is_some());
        assert!(reads(&format!("{{{}", " ".repeat(MAX_WHITESPACE as usize + 1))).is_none());
    }

    #[test]
    fn the_mask_keeps_what_continues_and_the_end_only_when_done() {
        let pieces: Vec<Vec<u8>> =
            ["{", "}", "\"a\"", ":", " 1", "x", "", "<eos>"].iter().map(|s| s.as_bytes().to_vec()).collect();
        let mut json = JsonConstraint::new(Arc::new(Vocabulary::new(pieces)), vec![7]);
        let allowed = |json: &JsonConstraint| {
            let mut logits = vec![0.0; 8];
            json.mask(&mut logits);
            logits.iter().enumerate().filter(|(_, l)| l.is_finite()).map(|(i, _)| i).collect::<Vec<_>>()
        };
        assert_eq!(allowed(&json), vec![0]);
        json.accept(0);
        assert_eq!(allowed(&json), vec![1, 2]);
        for token in [2, 3, 4] {
            json.accept(token);
        }
        assert_eq!(allowed(&json), vec![1]);
        json.accept(1);
        assert_eq!(allowed(&json), vec![7], "only the end of sequence after the object");
    }

    #[test]
    fn inside_a_string_plain_tokens_pass_and_the_rest_is_read() {
        let pieces: Vec<Vec<u8>> =
            ["{", "\"k", "ab", "c\"", "\n", "\\", "<eos>"].iter().map(|s| s.as_bytes().to_vec()).collect();
        let mut json = JsonConstraint::new(Arc::new(Vocabulary::new(pieces)), vec![6]);
        json.accept(0);
        json.accept(1);
        let mut logits = vec![0.0; 7];
        json.mask(&mut logits);
        let allowed: Vec<usize> = logits.iter().enumerate().filter(|(_, l)| l.is_finite()).map(|(i, _)| i).collect();
        assert_eq!(allowed, vec![0, 2, 3, 5], "content, the closing quote, an escape; no raw newline");
    }
}
