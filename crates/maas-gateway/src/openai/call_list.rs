//! The list of calls that `tool_choice: "required"` makes the model write,
//! `[{"name": …, "parameters": …}, …]`, read as it streams: each call's name as soon as it is
//! complete, its arguments piece by piece, as vLLM streams them.
//!
//! The reader follows the JSON structure byte by byte (keys, strings, nesting); it does not
//! validate, the grammar has done that. A call's arguments are the `parameters` value exactly as
//! the model wrote it, so a streamed answer and a whole one carry the same text.

/// One call of the list.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ListedCall {
    /// The name, once its string is complete.
    pub name: Option<String>,
    /// The `parameters` value so far (all of it once `complete`).
    pub arguments: String,
    /// The call's object is closed.
    pub complete: bool,
}

/// Where the reader is inside the current call object.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
enum Slot {
    /// Before a key, or between a value and the next `,`.
    #[default]
    Other,
    /// Inside a key's string.
    Key,
    /// Between a key and its value: the key was `name` or `parameters`.
    AfterKey(Field),
    /// Inside the `name` string.
    Name,
    /// Inside the `parameters` value.
    Arguments,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Field {
    Name,
    Parameters,
    Other,
}

/// Reads a call list as it grows; see the module docs.
#[derive(Debug, Default)]
pub struct CallList {
    calls: Vec<ListedCall>,
    /// Nesting: 1 inside the list, 2 inside a call object, more inside its values.
    depth: usize,
    in_string: bool,
    escaped: bool,
    slot: Slot,
    /// The raw text of the key or name string being read.
    raw: String,
    /// The list's closing bracket was read.
    closed: bool,
}

impl CallList {
    /// The calls read so far.
    pub fn calls(&self) -> &[ListedCall] {
        &self.calls
    }

    /// The whole list was read: every call complete and the list closed.
    pub fn closed(&self) -> bool {
        self.closed
    }

    /// Reads the next piece of the answer.
    pub fn push(&mut self, text: &str) {
        for c in text.chars() {
            self.read(c);
        }
    }

    fn read(&mut self, c: char) {
        if self.slot == Slot::Arguments {
            // The value ends at the call's own `,` or `}`, outside any string or nesting.
            let ends = !self.in_string && self.depth == 2 && matches!(c, ',' | '}');
            if !ends {
                self.argument(c);
                return;
            }
            self.slot = Slot::Other;
        }
        if self.in_string {
            self.track(c);
            if !self.in_string {
                self.string_ended();
            } else if matches!(self.slot, Slot::Key | Slot::Name) {
                self.raw.push(c);
            }
            return;
        }
        if self.depth == 2 && self.slot == Slot::AfterKey(Field::Parameters) && !c.is_whitespace() && c != ':' {
            // The first character of the arguments.
            self.slot = Slot::Arguments;
            self.argument(c);
            return;
        }
        match (self.depth, c) {
            (1, '{') => self.calls.push(ListedCall::default()),
            (2, '}') => {
                if let Some(call) = self.calls.last_mut() {
                    call.complete = true;
                }
            }
            (1, ']') => self.closed = true,
            (2, '"') => {
                self.slot = match self.slot {
                    Slot::AfterKey(Field::Name) => Slot::Name,
                    Slot::AfterKey(_) => Slot::Other,
                    _ => Slot::Key,
                };
                self.raw.clear();
            }
            (2, ',') => self.slot = Slot::Other,
            _ => {}
        }
        self.track(c);
    }

    /// A character of the current call's arguments.
    fn argument(&mut self, c: char) {
        self.track(c);
        if let Some(call) = self.calls.last_mut() {
            call.arguments.push(c);
        }
    }

    /// Follows strings and nesting.
    fn track(&mut self, c: char) {
        if self.in_string {
            if self.escaped {
                self.escaped = false;
            } else if c == '\\' {
                self.escaped = true;
            } else if c == '"' {
                self.in_string = false;
            }
            return;
        }
        match c {
            '"' => self.in_string = true,
            '{' | '[' => self.depth += 1,
            '}' | ']' => self.depth = self.depth.saturating_sub(1),
            _ => {}
        }
    }

    /// A string directly inside a call object ended: a key, or the name.
    fn string_ended(&mut self) {
        let text = || serde_json::from_str::<String>(&format!("\"{}\"", self.raw)).ok();
        match self.slot {
            Slot::Key => {
                let field = match text().as_deref() {
                    Some("name") => Field::Name,
                    Some("parameters" | "arguments") => Field::Parameters,
                    _ => Field::Other,
                };
                self.slot = Slot::AfterKey(field);
            }
            Slot::Name => {
                let name = text();
                if let Some(call) = self.calls.last_mut() {
                    call.name = name;
                }
                self.slot = Slot::Other;
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(pieces: &[&str]) -> CallList {
        let mut list = CallList::default();
        for piece in pieces {
            list.push(piece);
        }
        list
    }

    #[test]
    fn names_and_arguments_come_out_as_they_are_written() {
        let mut list = CallList::default();
        list.push(r#"[{"name": "get_wea"#);
        assert_eq!(list.calls(), [ListedCall::default()], "the name is not complete yet");
        list.push(r#"ther", "parameters": {"city": "Pa"#);
        assert_eq!(list.calls()[0].name.as_deref(), Some("get_weather"));
        assert_eq!(list.calls()[0].arguments, r#"{"city": "Pa"#);
        list.push(r#"ris, {TX}", "n": [1, {"a": "}"}]}}, {"name": "get_time", "parameters": {}}]"#);
        assert!(list.closed());
        assert_eq!(
            list.calls(),
            [
                ListedCall {
                    name: Some("get_weather".into()),
                    arguments: r#"{"city": "Paris, {TX}", "n": [1, {"a": "}"}]}"#.into(),
                    complete: true
                },
                ListedCall { name: Some("get_time".into()), arguments: "{}".into(), complete: true },
            ]
        );
    }

    #[test]
    fn any_split_reads_the_same() {
        let text = r#"[{"name": "a\"b", "parameters": {"q": "x\\\"y"}}, {"parameters": {"k": 1}, "name": "c"}]"#;
        let whole = read(&[text]);
        assert_eq!(whole.calls()[0].name.as_deref(), Some("a\"b"), "escapes in names are read");
        assert_eq!(whole.calls()[0].arguments, r#"{"q": "x\\\"y"}"#);
        assert_eq!(
            (whole.calls()[1].name.as_deref(), whole.calls()[1].arguments.as_str()),
            (Some("c"), r#"{"k": 1}"#),
            "the arguments may come before the name"
        );
        let chars: Vec<String> = text.chars().map(String::from).collect();
        let one_by_one = read(&chars.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(one_by_one.calls(), whole.calls());
        assert!(one_by_one.closed());
    }

    #[test]
    fn a_cut_short_list_is_not_closed() {
        let list = read(&[r#"[{"name": "f", "parameters": {"a": [1, 2"#]);
        assert!(!list.closed());
        assert!(!list.calls()[0].complete);
        assert_eq!(list.calls()[0].arguments, r#"{"a": [1, 2"#);
    }
}
