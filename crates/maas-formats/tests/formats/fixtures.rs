//! Model files built in memory: a small ONNX model, safetensors file and GGUF file, plus a
//! virtual file that is mostly zeros and counts the bytes actually read.

use std::io::{self, Read, Seek, SeekFrom};

use maas_formats::onnx::proto::{
    Dimension, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, OtherTypeProto, SparseTensorProto, TensorProto,
    TensorShapeProto, TensorTypeProto, TypeProto, ValueInfoProto, dimension, type_proto,
};
use prost::Message;
use serde_json::json;

// ONNX element types.
pub const FLOAT: i32 = 1;
pub const INT64: i32 = 7;
pub const STRING: i32 = 8;
pub const BOOL: i32 = 9;
pub const FLOAT16: i32 = 10;

pub fn dim(v: i64) -> Dimension {
    Dimension { value: Some(dimension::Value::DimValue(v)), denotation: String::new() }
}

pub fn param(name: &str) -> Dimension {
    Dimension { value: Some(dimension::Value::DimParam(name.into())), denotation: String::new() }
}

/// A dimension with neither a value nor a name.
pub fn unknown() -> Dimension {
    Dimension { value: None, denotation: String::new() }
}

/// A tensor input or output; `dims: None` leaves the shape out (rank unknown).
pub fn tensor(name: &str, elem_type: i32, dims: Option<Vec<Dimension>>) -> ValueInfoProto {
    let shape = dims.map(|dim| TensorShapeProto { dim });
    typed(name, Some(type_proto::Value::TensorType(TensorTypeProto { elem_type, shape })))
}

pub fn typed(name: &str, value: Option<type_proto::Value>) -> ValueInfoProto {
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto { value, denotation: String::new() }),
        doc_string: String::new(),
    }
}

pub fn initializer(name: &str, dims: Vec<i64>, raw_len: usize) -> TensorProto {
    TensorProto { dims, data_type: FLOAT, name: name.into(), raw_data: vec![0x3f; raw_len], ..Default::default() }
}

/// A model in the style of an old exporter: the weights are listed among the inputs too.
pub fn onnx_model() -> ModelProto {
    let graph = GraphProto {
        name: "tiny".into(),
        node: vec![
            NodeProto {
                input: vec!["images".into(), "weight".into(), "bias".into()],
                output: vec!["logits".into()],
                name: "gemm".into(),
                op_type: "Gemm".into(),
            },
            NodeProto {
                input: vec!["logits".into()],
                output: vec!["labels".into()],
                name: "labels".into(),
                op_type: "LabelEncoder".into(),
            },
        ],
        initializer: vec![initializer("weight", vec![4, 3], 48), initializer("bias", vec![3], 64 * 1024)],
        input: vec![
            tensor("images", FLOAT, Some(vec![param("batch"), dim(3), param("height"), unknown()])),
            tensor("weight", FLOAT, Some(vec![dim(4), dim(3)])),
            tensor("mask", BOOL, Some(vec![param("batch"), dim(16)])),
            tensor("ids", INT64, Some(vec![dim(-1)])),
            tensor("scale", FLOAT16, Some(vec![])),
            tensor("bias", FLOAT, Some(vec![dim(3)])),
            tensor("sparse_w", FLOAT, None),
        ],
        output: vec![
            tensor("logits", FLOAT, Some(vec![param("batch"), dim(3)])),
            tensor("labels", STRING, None),
            typed("history", Some(type_proto::Value::SequenceType(OtherTypeProto {}))),
        ],
        value_info: vec![tensor("hidden", FLOAT, Some(vec![dim(7)]))],
        sparse_initializer: vec![SparseTensorProto {
            values: Some(initializer("sparse_w", vec![2], 8)),
            indices: Some(TensorProto { dims: vec![2], data_type: INT64, ..Default::default() }),
            dims: vec![10],
        }],
    };
    ModelProto {
        ir_version: 8,
        producer_name: "maas-test".into(),
        producer_version: "1.0".into(),
        graph: Some(graph),
        opset_import: vec![
            OperatorSetIdProto { domain: String::new(), version: 13 },
            OperatorSetIdProto { domain: "ai.onnx.ml".into(), version: 3 },
        ],
    }
}

pub fn onnx_bytes() -> Vec<u8> {
    onnx_model().encode_to_vec()
}

/// A safetensors file: the header (padded with spaces to a multiple of 8, as writers do),
/// then `data_len` zero bytes.
pub fn safetensors_bytes(header: &serde_json::Value, data_len: usize) -> Vec<u8> {
    let mut json = serde_json::to_vec(header).unwrap();
    while !json.len().is_multiple_of(8) {
        json.push(b' ');
    }
    let mut out = (json.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&json);
    out.resize(out.len() + data_len, 0);
    out
}

