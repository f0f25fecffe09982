//! What a stored response leaves for the next turn that names it in `previous_response_id`: the
//! tool listings its context holds, so they are not fetched again (as OpenAI does). Bounded: the
//! oldest responses are forgotten first.

use std::collections::{HashMap, VecDeque};

use super::events::McpTool;

pub type Listings = Vec<(String, Vec<McpTool>)>;

pub struct Memory {
    capacity: usize,
    order: VecDeque<String>,
    listings: HashMap<String, Listings>,
}

impl Memory {
    pub fn new(capacity: usize) -> Self {
        Memory {
            capacity: capacity.max(1),
            order: VecDeque::new(),
            listings: HashMap::new(),
        }
    }

    pub fn get(&self, response_id: &str) -> Option<Listings> {
        self.listings.get(response_id).cloned()
    }

    pub fn remember(&mut self, response_id: String, listings: Listings) {
        while self.order.len() >= self.capacity {
            if let Some(oldest) = self.order.pop_front() {
                self.listings.remove(&oldest);
            }
        }
        self.order.push_back(response_id.clone());
        self.listings.insert(response_id, listings);
    }
}

/// Listings from the stored context, then from the input; the input's newer listing wins.
pub fn merge(stored: Listings, input: Listings) -> Listings {
    let mut merged: Listings = stored
        .into_iter()
        .filter(|(label, _)| !input.iter().any(|(l, _)| l == label))
        .collect();
    merged.extend(input);
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forgets_the_oldest_beyond_capacity() {
        let mut m = Memory::new(2);
        m.remember("a".into(), vec![("s".into(), Vec::new())]);
        m.remember("b".into(), Vec::new());
        m.remember("c".into(), Vec::new());
        assert!(m.get("a").is_none());
        assert!(m.get("b").is_some() && m.get("c").is_some());
    }

    #[test]
    fn input_listings_replace_stored_ones() {
        let stored = vec![("x".to_owned(), Vec::new()), ("y".to_owned(), Vec::new())];
        let input = vec![("y".to_owned(), Vec::new())];
        let labels: Vec<String> = merge(stored, input).into_iter().map(|(l, _)| l).collect();
        assert_eq!(labels, vec!["x", "y"]);
    }
}
