//! The output side: record formats, terminal-safe escaping, and the sink's single writer.

mod escape;
mod format;
mod queue;
mod sink;

pub use escape::{escape_into, escape_text_into};
pub use format::{Event, Format, Origin, Records, Style, json_event};
pub use queue::{OwnedReservation, RecordSender, Reservation};
pub use sink::{Capture, Sink, SinkError, Target};
