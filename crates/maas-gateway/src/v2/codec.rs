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

/// Appends the little-endian elements of `bytes` to `out`; an element split across two chunks
/// is put together in `pending` (`filled` bytes of it so far). `decode` is a generic, not a `fn`
/// pointer: called through a pointer it was not inlined, and decoding a batch-8 ResNet input
/// (1.2 M floats) one call per element was half the server's CPU for that request over gRPC;
/// inlined, the loop compiles to wide loads and stores.
fn extend_le<T, const N: usize>(
    out: &mut Vec<T>,
    pending: &mut [u8; 8],
    filled: &mut usize,
    mut bytes: &[u8],
    decode: impl Fn([u8; N]) -> T,
) {
    let element = |b: &[u8]| decode(b.try_into().unwrap_or([0; N]));
    if *filled > 0 {
        let take = (N - *filled).min(bytes.len());
        pending[*filled..*filled + take].copy_from_slice(&bytes[..take]);
        *filled += take;
        bytes = &bytes[take..];
        if *filled == N {
            out.push(element(&pending[..N]));
            *filled = 0;
        }
    }
    let whole = bytes.len() / N * N;
    out.extend(bytes[..whole].chunks_exact(N).map(element));
    let tail = &bytes[whole..];
    pending[*filled..*filled + tail.len()].copy_from_slice(tail);
    *filled += tail.len();
}

/// Where a binary tensor's bytes go while they arrive.
#[derive(Debug)]
enum Sink {
    /// Fixed-size elements, decoded as they come.
    Elements(TensorData),
    /// BYTES: length-prefixed strings, split once all have arrived.
    Strings(Vec<u8>),
}

/// One binary tensor decoded chunk by chunk as its bytes arrive: a body comes as several
/// buffers, and joining them first would hold (and copy) a large tensor once more.
#[derive(Debug)]
struct BinaryDecoder {
    name: String,
    size: usize,
    received: usize,
    sink: Sink,
    pending: [u8; 8],
    filled: usize,
}

impl BinaryDecoder {
    /// A decoder of `size` bytes of `dtype` holding `elements` elements (checked, for the
    /// fixed-size types). The caller bounds `size` by what the body can hold: it is allocated.
    fn new(name: &str, dtype: DataType, elements: usize, size: usize) -> Result<Self, CodecError> {
        let sink = match dtype.size() {
            Some(width) if elements.checked_mul(width) != Some(size) => {
                return Err(err(format!(
                    "input '{name}': {size} bytes of binary data, but shape × {dtype} needs {}",
                    elements.saturating_mul(width)
                )));
            }
            Some(_) => Sink::Elements(TensorData::with_capacity(dtype, elements)),
            None => Sink::Strings(Vec::with_capacity(size)),
        };
        Ok(BinaryDecoder { name: name.to_owned(), size, received: 0, sink, pending: [0; 8], filled: 0 })
    }

    /// Bytes still to come.
    fn missing(&self) -> usize {
        self.size - self.received
    }

    /// Takes the first [`Self::missing`] bytes of `bytes` at most; returns how many it took.
    fn push(&mut self, bytes: &[u8]) -> usize {
        let take = self.missing().min(bytes.len());
        let bytes = &bytes[..take];
        self.received += take;
        let (p, f) = (&mut self.pending, &mut self.filled);
        match &mut self.sink {
            Sink::Strings(raw) => raw.extend_from_slice(bytes),
            Sink::Elements(data) => match data {
                TensorData::Bool(v) => extend_le(v, p, f, bytes, |[b]: [u8; 1]| b != 0),
                TensorData::Uint8(v) => v.extend_from_slice(bytes),
                TensorData::Int8(v) => extend_le(v, p, f, bytes, i8::from_le_bytes),
                TensorData::Uint16(v) => extend_le(v, p, f, bytes, u16::from_le_bytes),
                TensorData::Uint32(v) => extend_le(v, p, f, bytes, u32::from_le_bytes),
                TensorData::Uint64(v) => extend_le(v, p, f, bytes, u64::from_le_bytes),
                TensorData::Int16(v) => extend_le(v, p, f, bytes, i16::from_le_bytes),
                TensorData::Int32(v) => extend_le(v, p, f, bytes, i32::from_le_bytes),
                TensorData::Int64(v) => extend_le(v, p, f, bytes, i64::from_le_bytes),
                TensorData::Fp16(v) => extend_le(v, p, f, bytes, half::f16::from_le_bytes),
                TensorData::Fp32(v) => extend_le(v, p, f, bytes, f32::from_le_bytes),
                TensorData::Fp64(v) => extend_le(v, p, f, bytes, f64::from_le_bytes),
                // BYTES has no element size: its data goes to `Sink::Strings`.
                TensorData::Bytes(_) => {}
            },
        }
        take
    }

