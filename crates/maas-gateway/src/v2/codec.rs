//! The KServe Open Inference Protocol v2 wire format: JSON tensors (nested or flat `data`,
//! every v2 dtype) and Triton's binary tensor data extension
//! (`Inference-Header-Content-Length`, `binary_data_size`, `binary_data_output`).

use bytes::{Bytes, BytesMut};
use maas_runtime::tensor::element_count;
use maas_runtime::{DataType, Tensor, TensorData};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A protocol error: always the client's (400).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CodecError(pub String);

fn err(msg: impl Into<String>) -> CodecError {
    CodecError(msg.into())
}

#[derive(Debug, Deserialize)]
pub struct RequestInput {
    pub name: String,
    pub shape: Vec<i64>,
    pub datatype: String,
    #[serde(default)]
    pub parameters: Map<String, Value>,
    pub data: Option<Value>,
}

#[derive(Debug, Deserialize)]
pub struct RequestOutput {
    pub name: String,
    #[serde(default)]
    pub parameters: Map<String, Value>,
}

#[derive(Debug, Deserialize)]
pub struct InferRequestBody {
    pub id: Option<String>,
    #[serde(default)]
    pub parameters: Map<String, Value>,
    pub inputs: Vec<RequestInput>,
    #[serde(default)]
    pub outputs: Vec<RequestOutput>,
}

/// A decoded request: tensors, the outputs asked for, and how to answer.
#[derive(Debug)]
pub struct DecodedRequest {
    pub id: Option<String>,
    pub inputs: Vec<Tensor>,
    /// Requested output names (empty: all).
    pub outputs: Vec<String>,
    /// Output names to return as binary data.
    pub binary_outputs: Vec<String>,
    /// `binary_data_output: true` at the request level: every output binary.
    pub all_binary: bool,
}

