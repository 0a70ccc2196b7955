//! GGUF (versions 2 and 3, little-endian): the model facts a llama.cpp-style runtime needs,
//! and a check that the file holds every tensor's data.
//!
//! All metadata entries are walked, but only the few the signature needs are kept; arrays are
//! only counted (string arrays are skipped one length at a time, never held). Strings kept are
//! capped at 16 MiB. Tensor infos are counted, their element counts summed, and each tensor's
//! byte range (from its ggml type, shape and offset) checked against the file, so a file cut
//! short anywhere is an error.
//!
//! The signature's `inputs` and `outputs` are empty. `metadata` always has these keys, `null`
//! where the file does not say: `gguf_version`, `architecture` (general.architecture), `name`
//! (general.name), `context_length`, `embedding_length`, `block_count` (`<arch>.…`),
//! `chat_template` (tokenizer.chat_template), `tokenizer` (tokenizer.ggml.model, e.g. `gpt2`,
//! `llama`), `vocab_size` (length of tokenizer.ggml.tokens), `bos_token_id`, `eos_token_id`,
//! `file_type` (general.file_type), `tensor_count`, `parameters` (total element count).

use std::collections::BTreeMap;
use std::fmt;
use std::io::{Read, Seek};

use serde_json::{Value, json};

use crate::source::Source;
use crate::{FormatError, Signature};

/// Tensor and metadata counts above this are taken for garbage.
pub const MAX_COUNT: u64 = 10_000_000;
/// The longest string value kept in memory (chat templates can be long).
pub const MAX_STRING_BYTES: u64 = 16 << 20;
/// The longest metadata key (the GGUF specification's limit).
const MAX_KEY_BYTES: u64 = 65_535;
/// The longest tensor name (the GGUF specification's limit).
const MAX_TENSOR_NAME_BYTES: u64 = 64;
/// ggml tensors have at most 4 dimensions.
const MAX_DIMS: u32 = 4;
/// Arrays of arrays are skipped recursively, this deep at most.
const MAX_ARRAY_DEPTH: u32 = 8;
const DEFAULT_ALIGNMENT: u64 = 32;
/// Keys ending in these are kept for `<arch>.…` lookups, at most this many.
const ARCH_SUFFIXES: [&str; 3] = [".context_length", ".embedding_length", ".block_count"];
const MAX_ARCH_KEYS: usize = 256;
const KEPT_KEYS: [&str; 8] = [
    "general.architecture",
    "general.name",
    "general.file_type",
    "general.alignment",
    "tokenizer.chat_template",
    "tokenizer.ggml.model",
    "tokenizer.ggml.bos_token_id",
    "tokenizer.ggml.eos_token_id",
];
const TOKENS_KEY: &str = "tokenizer.ggml.tokens";

// Metadata value types.
const STRING: u32 = 8;
const ARRAY: u32 = 9;

