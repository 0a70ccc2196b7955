//! ONNX: the signature of a `ModelProto`, read by walking the protobuf wire format.
//!
//! Only the model's `ir_version` (1), `producer_name` (2), `graph` (7) and `opset_import` (8)
//! are looked at; inside the graph only `input` (11), `output` (12) and the names of
//! `initializer` (5) and `sparse_initializer` (15) entries. Everything else, weights
//! included, is skipped by seeking. Any single field read into memory is capped at 64 MiB.
//!
//! The signature's `metadata` is
//! `{"ir_version": 8, "producer": "pytorch" | null, "opsets": {"": 13, "ai.onnx.ml": 3}}`,
//! plus `"unknown_rank": ["name", ...]` listing the inputs and outputs whose type has no shape
//! (their `shape` is empty, like a scalar's).
//!
//! Element types map to KServe v2 names (FLOAT → `FP32`, STRING → `BYTES`, FLOAT16 → `FP16`,
//! …); other element types (complex, float8, 4-bit, …) are an error. Inputs and outputs that
//! are not dense tensors get `dtype` `SEQUENCE`, `MAP`, `OPTIONAL`, `SPARSE_TENSOR` or `OPAQUE`
//! (`UNKNOWN` where the type is missing) and an empty `shape`.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::io::{Read, Seek};

use prost::Message;
use serde_json::json;

use crate::source::Source;
use crate::{FormatError, Signature, TensorSpec};

/// The most bytes one field may take when it is read into memory.
pub const MAX_FIELD_BYTES: u64 = 64 << 20;

/// Hand-written `prost` messages with the field numbers of `onnx.proto`: just the fields this
/// crate reads, plus the few a test needs to write a small but realistic model.
pub mod proto {
    /// `ModelProto`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ModelProto {
        #[prost(int64, tag = "1")]
        pub ir_version: i64,
        #[prost(string, tag = "2")]
        pub producer_name: String,
        #[prost(string, tag = "3")]
        pub producer_version: String,
        #[prost(message, optional, tag = "7")]
        pub graph: Option<GraphProto>,
        #[prost(message, repeated, tag = "8")]
        pub opset_import: Vec<OperatorSetIdProto>,
    }

    /// `OperatorSetIdProto`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct OperatorSetIdProto {
        #[prost(string, tag = "1")]
        pub domain: String,
        #[prost(int64, tag = "2")]
        pub version: i64,
    }

    /// `GraphProto`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct GraphProto {
        #[prost(message, repeated, tag = "1")]
        pub node: Vec<NodeProto>,
        #[prost(string, tag = "2")]
        pub name: String,
        #[prost(message, repeated, tag = "5")]
        pub initializer: Vec<TensorProto>,
        #[prost(message, repeated, tag = "11")]
        pub input: Vec<ValueInfoProto>,
        #[prost(message, repeated, tag = "12")]
        pub output: Vec<ValueInfoProto>,
        #[prost(message, repeated, tag = "13")]
        pub value_info: Vec<ValueInfoProto>,
        #[prost(message, repeated, tag = "15")]
        pub sparse_initializer: Vec<SparseTensorProto>,
    }

    /// `NodeProto`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct NodeProto {
        #[prost(string, repeated, tag = "1")]
        pub input: Vec<String>,
        #[prost(string, repeated, tag = "2")]
        pub output: Vec<String>,
        #[prost(string, tag = "3")]
        pub name: String,
        #[prost(string, tag = "4")]
        pub op_type: String,
    }

    /// `TensorProto` (an initializer).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TensorProto {
        #[prost(int64, repeated, tag = "1")]
        pub dims: Vec<i64>,
        #[prost(int32, tag = "2")]
        pub data_type: i32,
        #[prost(float, repeated, tag = "4")]
        pub float_data: Vec<f32>,
        #[prost(string, tag = "8")]
        pub name: String,
        #[prost(bytes = "vec", tag = "9")]
        pub raw_data: Vec<u8>,
    }

    /// `SparseTensorProto`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct SparseTensorProto {
        #[prost(message, optional, tag = "1")]
        pub values: Option<TensorProto>,
        #[prost(message, optional, tag = "2")]
        pub indices: Option<TensorProto>,
        #[prost(int64, repeated, tag = "3")]
        pub dims: Vec<i64>,
    }

    /// `ValueInfoProto`: a graph input or output.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ValueInfoProto {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(message, optional, tag = "2")]
        pub r#type: Option<TypeProto>,
        #[prost(string, tag = "3")]
        pub doc_string: String,
    }

    /// `TypeProto`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TypeProto {
        #[prost(oneof = "type_proto::Value", tags = "1, 4, 5, 7, 8, 9")]
        pub value: Option<type_proto::Value>,
        #[prost(string, tag = "6")]
        pub denotation: String,
    }

    pub mod type_proto {
        /// The kinds of `TypeProto`.
        #[derive(Clone, PartialEq, prost::Oneof)]
        pub enum Value {
            #[prost(message, tag = "1")]
            TensorType(super::TensorTypeProto),
            #[prost(message, tag = "4")]
            SequenceType(super::OtherTypeProto),
            #[prost(message, tag = "5")]
            MapType(super::OtherTypeProto),
            #[prost(message, tag = "7")]
            OpaqueType(super::OtherTypeProto),
            #[prost(message, tag = "8")]
            SparseTensorType(super::TensorTypeProto),
            #[prost(message, tag = "9")]
            OptionalType(super::OtherTypeProto),
        }
    }

    /// `TypeProto.Tensor`, and `TypeProto.SparseTensor` which has the same fields.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TensorTypeProto {
        #[prost(int32, tag = "1")]
        pub elem_type: i32,
        #[prost(message, optional, tag = "2")]
        pub shape: Option<TensorShapeProto>,
    }

    /// `TypeProto.Sequence`, `.Map`, `.Optional`, `.Opaque`: their contents are not read.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct OtherTypeProto {}

    /// `TensorShapeProto`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TensorShapeProto {
        #[prost(message, repeated, tag = "1")]
        pub dim: Vec<Dimension>,
    }

    /// `TensorShapeProto.Dimension`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Dimension {
        #[prost(oneof = "dimension::Value", tags = "1, 2")]
        pub value: Option<dimension::Value>,
        #[prost(string, tag = "3")]
        pub denotation: String,
    }

    pub mod dimension {
        /// A fixed size or a symbolic name.
        #[derive(Clone, PartialEq, prost::Oneof)]
        pub enum Value {
            #[prost(int64, tag = "1")]
            DimValue(i64),
            #[prost(string, tag = "2")]
            DimParam(String),
        }
    }
}

