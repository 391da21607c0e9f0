//! The one macro that declares configuration keys. Each key is written once, in
//! `config/keys.rs`: its doc comment, name, type, default, kind (what [`check`] accepts) and,
//! for keys without a default, the example the default file shows. From that one declaration
//! come the struct field and its `Default`, the key's [`KeyDef`] (which the layers check values
//! against) and its lines in the commented default file.
//!
//! A section is written as:
//!
//! ```text
//! /// The section's comment in the default file (and its rustdoc).
//! "name" => field: StructName {
//!     /// The key's comment in the default file (and its rustdoc); lines are joined.
//!     #[serde(...)]                       // optional, passed to the field
//!     key: Type = default, Kind::… ;      // or `…, Kind::…, example "toml";`
//!     more:                               // optional: fields that are not plain keys
//!     /// Rustdoc.
//!     field: Type = default, file "lines written into the default file";
//! }
//! ```
//!
//! [`check`]: super::schema::check
//! [`KeyDef`]: super::schema::KeyDef

/// Declares the configuration: `settings! { config { sections } tables { … } }` makes the
/// top-level struct (one field per section and per table), each section's struct with its
/// `Default`, and `SECTIONS` / `ALL_SECTIONS`; `settings! { table … }` makes one table of keys
/// that is not a section (the entries of `[[checkpoints]]`, the fields of a price).
macro_rules! settings {
    (
        $(#[doc = $cdoc:literal])*
        pub struct $Config:ident;
        sections {
            $(
                $(#[doc = $sdoc:literal])+
                $section:literal => $field:ident: $Struct:ident { $($body:tt)* }
            )*
        }
        tables {
            $(
                $(#[doc = $tdoc:literal])+
                $tsection:literal => $tfield:ident: $tty:ty,
            )*
        }
    ) => {
        $(#[doc = $cdoc])*
        #[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct $Config {
            $(
                #[doc = concat!("`[", $section, "]`:", $($sdoc),+)]
                #[serde(rename = $section)]
                pub $field: $Struct,
            )*
            $(
                $(#[doc = $tdoc])+
                #[serde(rename = $tsection)]
                pub $tfield: $tty,
            )*
        }

        $(
            settings!(@struct $(#[doc = $sdoc])+ $Struct { $($body)* });
        )*

        /// The sections made of plain keys, in the order of the default file.
        pub(crate) const SECTIONS: &[Section] = &[
            $(
                Section {
                    name: $section,
                    doc: concat!($($sdoc),+),
                    keys: settings!(@defs $section { $($body)* }),
                    more: settings!(@more { $($body)* }),
                },
            )*
        ];

        /// Every section name, the structured ones included.
        pub(crate) const ALL_SECTIONS: &[&str] = &[$($section,)* $($tsection,)*];
    };

    (
        table
        $(#[doc = $sdoc:literal])+
        $section:literal => $Struct:ident, $KEYS:ident { $($body:tt)* }
    ) => {
        settings!(@struct $(#[doc = $sdoc])+ $Struct { $($body)* });

        #[doc = concat!("The keys of `", stringify!($Struct), "`.")]
        pub(crate) const $KEYS: &[KeyDef] = settings!(@defs $section { $($body)* });
    };

    (@struct $(#[doc = $sdoc:literal])+ $Struct:ident {
        $(
            $(#[doc = $doc:literal])+
            $(#[serde($($serde:tt)*)])*
            $key:ident: $ty:ty = $default:expr, $kind:expr $(, example $example:literal)?;
        )*
        $(
            more:
            $(
                $(#[doc = $mdoc:literal])+
                $(#[serde($($mserde:tt)*)])*
                $mkey:ident: $mty:ty = $mdefault:expr, file $file:literal;
            )*
        )?
    }) => {
        $(#[doc = $sdoc])+
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct $Struct {
            $(
                $(#[doc = $doc])+
                #[doc = ""]
                #[doc = concat!("Default: `", stringify!($default), "`.")]
                $(#[serde($($serde)*)])*
                pub $key: $ty,
            )*
            $($(
                $(#[doc = $mdoc])+
                $(#[serde($($mserde)*)])*
                pub $mkey: $mty,
            )*)?
        }

        impl Default for $Struct {
            fn default() -> Self {
                $Struct {
                    $($key: $default,)*
                    $($($mkey: $mdefault,)*)?
                }
            }
        }
    };

    (@defs $section:literal {
        $(
            $(#[doc = $doc:literal])+
            $(#[serde($($serde:tt)*)])*
            $key:ident: $ty:ty = $default:expr, $kind:expr $(, example $example:literal)?;
        )*
        $(more: $($more:tt)*)?
    }) => {
        &[
            $(
                KeyDef {
                    section: $section,
                    key: stringify!($key),
                    kind: $kind,
                    doc: concat!($($doc),+),
                    example: settings!(@example $($example)?),
                },
            )*
        ]
    };

    (@more {
        $(
            $(#[doc = $doc:literal])+
            $(#[serde($($serde:tt)*)])*
            $key:ident: $ty:ty = $default:expr, $kind:expr $(, example $example:literal)?;
        )*
        $(
            more:
            $(
                $(#[doc = $mdoc:literal])+
                $(#[serde($($mserde:tt)*)])*
                $mkey:ident: $mty:ty = $mdefault:expr, file $file:literal;
            )*
        )?
    }) => {
        &[$($(More { key: stringify!($mkey), file: $file },)*)?]
    };

    (@example) => { None };
    (@example $example:literal) => { Some($example) };
}

pub(crate) use settings;
