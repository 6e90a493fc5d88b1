//! Test support: what a service logged, captured on the test's own thread.
//!
//! A test that installs its own subscriber with `tracing::subscriber::set_default` can miss
//! events: `tracing` caches each callsite's interest for all threads, and a callsite first
//! reached on another test's thread, where no subscriber wants it, is cached as never wanted.
//! Instead, [`LogCapture`] installs one process-wide subscriber, once, whose filter asks for every
//! event whether the thread emitting it captures, and never lets an interest be cached; threads
//! that do not capture cost one thread-local lookup an event.

use std::cell::RefCell;
use std::io::Write;
use std::sync::{Arc, Mutex, Once};

use tracing::subscriber::Interest;
use tracing::Metadata;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Context, SubscriberExt as _};
use tracing_subscriber::Layer as _;

type Buffer = Arc<Mutex<Vec<u8>>>;

thread_local! {
    static CAPTURE: RefCell<Option<Buffer>> = const { RefCell::new(None) };
}

/// Everything logged, at every level, on the thread that started it, until it is dropped. A
/// service under test must run on that thread (a current-thread runtime).
pub struct LogCapture {
    buffer: Buffer,
}

impl LogCapture {
    pub fn start() -> LogCapture {
        static INSTALL: Once = Once::new();
        INSTALL.call_once(|| {
            let layer = tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(|| ThreadWriter)
                .with_filter(ThreadCapturing);
            tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer))
                .expect("no other global subscriber in a test binary that captures logs");
        });
        let buffer = Buffer::default();
        CAPTURE.with(|c| *c.borrow_mut() = Some(Arc::clone(&buffer)));
        LogCapture { buffer }
    }

    /// What was captured so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.buffer.lock().expect("log buffer")).into_owned()
    }
}

impl Drop for LogCapture {
    fn drop(&mut self) {
        CAPTURE.with(|c| *c.borrow_mut() = None);
    }
}

/// Enables an event when its thread captures. It never lets a callsite's interest be cached
/// (always `sometimes`): a callsite first reached on a thread that does not capture must still
/// log on one that does.
struct ThreadCapturing;

impl<S> tracing_subscriber::layer::Filter<S> for ThreadCapturing {
    fn enabled(&self, _: &Metadata<'_>, _: &Context<'_, S>) -> bool {
        CAPTURE.with(|c| c.borrow().is_some())
    }

    fn callsite_enabled(&self, _: &'static Metadata<'static>) -> Interest {
        Interest::sometimes()
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(LevelFilter::TRACE)
    }
}

/// Writes to the capture of the current thread, if it has one.
struct ThreadWriter;

impl Write for ThreadWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        CAPTURE.with(|c| {
            if let Some(buffer) = &*c.borrow() {
                buffer.lock().expect("log buffer").extend_from_slice(buf);
            }
        });
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
