//! gRPC tensors to ours and back. Inputs come as `raw_input_contents` (one entry per input,
//! little-endian; BYTES elements with a 4-byte length prefix, decoded by
//! [`codec::binary_to_data`]) or as typed `InferTensorContents` (FP16 only raw, as the
//! protocol says); outputs always go out as `raw_output_contents`, which Triton's client reads.

use bytes::Bytes;
use maas_runtime::{DataType, Tensor, TensorData};

use super::proto::model_infer_request::InferInputTensor;
use super::proto::model_infer_response::InferOutputTensor;
use super::proto::{InferTensorContents, ModelInferResponse};
use crate::v2::codec::{self, CodecError};

fn err(msg: impl Into<String>) -> CodecError {
    CodecError(msg.into())
}

/// `values` narrowed to `T`, each checked to fit.
fn narrow<S: Copy + std::fmt::Display, T: TryFrom<S>>(
    name: &str,
    dtype: DataType,
    values: Vec<S>,
) -> Result<Vec<T>, CodecError> {
    values
        .into_iter()
        .map(|v| T::try_from(v).map_err(|_| err(format!("input '{name}': {v} is not a valid {dtype}"))))
        .collect()
}

/// The typed contents of `dtype`, and the field they are read from (for messages).
fn typed(name: &str, dtype: DataType, c: InferTensorContents) -> Result<(TensorData, &'static str), CodecError> {
    Ok(match dtype {
        DataType::Bool => (TensorData::Bool(c.bool_contents), "bool_contents"),
        DataType::Int8 => (TensorData::Int8(narrow(name, dtype, c.int_contents)?), "int_contents"),
        DataType::Int16 => (TensorData::Int16(narrow(name, dtype, c.int_contents)?), "int_contents"),
        DataType::Int32 => (TensorData::Int32(c.int_contents), "int_contents"),
        DataType::Int64 => (TensorData::Int64(c.int64_contents), "int64_contents"),
        DataType::Uint8 => (TensorData::Uint8(narrow(name, dtype, c.uint_contents)?), "uint_contents"),
        DataType::Uint16 => (TensorData::Uint16(narrow(name, dtype, c.uint_contents)?), "uint_contents"),
        DataType::Uint32 => (TensorData::Uint32(c.uint_contents), "uint_contents"),
        DataType::Uint64 => (TensorData::Uint64(c.uint64_contents), "uint64_contents"),
        DataType::Fp32 => (TensorData::Fp32(c.fp32_contents), "fp32_contents"),
        DataType::Fp64 => (TensorData::Fp64(c.fp64_contents), "fp64_contents"),
        DataType::Bytes => (TensorData::Bytes(c.bytes_contents), "bytes_contents"),
        DataType::Fp16 => {
            return Err(err(format!("input '{name}': FP16 data must be sent in raw_input_contents")));
        }
    })
}

/// The request's input tensors, from `raw` (when given: one entry per input, in order) or
/// from each input's typed `contents`.
pub fn decode_inputs(inputs: Vec<InferInputTensor>, raw: Vec<Bytes>) -> Result<Vec<Tensor>, CodecError> {
    if !raw.is_empty() && raw.len() != inputs.len() {
        return Err(err(format!("{} raw_input_contents for {} inputs", raw.len(), inputs.len())));
    }
    let mut raw = raw.into_iter();
    let mut tensors = Vec::with_capacity(inputs.len());
    for input in inputs {
        let name = input.name;
        let (dtype, elements) = codec::dtype_and_elements("input", &name, &input.datatype, &input.shape)?;
        let (data, field) = match (raw.next(), input.contents) {
            (Some(_), Some(_)) => {
                return Err(err(format!("input '{name}': contents must not be set with raw_input_contents")));
            }
            (Some(bytes), None) => (codec::binary_to_data(&name, dtype, &bytes[..], elements)?, "raw_input_contents"),
            (None, Some(contents)) => typed(&name, dtype, contents)?,
            (None, None) => return Err(err(format!("input '{name}' has neither contents nor raw_input_contents"))),
        };
        if data.len() != elements {
            return Err(err(format!(
                "input '{name}': shape {:?} needs {elements} {dtype} elements, {field} has {}",
                input.shape,
                data.len()
            )));
        }
        tensors.push(Tensor::new(name, input.shape, data).map_err(|e| err(e.to_string()))?);
    }
    Ok(tensors)
}

