//! The environment's part: `HERALD_<SECTION>_<KEY>` sets one key of one
//! section before anything is checked, so a value from the environment goes
//! through the same rules as one from the file, and a problem with it names
//! the variable. Also the variables herald reads directly (secrets, which
//! never come from the file).

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::problems::{Place, Problem};
use super::RawConfig;

/// Environment variables that are read directly and are not config overrides.
pub const ENV_SECRET: &str = "HERALD_SECRET";
pub const ENV_SMTP_PASSWORD: &str = "HERALD_MAIL_SMTP_PASSWORD";
/// The password of `[bounces.imap]`'s user.
pub const ENV_IMAP_PASSWORD: &str = "HERALD_BOUNCES_IMAP_PASSWORD";
/// The bearer token that opens `/healthz` and `/metrics` (read by `web/`).
pub const ENV_ADMIN_TOKEN: &str = "HERALD_ADMIN_TOKEN";
/// `herald daemon --test-clock`, for herald's own integration tests.
pub const ENV_TEST_CLOCK: &str = "HERALD_TEST_CLOCK";
const ENV_NOT_OVERRIDES: &[&str] = &[
    "HERALD_CONFIG",
    "HERALD_LOG",
    "HERALD_DNS_SERVER",
    ENV_SECRET,
    ENV_SMTP_PASSWORD,
    ENV_IMAP_PASSWORD,
    ENV_ADMIN_TOKEN,
    ENV_TEST_CLOCK,
    super::webhooks::ENV_MAILGUN_KEY,
    super::webhooks::ENV_POSTMARK_PASSWORD,
    super::webhooks::ENV_WEBHOOK_SECRET,
];

/// What the environment did to the file's values.
pub(super) struct Overrides {
    /// The keys it set, in the order of the (sorted) variables.
    pub(super) set: Vec<Overridden>,
    /// Variables that name no section or key, or whose value does not fit.
    pub(super) problems: Vec<Problem>,
}

/// One key set from the environment.
pub(super) struct Overridden {
    pub(super) section: &'static str,
    pub(super) key: String,
    pub(super) var: String,
}

/// The sections an override can name, in the order they are tried and
/// listed. `[[sources]]` and `[[lists]]` are arrays, which one variable
/// cannot address.
fn sections(raw: &mut RawConfig) -> [(&'static str, &mut dyn Override); 8] {
    [
        ("site", &mut raw.site),
        ("store", &mut raw.store),
        ("collect", &mut raw.collect),
        ("feeds", &mut raw.feeds),
        ("mail", &mut raw.mail),
        ("web", &mut raw.web),
        ("daemon", &mut raw.daemon),
        ("bounces", &mut raw.bounces),
    ]
}

/// Applies every `HERALD_*` variable of `env` that is an override to `raw`.
pub(super) fn apply(raw: &mut RawConfig, env: &[(String, String)]) -> Overrides {
    let names = sections(raw).map(|(name, _)| name);
    let mut overrides = Overrides { set: Vec::new(), problems: Vec::new() };
    // Sorted, so problems come in the same order whatever the process's
    // environment order.
    let mut env = env.to_vec();
    env.sort();
    for (var, value) in &env {
        if ENV_NOT_OVERRIDES.contains(&var.as_str())
            || (var.starts_with("HERALD_MAIL_RELAY_") && var.ends_with("_PASSWORD"))
        {
            continue;
        }
        let Some(rest) = var.strip_prefix("HERALD_") else { continue };
        let rest = rest.to_ascii_lowercase();
        let mut targets = sections(raw);
        let Some((section, target)) =
            targets.iter_mut().find(|(s, _)| rest.starts_with(&format!("{s}_")))
        else {
            overrides.problems.push(Problem {
                place: Place::Env { var: var.clone() },
                message: format!(
                    "not a known override: herald reads HERALD_<SECTION>_<KEY> for the sections {}",
                    names.join(", ")
                ),
            });
            continue;
        };
        let key = &rest[section.len() + 1..];
        match target.set(key, value) {
            Ok(()) => {
                overrides.set.push(Overridden { section, key: key.to_owned(), var: var.clone() })
            }
            Err(message) => {
                overrides.problems.push(Problem { place: Place::Env { var: var.clone() }, message })
            }
        }
    }
    overrides
}

/// A section whose keys an environment variable can set.
trait Override {
    fn set(&mut self, key: &str, value: &str) -> Result<(), String>;
}

impl<T: Serialize + DeserializeOwned> Override for T {
    fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        override_key(self, key, value)
    }
}

/// Sets one key of a section from an environment variable's text. The
/// section goes through a TOML table, so the key is checked by the same
/// serde rules as the file (an unknown key or a wrong type is refused). The
/// text is taken as a string when the key holds a string, else read as a
/// TOML value (`8`, `true`, `0.5`).
fn override_key<T: Serialize + DeserializeOwned>(
    section: &mut T,
    key: &str,
    value: &str,
) -> Result<(), String> {
    let table = match toml::Value::try_from(&*section) {
        Ok(toml::Value::Table(t)) => t,
        _ => return Err("internal error: section is not a table".into()),
    };
    let as_string = toml::Value::String(value.to_owned());
    let as_toml =
        toml::from_str::<toml::Table>(&format!("v = {value}")).ok().and_then(|mut t| t.remove("v"));
    let candidates: Vec<toml::Value> = match table.get(key) {
        Some(toml::Value::String(_)) => vec![as_string],
        _ => as_toml.into_iter().chain(std::iter::once(as_string)).collect(),
    };
    let mut last_error = String::new();
    for candidate in candidates {
        let mut attempt = table.clone();
        attempt.insert(key.to_owned(), candidate);
        match toml::Value::Table(attempt).try_into::<T>() {
            Ok(parsed) => {
                *section = parsed;
                return Ok(());
            }
            Err(e) => last_error = e.message().trim().to_owned(),
        }
    }
    Err(last_error)
}
