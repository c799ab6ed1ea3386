//! The grammar of `#[event(...)]` and `#[aggregate(...)]`, read into typed models.
//!
//! Parsing keeps going after a bad key or value, so every mistake in an attribute is reported
//! at once and the rest of the attribute still counts (one mistake, one error).

use std::str::FromStr;

use proc_macro2::TokenTree;
use syn::meta::ParseNestedMeta;
use syn::punctuated::Punctuated;
use syn::{Attribute, Expr, ExprLit, Ident, Lit, LitInt, LitStr, Path, Token};

use crate::errors::{did_you_mean, Errors};

/// `#[event(name = "...", version = N, upcast_from = Type)]` as written.
#[derive(Default)]
pub(crate) struct EventAttrs {
    /// The stored event name.
    pub(crate) name: Option<LitStr>,
    /// The schema version.
    pub(crate) version: Option<Number<u32>>,
    /// The type of the previous schema version.
    pub(crate) upcast_from: Option<Path>,
}

/// `#[aggregate(name = "...", events(...), snapshot_every = N, snapshot_version = N,
/// event_enum = Ident)]` as written.
#[derive(Default)]
pub(crate) struct AggregateAttrs {
    /// The aggregate type name.
    pub(crate) name: Option<LitStr>,
    /// The event types.
    pub(crate) events: Option<EventList>,
    /// The snapshot interval.
    pub(crate) snapshot_every: Option<Number<u64>>,
    /// The manual snapshot version, bumped when apply logic changes.
    pub(crate) snapshot_version: Option<Number<u32>>,
    /// The name of the generated enum.
    pub(crate) event_enum: Option<Ident>,
}

/// An integer value and the literal it came from (for error spans).
pub(crate) struct Number<T> {
    pub(crate) value: T,
    pub(crate) literal: LitInt,
}

/// `events(A, B, ...)`: the key (for error spans) and the listed paths, `None` when the value
/// was malformed (already reported).
pub(crate) struct EventList {
    pub(crate) key: Path,
    pub(crate) paths: Option<Vec<Path>>,
}

impl EventAttrs {
    const KEYS: &'static [&'static str] = &["name", "version", "upcast_from"];

    /// Reads every `#[event(...)]` in `attrs`, recording mistakes in `errors`.
    pub(crate) fn parse(attrs: &[Attribute], errors: &mut Errors) -> Self {
        let mut parsed = Self::default();
        parse_keys(attrs, "event", Self::KEYS, errors, |key, meta, errors| {
            match key {
                "name" => parsed.name = string(meta, "name = \"OrderCreated\"", errors)?,
                "version" => parsed.version = number(meta, "version = 2", errors)?,
                "upcast_from" => {
                    parsed.upcast_from = path(meta, "upcast_from = OrderCreatedV1", errors)?;
                }
                _ => return Ok(false),
            }
            Ok(true)
        });
        parsed
    }
}

impl AggregateAttrs {
    const KEYS: &'static [&'static str] = &[
        "name",
        "events",
        "snapshot_every",
        "snapshot_version",
        "event_enum",
    ];

    /// Reads every `#[aggregate(...)]` in `attrs`, recording mistakes in `errors`.
    pub(crate) fn parse(attrs: &[Attribute], errors: &mut Errors) -> Self {
        let mut parsed = Self::default();
        parse_keys(
            attrs,
            "aggregate",
            Self::KEYS,
            errors,
            |key, meta, errors| {
                match key {
                    "name" => parsed.name = string(meta, "name = \"order\"", errors)?,
                    "events" => parsed.events = event_list(meta, errors)?,
                    "snapshot_every" => {
                        parsed.snapshot_every = number(meta, "snapshot_every = 100", errors)?;
                    }
                    "snapshot_version" => {
                        parsed.snapshot_version = number(meta, "snapshot_version = 2", errors)?;
                    }
                    "event_enum" => {
                        parsed.event_enum = path(meta, "event_enum = OrderEvent", errors)?
                            .and_then(|path| ident(&path, "event_enum = OrderEvent", errors));
                    }
                    _ => return Ok(false),
                }
                Ok(true)
            },
        );
        parsed
    }
}

/// Walks the keys of every `#[attr_name(...)]`: unknown and repeated keys are reported and
/// skipped, known ones go to `on_key` (which returns whether it knew the key).
fn parse_keys(
    attrs: &[Attribute],
    attr_name: &str,
    keys: &[&str],
    errors: &mut Errors,
    mut on_key: impl FnMut(&str, &ParseNestedMeta, &mut Errors) -> syn::Result<bool>,
) {
    let mut seen: Vec<String> = Vec::new();
    for attr in attrs.iter().filter(|attr| attr.path().is_ident(attr_name)) {
        let result = attr.parse_nested_meta(|meta| {
            let key = meta.path.get_ident().map(ToString::to_string);
            let Some(key) = key.filter(|key| keys.contains(&key.as_str())) else {
                errors.push(unknown_key(&meta.path, attr_name, keys));
                return skip_value(&meta);
            };
            if seen.contains(&key) {
                errors.spanned(
                    &meta.path,
                    format!("`{key}` is set twice in `#[{attr_name}(...)]`: keep one"),
                );
                return skip_value(&meta);
            }
            seen.push(key.clone());
            if !on_key(&key, &meta, errors)? {
                errors.push(unknown_key(&meta.path, attr_name, keys));
                skip_value(&meta)?;
            }
            Ok(())
        });
        if let Err(error) = result {
            errors.push(error);
        }
    }
}

