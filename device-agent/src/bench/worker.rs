//! The one long-lived thread everything that touches tract runs on, one
//! job at a time; a panic inside a job becomes an error and retires it.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Mutex, mpsc};
use std::thread;

use super::BenchError;

pub(super) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// The worker: jobs go in through the channel; the thread ends when the
/// sender is dropped.
struct Worker {
    jobs: mpsc::Sender<Job>,
}

impl Worker {
    fn spawn() -> Result<Worker, BenchError> {
        let (jobs, queue) = mpsc::channel::<Job>();
        thread::Builder::new()
            .name("padnas-run".into())
            // tract's optimiser recurses over big graphs; the main thread's
            // 8 MiB is the usual budget, a spawned thread only gets 2 MiB.
            .stack_size(16 << 20)
            .spawn(move || {
                for job in queue {
                    job();
                }
            })
            .map_err(|e| BenchError::Internal(format!("cannot start the worker thread: {e}")))?;
        Ok(Worker { jobs })
    }
}

/// The one worker, started on first use; `None` after a panic retired it.
/// Holding the lock while a job runs is what serialises jobs.
static WORKER: Mutex<Option<Worker>> = Mutex::new(None);

/// Runs `f` on the worker thread and turns a panic into an error. After a
/// panic the worker is retired (whatever tract's thread-locals held is
/// dropped with it) and the next job starts a fresh one.
pub(super) fn isolated<T: Send + 'static>(
    doing: &'static str,
    f: impl FnOnce() -> Result<T, BenchError> + Send + 'static,
) -> Result<T, BenchError> {
    let mut worker = WORKER
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let (done, result) = mpsc::sync_channel(1);
    let job: Job = Box::new(move || {
        let _ = done.send(catch_unwind(AssertUnwindSafe(f)));
    });
    let w = match worker.as_ref() {
        Some(w) => w,
        None => worker.insert(Worker::spawn()?),
    };
    // The worker only ends when its sender is dropped, and every job catches
    // its own panic, so a refused send would be a bug; it is still an error.
    if w.jobs.send(job).is_err() {
        *worker = None;
        return Err(BenchError::Internal("the worker thread is gone".into()));
    }
    match result.recv() {
        Ok(Ok(r)) => r,
        Ok(Err(payload)) => {
            *worker = None;
            Err(BenchError::Panicked {
                doing,
                message: panic_message(payload.as_ref()),
            })
        }
        Err(_) => {
            *worker = None;
            Err(BenchError::Internal(format!(
                "the worker thread died while {doing}"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_an_error_and_the_next_job_runs() {
        let e = isolated("testing", || -> Result<(), BenchError> { panic!("boom") })
            .expect_err("panicked");
        assert!(
            matches!(&e, BenchError::Panicked { doing: "testing", message } if message == "boom"),
            "{e:?}"
        );
        // A fresh worker takes the next job; the same worker then keeps
        // taking them.
        let first = isolated("testing", || Ok(thread::current().id())).expect("runs");
        let second = isolated("testing", || Ok(thread::current().id())).expect("runs");
        assert_eq!(first, second, "one long-lived worker");
        assert_ne!(first, thread::current().id());
    }
}
