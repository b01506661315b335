//! `--mode chat`: the relay ncat's `--chat` tries to be. A client's first line is its nickname
//! (checked: length, characters, unique); each later line goes to every other client as
//! `<NICK> text`, escaped so nobody can drive the others' terminals; joins and leaves are
//! announced; `/who`, `/nick NEW` and `/quit` work. No client ever sees another's address.

use tokio::net::TcpStream;

use super::relay::{Message, Outbound, Room, read_relayed};
use super::session::Session;
use super::transcript::End;
use crate::config::{NICK_MAX_CHARS, RELAY_BUFFER_BYTES};
use crate::framing::{Framer, Line, Piece};
use crate::output::escape_into;

const WELCOME: &str = "* welcome to hubcat chat; send your nickname\n";
const COMMANDS: &str = "commands: /who, /nick NEW, /quit";

/// Serves one chat client to its end.
pub async fn run(mut session: Session, stream: TcpStream) {
    let (mut reader, outbound) = Outbound::open(stream, &session.shared.config);
    outbound.reply(WELCOME);
    let mut chat = Chatter { id: session.id, nick: None };
    let mut framer = Framer::new();
    let mut buffer = vec![0; RELAY_BUFFER_BYTES];
    let end = loop {
        let data = match read_relayed(&mut session, &outbound, &mut reader, &mut buffer).await {
            Ok(n) => &buffer[..n],
            Err(end) => break end,
        };
        let max_line = session.shared.config.max_line;
        let room = &session.shared.room;
        let mut quit = false;
        let mut handle = |line: Line<'_>| quit = quit || chat.handle(room, &outbound, line);
        if data.is_empty() {
            framer.finish_lines(max_line, &mut handle);
            break End::ClosedByClient;
        }
        framer.lines(data, max_line, &mut handle);
        if quit {
            break End::Quit;
        }
    };
    if let Some(nick) = session.shared.room.leave(session.id) {
        let why = if matches!(end, End::TooSlow) { " (too slow to keep up)" } else { "" };
        announce(&session.shared.room, None, &format!("* {nick} left{why}\n"));
    }
    outbound.finish(!matches!(end, End::TooSlow | End::Shutdown)).await;
    session.close(&end);
}

/// One client's chat state.
struct Chatter {
    id: u64,
    nick: Option<String>,
}

impl Chatter {
    /// Acts on one line; true when the client asked to leave.
    fn handle(&mut self, room: &Room, outbound: &Outbound, line: Line<'_>) -> bool {
        let Some(nick) = self.nick.clone() else {
            self.choose_nick(room, outbound, line);
            return false;
        };
        if line.piece == Piece::End && line.bytes.starts_with(b"/") {
            return self.command(room, outbound, &nick, line.bytes);
        }
        let mut message = format!("<{nick}> ").into_bytes();
        escape_into(&mut message, line.bytes);
        if line.piece == Piece::Continued {
            message.push(b'\\');
        }
        message.push(b'\n');
        announce(room, Some(self.id), &message);
        false
    }

    fn choose_nick(&mut self, room: &Room, outbound: &Outbound, line: Line<'_>) {
        let nick = match check_nick(line) {
            Ok(nick) => nick,
            Err(why) => return outbound.reply(format!("* {why}; send another\n")),
        };
        if room.join(self.id, Some(nick.clone()), outbound.queue.clone(), outbound.kick.clone()).is_err() {
            return outbound.reply(format!("* the nickname {nick} is taken; send another\n"));
        }
        let others: Vec<String> = room.who().into_iter().filter(|n| *n != nick).collect();
        let here = match others.len() {
            0 => "nobody else is here".to_string(),
            1 => format!("1 other here: {}", others[0]),
            n => format!("{n} others here: {}", others.join(", ")),
        };
        outbound.reply(format!("* welcome, {nick}; {here}; {COMMANDS}\n"));
        announce(room, Some(self.id), &format!("* {nick} joined\n"));
        self.nick = Some(nick);
    }

    /// Runs a `/command`; true for `/quit`.
    fn command(&mut self, room: &Room, outbound: &Outbound, nick: &str, text: &[u8]) -> bool {
        let text = String::from_utf8_lossy(text);
        let mut words = text.split_whitespace();
        match (words.next(), words.next()) {
            (Some("/quit"), _) => {
                outbound.reply("* bye\n");
                return true;
            }
            (Some("/who"), _) => outbound.reply(format!("* here: {}\n", room.who().join(", "))),
            (Some("/nick"), Some(new)) => {
                let line = Line { bytes: new.as_bytes(), piece: Piece::End, plain: false };
                match check_nick(line) {
                    Err(why) => outbound.reply(format!("* {why}\n")),
                    Ok(new) => match room.rename(self.id, &new) {
                        Err(_) => outbound.reply(format!("* the nickname {new} is taken\n")),
                        Ok(_) => {
                            outbound.reply(format!("* you are now {new}\n"));
                            announce(room, Some(self.id), &format!("* {nick} is now {new}\n"));
                            self.nick = Some(new);
                        }
                    },
                }
            }
            _ => outbound.reply(format!("* unknown command; {COMMANDS}\n")),
        }
        false
    }
}

/// Sends `text` to everyone but `from`, then announces whoever was disconnected for being slow
/// (which may disconnect more: each round removes someone, so it ends).
fn announce(room: &Room, from: Option<u64>, text: &(impl AsRef<[u8]> + ?Sized)) {
    let mut kicked = room.broadcast(from, &Message::from(text.as_ref()));
    while !kicked.is_empty() {
        let notices: Vec<String> =
            kicked.iter().map(|nick| format!("* {nick} left (too slow to keep up)\n")).collect();
        kicked = notices.iter().flat_map(|n| room.broadcast(None, &Message::from(n.as_bytes()))).collect();
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
