//! The KServe Open Inference Protocol v2 wire format: JSON tensors (nested or flat `data`,
//! every v2 dtype) and Triton's binary tensor data extension
//! (`Inference-Header-Content-Length`, `binary_data_size`, `binary_data_output`).

use bytes::{Buf, Bytes, BytesMut};
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

/// A tensor as the JSON part of a message carries it: request inputs and response outputs
/// alike (`data`, or `binary_data_size` bytes after the JSON).
#[derive(Debug, Deserialize)]
pub struct WireTensor {
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
    pub inputs: Vec<WireTensor>,
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
pub struct EncodedTensor {
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
    pub outputs: Vec<EncodedTensor>,
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

/// Little-endian elements of `N` bytes read straight out of `raw`'s chunks into one vector: a
/// request body arrives as several buffers, and making it contiguous first would copy a large
/// tensor once more. An element split across two chunks is put together in `pending`.
/// `decode` is a generic, not a `fn` pointer: called through a pointer it was not inlined, and
/// decoding a batch-8 ResNet input (1.2 M floats) one call per element was half the server's
/// CPU for that request over gRPC; inlined, the loop compiles to wide loads and stores.
fn from_le<T, const N: usize>(mut raw: impl Buf, decode: impl Fn([u8; N]) -> T) -> Vec<T> {
    let mut out = Vec::with_capacity(raw.remaining() / N);
    let mut pending = [0u8; N];
    let mut filled = 0;
    while raw.has_remaining() {
        let chunk = raw.chunk();
        let mut rest = chunk;
        if filled > 0 {
            let take = (N - filled).min(rest.len());
            pending[filled..filled + take].copy_from_slice(&rest[..take]);
            filled += take;
            rest = &rest[take..];
            if filled == N {
                out.push(decode(pending));
                filled = 0;
            }
        }
        let whole = rest.len() / N * N;
        out.extend(rest[..whole].chunks_exact(N).map(|b| decode(b.try_into().unwrap_or([0; N]))));
        let tail = &rest[whole..];
        pending[filled..filled + tail.len()].copy_from_slice(tail);
        filled += tail.len();
        let consumed = chunk.len();
        raw.advance(consumed);
    }
    out
}

/// Raw little-endian bytes (or length-prefixed BYTES elements) to tensor data.
pub fn binary_to_data(
    name: &str,
    dtype: DataType,
    mut raw: impl Buf,
    elements: usize,
) -> Result<TensorData, CodecError> {
    if let Some(size) = dtype.size()
        && raw.remaining() != elements * size
    {
        return Err(err(format!(
            "input '{name}': {} bytes of binary data, but shape × {dtype} needs {}",
            raw.remaining(),
            elements * size
        )));
    }
    Ok(match dtype {
        DataType::Bool => TensorData::Bool(from_le(raw, |[b]| b != 0)),
        DataType::Uint8 => TensorData::Uint8(raw.copy_to_bytes(raw.remaining()).into()),
        DataType::Int8 => TensorData::Int8(from_le(raw, i8::from_le_bytes)),
        DataType::Uint16 => TensorData::Uint16(from_le(raw, u16::from_le_bytes)),
        DataType::Uint32 => TensorData::Uint32(from_le(raw, u32::from_le_bytes)),
        DataType::Uint64 => TensorData::Uint64(from_le(raw, u64::from_le_bytes)),
        DataType::Int16 => TensorData::Int16(from_le(raw, i16::from_le_bytes)),
        DataType::Int32 => TensorData::Int32(from_le(raw, i32::from_le_bytes)),
        DataType::Int64 => TensorData::Int64(from_le(raw, i64::from_le_bytes)),
        DataType::Fp32 => TensorData::Fp32(from_le(raw, f32::from_le_bytes)),
        DataType::Fp64 => TensorData::Fp64(from_le(raw, f64::from_le_bytes)),
        DataType::Fp16 => TensorData::Fp16(from_le(raw, half::f16::from_le_bytes)),
        DataType::Bytes => {
            let raw = raw.copy_to_bytes(raw.remaining());
            let mut out = Vec::with_capacity(elements);
            let mut rest = &raw[..];
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
    // `f` generic, as in `from_le`, so that it is inlined into the loop.
    fn le<T: Copy, const N: usize>(v: &[T], f: impl Fn(T) -> [u8; N]) -> Vec<u8> {
        let mut out = Vec::with_capacity(v.len() * N);
        for &x in v {
            out.extend_from_slice(&f(x));
        }
        out
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

/// The JSON part of a message: the first `header_len` bytes (binary extension) or all of it.
fn split_json(body: &mut impl Buf, header_len: Option<usize>) -> Result<Bytes, CodecError> {
    match header_len {
        Some(n) if n > body.remaining() => {
            Err(err(format!("Inference-Header-Content-Length is {n} but the body has {} bytes", body.remaining())))
        }
        Some(n) => Ok(body.copy_to_bytes(n)),
        None => Ok(body.copy_to_bytes(body.remaining())),
    }
}

/// The tensors a message describes, their data from JSON or from `binary` in order; `what`
/// ("input" or "output") names them in errors.
fn decode_tensors(entries: &[WireTensor], mut binary: impl Buf, what: &str) -> Result<Vec<Tensor>, CodecError> {
    let mut tensors = Vec::with_capacity(entries.len());
    for entry in entries {
        let name = &entry.name;
        let dtype = DataType::parse(&entry.datatype)
            .ok_or_else(|| err(format!("{what} '{name}': unknown datatype '{}'", entry.datatype)))?;
        let elements = element_count(&entry.shape)
            .ok_or_else(|| err(format!("{what} '{name}': invalid shape {:?}", entry.shape)))?;
        let data = match (entry.parameters.get("binary_data_size").and_then(Value::as_u64), &entry.data) {
            (Some(size), _) => {
                let size = usize::try_from(size).map_err(|_| err("binary_data_size too large"))?;
                if size > binary.remaining() {
                    return Err(err(format!("{what} '{name}': binary_data_size {size} runs past the body")));
                }
                binary_to_data(name, dtype, (&mut binary).take(size), elements)?
            }
            (None, Some(data)) => json_to_data(name, dtype, data)?,
            (None, None) => return Err(err(format!("{what} '{name}' has neither data nor binary_data_size"))),
        };
        tensors.push(Tensor::new(name.clone(), entry.shape.clone(), data).map_err(|e| err(e.to_string()))?);
    }
    if binary.has_remaining() {
        return Err(err(format!("{} bytes of binary data are not claimed by any {what}", binary.remaining())));
    }
    Ok(tensors)
}

/// Tensors as JSON entries; those `as_binary` picks go into `binary` with their
/// `binary_data_size`, the others carry JSON `data`.
fn encode_tensors(tensors: Vec<Tensor>, as_binary: impl Fn(&str) -> bool, binary: &mut BytesMut) -> Vec<EncodedTensor> {
    let mut encoded = Vec::with_capacity(tensors.len());
    for t in tensors {
        let mut parameters = Map::new();
        let data = if as_binary(&t.name) {
            let raw = data_to_binary(&t.data);
            parameters.insert("binary_data_size".into(), Value::from(raw.len()));
            binary.extend_from_slice(&raw);
            None
        } else {
            Some(data_to_json(&t.data))
        };
        encoded.push(EncodedTensor {
            name: t.name,
            datatype: t.data.dtype().as_str(),
            shape: t.shape,
            parameters,
            data,
        });
    }
    encoded
}

/// The JSON header and the binary tensors after it; the header length when there are any.
fn join(json: Vec<u8>, binary: BytesMut) -> (Bytes, Option<usize>) {
    if binary.is_empty() {
        return (Bytes::from(json), None);
    }
    let header_len = json.len();
    let mut all = BytesMut::with_capacity(json.len() + binary.len());
    all.extend_from_slice(&json);
    all.extend_from_slice(&binary);
    (all.freeze(), Some(header_len))
}

/// Decodes a request body (any `Buf`: the chunks a request arrived in are read without
/// being joined first). `header_len` is `Inference-Header-Content-Length` (binary
/// extension): the JSON is the first `header_len` bytes and binary tensors follow.
pub fn decode_request(mut body: impl Buf, header_len: Option<usize>) -> Result<DecodedRequest, CodecError> {
    let json = split_json(&mut body, header_len)?;
    let req: InferRequestBody =
        serde_json::from_slice(&json).map_err(|e| err(format!("the request is not valid v2 JSON: {e}")))?;
    let inputs = decode_tensors(&req.inputs, body, "input")?;
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
    let encoded = encode_tensors(
        outputs,
        |name| request.all_binary || request.binary_outputs.iter().any(|b| b == name),
        &mut binary,
    );
    let body = InferResponseBody {
        model_name: model_name.to_owned(),
        model_version: model_version.to_owned(),
        id: request.id.clone(),
        outputs: encoded,
    };
    let json = serde_json::to_vec(&body).map_err(|e| err(e.to_string()))?;
    Ok(join(json, binary))
}

/// Encodes a request to another v2 server with every input as binary data and every output
/// asked for as binary data (`outputs` empty: all of them). Returns the body and the value of
/// `Inference-Header-Content-Length`.
pub fn encode_request(id: Option<&str>, inputs: Vec<Tensor>, outputs: &[String]) -> Result<(Bytes, usize), CodecError> {
    let mut binary = BytesMut::new();
    let inputs = encode_tensors(inputs, |_| true, &mut binary);
    let mut header = serde_json::json!({ "inputs": inputs });
    if let Some(id) = id {
        header["id"] = Value::from(id);
    }
    if outputs.is_empty() {
        header["parameters"] = serde_json::json!({ "binary_data_output": true });
    } else {
        header["outputs"] = outputs
            .iter()
            .map(|name| serde_json::json!({ "name": name, "parameters": { "binary_data": true } }))
            .collect();
    }
    let json = serde_json::to_vec(&header).map_err(|e| err(e.to_string()))?;
    let header_len = json.len();
    let (body, _) = join(json, binary);
    Ok((body, header_len))
}

/// Decodes another v2 server's response (JSON, or JSON followed by binary tensors when
/// `header_len` is given) to its output tensors.
pub fn decode_response(mut body: impl Buf, header_len: Option<usize>) -> Result<Vec<Tensor>, CodecError> {
    #[derive(Deserialize)]
    struct ResponseBody {
        outputs: Vec<WireTensor>,
    }
    let json = split_json(&mut body, header_len)?;
    let response: ResponseBody =
        serde_json::from_slice(&json).map_err(|e| err(format!("the response is not valid v2 JSON: {e}")))?;
    decode_tensors(&response.outputs, body, "output")
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
            assert_eq!(binary_to_data("x", t.dtype(), &raw[..], 2).unwrap(), t.data, "{dtype} binary");
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
        let req = decode_request(&body[..], Some(header.len())).unwrap();
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

    /// A body arrives in chunks of any size; elements split across chunks decode the same.
    #[test]
    fn binary_tensors_split_across_chunks_decode_whole() {
        let floats: Vec<f32> = (0..50).map(|i| i as f32 * 0.5 - 3.25).collect();
        let header = json!({ "inputs": [
            { "name": "x", "shape": [5, 10], "datatype": "FP32", "parameters": { "binary_data_size": 200 } },
            { "name": "y", "shape": [3], "datatype": "INT64", "parameters": { "binary_data_size": 24 } },
        ] })
        .to_string();
        let mut body = header.clone().into_bytes();
        floats.iter().for_each(|f| body.extend_from_slice(&f.to_le_bytes()));
        [7i64, -1, i64::MAX].iter().for_each(|v| body.extend_from_slice(&v.to_le_bytes()));
        for cuts in
            [[1, 2, 3], [header.len() + 1, header.len() + 7, header.len() + 201], [5, header.len() + 3, body.len() - 5]]
        {
            let (a, rest) = body.split_at(cuts[0]);
            let (b, rest) = rest.split_at(cuts[1] - cuts[0]);
            let (c, d) = rest.split_at(cuts[2] - cuts[1]);
            let chunks = Bytes::copy_from_slice(a)
                .chain(Bytes::copy_from_slice(b))
                .chain(Bytes::copy_from_slice(c))
                .chain(Bytes::copy_from_slice(d));
            let req = decode_request(chunks, Some(header.len())).unwrap();
            assert_eq!(req.inputs[0].data, TensorData::Fp32(floats.clone()), "cuts {cuts:?}");
            assert_eq!(req.inputs[1].data, TensorData::Int64(vec![7, -1, i64::MAX]), "cuts {cuts:?}");
        }
    }

    /// What we send another v2 server decodes as the request it was, and its binary answer
    /// decodes back to the tensors it encoded.
    #[test]
    fn requests_to_and_answers_from_another_server_round_trip() {
        let inputs = vec![
            Tensor::new("a", vec![2, 2], TensorData::Fp32(vec![1.0, -2.5, 3.25, 0.0])).unwrap(),
            Tensor::new("s", vec![2], TensorData::Bytes(vec![b"x".to_vec(), b"yz".to_vec()])).unwrap(),
        ];
        let (body, header_len) = encode_request(Some("7"), inputs.clone(), &["out".into()]).unwrap();
        let req = decode_request(body, Some(header_len)).unwrap();
        assert_eq!(
            (req.id.as_deref(), &req.inputs, &req.binary_outputs),
            (Some("7"), &inputs, &vec!["out".to_string()])
        );
        let (body, n) = encode_request(None, inputs.clone(), &[]).unwrap();
        assert!(decode_request(body, Some(n)).unwrap().all_binary, "no outputs named: all, as binary");

        let (body, header_len) = encode_response("t/m", "1", &req, inputs.clone()).unwrap();
        assert_eq!(decode_response(body, header_len).unwrap(), inputs, "binary answer");
        let json_only = DecodedRequest { binary_outputs: vec![], ..req };
        let (body, header_len) = encode_response("t/m", "1", &json_only, inputs.clone()).unwrap();
        assert_eq!((header_len, decode_response(body, None).unwrap()), (None, inputs), "JSON answer");
        assert!(decode_response(&b"{\"outputs\": 3}"[..], None).is_err());
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
        assert!(decode_request(&body[..], Some(header.len())).is_err(), "too little binary data");
        assert!(decode_request(&body[..], Some(body.len() + 1)).is_err(), "header longer than the body");
    }
}
