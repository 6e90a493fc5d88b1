//! Finding patients by name: case-insensitively, from the start of the name or of any word in
//! it, so that `mar`, `silva`, `da sil` and `MARIA DA SILVA` all find "Maria da Silva".
//!
//! A name is stored with its keys: its normalized form (lowercase, single spaces) from the start
//! of each word. A search is then a prefix match on one key, which an ordered index answers as a
//! range `[term, successor(term))` without scanning the patients. Comparisons are by code point
//! (byte order of UTF-8), on both backends. Matching is case-insensitive, not
//! accent-insensitive: `jose` does not find "José".

use super::values::{PatientName, MAX_NAME_CHARS};

/// Lowercase, with runs of whitespace made single spaces and none at the ends.
pub fn normalize(text: &str) -> String {
    text.split_whitespace()
        .map(str::to_lowercase)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The keys `name` is found by: its normalized form from each word start (a letter or digit
/// after anything else), without duplicates.
pub fn name_keys(name: &PatientName) -> Vec<String> {
    let normalized = normalize(name.as_str());
    let mut keys: Vec<String> = Vec::new();
    let mut previous_alphanumeric = false;
    for (i, c) in normalized.char_indices() {
        let alphanumeric = c.is_alphanumeric();
        if alphanumeric && !previous_alphanumeric {
            let key = normalized[i..].to_owned();
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
        previous_alphanumeric = alphanumeric;
    }
    if keys.is_empty() {
        // A name of symbols only is still found by itself.
        keys.push(normalized);
    }
    keys
}

/// A parsed `search` parameter: normalized, at most as long as a name.
#[derive(Clone, PartialEq, Eq)]
pub struct SearchTerm(String);

impl std::fmt::Debug for SearchTerm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SearchTerm(<redacted>)")
    }
}

impl SearchTerm {
    /// `None` for a blank search (no filter).
    pub fn parse(raw: &str) -> Result<Option<Self>, &'static str> {
        if raw.chars().count() > MAX_NAME_CHARS {
            return Err("must be at most 200 characters");
        }
        if raw.chars().any(char::is_control) {
            return Err("must not contain control characters");
        }
        let term = normalize(raw);
        Ok((!term.is_empty()).then_some(SearchTerm(term)))
    }

    /// The smallest key the term matches: the term itself.
    pub fn lower_bound(&self) -> &str {
        &self.0
    }

    /// The smallest string above every key that starts with the term: the term with its last
    /// character incremented (dropping trailing characters that have no successor). `None`
    /// when no such string exists: then every key from the lower bound up matches.
    pub fn upper_bound(&self) -> Option<String> {
        let mut chars: Vec<char> = self.0.chars().collect();
        while let Some(last) = chars.pop() {
            if let Some(next) = successor(last) {
                chars.push(next);
                return Some(chars.into_iter().collect());
            }
        }
        None
    }

    /// Whether a stored key matches, as the database range does.
    pub fn matches(&self, key: &str) -> bool {
        key.starts_with(&self.0)
    }
}

/// The next Unicode scalar value (skipping the surrogates), if any.
fn successor(c: char) -> Option<char> {
    match c as u32 + 1 {
        0xD800 => Some('\u{E000}'),
        n => char::from_u32(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(name: &str) -> Vec<String> {
        name_keys(&PatientName::parse(name).unwrap())
    }

    fn term(raw: &str) -> SearchTerm {
        SearchTerm::parse(raw).unwrap().unwrap()
    }

    /// What the database does with the bounds: lower <= key < upper, in byte order.
    fn in_range(term: &SearchTerm, key: &str) -> bool {
        key >= term.lower_bound() && term.upper_bound().is_none_or(|u| key < u.as_str())
    }

    #[test]
    fn a_name_is_found_from_each_word() {
        assert_eq!(
            keys("  Maria   da SILVA "),
            vec!["maria da silva", "da silva", "silva"]
        );
        assert_eq!(
            keys("Jean-Pierre O'Brien"),
            vec!["jean-pierre o'brien", "pierre o'brien", "o'brien", "brien"]
        );
        assert_eq!(keys("Ana Ana"), vec!["ana ana", "ana"]);
        assert_eq!(keys("ÉLODIE Ñúñez"), vec!["élodie ñúñez", "ñúñez"]);
        assert_eq!(keys("***"), vec!["***"]);
    }

    #[test]
    fn a_search_is_normalized_like_a_name() {
        assert_eq!(term("  DA   Sil ").lower_bound(), "da sil");
        assert_eq!(SearchTerm::parse("   "), Ok(None));
        assert_eq!(SearchTerm::parse(""), Ok(None));
    }

    #[test]
    fn a_search_is_bounded() {
        assert!(SearchTerm::parse(&"a".repeat(200)).is_ok());
        assert_eq!(
            SearchTerm::parse(&"a".repeat(201)),
            Err("must be at most 200 characters")
        );
        assert_eq!(
            SearchTerm::parse("ana\u{0}"),
            Err("must not contain control characters")
        );
    }

    #[test]
    fn the_range_holds_exactly_the_keys_that_start_with_the_term() {
        let names = [
            "Maria da Silva",
            "Mario Rossi",
            "Marta Silveira",
            "Ana Maria Braga",
            "Silvana Mar",
            "Zoë Ärger",
        ];
        let all: Vec<String> = names.iter().flat_map(|n| keys(n)).collect();
        for raw in [
            "mar",
            "maria",
            "sil",
            "silva",
            "da sil",
            "MARIA DA SILVA",
            "ä",
            "zoë",
            "x",
        ] {
            let t = term(raw);
            for key in &all {
                assert_eq!(in_range(&t, key), t.matches(key), "{raw} / {key}");
            }
        }
        let matching_names = |raw: &str| -> Vec<&str> {
            let t = term(raw);
            names
                .iter()
                .copied()
                .filter(|n| keys(n).iter().any(|k| in_range(&t, k)))
                .collect()
        };
        assert_eq!(
            matching_names("mar"),
            vec![
                "Maria da Silva",
                "Mario Rossi",
                "Marta Silveira",
                "Ana Maria Braga",
                "Silvana Mar"
            ]
        );
        assert_eq!(
            matching_names("silv"),
            vec!["Maria da Silva", "Marta Silveira", "Silvana Mar"]
        );
        assert_eq!(matching_names("maria b"), vec!["Ana Maria Braga"]);
        assert_eq!(matching_names("aria"), Vec::<&str>::new());
    }

    #[test]
    fn the_upper_bound_steps_over_characters_without_a_successor() {
        assert_eq!(term("ab").upper_bound().as_deref(), Some("ac"));
        assert_eq!(
            term("a\u{D7FF}").upper_bound().as_deref(),
            Some("a\u{E000}")
        );
        assert_eq!(
            term("a\u{10FFFF}").upper_bound().as_deref(),
            Some("b"),
            "every key starting with a\\u{{10FFFF}} is below b"
        );
        assert_eq!(term("\u{10FFFF}").upper_bound(), None);
        assert!(in_range(&term("\u{10FFFF}"), "\u{10FFFF}x"));
    }
}
