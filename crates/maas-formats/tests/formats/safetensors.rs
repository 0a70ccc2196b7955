//! safetensors: dtype mapping, the checks on offsets and sizes, and the checkpoint signature.

use std::io::Cursor;

use maas_formats::{FormatError, SafetensorsHeader, TensorSpec, read_safetensors_header, safetensors_signature};
use serde_json::json;

use crate::fixtures::*;

fn read(bytes: Vec<u8>) -> Result<SafetensorsHeader, FormatError> {
    read_safetensors_header(Cursor::new(bytes))
}

fn error(header: serde_json::Value, data_len: usize) -> String {
    read(safetensors_bytes(&header, data_len)).unwrap_err().to_string()
}

#[test]
fn reads_tensors_in_file_order_with_kserve_dtypes() {
    let header = read(safetensors_fixture()).unwrap();
    let spec = |name: &str, dtype: &str, shape: &[i64]| TensorSpec {
        name: name.into(),
        dtype: dtype.into(),
        shape: shape.to_vec(),
    };
    assert_eq!(
        header.tensors,
        vec![
            spec("embed.weight", "FP32", &[10, 4]),
            spec("ln.bias", "BF16", &[4]),
            spec("mask", "BOOL", &[2, 3]),
            spec("empty", "FP16", &[0, 5]),
            spec("fp8", "F8_E4M3", &[2]),
            spec("ids", "INT64", &[2]),
        ]
    );
    assert_eq!(header.metadata.get("format").map(String::as_str), Some("pt"));
    assert_eq!(header.data_len, 192);
}

