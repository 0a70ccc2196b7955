//! Token pieces back to UTF-8 text, holding back partial characters and stop-sequence prefixes.
//!
//! A token is a run of bytes that need not end on a character boundary (byte-level BPE splits
//! "日" or an emoji over several tokens), and a stop sequence can span several tokens. A
//! [`TextStream`] gets one token's bytes at a time and hands out only text that is final:
//! complete characters that cannot turn into the beginning of a stop sequence.

/// What one pushed token released.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Pushed {
    /// Text that is now final (possibly empty).
    pub text: String,
    /// A stop sequence completed: generation should end; `text` is what came before it.
    pub stopped: bool,
}

/// Incremental detokenization with stop sequences, for one generated sequence.
#[derive(Debug)]
pub struct TextStream {
    stop: Vec<String>,
    /// Bytes of an incomplete UTF-8 character at the end of the input.
    partial: Vec<u8>,
    /// Decoded text held back because it may be the beginning of a stop sequence.
    held: String,
    /// A stop sequence completed; everything after it is dropped.
    stopped: bool,
}

impl TextStream {
    /// A stream that ends at the first of `stop` (empty strings are ignored).
    pub fn new(stop: Vec<String>) -> TextStream {
        let stop = stop.into_iter().filter(|s| !s.is_empty()).collect();
        TextStream { stop, partial: Vec::new(), held: String::new(), stopped: false }
    }

    /// Adds one token's bytes. Returns text that is now final: complete UTF-8 characters that
    /// cannot be the beginning of a stop sequence. When a stop sequence completes, `stopped`
    /// is true and `text` holds what came before it (the stop text and anything after it are
    /// dropped). After a stop, further pushes return nothing (still `stopped`).
    pub fn push(&mut self, bytes: &[u8]) -> Pushed {
        if self.stopped {
            return Pushed { text: String::new(), stopped: true };
        }
        self.partial.extend_from_slice(bytes);
        let decoded = decode_complete(&mut self.partial);
        self.held.push_str(&decoded);
        if let Some(at) = find_stop(&self.held, &self.stop) {
            self.held.truncate(at);
            self.partial.clear();
            self.stopped = true;
            return Pushed { text: std::mem::take(&mut self.held), stopped: true };
        }
        let keep = longest_stop_prefix_suffix(&self.held, &self.stop);
        let rest = self.held.split_off(self.held.len() - keep);
        Pushed { text: std::mem::replace(&mut self.held, rest), stopped: false }
    }

    /// End of generation: everything still held back (a partial stop-sequence prefix that
    /// never completed; an incomplete UTF-8 tail becomes U+FFFD). Nothing after a stop.
    pub fn finish(&mut self) -> String {
        if self.stopped {
            return String::new();
        }
        let mut text = std::mem::take(&mut self.held);
        text.push_str(&String::from_utf8_lossy(&self.partial));
        self.partial.clear();
        if let Some(at) = find_stop(&text, &self.stop) {
            text.truncate(at);
        }
        self.stopped = true;
        text
    }
}

/// Decodes the complete characters at the start of `bytes` (invalid sequences become
/// U+FFFD, as `String::from_utf8_lossy` does) and leaves only an incomplete trailing
/// character in `bytes`.
fn decode_complete(bytes: &mut Vec<u8>) -> String {
    let mut out = String::new();
    let mut start = 0;
    loop {
        match std::str::from_utf8(&bytes[start..]) {
            Ok(valid) => {
                out.push_str(valid);
                start = bytes.len();
                break;
            }
            Err(e) => {
                let valid_end = start + e.valid_up_to();
                out.push_str(&String::from_utf8_lossy(&bytes[start..valid_end]));
                match e.error_len() {
                    Some(invalid) => {
                        out.push(char::REPLACEMENT_CHARACTER);
                        start = valid_end + invalid;
                    }
                    None => {
                        start = valid_end;
                        break;
                    }
                }
            }
        }
    }
    bytes.drain(..start);
    out
}

/// The byte offset of the earliest stop sequence in `text`.
fn find_stop(text: &str, stop: &[String]) -> Option<usize> {
    stop.iter().filter_map(|s| text.find(s.as_str())).min()
}

