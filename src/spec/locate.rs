//! Where a field of a spec was written: field path → `FILE:LINE:COL`.
//!
//! serde_yaml keeps no positions, so each spec file is also read with the `yaml-rust2` event
//! parser, whose events carry markers, into a [`SourceMap`] from dotted field paths
//! (`train.learning_rate`, `rewards.2.kind`) to the positions of their keys and values.
//! A [`Locator`] combines the source maps of an `extends` chain with the values that came from
//! the environment or `--set`, so a value is reported where it was actually set.
//!
//! [`roots`] locates the files a spec names: they must lie inside the spec's project or an
//! allowed root.

pub mod roots;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::Marker;

/// A 1-based line and column in a source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

impl Pos {
    /// The start of a file, where problems with no better position are reported.
    pub const START: Pos = Pos { line: 1, col: 1 };

    fn from_marker(m: &Marker) -> Pos {
        // yaml-rust2 markers: 1-based lines, 0-based columns.
        Pos {
            line: m.line().max(1),
            col: m.col() + 1,
        }
    }
}

/// The positions of one node: its key (absent for the root and sequence items) and its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Node {
    pub key: Option<Pos>,
    pub value: Pos,
}

/// A YAML syntax error with the position the parser stopped at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlSyntaxError {
    pub pos: Pos,
    pub message: String,
}

impl fmt::Display for YamlSyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.pos.line, self.pos.col, self.message)
    }
}

/// Joins a dotted field path and one more segment (`""` is the root).
pub fn join(path: &str, segment: &str) -> String {
    if path.is_empty() {
        segment.to_string()
    } else {
        format!("{path}.{segment}")
    }
}

/// The parent of a dotted path (`None` for the root).
pub fn parent(path: &str) -> Option<&str> {
    if path.is_empty() {
        None
    } else {
        Some(path.rsplit_once('.').map(|(p, _)| p).unwrap_or(""))
    }
}

/// Converts a JSON pointer (`/train/lr`, `/rewards/2`) into a dotted field path.
pub fn pointer_to_path(pointer: &str) -> String {
    pointer
        .split('/')
        .skip(1)
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect::<Vec<_>>()
        .join(".")
}

/// Field path → positions, for one YAML file (its first document).
#[derive(Debug, Clone, Default)]
pub struct SourceMap {
    nodes: HashMap<String, Node>,
    /// Keys written twice in one mapping: (path, position of the repeated key).
    pub duplicates: Vec<(String, Pos)>,
}

impl SourceMap {
    /// Parses `text`; a syntax error comes back with its position.
    pub fn parse(text: &str) -> Result<SourceMap, YamlSyntaxError> {
        let mut parser = Parser::new_from_str(text);
        let mut events = Vec::new();
        loop {
            let (ev, mark) = parser.next_token().map_err(|e| YamlSyntaxError {
                pos: Pos::from_marker(e.marker()),
                message: e.info().to_string(),
            })?;
            match ev {
                Event::StreamEnd => break,
                // Only the first document of a stream is a spec.
                Event::DocumentEnd => break,
                Event::StreamStart | Event::DocumentStart | Event::Nothing => {}
                ev => events.push((ev, Pos::from_marker(&mark))),
            }
        }
        let mut map = SourceMap::default();
        let mut walker = Walker {
            events: &events,
            at: 0,
            map: &mut map,
        };
        if !events.is_empty() {
            walker.node(String::new(), None);
        }
        Ok(map)
    }

    /// Reads and parses a file.
    pub fn load(path: &Path) -> crate::Result<Result<SourceMap, YamlSyntaxError>> {
        let text = std::fs::read_to_string(path).map_err(|e| crate::Error::io(path, e))?;
        Ok(SourceMap::parse(&text))
    }

    /// The node at `path`, if this file wrote it.
    pub fn get(&self, path: &str) -> Option<&Node> {
        self.nodes.get(path)
    }

    /// Whether this file wrote `path`.
    pub fn contains(&self, path: &str) -> bool {
        self.nodes.contains_key(path)
    }

    /// The position of the key of `path` (its value's for the root and list items).
    pub fn key_pos(&self, path: &str) -> Option<Pos> {
        self.nodes.get(path).map(|n| n.key.unwrap_or(n.value))
    }

    /// The position of the value of `path`.
    pub fn value_pos(&self, path: &str) -> Option<Pos> {
        self.nodes.get(path).map(|n| n.value)
    }

    /// The longest prefix of `path` (itself included) that this file wrote, with its node.
    pub fn nearest(&self, path: &str) -> Option<(&str, &Node)> {
        let mut p = path;
        loop {
            if let Some((k, n)) = self.nodes.get_key_value(p) {
                return Some((k.as_str(), n));
            }
            p = parent(p)?;
        }
    }
}

/// Walks the flat event list recursively, recording every node's position.
struct Walker<'e, 'm> {
    events: &'e [(Event, Pos)],
    at: usize,
    map: &'m mut SourceMap,
}

