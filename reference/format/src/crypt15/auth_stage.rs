//! The authentication stage of crypt15 decryption (MD5 over the ciphertext, AES-GCM
//! decryption), on a thread of its own once a file is longer than one block, so that it
//! overlaps the inflating and writing the caller does. Blocks go through in order, in a
//! fixed set of buffers: memory does not depend on the file's size.

use super::Crypt15Error;
use openssl::hash::Hasher;
use openssl::symm::Crypter;
use std::collections::VecDeque;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::JoinHandle;
use zeroize::Zeroize;

/// Blocks handed to the thread and not yet taken back; with the one being filled and the
/// one being written, three blocks are out at most.
const IN_FLIGHT: usize = 2;

/// One block's buffers: ciphertext in, plaintext out (`plain[..count]`).
pub(super) struct Block {
    pub cipher: Vec<u8>,
    pub plain: Vec<u8>,
    pub count: usize,
}

impl Block {
    fn new(cipher_capacity: usize, plain_len: usize) -> Self {
        Block {
            cipher: Vec::with_capacity(cipher_capacity),
            plain: vec![0u8; plain_len],
            count: 0,
        }
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        self.plain.zeroize();
    }
}

/// The running digest and cipher.
pub(super) struct Auth {
    pub md5: Hasher,
    pub gcm: Crypter,
}

impl Auth {
    fn run(&mut self, block: &mut Block) -> Result<(), Crypt15Error> {
        if block.plain.len() < block.cipher.len() + 32 {
            block.plain.resize(block.cipher.len() + 32, 0);
        }
        self.md5.update(&block.cipher)?;
        block.count = self.gcm.update(&block.cipher, &mut block.plain)?;
        Ok(())
    }
}

type Done = Result<Block, Crypt15Error>;

enum Mode {
    /// Until a second block is needed: no thread for a file of one block.
    Here(Option<Auth>, VecDeque<Done>),
    Thread {
        work: Option<SyncSender<Block>>,
        done: Receiver<Done>,
        thread: Option<JoinHandle<Auth>>,
    },
}

/// Takes ciphertext blocks in order and gives back their plaintext in order.
pub(super) struct AuthStage {
    mode: Mode,
    spare: Vec<Block>,
    out: usize,
    submitted: u64,
    cipher_capacity: usize,
    plain_len: usize,
}

impl AuthStage {
    /// A stage for blocks of up to `cipher_capacity` bytes.
    pub(super) fn new(auth: Auth, cipher_capacity: usize) -> Self {
        AuthStage {
            mode: Mode::Here(Some(auth), VecDeque::new()),
            spare: Vec::new(),
            out: 0,
            submitted: 0,
            cipher_capacity,
            plain_len: cipher_capacity + 32,
        }
    }

    /// An empty buffer for the next block (one comes back from the stage first if all are
    /// out).
    pub(super) fn buffer(&mut self) -> Block {
        self.spare
            .pop()
            .unwrap_or_else(|| Block::new(self.cipher_capacity, self.plain_len))
    }

    /// Whether a block must be taken back before another is submitted.
    pub(super) fn full(&self) -> bool {
        self.out >= IN_FLIGHT
    }

    /// Hands `block.cipher` to the stage.
    pub(super) fn submit(&mut self, mut block: Block) -> Result<(), Crypt15Error> {
        self.submitted += 1;
        if let Mode::Here(auth, queue) = &mut self.mode {
            let Some(mut here) = auth.take() else {
                return Err(stopped());
            };
            if self.submitted == 1 {
                // The first block is decrypted here; a second one starts the thread.
                let result = here.run(&mut block).map(|()| block);
                *auth = Some(here);
                queue.push_back(result);
                self.out += 1;
                return Ok(());
            }
            let queued = std::mem::take(queue);
            self.start(here, queued)?;
        }
        match &self.mode {
            Mode::Thread {
                work: Some(work), ..
            } => {
                work.send(block).map_err(|_| stopped())?;
                self.out += 1;
                Ok(())
            }
            _ => Err(stopped()),
        }
    }

    fn start(&mut self, mut auth: Auth, queued: VecDeque<Done>) -> Result<(), Crypt15Error> {
        let (work_tx, work_rx) = sync_channel::<Block>(IN_FLIGHT);
        let (done_tx, done_rx) = sync_channel::<Done>(IN_FLIGHT + queued.len());
        for done in queued {
            let _ = done_tx.send(done);
        }
        let thread = std::thread::Builder::new()
            .name("crypt15-auth".into())
            .spawn(move || {
                for mut block in work_rx {
                    let result = auth.run(&mut block).map(|()| block);
                    let failed = result.is_err();
                    if done_tx.send(result).is_err() || failed {
                        break;
                    }
                }
                auth
            })
            .map_err(|e| Crypt15Error::Crypto(format!("cannot start a thread: {e}")))?;
        self.mode = Mode::Thread {
            work: Some(work_tx),
            done: done_rx,
            thread: Some(thread),
        };
        Ok(())
    }

    /// The next block's plaintext, if one is out; `wait` blocks until it is ready.
    pub(super) fn take(&mut self, wait: bool) -> Option<Result<Block, Crypt15Error>> {
        if self.out == 0 {
            return None;
        }
        let done = match &mut self.mode {
            Mode::Here(_, queue) => queue.pop_front()?,
            Mode::Thread { done, .. } if wait => done.recv().unwrap_or_else(|_| Err(stopped())),
            Mode::Thread { done, .. } => done.try_recv().ok()?,
        };
        self.out -= 1;
        Some(done)
    }

    /// Takes a written block's buffers back for reuse.
    pub(super) fn recycle(&mut self, mut block: Block) {
        block.cipher.clear();
        block.count = 0;
        self.spare.push(block);
    }

    /// After every block was taken back: the digest and cipher, to finish the file.
    pub(super) fn finish(mut self) -> Result<Auth, Crypt15Error> {
        match &mut self.mode {
            Mode::Here(auth, _) => auth.take().ok_or_else(stopped),
            Mode::Thread { work, thread, .. } => {
                *work = None;
                thread
                    .take()
                    .ok_or_else(stopped)?
                    .join()
                    .map_err(|_| Crypt15Error::Crypto("the authentication thread panicked".into()))
            }
        }
    }
}

impl Drop for AuthStage {
    fn drop(&mut self) {
        if let Mode::Thread { work, thread, done } = &mut self.mode {
            // Ends the thread: no more work, and nobody waiting for what it sends.
            *work = None;
            while done.try_recv().is_ok() {}
            if let Some(thread) = thread.take() {
                // Unblock a thread waiting to send, then wait for it.
                let (_tx, rx) = sync_channel::<Done>(0);
                let _ = std::mem::replace(done, rx);
                let _ = thread.join();
            }
        }
    }
}

fn stopped() -> Crypt15Error {
    Crypt15Error::Crypto("the authentication thread stopped".into())
}