use proto::{OperatorSetIdProto, ValueInfoProto, dimension, type_proto};

/// Reads the signature of an ONNX model. See the module documentation for what it contains.
pub fn read_onnx<R: Read + Seek>(reader: R) -> Result<Signature, FormatError> {
    let mut src = Source::open(reader)?;
    if src.len() == 0 {
        return Err(FormatError::Empty);
    }
    let end = src.len();
    let mut ir_version = None;
    let mut producer = None;
    let mut opsets = BTreeMap::new();
    let mut graph = None;
    walk(&mut src, end, Msg::Model, |src, field, value| {
        let name = FieldName(Msg::Model, field);
        match field {
            1 => ir_version = Some(expect_varint(Msg::Model, field, value)? as i64),
            2 => {
                let len = expect_len(Msg::Model, field, value)?;
                let bytes = src.read_vec(len, MAX_FIELD_BYTES, format_args!("{name} of the model"))?;
                producer = Some(String::from_utf8_lossy(&bytes).into_owned());
            }
            7 => {
                let len = expect_len(Msg::Model, field, value)?;
                if graph.is_some() {
                    return Err(FormatError::NotOnnx("field 7 (graph) appears more than once".into()));
                }
                graph = Some(read_graph(src, len)?);
            }
            8 => {
                let len = expect_len(Msg::Model, field, value)?;
                let bytes = src.read_vec(len, MAX_FIELD_BYTES, format_args!("{name} of the model"))?;
                let opset = OperatorSetIdProto::decode(bytes.as_slice())
                    .map_err(|e| FormatError::NotOnnx(format!("{name} is not an OperatorSetIdProto: {e}")))?;
                opsets.insert(opset.domain, opset.version);
            }
            _ => {}
        }
        Ok(())
    })?;

    let Some(graph) = graph else {
        return Err(FormatError::NotOnnx("field 7 (graph) missing".into()));
    };
    let Some(ir_version) = ir_version else {
        return Err(FormatError::NotOnnx("field 1 (ir_version) missing".into()));
    };
    if opsets.is_empty() && ir_version >= 3 {
        return Err(FormatError::InvalidOnnx(format!(
            "field 8 (opset_import) missing, which IR version {ir_version} requires"
        )));
    }
    if graph.outputs.is_empty() {
        return Err(FormatError::InvalidOnnx("the graph declares no outputs".into()));
    }
    let mut metadata = json!({ "ir_version": ir_version, "producer": producer, "opsets": opsets });
    if !graph.unknown_rank.is_empty() {
        metadata["unknown_rank"] = json!(graph.unknown_rank);
    }
    Ok(Signature { inputs: graph.inputs, outputs: graph.outputs, metadata })
}