/// Reads the signature of a GGUF file. See the module documentation for what it contains.
pub fn read_gguf<R: Read + Seek>(reader: R) -> Result<Signature, FormatError> {
    let mut src = Source::open(reader)?;
    match src.len() {
        0 => return Err(FormatError::Empty),
        n @ 1..4 => {
            let mut head = vec![0; n as usize];
            src.read_exact(&mut head, format_args!("the magic"))?;
            return Err(FormatError::NotGguf { magic: format!("{}, and the file ends there", hex(&head)) });
        }
        _ => {}
    }
    let magic = src.read_array::<4>(format_args!("the magic"))?;
    if &magic != b"GGUF" {
        return Err(FormatError::NotGguf { magic: hex(&magic) });
    }
    let version = src.read_u32(format_args!("the GGUF version"))?;
    if !(2..=3).contains(&version) {
        return Err(FormatError::UnsupportedGgufVersion(version));
    }
    let tensor_count = src.read_u64(format_args!("the tensor count"))?;
    let kv_count = src.read_u64(format_args!("the metadata entry count"))?;
    for (what, n) in [("tensor count", tensor_count), ("metadata entry count", kv_count)] {
        if n > MAX_COUNT {
            return Err(FormatError::MalformedGguf(format!("the {what} is {n}, more than the {MAX_COUNT} accepted")));
        }
    }
    // Fail fast on a file too short for what its header announces: a metadata entry takes at
    // least 13 bytes (key length, value type, one value byte), a tensor info at least 24.
    src.ensure(
        kv_count * 13 + tensor_count * 24,
        format_args!("the {kv_count} metadata entries and {tensor_count} tensor infos"),
    )?;

    let mut kept: BTreeMap<String, Value> = BTreeMap::new();
    let mut arch_keys = 0;
    let mut vocab_size = None;
    for i in 0..kv_count {
        let key = read_string(&mut src, MAX_KEY_BYTES, format_args!("the key of metadata entry #{i}"))?;
        let ty = src.read_u32(format_args!("the value type of '{key}'"))?;
        let keep = KEPT_KEYS.contains(&key.as_str())
            || (arch_keys < MAX_ARCH_KEYS && ARCH_SUFFIXES.iter().any(|s| key.ends_with(s)));
        match read_value(&mut src, ty, &key, keep, 0)? {
            Kv::Scalar(value) => {
                if !KEPT_KEYS.contains(&key.as_str()) {
                    arch_keys += 1;
                }
                kept.insert(key, value);
            }
            Kv::Array { len } if key == TOKENS_KEY => vocab_size = Some(len),
            _ => {}
        }
    }

    let alignment = match kept.get("general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some(v) => match v.as_u64() {
            Some(a) if a.is_power_of_two() => a,
            _ => return Err(FormatError::MalformedGguf(format!("general.alignment is {v}, not a power of two"))),
        },
    };

    let mut parameters = 0u64;
    // The end of the tensor data furthest into the data section, and whose it is.
    let mut data_end = 0u64;
    let mut last_tensor = String::new();
    for i in 0..tensor_count {
        let name = read_string(&mut src, MAX_TENSOR_NAME_BYTES, format_args!("the name of tensor #{i}"))?;
        let n_dims = src.read_u32(format_args!("the dimension count of tensor '{name}'"))?;
        if n_dims > MAX_DIMS {
            return Err(FormatError::MalformedGguf(format!(
                "tensor '{name}' has {n_dims} dimensions; GGUF allows at most {MAX_DIMS}"
            )));
        }
        let mut dims = [1u64; MAX_DIMS as usize];
        for (d, dim) in dims.iter_mut().enumerate().take(n_dims as usize) {
            *dim = src.read_u64(format_args!("dimension {d} of tensor '{name}'"))?;
        }
        let dims = &dims[..n_dims as usize];
        let elements = dims.iter().try_fold(1u64, |n, &d| n.checked_mul(d)).ok_or_else(|| {
            FormatError::MalformedGguf(format!("tensor '{name}' has shape {dims:?}, too many elements"))
        })?;
        let ty = src.read_u32(format_args!("the type of tensor '{name}'"))?;
        let offset = src.read_u64(format_args!("the data offset of tensor '{name}'"))?;
        if offset % alignment != 0 {
            return Err(FormatError::MalformedGguf(format!(
                "tensor '{name}' starts at data offset {offset}, not a multiple of the alignment {alignment}"
            )));
        }
        let size = match ggml_type(ty) {
            GgmlType::Known { name: type_name, block, bytes } => {
                let row = dims.first().copied().unwrap_or(1);
                if row % block != 0 {
                    return Err(FormatError::MalformedGguf(format!(
                        "tensor '{name}' has rows of {row} elements, not a multiple of the {type_name} block size {block}"
                    )));
                }
                (elements / block).checked_mul(bytes)
            }
            GgmlType::Removed(type_name) => {
                return Err(FormatError::MalformedGguf(format!(
                    "tensor '{name}' has ggml type {ty} ({type_name}), which GGUF files no longer support"
                )));
            }
            // A type newer than this crate: only its start is checked.
            GgmlType::Unknown => Some(0),
        };
        let end = size.and_then(|size| offset.checked_add(size)).ok_or_else(|| {
            FormatError::MalformedGguf(format!("tensor '{name}' at data offset {offset} is too large"))
        })?;
        if end > data_end || last_tensor.is_empty() {
            data_end = end;
            last_tensor = name;
        }
        parameters = parameters.saturating_add(elements);
    }
    if tensor_count > 0 {
        let data_start = src.pos().div_ceil(alignment).saturating_mul(alignment);
        let needed = data_start.saturating_add(data_end);
        if needed > src.len() {
            return Err(src.truncated(needed, format_args!("the data of tensor '{last_tensor}'")));
        }
    }

    let arch = kept.get("general.architecture").and_then(Value::as_str).map(str::to_owned);
    let string = |key: &str| kept.get(key).filter(|v| v.is_string()).cloned();
    let number = |key: &str| kept.get(key).filter(|v| v.is_number()).cloned();
    let arch_number = |suffix: &str| arch.as_ref().and_then(|a| number(&format!("{a}.{suffix}")));
    let metadata = json!({
        "gguf_version": version,
        "architecture": arch,
        "name": string("general.name"),
        "context_length": arch_number("context_length"),
        "embedding_length": arch_number("embedding_length"),
        "block_count": arch_number("block_count"),
        "chat_template": string("tokenizer.chat_template"),
        "tokenizer": string("tokenizer.ggml.model"),
        "vocab_size": vocab_size,
        "bos_token_id": number("tokenizer.ggml.bos_token_id"),
        "eos_token_id": number("tokenizer.ggml.eos_token_id"),
        "file_type": number("general.file_type"),
        "tensor_count": tensor_count,
        "parameters": parameters,
    });
    Ok(Signature { inputs: Vec::new(), outputs: Vec::new(), metadata })
}

