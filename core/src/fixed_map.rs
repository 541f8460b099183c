//! A hash map whose capacity is fixed when it is built.
//!
//! Open addressing with linear probing and backward-shift deletion (no tombstones), over one
//! slot array allocated at construction. Inserting into a full map is an error, never growth.
//! Slots number 3/2 of the capacity (a full map is two-thirds occupied, so probes stay short),
//! not rounded to a power of two: a key's home slot is its hash scaled to the slot count
//! (multiply-shift), which costs no division and wastes no memory on rounding.

use alloc::vec::Vec;
use core::hash::{Hash, Hasher};

/// The map holds `capacity` entries already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

/// FNV-1a, 64-bit: small, deterministic, good enough for keys the kernel chose.
#[derive(Clone, Copy)]
struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        // Mixed so that the high bits, which choose the home slot, depend on every byte.
        (self.0 ^ (self.0 >> 29)).wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

fn hash_of<K: Hash>(k: &K) -> u64 {
    let mut h = Fnv(0xcbf2_9ce4_8422_2325);
    k.hash(&mut h);
    h.finish()
}

/// A map of at most `capacity` entries, allocated once.
pub struct FixedMap<K, V> {
    slots: Vec<Option<(K, V)>>,
    len: usize,
    capacity: usize,
}

impl<K: Hash + Eq, V> FixedMap<K, V> {
    /// Builds an empty map that can hold `capacity` entries (at least one).
    pub fn with_capacity(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        let n = Self::slot_count(capacity);
        let mut slots = Vec::with_capacity(n);
        slots.resize_with(n, || None);
        Self {
            slots,
            len: 0,
            capacity,
        }
    }

    /// Slots used for a given capacity (what the memory budget counts).
    pub fn slot_count(capacity: usize) -> usize {
        capacity.max(1) * 3 / 2 + 1
    }

    /// Bytes the slot array takes for a given capacity.
    pub fn bytes_for(capacity: usize) -> usize {
        Self::slot_count(capacity) * core::mem::size_of::<Option<(K, V)>>()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The slot where `k` belongs: the hash's high 32 bits scaled to the slot count (fewer
    /// than 2^32 slots).
    fn home(&self, k: &K) -> usize {
        (((hash_of(k) >> 32) * self.slots.len() as u64) >> 32) as usize
    }

    /// The slot after `i`, cyclically.
    fn next(&self, i: usize) -> usize {
        if i + 1 == self.slots.len() { 0 } else { i + 1 }
    }

    fn find(&self, k: &K) -> Result<usize, usize> {
        let mut i = self.home(k);
        loop {
            match &self.slots[i] {
                None => return Err(i),
                Some((key, _)) if key == k => return Ok(i),
                Some(_) => i = self.next(i),
            }
        }
    }

    pub fn get(&self, k: &K) -> Option<&V> {
        self.find(k)
            .ok()
            .and_then(|i| self.slots[i].as_ref().map(|(_, v)| v))
    }

    pub fn get_mut(&mut self, k: &K) -> Option<&mut V> {
        match self.find(k) {
            Ok(i) => self.slots[i].as_mut().map(|(_, v)| v),
            Err(_) => None,
        }
    }

    /// Inserts or replaces; returns the previous value. `Err(Full)` when the key is new and
    /// the map is at capacity (the value is not stored).
    pub fn insert(&mut self, k: K, v: V) -> Result<Option<V>, Full> {
        match self.find(&k) {
            Ok(i) => Ok(self.slots[i].replace((k, v)).map(|(_, old)| old)),
            Err(i) => {
                if self.len >= self.capacity {
                    return Err(Full);
                }
                self.slots[i] = Some((k, v));
                self.len += 1;
                Ok(None)
            }
        }
    }

    /// The value for `k`, inserted with `make` when absent; `Err(Full)` when there is no room.
    pub fn get_or_insert_with(&mut self, k: K, make: impl FnOnce() -> V) -> Result<&mut V, Full> {
        let i = match self.find(&k) {
            Ok(i) => i,
            Err(i) => {
                if self.len >= self.capacity {
                    return Err(Full);
                }
                self.slots[i] = Some((k, make()));
                self.len += 1;
                i
            }
        };
        // The slot was just found or filled.
        self.slots[i].as_mut().map(|(_, v)| v).ok_or(Full)
    }

    pub fn remove(&mut self, k: &K) -> Option<V> {
        let Ok(mut hole) = self.find(k) else {
            return None;
        };
        let removed = self.slots[hole].take().map(|(_, v)| v);
        self.len -= 1;
        // Backward-shift: pull later entries of the cluster into the hole when their home
        // slot does not lie cyclically between the hole and their current slot.
        let mut j = hole;
        loop {
            j = self.next(j);
            let home = match &self.slots[j] {
                None => break,
                Some((key, _)) => self.home(key),
            };
            let stays = if hole <= j {
                hole < home && home <= j
            } else {
                hole < home || home <= j
            };
            if !stays {
                self.slots[hole] = self.slots[j].take();
                hole = j;
            }
        }
        removed
    }

    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.slots
            .iter()
            .filter_map(|s| s.as_ref().map(|(k, v)| (k, v)))
    }

