//! Users' Sieve scripts: stored only once they parse (the parser's error,
//! with its line, is the refusal), listed, activated, read, renamed and
//! deleted. The CLI and ManageSieve both come through here.

use stratus_core::Address;
use stratus_core::sieve::{Owner, ScriptError, ScriptInfo};

use super::{Service, ServiceError, ServiceResult};

impl From<ScriptError> for ServiceError {
    fn from(e: ScriptError) -> Self {
        let text = e.to_string();
        match e {
            ScriptError::Unknown(_) => ServiceError::NotFound(text),
            ScriptError::Exists(_) | ScriptError::Active(_) => ServiceError::Conflict(text),
            ScriptError::TooMany | ScriptError::BadName => ServiceError::Invalid(text),
            ScriptError::Account(a) => a.into(),
        }
    }
}

/// The limits scripts are checked and run with.
pub fn limits() -> stratus_sieve::Limits {
    stratus_sieve::Limits::default()
}

/// Whether `text` is a script we can run: `Err` holds the parser's
/// line-numbered reason.
pub fn check_script(text: &str) -> ServiceResult<()> {
    stratus_sieve::parse(text, &limits())
        .map(|_| ())
        .map_err(|e| ServiceError::Invalid(format!("script refused: {e}")))
}

impl Service {
    pub async fn sieve_list(&self, user: &Address) -> ServiceResult<Vec<ScriptInfo>> {
        Ok(self.scripts.list(user).await?)
    }

    pub async fn sieve_get(&self, user: &Address, name: &str) -> ServiceResult<String> {
        Ok(self.scripts.get(user, name).await?)
    }

    /// Checks and stores a script (replacing one of the same name).
    pub async fn sieve_put(&self, user: &Address, name: &str, text: &str) -> ServiceResult<()> {
        check_script(text)?;
        Ok(self.scripts.put(user, name, text).await?)
    }

    pub async fn sieve_activate(&self, user: &Address, name: Option<&str>) -> ServiceResult<()> {
        Ok(self.scripts.activate(user, name).await?)
    }

    pub async fn sieve_delete(&self, user: &Address, name: &str) -> ServiceResult<()> {
        Ok(self.scripts.delete(user, name).await?)
    }

    pub async fn sieve_rename(&self, user: &Address, from: &str, to: &str) -> ServiceResult<()> {
        Ok(self.scripts.rename(user, from, to).await?)
    }

    /// The administrators' scripts, which users' scripts may
    /// `include :global`.
    pub async fn sieve_global_list(&self) -> ServiceResult<Vec<ScriptInfo>> {
        Ok(self.scripts.list(Owner::Global).await?)
    }

    pub async fn sieve_global_get(&self, name: &str) -> ServiceResult<String> {
        Ok(self.scripts.get(Owner::Global, name).await?)
    }

    pub async fn sieve_global_put(&self, name: &str, text: &str) -> ServiceResult<()> {
        check_script(text)?;
        Ok(self.scripts.put(Owner::Global, name, text).await?)
    }

    pub async fn sieve_global_delete(&self, name: &str) -> ServiceResult<()> {
        Ok(self.scripts.delete(Owner::Global, name).await?)
    }
}

/// The script `stratus vacation set` writes and activates.
pub const VACATION_SCRIPT: &str = "stratus-vacation";
/// The line of that script that names the script active before it.
const PREVIOUS: &str = "# previous: ";

/// A vacation reply for a user who does not write Sieve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VacationSettings {
    pub subject: Option<String>,
    pub body: String,
    pub from: Option<Address>,
    /// The last day (YYYY-MM-DD, UTC) replies are sent.
    pub until: Option<String>,
    pub days: u32,
}