/// A metadata value as far as it was read.
enum Kv {
    Scalar(Value),
    Array { len: u64 },
    Skipped,
}

/// Size in bytes of the fixed-size value types.
fn fixed_size(ty: u32) -> Option<u64> {
    match ty {
        0 | 1 | 7 => Some(1), // u8, i8, bool
        2 | 3 => Some(2),     // u16, i16
        4..=6 => Some(4),     // u32, i32, f32
        10..=12 => Some(8),   // u64, i64, f64
        _ => None,
    }
}

fn read_value<R: Read + Seek>(
    src: &mut Source<R>,
    ty: u32,
    key: &str,
    keep: bool,
    depth: u32,
) -> Result<Kv, FormatError> {
    if let Some(size) = fixed_size(ty) {
        if !keep {
            src.skip(size, format_args!("the value of '{key}'"))?;
            return Ok(Kv::Skipped);
        }
        let mut b = [0u8; 8];
        src.read_exact(&mut b[..size as usize], format_args!("the value of '{key}'"))?;
        let value = match ty {
            0 => json!(b[0]),
            1 => json!(b[0] as i8),
            2 => json!(u16::from_le_bytes([b[0], b[1]])),
            3 => json!(i16::from_le_bytes([b[0], b[1]])),
            4 => json!(u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            5 => json!(i32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            6 => json!(f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]]))),
            7 => json!(b[0] != 0),
            10 => json!(u64::from_le_bytes(b)),
            11 => json!(i64::from_le_bytes(b)),
            _ => json!(f64::from_le_bytes(b)),
        };
        return Ok(Kv::Scalar(value));
    }
    match ty {
        STRING if keep => {
            let s = read_string(src, MAX_STRING_BYTES, format_args!("the value of '{key}'"))?;
            Ok(Kv::Scalar(Value::String(s)))
        }
        STRING => {
            skip_string(src, format_args!("the value of '{key}'"))?;
            Ok(Kv::Skipped)
        }
        ARRAY => {
            if depth >= MAX_ARRAY_DEPTH {
                return Err(FormatError::MalformedGguf(format!(
                    "'{key}' nests arrays more than {MAX_ARRAY_DEPTH} deep"
                )));
            }
            let elem = src.read_u32(format_args!("the element type of '{key}'"))?;
            let len = src.read_u64(format_args!("the length of '{key}'"))?;
            match (fixed_size(elem), elem) {
                (Some(size), _) => {
                    let total = len.saturating_mul(size);
                    src.skip(total, format_args!("the {len} elements of '{key}'"))?;
                }
                (None, STRING) => {
                    src.ensure(len.saturating_mul(8), format_args!("the {len} strings of '{key}'"))?;
                    for j in 0..len {
                        skip_string(src, format_args!("element {j} of '{key}'"))?;
                    }
                }
                (None, ARRAY) => {
                    src.ensure(len.saturating_mul(12), format_args!("the {len} arrays of '{key}'"))?;
                    for _ in 0..len {
                        read_value(src, ARRAY, key, false, depth + 1)?;
                    }
                }
                (None, _) => {
                    return Err(FormatError::MalformedGguf(format!("'{key}' is an array of unknown type {elem}")));
                }
            }
            Ok(Kv::Array { len })
        }
        _ => Err(FormatError::MalformedGguf(format!("metadata '{key}' has unknown value type {ty}"))),
    }
}

