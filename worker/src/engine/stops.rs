//! Caller-supplied stop strings, matched on the streamed text.
//!
//! The engine checks stop strings one token late, so the stop text can leak into deltas, and it
//! does not report which string matched. The worker therefore holds back any tail of the text
//! that could still become a stop string, cuts the text exactly before a match, and reports the
//! match. The engine is also given the strings, so it stops generating at about the same point.

/// What to emit after feeding a piece of text.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Step {
    /// Text that is certainly part of the answer.
    pub emit: String,
    /// The stop string that ended the answer, if one did.
    pub matched: Option<String>,
}

/// Matches stop strings across delta boundaries.
#[derive(Debug, Default)]
pub struct StopMatcher {
    stops: Vec<String>,
    held: String,
    done: bool,
}

impl StopMatcher {
    pub fn new(stops: &[String]) -> Self {
        StopMatcher {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            held: String::new(),
            done: false,
        }
    }

    /// Feeds the next piece of generated text.
    pub fn push(&mut self, text: &str) -> Step {
        if self.done {
            return Step::default();
        }
        if self.stops.is_empty() {
            return Step {
                emit: text.to_string(),
                matched: None,
            };
        }
        self.held.push_str(text);
        let earliest = self
            .stops
            .iter()
            .filter_map(|stop| self.held.find(stop.as_str()).map(|at| (at, stop)))
            .min_by_key(|(at, stop)| (*at, std::cmp::Reverse(stop.len())));
        if let Some((at, stop)) = earliest {
            let step = Step {
                emit: self.held[..at].to_string(),
                matched: Some(stop.clone()),
            };
            self.held.clear();
            self.done = true;
            return step;
        }
        let keep = self.partial_suffix_len();
        let cut = self.held.len() - keep;
        let emit = self.held[..cut].to_string();
        self.held.drain(..cut);
        Step {
            emit,
            matched: None,
        }
    }

    /// Length of the longest tail of the held text that starts some stop string.
    fn partial_suffix_len(&self) -> usize {
        let held = self.held.as_str();
        let mut best = 0;
        for stop in &self.stops {
            for (start, _) in held.char_indices() {
                let tail = &held[start..];
                if tail.len() <= best {
                    break;
                }
                if stop.starts_with(tail) {
                    best = tail.len();
                    break;
                }
            }
        }
        best
    }

    /// Releases held text when the generation ends without a match.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&str]) -> (String, Option<String>) {
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let mut matcher = StopMatcher::new(&stops);
        let mut out = String::new();
        for piece in pieces {
            let step = matcher.push(piece);
            out.push_str(&step.emit);
            if step.matched.is_some() {
                return (out, step.matched);
            }
        }
        out.push_str(&matcher.finish());
        (out, None)
    }

    #[test]
    fn table() {
        // (stop strings, pieces fed, text emitted, stop string matched)
        type Case<'a> = (&'a [&'a str], &'a [&'a str], &'a str, Option<&'a str>);
        let cases: &[Case] = &[
            (&[], &["a", "b"], "ab", None),
            (&["END"], &["hello ", "EN", "D more"], "hello ", Some("END")),
            (&["END"], &["hello EN", "d"], "hello ENd", None),
            (&["\n\n"], &["one\n", "\ntwo"], "one", Some("\n\n")),
            (&["x", "abc"], &["zzab", "cx"], "zz", Some("abc")),
            (&["stop"], &["unfinished st"], "unfinished st", None),
            (&["é!"], &["caf", "é", "!"], "caf", Some("é!")),
            (&["ab", "b"], &["ab"], "", Some("ab")),
        ];
        for (stops, pieces, text, matched) in cases {
            let (got, got_matched) = run(stops, pieces);
            assert_eq!(got, *text, "stops {stops:?} pieces {pieces:?}");
            assert_eq!(
                got_matched.as_deref(),
                *matched,
                "stops {stops:?} pieces {pieces:?}"
            );
        }
    }

    #[test]
    fn text_after_a_match_is_discarded() {
        let mut matcher = StopMatcher::new(&["!".to_string()]);
        assert_eq!(matcher.push("hi!").matched.as_deref(), Some("!"));
        assert_eq!(matcher.push("more"), Step::default());
        assert_eq!(matcher.finish(), "");
    }
}