#[derive(Debug, Serialize)]
pub struct ResponseOutput {
    pub name: String,
    pub datatype: &'static str,
    pub shape: Vec<i64>,
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub parameters: Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

#[derive(Debug, Serialize)]
pub struct InferResponseBody {
    pub model_name: String,
    pub model_version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub outputs: Vec<ResponseOutput>,
}

fn flatten(value: &Value, out: &mut Vec<Value>) {
    match value {
        Value::Array(items) => items.iter().for_each(|v| flatten(v, out)),
        other => out.push(other.clone()),
    }
}

macro_rules! numbers {
    ($values:expr, $name:expr, $variant:ident, $conv:expr) => {{
        let mut out = Vec::with_capacity($values.len());
        for v in $values {
            let x = $conv(v)
                .ok_or_else(|| err(format!("input '{}': {} is not a valid {}", $name, v, stringify!($variant))))?;
            out.push(x);
        }
        TensorData::$variant(out)
    }};
}

fn int<T: TryFrom<i64> + TryFrom<u64>>(v: &Value) -> Option<T> {
    if let Some(i) = v.as_i64() { T::try_from(i).ok() } else { v.as_u64().and_then(|u| T::try_from(u).ok()) }
}

/// JSON `data` (nested or flat) to tensor data of `dtype`.
pub fn json_to_data(name: &str, dtype: DataType, data: &Value) -> Result<TensorData, CodecError> {
    let mut values = Vec::new();
    flatten(data, &mut values);
    let values = &values;
    Ok(match dtype {
        DataType::Bool => numbers!(values, name, Bool, |v: &Value| v.as_bool()),
        DataType::Uint8 => numbers!(values, name, Uint8, int::<u8>),
        DataType::Uint16 => numbers!(values, name, Uint16, int::<u16>),
        DataType::Uint32 => numbers!(values, name, Uint32, int::<u32>),
        DataType::Uint64 => numbers!(values, name, Uint64, |v: &Value| v.as_u64()),
        DataType::Int8 => numbers!(values, name, Int8, int::<i8>),
        DataType::Int16 => numbers!(values, name, Int16, int::<i16>),
        DataType::Int32 => numbers!(values, name, Int32, int::<i32>),
        DataType::Int64 => numbers!(values, name, Int64, |v: &Value| v.as_i64()),
        DataType::Fp16 => numbers!(values, name, Fp16, |v: &Value| v.as_f64().map(half::f16::from_f64)),
        #[allow(clippy::cast_possible_truncation)]
        DataType::Fp32 => numbers!(values, name, Fp32, |v: &Value| v.as_f64().map(|f| f as f32)),
        DataType::Fp64 => numbers!(values, name, Fp64, |v: &Value| v.as_f64()),
        DataType::Bytes => numbers!(values, name, Bytes, |v: &Value| v.as_str().map(|s| s.as_bytes().to_vec())),
    })
}

/// Tensor data to flat JSON `data`.
pub fn data_to_json(data: &TensorData) -> Value {
    match data {
        TensorData::Bool(v) => Value::from(v.clone()),
        TensorData::Uint8(v) => Value::from(v.clone()),
        TensorData::Uint16(v) => Value::from(v.clone()),
        TensorData::Uint32(v) => Value::from(v.clone()),
        TensorData::Uint64(v) => Value::from(v.clone()),
        TensorData::Int8(v) => Value::from(v.clone()),
        TensorData::Int16(v) => Value::from(v.clone()),
        TensorData::Int32(v) => Value::from(v.clone()),
        TensorData::Int64(v) => Value::from(v.clone()),
        TensorData::Fp16(v) => Value::from(v.iter().map(|x| x.to_f64()).collect::<Vec<_>>()),
        TensorData::Fp32(v) => Value::from(v.iter().map(|&x| f64::from(x)).collect::<Vec<_>>()),
        TensorData::Fp64(v) => Value::from(v.clone()),
        TensorData::Bytes(v) => {
            Value::from(v.iter().map(|b| String::from_utf8_lossy(b).into_owned()).collect::<Vec<_>>())
        }
    }
}

macro_rules! from_le {
    ($bytes:expr, $variant:ident, $t:ty) => {{
        const N: usize = std::mem::size_of::<$t>();
        TensorData::$variant(
            $bytes.chunks_exact(N).map(|c| <$t>::from_le_bytes(c.try_into().unwrap_or([0; N]))).collect(),
        )
    }};
}

/// Raw little-endian bytes (or length-prefixed BYTES elements) to tensor data.
pub fn binary_to_data(name: &str, dtype: DataType, raw: &[u8], elements: usize) -> Result<TensorData, CodecError> {
    if let Some(size) = dtype.size()
        && raw.len() != elements * size
    {
        return Err(err(format!(
            "input '{name}': {} bytes of binary data, but shape × {dtype} needs {}",
            raw.len(),
            elements * size
        )));
    }
    Ok(match dtype {
        DataType::Bool => TensorData::Bool(raw.iter().map(|&b| b != 0).collect()),
        DataType::Uint8 => TensorData::Uint8(raw.to_vec()),
        DataType::Int8 => TensorData::Int8(raw.iter().map(|&b| i8::from_le_bytes([b])).collect()),
        DataType::Uint16 => from_le!(raw, Uint16, u16),
        DataType::Uint32 => from_le!(raw, Uint32, u32),
        DataType::Uint64 => from_le!(raw, Uint64, u64),
        DataType::Int16 => from_le!(raw, Int16, i16),
        DataType::Int32 => from_le!(raw, Int32, i32),
        DataType::Int64 => from_le!(raw, Int64, i64),
        DataType::Fp32 => from_le!(raw, Fp32, f32),
        DataType::Fp64 => from_le!(raw, Fp64, f64),
        DataType::Fp16 => TensorData::Fp16(
            raw.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c.get(1).copied().unwrap_or(0)])).collect(),
        ),
        DataType::Bytes => {
            let mut out = Vec::with_capacity(elements);
            let mut rest = raw;
            while !rest.is_empty() {
                let Some((len, tail)) = rest.split_first_chunk::<4>() else {
                    return Err(err(format!("input '{name}': truncated BYTES element length")));
                };
                let len = u32::from_le_bytes(*len) as usize;
                if tail.len() < len {
                    return Err(err(format!("input '{name}': BYTES element of {len} bytes runs past the data")));
                }
                out.push(tail[..len].to_vec());
                rest = &tail[len..];
            }
            TensorData::Bytes(out)
        }
    })
}

/// Tensor data to raw little-endian bytes (BYTES: 4-byte length prefix per element).
pub fn data_to_binary(data: &TensorData) -> Vec<u8> {
    fn le<T: Copy, const N: usize>(v: &[T], f: fn(T) -> [u8; N]) -> Vec<u8> {
        v.iter().flat_map(|&x| f(x)).collect()
    }
    match data {
        TensorData::Bool(v) => v.iter().map(|&b| u8::from(b)).collect(),
        TensorData::Uint8(v) => v.clone(),
        TensorData::Int8(v) => le(v, i8::to_le_bytes),
        TensorData::Uint16(v) => le(v, u16::to_le_bytes),
        TensorData::Uint32(v) => le(v, u32::to_le_bytes),
        TensorData::Uint64(v) => le(v, u64::to_le_bytes),
        TensorData::Int16(v) => le(v, i16::to_le_bytes),
        TensorData::Int32(v) => le(v, i32::to_le_bytes),
        TensorData::Int64(v) => le(v, i64::to_le_bytes),
        TensorData::Fp16(v) => le(v, half::f16::to_le_bytes),
        TensorData::Fp32(v) => le(v, f32::to_le_bytes),
        TensorData::Fp64(v) => le(v, f64::to_le_bytes),
        TensorData::Bytes(v) => {
            let mut out = Vec::with_capacity(v.iter().map(|b| b.len() + 4).sum());
            for b in v {
                out.extend_from_slice(&u32::try_from(b.len()).unwrap_or(u32::MAX).to_le_bytes());
                out.extend_from_slice(b);
            }
            out
        }
    }
}