    /// The data, once all `size` bytes have arrived.
    fn finish(self) -> Result<TensorData, CodecError> {
        let name = &self.name;
        if self.received < self.size {
            return Err(err(format!("input '{name}': binary_data_size {} runs past the body", self.size)));
        }
        let raw = match self.sink {
            Sink::Elements(data) => return Ok(data),
            Sink::Strings(raw) => raw,
        };
        let mut out = Vec::new();
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
        Ok(TensorData::Bytes(out))
    }
}

/// Raw little-endian bytes (or length-prefixed BYTES elements) to tensor data, read straight
/// out of `raw`'s chunks.
pub fn binary_to_data(name: &str, dtype: DataType, raw: impl Buf, elements: usize) -> Result<TensorData, CodecError> {
    let mut decoder = BinaryDecoder::new(name, dtype, elements, raw.remaining())?;
    each_chunk(raw, |chunk| {
        decoder.push(chunk);
        Ok(())
    })?;
    decoder.finish()
}

/// Tensor data to raw little-endian bytes (BYTES: 4-byte length prefix per element).
pub fn data_to_binary(data: &TensorData) -> Vec<u8> {
    // `f` generic, as in `extend_le`, so that it is inlined into the loop.
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

/// A tensor's declared `datatype` and the element count of its `shape`, both checked; `what`
/// ("input" or "output") and `name` name it in errors.
pub fn dtype_and_elements(
    what: &str,
    name: &str,
    datatype: &str,
    shape: &[i64],
) -> Result<(DataType, usize), CodecError> {
    let dtype =
        DataType::parse(datatype).ok_or_else(|| err(format!("{what} '{name}': unknown datatype '{datatype}'")))?;
    let elements = element_count(shape).ok_or_else(|| err(format!("{what} '{name}': invalid shape {shape:?}")))?;
    Ok((dtype, elements))
}

/// A tensor of a message as its JSON describes it: decoded already, or waiting for its binary
/// data.
#[derive(Debug)]
enum Slot {
    Done(Tensor),
    Binary { name: String, shape: Vec<i64>, decoder: BinaryDecoder },
}

/// The tensors a message's JSON lists, their binary data (in the order they are listed) fed in
/// as it arrives; `what` ("input" or "output") names them in errors.
#[derive(Debug)]
struct TensorsDecoder {
    slots: Vec<Slot>,
    /// The slot the next binary bytes belong to.
    current: usize,
    /// Binary bytes past the last tensor's.
    unclaimed: usize,
    what: &'static str,
}

impl TensorsDecoder {
    /// `at_most`: how many bytes of binary data can follow the JSON (what each
    /// `binary_data_size` is checked against before its tensor is allocated).
    fn new(entries: Vec<WireTensor>, what: &'static str, mut at_most: usize) -> Result<Self, CodecError> {
        let mut slots = Vec::with_capacity(entries.len());
        for entry in entries {
            let name = entry.name;
            let (dtype, elements) = dtype_and_elements(what, &name, &entry.datatype, &entry.shape)?;
            let slot = match (entry.parameters.get("binary_data_size").and_then(Value::as_u64), &entry.data) {
                (Some(size), _) => {
                    let size = usize::try_from(size)
                        .ok()
                        .filter(|&s| s <= at_most)
                        .ok_or_else(|| err(format!("{what} '{name}': binary_data_size {size} runs past the body")))?;
                    at_most -= size;
                    let decoder = BinaryDecoder::new(&name, dtype, elements, size)?;
                    Slot::Binary { name, shape: entry.shape, decoder }
                }
                (None, Some(data)) => {
                    let data = json_to_data(&name, dtype, data)?;
                    Slot::Done(Tensor::new(name, entry.shape, data).map_err(|e| err(e.to_string()))?)
                }
                (None, None) => return Err(err(format!("{what} '{name}' has neither data nor binary_data_size"))),
            };
            slots.push(slot);
        }
        Ok(TensorsDecoder { slots, current: 0, unclaimed: 0, what })
    }

    /// The next bytes of binary data.
    fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            match self.slots.get_mut(self.current) {
                Some(Slot::Binary { decoder, .. }) if decoder.missing() > 0 => bytes = &bytes[decoder.push(bytes)..],
                Some(_) => self.current += 1,
                None => {
                    self.unclaimed += bytes.len();
                    return;
                }
            }
        }
    }

    /// The tensors, once the message has ended.
    fn finish(self) -> Result<Vec<Tensor>, CodecError> {
        let mut tensors = Vec::with_capacity(self.slots.len());
        for slot in self.slots {
            tensors.push(match slot {
                Slot::Done(tensor) => tensor,
                Slot::Binary { name, shape, decoder } => {
                    Tensor::new(name, shape, decoder.finish()?).map_err(|e| err(e.to_string()))?
                }
            });
        }
        if self.unclaimed > 0 {
            return Err(err(format!("{} bytes of binary data are not claimed by any {}", self.unclaimed, self.what)));
        }
        Ok(tensors)
    }
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

