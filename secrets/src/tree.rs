//! A YAML document as a tree: mappings in file order (sops's MAC is taken in that order, and a
//! bundle changed by a command keeps its layout), sequences, and typed scalars; read with the
//! crate's YAML parser and written back as block YAML whose strings are double-quoted (JSON
//! escapes are valid YAML), so nothing is re-typed. Comments are not kept.

use std::fmt::Write;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// One node of the document. Comments are not kept: sops leaves them out of the MAC, and a
/// bundle has no use for them.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    Map(Vec<(String, Node)>),
    Seq(Vec<Node>),
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Null,
}

impl Node {
    /// Parses one YAML document. The error is the parser's message without a snippet of the
    /// text, which holds secrets.
    pub(crate) fn parse(text: &str) -> Result<Node, String> {
        let options = serde_saphyr::options! { with_snippet: false };
        let node: Option<Node> = serde_saphyr::from_str_with_options(text, options).map_err(|e| e.to_string())?;
        Ok(node.unwrap_or(Node::Null))
    }

    /// The document as block YAML.
    pub(crate) fn to_yaml(&self) -> String {
        let mut out = String::new();
        match self {
            Node::Map(entries) if !entries.is_empty() => emit_map(entries, 0, &mut out),
            Node::Seq(items) if !items.is_empty() => emit_seq(items, 0, &mut out),
            scalar => {
                out.push_str(&scalar_text(scalar));
                out.push('\n');
            }
        }
        out
    }

    /// The entry `key` of a mapping, created empty (or replacing a null) when missing; `None`
    /// when `self` is not a mapping.
    pub(crate) fn section(&mut self, key: &str) -> Option<&mut Node> {
        let Node::Map(entries) = self else { return None };
        let at = match entries.iter().position(|(k, _)| k == key) {
            Some(at) => at,
            None => {
                entries.push((key.to_string(), Node::Map(Vec::new())));
                entries.len() - 1
            }
        };
        let value = &mut entries[at].1;
        if *value == Node::Null {
            *value = Node::Map(Vec::new());
        }
        Some(value)
    }

    /// Sets `key` in a mapping (in place when present, else at the end); false when `self` is
    /// not a mapping.
    pub(crate) fn set(&mut self, key: &str, value: Node) -> bool {
        let Node::Map(entries) = self else { return false };
        match entries.iter_mut().find(|(k, _)| k == key) {
            Some((_, old)) => *old = value,
            None => entries.push((key.to_string(), value)),
        }
        true
    }

    /// Removes `key` from a mapping; whether it was there.
    pub(crate) fn remove(&mut self, key: &str) -> bool {
        let Node::Map(entries) = self else { return false };
        let before = entries.len();
        entries.retain(|(k, _)| k != key);
        entries.len() != before
    }

    /// The entry `key` of a mapping.
    pub(crate) fn get(&self, key: &str) -> Option<&Node> {
        let Node::Map(entries) = self else { return None };
        entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// What the node is, for messages that must not show its value.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Node::Map(_) => "a mapping",
            Node::Seq(_) => "a sequence",
            Node::Str(_) => "a string",
            Node::Int(_) => "an integer",
            Node::Float(_) => "a float",
            Node::Bool(_) => "a boolean",
            Node::Null => "null",
        }
    }
}

fn emit_map(entries: &[(String, Node)], indent: usize, out: &mut String) {
    for (key, value) in entries {
        let _ = write!(out, "{:indent$}{}:", "", quoted(key));
        emit_value(value, indent, out);
    }
}

fn emit_seq(items: &[Node], indent: usize, out: &mut String) {
    for item in items {
        let _ = write!(out, "{:indent$}-", "");
        emit_value(item, indent, out);
    }
}

/// After `key:` or `-`: a scalar on the same line, a non-empty collection on the next lines.
fn emit_value(value: &Node, indent: usize, out: &mut String) {
    match value {
        Node::Map(entries) if !entries.is_empty() => {
            out.push('\n');
            emit_map(entries, indent + 2, out);
        }
        Node::Seq(items) if !items.is_empty() => {
            out.push('\n');
            emit_seq(items, indent + 2, out);
        }
        scalar => {
            out.push(' ');
            out.push_str(&scalar_text(scalar));
            out.push('\n');
        }
    }
}

fn scalar_text(node: &Node) -> String {
    match node {
        Node::Map(_) => "{}".into(),
        Node::Seq(_) => "[]".into(),
        Node::Str(s) => quoted(s),
        Node::Int(i) => i.to_string(),
        Node::Float(f) => float_text(*f),
        Node::Bool(b) => b.to_string(),
        Node::Null => "null".into(),
    }
}

/// A float that YAML reads back as a float (`1.0`, not `1`).
fn float_text(f: f64) -> String {
    if f.is_nan() {
        return ".nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { ".inf".into() } else { "-.inf".into() };
    }
    let text = f.to_string();
    if text.contains(['.', 'e', 'E']) { text } else { format!("{text}.0") }
}

fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Node, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a YAML value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Int(v))
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Node, E> {
        i64::try_from(v).map(Node::Int).map_err(|_| E::custom("an integer is larger than 2^63 - 1"))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Float(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Str(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Node, E> {
        Ok(Node::Str(v))
    }

    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Node, D::Error> {
        Node::deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries: Vec<(String, Node)> = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            if entries.iter().any(|(k, _)| *k == key) {
                return Err(serde::de::Error::custom(format!("duplicate key {key:?}")));
            }
            let value = map.next_value::<Node>()?;
            entries.push((key, value));
        }
        Ok(Node::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_types_and_text_survive_a_round_trip() {
        let text = "b: 1\na:\n  - x\n  - {k: 2.5}\n  - []\nc: true\nd: null\ne: \"it's \\\"q\\\"\\n\"\nf: 1.0\ng: {}\n";
        let node = Node::parse(text).unwrap();
        let Node::Map(entries) = &node else { panic!("{node:?}") };
        let keys: Vec<&str> = entries.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["b", "a", "c", "d", "e", "f", "g"]);
        assert_eq!(entries[0].1, Node::Int(1));
        assert_eq!(entries[5].1, Node::Float(1.0));
        let again = Node::parse(&node.to_yaml()).unwrap();
        assert_eq!(again, node, "{}", node.to_yaml());
    }

    #[test]
    fn duplicate_keys_are_refused() {
        assert!(Node::parse("a: 1\na: 2\n").is_err());
    }
}