/// `s` as a Sieve quoted string.
fn sieve_quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The Sieve of a vacation: the reply (until the day given), then the
/// script that was active before, included, so the user's filters go on.
pub fn vacation_script(v: &VacationSettings, previous: Option<&str>) -> String {
    let mut s =
        String::from("# Written by `stratus vacation set`; `stratus vacation off` removes it.\n");
    s.push_str(PREVIOUS);
    s.push_str(previous.unwrap_or(""));
    s.push('\n');
    s.push_str("require [\"vacation\", \"date\", \"relational\", \"include\"];\n");
    let mut reply = format!("vacation :days {}", v.days);
    if let Some(subject) = &v.subject {
        reply.push_str(&format!(" :subject {}", sieve_quoted(subject)));
    }
    if let Some(from) = &v.from {
        reply.push_str(&format!(" :from {}", sieve_quoted(&from.to_string())));
    }
    reply.push_str(" text:\n");
    for line in v.body.lines() {
        if line.starts_with('.') {
            reply.push('.');
        }
        reply.push_str(line);
        reply.push('\n');
    }
    reply.push_str(".\n;\n");
    match &v.until {
        Some(day) => {
            s.push_str(&format!(
                "if currentdate :value \"le\" \"date\" {} {{\n{reply}}}\n",
                sieve_quoted(day)
            ));
        }
        None => s.push_str(&reply),
    }
    if let Some(previous) = previous {
        // :optional: the earlier script is no longer active, and its
        // owner may delete it.
        s.push_str(&format!(
            "include :personal :optional {};\n",
            sieve_quoted(previous)
        ));
    }
    s
}

impl Service {
    /// Writes and activates the vacation script, keeping the script that
    /// was active running after it.
    pub async fn vacation_set(&self, user: &Address, v: &VacationSettings) -> ServiceResult<()> {
        if let Some(from) = &v.from
            && !self.accounts.may_send_as(user, from).await?
        {
            return Err(ServiceError::Invalid(format!(
                "{user} may not send as {from}: add it with `stratus user identity add` first"
            )));
        }
        if v.body.len() > limits().max_vacation_size {
            return Err(ServiceError::Invalid(format!(
                "the reply has {} bytes; at most {} are allowed",
                v.body.len(),
                limits().max_vacation_size
            )));
        }
        if let Some(day) = &v.until {
            let ok = day.len() == 10
                && day.bytes().enumerate().all(|(i, b)| match i {
                    4 | 7 => b == b'-',
                    _ => b.is_ascii_digit(),
                });
            if !ok {
                return Err(ServiceError::Invalid(format!(
                    "{day:?} is not a day (YYYY-MM-DD)"
                )));
            }
        }
        let active = self
            .scripts
            .list(user)
            .await?
            .into_iter()
            .find(|s| s.active)
            .map(|s| s.name);
        let previous = match active.as_deref() {
            // Set again: keep what was before the first one.
            Some(VACATION_SCRIPT) => self.vacation_previous(user).await?,
            other => other.map(str::to_string),
        };
        let text = vacation_script(v, previous.as_deref());
        check_script(&text)?;
        self.scripts.put(user, VACATION_SCRIPT, &text).await?;
        self.scripts.activate(user, Some(VACATION_SCRIPT)).await?;
        Ok(())
    }

    async fn vacation_previous(&self, user: &Address) -> ServiceResult<Option<String>> {
        let text = match self.scripts.get(user, VACATION_SCRIPT).await {
            Ok(t) => t,
            Err(ScriptError::Unknown(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        Ok(text
            .lines()
            .find_map(|l| l.strip_prefix(PREVIOUS))
            .filter(|p| !p.is_empty())
            .map(str::to_string))
    }

    /// The vacation script and whether it is active, if there is one.
    pub async fn vacation_show(&self, user: &Address) -> ServiceResult<Option<(String, bool)>> {
        let scripts = self.scripts.list(user).await?;
        let Some(info) = scripts.iter().find(|s| s.name == VACATION_SCRIPT) else {
            return Ok(None);
        };
        let text = self.scripts.get(user, VACATION_SCRIPT).await?;
        Ok(Some((text, info.active)))
    }

    /// Removes the vacation script and reactivates the script that was
    /// active before it (or none).
    pub async fn vacation_off(&self, user: &Address) -> ServiceResult<Option<String>> {
        let previous = self.vacation_previous(user).await?;
        let active = self
            .scripts
            .list(user)
            .await?
            .into_iter()
            .any(|s| s.active && s.name == VACATION_SCRIPT);
        if active {
            let restore = match &previous {
                Some(p) if self.scripts.get(user, p).await.is_ok() => Some(p.as_str()),
                _ => None,
            };
            self.scripts.activate(user, restore).await?;
        }
        match self.scripts.delete(user, VACATION_SCRIPT).await {
            Ok(()) | Err(ScriptError::Unknown(_)) => {}
            Err(e) => return Err(e.into()),
        }
        Ok(previous)
    }
}
