//! Checks on the derive input, producing the models expansion works from.
//!
//! Every rejection happens here. A mistake that still leaves a sensible meaning (an empty name,
//! version 0, an event listed twice) is reported and repaired, so the expansion goes on and the
//! user's crate sees that one error rather than a cascade of missing items.

use std::collections::BTreeMap;

use proc_macro2::Span;
use quote::ToTokens;
use syn::{Data, DeriveInput, Fields, Ident, Path, Visibility};

use crate::attr::{AggregateAttrs, EventAttrs};
use crate::errors::Errors;

/// A checked `#[derive(Event)]`.
pub(crate) struct EventModel<'a> {
    /// The event struct.
    pub(crate) ident: &'a Ident,
    /// The stored name.
    pub(crate) name: String,
    /// The schema version, from 1.
    pub(crate) version: u32,
    /// The type of the previous version, if this one upcasts from it.
    pub(crate) upcast_from: Option<Path>,
}

/// A checked `#[derive(Aggregate)]`.
pub(crate) struct AggregateModel<'a> {
    /// The aggregate struct.
    pub(crate) ident: &'a Ident,
    /// The visibility of the aggregate, given to the generated enum.
    pub(crate) vis: &'a Visibility,
    /// The aggregate type name (`Aggregate::TYPE`).
    pub(crate) name: String,
    /// The generated enum.
    pub(crate) event_enum: Ident,
    /// The snapshot interval, if any.
    pub(crate) snapshot_every: Option<u64>,
    /// The event types, each listed once.
    pub(crate) events: Vec<EventRef>,
    /// The canonical text of the state's schema, hashed into `SCHEMA_FINGERPRINT`.
    pub(crate) schema_text: String,
}

/// One event of an aggregate.
pub(crate) struct EventRef {
    /// The event type as written in `events(...)`.
    pub(crate) path: Path,
    /// The enum variant: the last segment of `path`.
    pub(crate) variant: Ident,
}

/// Checks `#[derive(Event)]` input. `None` when no impl can be generated at all.
pub(crate) fn event<'a>(input: &'a DeriveInput, errors: &mut Errors) -> Option<EventModel<'a>> {
    let attrs = EventAttrs::parse(&input.attrs, errors);
    let mut usable = true;
    match &input.data {
        Data::Struct(_) => {}
        Data::Enum(data) => errors.spanned(
            data.enum_token,
            "`#[derive(Event)]` works on structs only: make each kind of event its own struct \
             and list them in `#[aggregate(events(...))]`",
        ),
        Data::Union(data) => {
            errors.spanned(
                data.union_token,
                "`#[derive(Event)]` works on structs only, not unions",
            );
            usable = false;
        }
    }
    if has_generics(input) {
        errors.spanned(
            &input.generics,
            "`#[derive(Event)]` does not support generic parameters: a stored event name must \
             stand for one concrete type",
        );
        usable = false;
    }

    let name = match attrs.name {
        Some(name) if name.value().trim().is_empty() => {
            errors.spanned(
                &name,
                "`#[event(name = \"\")]` is invalid: the stored event name must not be empty",
            );
            None
        }
        Some(name) => Some(name.value()),
        None => None,
    };
    let version = match attrs.version {
        Some(version) if version.value == 0 => {
            errors.spanned(
                &version.literal,
                "`#[event(version = 0)]` is invalid: versions start at 1",
            );
            1
        }
        Some(version) => version.value,
        None => 1,
    };
    let upcast_from = match attrs.upcast_from {
        Some(previous) if version == 1 => {
            errors.spanned(
                &previous,
                "`upcast_from` names the previous version of this event, but this event is at \
                 version 1: set its version too, like `#[event(version = 2, upcast_from = ...)]`",
            );
            None
        }
        other => other,
    };

    usable.then(|| EventModel {
        ident: &input.ident,
        name: name.unwrap_or_else(|| unraw(&input.ident)),
        version,
        upcast_from,
    })
}

