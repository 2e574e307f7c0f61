//! Template expansion inside `repeat`: `{i}` (or the index a repeat names with `as:`) in a name,
//! handle, path or argument becomes the iteration, and a numeric token is offset by the iteration's
//! position among all enclosing repeats, so N preserved files get N distinct tokens.

use std::cell::RefCell;

/// The indices of the repeats around a step, outermost first.
#[derive(Debug, Clone, Default)]
pub struct Template {
    /// (name, value, count) per enclosing repeat.
    levels: Vec<(String, u64, u64)>,
    /// Placeholders met that no enclosing repeat names (the validator reports them).
    unknown: RefCell<Vec<String>>,
}

impl Template {
    /// No repeat around: strings are taken as written.
    pub fn none() -> Template {
        Template::default()
    }

    /// This template inside one more repeat, at iteration `value` of `count`.
    pub fn nested(&self, name: &str, value: u64, count: u64) -> Template {
        let mut levels = self.levels.clone();
        levels.push((name.to_string(), value, count));
        Template {
            levels,
            unknown: RefCell::default(),
        }
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.levels.iter().map(|(n, _, _)| n.as_str())
    }

    /// `{name}` replaced by its index; a `{word}` that names no index is left and remembered.
    pub fn text(&self, s: &str) -> String {
        let mut out = String::with_capacity(s.len());
        let mut rest = s;
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            match after.find('}') {
                Some(close) if is_index_name(&after[..close]) => {
                    let word = &after[..close];
                    match self.levels.iter().rev().find(|(n, _, _)| n == word) {
                        Some((_, v, _)) => out.push_str(&v.to_string()),
                        None => {
                            self.unknown.borrow_mut().push(word.to_string());
                            out.push_str(&rest[open..open + close + 2]);
                        }
                    }
                    rest = &after[close + 1..];
                }
                _ => {
                    out.push('{');
                    rest = after;
                }
            }
        }
        out.push_str(rest);
        out
    }

    pub fn opt(&self, s: &Option<String>) -> Option<String> {
        s.as_ref().map(|s| self.text(s))
    }

    pub fn list(&self, v: &[String]) -> Vec<String> {
        v.iter().map(|s| self.text(s)).collect()
    }

    /// A token offset by the iteration's position in the unrolled order of every enclosing repeat
    /// (for one repeat, its index).
    pub fn token(&self, t: u64) -> u64 {
        let pos = self.levels.iter().fold(0u64, |acc, (_, v, count)| {
            acc.saturating_mul(*count).saturating_add(*v)
        });
        t.saturating_add(pos)
    }

    /// The placeholders no enclosing repeat names, met since the last call.
    pub fn take_unknown(&self) -> Vec<String> {
        std::mem::take(&mut self.unknown.borrow_mut())
    }
}

/// What may name an index: `i`, `j`, `session_no`.
pub fn is_index_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next().is_some_and(|f| f.is_ascii_lowercase() || f == '_')
        && c.all(|x| x.is_ascii_lowercase() || x.is_ascii_digit() || x == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_are_replaced_by_name_innermost_first() {
        let t = Template::none().nested("i", 3, 10).nested("j", 4, 5);
        assert_eq!(t.text("s-{i}-{j}"), "s-3-4");
        let shadow = Template::none().nested("i", 1, 2).nested("i", 7, 9);
        assert_eq!(shadow.text("{i}"), "7");
        assert!(t.take_unknown().is_empty());
    }

    #[test]
    fn unknown_words_stay_and_are_reported_but_other_braces_are_text() {
        let t = Template::none().nested("i", 0, 1);
        assert_eq!(t.text("{k}-{i}-{ not a word }-{"), "{k}-0-{ not a word }-{");
        assert_eq!(t.take_unknown(), ["k"]);
        assert_eq!(Template::none().text("plain"), "plain");
    }

    #[test]
    fn tokens_are_unique_across_nested_repeats() {
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..3 {
            for j in 0..4 {
                let t = Template::none().nested("i", i, 3).nested("j", j, 4);
                assert!(seen.insert(t.token(100)), "duplicate token at {i},{j}");
            }
        }
        assert_eq!(
            Template::none().nested("i", 5, 9).token(1),
            6,
            "one repeat: token + i"
        );
    }
}
