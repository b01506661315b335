//! `--mode chat`: the relay ncat's `--chat` tries to be. A client's first line is its nickname
//! (checked: length, characters, unique); each later line goes to every other client as
//! `<NICK> text`, escaped so nobody can drive the others' terminals; joins and leaves are
//! announced; `/who`, `/nick NEW` and `/quit` work. No client ever sees another's address.

use super::Shared;
use super::outbox::{Health, Message};
use super::relay::Relay;
use crate::config::NICK_MAX_CHARS;
use crate::framing::{Line, Piece};
use crate::output::escape_into;

/// Written to every chat client when it connects.
pub(super) const WELCOME: &str = "* welcome to hubcat chat; send your nickname\n";
const COMMANDS: &str = "commands: /who, /nick NEW, /quit";

/// Acts on what a chat client sent, a piece at a time, each piece's lines going to the room as
/// one message; when the room pauses mid-read, the rest waits in the backlog.
pub(super) fn received(relay: &mut Relay, shared: &Shared, id: u64, data: &[u8]) {
    let mut framer = std::mem::take(&mut relay.framer);
    let mut rest = data;
    while !rest.is_empty() {
        let (piece, more) = rest.split_at(rest.len().min(shared.config.chat_piece_bytes()));
        let mut chat = Chat { relay: &mut *relay, shared, id, batch: Vec::new() };
        framer.lines(piece, shared.config.max_line, |line| chat.line(line));
        chat.flush();
        rest = more;
        if relay.quit {
            break;
        }
        let congested = matches!(relay.outbox.health(), Health::Congested { .. });
        if !rest.is_empty() && relay.joined && !shared.room.is_open(congested) {
            relay.backlog.extend_from_slice(rest);
            break;
        }
    }
    relay.framer = framer;
}

/// The client closed its sending side: its unterminated last line still counts.
pub(super) fn input_ended(relay: &mut Relay, shared: &Shared, id: u64) {
    let mut framer = std::mem::take(&mut relay.framer);
    let mut chat = Chat { relay, shared, id, batch: Vec::new() };
    framer.finish_lines(shared.config.max_line, |line| chat.line(line));
    chat.flush();
}

/// One read's worth of a client's chat.
struct Chat<'a> {
    relay: &'a mut Relay,
    shared: &'a Shared,
    id: u64,
    /// Lines for the room, sent together.
    batch: Vec<u8>,
}

impl Chat<'_> {
    /// Acts on one line.
    fn line(&mut self, line: Line<'_>) {
        if self.relay.quit {
            return;
        }
        let Some(nick) = self.relay.nick.clone() else {
            return self.choose_nick(line);
        };
        if line.piece == Piece::End && line.bytes.starts_with(b"/") {
            self.flush();
            return self.command(&nick, line.bytes);
        }
        self.batch.extend_from_slice(b"<");
        self.batch.extend_from_slice(nick.as_bytes());
        self.batch.extend_from_slice(b"> ");
        escape_into(&mut self.batch, line.bytes);
        if line.piece == Piece::Continued {
            self.batch.push(b'\\');
        }
        self.batch.push(b'\n');
    }

    /// Sends the lines gathered so far to the others.
    fn flush(&mut self) {
        if !self.batch.is_empty() {
            let message = Message::from(std::mem::take(&mut self.batch));
            self.shared.room.broadcast(Some(self.id), &message);
        }
    }

    fn reply(&self, text: impl AsRef<[u8]>) {
        self.relay.reply(self.shared, text);
    }

    fn announce(&self, text: &str) {
        self.shared.room.broadcast(Some(self.id), &Message::from(text.as_bytes()));
    }

    fn choose_nick(&mut self, line: Line<'_>) {
        let nick = match check_nick(line) {
            Ok(nick) => nick,
            Err(why) => return self.reply(format!("* {why}; send another\n")),
        };
        let room = &self.shared.room;
        if room.join(self.id, Some(nick.clone()), &self.relay.outbox).is_err() {
            return self.reply(format!("* the nickname {nick} is taken; send another\n"));
        }
        self.relay.joined = true;
        let others: Vec<String> = room.who_everywhere().into_iter().filter(|n| *n != nick).collect();
        let here = match others.len() {
            0 => "nobody else is here".to_string(),
            1 => format!("1 other here: {}", others[0]),
            n => format!("{n} others here: {}", others.join(", ")),
        };
        self.reply(format!("* welcome, {nick}; {here}; {COMMANDS}\n"));
        self.announce(&format!("* {nick} joined\n"));
        self.note_nick(&nick);
        self.relay.nick = Some(nick);
    }

    /// Tells the web console, if there is one, what this client is called now.
    fn note_nick(&self, nick: &str) {
        if let Some(console) = &self.shared.config.console {
            console.set_nick(self.id, nick);
        }
    }

    /// Runs a `/command`.
    fn command(&mut self, nick: &str, text: &[u8]) {
        let text = String::from_utf8_lossy(text);
        let mut words = text.split_whitespace();
        let room = &self.shared.room;
        match (words.next(), words.next()) {
            (Some("/quit"), _) => {
                self.reply("* bye\n");
                self.relay.quit = true;
            }
            (Some("/who"), _) => self.reply(format!("* here: {}\n", room.who_everywhere().join(", "))),
            (Some("/nick"), Some(new)) => {
                let line = Line { bytes: new.as_bytes(), piece: Piece::End, plain: false };
                match check_nick(line) {
                    Err(why) => self.reply(format!("* {why}\n")),
                    Ok(new) => match room.rename(self.id, &new) {
                        Err(_) => self.reply(format!("* the nickname {new} is taken\n")),
                        Ok(_) => {
                            self.reply(format!("* you are now {new}\n"));
                            self.announce(&format!("* {nick} is now {new}\n"));
                            self.note_nick(&new);
                            self.relay.nick = Some(new);
                        }
                    },
                }
            }
            _ => self.reply(format!("* unknown command; {COMMANDS}\n")),
        }
    }
}

/// A nickname: 1 to 32 letters, digits, `-`, `_` or `.`.
fn check_nick(line: Line<'_>) -> Result<String, &'static str> {
    const RULE: &str = "a nickname is 1 to 32 letters, digits, '-', '_' or '.'";
    if line.piece != Piece::End {
        return Err(RULE);
    }
    let text = std::str::from_utf8(line.bytes).map_err(|_| RULE)?.trim();
    let length = text.chars().count();
    let allowed = text.chars().all(|c| c.is_alphanumeric() || "-_.".contains(c));
    if length == 0 || length > NICK_MAX_CHARS || !allowed {
        return Err(RULE);
    }
    Ok(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(text: &str) -> Line<'_> {
        Line { bytes: text.as_bytes(), piece: Piece::End, plain: false }
    }

    #[test]
    fn nicknames_are_checked() {
        assert_eq!(check_nick(line("IVO")).as_deref(), Ok("IVO"));
        assert_eq!(check_nick(line(" chris_2.0 ")).as_deref(), Ok("chris_2.0"));
        assert_eq!(check_nick(line("Zoë")).as_deref(), Ok("Zoë"));
        for bad in ["", "two words", "\u{1b}[31mred", "a\u{202e}b", &"x".repeat(33)] {
            assert!(check_nick(line(bad)).is_err(), "{bad:?}");
        }
    }
}
