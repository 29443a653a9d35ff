//! Reading one TOML file (plus environment overrides) with every error collected and located.
//!
//! Each value is read through a [`Reader`] that records what was asked for; whatever is left
//! over is an unknown key. Errors name the file, the line and the dotted key
//! (`limit[1].window`), and all of them are reported together rather than the first alone.
//!
//! Environment overrides (`KALSHI_RISKD__SECTION__KEY`, double underscores between levels,
//! matched case-insensitively) are strings; a typed setting parses them as its type. The
//! `config` crate would do this layering too, but it forgets where a value came from, and an
//! operator fixing a file at 3 a.m. needs the line.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Value;
use toml::de::{DeTable, DeValue};

/// One problem in the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file, or `environment` for an override.
    pub origin: String,
    pub line: Option<usize>,
    /// The dotted key (empty for a whole-file problem).
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.origin)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// All the problems found, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// A parsed file with where each key sits, and which keys came from the environment.
#[derive(Debug, Clone)]
pub struct Source {
    pub path: PathBuf,
    pub table: toml::Table,
    lines: BTreeMap<String, usize>,
    /// `(dotted key, variable name)` of environment overrides.
    from_env: BTreeMap<String, String>,
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())]
        .bytes()
        .filter(|b| *b == b'\n')
        .count()
        + 1
}

fn record_lines(text: &str, prefix: &str, table: &DeTable<'_>, out: &mut BTreeMap<String, usize>) {
    for (k, v) in table.iter() {
        let key = if prefix.is_empty() {
            k.get_ref().to_string()
        } else {
            format!("{prefix}.{}", k.get_ref())
        };
        out.insert(key.clone(), line_of(text, k.span().start));
        match v.get_ref() {
            DeValue::Table(t) => record_lines(text, &key, t, out),
            DeValue::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let at = format!("{key}[{i}]");
                    out.insert(at.clone(), line_of(text, item.span().start));
                    if let DeValue::Table(t) = item.get_ref() {
                        record_lines(text, &at, t, out);
                    }
                }
            }
            _ => {}
        }
    }
}

impl Source {
    /// Parses `text` read from `path`. A syntax error is returned located.
    pub fn parse(path: &Path, text: &str) -> Result<Source, ConfigError> {
        let origin = path.display().to_string();
        let table: toml::Table = toml::from_str(text).map_err(|e| ConfigError {
            origin: origin.clone(),
            line: e.span().map(|s| line_of(text, s.start)),
            key: String::new(),
            message: format!("not valid TOML: {}", e.message()),
        })?;
        let mut lines = BTreeMap::new();
        if let Ok(spanned) = DeTable::parse(text) {
            record_lines(text, "", spanned.get_ref(), &mut lines);
        }
        Ok(Source {
            path: path.to_owned(),
            table,
            lines,
            from_env: BTreeMap::new(),
        })
    }

    pub fn read(path: &Path) -> Result<Source, ConfigError> {
        let fail = |line, message| ConfigError {
            origin: path.display().to_string(),
            line,
            key: String::new(),
            message,
        };
        let bytes = std::fs::read(path).map_err(|e| fail(None, format!("cannot read: {e}")))?;
        let text = String::from_utf8(bytes).map_err(|e| {
            let at = e.utf8_error().valid_up_to();
            let bytes = e.as_bytes();
            let good = String::from_utf8_lossy(&bytes[..at]);
            let column = good.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            fail(
                Some(line_of(&good, good.len())),
                format!(
                    "not UTF-8 text: byte 0x{:02x} at column {column} cannot be read",
                    bytes[at]
                ),
            )
        })?;
        Self::parse(path, &text)
    }