pub fn safetensors_header() -> serde_json::Value {
    json!({
        "__metadata__": {"format": "pt"},
        "embed.weight": {"dtype": "F32", "shape": [10, 4], "data_offsets": [0, 160]},
        "ln.bias": {"dtype": "BF16", "shape": [4], "data_offsets": [160, 168]},
        "mask": {"dtype": "BOOL", "shape": [2, 3], "data_offsets": [168, 174]},
        "empty": {"dtype": "F16", "shape": [0, 5], "data_offsets": [174, 174]},
        "fp8": {"dtype": "F8_E4M3", "shape": [2], "data_offsets": [174, 176]},
        "ids": {"dtype": "I64", "shape": [2], "data_offsets": [176, 192]},
    })
}

pub fn safetensors_fixture() -> Vec<u8> {
    safetensors_bytes(&safetensors_header(), 192)
}

pub enum GgufValue {
    U32(u32),
    I8(i8),
    F32(f32),
    F64(f64),
    Bool(bool),
    Str(String),
    Strings(Vec<String>),
    F32s(Vec<f32>),
    I32s(Vec<i32>),
    /// An array of arrays of u8.
    Nested(Vec<Vec<u8>>),
    /// A raw value type and payload, for malformed files.
    Raw(u32, Vec<u8>),
}

pub struct GgufTensor {
    pub name: String,
    pub dims: Vec<u64>,
    pub ty: u32,
    pub bytes: u64,
    /// Where the data goes; by default right after the previous tensor, aligned.
    pub offset: Option<u64>,
}

pub struct Gguf {
    pub version: u32,
    pub alignment: u64,
    pub kvs: Vec<(String, GgufValue)>,
    pub tensors: Vec<GgufTensor>,
}

fn string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

impl Gguf {
    /// Header, metadata, tensor infos, padding to the alignment, then zeroed tensor data that
    /// ends exactly at the end of the last tensor.
    pub fn to_bytes(&self) -> Vec<u8> {
        let (mut out, data_len) = self.header_and_data_len();
        out.resize(out.len() + data_len as usize, 0);
        out
    }

    /// Everything before the tensor data (padding included), and the data's length.
    pub fn header_and_data_len(&self) -> (Vec<u8>, u64) {
        let mut out = b"GGUF".to_vec();
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&(self.kvs.len() as u64).to_le_bytes());
        for (key, value) in &self.kvs {
            string(&mut out, key);
            let (ty, payload) = encode(value);
            out.extend_from_slice(&ty.to_le_bytes());
            out.extend_from_slice(&payload);
        }
        let mut next = 0;
        let mut data_end = 0;
        for t in &self.tensors {
            string(&mut out, &t.name);
            out.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                out.extend_from_slice(&d.to_le_bytes());
            }
            out.extend_from_slice(&t.ty.to_le_bytes());
            let offset = t.offset.unwrap_or(next);
            out.extend_from_slice(&offset.to_le_bytes());
            next = (offset + t.bytes).div_ceil(self.alignment) * self.alignment;
            data_end = data_end.max(offset + t.bytes);
        }
        let data_start = (out.len() as u64).div_ceil(self.alignment) * self.alignment;
        out.resize(data_start as usize, 0);
        (out, data_end)
    }
}

fn encode(value: &GgufValue) -> (u32, Vec<u8>) {
    let mut p = Vec::new();
    let ty = match value {
        GgufValue::U32(v) => {
            p.extend_from_slice(&v.to_le_bytes());
            4
        }
        GgufValue::I8(v) => {
            p.extend_from_slice(&v.to_le_bytes());
            1
        }
        GgufValue::F32(v) => {
            p.extend_from_slice(&v.to_le_bytes());
            6
        }
        GgufValue::F64(v) => {
            p.extend_from_slice(&v.to_le_bytes());
            12
        }
        GgufValue::Bool(v) => {
            p.push(u8::from(*v));
            7
        }
        GgufValue::Str(s) => {
            string(&mut p, s);
            8
        }
        GgufValue::Strings(items) => {
            p.extend_from_slice(&8u32.to_le_bytes());
            p.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for s in items {
                string(&mut p, s);
            }
            9
        }
        GgufValue::F32s(items) => {
            p.extend_from_slice(&6u32.to_le_bytes());
            p.extend_from_slice(&(items.len() as u64).to_le_bytes());
            items.iter().for_each(|v| p.extend_from_slice(&v.to_le_bytes()));
            9
        }
        GgufValue::I32s(items) => {
            p.extend_from_slice(&5u32.to_le_bytes());
            p.extend_from_slice(&(items.len() as u64).to_le_bytes());
            items.iter().for_each(|v| p.extend_from_slice(&v.to_le_bytes()));
            9
        }
        GgufValue::Nested(arrays) => {
            p.extend_from_slice(&9u32.to_le_bytes());
            p.extend_from_slice(&(arrays.len() as u64).to_le_bytes());
            for a in arrays {
                p.extend_from_slice(&0u32.to_le_bytes());
                p.extend_from_slice(&(a.len() as u64).to_le_bytes());
                p.extend_from_slice(a);
            }
            9
        }
        GgufValue::Raw(ty, payload) => {
            p.extend_from_slice(payload);
            *ty
        }
    };
    (ty, p)
}