struct Graph {
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
    unknown_rank: Vec<String>,
}

/// Reads the graph that starts at the current position and is `len` bytes long, in two
/// passes so that memory does not grow with the number of initializers: inputs and outputs
/// first, then the initializer names, keeping only those that hide an input.
fn read_graph<R: Read + Seek>(src: &mut Source<R>, len: u64) -> Result<Graph, FormatError> {
    let start = src.pos();
    let end = start + len; // checked against the file length by `walk`
    let mut graph = Graph { inputs: Vec::new(), outputs: Vec::new(), unknown_rank: Vec::new() };
    walk(src, end, Msg::Graph, |src, field, value| {
        if field != 11 && field != 12 {
            return Ok(());
        }
        let len = expect_len(Msg::Graph, field, value)?;
        let name = FieldName(Msg::Graph, field);
        let bytes = src.read_vec(len, MAX_FIELD_BYTES, format_args!("{name} of the graph"))?;
        let info = ValueInfoProto::decode(bytes.as_slice())
            .map_err(|e| FormatError::NotOnnx(format!("{name} of the graph is not a ValueInfoProto: {e}")))?;
        let spec = tensor_spec(info, &mut graph.unknown_rank)?;
        if field == 11 {
            graph.inputs.push(spec)
        } else {
            graph.outputs.push(spec)
        }
        Ok(())
    })?;

    if !graph.inputs.is_empty() {
        // Older exporters list every initializer among the inputs too: those are weights with
        // a default value, not inputs a caller must send.
        let inputs: HashSet<String> = graph.inputs.iter().map(|t| t.name.clone()).collect();
        let mut hidden = HashSet::new();
        src.seek_to(start, format_args!("the graph"))?;
        walk(src, end, Msg::Graph, |src, field, value| {
            let tensor_len = match field {
                5 => expect_len(Msg::Graph, field, value)?,
                15 => {
                    // SparseTensorProto: its name is that of its `values` (field 1).
                    let sparse_len = expect_len(Msg::Graph, field, value)?;
                    let sparse_end = src.pos() + sparse_len;
                    return walk(src, sparse_end, Msg::SparseTensor, |src, field, value| {
                        if field == 1 {
                            let len = expect_len(Msg::SparseTensor, field, value)?;
                            initializer_name(src, len, &inputs, &mut hidden)?;
                        }
                        Ok(())
                    });
                }
                _ => return Ok(()),
            };
            initializer_name(src, tensor_len, &inputs, &mut hidden)
        })?;
        graph.inputs.retain(|t| !hidden.contains(&t.name));
        graph.unknown_rank.retain(|n| !hidden.contains(n));
    }
    Ok(graph)
}

/// Reads the name (field 8) of the TensorProto at the current position, seeking over its data.
fn initializer_name<R: Read + Seek>(
    src: &mut Source<R>,
    len: u64,
    inputs: &HashSet<String>,
    hidden: &mut HashSet<String>,
) -> Result<(), FormatError> {
    let end = src.pos() + len;
    walk(src, end, Msg::Tensor, |src, field, value| {
        if field == 8 {
            let len = expect_len(Msg::Tensor, field, value)?;
            let bytes = src.read_vec(len, MAX_FIELD_BYTES, format_args!("the name of an initializer"))?;
            let name = String::from_utf8_lossy(&bytes);
            if inputs.contains(name.as_ref()) {
                hidden.insert(name.into_owned());
            }
        }
        Ok(())
    })
}

