//! Turns a sequence's token pieces into text a client can be sent: whole
//! UTF-8 characters only (a token may end mid-character), and never any
//! part of a stop string (text that could be the start of one is held back
//! until it is known not to be).

/// The text side of one generation.
#[derive(Debug, Default)]
pub struct Output {
    stop: Vec<String>,
    /// Bytes of an incomplete UTF-8 character.
    partial: Vec<u8>,
    /// Decoded text not sent yet because a stop string may begin in it.
    held: String,
}

/// What one token added.
#[derive(Debug, PartialEq, Eq)]
pub struct Step {
    /// Text to send now (may be empty).
    pub text: String,
    /// A stop string was reached: generation ends, nothing after it is sent.
    pub stopped: bool,
}

impl Output {
    /// Output that ends at the first of `stop`.
    pub fn new(stop: Vec<String>) -> Self {
        Output {
            stop,
            ..Output::default()
        }
    }

    /// Adds one token's bytes.
    pub fn push(&mut self, piece: &[u8]) -> Step {
        self.partial.extend_from_slice(piece);
        let complete = match std::str::from_utf8(&self.partial) {
            Ok(_) => self.partial.len(),
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            // Invalid bytes can never become valid: decode them lossily.
            Err(_) => self.partial.len(),
        };
        let bytes: Vec<u8> = self.partial.drain(..complete).collect();
        self.held.push_str(&String::from_utf8_lossy(&bytes));

        if let Some(at) = self.first_stop() {
            self.held.truncate(at);
            self.partial.clear();
            return Step {
                text: std::mem::take(&mut self.held),
                stopped: true,
            };
        }
        let keep = self.longest_stop_prefix_suffix();
        let send = self.held.len() - keep;
        let text = self.held[..send].to_owned();
        self.held.drain(..send);
        Step {
            text,
            stopped: false,
        }
    }

    /// Everything still held back, when generation ends for another reason.
    pub fn flush(&mut self) -> String {
        let mut text = std::mem::take(&mut self.held);
        text.push_str(&String::from_utf8_lossy(&std::mem::take(&mut self.partial)));
        text
    }

    fn first_stop(&self) -> Option<usize> {
        self.stop
            .iter()
            .filter_map(|s| self.held.find(s.as_str()))
            .min()
    }

    /// Length of the longest tail of `held` that begins some stop string.
    fn longest_stop_prefix_suffix(&self) -> usize {
        let mut longest = 0;
        for stop in &self.stop {
            for (i, _) in self.held.char_indices() {
                let tail = &self.held[i..];
                if tail.len() <= longest {
                    break;
                }
                if stop.starts_with(tail) {
                    longest = tail.len();
                    break;
                }
            }
        }
        longest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stop: &[&str], pieces: &[&[u8]]) -> (String, bool) {
        let mut output = Output::new(stop.iter().map(|s| s.to_string()).collect());
        let mut text = String::new();
        for piece in pieces {
            let step = output.push(piece);
            text.push_str(&step.text);
            if step.stopped {
                return (text, true);
            }
        }
        text.push_str(&output.flush());
        (text, false)
    }

    #[test]
    fn splits_characters_only_at_boundaries() {
        let euro = "€".as_bytes();
        let mut output = Output::new(vec![]);
        assert_eq!(output.push(&euro[..1]).text, "");
        assert_eq!(output.push(&euro[1..]).text, "€");
    }

    #[test]
    fn stop_string_across_tokens_is_never_sent() {
        assert_eq!(
            run(&["END"], &[b"hello E", b"N", b"D more"]),
            ("hello ".to_owned(), true)
        );
    }

    #[test]
    fn held_text_is_released_when_it_is_not_a_stop() {
        let mut output = Output::new(vec!["END".into()]);
        assert_eq!(output.push(b"ab E").text, "ab ");
        assert_eq!(output.push(b"X").text, "EX");
        assert_eq!(run(&["END"], &[b"E", b"N"]), ("EN".to_owned(), false));
    }

    #[test]
    fn earliest_of_several_stops_wins() {
        assert_eq!(run(&["b", "a"], &[b"xxab"]), ("xx".to_owned(), true));
    }
}