pub const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + \
    message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}\
    {{ '<|im_start|>assistant\\n' }}{% endif %}";

pub fn gguf_fixture() -> Gguf {
    let kv = |k: &str, v| (k.to_owned(), v);
    let tokens: Vec<String> = (0..100).map(|i| format!("tok{i}")).collect();
    let merges: Vec<String> = (0..50).map(|i| format!("t o{i}")).collect();
    Gguf {
        version: 3,
        alignment: 32,
        kvs: vec![
            kv("general.architecture", GgufValue::Str("llama".into())),
            kv("general.name", GgufValue::Str("tiny-llama".into())),
            kv("general.file_type", GgufValue::U32(3)),
            kv("general.quantization_version", GgufValue::U32(2)),
            kv("general.alignment", GgufValue::U32(32)),
            kv("llama.context_length", GgufValue::U32(2048)),
            kv("llama.embedding_length", GgufValue::U32(16)),
            kv("llama.block_count", GgufValue::U32(1)),
            kv("llama.rope.freq_base", GgufValue::F32(10000.0)),
            kv("mistral.context_length", GgufValue::U32(99)),
            kv("test.bool", GgufValue::Bool(true)),
            kv("test.i8", GgufValue::I8(-3)),
            kv("test.f64", GgufValue::F64(0.5)),
            kv("test.nested", GgufValue::Nested(vec![vec![1, 2, 3], vec![], vec![4]])),
            kv("tokenizer.ggml.model", GgufValue::Str("gpt2".into())),
            kv("tokenizer.ggml.tokens", GgufValue::Strings(tokens)),
            kv("tokenizer.ggml.scores", GgufValue::F32s(vec![0.0; 100])),
            kv("tokenizer.ggml.token_type", GgufValue::I32s(vec![1; 100])),
            kv("tokenizer.ggml.merges", GgufValue::Strings(merges)),
            kv("tokenizer.ggml.bos_token_id", GgufValue::U32(1)),
            kv("tokenizer.ggml.eos_token_id", GgufValue::U32(2)),
            kv("tokenizer.chat_template", GgufValue::Str(CHATML.into())),
        ],
        tensors: vec![
            // 16 × 100 F32.
            GgufTensor { name: "token_embd.weight".into(), dims: vec![16, 100], ty: 0, bytes: 6400, offset: None },
            // 32 × 16 Q4_0: 16 blocks of 18 bytes.
            GgufTensor { name: "blk.0.attn_q.weight".into(), dims: vec![32, 16], ty: 2, bytes: 288, offset: None },
            // 256 × 2 Q6_K: 2 blocks of 210 bytes.
            GgufTensor { name: "blk.0.ffn_up.weight".into(), dims: vec![256, 2], ty: 14, bytes: 420, offset: None },
            GgufTensor { name: "output_norm.weight".into(), dims: vec![16], ty: 0, bytes: 64, offset: None },
        ],
    }
}

/// A file of `head`, then `zeros` zero bytes, then `tail`, that counts how much is read.
#[derive(Debug)]
pub struct VirtualFile {
    head: Vec<u8>,
    zeros: u64,
    tail: Vec<u8>,
    pos: u64,
    pub bytes_read: u64,
}

impl VirtualFile {
    pub fn new(head: Vec<u8>, zeros: u64, tail: Vec<u8>) -> Self {
        Self { head, zeros, tail, pos: 0, bytes_read: 0 }
    }

    fn len(&self) -> u64 {
        self.head.len() as u64 + self.zeros + self.tail.len() as u64
    }
}

impl Read for VirtualFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let head = self.head.len() as u64;
        let n = if self.pos < head {
            let from = &self.head[self.pos as usize..];
            let n = from.len().min(buf.len());
            buf[..n].copy_from_slice(&from[..n]);
            n
        } else if self.pos < head + self.zeros {
            let n = (head + self.zeros - self.pos).min(buf.len() as u64) as usize;
            buf[..n].fill(0);
            n
        } else if self.pos < self.len() {
            let from = &self.tail[(self.pos - head - self.zeros) as usize..];
            let n = from.len().min(buf.len());
            buf[..n].copy_from_slice(&from[..n]);
            n
        } else {
            0
        };
        self.pos += n as u64;
        self.bytes_read += n as u64;
        Ok(n)
    }
}

impl Seek for VirtualFile {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(p) => p as i128,
            SeekFrom::End(d) => self.len() as i128 + d as i128,
            SeekFrom::Current(d) => self.pos as i128 + d as i128,
        };
        self.pos = u64::try_from(target).map_err(|_| io::Error::other("seek before start"))?;
        Ok(self.pos)
    }
}

/// Deterministic pseudo-random bytes (xorshift).
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}