/// A GGUF string (u64 length + UTF-8 bytes), at most `limit` bytes.
fn read_string<R: Read + Seek>(
    src: &mut Source<R>,
    limit: u64,
    what: fmt::Arguments<'_>,
) -> Result<String, FormatError> {
    let len = src.read_u64(format_args!("the length of {what}"))?;
    let bytes = src.read_vec(len, limit, what)?;
    String::from_utf8(bytes).map_err(|_| FormatError::MalformedGguf(format!("{what} is not valid UTF-8")))
}

fn skip_string<R: Read + Seek>(src: &mut Source<R>, what: fmt::Arguments<'_>) -> Result<(), FormatError> {
    let len = src.read_u64(format_args!("the length of {what}"))?;
    src.skip(len, what)
}

enum GgmlType {
    /// Elements per block and bytes per block.
    Known {
        name: &'static str,
        block: u64,
        bytes: u64,
    },
    /// A number once used, now refused by llama.cpp.
    Removed(&'static str),
    Unknown,
}

/// ggml tensor types (ggml.h `enum ggml_type`) and their storage size.
fn ggml_type(ty: u32) -> GgmlType {
    let (name, block, bytes) = match ty {
        0 => ("F32", 1, 4),
        1 => ("F16", 1, 2),
        2 => ("Q4_0", 32, 18),
        3 => ("Q4_1", 32, 20),
        4 => return GgmlType::Removed("Q4_2"),
        5 => return GgmlType::Removed("Q4_3"),
        6 => ("Q5_0", 32, 22),
        7 => ("Q5_1", 32, 24),
        8 => ("Q8_0", 32, 34),
        9 => ("Q8_1", 32, 36),
        10 => ("Q2_K", 256, 84),
        11 => ("Q3_K", 256, 110),
        12 => ("Q4_K", 256, 144),
        13 => ("Q5_K", 256, 176),
        14 => ("Q6_K", 256, 210),
        15 => ("Q8_K", 256, 292),
        16 => ("IQ2_XXS", 256, 66),
        17 => ("IQ2_XS", 256, 74),
        18 => ("IQ3_XXS", 256, 98),
        19 => ("IQ1_S", 256, 50),
        20 => ("IQ4_NL", 32, 18),
        21 => ("IQ3_S", 256, 110),
        22 => ("IQ2_S", 256, 82),
        23 => ("IQ4_XS", 256, 136),
        24 => ("I8", 1, 1),
        25 => ("I16", 1, 2),
        26 => ("I32", 1, 4),
        27 => ("I64", 1, 8),
        28 => ("F64", 1, 8),
        29 => ("IQ1_M", 256, 56),
        30 => ("BF16", 1, 2),
        31 => return GgmlType::Removed("Q4_0_4_4"),
        32 => return GgmlType::Removed("Q4_0_4_8"),
        33 => return GgmlType::Removed("Q4_0_8_8"),
        34 => ("TQ1_0", 256, 54),
        35 => ("TQ2_0", 256, 66),
        36 => return GgmlType::Removed("IQ4_NL_4_4"),
        37 => return GgmlType::Removed("IQ4_NL_4_8"),
        38 => return GgmlType::Removed("IQ4_NL_8_8"),
        39 => ("MXFP4", 32, 17),
        40 => ("NVFP4", 64, 36),
        _ => return GgmlType::Unknown,
    };
    GgmlType::Known { name, block, bytes }
}

fn hex(bytes: &[u8]) -> String {
    let hex: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let text: String = bytes.iter().map(|&b| if b.is_ascii_graphic() { b as char } else { '.' }).collect();
    format!("{} \"{text}\"", hex.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantized_sizes_match_ggml() {
        // Q4_0: 32 elements in 2 bytes of scale + 16 bytes of nibbles.
        assert!(matches!(ggml_type(2), GgmlType::Known { block: 32, bytes: 18, .. }));
        assert!(matches!(ggml_type(14), GgmlType::Known { name: "Q6_K", block: 256, bytes: 210 }));
        assert!(matches!(ggml_type(31), GgmlType::Removed("Q4_0_4_4")));
        assert!(matches!(ggml_type(99), GgmlType::Unknown));
    }

    #[test]
    fn magic_is_shown_as_hex_and_text() {
        assert_eq!(hex(&[0xff, 0xd8, b'G', b' ']), "ff d8 47 20 \"..G.\"");
    }
}
