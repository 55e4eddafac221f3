//! The read loop both monitors run over their kernel queue, a non-blocking fd: what the result
//! of a `read()` means (records, drained, interrupted, buffer too small, failed), when one pass
//! stops ([`ReadOutcome`]) and when a burst of records ends.
//!
//! Owns: [`KernelQueue`] (the fd, its read buffer, the batch size), [`Queue`] with its
//! [`Queue::read`], and [`Pass`]. Must not touch: record layouts and their translation into
//! events (each monitor's [`Queue::records`]), paths, syncs.

use std::fs::File;
use std::io::{self, Read};
use std::mem;

use super::{FsEvent, ReadOutcome, WatchError, READ_BATCH};

/// A monitor's kernel queue: its fd (non-blocking), the buffer it is read into, and how many
/// events one pass returns at most.
#[derive(Debug)]
pub(super) struct KernelQueue {
    pub(super) fd: File,
    pub(super) buf: Vec<u8>,
    /// `buf` doubles up to this when a `read()` says `EINVAL` (the next record does not fit).
    max_buf: usize,
    /// [`READ_BATCH`]; smaller in tests.
    pub(super) batch: usize,
}

impl KernelQueue {
    /// A queue read `buf` bytes at a time, up to `max_buf`.
    pub(super) fn new(fd: File, buf: usize, max_buf: usize) -> Self {
        KernelQueue {
            fd,
            buf: vec![0; buf],
            max_buf,
            batch: READ_BATCH,
        }
    }
}

/// One pass over a monitor's queue: the monitor, the events translated so far and the question
/// whether the syncs watch a directory.
pub(super) struct Pass<'p, M> {
    pub(super) m: &'p mut M,
    pub(super) out: &'p mut Vec<FsEvent>,
    pub(super) concerns: &'p mut dyn FnMut(&[u8]) -> bool,
}

/// A monitor read through a [`KernelQueue`].
pub(super) trait Queue: Sized {
    fn queue(&mut self) -> &mut KernelQueue;

    /// Translates the records of one `read()` into `pass.out`; `false` at an overflow, which
    /// drops the rest of the queue.
    fn records(pass: &mut Pass<'_, Self>, bytes: &[u8]) -> Result<bool, WatchError>;

    /// The queue is drained, or reading it failed: the burst of records is over.
    fn burst_end(_pass: &mut Pass<'_, Self>) -> Result<(), WatchError> {
        Ok(())
    }

    /// Before a pass.
    fn pass_start(&mut self) {}

    /// After a pass, whatever it returned.
    fn pass_end(&mut self, _result: &Result<ReadOutcome, WatchError>) {}

    /// Reads the queued records and appends their translations to `out` in order, until the
    /// queue is drained (`Ok`), a record says the kernel overflowed (`Overflow`), or the batch
    /// is full (`More`). An interrupted `read()` is retried; one refused with `EINVAL` grows
    /// the buffer up to its maximum. An end of file (a queue has none) or another error ends
    /// the burst and is returned.
    fn read(
        &mut self,
        out: &mut Vec<FsEvent>,
        concerns: &mut dyn FnMut(&[u8]) -> bool,
    ) -> Result<ReadOutcome, WatchError> {
        self.pass_start();
        let mut buf = mem::take(&mut self.queue().buf);
        let result = read_pass(
            &mut Pass {
                m: self,
                out,
                concerns,
            },
            &mut buf,
        );
        self.queue().buf = buf;
        self.pass_end(&result);
        result
    }
}

fn read_pass<M: Queue>(
    pass: &mut Pass<'_, M>,
    buf: &mut Vec<u8>,
) -> Result<ReadOutcome, WatchError> {
    loop {
        let queue = pass.m.queue();
        let failed = match queue.fd.read(buf) {
            Ok(0) => io::ErrorKind::UnexpectedEof.into(),
            Ok(n) => {
                let batch = queue.batch;
                if !M::records(pass, &buf[..n])? {
                    return Ok(ReadOutcome::Overflow);
                }
                if pass.out.len() >= batch {
                    return Ok(ReadOutcome::More);
                }
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                M::burst_end(pass)?;
                return Ok(ReadOutcome::Ok);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) && buf.len() < queue.max_buf => {
                buf.resize(buf.len() * 2, 0);
                continue;
            }
            Err(e) => e,
        };
        M::burst_end(pass)?;
        return Err(WatchError::Io(failed));
    }
}