fn flag(params: &Map<String, Value>, key: &str) -> bool {
    params.get(key).and_then(Value::as_bool).unwrap_or(false)
}

/// Decodes a request body. `header_len` is `Inference-Header-Content-Length` (binary
/// extension): the JSON is the first `header_len` bytes and binary tensors follow.
pub fn decode_request(body: &[u8], header_len: Option<usize>) -> Result<DecodedRequest, CodecError> {
    let (json, mut binary) = match header_len {
        Some(n) if n > body.len() => {
            return Err(err(format!("Inference-Header-Content-Length is {n} but the body has {} bytes", body.len())));
        }
        Some(n) => body.split_at(n),
        None => (body, &[][..]),
    };
    let req: InferRequestBody =
        serde_json::from_slice(json).map_err(|e| err(format!("the request is not valid v2 JSON: {e}")))?;
    let mut inputs = Vec::with_capacity(req.inputs.len());
    for input in &req.inputs {
        let dtype = DataType::parse(&input.datatype)
            .ok_or_else(|| err(format!("input '{}': unknown datatype '{}'", input.name, input.datatype)))?;
        let elements = element_count(&input.shape)
            .ok_or_else(|| err(format!("input '{}': invalid shape {:?}", input.name, input.shape)))?;
        let data = match (input.parameters.get("binary_data_size").and_then(Value::as_u64), &input.data) {
            (Some(size), _) => {
                let size = usize::try_from(size).map_err(|_| err("binary_data_size too large"))?;
                if size > binary.len() {
                    return Err(err(format!("input '{}': binary_data_size {size} runs past the body", input.name)));
                }
                let (raw, rest) = binary.split_at(size);
                binary = rest;
                binary_to_data(&input.name, dtype, raw, elements)?
            }
            (None, Some(data)) => json_to_data(&input.name, dtype, data)?,
            (None, None) => return Err(err(format!("input '{}' has neither data nor binary_data_size", input.name))),
        };
        let tensor = Tensor::new(input.name.clone(), input.shape.clone(), data).map_err(|e| err(e.to_string()))?;
        inputs.push(tensor);
    }
    if !binary.is_empty() {
        return Err(err(format!("{} bytes of binary data are not claimed by any input", binary.len())));
    }
    Ok(DecodedRequest {
        id: req.id,
        outputs: req.outputs.iter().map(|o| o.name.clone()).collect(),
        binary_outputs: req
            .outputs
            .iter()
            .filter(|o| flag(&o.parameters, "binary_data"))
            .map(|o| o.name.clone())
            .collect(),
        all_binary: flag(&req.parameters, "binary_data_output"),
        inputs,
    })
}

