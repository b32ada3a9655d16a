//! A minimal slab: entries addressed by a stable key, vacant slots reused, so a
//! long-lived parent with a churn of short-lived children stays at its peak size.

use std::mem;

#[derive(Debug)]
pub(crate) struct Slab<T> {
    entries: Vec<Entry<T>>,
    /// Head of the free list; `entries.len()` when there is none.
    next_free: usize,
    len: usize,
}

#[derive(Debug)]
enum Entry<T> {
    Occupied(T),
    Vacant(usize),
}

/// Capacity kept when a slab empties; beyond it the memory of a past peak is freed.
const KEEP: usize = 64;

impl<T> Slab<T> {
    pub(crate) const fn new() -> Self {
        Slab {
            entries: Vec::new(),
            next_free: 0,
            len: 0,
        }
    }

    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    #[inline]
    pub(crate) fn insert(&mut self, value: T) -> usize {
        let key = self.next_free;
        if key == self.entries.len() {
            self.entries.push(Entry::Occupied(value));
            self.next_free = key + 1;
        } else {
            match mem::replace(&mut self.entries[key], Entry::Occupied(value)) {
                Entry::Vacant(next) => self.next_free = next,
                Entry::Occupied(_) => unreachable!("the free list points at a vacant entry"),
            }
        }
        self.len += 1;
        key
    }

    /// Removes and returns the entry at `key`, or `None` if it is vacant or absent.
    #[inline]
    pub(crate) fn remove(&mut self, key: usize) -> Option<T> {
        let entry = self.entries.get_mut(key)?;
        if matches!(entry, Entry::Vacant(_)) {
            return None;
        }
        let Entry::Occupied(value) = mem::replace(entry, Entry::Vacant(self.next_free)) else {
            return None;
        };
        self.next_free = key;
        self.len -= 1;
        if self.len == 0 {
            self.entries.clear();
            self.next_free = 0;
            if self.entries.capacity() > KEEP {
                self.entries.shrink_to(KEEP);
            }
        }
        Some(value)
    }

    #[inline]
    pub(crate) fn get_mut(&mut self, key: usize) -> Option<&mut T> {
        match self.entries.get_mut(key)? {
            Entry::Occupied(value) => Some(value),
            Entry::Vacant(_) => None,
        }
    }

    /// The occupied entries.
    #[allow(dead_code)]
    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        self.entries.iter().filter_map(|entry| match entry {
            Entry::Occupied(value) => Some(value),
            Entry::Vacant(_) => None,
        })
    }

    /// Takes every entry out, leaving the slab empty and unallocated.
    pub(crate) fn take_all(&mut self) -> impl Iterator<Item = T> + use<T> {
        let entries = mem::take(&mut self.entries);
        self.next_free = 0;
        self.len = 0;
        entries.into_iter().filter_map(|entry| match entry {
            Entry::Occupied(value) => Some(value),
            Entry::Vacant(_) => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stable_and_reused() {
        let mut slab = Slab::new();
        let a = slab.insert("a");
        let b = slab.insert("b");
        let c = slab.insert("c");
        assert_eq!(slab.remove(b), Some("b"));
        assert_eq!(slab.remove(b), None);
        assert_eq!(slab.insert("d"), b);
        assert_eq!(slab.get_mut(a), Some(&mut "a"));
        assert_eq!(slab.get_mut(c), Some(&mut "c"));
        assert_eq!(slab.len(), 3);
        let mut all: Vec<_> = slab.take_all().collect();
        all.sort();
        assert_eq!(all, ["a", "c", "d"]);
        assert_eq!(slab.len(), 0);
        assert_eq!(slab.remove(a), None);
    }

    #[test]
    fn empties_back_to_small() {
        let mut slab = Slab::new();
        let keys: Vec<_> = (0..10_000).map(|i| slab.insert(i)).collect();
        for key in keys {
            slab.remove(key);
        }
        assert_eq!(slab.len(), 0);
        assert!(slab.entries.capacity() <= KEEP);
        assert_eq!(slab.insert(1), 0);
    }
}
