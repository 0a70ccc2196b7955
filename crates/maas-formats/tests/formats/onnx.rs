//! ONNX: inputs without initializers, dynamic dimensions, dtypes, metadata, limits.

use std::io::Cursor;

use maas_core::{Coded, ErrorCode};
use maas_formats::onnx::proto::{GraphProto, ModelProto, OperatorSetIdProto, type_proto};
use maas_formats::{FormatError, TensorSpec, read_onnx};
use prost::Message;
use serde_json::json;

use crate::fixtures::*;

fn spec(name: &str, dtype: &str, shape: &[i64]) -> TensorSpec {
    TensorSpec { name: name.into(), dtype: dtype.into(), shape: shape.to_vec() }
}

fn read(model: &ModelProto) -> Result<maas_formats::Signature, FormatError> {
    read_onnx(Cursor::new(model.encode_to_vec()))
}

#[test]
fn reads_inputs_outputs_and_metadata() {
    let sig = read_onnx(Cursor::new(onnx_bytes())).unwrap();
    assert_eq!(
        sig.inputs,
        vec![
            spec("images", "FP32", &[-1, 3, -1, -1]),
            spec("mask", "BOOL", &[-1, 16]),
            spec("ids", "INT64", &[-1]),
            spec("scale", "FP16", &[]),
        ],
        "initializers (weight, bias, sparse_w) are not inputs"
    );
    assert_eq!(
        sig.outputs,
        vec![spec("logits", "FP32", &[-1, 3]), spec("labels", "BYTES", &[]), spec("history", "SEQUENCE", &[])]
    );
    assert_eq!(
        sig.metadata,
        json!({
            "ir_version": 8,
            "producer": "maas-test",
            "opsets": {"": 13, "ai.onnx.ml": 3},
            "unknown_rank": ["labels"],
        })
    );
}

#[test]
fn a_model_without_initializers_keeps_all_inputs() {
    let mut model = onnx_model();
    let graph = model.graph.as_mut().unwrap();
    graph.initializer.clear();
    graph.sparse_initializer.clear();
    let sig = read(&model).unwrap();
    let names: Vec<_> = sig.inputs.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["images", "weight", "mask", "ids", "scale", "bias", "sparse_w"]);
    assert_eq!(sig.metadata["unknown_rank"], json!(["sparse_w", "labels"]));
}

#[test]
fn non_tensor_types_are_named() {
    let mut model = onnx_model();
    let graph = model.graph.as_mut().unwrap();
    graph.output = vec![
        typed("m", Some(type_proto::Value::MapType(Default::default()))),
        typed("o", Some(type_proto::Value::OptionalType(Default::default()))),
        typed("s", Some(type_proto::Value::SparseTensorType(Default::default()))),
        typed("u", None),
    ];
    let dtypes: Vec<_> = read(&model).unwrap().outputs.into_iter().map(|t| t.dtype).collect();
    assert_eq!(dtypes, ["MAP", "OPTIONAL", "SPARSE_TENSOR", "UNKNOWN"]);
}

#[test]
fn unsupported_element_type_names_the_tensor() {
    let mut model = onnx_model();
    model.graph.as_mut().unwrap().output.push(tensor("z", 14, Some(vec![dim(2)])));
    let err = read(&model).unwrap_err();
    assert_eq!(err.to_string(), "unsupported element type 14 for 'z'");
    assert_eq!(err.code(), ErrorCode::InvalidModelFile);
}

#[test]
fn missing_parts_are_named() {
    let mut model = onnx_model();
    model.graph = None;
    assert_eq!(read(&model).unwrap_err().to_string(), "not an ONNX model: field 7 (graph) missing");

    let mut model = onnx_model();
    model.ir_version = 0; // proto3 encoding leaves a zero out
    assert_eq!(read(&model).unwrap_err().to_string(), "not an ONNX model: field 1 (ir_version) missing");

    let mut model = onnx_model();
    model.opset_import.clear();
    assert!(read(&model).unwrap_err().to_string().contains("field 8 (opset_import) missing"));

    let mut model = onnx_model();
    model.graph.as_mut().unwrap().output.clear();
    assert_eq!(read(&model).unwrap_err().to_string(), "invalid ONNX model: the graph declares no outputs");

    let model = ModelProto {
        ir_version: 3,
        graph: Some(GraphProto { output: vec![tensor("y", FLOAT, None)], ..Default::default() }),
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 7 }],
        ..Default::default()
    };
    let sig = read(&model).unwrap();
    assert!(sig.inputs.is_empty());
    assert_eq!(sig.metadata["producer"], json!(null));
}

#[test]
fn wrong_wire_types_and_truncation_are_explained() {
    // Field 7 as a varint.
    let err = read_onnx(Cursor::new(vec![0x08, 0x08, 0x38, 0x01])).unwrap_err();
    assert_eq!(err.to_string(), "not an ONNX model: field 7 (graph) of the model is not length-delimited");

    let bytes = onnx_bytes();
    let err = read_onnx(Cursor::new(bytes[..bytes.len() / 2].to_vec())).unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("truncated: the file ends inside field 7 (graph) of the model (needs "), "{text}");
    assert!(text.ends_with(&format!("has {})", bytes.len() / 2)), "{text}");
}

/// A model whose one initializer holds 1 GiB of data: read by seeking over it.
#[test]
fn initializer_data_is_skipped_not_read() {
    let gib = 1u64 << 30;
    let graph_head = {
        let mut g = GraphProto {
            input: vec![tensor("x", FLOAT, Some(vec![dim(1)])), tensor("w", FLOAT, Some(vec![dim(gib as i64 / 4)]))],
            output: vec![tensor("y", FLOAT, Some(vec![dim(1)]))],
            ..Default::default()
        }
        .encode_to_vec();
        // initializer (field 5) { name (8) = "w", raw_data (9) = <1 GiB> }
        let mut tensor = vec![0x42, 0x01, b'w', 0x4a];
        varint(&mut tensor, gib);
        g.push(0x2a);
        varint(&mut g, tensor.len() as u64 + gib);
        g.extend_from_slice(&tensor);
        g
    };
    let mut head = vec![0x08, 0x07]; // ir_version 7
    head.push(0x3a); // graph
    varint(&mut head, graph_head.len() as u64 + gib);
    head.extend_from_slice(&graph_head);
    let tail = ModelProto {
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 12 }],
        ..Default::default()
    }
    .encode_to_vec();
    let mut file = VirtualFile::new(head, gib, tail);
    let sig = read_onnx(&mut file).unwrap();
    assert_eq!(sig.inputs, vec![spec("x", "FP32", &[1])]);
    assert_eq!(sig.metadata["opsets"], json!({"": 12}));
    assert!(file.bytes_read < 1 << 20, "read {} bytes", file.bytes_read);
}

#[test]
fn a_field_over_64_mib_is_refused_before_it_is_read() {
    let mut head = vec![0x08, 0x07, 0x12]; // ir_version 7, producer_name:
    varint(&mut head, 100 << 20);
    let mut file = VirtualFile::new(head, 100 << 20, Vec::new());
    let err = read_onnx(&mut file).unwrap_err();
    assert_eq!(
        err.to_string(),
        "field 2 (producer_name) of the model is 104857600 bytes, over the limit of 67108864 bytes"
    );
    assert!(file.bytes_read < 1 << 20);
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}
