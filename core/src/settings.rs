//! Settings from the environment with a command-line mirror, after linkerd2-proxy:
//! every setting is parsed up front, all errors are reported together, defaults are
//! named constants, and the source is a plain map so tests pass their own.
//!
//! `TOLLGATE_LISTEN` is mirrored by `--listen`: the prefix dropped, lowercase, `_` -> `-`.
//! A flag wins over the environment. An empty value counts as unset.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Prefix of every tollgate setting.
pub const PREFIX: &str = "TOLLGATE_";

/// One setting as documented by `--help`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SettingDoc {
    /// Environment variable.
    pub env: &'static str,
    /// Command-line flag.
    pub flag: String,
    /// Default, as text (`-` for none).
    pub default: String,
    /// What it does.
    pub help: &'static str,
}

/// Every problem found in the settings, reported at once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SettingsError(pub Vec<String>);

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "invalid settings:")?;
        for e in &self.0 {
            writeln!(f, "  - {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SettingsError {}

/// A whole-number setting: its variable, default, accepted range and meaning, in one place.
#[derive(Clone, Copy, Debug)]
pub struct Whole {
    /// The environment variable (the flag is derived from it).
    pub env: &'static str,
    /// Used when it is unset.
    pub default: u64,
    /// Smallest accepted value.
    pub min: u64,
    /// Largest accepted value.
    pub max: u64,
    /// What it means (`--help`, the README table).
    pub help: &'static str,
}

/// A duration setting, written in milliseconds in a `_MS` variable and read as a [`Duration`].
#[derive(Clone, Copy, Debug)]
pub struct Millis {
    /// The environment variable (ends in `_MS`).
    pub env: &'static str,
    /// Used when it is unset.
    pub default: Duration,
    /// Shortest accepted value.
    pub min: Duration,
    /// Longest accepted value.
    pub max: Duration,
    /// What it means.
    pub help: &'static str,
}

/// Reads settings from an environment map and command-line arguments.
#[derive(Debug)]
pub struct SettingsReader {
    env: HashMap<String, String>,
    flags: HashMap<String, String>,
    errors: Vec<String>,
    docs: Vec<SettingDoc>,
    help_requested: bool,
}

/// The flag that mirrors an environment variable.
pub fn flag_for(env: &str) -> String {
    format!(
        "--{}",
        env.strip_prefix(PREFIX)
            .unwrap_or(env)
            .to_ascii_lowercase()
            .replace('_', "-")
    )
}

impl SettingsReader {
    /// A reader over `env` (name -> value) and `args` (without the program name).
    pub fn new(env: impl IntoIterator<Item = (String, String)>, args: impl IntoIterator<Item = String>) -> Self {
        let mut reader = Self {
            env: env.into_iter().filter(|(_, v)| !v.is_empty()).collect(),
            flags: HashMap::new(),
            errors: Vec::new(),
            docs: Vec::new(),
            help_requested: false,
        };
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            if arg == "--help" || arg == "-h" {
                reader.help_requested = true;
                continue;
            }
            let Some(body) = arg.strip_prefix("--") else {
                reader
                    .errors
                    .push(format!("unexpected argument {arg:?} (settings are --name=value)"));
                continue;
            };
            let (name, value) = match body.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (body.to_string(), args.next()),
            };
            match value {
                Some(v) => {
                    reader.flags.insert(format!("--{name}"), v);
                }
                None => reader.errors.push(format!("--{name} needs a value")),
            }
        }
        reader
    }

    /// A reader over this process's environment and arguments.
    pub fn from_process() -> Self {
        Self::new(std::env::vars(), std::env::args().skip(1))
    }

    /// A setting that no longer exists: set, it is an error saying `why` (not documented in
    /// `--help`), so a deployment that relied on it fails loudly instead of silently changing.
    pub fn removed(&mut self, env: &'static str, why: &str) {
        let flag = flag_for(env);
        if self.flags.remove(&flag).is_some() || self.env.contains_key(env) {
            self.errors.push(format!("{env} was removed: {why}"));
        }
    }

    /// Whether `--help` was given.
    pub fn help_requested(&self) -> bool {
        self.help_requested
    }

    fn raw(&mut self, env: &'static str, default: String, help: &'static str) -> Option<(String, String)> {
        let flag = flag_for(env);
        self.docs.push(SettingDoc {
            env,
            flag: flag.clone(),
            default,
            help,
        });
        if let Some(v) = self.flags.remove(&flag) {
            return Some((v, flag));
        }
        self.env.get(env).map(|v| (v.clone(), env.to_string()))
    }

    /// A setting parsed with `parse`; `None` when unset.
    pub fn optional_with<T>(
        &mut self,
        env: &'static str,
        help: &'static str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let (value, source) = self.raw(env, "-".into(), help)?;
        match parse(&value) {
            Ok(v) => Some(v),
            Err(e) => {
                self.errors.push(format!("{source}={value:?}: {e}"));
                None
            }
        }
    }

    /// A setting parsed with `parse`, `default` when unset or invalid (invalid is reported).
    pub fn with<T: fmt::Display>(
        &mut self,
        env: &'static str,
        default: T,
        help: &'static str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> T {
        let Some((value, source)) = self.raw(env, default.to_string(), help) else {
            return default;
        };
        match parse(&value) {
            Ok(v) => v,
            Err(e) => {
                self.errors.push(format!("{source}={value:?}: {e}"));
                default
            }
        }
    }

    /// A setting of any `FromStr` type.
    pub fn parse<T>(&mut self, env: &'static str, default: T, help: &'static str) -> T
    where
        T: FromStr + fmt::Display,
        T::Err: fmt::Display,
    {
        self.with(env, default, help, |v| v.parse::<T>().map_err(|e| e.to_string()))
    }

    /// An optional setting of any `FromStr` type.
    pub fn optional<T>(&mut self, env: &'static str, help: &'static str) -> Option<T>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        self.optional_with(env, help, |v| v.parse::<T>().map_err(|e| e.to_string()))
    }

    /// An integer within `min..=max`.
    pub fn range(&mut self, env: &'static str, default: u64, min: u64, max: u64, help: &'static str) -> u64 {
        self.with(env, default, help, |v| {
            let n: u64 = v.trim().parse().map_err(|_| "not a whole number".to_string())?;
            if (min..=max).contains(&n) {
                Ok(n)
            } else {
                Err(format!("must be between {min} and {max}"))
            }
        })
    }

    /// A whole-number setting defined by a [`Whole`].
    pub fn whole(&mut self, s: &Whole) -> u64 {
        self.range(s.env, s.default, s.min, s.max, s.help)
    }

    /// A duration setting defined by a [`Millis`] (milliseconds in the variable).
    pub fn millis(&mut self, s: &Millis) -> Duration {
        let ms = |d: Duration| d.as_millis() as u64;
        Duration::from_millis(self.range(s.env, ms(s.default), ms(s.min), ms(s.max), s.help))
    }

    /// A comma-separated list (items trimmed, empty items dropped).
    pub fn list(&mut self, env: &'static str, help: &'static str) -> Vec<String> {
        self.optional_with(env, help, |v| {
            Ok(v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect())
        })
        .unwrap_or_default()
    }

    /// Records a problem found while combining settings.
    pub fn error(&mut self, message: impl Into<String>) {
        self.errors.push(message.into());
    }

    /// Every setting read so far, for `--help`.
    pub fn docs(&self) -> &[SettingDoc] {
        &self.docs
    }

    /// `--help` text: one line per setting.
    pub fn help_text(&self, program: &str) -> String {
        let mut out = format!("{program}: every setting is an environment variable with a flag mirror\n\n");
        for d in &self.docs {
            out.push_str(&format!(
                "  {:<38} {:<30} default {}\n      {}\n",
                d.env, d.flag, d.default, d.help
            ));
        }
        out
    }

    /// Ends reading: any invalid value or unknown flag is an error.
    pub fn finish(mut self) -> Result<Vec<SettingDoc>, SettingsError> {
        let mut unknown: Vec<String> = self.flags.keys().cloned().collect();
        unknown.sort();
        for flag in unknown {
            self.errors.push(format!("unknown flag {flag}"));
        }
        if self.errors.is_empty() {
            Ok(self.docs)
        } else {
            Err(SettingsError(self.errors))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(env: &[(&str, &str)], args: &[&str]) -> SettingsReader {
        SettingsReader::new(
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
            args.iter().map(|a| a.to_string()),
        )
    }

    #[test]
    fn flag_beats_env_and_env_beats_default() {
        let mut r = reader(&[("TOLLGATE_A", "1"), ("TOLLGATE_B", "2")], &["--a=10"]);
        assert_eq!(r.parse("TOLLGATE_A", 0u32, ""), 10);
        assert_eq!(r.parse("TOLLGATE_B", 0u32, ""), 2);
        assert_eq!(r.parse("TOLLGATE_C", 7u32, ""), 7);
        assert!(r.finish().is_ok());
    }

    #[test]
    fn all_errors_are_reported_together() {
        let mut r = reader(&[("TOLLGATE_A", "x")], &["--b", "y", "--nope=1", "stray"]);
        r.parse("TOLLGATE_A", 0u32, "");
        r.range("TOLLGATE_B", 1, 1, 5, "");
        let err = r.finish().unwrap_err();
        assert_eq!(err.0.len(), 4, "{err}");
        let text = err.to_string();
        assert!(text.contains("TOLLGATE_A"), "{text}");
        assert!(text.contains("--b"), "{text}");
        assert!(text.contains("--nope"), "{text}");
        assert!(text.contains("stray"), "{text}");
    }

    #[test]
    fn empty_values_are_unset_and_lists_split() {
        let mut r = reader(&[("TOLLGATE_A", ""), ("TOLLGATE_L", " a, b ,,c ")], &[]);
        assert_eq!(r.parse("TOLLGATE_A", 3u8, ""), 3);
        assert_eq!(r.list("TOLLGATE_L", ""), vec!["a", "b", "c"]);
        assert_eq!(flag_for("TOLLGATE_MAX_BODY_BYTES"), "--max-body-bytes");
    }
}
