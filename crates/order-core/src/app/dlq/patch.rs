//! JSON Patch (RFC 6902) over JSON Pointers (RFC 6901): applying an
//! operator's patch to a DLQ message, and the diff between two messages
//! (what a full replacement changed), so every revision is stored with its
//! patch.

use serde_json::{Map, Value};

/// Why a patch could not be applied: the operation's index and what was
/// wrong, in words an operator can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("operation {index} ({op} {path}): {message}")]
pub struct PatchError {
    pub index: usize,
    pub op: String,
    pub path: String,
    pub message: String,
}

/// Applies `patch` (a JSON array of RFC 6902 operations) to `doc`. All or
/// nothing: on an error `doc` is left as it was.
pub fn apply(doc: &Value, patch: &Value) -> Result<Value, PatchError> {
    let Some(ops) = patch.as_array() else {
        return Err(PatchError {
            index: 0,
            op: String::new(),
            path: String::new(),
            message: "a JSON Patch is an array of operations".to_owned(),
        });
    };
    let mut out = doc.clone();
    for (index, op) in ops.iter().enumerate() {
        apply_one(&mut out, op).map_err(|(op_name, path, message)| PatchError {
            index,
            op: op_name,
            path,
            message,
        })?;
    }
    Ok(out)
}

type OpError = (String, String, String);

fn apply_one(doc: &mut Value, op: &Value) -> Result<(), OpError> {
    let fail = |name: &str, path: &str, m: String| (name.to_owned(), path.to_owned(), m);
    let Some(obj) = op.as_object() else {
        return Err(fail("", "", "an operation is a JSON object".to_owned()));
    };
    let name = obj.get("op").and_then(Value::as_str).unwrap_or_default();
    let Some(path) = obj.get("path").and_then(Value::as_str) else {
        return Err(fail(
            name,
            "",
            "\"path\" (a JSON Pointer) is required".to_owned(),
        ));
    };
    let value = || {
        obj.get("value")
            .cloned()
            .ok_or_else(|| fail(name, path, "\"value\" is required".to_owned()))
    };
    let from = || {
        obj.get("from").and_then(Value::as_str).ok_or_else(|| {
            fail(
                name,
                path,
                "\"from\" (a JSON Pointer) is required".to_owned(),
            )
        })
    };
    let tokens = parse_pointer(path).map_err(|m| fail(name, path, m))?;
    let result = match name {
        "add" => add(doc, &tokens, value()?),
        "remove" => remove(doc, &tokens).map(drop),
        "replace" => {
            let v = value()?;
            remove(doc, &tokens).and_then(|_| add(doc, &tokens, v))
        }
        "move" => {
            let from_path = from()?;
            let source = parse_pointer(from_path).map_err(|m| fail(name, path, m))?;
            if tokens.len() > source.len() && tokens[..source.len()] == source[..] {
                Err("cannot move a value into one of its own children".to_owned())
            } else {
                remove(doc, &source).and_then(|v| add(doc, &tokens, v))
            }
        }
        "copy" => {
            let source = parse_pointer(from()?).map_err(|m| fail(name, path, m))?;
            match get(doc, &source) {
                Some(v) => add(doc, &tokens, v.clone()),
                None => Err("\"from\" names nothing".to_owned()),
            }
        }
        "test" => {
            let expected = value()?;
            match get(doc, &tokens) {
                Some(v) if *v == expected => Ok(()),
                Some(v) => Err(format!("test failed: the value is {v}, not {expected}")),
                None => Err("test failed: the path names nothing".to_owned()),
            }
        }
        other => Err(format!(
            "unknown op {other:?}: use add, remove, replace, move, copy or test"
        )),
    };
    result.map_err(|m| fail(name, path, m))
}

/// The reference tokens of a JSON Pointer (`""` is the whole document).
pub fn parse_pointer(path: &str) -> Result<Vec<String>, String> {
    if path.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = path.strip_prefix('/') else {
        return Err(format!(
            "{path:?} is not a JSON Pointer (it starts with '/')"
        ));
    };
    rest.split('/')
        .map(|t| {
            let mut out = String::with_capacity(t.len());
            let mut chars = t.chars();
            while let Some(c) = chars.next() {
                if c != '~' {
                    out.push(c);
                    continue;
                }
                match chars.next() {
                    Some('0') => out.push('~'),
                    Some('1') => out.push('/'),
                    _ => return Err(format!("{path:?}: '~' must be followed by 0 or 1")),
                }
            }
            Ok(out)
        })
        .collect()
}

/// `token` as a JSON Pointer token.
fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

fn get<'a>(doc: &'a Value, tokens: &[String]) -> Option<&'a Value> {
    tokens.iter().try_fold(doc, |v, t| match v {
        Value::Object(m) => m.get(t),
        Value::Array(a) => index(t, a.len()).ok().and_then(|i| a.get(i)),
        _ => None,
    })
}

fn parent<'a>(doc: &'a mut Value, tokens: &[String]) -> Result<&'a mut Value, String> {
    let mut v = doc;
    for t in tokens {
        v = match v {
            Value::Object(m) => m
                .get_mut(t)
                .ok_or_else(|| format!("no member {t:?} on the way"))?,
            Value::Array(a) => {
                let i = index(t, a.len())?;
                a.get_mut(i)
                    .ok_or_else(|| format!("no element {i} on the way"))?
            }
            _ => {
                return Err(format!(
                    "{t:?} is below a value that is neither object nor array"
                ))
            }
        };
    }
    Ok(v)
}

/// An array index token: digits without leading zeros, below `len`.
fn index(t: &str, len: usize) -> Result<usize, String> {
    let valid =
        !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) && (t == "0" || !t.starts_with('0'));
    match t.parse::<usize>() {
        Ok(i) if valid && i < len => Ok(i),
        _ => Err(format!("{t:?} is not an index of an array of {len}")),
    }
}

