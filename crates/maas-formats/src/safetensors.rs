//! safetensors: the header of each file (a u64 little-endian length N, then N bytes of JSON),
//! checked against the data that follows it, and the signature of a whole checkpoint.
//!
//! The checks are those of the reference implementation: each tensor's byte range must match
//! its dtype and shape, and the tensors must tile the data section exactly (no overlap, no
//! gap, nothing after the last one). The data itself is never read.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Seek};

use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::source::Source;
use crate::{FormatError, SafetensorsHeader, Signature, TensorSpec};

/// The largest header accepted (the reference implementation's limit).
pub const MAX_HEADER_BYTES: u64 = 100_000_000;

/// Reads and checks the header of one safetensors file.
pub fn read_safetensors_header<R: Read + Seek>(reader: R) -> Result<SafetensorsHeader, FormatError> {
    let mut src = Source::open(reader)?;
    if src.len() == 0 {
        return Err(FormatError::Empty);
    }
    let header_len = src.read_u64(format_args!("the safetensors header length (the first 8 bytes)"))?;
    if header_len > MAX_HEADER_BYTES {
        return Err(FormatError::InvalidSafetensors(format!(
            "the header length field says {header_len} bytes, more than the {MAX_HEADER_BYTES} a header may have \
             (is this a safetensors file?)"
        )));
    }
    let header = src.read_vec(header_len, MAX_HEADER_BYTES, format_args!("the safetensors header"))?;
    let data_len = src.len() - src.pos();
    if header.first() != Some(&b'{') {
        return Err(FormatError::InvalidSafetensors(
            "the header does not start with '{' (is this a safetensors file?)".into(),
        ));
    }
    let entries: Map<String, Value> =
        serde_json::from_slice(&header).map_err(|e| FormatError::SafetensorsJson(e.to_string()))?;
    drop(header);

    let mut metadata = BTreeMap::new();
    let mut tensors = Vec::with_capacity(entries.len());
    for (name, entry) in entries {
        if name == "__metadata__" {
            metadata = string_map(entry)?;
            continue;
        }
        tensors.push(tensor(name, entry, data_len)?);
    }
    check_tiling(&mut tensors, data_len)?;
    Ok(SafetensorsHeader { tensors: tensors.into_iter().map(|t| t.spec).collect(), metadata, data_len })
}

/// The signature of a safetensors checkpoint made of the files whose headers are given (one
/// or more shards), with its `config.json` if there is one.
///
/// `inputs` and `outputs` are empty (safetensors stores weights, not a graph). `metadata` is
/// `{"tensors": N, "parameters": total element count, "dtypes": {"FP32": number of tensors,
/// ...}, "config": <config.json> | null, "architecture": config.architectures[0] | null,
/// "model_type": config.model_type | null}`.
pub fn safetensors_signature(
    headers: &[SafetensorsHeader],
    config_json: Option<&[u8]>,
) -> Result<Signature, FormatError> {
    if headers.is_empty() {
        return Err(FormatError::InvalidSafetensors("no safetensors file given".into()));
    }
    let mut seen = HashMap::new();
    let mut parameters = 0u64;
    let mut dtypes: BTreeMap<&str, u64> = BTreeMap::new();
    for (file, header) in headers.iter().enumerate() {
        for tensor in &header.tensors {
            if let Some(first) = seen.insert(tensor.name.as_str(), file) {
                return Err(FormatError::InvalidSafetensors(format!(
                    "tensor '{}' is in two files (#{first} and #{file})",
                    tensor.name
                )));
            }
            // Shapes were checked on reading: non-negative, and their product fits in u64.
            let elements = tensor.shape.iter().map(|&d| d.max(0) as u64).product::<u64>();
            parameters = parameters.saturating_add(elements);
            *dtypes.entry(tensor.dtype.as_str()).or_default() += 1;
        }
    }
    let config = match config_json {
        None => Value::Null,
        Some(bytes) => match serde_json::from_slice(bytes) {
            Ok(Value::Object(config)) => Value::Object(config),
            Ok(other) => {
                return Err(FormatError::InvalidConfig(format!("it is a JSON {}, not an object", kind(&other))));
            }
            Err(e) => return Err(FormatError::InvalidConfig(format!("not valid JSON: {e}"))),
        },
    };
    let architecture = config.get("architectures").and_then(|a| a.get(0)).and_then(Value::as_str);
    let model_type = config.get("model_type").and_then(Value::as_str);
    let metadata = json!({
        "tensors": seen.len(),
        "parameters": parameters,
        "dtypes": dtypes,
        "architecture": architecture,
        "model_type": model_type,
        "config": config,
    });
    Ok(Signature { inputs: Vec::new(), outputs: Vec::new(), metadata })
}

struct Tensor {
    spec: TensorSpec,
    begin: u64,
    end: u64,
}

#[derive(Deserialize)]
struct Entry {
    dtype: String,
    shape: Vec<u64>,
    data_offsets: [u64; 2],
}