/// Checks `#[derive(Aggregate)]` input. `None` when no impl can be generated at all.
pub(crate) fn aggregate<'a>(
    input: &'a DeriveInput,
    errors: &mut Errors,
) -> Option<AggregateModel<'a>> {
    let attrs = AggregateAttrs::parse(&input.attrs, errors);
    let mut usable = true;
    match &input.data {
        Data::Struct(_) => {}
        Data::Enum(data) => errors.spanned(
            data.enum_token,
            "`#[derive(Aggregate)]` works on structs only: an aggregate is the state struct \
             its events are applied to",
        ),
        Data::Union(data) => {
            errors.spanned(
                data.union_token,
                "`#[derive(Aggregate)]` works on structs only, not unions",
            );
            usable = false;
        }
    }
    if has_generics(input) {
        errors.spanned(
            &input.generics,
            "`#[derive(Aggregate)]` does not support generic parameters: an aggregate type \
             name must stand for one concrete type",
        );
        usable = false;
    }

    let name = match attrs.name {
        Some(name) if name.value().trim().is_empty() => {
            errors.spanned(
                &name,
                "`#[aggregate(name = \"\")]` is invalid: the aggregate type name must not be empty",
            );
            None
        }
        Some(name) => Some(name.value()),
        None => None,
    }
    .unwrap_or_else(|| snake_case(&unraw(&input.ident)));

    let snapshot_every = match attrs.snapshot_every {
        Some(every) if every.value == 0 => {
            errors.spanned(
                &every.literal,
                "`#[aggregate(snapshot_every = 0)]` is invalid: snapshot every 1 or more \
                 events, or leave `snapshot_every` out to never snapshot",
            );
            None
        }
        Some(every) => Some(every.value),
        None => None,
    };

    let snapshot_version = match attrs.snapshot_version {
        Some(version) if version.value == 0 => {
            errors.spanned(
                &version.literal,
                "`#[aggregate(snapshot_version = 0)]` is invalid: snapshot versions start at 1 \
                 (leave the key out until apply logic first changes, then write \
                 `snapshot_version = 2`)",
            );
            None
        }
        Some(version) => Some(version.value),
        None => None,
    };

    let events = match attrs.events {
        None => {
            errors.spanned(
                &input.ident,
                "`#[derive(Aggregate)]` needs the aggregate's event types: add \
                 `#[aggregate(events(FirstEvent, SecondEvent, ...))]`",
            );
            Vec::new()
        }
        Some(list) => match list.paths {
            None => Vec::new(),
            Some(paths) if paths.is_empty() => {
                errors.spanned(
                    &list.key,
                    "`events()` is empty: list the aggregate's event types, like \
                     `events(OrderCreated, OrderShipped)`",
                );
                Vec::new()
            }
            Some(paths) => distinct_events(paths, errors),
        },
    };

    let event_enum = attrs
        .event_enum
        .unwrap_or_else(|| Ident::new(&format!("{}Event", unraw(&input.ident)), Span::call_site()));
    let schema_text = schema_text(input, &name, &events, snapshot_version);

    usable.then(|| AggregateModel {
        ident: &input.ident,
        vis: &input.vis,
        name,
        event_enum,
        snapshot_every,
        events,
        schema_text,
    })
}

/// The listed events with repeats reported and dropped. Two paths ending in the same name
/// would give two variants of one name, so that is reported too.
fn distinct_events(paths: Vec<Path>, errors: &mut Errors) -> Vec<EventRef> {
    let mut by_variant: BTreeMap<String, String> = BTreeMap::new();
    let mut events = Vec::with_capacity(paths.len());
    for path in paths {
        let written = path_text(&path);
        let Some(last) = path.segments.last() else {
            continue;
        };
        let variant = last.ident.clone();
        match by_variant.get(&unraw(&variant)) {
            Some(earlier) if *earlier == written => {
                errors.spanned(
                    &path,
                    format!("`{written}` is listed twice in `events(...)`: list each event once"),
                );
            }
            Some(earlier) => {
                errors.spanned(
                    &path,
                    format!(
                        "`{written}` and `{earlier}` would both be the enum variant `{variant}`: \
                         list events whose type names differ"
                    ),
                );
            }
            None => {
                by_variant.insert(unraw(&variant), written);
                events.push(EventRef { path, variant });
            }
        }
    }
    events
}

fn has_generics(input: &DeriveInput) -> bool {
    !input.generics.params.is_empty() || input.generics.where_clause.is_some()
}