/// Encodes a response; returns the body and, when binary outputs are present, the JSON
/// header length for `Inference-Header-Content-Length`.
pub fn encode_response(
    model_name: &str,
    model_version: &str,
    request: &DecodedRequest,
    outputs: Vec<Tensor>,
) -> Result<(Bytes, Option<usize>), CodecError> {
    let mut binary = BytesMut::new();
    let mut encoded = Vec::with_capacity(outputs.len());
    for t in outputs {
        let as_binary = request.all_binary || request.binary_outputs.contains(&t.name);
        let mut parameters = Map::new();
        let data = if as_binary {
            let raw = data_to_binary(&t.data);
            parameters.insert("binary_data_size".into(), Value::from(raw.len()));
            binary.extend_from_slice(&raw);
            None
        } else {
            Some(data_to_json(&t.data))
        };
        encoded.push(ResponseOutput {
            name: t.name,
            datatype: t.data.dtype().as_str(),
            shape: t.shape,
            parameters,
            data,
        });
    }
    let body = InferResponseBody {
        model_name: model_name.to_owned(),
        model_version: model_version.to_owned(),
        id: request.id.clone(),
        outputs: encoded,
    };
    let json = serde_json::to_vec(&body).map_err(|e| err(e.to_string()))?;
    if binary.is_empty() {
        return Ok((Bytes::from(json), None));
    }
    let header_len = json.len();
    let mut all = BytesMut::with_capacity(json.len() + binary.len());
    all.extend_from_slice(&json);
    all.extend_from_slice(&binary);
    Ok((all.freeze(), Some(header_len)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_inputs_of_every_dtype_round_trip() {
        let cases = [
            ("BOOL", json!([[true, false]])),
            ("UINT8", json!([[1, 255]])),
            ("INT8", json!([[-128, 127]])),
            ("UINT16", json!([[0, 65535]])),
            ("INT16", json!([[-5, 5]])),
            ("UINT32", json!([[7, 8]])),
            ("INT32", json!([[-1, 2]])),
            ("UINT64", json!([[1, 18446744073709551615u64]])),
            ("INT64", json!([[-9, 9]])),
            ("FP16", json!([[0.5, -2.0]])),
            ("FP32", json!([[1.5, 2.25]])),
            ("FP64", json!([[1e-300, 3.0]])),
            ("BYTES", json!([["abc", "é"]])),
        ];
        for (dtype, data) in cases {
            let body = json!({ "inputs": [{ "name": "x", "shape": [1, 2], "datatype": dtype, "data": data }] });
            let req = decode_request(body.to_string().as_bytes(), None).unwrap();
            let t = &req.inputs[0];
            assert_eq!((t.dtype().as_str(), t.shape.clone()), (dtype, vec![1, 2]));
            let back = data_to_json(&t.data);
            let mut flat = Vec::new();
            flatten(&data, &mut flat);
            assert_eq!(back, Value::from(flat), "{dtype}");
            let raw = data_to_binary(&t.data);
            assert_eq!(binary_to_data("x", t.dtype(), &raw, 2).unwrap(), t.data, "{dtype} binary");
        }
    }

    #[test]
    fn binary_extension_in_and_out() {
        let header = json!({
            "id": "42",
            "inputs": [
                { "name": "a", "shape": [2], "datatype": "INT32", "parameters": { "binary_data_size": 8 } },
                { "name": "s", "shape": [1], "datatype": "BYTES", "parameters": { "binary_data_size": 7 } },
            ],
            "outputs": [{ "name": "a", "parameters": { "binary_data": true } }, { "name": "s" }],
        })
        .to_string();
        let mut body = header.clone().into_bytes();
        body.extend_from_slice(&1i32.to_le_bytes());
        body.extend_from_slice(&(-2i32).to_le_bytes());
        body.extend_from_slice(&3u32.to_le_bytes());
        body.extend_from_slice(b"xyz");
        let req = decode_request(&body, Some(header.len())).unwrap();
        assert_eq!(req.inputs[0].data, TensorData::Int32(vec![1, -2]));
        assert_eq!(req.inputs[1].data, TensorData::Bytes(vec![b"xyz".to_vec()]));
        assert_eq!(req.binary_outputs, ["a"]);

        let (out, len) = encode_response("t/m", "1", &req, req.inputs.clone()).unwrap();
        let len = len.unwrap();
        let json: Value = serde_json::from_slice(&out[..len]).unwrap();
        assert_eq!(json["id"], "42");
        assert_eq!(json["outputs"][0]["parameters"]["binary_data_size"], 8);
        assert!(json["outputs"][0].get("data").is_none());
        assert_eq!(json["outputs"][1]["data"], json!(["xyz"]));
        assert_eq!(&out[len..], &[1, 0, 0, 0, 254, 255, 255, 255]);
    }

    #[test]
    fn malformed_requests_are_errors() {
        let bad = [
            json!({ "inputs": [{ "name": "x", "shape": [2], "datatype": "FP33", "data": [1, 2] }] }),
            json!({ "inputs": [{ "name": "x", "shape": [3], "datatype": "FP32", "data": [1, 2] }] }),
            json!({ "inputs": [{ "name": "x", "shape": [2], "datatype": "INT8", "data": [1, 300] }] }),
            json!({ "inputs": [{ "name": "x", "shape": [2], "datatype": "FP32" }] }),
            json!({ "inputs": [{ "name": "x", "shape": [-1], "datatype": "FP32", "data": [] }] }),
            json!({ "inputs": [{ "name": "x", "shape": [1], "datatype": "BOOL", "data": ["yes"] }] }),
            json!({ "inputs": "nope" }),
        ];
        for body in bad {
            assert!(decode_request(body.to_string().as_bytes(), None).is_err(), "{body}");
        }
        let header = json!({ "inputs": [{ "name": "x", "shape": [2], "datatype": "FP32", "parameters": { "binary_data_size": 8 } }] }).to_string();
        let mut body = header.clone().into_bytes();
        body.extend_from_slice(&[0; 4]);
        assert!(decode_request(&body, Some(header.len())).is_err(), "too little binary data");
        assert!(decode_request(&body, Some(body.len() + 1)).is_err(), "header longer than the body");
    }
}
