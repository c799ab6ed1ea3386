//! `impl Event` for an event struct, and the compile-time checks of its upcast chain.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

use crate::valid::EventModel;

/// The expansion of `#[derive(Event)]`.
pub(crate) fn event(model: &EventModel<'_>) -> TokenStream {
    let EventModel {
        ident,
        name,
        version,
        upcast_from,
    } = model;

    let decode_older = upcast_from.as_ref().map(|previous| {
        // Spanned at the attribute, so a missing `From<Previous>` impl is reported there.
        let decode_upcast = quote_spanned! {previous.span()=>
            ::es_core::__private::decode_upcast::<#previous, Self>(
                &::es_core::__private::event_info::<#previous>(),
                __schema_version,
                __codec,
                __payload,
            )
        };
        quote! {
            if __schema_version < <Self as ::es_core::Event>::SCHEMA_VERSION {
                return #decode_upcast;
            }
        }
    });

    // Each check is a trait bound on `Check<condition>`, so a broken chain reads like any
    // other compile error (the trait's own message, at the `upcast_from` value), not like a
    // const-evaluation panic.
    let chain_checks = upcast_from.as_ref().map(|previous| {
        quote_spanned! {previous.span()=>
            const _: () = {
                ::es_core::__private::upcast_from_has_the_same_name::<
                    #previous,
                    #ident,
                    ::es_core::__private::Check<{
                        ::es_core::__private::str_eq(
                            ::es_core::__private::event_info::<#previous>().name,
                            <#ident as ::es_core::Event>::NAME,
                        )
                    }>,
                >();
                ::es_core::__private::upcast_from_has_an_earlier_version::<
                    #previous,
                    #ident,
                    ::es_core::__private::Check<{
                        ::es_core::__private::event_info::<#previous>().version
                            < <#ident as ::es_core::Event>::SCHEMA_VERSION
                    }>,
                >();
            };
        }
    });

    quote! {
        #[automatically_derived]
        impl ::es_core::Event for #ident {
            const NAME: &'static ::es_core::__private::core::primitive::str = #name;
            const SCHEMA_VERSION: ::es_core::__private::core::primitive::u32 = #version;

            #[inline]
            fn decode_versioned(
                __schema_version: ::es_core::__private::core::primitive::u32,
                __codec: ::es_core::CodecId,
                __payload: &[::es_core::__private::core::primitive::u8],
            ) -> ::es_core::__private::core::result::Result<Self, ::es_core::DecodeError> {
                if __schema_version == <Self as ::es_core::Event>::SCHEMA_VERSION {
                    return ::es_core::__private::decode_current::<Self>(__codec, __payload);
                }
                #decode_older
                ::es_core::__private::core::result::Result::Err(
                    ::es_core::__private::unknown_schema_version::<Self>(__schema_version),
                )
            }
        }

        #chain_checks
    }
}