fn unknown_key(path: &Path, attr_name: &str, keys: &[&str]) -> syn::Error {
    let written = path
        .segments
        .iter()
        .map(|segment| segment.ident.to_string())
        .collect::<Vec<_>>()
        .join("::");
    let known = keys
        .iter()
        .map(|key| format!("`{key}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let message = match did_you_mean(&written, keys) {
        Some(close) => format!(
            "unknown key `{written}` in `#[{attr_name}(...)]`: did you mean `{close}`? \
             (known keys: {known})"
        ),
        None => format!("unknown key `{written}` in `#[{attr_name}(...)]` (known keys: {known})"),
    };
    syn::Error::new_spanned(path, message)
}

/// Consumes whatever value follows a key (`= expr` or `(...)`), so parsing can go on.
fn skip_value(meta: &ParseNestedMeta) -> syn::Result<()> {
    if meta.input.peek(Token![=]) {
        meta.value()?.parse::<Expr>()?;
    } else if meta.input.peek(syn::token::Paren) {
        meta.input.parse::<TokenTree>()?;
    }
    Ok(())
}

/// The expression after `key =`, or `None` (reported) when the key has no `= value`.
fn value(meta: &ParseNestedMeta, example: &str, errors: &mut Errors) -> syn::Result<Option<Expr>> {
    if !meta.input.peek(Token![=]) {
        errors.spanned(
            &meta.path,
            format!("`{}` needs a value, like `{example}`", key_name(meta)),
        );
        skip_value(meta)?;
        return Ok(None);
    }
    let mut expr: Expr = meta.value()?.parse()?;
    // Tokens passed through `macro_rules!` arrive wrapped in invisible groups.
    while let Expr::Group(group) = expr {
        expr = *group.expr;
    }
    Ok(Some(expr))
}

fn key_name(meta: &ParseNestedMeta) -> String {
    meta.path
        .get_ident()
        .map_or_else(String::new, ToString::to_string)
}

fn string(
    meta: &ParseNestedMeta,
    example: &str,
    errors: &mut Errors,
) -> syn::Result<Option<LitStr>> {
    Ok(value(meta, example, errors)?.and_then(|expr| match expr {
        Expr::Lit(ExprLit {
            lit: Lit::Str(string),
            ..
        }) => Some(string),
        other => {
            errors.spanned(
                other,
                format!(
                    "`{}` takes a string literal, like `{example}`",
                    key_name(meta)
                ),
            );
            None
        }
    }))
}

fn number<T>(
    meta: &ParseNestedMeta,
    example: &str,
    errors: &mut Errors,
) -> syn::Result<Option<Number<T>>>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    let key = key_name(meta);
    Ok(value(meta, example, errors)?.and_then(|expr| match expr {
        Expr::Lit(ExprLit {
            lit: Lit::Int(literal),
            ..
        }) => {
            if let Ok(value) = literal.base10_parse::<T>() {
                Some(Number { value, literal })
            } else {
                let type_name = std::any::type_name::<T>();
                errors.spanned(
                    &literal,
                    format!("`{key}` is too large: it must fit in a `{type_name}`"),
                );
                None
            }
        }
        other => {
            errors.spanned(
                other,
                format!("`{key}` takes a positive integer literal, like `{example}`"),
            );
            None
        }
    }))
}

fn path(meta: &ParseNestedMeta, example: &str, errors: &mut Errors) -> syn::Result<Option<Path>> {
    let key = key_name(meta);
    Ok(value(meta, example, errors)?.and_then(|expr| match expr {
        Expr::Path(path) if path.qself.is_none() && path.attrs.is_empty() => Some(path.path),
        Expr::Lit(ExprLit {
            lit: Lit::Str(string),
            ..
        }) => {
            errors.spanned(
                &string,
                format!("`{key}` takes a name without quotes, like `{example}`"),
            );
            None
        }
        other => {
            errors.spanned(
                other,
                format!("`{key}` takes a type name, like `{example}`"),
            );
            None
        }
    }))
}

fn ident(path: &Path, example: &str, errors: &mut Errors) -> Option<Ident> {
    if let Some(ident) = path.get_ident() {
        return Some(ident.clone());
    }
    errors.spanned(
        path,
        format!("expected a plain name for the generated enum, like `{example}`"),
    );
    None
}

fn event_list(meta: &ParseNestedMeta, errors: &mut Errors) -> syn::Result<Option<EventList>> {
    if !meta.input.peek(syn::token::Paren) {
        errors.spanned(
            &meta.path,
            "`events` takes the event types in parentheses, like \
             `events(OrderCreated, OrderShipped)`",
        );
        skip_value(meta)?;
        return Ok(Some(EventList {
            key: meta.path.clone(),
            paths: None,
        }));
    }
    let content;
    syn::parenthesized!(content in meta.input);
    let paths = Punctuated::<Path, Token![,]>::parse_terminated(&content)?;
    Ok(Some(EventList {
        key: meta.path.clone(),
        paths: Some(paths.into_iter().collect()),
    }))
}
