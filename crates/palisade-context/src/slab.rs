//! A minimal slab: entries addressed by a stable key, vacant slots reused, so a
//! long-lived parent with a churn of short-lived children stays at its peak size.
//!
//! The first entry (key 0) is stored inline, so a node with one listener (a single
//! waiter, the usual case) allocates nothing for it.

use std::mem;

#[derive(Debug)]
pub(crate) struct Slab<T> {
    /// The entry with key 0.
    head: Option<T>,
    /// The entries with keys 1 and up: key `k` is at index `k - 1`.
    entries: Vec<Entry<T>>,
    /// Head of the free list (an index into `entries`); `entries.len()` when there
    /// is none.
    next_free: u32,
    /// 32 bits keep a node small; 2^32 listeners on one node would need hundreds of
    /// gigabytes.
    len: u32,
}

#[derive(Debug)]
enum Entry<T> {
    Occupied(T),
    Vacant(u32),
}

/// Capacity kept when a slab empties; beyond it the memory of a past peak is freed.
const KEEP: usize = 64;

impl<T> Slab<T> {
    pub(crate) const fn new() -> Self {
        Slab {
            head: None,
            entries: Vec::new(),
            next_free: 0,
            len: 0,
        }
    }

    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len as usize
    }

    #[inline]
    pub(crate) fn insert(&mut self, value: T) -> usize {
        self.len += 1;
        if self.head.is_none() {
            self.head = Some(value);
            return 0;
        }
        let index = self.next_free as usize;
        if index == self.entries.len() {
            self.entries.push(Entry::Occupied(value));
            self.next_free += 1;
        } else {
            match mem::replace(&mut self.entries[index], Entry::Occupied(value)) {
                Entry::Vacant(next) => self.next_free = next,
                Entry::Occupied(_) => unreachable!("the free list points at a vacant entry"),
            }
        }
        index + 1
    }

    /// Whether the slab is empty and holds no memory of a past peak.
    #[inline]
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) fn is_unallocated(&self) -> bool {
        self.head.is_none() && self.entries.capacity() == 0
    }

    /// Removes and returns the entry at `key`, or `None` if it is vacant or absent.
    #[inline]
    pub(crate) fn remove(&mut self, key: usize) -> Option<T> {
        let value = match key.checked_sub(1) {
            None => self.head.take()?,
            Some(index) => {
                let entry = self.entries.get_mut(index)?;
                if matches!(entry, Entry::Vacant(_)) {
                    return None;
                }
                let Entry::Occupied(value) = mem::replace(entry, Entry::Vacant(self.next_free))
                else {
                    return None;
                };
                self.next_free = index as u32;
                value
            }
        };
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
        match key.checked_sub(1) {
            None => self.head.as_mut(),
            Some(index) => match self.entries.get_mut(index)? {
                Entry::Occupied(value) => Some(value),
                Entry::Vacant(_) => None,
            },
        }
    }

    /// The occupied entries.
    #[allow(dead_code)]
    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        self.head
            .iter()
            .chain(self.entries.iter().filter_map(|entry| match entry {
                Entry::Occupied(value) => Some(value),
                Entry::Vacant(_) => None,
            }))
    }

    /// Takes every entry out, leaving the slab empty and unallocated: the inline
    /// entry, and the others if there are any.
    pub(crate) fn take_all(&mut self) -> (Option<T>, Option<impl Iterator<Item = T> + use<T>>) {
        let head = self.head.take();
        let entries = mem::take(&mut self.entries);
        self.next_free = 0;
        self.len = 0;
        let rest = (!entries.is_empty()).then(|| {
            entries.into_iter().filter_map(|entry| match entry {
                Entry::Occupied(value) => Some(value),
                Entry::Vacant(_) => None,
            })
        });
        (head, rest)
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
        let (head, rest) = slab.take_all();
        let mut all: Vec<_> = head.into_iter().chain(rest.into_iter().flatten()).collect();
        all.sort();
        assert_eq!(all, ["a", "c", "d"]);
        assert_eq!(slab.len(), 0);
        assert_eq!(slab.remove(a), None);
    }

    #[test]
    fn the_inline_entry_is_reused_before_the_list() {
        let mut slab = Slab::new();
        assert_eq!(slab.insert(10), 0);
        assert!(slab.entries.capacity() == 0);
        assert_eq!(slab.insert(11), 1);
        assert_eq!(slab.insert(12), 2);
        assert_eq!(slab.remove(0), Some(10));
        assert_eq!(slab.get_mut(0), None);
        assert_eq!(slab.insert(13), 0);
        assert_eq!(slab.remove(1), Some(11));
        assert_eq!(slab.insert(14), 1);
        assert_eq!(slab.iter().copied().collect::<Vec<_>>(), [13, 14, 12]);
        assert_eq!(slab.get_mut(3), None);
        assert_eq!(slab.remove(3), None);
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