#[test]
fn offsets_and_sizes_are_checked() {
    let out = json!({"x": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}});
    assert_eq!(error(out, 8), "tensor 'x' data range [0,16) lies outside the data section (len 8)");

    let wrong_size = json!({"x": {"dtype": "F32", "shape": [3], "data_offsets": [0, 16]}});
    assert_eq!(
        error(wrong_size, 16),
        "invalid safetensors file: tensor 'x' is F32 [3] and needs 12 bytes, but its data range [0,16) holds 16"
    );

    let overlap = json!({
        "a": {"dtype": "U8", "shape": [8], "data_offsets": [0, 8]},
        "b": {"dtype": "U8", "shape": [4], "data_offsets": [4, 8]},
    });
    assert_eq!(error(overlap, 8), "invalid safetensors file: tensor 'b' at [4,8) overlaps tensor 'a'");

    let gap = json!({"a": {"dtype": "U8", "shape": [4], "data_offsets": [4, 8]}});
    assert_eq!(error(gap, 8), "invalid safetensors file: the data section has a gap at [0,4) before tensor 'a'");

    let trailing = json!({"a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]}});
    assert_eq!(
        error(trailing, 8),
        "invalid safetensors file: the data section is 8 bytes but the tensors end at byte 4"
    );

    let backwards = json!({"a": {"dtype": "U8", "shape": [0], "data_offsets": [4, 0]}});
    assert!(error(backwards, 8).contains("the start is after the end"));

    let missing = json!({"a": {"shape": [4], "data_offsets": [0, 4]}});
    assert!(error(missing, 4).contains("the entry of tensor 'a' is invalid: missing field `dtype`"));

    let huge = json!({"a": {"dtype": "F32", "shape": [u64::MAX, 2], "data_offsets": [0, 4]}});
    assert!(error(huge, 4).contains("too many elements"));

    let metadata = json!({"__metadata__": {"n": 1}});
    assert_eq!(error(metadata, 0), "invalid safetensors file: __metadata__ entry 'n' is a JSON number, not a string");
}

#[test]
fn unknown_dtypes_pass_through_unchecked() {
    let header = json!({"q": {"dtype": "Q9_FUTURE", "shape": [3], "data_offsets": [0, 5]}});
    let read = read(safetensors_bytes(&header, 5)).unwrap();
    assert_eq!(read.tensors[0].dtype, "Q9_FUTURE");
    // Sub-byte dtypes are sized in bits.
    let f4 = json!({"f": {"dtype": "F4", "shape": [3], "data_offsets": [0, 2]}});
    assert!(error(f4, 2).contains("needs a whole number of bytes"));
}

#[test]
fn header_problems_are_explained() {
    let mut bad_json = safetensors_fixture();
    bad_json[9] = b'#'; // the first key's opening quote
    assert!(read(bad_json).unwrap_err().to_string().starts_with("safetensors header is not valid JSON: "));

    let mut not_object = 8u64.to_le_bytes().to_vec();
    not_object.extend_from_slice(b"[1,2,3] ");
    assert_eq!(
        read(not_object).unwrap_err().to_string(),
        "invalid safetensors file: the header does not start with '{' (is this a safetensors file?)"
    );

    let mut short = 1000u64.to_le_bytes().to_vec();
    short.extend_from_slice(b"{}");
    assert_eq!(
        read(short).unwrap_err().to_string(),
        "truncated: the file ends inside the safetensors header (needs 1008 bytes, has 10)"
    );

    let too_big = 200_000_000u64.to_le_bytes().to_vec();
    assert!(read(too_big).unwrap_err().to_string().contains("more than the 100000000 a header may have"));
}

/// A 1 GiB tensor is checked without reading its data.
#[test]
fn data_is_never_read() {
    let gib = 1u64 << 30;
    let header = json!({"w": {"dtype": "F32", "shape": [gib / 4], "data_offsets": [0, gib]}});
    let head = safetensors_bytes(&header, 0);
    let mut file = VirtualFile::new(head, gib, Vec::new());
    let read = read_safetensors_header(&mut file).unwrap();
    assert_eq!(read.data_len, gib);
    assert!(file.bytes_read < 1 << 20);
}

#[test]
fn signature_counts_tensors_parameters_and_dtypes() {
    let first = read(safetensors_fixture()).unwrap();
    let second = read(safetensors_bytes(
        &json!({"head.weight": {"dtype": "F32", "shape": [3, 4], "data_offsets": [0, 48]}}),
        48,
    ))
    .unwrap();
    let config = br#"{"architectures": ["BertModel"], "model_type": "bert", "hidden_size": 4}"#;
    let sig = safetensors_signature(&[first.clone(), second], Some(config)).unwrap();
    assert!(sig.inputs.is_empty() && sig.outputs.is_empty());
    assert_eq!(
        sig.metadata,
        json!({
            "tensors": 7,
            "parameters": 40 + 4 + 6 + 2 + 2 + 12, // "empty" has none
            "dtypes": {"FP32": 2, "BF16": 1, "BOOL": 1, "FP16": 1, "F8_E4M3": 1, "INT64": 1},
            "config": {"architectures": ["BertModel"], "model_type": "bert", "hidden_size": 4},
            "architecture": "BertModel",
            "model_type": "bert",
        })
    );

    let bare = safetensors_signature(std::slice::from_ref(&first), None).unwrap();
    assert_eq!(bare.metadata["config"], json!(null));
    assert_eq!(bare.metadata["architecture"], json!(null));

    let twice = safetensors_signature(&[first.clone(), first.clone()], None).unwrap_err();
    assert_eq!(twice.to_string(), "invalid safetensors file: tensor 'embed.weight' is in two files (#0 and #1)");
    let bad_config = safetensors_signature(std::slice::from_ref(&first), Some(b"{nope")).unwrap_err();
    assert!(bad_config.to_string().starts_with("config.json is invalid: not valid JSON"));
    let list_config = safetensors_signature(std::slice::from_ref(&first), Some(b"[]")).unwrap_err();
    assert_eq!(list_config.to_string(), "config.json is invalid: it is a JSON array, not an object");
    assert!(safetensors_signature(&[], None).is_err());
}
