//! Tensors in the KServe v2 / Triton data types.

use serde::{Deserialize, Serialize};

use crate::RuntimeError;

/// The v2 data types (`BOOL`, `UINT8`, … `FP64`, `BYTES`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DataType {
    #[serde(rename = "BOOL")]
    Bool,
    #[serde(rename = "UINT8")]
    Uint8,
    #[serde(rename = "UINT16")]
    Uint16,
    #[serde(rename = "UINT32")]
    Uint32,
    #[serde(rename = "UINT64")]
    Uint64,
    #[serde(rename = "INT8")]
    Int8,
    #[serde(rename = "INT16")]
    Int16,
    #[serde(rename = "INT32")]
    Int32,
    #[serde(rename = "INT64")]
    Int64,
    #[serde(rename = "FP16")]
    Fp16,
    #[serde(rename = "FP32")]
    Fp32,
    #[serde(rename = "FP64")]
    Fp64,
    #[serde(rename = "BYTES")]
    Bytes,
}

impl DataType {
    pub const ALL: [DataType; 13] = [
        DataType::Bool,
        DataType::Uint8,
        DataType::Uint16,
        DataType::Uint32,
        DataType::Uint64,
        DataType::Int8,
        DataType::Int16,
        DataType::Int32,
        DataType::Int64,
        DataType::Fp16,
        DataType::Fp32,
        DataType::Fp64,
        DataType::Bytes,
    ];

    /// The v2 name, e.g. `FP32`.
    pub fn as_str(self) -> &'static str {
        match self {
            DataType::Bool => "BOOL",
            DataType::Uint8 => "UINT8",
            DataType::Uint16 => "UINT16",
            DataType::Uint32 => "UINT32",
            DataType::Uint64 => "UINT64",
            DataType::Int8 => "INT8",
            DataType::Int16 => "INT16",
            DataType::Int32 => "INT32",
            DataType::Int64 => "INT64",
            DataType::Fp16 => "FP16",
            DataType::Fp32 => "FP32",
            DataType::Fp64 => "FP64",
            DataType::Bytes => "BYTES",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.as_str() == s)
    }

    /// Bytes per element; `None` for `BYTES` (variable length).
    pub fn size(self) -> Option<usize> {
        Some(match self {
            DataType::Bool | DataType::Uint8 | DataType::Int8 => 1,
            DataType::Uint16 | DataType::Int16 | DataType::Fp16 => 2,
            DataType::Uint32 | DataType::Int32 | DataType::Fp32 => 4,
            DataType::Uint64 | DataType::Int64 | DataType::Fp64 => 8,
            DataType::Bytes => return None,
        })
    }
}

impl std::fmt::Display for DataType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A tensor's elements, flat, row-major.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    Bool(Vec<bool>),
    Uint8(Vec<u8>),
    Uint16(Vec<u16>),
    Uint32(Vec<u32>),
    Uint64(Vec<u64>),
    Int8(Vec<i8>),
    Int16(Vec<i16>),
    Int32(Vec<i32>),
    Int64(Vec<i64>),
    Fp16(Vec<half::f16>),
    Fp32(Vec<f32>),
    Fp64(Vec<f64>),
    /// Each element is an arbitrary byte string.
    Bytes(Vec<Vec<u8>>),
}

macro_rules! for_each_variant {
    ($data:expr, $v:ident => $body:expr) => {
        match $data {
            TensorData::Bool($v) => $body,
            TensorData::Uint8($v) => $body,
            TensorData::Uint16($v) => $body,
            TensorData::Uint32($v) => $body,
            TensorData::Uint64($v) => $body,
            TensorData::Int8($v) => $body,
            TensorData::Int16($v) => $body,
            TensorData::Int32($v) => $body,
            TensorData::Int64($v) => $body,
            TensorData::Fp16($v) => $body,
            TensorData::Fp32($v) => $body,
            TensorData::Fp64($v) => $body,
            TensorData::Bytes($v) => $body,
        }
    };
}

impl TensorData {
    /// Empty data of `dtype` with room for `elements` (how a decoder fills a tensor in place).
    pub fn with_capacity(dtype: DataType, elements: usize) -> TensorData {
        macro_rules! empty {
            ($($variant:ident),*) => {
                match dtype { $(DataType::$variant => TensorData::$variant(Vec::with_capacity(elements)),)* }
            };
        }
        empty!(Bool, Uint8, Uint16, Uint32, Uint64, Int8, Int16, Int32, Int64, Fp16, Fp32, Fp64, Bytes)
    }

