//! `--jobs N`: cases spread over N workers, each with its own state (an adapter process),
//! results in case order.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Runs `work` on every item with at most `jobs` workers; each worker first makes its own
/// state with `init`. The results come back in the items' order.
pub fn map<T: Sync, R: Send, S>(
    items: &[T],
    jobs: usize,
    init: impl Fn() -> anyhow::Result<S> + Sync,
    work: impl Fn(&mut S, &T) -> R + Sync,
) -> anyhow::Result<Vec<R>> {
    if items.is_empty() {
        return Ok(Vec::new());
    }
    let workers = jobs.clamp(1, items.len());
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<R>>> = Mutex::new((0..items.len()).map(|_| None).collect());
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| -> anyhow::Result<()> {
                    let mut state = init()?;
                    loop {
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        let Some(item) = items.get(i) else {
                            return Ok(());
                        };
                        let result = work(&mut state, item);
                        results.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(result);
                    }
                })
            })
            .collect();
        for handle in handles {
            handle
                .join()
                .map_err(|_| anyhow::anyhow!("a worker panicked"))??;
        }
        Ok(())
    })?;
    results
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_iter()
        .map(|r| r.ok_or_else(|| anyhow::anyhow!("a case was not run")))
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn keeps_order_and_uses_every_worker_state() {
        let items: Vec<u32> = (0..100).collect();
        let out = super::map(&items, 4, || Ok(10u32), |s, x| *s + x).unwrap();
        assert_eq!(out, (10..110).collect::<Vec<_>>());
        assert!(super::map(
            &items,
            3,
            || anyhow::bail!("no adapter"),
            |_: &mut (), x| *x
        )
        .is_err());
        assert!(super::map(&[] as &[u32], 3, || Ok(()), |_, x| *x)
            .unwrap()
            .is_empty());
    }
}