    /// Removes every entry for which `keep` returns false.
    pub fn retain(&mut self, mut keep: impl FnMut(&K, &V) -> bool) {
        // Collecting keys would allocate; instead restart the scan after each removal,
        // which is fine for the rare sweeps this serves.
        let mut i = 0;
        while i < self.slots.len() {
            let drop_it = matches!(&self.slots[i], Some((k, v)) if !keep(k, v));
            if drop_it {
                self.slots[i].take().map(|(_, v)| v);
                self.len -= 1;
                self.reinsert_cluster_after(i);
            } else {
                i += 1;
            }
        }
    }

    fn reinsert_cluster_after(&mut self, hole: usize) {
        let mut j = self.next(hole);
        while let Some((k, v)) = self.slots[j].take() {
            let mut i = self.home(&k);
            while self.slots[i].is_some() {
                i = self.next(i);
            }
            self.slots[i] = Some((k, v));
            j = self.next(j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_get_remove_and_full() {
        let mut m = FixedMap::with_capacity(3);
        assert_eq!(m.insert(1u64, 'a'), Ok(None));
        assert_eq!(m.insert(2, 'b'), Ok(None));
        assert_eq!(m.insert(3, 'c'), Ok(None));
        assert_eq!(m.insert(4, 'd'), Err(Full));
        assert_eq!(m.insert(2, 'B'), Ok(Some('b')), "replacing needs no room");
        assert_eq!(m.remove(&1), Some('a'));
        assert_eq!(m.insert(4, 'd'), Ok(None));
        assert_eq!(m.get(&2), Some(&'B'));
        assert_eq!(m.get(&4), Some(&'d'));
        assert_eq!(m.get(&1), None);
        assert_eq!(m.len(), 3);
    }

    #[test]
    fn survives_churn_against_a_reference() {
        // Slot counts of every kind (1 entry: 2 slots; 64: 97; 1000: 1501), each wrapping.
        for (cap, keys) in [(1, 3), (2, 5), (7, 11), (64, 97), (1000, 1500)] {
            churn(cap, keys);
        }
    }

    fn churn(cap: usize, keys: u64) {
        // Deterministic pseudo-random churn compared with BTreeMap.
        let mut m = FixedMap::with_capacity(cap);
        let mut r = alloc::collections::BTreeMap::new();
        let mut x: u64 = 12345;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let k = x % keys;
            if x & 1 == 0 {
                let ok = m.insert(k, x).is_ok();
                if ok {
                    r.insert(k, x);
                } else {
                    assert_eq!(r.len(), cap);
                    assert!(!r.contains_key(&k));
                }
            } else {
                assert_eq!(m.remove(&k), r.remove(&k));
            }
            assert_eq!(m.len(), r.len());
        }
        for (k, v) in &r {
            assert_eq!(m.get(k), Some(v));
        }
        m.retain(|k, _| k % 2 == 0);
        r.retain(|k, _| k % 2 == 0);
        assert_eq!(m.len(), r.len());
        for (k, v) in &r {
            assert_eq!(m.get(k), Some(v));
        }
    }
}
