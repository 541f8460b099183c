//! The memory budget a configuration implies: every fixed table and buffer, summed.
//!
//! `telegen check` prints it; the figures are the bytes each structure allocates at start-up.

/// One line of the budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Item {
    pub what: &'static str,
    pub bytes: usize,
}

/// A list of budget items and their sum.
#[derive(Debug, Default, Clone)]
pub struct Budget {
    pub items: heapless::Vec<Item, 24>,
}

impl Budget {
    pub fn add(&mut self, what: &'static str, bytes: usize) {
        // Twenty-four lines are more than the agent has structures.
        let _ = self.items.push(Item { what, bytes });
    }

    pub fn total(&self) -> usize {
        self.items.iter().map(|i| i.bytes).sum()
    }
}