    /// Applies `PREFIX__SECTION__KEY=value` overrides (names matched case-insensitively).
    pub fn overlay_env(&mut self, prefix: &str, vars: impl IntoIterator<Item = (String, String)>) {
        let lead = format!("{}__", prefix.to_ascii_uppercase());
        for (name, value) in vars {
            if !name.to_ascii_uppercase().starts_with(&lead) {
                continue;
            }
            let parts: Vec<String> = name[lead.len()..]
                .split("__")
                .map(|p| p.to_ascii_lowercase())
                .collect();
            if parts.iter().any(String::is_empty) {
                continue;
            }
            let mut t = &mut self.table;
            for p in &parts[..parts.len() - 1] {
                let entry = t
                    .entry(p.clone())
                    .or_insert_with(|| Value::Table(toml::Table::new()));
                if !entry.is_table() {
                    *entry = Value::Table(toml::Table::new());
                }
                let Value::Table(next) = entry else {
                    unreachable!("just made a table")
                };
                t = next;
            }
            let last = parts[parts.len() - 1].clone();
            t.insert(last, Value::String(value));
            self.from_env.insert(parts.join("."), name);
        }
    }

    fn origin_of(&self, key: &str) -> (String, Option<usize>) {
        match self.from_env.get(key) {
            Some(var) => (format!("environment variable {var}"), None),
            None => (
                self.path.display().to_string(),
                self.lines.get(key).copied().or_else(|| {
                    // A missing key: point at its table if the table is there.
                    key.rsplit_once('.')
                        .and_then(|(t, _)| self.lines.get(t).copied())
                }),
            ),
        }
    }

    pub fn error(&self, key: &str, message: impl Into<String>) -> ConfigError {
        let (origin, line) = self.origin_of(key);
        ConfigError {
            origin,
            line,
            key: key.to_owned(),
            message: message.into(),
        }
    }
}

/// Reads typed settings from a [`Source`], collecting errors and remembering what was read.
pub struct Reader<'a> {
    src: &'a Source,
    pub errors: Vec<ConfigError>,
    used: BTreeSet<String>,
}

fn lookup<'v>(table: &'v toml::Table, key: &str) -> Option<&'v Value> {
    let mut parts = key.split('.');
    let mut cur = lookup_part(table, parts.next()?)?;
    for p in parts {
        cur = lookup_part(cur.as_table()?, p)?;
    }
    Some(cur)
}

/// `name` or `name[i]`.
fn lookup_part<'v>(table: &'v toml::Table, part: &str) -> Option<&'v Value> {
    match part.split_once('[') {
        Some((name, idx)) => {
            let i: usize = idx.trim_end_matches(']').parse().ok()?;
            table.get(name)?.as_array()?.get(i)
        }
        None => table.get(part),
    }
}

impl<'a> Reader<'a> {
    pub fn new(src: &'a Source) -> Self {
        Reader {
            src,
            errors: Vec::new(),
            used: BTreeSet::new(),
        }
    }

    pub fn source(&self) -> &Source {
        self.src
    }

    pub fn fail(&mut self, key: &str, message: impl Into<String>) {
        let e = self.src.error(key, message);
        self.errors.push(e);
    }

