//! llama.cpp's GBNF grammars translated to the Lark syntax llguidance reads, so that a grammar
//! for structured outputs may be written in either (vLLM takes both too).
//!
//! GBNF, as llama.cpp's grammar parser reads it: rules `name ::= alternatives`, `root` the
//! start; literals `"…"` and character classes `[a-z]`, `[^"\\]` with the escapes `\n \r \t
//! \\ \" \[ \] \xHH \uHHHH \UHHHHHHHH`; `.` any character; grouping `( )`; `|`; the suffixes
//! `* + ?` and `{m}`, `{m,}`, `{m,n}`, `{,n}`; comments from `#` to the end of the line. A
//! rule ends at the end of its line, except right after `::=` or `|` and inside parentheses.
//! Each rule becomes one Lark rule on one line: literals as JSON strings, classes as regular
//! expressions, `root` as `start`, other names lowercased (Lark rule names are lowercase).

use std::collections::HashMap;

/// Why a GBNF grammar cannot be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("GBNF line {line}: {message}")]
pub struct GbnfError {
    pub line: usize,
    pub message: String,
}

/// Whether `grammar` is GBNF rather than Lark: one of its lines defines a rule with `::=`
/// (Lark writes `name: …`).
pub fn is_gbnf(grammar: &str) -> bool {
    grammar.lines().any(|line| {
        let line = line.trim_start();
        let name_end = line.find(|c: char| !is_name_char(c)).unwrap_or(line.len());
        name_end > 0 && line[name_end..].trim_start().starts_with("::=")
    })
}