impl Walker<'_, '_> {
    fn next(&mut self) -> Option<&(Event, Pos)> {
        let e = self.events.get(self.at);
        self.at += 1;
        e
    }

    /// Consumes one node (scalar, alias, mapping or sequence) and records it under `path`.
    fn node(&mut self, path: String, key: Option<Pos>) {
        let Some((ev, mut pos)) = self.next().cloned() else {
            return;
        };
        // A block mapping's start marker can point past its first key (at the `:`).
        if let (Event::MappingStart(..), Some((first, fpos))) = (&ev, self.events.get(self.at)) {
            if !matches!(first, Event::MappingEnd) && *fpos < pos {
                pos = *fpos;
            }
        }
        if self.map.nodes.contains_key(&path) {
            if let Some(k) = key {
                self.map.duplicates.push((path.clone(), k));
            }
        } else {
            self.map
                .nodes
                .insert(path.clone(), Node { key, value: pos });
        }
        match ev {
            Event::MappingStart(..) => loop {
                let Some((kev, kpos)) = self.next().cloned() else {
                    return;
                };
                let name = match kev {
                    Event::MappingEnd => return,
                    Event::Scalar(s, ..) => s,
                    // A complex key (a mapping or list as key) is not a field name: skip it.
                    Event::MappingStart(..) | Event::SequenceStart(..) => {
                        self.at -= 1;
                        self.skip();
                        "?".to_string()
                    }
                    _ => "?".to_string(),
                };
                self.node(join(&path, &name), Some(kpos));
            },
            Event::SequenceStart(..) => {
                let mut i = 0usize;
                loop {
                    match self.events.get(self.at) {
                        None => return,
                        Some((Event::SequenceEnd, _)) => {
                            self.at += 1;
                            return;
                        }
                        Some(_) => {
                            self.node(join(&path, &i.to_string()), None);
                            i += 1;
                        }
                    }
                }
            }
            _ => {}
        }
    }

    /// Consumes one node without recording it.
    fn skip(&mut self) {
        let mut depth = 0usize;
        while let Some((ev, _)) = self.next() {
            match ev {
                Event::MappingStart(..) | Event::SequenceStart(..) => depth += 1,
                Event::MappingEnd | Event::SequenceEnd => depth = depth.saturating_sub(1),
                _ => {}
            }
            if depth == 0 {
                return;
            }
        }
    }
}

/// Where a reported problem is: a file position, or the override that set the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file path as given, or a label such as `env RUNNER_TRAIN__LR` / `--set train.lr=1`.
    pub file: String,
    /// 1-based; 0 when the origin is not a file.
    pub line: usize,
    /// 1-based; 0 when the origin is not a file.
    pub col: usize,
}

/// Locates `path` in one file's source map: the exact node's key (`key`) or value, else the
/// key of its nearest written ancestor, else the start of the file.
pub fn locate_in(map: &SourceMap, file: &str, path: &str, key: bool) -> Location {
    let pos = match map.nearest(path) {
        Some((prefix, node)) if prefix == path && !key => node.value,
        Some((_, node)) => node.key.unwrap_or(node.value),
        None => Pos::START,
    };
    Location {
        file: file.to_string(),
        line: pos.line,
        col: pos.col,
    }
}

/// Locates field paths of a resolved spec across the files of its `extends` chain and the
/// environment / `--set` overrides.
#[derive(Debug, Clone, Default)]
pub struct Locator {
    /// The spec file first, then its parents in `extends` order.
    files: Vec<(PathBuf, SourceMap)>,
    /// Overrides in the order applied (later wins): (field path, label).
    overrides: Vec<(String, String)>,
}

impl Locator {
    pub fn new() -> Locator {
        Locator::default()
    }

    /// Adds a file of the chain; add the spec file first, then its parents.
    pub fn add_file(&mut self, path: impl Into<PathBuf>, map: SourceMap) {
        self.files.push((path.into(), map));
    }

    /// Records that `path` was set by an override labelled `label` (e.g. `--set train.lr=1`).
    pub fn add_override(&mut self, path: impl Into<String>, label: impl Into<String>) {
        self.overrides.push((path.into(), label.into()));
    }

    /// The first file added (the spec itself), if any.
    pub fn main_file(&self) -> Option<&Path> {
        self.files.first().map(|(p, _)| p.as_path())
    }

    /// The source map of a file of the chain.
    pub fn source_map(&self, file: &Path) -> Option<&SourceMap> {
        self.files.iter().find(|(p, _)| p == file).map(|(_, m)| m)
    }