/// The response's output tensors and their raw contents, in the same order.
pub fn encode_outputs(outputs: Vec<Tensor>, response: &mut ModelInferResponse) {
    for t in outputs {
        response.raw_output_contents.push(Bytes::from(codec::data_to_binary(&t.data)));
        response.outputs.push(InferOutputTensor {
            name: t.name,
            datatype: t.data.dtype().as_str().to_owned(),
            shape: t.shape,
            parameters: Default::default(),
            contents: None,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(name: &str, dtype: &str, shape: Vec<i64>, contents: Option<InferTensorContents>) -> InferInputTensor {
        InferInputTensor { name: name.into(), datatype: dtype.into(), shape, parameters: Default::default(), contents }
    }

    #[test]
    fn raw_inputs_are_little_endian_and_bytes_are_length_prefixed() {
        let mut a = Vec::new();
        for v in [1i32, -2] {
            a.extend_from_slice(&v.to_le_bytes());
        }
        let mut s = 3u32.to_le_bytes().to_vec();
        s.extend_from_slice(b"xyz");
        let inputs = vec![input("a", "INT32", vec![1, 2], None), input("s", "BYTES", vec![1], None)];
        let (a, s) = (Bytes::from(a), Bytes::from(s));
        let tensors = decode_inputs(inputs, vec![a.clone(), s.clone()]).unwrap();
        assert_eq!(tensors[0].data, TensorData::Int32(vec![1, -2]));
        assert_eq!(tensors[1].data, TensorData::Bytes(vec![b"xyz".to_vec()]));

        let mut response = ModelInferResponse::default();
        encode_outputs(tensors, &mut response);
        assert_eq!(response.raw_output_contents, [a, s]);
        assert_eq!(response.outputs[1].datatype, "BYTES");
        assert_eq!(response.outputs[0].shape, [1, 2]);
    }

    #[test]
    fn typed_contents_of_every_field() {
        let c = |f: fn(&mut InferTensorContents)| {
            let mut c = InferTensorContents::default();
            f(&mut c);
            Some(c)
        };
        let cases = [
            ("BOOL", c(|c| c.bool_contents = vec![true, false]), TensorData::Bool(vec![true, false])),
            ("INT8", c(|c| c.int_contents = vec![-128, 127]), TensorData::Int8(vec![-128, 127])),
            ("INT16", c(|c| c.int_contents = vec![-5, 5]), TensorData::Int16(vec![-5, 5])),
            ("INT32", c(|c| c.int_contents = vec![-1, 2]), TensorData::Int32(vec![-1, 2])),
            ("INT64", c(|c| c.int64_contents = vec![-9, 9]), TensorData::Int64(vec![-9, 9])),
            ("UINT8", c(|c| c.uint_contents = vec![0, 255]), TensorData::Uint8(vec![0, 255])),
            ("UINT16", c(|c| c.uint_contents = vec![0, 65535]), TensorData::Uint16(vec![0, 65535])),
            ("UINT32", c(|c| c.uint_contents = vec![7, 8]), TensorData::Uint32(vec![7, 8])),
            ("UINT64", c(|c| c.uint64_contents = vec![1, u64::MAX]), TensorData::Uint64(vec![1, u64::MAX])),
            ("FP32", c(|c| c.fp32_contents = vec![1.5, 2.25]), TensorData::Fp32(vec![1.5, 2.25])),
            ("FP64", c(|c| c.fp64_contents = vec![1e-300, 3.0]), TensorData::Fp64(vec![1e-300, 3.0])),
            (
                "BYTES",
                c(|c| c.bytes_contents = vec![b"a".to_vec(), vec![]]),
                TensorData::Bytes(vec![b"a".to_vec(), vec![]]),
            ),
        ];
        for (dtype, contents, want) in cases {
            let got = decode_inputs(vec![input("x", dtype, vec![2], contents)], vec![]).unwrap();
            assert_eq!(got[0].data, want, "{dtype}");
        }
    }

    #[test]
    fn malformed_inputs_are_errors() {
        let ints = |v: Vec<i32>| Some(InferTensorContents { int_contents: v, ..Default::default() });
        let floats = Some(InferTensorContents { fp32_contents: vec![1.0, 2.0], ..Default::default() });
        type Case = (Vec<InferInputTensor>, Vec<Bytes>, &'static str);
        let bad: Vec<Case> = vec![
            (vec![input("x", "INT8", vec![1], ints(vec![300]))], vec![], "not a valid INT8"),
            (vec![input("x", "INT32", vec![2], floats.clone())], vec![], "int_contents has 0"),
            (vec![input("x", "INT32", vec![3], ints(vec![1, 2]))], vec![], "needs 3"),
            (vec![input("x", "FP16", vec![1], floats)], vec![], "raw_input_contents"),
            (vec![input("x", "FP33", vec![1], ints(vec![1]))], vec![], "unknown datatype"),
            (vec![input("x", "INT32", vec![1], None)], vec![], "neither"),
            (vec![input("x", "INT32", vec![1], None)], vec![Bytes::from(vec![0; 3])], "binary data"),
            (vec![input("x", "INT32", vec![1], ints(vec![1]))], vec![Bytes::from(vec![0; 4])], "must not be set"),
            (
                vec![input("x", "INT32", vec![1], None), input("y", "INT32", vec![1], None)],
                vec![Bytes::from(vec![0; 4])],
                "2 inputs",
            ),
            (vec![input("x", "INT32", vec![-1], ints(vec![1]))], vec![], "invalid shape"),
        ];
        for (inputs, raw, want) in bad {
            let e = decode_inputs(inputs, raw).unwrap_err();
            assert!(e.0.contains(want), "{e} should mention {want}");
        }
    }
}