fn tensor_spec(info: ValueInfoProto, unknown_rank: &mut Vec<String>) -> Result<TensorSpec, FormatError> {
    let name = info.name;
    let (dtype, shape) = match info.r#type.and_then(|t| t.value) {
        Some(type_proto::Value::TensorType(tensor)) => {
            let Some(dtype) = kserve_dtype(tensor.elem_type) else {
                return Err(FormatError::UnsupportedElementType { name, elem_type: tensor.elem_type });
            };
            let shape = match tensor.shape {
                Some(shape) => shape
                    .dim
                    .iter()
                    .map(|d| match d.value {
                        Some(dimension::Value::DimValue(v)) if v >= 0 => v,
                        _ => -1,
                    })
                    .collect(),
                None => {
                    unknown_rank.push(name.clone());
                    Vec::new()
                }
            };
            (dtype, shape)
        }
        Some(type_proto::Value::SequenceType(_)) => ("SEQUENCE", Vec::new()),
        Some(type_proto::Value::MapType(_)) => ("MAP", Vec::new()),
        Some(type_proto::Value::OptionalType(_)) => ("OPTIONAL", Vec::new()),
        Some(type_proto::Value::SparseTensorType(_)) => ("SPARSE_TENSOR", Vec::new()),
        Some(type_proto::Value::OpaqueType(_)) => ("OPAQUE", Vec::new()),
        None => ("UNKNOWN", Vec::new()),
    };
    Ok(TensorSpec { name, dtype: dtype.to_owned(), shape })
}

/// `TensorProto.DataType` → KServe v2 name.
fn kserve_dtype(elem_type: i32) -> Option<&'static str> {
    Some(match elem_type {
        1 => "FP32",
        2 => "UINT8",
        3 => "INT8",
        4 => "UINT16",
        5 => "INT16",
        6 => "INT32",
        7 => "INT64",
        8 => "BYTES",
        9 => "BOOL",
        10 => "FP16",
        11 => "FP64",
        12 => "UINT32",
        13 => "UINT64",
        16 => "BF16",
        _ => return None,
    })
}

/// The messages walked, for error messages.
#[derive(Debug, Clone, Copy)]
enum Msg {
    Model,
    Graph,
    Tensor,
    SparseTensor,
}

impl Msg {
    fn name(self) -> &'static str {
        match self {
            Msg::Model => "the model",
            Msg::Graph => "the graph",
            Msg::Tensor => "an initializer",
            Msg::SparseTensor => "a sparse initializer",
        }
    }

    fn field_name(self, field: u32) -> Option<&'static str> {
        Some(match (self, field) {
            (Msg::Model, 1) => "ir_version",
            (Msg::Model, 2) => "producer_name",
            (Msg::Model, 3) => "producer_version",
            (Msg::Model, 4) => "domain",
            (Msg::Model, 5) => "model_version",
            (Msg::Model, 6) => "doc_string",
            (Msg::Model, 7) => "graph",
            (Msg::Model, 8) => "opset_import",
            (Msg::Model, 14) => "metadata_props",
            (Msg::Model, 20) => "training_info",
            (Msg::Model, 25) => "functions",
            (Msg::Graph, 1) => "node",
            (Msg::Graph, 2) => "name",
            (Msg::Graph, 5) => "initializer",
            (Msg::Graph, 10) => "doc_string",
            (Msg::Graph, 11) => "input",
            (Msg::Graph, 12) => "output",
            (Msg::Graph, 13) => "value_info",
            (Msg::Graph, 15) => "sparse_initializer",
            (Msg::Tensor, 8) => "name",
            (Msg::Tensor, 9) => "raw_data",
            (Msg::SparseTensor, 1) => "values",
            _ => return None,
        })
    }
}

/// "field 7 (graph)", or "field 99" for fields this reader does not name.
struct FieldName(Msg, u32);

impl fmt::Display for FieldName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.field_name(self.1) {
            Some(name) => write!(f, "field {} ({name})", self.1),
            None => write!(f, "field {}", self.1),
        }
    }
}

/// A field's value as far as the walker decodes it. For `Len` the payload is next.
#[derive(Debug, Clone, Copy)]
enum Wire {
    Varint(u64),
    Fixed,
    Len(u64),
}

fn expect_len(msg: Msg, field: u32, value: Wire) -> Result<u64, FormatError> {
    match value {
        Wire::Len(len) => Ok(len),
        _ => Err(wrong_wire(msg, field, "length-delimited")),
    }
}

fn expect_varint(msg: Msg, field: u32, value: Wire) -> Result<u64, FormatError> {
    match value {
        Wire::Varint(v) => Ok(v),
        _ => Err(wrong_wire(msg, field, "a varint")),
    }
}

