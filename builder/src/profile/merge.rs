//! The composition algebra of profiles.
//!
//! Every per-file ("partial") value is built from four kinds of parts, each with its merge rule:
//!
//! | part                      | merge(a, b)                                   | empty (identity) |
//! |---------------------------|-----------------------------------------------|------------------|
//! | `Option<T>` (scalar, argv)| `b` if set, else `a` (the later value wins)   | `None`           |
//! | [`SetList`]               | ordered union, first occurrence kept          | `[]`             |
//! | `BTreeMap<String, V>`     | union of keys, values under one key merged    | `{}`             |
//! | section struct            | field by field                                | all fields empty |
//!
//! Each rule is associative with the empty value as a two-sided identity, and a struct or map
//! of such parts inherits both laws, so [`Merge`] on a whole profile is a monoid.
//!
//! Section structs are declared with `partial_section!`, which derives the merge, the
//! leaf walk used for provenance and rendering, and the serde attributes (strict parsing,
//! empty parts left out when serialising). Adding a section is: declare its partial struct,
//! add it as a field of `PartialProfile`, add its typed counterpart to `Profile`.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

/// An associative merge where `later` is layered on top of `self`.
pub trait Merge {
    fn merge(&self, later: &Self) -> Self;
}

/// "Nothing was said here": the identity of [`Merge`]. Also used to leave empty parts out
/// when a partial profile is serialised.
pub trait Empty {
    fn is_empty(&self) -> bool;
}

/// One leaf of a partial profile, as walked by [`Leaves`].
#[derive(Debug, Clone, PartialEq)]
pub enum Leaf<'a> {
    /// A value replaced whole by a later file (a scalar, or an ordered list such as `command`).
    Scalar(toml::Value),
    /// A set-list: its elements accumulate across files.
    Set(&'a SetList),
}

/// Walk the leaves that a (partial) value sets, with their dotted key paths.
pub trait Leaves {
    fn leaves<'a>(&'a self, key: &str, out: &mut Vec<(String, Leaf<'a>)>);
}

pub(crate) fn join_key(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

// ---------------------------------------------------------------------------------------------
// Option<T>: a value that a later file replaces whole.

impl<T: Clone> Merge for Option<T> {
    fn merge(&self, later: &Self) -> Self {
        later.clone().or_else(|| self.clone())
    }
}

impl<T> Empty for Option<T> {
    fn is_empty(&self) -> bool {
        self.is_none()
    }
}

impl<T: Serialize> Leaves for Option<T> {
    fn leaves<'a>(&'a self, key: &str, out: &mut Vec<(String, Leaf<'a>)>) {
        if let Some(v) = self {
            let value =
                toml::Value::try_from(v).unwrap_or_else(|e| toml::Value::String(format!("<unrepresentable: {e}>")));
            out.push((key.to_string(), Leaf::Scalar(value)));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// SetList: an ordered set of strings.

/// A list that is a set: no duplicates, first-occurrence order kept. Merging two set-lists is
/// their ordered union. Constructing one (from a Vec, by deserialising, by collecting) drops
/// duplicates, so the invariant always holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct SetList(Vec<String>);

impl SetList {
    pub fn new() -> Self {
        Self(Vec::new())
    }

    /// Append `item` unless it is already present. Returns whether it was added.
    pub fn insert(&mut self, item: impl Into<String>) -> bool {
        let item = item.into();
        if self.0.contains(&item) {
            false
        } else {
            self.0.push(item);
            true
        }
    }

    pub fn contains(&self, item: &str) -> bool {
        self.0.iter().any(|x| x == item)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, String> {
        self.0.iter()
    }

    pub fn as_slice(&self) -> &[String] {
        &self.0
    }

    pub fn into_vec(self) -> Vec<String> {
        self.0
    }

    /// The ordered union: `self`'s elements, then those of `other` not already present.
    pub fn union(&self, other: &SetList) -> SetList {
        let mut out = self.clone();
        for x in other.iter() {
            out.insert(x.as_str());
        }
        out
    }
}

impl<S: Into<String>> FromIterator<S> for SetList {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> Self {
        let mut out = SetList::new();
        for x in iter {
            out.insert(x);
        }
        out
    }
}

impl From<Vec<String>> for SetList {
    fn from(v: Vec<String>) -> Self {
        v.into_iter().collect()
    }
}

impl From<&[&str]> for SetList {
    fn from(v: &[&str]) -> Self {
        v.iter().copied().collect()
    }
}

impl<'a> IntoIterator for &'a SetList {
    type Item = &'a String;
    type IntoIter = std::slice::Iter<'a, String>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl<'de> Deserialize<'de> for SetList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Vec::<String>::deserialize(d).map(SetList::from)
    }
}

impl Merge for SetList {
    fn merge(&self, later: &Self) -> Self {
        self.union(later)
    }
}

impl Empty for SetList {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Leaves for SetList {
    fn leaves<'a>(&'a self, key: &str, out: &mut Vec<(String, Leaf<'a>)>) {
        out.push((key.to_string(), Leaf::Set(self)));
    }
}

// ---------------------------------------------------------------------------------------------
// Maps keyed by name (services): merged key by key.

impl<V: Merge + Clone> Merge for BTreeMap<String, V> {
    fn merge(&self, later: &Self) -> Self {
        let mut out = self.clone();
        for (k, v) in later {
            let merged = match out.get(k) {
                Some(earlier) => earlier.merge(v),
                None => v.clone(),
            };
            out.insert(k.clone(), merged);
        }
        out
    }
}

impl<V> Empty for BTreeMap<String, V> {
    fn is_empty(&self) -> bool {
        BTreeMap::is_empty(self)
    }
}

impl<V: Leaves> Leaves for BTreeMap<String, V> {
    fn leaves<'a>(&'a self, key: &str, out: &mut Vec<(String, Leaf<'a>)>) {
        for (k, v) in self {
            v.leaves(&join_key(key, k), out);
        }
    }
}

/// Declare a partial (per-file) section: every field optional / empty by default, unknown keys
/// rejected, field-wise [`Merge`], [`Leaves`] and [`Empty`] derived. The TOML key of a field
/// is its Rust name (do not `rename` fields: the leaf paths use `stringify!`).
macro_rules! partial_section {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$fmeta:meta])* pub $field:ident : $ty:ty, )*
        }
    ) => {
        #[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
        $(#[$meta])*
        #[serde(default, deny_unknown_fields)]
        pub struct $name {
            $(
                $(#[$fmeta])*
                #[serde(skip_serializing_if = "crate::profile::merge::Empty::is_empty")]
                pub $field: $ty,
            )*
        }

        impl crate::profile::merge::Merge for $name {
            fn merge(&self, later: &Self) -> Self {
                Self { $( $field: crate::profile::merge::Merge::merge(&self.$field, &later.$field), )* }
            }
        }

        impl crate::profile::merge::Empty for $name {
            fn is_empty(&self) -> bool {
                true $( && crate::profile::merge::Empty::is_empty(&self.$field) )*
            }
        }

        impl crate::profile::merge::Leaves for $name {
            fn leaves<'a>(
                &'a self,
                key: &str,
                out: &mut Vec<(String, crate::profile::merge::Leaf<'a>)>,
            ) {
                $(
                    crate::profile::merge::Leaves::leaves(
                        &self.$field,
                        &crate::profile::merge::join_key(key, stringify!($field)),
                        out,
                    );
                )*
            }
        }
    };
}
