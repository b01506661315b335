//! `serve --user NAME [--group NAME]`: bind as root (ports below 1024), then become NAME for
//! good before the first client is accepted. The calls go through glibc, which applies them to
//! every thread of the process (the runtime's workers and the output writer included).

use nix::unistd::{Gid, Group, Uid, User, getegid, geteuid, getgid, getuid, setgid, setgroups, setuid};

/// The identity to drop to, looked up before anything is bound so a typo fails at once.
#[derive(Clone, Debug)]
pub struct Identity {
    name: String,
    uid: Uid,
    gid: Gid,
}

impl Identity {
    /// Looks up `user` (name or number) and `group` (its primary group when not given).
    pub fn lookup(user: &str, group: Option<&str>) -> Result<Identity, String> {
        let found = match user.parse::<u32>() {
            Ok(uid) => User::from_uid(Uid::from_raw(uid)),
            Err(_) => User::from_name(user),
        };
        let account = found
            .map_err(|err| format!("cannot look up user {user:?}: {err}"))?
            .ok_or_else(|| format!("no user named {user:?} on this system (see /etc/passwd)"))?;
        let gid = match group {
            None => account.gid,
            Some(group) => {
                let found = match group.parse::<u32>() {
                    Ok(gid) => Group::from_gid(Gid::from_raw(gid)),
                    Err(_) => Group::from_name(group),
                };
                found
                    .map_err(|err| format!("cannot look up group {group:?}: {err}"))?
                    .ok_or_else(|| format!("no group named {group:?} on this system (see /etc/group)"))?
                    .gid
            }
        };
        Ok(Identity { name: account.name, uid: account.uid, gid })
    }

    /// The user and group ids.
    pub fn ids(&self) -> (u32, u32) {
        (self.uid.as_raw(), self.gid.as_raw())
    }

    /// Becomes this identity for good: supplementary groups, group, then user (in that order:
    /// after the user changes, the rest is no longer allowed). Checked afterwards, and root
    /// must not be regained.
    pub fn drop_privileges(&self) -> Result<(), String> {
        let fail = |what: &str, err: nix::Error| {
            format!(
                "cannot drop privileges to {}: {what} failed: {err} (start as root to use --user)",
                self.name
            )
        };
        setgroups(&[self.gid]).map_err(|e| fail("setgroups", e))?;
        setgid(self.gid).map_err(|e| fail("setgid", e))?;
        setuid(self.uid).map_err(|e| fail("setuid", e))?;
        let now = (getuid(), geteuid(), getgid(), getegid());
        if now != (self.uid, self.uid, self.gid, self.gid) {
            return Err(format!("dropping privileges to {} did not take: ids are now {now:?}", self.name));
        }
        if !self.uid.is_root() && setuid(Uid::from_raw(0)).is_ok() {
            return Err(format!(
                "dropping privileges to {}: root could be regained; refusing to serve",
                self.name
            ));
        }
        Ok(())
    }
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (uid {}, gid {})", self.name, self.uid, self.gid)
    }
}
