//! Counting gates: at most N things in flight per key (executions per session and per user,
//! file transfers per user). A pass frees its places when dropped, however the request ends.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

#[derive(Default)]
pub struct Gate {
    in_flight: Mutex<HashMap<String, usize>>,
    freed: Notify,
}

/// Places held in a [`Gate`]; dropping it gives them back.
pub struct Pass {
    gate: Arc<Gate>,
    keys: Vec<String>,
}

impl Gate {
    /// Take one place under every key, or none: `Err(i)` names the first key (index into
    /// `keys`) that is full.
    pub fn try_enter(self: &Arc<Self>, keys: &[(String, usize)]) -> Result<Pass, usize> {
        let mut map = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(full) = keys
            .iter()
            .position(|(key, limit)| map.get(key).copied().unwrap_or(0) >= *limit)
        {
            return Err(full);
        }
        for (key, _) in keys {
            *map.entry(key.clone()).or_default() += 1;
        }
        Ok(Pass {
            gate: self.clone(),
            keys: keys.iter().map(|(k, _)| k.clone()).collect(),
        })
    }

    /// Wait until there is a place under every key (background tasks queue instead of failing).
    pub async fn enter(self: &Arc<Self>, keys: &[(String, usize)]) -> Pass {
        loop {
            let freed = self.freed.notified();
            if let Ok(pass) = self.try_enter(keys) {
                return pass;
            }
            freed.await;
        }
    }
}

impl Drop for Pass {
    fn drop(&mut self) {
        let mut map = self
            .gate
            .in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for key in &self.keys {
            if let Some(n) = map.get_mut(key) {
                *n -= 1;
                if *n == 0 {
                    map.remove(key);
                }
            }
        }
        drop(map);
        self.gate.freed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn places_are_counted_per_key_and_given_back() {
        let gate = Arc::new(Gate::default());
        let keys = |s: &str| vec![(format!("s:{s}"), 2), ("u:1".to_owned(), 3)];
        let a = gate.try_enter(&keys("a")).unwrap();
        let _b = gate.try_enter(&keys("a")).unwrap();
        assert_eq!(gate.try_enter(&keys("a")).err(), Some(0), "session full");
        let _c = gate.try_enter(&keys("b")).unwrap();
        assert_eq!(gate.try_enter(&keys("b")).err(), Some(1), "user full");
        let waiter = {
            let gate = gate.clone();
            tokio::spawn(async move { gate.enter(&keys("b")).await })
        };
        drop(a);
        let _d = tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap();
    }
}
