//! Labels as the decoders find them, and the duplicate-key rule.

use std::borrow::Cow;
use std::collections::HashMap;

use super::DecodeError;
use super::limits::{DecodeLimits, LABEL_OVERHEAD, check_key, check_value};

/// Objects with at most this many keys are checked for duplicates pairwise;
/// larger ones through a hash map (so 42,000 keys cost 42,000 lookups, not
/// 10^9 comparisons).
const PAIRWISE_MAX: usize = 16;

/// Merges entries with equal keys: the **last** value wins, at the position
/// of the first occurrence (what serde_json's ordered maps do). Linear time.
pub(crate) fn dedupe_last_wins<K: AsRef<str>, V>(items: Vec<(K, V)>) -> Vec<(K, V)> {
    let n = items.len();
    if n < 2 {
        return items;
    }
    // first[i]: the index of the first entry whose key equals entry i's.
    let first: Vec<usize> = if n <= PAIRWISE_MAX {
        (0..n)
            .map(|i| {
                let key = items[i].0.as_ref();
                (0..i).find(|&j| items[j].0.as_ref() == key).unwrap_or(i)
            })
            .collect()
    } else {
        let mut seen: HashMap<&str, usize> = HashMap::with_capacity(n);
        items
            .iter()
            .enumerate()
            .map(|(i, (k, _))| *seen.entry(k.as_ref()).or_insert(i))
            .collect()
    };
    if first.iter().enumerate().all(|(i, &f)| f == i) {
        return items;
    }
    let mut slots: Vec<Option<(K, V)>> = items.into_iter().map(Some).collect();
    for (i, &f) in first.iter().enumerate() {
        if f != i
            && let Some((_, v)) = slots[i].take()
            && let Some(slot) = slots[f].as_mut()
        {
            slot.1 = v;
        }
    }
    slots.into_iter().flatten().collect()
}

/// The labels of one point (or of every point of one object or line),
/// borrowed from the payload; lengths are checked as they come in, the count
/// once duplicates are merged ([`LabelSet::finish`]).
#[derive(Debug, Default)]
pub(crate) struct LabelSet<'a> {
    items: Vec<(Cow<'a, str>, Cow<'a, str>)>,
}

impl<'a> LabelSet<'a> {
    pub(crate) fn push(
        &mut self,
        limits: &DecodeLimits,
        key: Cow<'a, str>,
        value: Cow<'a, str>,
    ) -> Result<(), DecodeError> {
        check_key(limits, &key)?;
        check_value(limits, &value)?;
        self.items.push((key, value));
        Ok(())
    }

    /// The unique labels (last value wins) and their bytes as counted by
    /// [`super::limits::point_bytes`].
    pub(crate) fn finish(self) -> Labels<'a> {
        let items = dedupe_last_wins(self.items);
        let bytes = items
            .iter()
            .map(|(k, v)| LABEL_OVERHEAD + k.len() + v.len())
            .sum();
        Labels { items, bytes }
    }
}

/// Unique labels, ready to be copied onto points.
#[derive(Debug)]
pub(crate) struct Labels<'a> {
    items: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    /// Heap bytes one copy costs (see [`super::limits::point_bytes`]).
    pub(crate) bytes: usize,
}

impl Labels<'_> {
    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    /// An owned copy for one point.
    pub(crate) fn to_vec(&self) -> Vec<(String, String)> {
        self.items
            .iter()
            .map(|(k, v)| (k.as_ref().to_owned(), v.as_ref().to_owned()))
            .collect()
    }
}