fn tensor(name: String, entry: Value, data_len: u64) -> Result<Tensor, FormatError> {
    let entry: Entry = serde_json::from_value(entry)
        .map_err(|e| FormatError::InvalidSafetensors(format!("the entry of tensor '{name}' is invalid: {e}")))?;
    let [begin, end] = entry.data_offsets;
    if begin > end {
        return Err(FormatError::InvalidSafetensors(format!(
            "tensor '{name}' has data_offsets [{begin}, {end}]: the start is after the end"
        )));
    }
    if end > data_len {
        return Err(FormatError::TensorOutOfBounds { name, begin, end, data_len });
    }
    let shape_text = || format!("{:?}", entry.shape);
    let elements = entry.shape.iter().try_fold(1u64, |n, &d| n.checked_mul(d)).ok_or_else(|| {
        FormatError::InvalidSafetensors(format!("tensor '{name}' has shape {}, too many elements", shape_text()))
    })?;
    let dtype = match dtype(&entry.dtype) {
        Some((kserve, bits)) => {
            let size = elements.checked_mul(bits).filter(|b| b % 8 == 0).map(|b| b / 8);
            if size != Some(end - begin) {
                let expected = match size {
                    Some(size) => format!("{size} bytes"),
                    None => "a whole number of bytes".to_owned(),
                };
                return Err(FormatError::InvalidSafetensors(format!(
                    "tensor '{name}' is {} {} and needs {expected}, but its data range [{begin},{end}) holds {}",
                    entry.dtype,
                    shape_text(),
                    end - begin
                )));
            }
            kserve.unwrap_or(&entry.dtype).to_owned()
        }
        // A dtype newer than this crate: kept as named, its size is not checked.
        None => entry.dtype,
    };
    let shape = entry
        .shape
        .iter()
        .map(|&d| i64::try_from(d))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| FormatError::InvalidSafetensors(format!("tensor '{name}' has a dimension too large")))?;
    Ok(Tensor { spec: TensorSpec { name, dtype, shape }, begin, end })
}

/// safetensors dtype → (KServe v2 name if there is one, bits per element).
fn dtype(name: &str) -> Option<(Option<&'static str>, u64)> {
    Some(match name {
        "BOOL" => (Some("BOOL"), 8),
        "U8" => (Some("UINT8"), 8),
        "I8" => (Some("INT8"), 8),
        "U16" => (Some("UINT16"), 16),
        "I16" => (Some("INT16"), 16),
        "U32" => (Some("UINT32"), 32),
        "I32" => (Some("INT32"), 32),
        "U64" => (Some("UINT64"), 64),
        "I64" => (Some("INT64"), 64),
        "F16" => (Some("FP16"), 16),
        "BF16" => (Some("BF16"), 16),
        "F32" => (Some("FP32"), 32),
        "F64" => (Some("FP64"), 64),
        "F8_E5M2" | "F8_E4M3" | "F8_E8M0" => (None, 8),
        "F6_E2M3" | "F6_E3M2" => (None, 6),
        "F4" => (None, 4),
        "C64" => (None, 64),
        _ => return None,
    })
}

/// The tensors must cover the data section exactly, each byte once. Sorts them by offset.
fn check_tiling(tensors: &mut [Tensor], data_len: u64) -> Result<(), FormatError> {
    tensors.sort_by(|a, b| (a.begin, a.end, &a.spec.name).cmp(&(b.begin, b.end, &b.spec.name)));
    let mut covered = 0u64;
    let mut previous: Option<&str> = None;
    for t in tensors.iter() {
        if t.begin > covered {
            return Err(FormatError::InvalidSafetensors(format!(
                "the data section has a gap at [{covered},{}) before tensor '{}'",
                t.begin, t.spec.name
            )));
        }
        if t.begin < covered {
            return Err(FormatError::InvalidSafetensors(format!(
                "tensor '{}' at [{},{}) overlaps tensor '{}'",
                t.spec.name,
                t.begin,
                t.end,
                previous.unwrap_or_default()
            )));
        }
        covered = t.end;
        previous = Some(&t.spec.name);
    }
    if covered != data_len {
        return Err(FormatError::InvalidSafetensors(format!(
            "the data section is {data_len} bytes but the tensors end at byte {covered}"
        )));
    }
    Ok(())
}

fn string_map(value: Value) -> Result<BTreeMap<String, String>, FormatError> {
    let Value::Object(map) = value else {
        return Err(FormatError::InvalidSafetensors(format!(
            "__metadata__ is a JSON {}, not an object of strings",
            kind(&value)
        )));
    };
    map.into_iter()
        .map(|(k, v)| match v {
            Value::String(s) => Ok((k, s)),
            other => Err(FormatError::InvalidSafetensors(format!(
                "__metadata__ entry '{k}' is a JSON {}, not a string",
                kind(&other)
            ))),
        })
        .collect()
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtype_names_and_sizes() {
        assert_eq!(dtype("F32"), Some((Some("FP32"), 32)));
        assert_eq!(dtype("BF16"), Some((Some("BF16"), 16)));
        assert_eq!(dtype("I64"), Some((Some("INT64"), 64)));
        assert_eq!(dtype("F8_E4M3"), Some((None, 8)));
        assert_eq!(dtype("F4"), Some((None, 4)));
        assert_eq!(dtype("Q42"), None);
    }
}
