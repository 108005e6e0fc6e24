//! A bitmap of node numbers 0..=255, the shape of the kernel's node bitmaps.

use std::fmt;

/// A set of node numbers (0..=255). Iteration is in ascending order, as the kernel walks bitmaps.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct NodeMap([u64; 4]);

impl NodeMap {
    pub const fn new() -> Self {
        NodeMap([0; 4])
    }

    /// Nodes `0..count` (count clamped to 256).
    pub fn first_n(count: usize) -> Self {
        let mut map = NodeMap::new();
        for n in 0..count.min(256) {
            map.insert(n as u8);
        }
        map
    }

    pub fn insert(&mut self, node: u8) {
        self.0[usize::from(node >> 6)] |= 1u64 << (node & 63);
    }

    pub fn remove(&mut self, node: u8) {
        self.0[usize::from(node >> 6)] &= !(1u64 << (node & 63));
    }

    pub fn contains(&self, node: u8) -> bool {
        self.0[usize::from(node >> 6)] & (1u64 << (node & 63)) != 0
    }

    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|w| *w == 0)
    }

    pub fn len(&self) -> usize {
        self.0.iter().map(|w| w.count_ones() as usize).sum()
    }

    pub fn union(&self, other: &NodeMap) -> NodeMap {
        let mut out = *self;
        for (a, b) in out.0.iter_mut().zip(other.0.iter()) {
            *a |= *b;
        }
        out
    }

    /// Lowest node in the set.
    pub fn first(&self) -> Option<u8> {
        self.iter().next()
    }

    /// Highest node in the set.
    pub fn last(&self) -> Option<u8> {
        self.iter().last()
    }

    pub fn iter(&self) -> impl Iterator<Item = u8> + '_ {
        (0u16..256).filter_map(move |n| {
            let n = n as u8;
            self.contains(n).then_some(n)
        })
    }
}

impl FromIterator<u8> for NodeMap {
    fn from_iter<I: IntoIterator<Item = u8>>(iter: I) -> Self {
        let mut map = NodeMap::new();
        for n in iter {
            map.insert(n);
        }
        map
    }
}

/// Space-separated decimal node numbers, as the kernel's debugfs `livenodes` prints them.
impl fmt::Display for NodeMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for n in self.iter() {
            if !first {
                f.write_str(" ")?;
            }
            first = false;
            write!(f, "{n}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for NodeMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeMap[{self}]")
    }
}

#[cfg(test)]
mod tests {
    use super::NodeMap;

    #[test]
    fn insert_remove_iterate_in_order() {
        let mut m: NodeMap = [200u8, 3, 64, 0, 255].into_iter().collect();
        assert_eq!(m.iter().collect::<Vec<_>>(), vec![0, 3, 64, 200, 255]);
        assert_eq!((m.first(), m.last(), m.len()), (Some(0), Some(255), 5));
        m.remove(0);
        m.remove(255);
        assert_eq!(m.to_string(), "3 64 200");
        assert!(!m.contains(0) && m.contains(64));
        assert_eq!(NodeMap::first_n(3).to_string(), "0 1 2");
    }
}