/// The length in bytes of the longest end of `text` that is a proper beginning of one of
/// the stop sequences (text that must be held back until the next token decides).
fn longest_stop_prefix_suffix(text: &str, stop: &[String]) -> usize {
    let mut longest = 0;
    for s in stop {
        let max = (s.len() - 1).min(text.len());
        for len in (longest + 1..=max).rev() {
            let start = text.len() - len;
            if text.is_char_boundary(start)
                && s.is_char_boundary(len)
                && s.as_bytes()[..len] == text.as_bytes()[start..]
            {
                longest = len;
                break;
            }
        }
    }
    longest
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stops(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    /// Pushes each piece, collecting the text released, and whether (and at which push) a
    /// stop sequence completed; then the text of `finish` when none did.
    fn run(stop: &[&str], pieces: &[&[u8]]) -> (Vec<String>, Option<usize>, String) {
        let mut stream = TextStream::new(stops(stop));
        let mut texts = Vec::new();
        for (i, piece) in pieces.iter().enumerate() {
            let pushed = stream.push(piece);
            texts.push(pushed.text);
            if pushed.stopped {
                return (texts, Some(i), stream.finish());
            }
        }
        let rest = stream.finish();
        (texts, None, rest)
    }

    #[test]
    fn plain_text_passes_through() {
        let (texts, stopped, rest) = run(&[], &[b"Hello", b", ", b"world"]);
        assert_eq!((texts, stopped, rest), (stops(&["Hello", ", ", "world"]), None, String::new()));
    }

    #[test]
    fn multi_byte_characters_split_across_tokens() {
        let e_acute = "é".as_bytes();
        let (texts, _, _) = run(&[], &[&e_acute[..1], &e_acute[1..], b"!"]);
        assert_eq!(texts, stops(&["", "é", "!"]));
        let nihon = "日本".as_bytes(); // 6 bytes
        let (texts, _, _) = run(&[], &[&nihon[..2], &nihon[2..4], &nihon[4..]]);
        assert_eq!(texts, stops(&["", "日", "本"]));
        let emoji = "🦀".as_bytes();
        let (texts, _, _) = run(&[], &[&emoji[..1], &emoji[1..2], &emoji[2..3], &emoji[3..]]);
        assert_eq!(texts, stops(&["", "", "", "🦀"]));
    }

    #[test]
    fn stop_sequence_spanning_several_tokens() {
        let (texts, stopped, rest) = run(&["<|end|>"], &[b"Paris", b".<|", b"en", b"d|>", b"ignored"]);
        assert_eq!(texts, stops(&["Paris", ".", "", ""]));
        assert_eq!(stopped, Some(3));
        assert_eq!(rest, "");
    }

    #[test]
    fn text_after_a_stop_in_the_same_token_is_dropped() {
        let (texts, stopped, _) = run(&["\n\n"], &[b"one", b"\n", b"\ntwo"]);
        assert_eq!((texts, stopped), (stops(&["one", "", ""]), Some(2)));
        let (texts, stopped, _) = run(&["END"], &[b"abcENDdef"]);
        assert_eq!((texts, stopped), (stops(&["abc"]), Some(0)));
    }

    #[test]
    fn a_prefix_that_is_not_a_stop_is_released_later() {
        let (texts, stopped, rest) = run(&["STOP"], &[b"a ST", b"OR", b"E", b" ST"]);
        assert_eq!(texts, stops(&["a ", "STOR", "E", " "]));
        assert_eq!(stopped, None);
        assert_eq!(rest, "ST", "a prefix still held at the end comes out of finish");
    }

    #[test]
    fn several_stop_sequences_the_earliest_wins() {
        let (texts, stopped, _) = run(&["world", "lo, w"], &[b"Hel", b"lo, world"]);
        // "l" may begin "lo, w": held back, then released as the text before that stop.
        assert_eq!((texts, stopped), (stops(&["He", "l"]), Some(1)));
        let (texts, stopped, _) = run(&["xyz", "abc", ""], &[b"--ab", b"c--xyz"]);
        assert_eq!((texts, stopped), (stops(&["--", ""]), Some(1)));
        // "abc" may begin "abcd" (and its "c" may begin "cz"): held back; "z" completes "cz".
        let mut stream = TextStream::new(stops(&["abcd", "cz"]));
        assert_eq!(stream.push(b"xabc"), Pushed { text: "x".into(), stopped: false });
        assert_eq!(stream.push(b"z"), Pushed { text: "ab".into(), stopped: true });
    }

    #[test]
    fn stop_at_the_very_start() {
        let (texts, stopped, _) = run(&["Hello"], &[b"Hello world"]);
        assert_eq!((texts, stopped), (stops(&[""]), Some(0)));
        let mut stream = TextStream::new(stops(&["<"]));
        assert_eq!(stream.push(b"<"), Pushed { text: String::new(), stopped: true });
        assert_eq!(stream.push(b"more"), Pushed { text: String::new(), stopped: true });
        assert_eq!(stream.finish(), "");
    }

    #[test]
    fn stop_sequence_with_multi_byte_characters() {
        let stop = "。終";
        let bytes = "答え。終わり".as_bytes();
        let pieces: Vec<&[u8]> = bytes.chunks(1).collect();
        let (texts, stopped, _) = run(&[stop], &pieces);
        assert_eq!(texts.concat(), "答え");
        assert!(stopped.is_some());
    }

    #[test]
    fn invalid_bytes_become_replacement_characters() {
        let (texts, _, rest) = run(&[], &[b"a\xffb", b"\xe6\x97", b"c", b"\xe6"]);
        assert_eq!(texts, stops(&["a\u{fffd}b", "", "\u{fffd}c", ""]));
        assert_eq!(rest, "\u{fffd}", "an incomplete tail at the end");
        let (texts, _, rest) = run(&[], &[b"\x80\x80", "é".as_bytes()]);
        assert_eq!((texts, rest), (stops(&["\u{fffd}\u{fffd}", "é"]), String::new()));
    }

    #[test]
    fn empty_stop_strings_are_ignored() {
        let (texts, stopped, _) = run(&[""], &[b"abc"]);
        assert_eq!((texts, stopped), (stops(&["abc"]), None));
    }
}