/// The Lark text of the GBNF `grammar`.
pub fn to_lark(grammar: &str) -> Result<String, GbnfError> {
    let mut reader =
        Reader { chars: grammar.chars().collect(), pos: 0, line: 1, names: HashMap::new(), used: Vec::new() };
    let mut rules: Vec<(String, usize, String)> = Vec::new();
    reader.space(true);
    while !reader.at_end() {
        let line = reader.line;
        let name = reader.name()?;
        reader.space(false);
        reader.expect("::=")?;
        reader.space(true);
        let body = reader.alternatives(false)?;
        if rules.iter().any(|(defined, _, _)| *defined == name) {
            return Err(reader.error(format!("rule '{name}' is defined twice")));
        }
        rules.push((name, line, body));
        reader.space(false);
        if !reader.at_end() && reader.peek() != Some('\n') && reader.peek() != Some('\r') {
            return Err(reader.error(format!("unexpected '{}' after the rule", reader.peek().unwrap_or(' '))));
        }
        reader.space(true);
    }
    if !rules.iter().any(|(name, _, _)| name == "root") {
        return Err(GbnfError { line: 1, message: "the grammar has no 'root' rule".into() });
    }
    if let Some((name, line)) = reader.used.iter().find(|(used, _)| !rules.iter().any(|(name, _, _)| name == used)) {
        return Err(GbnfError { line: *line, message: format!("rule '{name}' is used but not defined") });
    }
    let mut lark = String::new();
    for (name, _, body) in &rules {
        let name = reader.lark_name(name);
        lark.push_str(&format!("{name}: {body}\n"));
    }
    Ok(lark)
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

/// Reads GBNF and writes the Lark of each part as it goes.
struct Reader {
    chars: Vec<char>,
    pos: usize,
    line: usize,
    /// GBNF rule names and their Lark names.
    names: HashMap<String, String>,
    /// Rules referred to, with the line of the first use.
    used: Vec<(String, usize)>,
}

impl Reader {
    fn at_end(&self) -> bool {
        self.pos >= self.chars.len()
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += 1;
        if c == '\n' {
            self.line += 1;
        }
        Some(c)
    }

    fn error(&self, message: impl Into<String>) -> GbnfError {
        GbnfError { line: self.line, message: message.into() }
    }

    fn expect(&mut self, text: &str) -> Result<(), GbnfError> {
        for expected in text.chars() {
            if self.peek() != Some(expected) {
                return Err(self.error(format!("expected '{text}'")));
            }
            self.next();
        }
        Ok(())
    }

    /// Skips blanks and comments, and line ends when `newlines`.
    fn space(&mut self, newlines: bool) {
        while let Some(c) = self.peek() {
            match c {
                ' ' | '\t' => {
                    self.next();
                }
                '#' => {
                    while self.peek().is_some_and(|c| c != '\n') {
                        self.next();
                    }
                }
                '\r' | '\n' if newlines => {
                    self.next();
                }
                _ => break,
            }
        }
    }

    fn name(&mut self) -> Result<String, GbnfError> {
        let start = self.pos;
        while self.peek().is_some_and(is_name_char) {
            self.next();
        }
        if self.pos == start {
            return Err(self.error(format!("expected a rule name, found '{}'", self.peek().unwrap_or(' '))));
        }
        Ok(self.chars[start..self.pos].iter().collect())
    }

    /// The Lark name of the GBNF rule `name`: `root` is `start`; others lowercased, starting
    /// with a letter and made unique.
    fn lark_name(&mut self, name: &str) -> String {
        if let Some(lark) = self.names.get(name) {
            return lark.clone();
        }
        let base = if name == "root" {
            "start".to_owned()
        } else {
            let lower = name.to_ascii_lowercase().replace('_', "-");
            if lower.starts_with(|c: char| c.is_ascii_lowercase()) { lower } else { format!("r-{lower}") }
        };
        let mut lark = base.clone();
        let mut n = 1;
        while (lark == "start" && name != "root") || self.names.values().any(|taken| *taken == lark) {
            n += 1;
            lark = format!("{base}-{n}");
        }
        self.names.insert(name.to_owned(), lark.clone());
        lark
    }

    /// `a | b | …`; inside parentheses (`nested`) line ends are blanks.
    fn alternatives(&mut self, nested: bool) -> Result<String, GbnfError> {
        let mut out = self.sequence(nested)?;
        while self.peek() == Some('|') {
            self.next();
            self.space(true);
            out.push_str(" | ");
            out.push_str(&self.sequence(nested)?);
        }
        Ok(out)
    }

    /// Items one after another, each with its suffixes.
    fn sequence(&mut self, nested: bool) -> Result<String, GbnfError> {
        let mut items: Vec<String> = Vec::new();
        loop {
            let item = match self.peek() {
                None | Some('|' | ')' | '\n' | '\r') => break,
                Some('"') => self.literal()?,
                Some('[') => self.class()?,
                Some('.') => {
                    self.next();
                    r"/[\x{0}-\x{10FFFF}]/".to_owned()
                }
                Some('(') => {
                    self.next();
                    self.space(true);
                    let inner = self.alternatives(true)?;
                    self.space(true);
                    self.expect(")")?;
                    format!("({inner})")
                }
                Some(c) if is_name_char(c) => {
                    let line = self.line;
                    let name = self.name()?;
                    if !self.used.iter().any(|(used, _)| *used == name) {
                        self.used.push((name.clone(), line));
                    }
                    self.lark_name(&name)
                }
                Some(c) => return Err(self.error(format!("unexpected '{c}'"))),
            };
            self.space(nested);
            let suffixed = self.suffixes(item, nested)?;
            items.push(suffixed);
        }
        // An empty alternative matches the empty text.
        Ok(if items.is_empty() { "\"\"".to_owned() } else { items.join(" ") })
    }

    /// `item` with any `*`, `+`, `?` and `{…}` after it.
    fn suffixes(&mut self, mut item: String, nested: bool) -> Result<String, GbnfError> {
        loop {
            match self.peek() {
                Some(op @ ('*' | '+' | '?')) => {
                    self.next();
                    item = format!("({item}){op}");
                }
                Some('{') => {
                    self.next();
                    let mut bounds = String::new();
                    while let Some(c) = self.peek().filter(|c| c.is_ascii_digit() || *c == ',' || *c == ' ') {
                        self.next();
                        if c != ' ' {
                            bounds.push(c);
                        }
                    }
                    self.expect("}")?;
                    let (min, max) = bounds.split_once(',').unwrap_or((&bounds, &bounds));
                    let valid = |n: &str| n.is_empty() || n.parse::<u32>().is_ok();
                    if !valid(min) || !valid(max) || (min.is_empty() && max.is_empty()) {
                        return Err(self.error(format!("'{{{bounds}}}' is not a repetition")));
                    }
                    let min = if min.is_empty() { "0" } else { min };
                    item = if bounds.contains(',') {
                        format!("({item}){{{min},{max}}}")
                    } else {
                        format!("({item}){{{min}}}")
                    };
                }
                _ => return Ok(item),
            }
            self.space(nested);
        }
    }

    /// One character of a literal or class, escapes decoded.
    fn char(&mut self, what: &str) -> Result<char, GbnfError> {
        let c = self.next().ok_or_else(|| self.error(format!("the {what} is not closed")))?;
        if c != '\\' {
            return Ok(c);
        }
        let escaped = self.next().ok_or_else(|| self.error(format!("the {what} is not closed")))?;
        let digits = match escaped {
            'n' => return Ok('\n'),
            'r' => return Ok('\r'),
            't' => return Ok('\t'),
            '\\' | '"' | '[' | ']' | '-' | '^' => return Ok(escaped),
            'x' => 2,
            'u' => 4,
            'U' => 8,
            other => return Err(self.error(format!("unknown escape '\\{other}'"))),
        };
        let mut value = 0u32;
        for _ in 0..digits {
            let digit = self.next().and_then(|d| d.to_digit(16)).ok_or_else(|| self.error("bad hexadecimal escape"))?;
            value = value * 16 + digit;
        }
        char::from_u32(value).ok_or_else(|| self.error(format!("\\{escaped} escape {value:#x} is not a character")))
    }

    /// `"…"` as a JSON string (the string syntax of llguidance's Lark).
    fn literal(&mut self) -> Result<String, GbnfError> {
        self.expect("\"")?;
        let mut out = String::from('"');
        loop {
            if self.peek() == Some('"') {
                self.next();
                break;
            }
            match self.char("literal")? {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                c if (c as u32) < 0x20 || c == '\x7f' => out.push_str(&format!("\\u{:04x}", c as u32)),
                c => out.push(c),
            }
        }
        out.push('"');
        Ok(out)
    }

    /// `[…]` as a regular expression; every character not a letter or digit is written as a
    /// `\x{…}` escape, so nothing in it is special to the regex or to Lark's `/…/`.
    fn class(&mut self) -> Result<String, GbnfError> {
        self.expect("[")?;
        let mut out = String::from("/[");
        if self.peek() == Some('^') {
            self.next();
            out.push('^');
        }
        let mut empty = true;
        while self.peek() != Some(']') {
            let first = self.char("character class")?;
            out.push_str(&regex_char(first));
            if self.peek() == Some('-') && self.chars.get(self.pos + 1) != Some(&']') {
                self.next();
                let last = self.char("character class")?;
                if last < first {
                    return Err(self.error(format!("the range {first:?}-{last:?} is reversed")));
                }
                out.push('-');
                out.push_str(&regex_char(last));
            }
            empty = false;
        }
        self.next();
        if empty {
            return Err(self.error("empty character class"));
        }
        out.push_str("]/");
        Ok(out)
    }
}

fn regex_char(c: char) -> String {
    if c.is_ascii_alphanumeric() { c.to_string() } else { format!("\\x{{{:x}}}", c as u32) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gbnf_is_told_from_lark() {
        assert!(is_gbnf("root ::= \"a\""));
        assert!(is_gbnf("# comment\n  my-rule::= x\n"));
        assert!(!is_gbnf("start: \"a\" | b\nb: /x/"));
        assert!(!is_gbnf("start: \"::=\""));
    }

    #[test]
    fn rules_literals_classes_and_suffixes_translate() {
        let gbnf = r#"
# a list of answers
root   ::= answer ("," ws answer){0,3} "\n"
answer ::= ("yes" | "no" | Maybe_Not)? [a-z0-9_]+ [^"\\\x7F] .
Maybe_Not ::=
  "maybe\t\"not\"" |
  ("\u00e9"{2}
   x*)
ws ::= [ \t\n]*
x ::= "x"{1,}
"#;
        let lark = to_lark(gbnf).unwrap();
        let lines: Vec<&str> = lark.lines().collect();
        assert_eq!(
            lines,
            [
                r#"start: answer (("," ws answer)){0,3} "\u000a""#,
                r#"answer: (("yes" | "no" | maybe-not))? (/[a-z0-9\x{5f}]/)+ /[^\x{22}\x{5c}\x{7f}]/ /[\x{0}-\x{10FFFF}]/"#,
                r#"maybe-not: "maybe\u0009\"not\"" | (("é"){2} (x)*)"#,
                r#"ws: (/[\x{20}\x{9}\x{a}]/)*"#,
                r#"x: ("x"){1,}"#,
            ]
        );
    }

    #[test]
    fn mistakes_name_their_line() {
        for (gbnf, line, part) in [
            ("root ::= a\n", 1, "'a' is used but not defined"),
            ("a ::= \"x\"\n", 1, "no 'root' rule"),
            ("root ::= \"x\"\nroot ::= \"y\"", 2, "defined twice"),
            ("root ::= \"x\n", 2, "not closed"),
            ("root ::= [z-a]", 1, "reversed"),
            ("root ::= \"x\" )", 1, "unexpected ')'"),
            ("root ::= (\"x\"", 1, "expected ')'"),
            ("\nroot = \"x\"", 2, "expected '::='"),
            ("root ::= \"\\q\"", 1, "unknown escape"),
            ("root ::= \"x\"{a}", 1, "expected '}'"),
        ] {
            let err = to_lark(gbnf).unwrap_err();
            assert_eq!(err.line, line, "{gbnf:?}: {err}");
            assert!(err.message.contains(part), "{gbnf:?}: {err}");
        }
    }
}