fn wrong_wire(msg: Msg, field: u32, expected: &str) -> FormatError {
    FormatError::NotOnnx(format!("{} of {} is not {expected}", FieldName(msg, field), msg.name()))
}

/// Calls `visit` for every field of the message between the current position and `end`.
/// `visit` may read part or all of a field's payload; the walker then moves to the next field
/// (seeking over whatever was not read). Every length is checked against `end` first.
fn walk<R, F>(src: &mut Source<R>, end: u64, msg: Msg, mut visit: F) -> Result<(), FormatError>
where
    R: Read + Seek,
    F: FnMut(&mut Source<R>, u32, Wire) -> Result<(), FormatError>,
{
    while src.pos() < end {
        let at = src.pos();
        let tag = read_varint(src, end, format_args!("a field tag of {}", msg.name()))?;
        let (field, wire) = (tag >> 3, tag & 7);
        if field == 0 || field > (1 << 29) - 1 {
            return Err(FormatError::NotOnnx(format!("invalid field number {field} at byte {at} in {}", msg.name())));
        }
        let field = field as u32;
        let name = FieldName(msg, field);
        let (value, size) = match wire {
            0 => (Wire::Varint(read_varint(src, end, format_args!("{name} of {}", msg.name()))?), 0),
            1 => (Wire::Fixed, 8),
            5 => (Wire::Fixed, 4),
            2 => {
                let len = read_varint(src, end, format_args!("the length of {name} of {}", msg.name()))?;
                (Wire::Len(len), len)
            }
            3 | 4 => {
                return Err(FormatError::NotOnnx(format!(
                    "{name} of {} at byte {at} is a protobuf group, which ONNX never uses",
                    msg.name()
                )));
            }
            _ => {
                return Err(FormatError::NotOnnx(format!(
                    "invalid protobuf wire type {wire} for {name} at byte {at} in {}",
                    msg.name()
                )));
            }
        };
        let value_end = match src.pos().checked_add(size) {
            Some(value_end) if value_end <= end => value_end,
            value_end if end == src.len() => {
                return Err(src.truncated(value_end.unwrap_or(u64::MAX), format_args!("{name} of {}", msg.name())));
            }
            _ => {
                return Err(FormatError::NotOnnx(format!(
                    "{name} of {} ({size} bytes at byte {at}) runs past the end of its enclosing message",
                    msg.name()
                )));
            }
        };
        visit(src, field, value)?;
        if src.pos() != value_end {
            src.seek_to(value_end, format_args!("{name} of {}", msg.name()))?;
        }
    }
    Ok(())
}

/// A base-128 varint that must end before `end`.
fn read_varint<R: Read + Seek>(src: &mut Source<R>, end: u64, what: fmt::Arguments<'_>) -> Result<u64, FormatError> {
    let mut value = 0u64;
    for i in 0..10 {
        if src.pos() >= end {
            return Err(if end == src.len() {
                src.truncated(src.pos() + 1, what)
            } else {
                FormatError::NotOnnx(format!("{what} runs past the end of its enclosing message"))
            });
        }
        let byte = src.read_u8(what)?;
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(FormatError::NotOnnx(format!("{what} is not a valid varint (longer than 10 bytes)")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn varint(bytes: &[u8]) -> Result<u64, FormatError> {
        let mut src = Source::open(Cursor::new(bytes.to_vec())).unwrap();
        let end = src.len();
        read_varint(&mut src, end, format_args!("a test varint"))
    }

    #[test]
    fn varints() {
        assert_eq!(varint(&[0x00]).unwrap(), 0);
        assert_eq!(varint(&[0x96, 0x01]).unwrap(), 150);
        assert_eq!(varint(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]).unwrap(), u64::MAX);
        assert!(matches!(varint(&[0x96]), Err(FormatError::Truncated { .. })));
        assert!(varint(&[0xff; 11]).unwrap_err().to_string().contains("longer than 10 bytes"));
    }

    #[test]
    fn element_types() {
        assert_eq!(kserve_dtype(1), Some("FP32"));
        assert_eq!(kserve_dtype(8), Some("BYTES"));
        assert_eq!(kserve_dtype(16), Some("BF16"));
        assert_eq!(kserve_dtype(14), None); // COMPLEX64
        assert_eq!(kserve_dtype(0), None); // UNDEFINED
    }
}
