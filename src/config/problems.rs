//! What a configuration problem is and where it is: `Place` (file and line,
//! or the environment variable), `Problem`, `ConfigError`, the `Locator`
//! that finds a key's line in the file's text, and `Check`, the context each
//! section validates itself through (with the one range rule for whole
//! numbers, so every such message reads alike).

use std::fmt;
use std::ops::{RangeFrom, RangeInclusive};
use std::path::{Path, PathBuf};

use super::env::{Overridden, Overrides};

/// Where a configuration problem is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    File { path: PathBuf, line: Option<usize> },
    Env { var: String },
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Place::File { path, line: Some(line) } => write!(f, "{}:{line}", path.display()),
            Place::File { path, line: None } => write!(f, "{}", path.display()),
            Place::Env { var } => write!(f, "environment variable {var}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub place: Place,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.place, self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {cause}. Run `herald init` to create a ready-to-run configuration, or pass --config PATH")]
    Read { path: PathBuf, cause: std::io::Error },
    #[error("{} problem(s) in the configuration:\n{}", .0.len(), list_problems(.0))]
    Invalid(Vec<Problem>),
}

impl ConfigError {
    pub fn problems(&self) -> Vec<String> {
        match self {
            ConfigError::Read { .. } => vec![self.to_string()],
            ConfigError::Invalid(problems) => problems.iter().map(ToString::to_string).collect(),
        }
    }

    /// The file is not TOML, or does not fit the sections' raw structs (an
    /// unknown key, a string where a number goes): nothing else can be
    /// checked, so this is the one problem reported.
    pub(super) fn syntax(path: &Path, text: &str, error: &toml::de::Error) -> Self {
        let line = error.span().map(|span| line_of_offset(text, span.start));
        ConfigError::Invalid(vec![Problem {
            place: Place::File { path: path.to_owned(), line },
            message: error.message().trim().to_owned(),
        }])
    }
}

fn list_problems(problems: &[Problem]) -> String {
    problems.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n")
}

fn line_of_offset(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].bytes().filter(|&b| b == b'\n').count() + 1
}

/// Finds the line of a key in the config text, for error messages.
pub(super) struct Locator<'a> {
    pub(super) path: &'a Path,
    pub(super) text: &'a str,
}

impl Locator<'_> {
    pub(super) fn place(&self, section: &str, index: Option<usize>, key: &str) -> Place {
        Place::File { path: self.path.to_owned(), line: self.find(section, index, key) }
    }

    /// The line of `key` in `[section]` (or in the `index`-th
    /// `[[section]]`); else the line of the header; else none.
    fn find(&self, section: &str, index: Option<usize>, key: &str) -> Option<usize> {
        let header = match index {
            Some(_) => format!("[[{section}]]"),
            None => format!("[{section}]"),
        };
        let mut seen = 0usize;
        let mut inside = false;
        let mut header_line = None;
        for (n, line) in self.text.lines().enumerate() {
            let trimmed = line.trim();
            if trimmed.starts_with('[') {
                let name = trimmed.split('#').next().unwrap_or("").trim();
                inside = false;
                if name == header {
                    let wanted = index.unwrap_or(0);
                    if seen == wanted {
                        inside = true;
                        header_line = Some(n + 1);
                    }
                    seen += 1;
                }
                continue;
            }
            if inside {
                if let Some((k, _)) = trimmed.split_once('=') {
                    if k.trim().trim_matches('"') == key {
                        return Some(n + 1);
                    }
                }
            }
        }
        header_line
    }
}

/// The context every section validates itself through: where a key is (its
/// line in the file, or the variable that set it), the folder relative paths
/// are resolved against, and every problem found so far, so one run reports
/// them all.
pub(super) struct Check<'a> {
    locator: Locator<'a>,
    /// Keys an environment variable set: their problems name the variable.
    from_env: Vec<Overridden>,
    root: PathBuf,
    problems: Vec<Problem>,
}

impl<'a> Check<'a> {
    /// Starts with the environment's own problems, which come first.
    pub(super) fn new(locator: Locator<'a>, overrides: Overrides) -> Self {
        // Relative paths mean "next to the config file", wherever herald
        // was started from.
        let root = locator.path.parent().map(Path::to_path_buf).unwrap_or_default();
        let root = if root.as_os_str().is_empty() { PathBuf::from(".") } else { root };
        let root = std::path::absolute(&root).unwrap_or(root);
        Self { locator, from_env: overrides.set, root, problems: overrides.problems }
    }

    /// The config file's folder, absolute.
    pub(super) fn root(&self) -> &Path {
        &self.root
    }

    /// Where `key` of `[section]` (or of the `index`-th `[[section]]`) was
    /// set: the environment variable when one set it, else its line.
    pub(super) fn place(&self, section: &str, index: Option<usize>, key: &str) -> Place {
        if index.is_none() {
            if let Some(o) = self.from_env.iter().find(|o| o.section == section && o.key == key) {
                return Place::Env { var: o.var.clone() };
            }
        }
        self.locator.place(section, index, key)
    }

    pub(super) fn problem(&mut self, place: Place, message: impl Into<String>) {
        self.problems.push(Problem { place, message: message.into() });
    }

    /// `path` as written in the config, made absolute against its folder.
    pub(super) fn resolve(&self, path: &str) -> PathBuf {
        let path = Path::new(path);
        if path.is_absolute() {
            path.to_owned()
        } else {
            self.root.join(path)
        }
    }

    /// `value` of the whole-number key `section.key` as a `T`, when
    /// `allowed` allows it; else a problem that names the key, the values
    /// allowed and the value found, and `T`'s default, which is never used
    /// since a problem refuses the config. (`allowed` lies within `T`, so the
    /// conversion only fails where `allowed` does.)
    pub(super) fn int<T: TryFrom<i64> + Default>(
        &mut self,
        section: &str,
        key: &str,
        value: i64,
        allowed: impl Allowed,
    ) -> T {
        if allowed.allows(value) {
            if let Ok(n) = T::try_from(value) {
                return n;
            }
        }
        let message = format!("{section}.{key} must be {}, not {value}", allowed.describe());
        self.problem(self.place(section, None, key), message);
        T::default()
    }

    /// The config when no problem was found, else every problem.
    pub(super) fn finish<T>(self, config: T) -> Result<T, ConfigError> {
        if self.problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid(self.problems))
        }
    }
}

/// The whole numbers a key allows, and how a message says so.
pub(super) trait Allowed {
    fn allows(&self, value: i64) -> bool;
    fn describe(&self) -> String;
}

impl Allowed for RangeInclusive<i64> {
    fn allows(&self, value: i64) -> bool {
        self.contains(&value)
    }
    fn describe(&self) -> String {
        format!("between {} and {}", self.start(), self.end())
    }
}

impl Allowed for RangeFrom<i64> {
    fn allows(&self, value: i64) -> bool {
        self.contains(&value)
    }
    fn describe(&self) -> String {
        format!("{} or more", self.start)
    }
}
