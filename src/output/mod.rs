//! The output side: record formats, terminal-safe escaping, and the sink's single writer.

mod escape;
mod format;
mod sink;

pub use escape::{escape_into, escape_text_into};
pub use format::{Event, Format, Origin, Records, Style, json_event};
pub use sink::{Capture, RecordSender, Sink, SinkError, Target};