/// A request body decoded as it arrives: [`RequestDecoder::feed`] each chunk, then
/// [`RequestDecoder::finish`]. With the binary extension the JSON (the first `header_len`
/// bytes) is parsed as soon as it is in, and each binary tensor is then written into its own
/// buffer straight from the chunks: a large request is held once, not twice, and decoding
/// keeps pace with the transfer instead of following it.
#[derive(Debug)]
pub struct RequestDecoder {
    header_len: Option<usize>,
    /// The most the body can hold (its length when known, else the size limit).
    at_most: usize,
    json: Vec<u8>,
    /// Once the JSON is in: the request without its inputs, and the inputs.
    parsed: Option<(InferRequestBody, TensorsDecoder)>,
}

impl RequestDecoder {
    /// `header_len` is `Inference-Header-Content-Length` (binary extension): the JSON is the
    /// first `header_len` bytes and binary tensors follow; `at_most` bounds the body.
    pub fn new(header_len: Option<usize>, at_most: usize) -> Result<Self, CodecError> {
        if let Some(n) = header_len.filter(|&n| n > at_most) {
            return Err(err(format!(
                "Inference-Header-Content-Length is {n} but the body has at most {at_most} bytes"
            )));
        }
        // Room for the JSON, but not a size limit's worth for a body of unknown length.
        let json = Vec::with_capacity(header_len.unwrap_or(at_most).min(1 << 16));
        Ok(RequestDecoder { header_len, at_most, json, parsed: None })
    }

    /// The next chunk of the body.
    pub fn feed(&mut self, mut chunk: &[u8]) -> Result<(), CodecError> {
        if self.parsed.is_none() {
            let wanted = self.header_len.map_or(chunk.len(), |n| n - self.json.len());
            let take = wanted.min(chunk.len());
            self.json.extend_from_slice(&chunk[..take]);
            chunk = &chunk[take..];
            if self.header_len != Some(self.json.len()) {
                return Ok(());
            }
            self.parsed = Some(self.parse()?);
        }
        if let Some((_, inputs)) = &mut self.parsed {
            inputs.feed(chunk);
        }
        Ok(())
    }

    /// The JSON, once it is all in: the request without its inputs, and the inputs.
    fn parse(&self) -> Result<(InferRequestBody, TensorsDecoder), CodecError> {
        let mut req: InferRequestBody =
            serde_json::from_slice(&self.json).map_err(|e| err(format!("the request is not valid v2 JSON: {e}")))?;
        let binary = self.at_most.saturating_sub(self.json.len());
        let inputs = TensorsDecoder::new(std::mem::take(&mut req.inputs), "input", binary)?;
        Ok((req, inputs))
    }

    /// The request, once the body has ended.
    pub fn finish(self) -> Result<DecodedRequest, CodecError> {
        let (req, inputs) = match self.parsed {
            Some(parsed) => parsed,
            None => match self.header_len {
                Some(n) if n > self.json.len() => {
                    let has = self.json.len();
                    return Err(err(format!("Inference-Header-Content-Length is {n} but the body has {has} bytes")));
                }
                _ => self.parse()?,
            },
        };
        Ok(DecodedRequest {
            id: req.id,
            inputs: inputs.finish()?,
            outputs: req.outputs.iter().map(|o| o.name.clone()).collect(),
            binary_outputs: req
                .outputs
                .iter()
                .filter(|o| flag(&o.parameters, "binary_data"))
                .map(|o| o.name.clone())
                .collect(),
            all_binary: flag(&req.parameters, "binary_data_output"),
        })
    }
}

/// Hands `buf`'s chunks to `feed` in order: a body as it arrived, never joined.
fn each_chunk(mut buf: impl Buf, mut feed: impl FnMut(&[u8]) -> Result<(), CodecError>) -> Result<(), CodecError> {
    while buf.has_remaining() {
        let chunk = buf.chunk();
        let len = chunk.len();
        feed(chunk)?;
        buf.advance(len);
    }
    Ok(())
}