fn add(doc: &mut Value, tokens: &[String], value: Value) -> Result<(), String> {
    let Some((last, up)) = tokens.split_last() else {
        *doc = value;
        return Ok(());
    };
    match parent(doc, up)? {
        Value::Object(m) => {
            m.insert(last.clone(), value);
            Ok(())
        }
        Value::Array(a) => {
            let i = if last == "-" {
                a.len()
            } else {
                index(last, a.len() + 1)?
            };
            a.insert(i, value);
            Ok(())
        }
        _ => Err("the parent is neither object nor array".to_owned()),
    }
}

fn remove(doc: &mut Value, tokens: &[String]) -> Result<Value, String> {
    let Some((last, up)) = tokens.split_last() else {
        return Ok(std::mem::take(doc));
    };
    match parent(doc, up)? {
        Value::Object(m) => m
            .remove(last)
            .ok_or_else(|| format!("no member {last:?} to remove")),
        Value::Array(a) => {
            let i = index(last, a.len())?;
            Ok(a.remove(i))
        }
        _ => Err("the parent is neither object nor array".to_owned()),
    }
}

/// RFC 6902 operations that turn `from` into `to`: members are added,
/// removed or replaced one by one; arrays of the same length element by
/// element, other arrays as a whole.
pub fn diff(from: &Value, to: &Value) -> Value {
    let mut ops = Vec::new();
    diff_at(from, to, "", &mut ops);
    Value::Array(ops)
}

fn diff_at(from: &Value, to: &Value, path: &str, ops: &mut Vec<Value>) {
    if from == to {
        return;
    }
    match (from, to) {
        (Value::Object(a), Value::Object(b)) => diff_objects(a, b, path, ops),
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                diff_at(x, y, &format!("{path}/{i}"), ops);
            }
        }
        _ => ops.push(serde_json::json!({ "op": "replace", "path": path, "value": to })),
    }
}

fn diff_objects(a: &Map<String, Value>, b: &Map<String, Value>, path: &str, ops: &mut Vec<Value>) {
    for (k, x) in a {
        let p = format!("{path}/{}", escape(k));
        match b.get(k) {
            Some(y) => diff_at(x, y, &p, ops),
            None => ops.push(serde_json::json!({ "op": "remove", "path": p })),
        }
    }
    for (k, y) in b {
        if !a.contains_key(k) {
            let p = format!("{path}/{}", escape(k));
            ops.push(serde_json::json!({ "op": "add", "path": p, "value": y }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc() -> Value {
        json!({ "a": { "b": [1, 2, 3], "c/d": "x", "e~f": null }, "g": "h" })
    }

    #[test]
    fn every_operation_applies() {
        let patch = json!([
            { "op": "add", "path": "/a/b/1", "value": 9 },
            { "op": "add", "path": "/a/b/-", "value": 4 },
            { "op": "remove", "path": "/a/c~1d" },
            { "op": "replace", "path": "/a/e~0f", "value": true },
            { "op": "copy", "from": "/g", "path": "/i" },
            { "op": "move", "from": "/g", "path": "/j" },
            { "op": "test", "path": "/j", "value": "h" },
        ]);
        let out = apply(&doc(), &patch).expect("applies");
        assert_eq!(
            out,
            json!({ "a": { "b": [1, 9, 2, 3, 4], "e~f": true }, "i": "h", "j": "h" })
        );
    }

    #[test]
    fn a_failing_operation_names_itself_and_changes_nothing() {
        let cases = [
            (json!({ "op": "remove", "path": "/nope" }), "no member"),
            (
                json!({ "op": "replace", "path": "/a/b/7", "value": 1 }),
                "not an index",
            ),
            (
                json!({ "op": "add", "path": "/a/b/01", "value": 1 }),
                "not an index",
            ),
            (
                json!({ "op": "test", "path": "/g", "value": "z" }),
                "test failed",
            ),
            (
                json!({ "op": "move", "from": "/a", "path": "/a/z" }),
                "own children",
            ),
            (
                json!({ "op": "add", "path": "a", "value": 1 }),
                "not a JSON Pointer",
            ),
            (json!({ "op": "add", "path": "/a/~2", "value": 1 }), "'~'"),
            (
                json!({ "op": "add", "path": "/x" }),
                "\"value\" is required",
            ),
            (json!({ "op": "copy", "path": "/x" }), "\"from\""),
            (json!({ "op": "frobnicate", "path": "/x" }), "unknown op"),
            (json!({ "path": "/x" }), "unknown op"),
            (json!("add"), "JSON object"),
        ];
        for (op, expected) in cases {
            let patch = json!([{ "op": "add", "path": "/ok", "value": 1 }, op]);
            let e = apply(&doc(), &patch).expect_err("fails");
            assert_eq!(e.index, 1, "{e}");
            assert!(
                e.to_string().contains(expected),
                "{e} should say {expected}"
            );
        }
        assert!(apply(&doc(), &json!({ "op": "add" }))
            .expect_err("not an array")
            .message
            .contains("array"));
    }

    #[test]
    fn a_diff_applied_gives_the_target() {
        let from = doc();
        let to = json!({ "a": { "b": [1, 5, 3], "c/d": "y", "new": [] }, "g": ["h"] });
        let patch = diff(&from, &to);
        assert_eq!(apply(&from, &patch).expect("applies"), to);
        assert_eq!(diff(&to, &to), json!([]));
        // The whole document replaced when the kinds differ.
        assert_eq!(
            diff(&json!(1), &json!("x")),
            json!([{ "op": "replace", "path": "", "value": "x" }])
        );
    }
}