    pub fn dtype(&self) -> DataType {
        match self {
            TensorData::Bool(_) => DataType::Bool,
            TensorData::Uint8(_) => DataType::Uint8,
            TensorData::Uint16(_) => DataType::Uint16,
            TensorData::Uint32(_) => DataType::Uint32,
            TensorData::Uint64(_) => DataType::Uint64,
            TensorData::Int8(_) => DataType::Int8,
            TensorData::Int16(_) => DataType::Int16,
            TensorData::Int32(_) => DataType::Int32,
            TensorData::Int64(_) => DataType::Int64,
            TensorData::Fp16(_) => DataType::Fp16,
            TensorData::Fp32(_) => DataType::Fp32,
            TensorData::Fp64(_) => DataType::Fp64,
            TensorData::Bytes(_) => DataType::Bytes,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        for_each_variant!(self, v => v.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends `other` (same dtype) — how a batch is assembled.
    pub fn extend(&mut self, other: TensorData) -> Result<(), RuntimeError> {
        macro_rules! cat {
            ($($variant:ident),*) => {
                match (self, other) {
                    $((TensorData::$variant(a), TensorData::$variant(b)) => { a.extend(b); Ok(()) })*
                    (a, b) => Err(RuntimeError::InvalidInput(format!("cannot batch {} with {}", a.dtype(), b.dtype()))),
                }
            };
        }
        cat!(Bool, Uint8, Uint16, Uint32, Uint64, Int8, Int16, Int32, Int64, Fp16, Fp32, Fp64, Bytes)
    }

    /// Elements `range` as a new tensor data (how a batch is split back).
    pub fn slice(&self, range: std::ops::Range<usize>) -> TensorData {
        macro_rules! cut {
            ($($variant:ident),*) => {
                match self { $(TensorData::$variant(v) => TensorData::$variant(v[range].to_vec()),)* }
            };
        }
        cut!(Bool, Uint8, Uint16, Uint32, Uint64, Int8, Int16, Int32, Int64, Fp16, Fp32, Fp64, Bytes)
    }
}

/// A named tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub name: String,
    pub shape: Vec<i64>,
    pub data: TensorData,
}

impl Tensor {
    /// Builds a tensor, checking that the shape's element count matches the data.
    pub fn new(name: impl Into<String>, shape: Vec<i64>, data: TensorData) -> Result<Self, RuntimeError> {
        let name = name.into();
        let expected = element_count(&shape)
            .ok_or_else(|| RuntimeError::InvalidInput(format!("input '{name}': invalid shape {shape:?}")))?;
        if expected != data.len() {
            return Err(RuntimeError::InvalidInput(format!(
                "input '{name}': shape {shape:?} needs {expected} elements, got {}",
                data.len()
            )));
        }
        Ok(Self { name, shape, data })
    }

    pub fn dtype(&self) -> DataType {
        self.data.dtype()
    }
}

/// The number of elements of a shape; `None` for negative dims or overflow.
pub fn element_count(shape: &[i64]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| usize::try_from(d).ok().and_then(|d| acc.checked_mul(d)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sizes_and_shapes() {
        for d in DataType::ALL {
            assert_eq!(DataType::parse(d.as_str()), Some(d));
        }
        assert_eq!(DataType::Fp16.size(), Some(2));
        assert_eq!(DataType::Bytes.size(), None);
        assert!(Tensor::new("x", vec![2, 3], TensorData::Fp32(vec![0.0; 6])).is_ok());
        assert!(Tensor::new("x", vec![2, 3], TensorData::Fp32(vec![0.0; 5])).is_err());
        assert!(Tensor::new("x", vec![-1], TensorData::Fp32(vec![])).is_err());
        assert_eq!(element_count(&[]), Some(1), "a scalar has one element");
    }

    #[test]
    fn batching_concatenates_and_slices() {
        let mut a = TensorData::Int32(vec![1, 2]);
        a.extend(TensorData::Int32(vec![3])).unwrap();
        assert_eq!(a, TensorData::Int32(vec![1, 2, 3]));
        assert_eq!(a.slice(1..3), TensorData::Int32(vec![2, 3]));
        assert!(a.extend(TensorData::Fp32(vec![1.0])).is_err());
    }
}