/// Decodes a whole request body (any `Buf`: the chunks a request arrived in are read without
/// being joined first); see [`RequestDecoder`].
pub fn decode_request(body: impl Buf, header_len: Option<usize>) -> Result<DecodedRequest, CodecError> {
    let mut decoder = RequestDecoder::new(header_len, body.remaining())?;
    each_chunk(body, |chunk| decoder.feed(chunk))?;
    decoder.finish()
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
    let mut outputs = TensorsDecoder::new(response.outputs, "output", body.remaining())?;
    each_chunk(body, |chunk| {
        outputs.feed(chunk);
        Ok(())
    })?;
    outputs.finish()
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

    /// Fed to the streaming decoder in pieces of any size (as a body arrives), a request
    /// decodes to what the whole body decodes to.
    #[test]
    fn a_request_fed_in_pieces_decodes_as_a_whole() {
        let header = json!({
            "id": "9",
            "inputs": [
                { "name": "x", "shape": [3], "datatype": "FP64", "parameters": { "binary_data_size": 24 } },
                { "name": "j", "shape": [2], "datatype": "INT16", "data": [1, -1] },
                { "name": "s", "shape": [2], "datatype": "BYTES", "parameters": { "binary_data_size": 11 } },
                { "name": "b", "shape": [2], "datatype": "BOOL", "parameters": { "binary_data_size": 2 } },
            ],
            "outputs": [{ "name": "y", "parameters": { "binary_data": true } }],
        })
        .to_string();
        let mut body = header.clone().into_bytes();
        [0.5f64, -1e10, 3.0].iter().for_each(|f| body.extend_from_slice(&f.to_le_bytes()));
        body.extend_from_slice(&2u32.to_le_bytes());
        body.extend_from_slice(b"ab");
        body.extend_from_slice(&1u32.to_le_bytes());
        body.extend_from_slice(b"c");
        body.extend_from_slice(&[1, 0]);
        let whole = decode_request(&body[..], Some(header.len())).unwrap();
        assert_eq!(whole.inputs[2].data, TensorData::Bytes(vec![b"ab".to_vec(), b"c".to_vec()]));
        for piece in 1..=body.len() {
            let mut decoder = RequestDecoder::new(Some(header.len()), body.len()).unwrap();
            body.chunks(piece).for_each(|c| decoder.feed(c).unwrap());
            let req = decoder.finish().unwrap();
            assert_eq!(
                (&req.id, &req.inputs, &req.binary_outputs),
                (&whole.id, &whole.inputs, &whole.binary_outputs),
                "pieces of {piece}"
            );
        }
        let mut json_only = RequestDecoder::new(None, 1 << 20).unwrap();
        let plain = json!({ "inputs": [{ "name": "j", "shape": [1], "datatype": "INT8", "data": [7] }] }).to_string();
        plain.as_bytes().chunks(5).for_each(|c| json_only.feed(c).unwrap());
        assert_eq!(json_only.finish().unwrap().inputs[0].data, TensorData::Int8(vec![7]));
    }

    /// A `binary_data_size` the body cannot hold is refused as soon as the JSON is in, before
    /// anything is allocated for it; bytes past the last tensor are refused at the end.
    #[test]
    fn binary_sizes_are_checked_against_the_body() {
        let huge = 1u64 << 40;
        let header = json!({ "inputs": [
            { "name": "x", "shape": [huge / 4], "datatype": "FP32", "parameters": { "binary_data_size": huge } },
        ] })
        .to_string();
        let mut decoder = RequestDecoder::new(Some(header.len()), header.len() + 64).unwrap();
        let e = decoder.feed(header.as_bytes()).unwrap_err();
        assert!(e.0.contains("runs past the body"), "{e}");

        let header = json!({ "inputs": [
            { "name": "x", "shape": [1], "datatype": "INT32", "parameters": { "binary_data_size": 4 } },
        ] })
        .to_string();
        let mut body = header.clone().into_bytes();
        body.extend_from_slice(&[1, 0, 0, 0, 9, 9]);
        let e = decode_request(&body[..], Some(header.len())).unwrap_err();
        assert!(e.0.contains("2 bytes of binary data are not claimed"), "{e}");
        let e = RequestDecoder::new(Some(100), 99).unwrap_err();
        assert!(e.0.contains("Inference-Header-Content-Length is 100"), "{e}");
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
