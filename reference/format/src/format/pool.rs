//! Worker threads that keep running between calls, for the `Write` paths (a writer cannot
//! scope its threads to one call): jobs go in through a bounded queue, results come back on
//! another channel, in whatever order they finish. Dropping the pool closes the queue and
//! joins the workers once the jobs in it are done.

use super::FormatError;
use std::io;
use std::sync::mpsc::{channel, sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

pub(crate) struct Pool<In, Out> {
    jobs: Option<SyncSender<In>>,
    done: Receiver<Out>,
    threads: Vec<JoinHandle<()>>,
}

impl<In: Send + 'static, Out: Send + 'static> Pool<In, Out> {
    /// One thread named `name` per element of `states`, each running `work` on its state
    /// for every job it takes; at most `queue` jobs wait.
    pub(crate) fn start<S: Send + 'static>(
        name: &str,
        queue: usize,
        states: Vec<S>,
        work: fn(&mut S, In) -> Out,
    ) -> Result<Self, FormatError> {
        let (jobs_tx, jobs_rx) = sync_channel::<In>(queue);
        let jobs_rx = Arc::new(Mutex::new(jobs_rx));
        let (done_tx, done) = channel::<Out>();
        let mut threads = Vec::with_capacity(states.len());
        for mut state in states {
            let (jobs_rx, done_tx) = (Arc::clone(&jobs_rx), done_tx.clone());
            let spawned = std::thread::Builder::new()
                .name(name.into())
                .spawn(move || loop {
                    let job = match jobs_rx.lock().map(|rx| rx.recv()) {
                        Ok(Ok(job)) => job,
                        _ => return,
                    };
                    if done_tx.send(work(&mut state, job)).is_err() {
                        return;
                    }
                })
                .map_err(|e| FormatError::Io(io::Error::other(format!("no thread: {e}"))))?;
            threads.push(spawned);
        }
        Ok(Pool {
            jobs: Some(jobs_tx),
            done,
            threads,
        })
    }

    /// Queues `job` (waiting while the queue is full); false if the workers are gone.
    pub(crate) fn send(&self, job: In) -> bool {
        self.jobs
            .as_ref()
            .is_some_and(|jobs| jobs.send(job).is_ok())
    }

    /// A finished job: waiting for one if `wait`, else only if one is ready. `Err` when
    /// every worker has stopped.
    pub(crate) fn next(&self, wait: bool) -> Result<Option<Out>, FormatError> {
        let stopped = || FormatError::Crypto("a worker thread stopped".into());
        if wait {
            return self.done.recv().map(Some).map_err(|_| stopped());
        }
        match self.done.try_recv() {
            Ok(out) => Ok(Some(out)),
            Err(std::sync::mpsc::TryRecvError::Empty) => Ok(None),
            Err(std::sync::mpsc::TryRecvError::Disconnected) => Err(stopped()),
        }
    }
}

impl<In, Out> Drop for Pool<In, Out> {
    fn drop(&mut self) {
        // Closing the job queue ends every worker once the jobs in it are done.
        self.jobs = None;
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}
