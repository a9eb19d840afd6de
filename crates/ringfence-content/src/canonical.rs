//! Canonical JSON, the bytes that signatures cover: object keys sorted by their UTF-8 bytes,
//! no whitespace, integers only (no floats), strings escaped as serde_json escapes them.
//!
//! Written over `serde_json::Value` rather than relying on `Map` order, so it stays canonical
//! even if another crate in the build turns on serde_json's `preserve_order`.

use serde_json::Value;

/// Why a value has no canonical form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CanonicalError {
    #[error("{path}: floating-point numbers have no canonical form")]
    Float { path: String },
}

/// The canonical bytes of `value`.
pub fn to_canonical(value: &Value) -> Result<Vec<u8>, CanonicalError> {
    let mut out = Vec::new();
    write(value, &mut out, &mut String::from("$"))?;
    Ok(out)
}

fn write(value: &Value, out: &mut Vec<u8>, path: &mut String) -> Result<(), CanonicalError> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                out.extend_from_slice(u.to_string().as_bytes());
            } else if let Some(i) = n.as_i64() {
                out.extend_from_slice(i.to_string().as_bytes());
            } else {
                return Err(CanonicalError::Float { path: path.clone() });
            }
        }
        Value::String(s) => write_str(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                write(item, out, path)?;
                path.truncate(len);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
            out.push(b'{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(key, out);
                out.push(b':');
                let len = path.len();
                path.push('.');
                path.push_str(key);
                if let Some(v) = map.get(key) {
                    write(v, out, path)?;
                }
                path.truncate(len);
            }
            out.push(b'}');
        }
    }
    Ok(())
}

fn write_str(s: &str, out: &mut Vec<u8>) {
    // serde_json's string escaping is deterministic; serializing a &str cannot fail.
    match serde_json::to_vec(s) {
        Ok(bytes) => out.extend_from_slice(&bytes),
        Err(_) => out.extend_from_slice(b"\"\""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sorts_keys_and_drops_whitespace() {
        let v: Value =
            serde_json::from_str(r#"{ "b": [1, -2, {"z": null, "a": true}], "a": "x\n" }"#)
                .unwrap();
        assert_eq!(
            String::from_utf8(to_canonical(&v).unwrap()).unwrap(),
            r#"{"a":"x\n","b":[1,-2,{"a":true,"z":null}]}"#
        );
    }

    #[test]
    fn refuses_floats_with_their_path() {
        let err = to_canonical(&json!({"a": [1, {"b": 1.5}]})).unwrap_err();
        assert_eq!(
            err.to_string(),
            "$.a[1].b: floating-point numbers have no canonical form"
        );
    }
}