    fn value(&mut self, key: &str) -> Option<&'a Value> {
        self.used.insert(key.to_owned());
        lookup(&self.src.table, key)
    }

    pub fn has(&self, key: &str) -> bool {
        lookup(&self.src.table, key).is_some()
    }

    /// Marks a table as known (its keys are read individually).
    pub fn table(&mut self, key: &str) -> bool {
        match self.value(key) {
            None => false,
            Some(Value::Table(_)) => true,
            Some(_) => {
                self.fail(key, "expected a table");
                false
            }
        }
    }

    /// The number of entries of an array of tables (`[[key]]`).
    pub fn array_len(&mut self, key: &str) -> usize {
        match self.value(key) {
            None => 0,
            Some(Value::Array(a)) => a.len(),
            Some(_) => {
                self.fail(key, "expected an array of tables ([[...]])");
                0
            }
        }
    }

    pub fn string(&mut self, key: &str) -> Option<String> {
        match self.value(key)? {
            Value::String(s) => Some(s.clone()),
            other => {
                self.fail(
                    key,
                    format!("expected a string, found {}", other.type_str()),
                );
                None
            }
        }
    }

    pub fn required_string(&mut self, key: &str) -> Option<String> {
        let v = self.string(key);
        match &v {
            None if !self.has(key) => self.fail(key, "is required"),
            Some(s) if s.trim().is_empty() => {
                self.fail(key, "must not be empty");
                return None;
            }
            _ => {}
        }
        v
    }

    /// One of `choices`; `default` when absent.
    pub fn choice(&mut self, key: &str, choices: &[&str], default: &str) -> String {
        match self.string(key) {
            None => default.to_owned(),
            Some(s) if choices.contains(&s.as_str()) => s,
            Some(s) => {
                self.fail(key, format!("{s:?} is not one of {}", choices.join(", ")));
                default.to_owned()
            }
        }
    }

    pub fn int(&mut self, key: &str, range: std::ops::RangeInclusive<i64>) -> Option<i64> {
        let v = match self.value(key)? {
            Value::Integer(i) => *i,
            Value::String(s) if self.src.from_env.contains_key(key) => match s.trim().parse() {
                Ok(i) => i,
                Err(_) => {
                    self.fail(key, format!("{s:?} is not a whole number"));
                    return None;
                }
            },
            other => {
                self.fail(
                    key,
                    format!("expected a whole number, found {}", other.type_str()),
                );
                return None;
            }
        };
        if !range.contains(&v) {
            self.fail(
                key,
                format!("{v} is out of range {}..={}", range.start(), range.end()),
            );
            return None;
        }
        Some(v)
    }

    /// A decimal number; integers are accepted.
    pub fn number(&mut self, key: &str, range: std::ops::RangeInclusive<f64>) -> Option<f64> {
        let v = match self.value(key)? {
            Value::Float(f) => *f,
            Value::Integer(i) => *i as f64,
            Value::String(s) if self.src.from_env.contains_key(key) => match s.trim().parse() {
                Ok(f) => f,
                Err(_) => {
                    self.fail(key, format!("{s:?} is not a number"));
                    return None;
                }
            },
            other => {
                self.fail(
                    key,
                    format!("expected a number, found {}", other.type_str()),
                );
                return None;
            }
        };
        if !v.is_finite() || !range.contains(&v) {
            self.fail(
                key,
                format!("{v} is out of range {}..={}", range.start(), range.end()),
            );
            return None;
        }
        Some(v)
    }

    /// A decimal number written exactly (`5000.0`, `12.5`), kept as its text for fixed-point
    /// parsing: no binary rounding on its way to dollars.
    pub fn decimal_text(&mut self, key: &str) -> Option<String> {
        match self.value(key)? {
            Value::Integer(i) if *i >= 0 => Some(i.to_string()),
            Value::Float(f) if f.is_finite() && *f >= 0.0 => {
                // TOML floats print back as written for ordinary decimal values.
                Some(format!("{f}"))
            }
            Value::String(s) if self.src.from_env.contains_key(key) => Some(s.trim().to_owned()),
            other => {
                self.fail(
                    key,
                    format!("expected a non-negative number, found {other}"),
                );
                None
            }
        }
    }

    pub fn boolean(&mut self, key: &str) -> Option<bool> {
        match self.value(key)? {
            Value::Boolean(b) => Some(*b),
            Value::String(s) if self.src.from_env.contains_key(key) => match s.trim() {
                "true" => Some(true),
                "false" => Some(false),
                other => {
                    self.fail(key, format!("{other:?} is not true or false"));
                    None
                }
            },
            other => {
                self.fail(
                    key,
                    format!("expected true or false, found {}", other.type_str()),
                );
                None
            }
        }
    }

    /// A duration such as `"15s"`, `"5m"` or `"1h"`, from `min` to `max` (both included) and
    /// in whole milliseconds; `what` names it in the error ("a window").
    pub fn bounded_duration(
        &mut self,
        key: &str,
        what: &str,
        min: Duration,
        max: Duration,
    ) -> Option<Duration> {
        let d = self.duration(key)?;
        let written = lookup(&self.src.table, key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let shown = |d: Duration| humantime::format_duration(d).to_string();
        if d < min || d > max {
            self.fail(
                key,
                format!(
                    "{written:?} is out of range: {what} runs from {} to {}",
                    shown(min),
                    shown(max)
                ),
            );
            return None;
        }
        if d.subsec_nanos() % 1_000_000 != 0 {
            self.fail(
                key,
                format!("{written:?} is finer than a millisecond, the unit windows count in"),
            );
            return None;
        }
        Some(d)
    }

    /// A duration such as `"15s"`, `"5m"` or `"1h"`.
    pub fn duration(&mut self, key: &str) -> Option<Duration> {
        let text = self.string(key)?;
        match humantime::parse_duration(&text) {
            Ok(d) if !d.is_zero() => Some(d),
            Ok(_) => {
                self.fail(key, "must be longer than zero");
                None
            }
            Err(e) => {
                self.fail(
                    key,
                    format!("{text:?} is not a duration like \"15s\", \"5m\" or \"1h\": {e}"),
                );
                None
            }
        }
    }

    pub fn string_array(&mut self, key: &str) -> Option<Vec<String>> {
        match self.value(key)? {
            Value::Array(items) => {
                let mut out = Vec::new();
                for (i, v) in items.iter().enumerate() {
                    match v.as_str() {
                        Some(s) => out.push(s.to_owned()),
                        None => self.fail(&format!("{key}[{i}]"), "expected a string"),
                    }
                }
                Some(out)
            }
            other => {
                self.fail(
                    key,
                    format!("expected an array of strings, found {}", other.type_str()),
                );
                None
            }
        }
    }

    pub fn int_array(
        &mut self,
        key: &str,
        range: std::ops::RangeInclusive<i64>,
    ) -> Option<Vec<i64>> {
        match self.value(key)? {
            Value::Array(items) => {
                let mut out = Vec::new();
                for (i, v) in items.iter().enumerate() {
                    match v.as_integer() {
                        Some(n) if range.contains(&n) => out.push(n),
                        _ => self.fail(
                            &format!("{key}[{i}]"),
                            format!(
                                "expected a whole number in {}..={}",
                                range.start(),
                                range.end()
                            ),
                        ),
                    }
                }
                Some(out)
            }
            other => {
                self.fail(
                    key,
                    format!(
                        "expected an array of whole numbers, found {}",
                        other.type_str()
                    ),
                );
                None
            }
        }
    }

    /// Every key present but never read is an error; returns all the errors found.
    pub fn finish(mut self) -> Vec<ConfigError> {
        let mut unknown = Vec::new();
        walk(&self.src.table, "", &mut |key| {
            if !self.used.contains(key) {
                unknown.push(key.to_owned());
            }
        });
        for key in unknown {
            // Report a whole unknown table once, not each of its keys.
            if let Some((parent, _)) = key.rsplit_once('.')
                && !self.used.contains(parent)
                && self.errors.iter().any(|e| e.key == parent)
            {
                continue;
            }
            self.fail(&key, "unknown key");
        }
        let mut errors = self.errors;
        errors.sort_by_key(|e| (e.line.is_none(), e.line));
        errors
    }
}

/// Calls `f` with the dotted key of every table and leaf.
fn walk(table: &toml::Table, prefix: &str, f: &mut impl FnMut(&str)) {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        f(&key);
        match v {
            Value::Table(t) => walk(t, &key, f),
            Value::Array(items) if items.iter().all(Value::is_table) => {
                for (i, item) in items.iter().enumerate() {
                    if let Value::Table(t) = item {
                        walk(t, &format!("{key}[{i}]"), f);
                    }
                }
            }
            _ => {}
        }
    }
}
