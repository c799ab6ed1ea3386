//! Collecting several spanned errors, so one expansion reports every mistake it found.

use std::fmt::Display;

use proc_macro2::TokenStream;
use quote::ToTokens;

/// The errors found so far in one derive input.
#[derive(Default)]
pub(crate) struct Errors {
    first: Option<syn::Error>,
}

impl Errors {
    /// Records `error`, keeping every earlier one.
    pub(crate) fn push(&mut self, error: syn::Error) {
        match &mut self.first {
            Some(first) => first.combine(error),
            None => self.first = Some(error),
        }
    }

    /// Records an error pointing at `tokens`.
    pub(crate) fn spanned(&mut self, tokens: impl ToTokens, message: impl Display) {
        self.push(syn::Error::new_spanned(tokens, message));
    }

    /// The recorded errors as `compile_error!` invocations, followed by `expansion`.
    pub(crate) fn finish(self, expansion: Option<TokenStream>) -> TokenStream {
        let mut tokens = self
            .first
            .map(syn::Error::into_compile_error)
            .unwrap_or_default();
        tokens.extend(expansion);
        tokens
    }
}

/// The candidate closest to `unknown`, when it is close enough to be a likely typo, or when
/// one names a part of the other (`schema_version` for `version`, `enum` for `event_enum`).
pub(crate) fn did_you_mean<'a>(unknown: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let typo = candidates
        .iter()
        .map(|candidate| (edit_distance(unknown, candidate), *candidate))
        .filter(|(distance, candidate)| {
            *distance <= 2 && *distance < candidate.len()
                || unknown.len() >= 3 && candidate.starts_with(unknown)
        })
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate);
    typo.or_else(|| {
        let shares_a_word = |longer: &str, shorter: &str| {
            shorter.len() >= 4 && longer.split('_').any(|word| word == shorter)
        };
        candidates
            .iter()
            .find(|candidate| {
                shares_a_word(unknown, candidate) || shares_a_word(candidate, unknown)
            })
            .copied()
    })
}

/// Levenshtein distance, counting a swap of two neighbours as one edit.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // rows[i][j]: distance between a[..i] and b[..j].
    let mut rows = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in rows.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in rows[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let substitution = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (rows[i - 1][j] + 1)
                .min(rows[i][j - 1] + 1)
                .min(rows[i - 1][j - 1] + substitution);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = best;
        }
    }
    rows[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYS: &[&str] = &["name", "version", "upcast_from"];

    #[test]
    fn suggests_close_keys() {
        assert_eq!(did_you_mean("nmae", KEYS), Some("name"));
        assert_eq!(did_you_mean("versoin", KEYS), Some("version"));
        assert_eq!(did_you_mean("upcast", KEYS), Some("upcast_from"));
        assert_eq!(did_you_mean("names", KEYS), Some("name"));
        // serde's spelling of the same idea.
        assert_eq!(did_you_mean("rename", KEYS), Some("name"));
    }

    #[test]
    fn suggests_a_key_that_is_one_word_of_the_written_one_or_the_other_way_round() {
        assert_eq!(did_you_mean("schema_version", KEYS), Some("version"));
        assert_eq!(did_you_mean("event_name", KEYS), Some("name"));
        let aggregate = &["name", "events", "snapshot_every", "event_enum"];
        assert_eq!(did_you_mean("enum", aggregate), Some("event_enum"));
        assert_eq!(did_you_mean("every", aggregate), Some("snapshot_every"));
        assert_eq!(did_you_mean("from", KEYS), Some("upcast_from"));
    }

    #[test]
    fn stays_quiet_for_unrelated_keys() {
        assert_eq!(did_you_mean("codec", KEYS), None);
        assert_eq!(did_you_mean("x", KEYS), None);
    }

    #[test]
    fn distance_counts_edits() {
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("abc", "abc"), 0);
        assert_eq!(edit_distance("abc", "acb"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