/// An identifier as text, without the `r#` of a raw identifier.
fn unraw(ident: &Ident) -> String {
    use syn::ext::IdentExt;
    ident.unraw().to_string()
}

/// A path as written, without the spaces token printing adds: `crate::orders::Created`.
pub(crate) fn path_text(path: &Path) -> String {
    path.to_token_stream()
        .to_string()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect()
}

/// `OrderLine` -> `order_line`, `HTTPServer` -> `http_server`.
fn snake_case(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::with_capacity(name.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if c.is_uppercase() {
            let previous = i.checked_sub(1).map(|j| chars[j]);
            let next = chars.get(i + 1).copied();
            let starts_word = previous.is_some_and(|p| p.is_lowercase() || p.is_ascii_digit())
                || previous.is_some_and(char::is_uppercase) && next.is_some_and(char::is_lowercase);
            if starts_word {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// The schema of the aggregate's state as text: what a snapshot's bytes depend on. Field names,
/// field types and serde attributes count; doc comments and other attributes do not.
///
/// The manual `snapshot_version` counts only when given, so adding `snapshot_version = 1`
/// (the implied first version) keeps existing snapshots.
fn schema_text(
    input: &DeriveInput,
    name: &str,
    events: &[EventRef],
    snapshot_version: Option<u32>,
) -> String {
    let mut text = format!("aggregate {name}; struct {}", unraw(&input.ident));
    push_serde_attrs(&mut text, &input.attrs);
    if let Data::Struct(data) = &input.data {
        match &data.fields {
            Fields::Named(_) => text.push_str(" {"),
            Fields::Unnamed(_) => text.push_str(" ("),
            Fields::Unit => text.push(';'),
        }
        for field in &data.fields {
            text.push(' ');
            push_serde_attrs(&mut text, &field.attrs);
            if let Some(ident) = &field.ident {
                text.push_str(&unraw(ident));
                text.push_str(": ");
            }
            text.push_str(&field.ty.to_token_stream().to_string());
            text.push(',');
        }
        match &data.fields {
            Fields::Named(_) => text.push_str(" }"),
            Fields::Unnamed(_) => text.push_str(" )"),
            Fields::Unit => {}
        }
    }
    text.push_str("; events");
    for event in events {
        text.push(' ');
        text.push_str(&path_text(&event.path));
    }
    if let Some(version) = snapshot_version.filter(|version| *version > 1) {
        text.push_str("; snapshot_version ");
        text.push_str(&version.to_string());
    }
    text
}

fn push_serde_attrs(text: &mut String, attrs: &[syn::Attribute]) {
    for attr in attrs.iter().filter(|attr| attr.path().is_ident("serde")) {
        text.push_str(&attr.to_token_stream().to_string());
        text.push(' ');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snake_case_splits_words() {
        assert_eq!(snake_case("Order"), "order");
        assert_eq!(snake_case("OrderLine"), "order_line");
        assert_eq!(snake_case("HTTPServer"), "http_server");
        assert_eq!(snake_case("Order2Shipment"), "order2_shipment");
        assert_eq!(snake_case("already_snake"), "already_snake");
    }

    #[test]
    fn schema_text_ignores_docs_but_not_types() {
        let a: DeriveInput = syn::parse_quote! {
            /// Docs.
            struct Order { /// The total.
                total: u64 }
        };
        let b: DeriveInput = syn::parse_quote! { struct Order { total: u64 } };
        let c: DeriveInput = syn::parse_quote! { struct Order { total: i64 } };
        assert_eq!(
            schema_text(&a, "order", &[], None),
            schema_text(&b, "order", &[], None)
        );
        assert_ne!(
            schema_text(&b, "order", &[], None),
            schema_text(&c, "order", &[], None)
        );
    }

    #[test]
    fn schema_text_counts_snapshot_versions_after_the_first() {
        let order: DeriveInput = syn::parse_quote! { struct Order { total: u64 } };
        let unversioned = schema_text(&order, "order", &[], None);
        assert_eq!(schema_text(&order, "order", &[], Some(1)), unversioned);
        assert_ne!(schema_text(&order, "order", &[], Some(2)), unversioned);
        assert_ne!(
            schema_text(&order, "order", &[], Some(2)),
            schema_text(&order, "order", &[], Some(3))
        );
    }
}
