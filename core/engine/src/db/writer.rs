//! Write-behind for the hot rows (bindings and call records): a dedicated thread
//! with its own SQLite connection runs the writes queued by the engine task, as many
//! as are waiting in one transaction (group commit), so the SIP task never waits
//! for the disk and a burst of calls costs one commit, not one per row.
//!
//! Durability stays what SQLite in WAL mode gives a committed transaction: a job's
//! `done` callback runs only after the transaction holding its writes committed,
//! so an answer sent from it (the registrar's 200) promises a row that survives a
//! `kill -9`. Writes queued without a callback (call records) reach the disk within
//! one batch, normally a millisecond or two; a `kill -9` inside that window loses
//! them, as it would lose the call they describe.

use std::path::PathBuf;
use std::sync::mpsc;
use std::thread::JoinHandle;

use rusqlite::Connection;

use super::DbError;

/// One write: statements run inside the batch's transaction.
pub(super) type Op = Box<dyn FnOnce(&Connection) -> Result<(), DbError> + Send>;
/// Told the outcome of a job's writes once their transaction committed (or failed).
pub type Done = Box<dyn FnOnce(Result<(), String>) + Send>;

enum Job {
    Write(Op, Option<Done>),
    /// Answered once everything queued before it is committed.
    Sync(mpsc::SyncSender<()>),
}

/// Most jobs in one transaction (bounds the time a commit holds the write lock).
const MAX_BATCH: usize = 2048;
/// After a commit the thread waits this long before the next one, so jobs queued
/// meanwhile share a transaction and the engine task does not wake the thread for
/// each one. A job arriving while the thread is idle is committed at once; under
/// load this is the most a job waits for the batch before its own.
const GROUP_WINDOW: std::time::Duration = std::time::Duration::from_millis(2);

/// The queue and its thread; dropping it commits what is queued and joins the thread.
#[derive(Debug)]
pub(super) struct Writer {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    /// Opens a second connection to `path` and starts the thread; `None` when no
    /// thread can be started (the caller then writes directly).
    pub(super) fn start(path: PathBuf) -> Result<Option<Writer>, DbError> {
        let conn = Connection::open(path)?;
        // Same settings as the main connection: WAL, NORMAL (a committed transaction
        // survives a process crash), foreign keys, wait for the other connection.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", true)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.set_prepared_statement_cache_capacity(64);
        let (jobs, rx) = mpsc::channel();
        let thread = match std::thread::Builder::new()
            .name("vaxel-db-writer".into())
            .spawn(move || run(conn, rx))
        {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!("no database writer thread ({e}): writing directly");
                return Ok(None);
            }
        };
        Ok(Some(Writer {
            jobs: Some(jobs),
            thread: Some(thread),
        }))
    }

    /// Queues `op`; `done` (if any) is told the outcome after the commit. Returns the
    /// job back when the thread is gone (only after a panic in it).
    pub(super) fn write(&self, op: Op, done: Option<Done>) -> Result<(), (Op, Option<Done>)> {
        match &self.jobs {
            Some(j) => j.send(Job::Write(op, done)).map_err(|e| match e.0 {
                Job::Write(op, done) => (op, done),
                Job::Sync(_) => unreachable!("sent a write"),
            }),
            None => Err((op, done)),
        }
    }

    /// Waits until everything queued so far is committed (before reading rows that
    /// may still be queued).
    pub(super) fn sync(&self) {
        let (tx, rx) = mpsc::sync_channel(1);
        if let Some(j) = &self.jobs
            && j.send(Job::Sync(tx)).is_ok()
        {
            let _ = rx.recv();
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(mut conn: Connection, rx: mpsc::Receiver<Job>) {
    let mut batch = Vec::new();
    while let Ok(first) = rx.recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        commit(&mut conn, &mut batch);
        std::thread::sleep(GROUP_WINDOW);
    }
}

/// Runs a batch in one transaction, then tells each job its outcome.
fn commit(conn: &mut Connection, batch: &mut Vec<Job>) {
    let mut outcomes: Vec<Result<(), String>> = Vec::with_capacity(batch.len());
    let committed = (|| {
        let tx = conn.transaction()?;
        for job in batch.iter_mut() {
            if let Job::Write(op, _) = job {
                // Each op is taken once; a placeholder keeps the job's callback.
                let op = std::mem::replace(op, Box::new(|_| Ok(())));
                outcomes.push(op(&tx).map_err(|e| e.to_string()));
            }
        }
        tx.commit()
    })();
    if let Err(e) = &committed {
        tracing::warn!("cannot commit {} queued writes: {e}", batch.len());
    }
    let mut outcomes = outcomes.into_iter();
    for job in batch.drain(..) {
        match job {
            Job::Write(_, done) => {
                let outcome = outcomes.next().unwrap_or(Ok(()));
                let outcome = match &committed {
                    Ok(()) => outcome,
                    Err(e) => Err(e.to_string()),
                };
                if let Err(e) = &outcome {
                    tracing::warn!("a queued write failed: {e}");
                }
                if let Some(done) = done {
                    done(outcome);
                }
            }
            Job::Sync(reply) => {
                let _ = reply.send(());
            }
        }
    }
}
