//! What a configuration problem is and where it is: `Place` (file and line,
//! or the environment variable), `Problem`, `ConfigError`, and the `Locator`
//! that finds a key's line in the file's text for the messages.

use std::fmt;
use std::path::{Path, PathBuf};

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
