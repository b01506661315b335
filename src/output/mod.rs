//! The output side: record formats, terminal-safe escaping, and the sink's single writer.

mod escape;
mod format;
mod queue;
mod sink;

pub use escape::escape_into;
pub(crate) use escape::escape_text_into;
pub(crate) use format::{Event, json_event};
pub use format::{Format, Origin, Peer, Records, Style};
pub(crate) use queue::{OwnedReservation, RecordSender, Reservation};
pub use sink::{Capture, Sink, SinkError, Target, Written};