    /// Where `path` was set. `key` asks for the key's position (unknown fields, missing
    /// children) rather than the value's (wrong types, bad values).
    ///
    /// An override of the path or of one of its ancestors wins (the last one applied);
    /// otherwise the file that wrote the longest prefix of the path (the nearest file first on
    /// ties, since a child overrides its parents); a default falls back to the start of the spec.
    pub fn locate(&self, path: &str, key: bool) -> Location {
        if let Some((_, label)) = self
            .overrides
            .iter()
            .rev()
            .find(|(p, _)| is_prefix(p, path))
        {
            return Location {
                file: label.clone(),
                line: 0,
                col: 0,
            };
        }
        let mut best: Option<(usize, &PathBuf, Pos)> = None;
        for (file, map) in &self.files {
            if let Some((prefix, node)) = map.nearest(path) {
                let depth = if prefix.is_empty() {
                    0
                } else {
                    prefix.split('.').count()
                };
                let exact = prefix == path;
                let pos = if exact && !key {
                    node.value
                } else {
                    node.key.unwrap_or(node.value)
                };
                if best.as_ref().is_none_or(|(d, _, _)| depth > *d) {
                    best = Some((depth, file, pos));
                }
            }
        }
        match best {
            Some((_, file, pos)) => Location {
                file: file.display().to_string(),
                line: pos.line,
                col: pos.col,
            },
            None => Location {
                file: self
                    .main_file()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                line: Pos::START.line,
                col: Pos::START.col,
            },
        }
    }
}

/// Whether dotted path `prefix` is `path` or one of its ancestors.
pub fn is_prefix(prefix: &str, path: &str) -> bool {
    prefix.is_empty()
        || path == prefix
        || (path.starts_with(prefix) && path.as_bytes().get(prefix.len()) == Some(&b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "\
# comment
name: demo
train:
  learning_rate: 2.0e-6
  max_steps: 200
rewards:
  - name: fmt
    kind: format
  - {name: sem, kind: semantic}
weights: {fmt: 0.2}
";

    #[test]
    fn keys_and_values_are_located() {
        let m = SourceMap::parse(DOC).unwrap();
        assert_eq!(m.key_pos("name"), Some(Pos { line: 2, col: 1 }));
        assert_eq!(m.value_pos("name"), Some(Pos { line: 2, col: 7 }));
        assert_eq!(
            m.key_pos("train.learning_rate"),
            Some(Pos { line: 4, col: 3 })
        );
        assert_eq!(
            m.value_pos("train.max_steps"),
            Some(Pos { line: 5, col: 14 })
        );
        assert_eq!(m.value_pos("rewards.0"), Some(Pos { line: 7, col: 5 }));
        assert_eq!(m.key_pos("rewards.0.kind"), Some(Pos { line: 8, col: 5 }));
        assert_eq!(m.key_pos("rewards.1.kind"), Some(Pos { line: 9, col: 17 }));
        assert_eq!(m.value_pos("weights.fmt"), Some(Pos { line: 10, col: 16 }));
        assert_eq!(m.nearest("train.epsilon").map(|(p, _)| p), Some("train"));
        assert_eq!(m.nearest("zzz").map(|(p, _)| p), Some(""));
    }

    #[test]
    fn syntax_errors_have_positions() {
        let e = SourceMap::parse("a: 1\nb: [1, 2\nc: 3\n").unwrap_err();
        assert!(e.pos.line >= 2, "{e:?}");
        let e = SourceMap::parse("a:\n  b: 1\n c: 2\n").unwrap_err();
        assert_eq!(e.pos.line, 3, "{e:?}");
    }

    #[test]
    fn duplicates_are_recorded() {
        let m = SourceMap::parse("a: 1\nb: 2\na: 3\n").unwrap();
        assert_eq!(
            m.duplicates,
            vec![("a".to_string(), Pos { line: 3, col: 1 })]
        );
    }

    #[test]
    fn locator_prefers_the_file_that_set_the_value_and_overrides() {
        let child = SourceMap::parse("extends: base.yaml\ntrain:\n  max_steps: 600\n").unwrap();
        let base = SourceMap::parse("train:\n  max_steps: 200\n  learning_rate: 2e-6\n").unwrap();
        let mut l = Locator::new();
        l.add_file("child.yaml", child);
        l.add_file("base.yaml", base);
        fn at(l: &Locator, p: &str) -> String {
            let x = l.locate(p, false);
            format!("{}:{}:{}", x.file, x.line, x.col)
        }
        assert_eq!(at(&l, "train.max_steps"), "child.yaml:3:14");
        assert_eq!(at(&l, "train.learning_rate"), "base.yaml:3:18");
        assert_eq!(at(&l, "train.epsilon"), "child.yaml:2:1");
        l.add_override("train.learning_rate", "--set train.learning_rate=1");
        assert_eq!(
            at(&l, "train.learning_rate"),
            "--set train.learning_rate=1:0:0"
        );
        assert!(is_prefix("train", "train.lr") && !is_prefix("tra", "train.lr"));
        assert_eq!(pointer_to_path("/rewards/2/kind"), "rewards.2.kind");
    }
}
