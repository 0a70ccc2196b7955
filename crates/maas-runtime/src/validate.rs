//! Checking a request against a model's signature before it is queued or run.
//!
//! The gateway calls [`validate`] (and [`validate_outputs`]) before enqueueing, so that a bad
//! request is answered 400 at once; backends call them again before running, so that nothing
//! malformed ever reaches a runtime.

use std::collections::HashSet;

use crate::tensor::element_count;
use crate::{IoSpec, RuntimeError, Tensor};

/// Checks `inputs` against the model's input `spec`: every name is known and given once, every
/// input of the model is present, and each tensor has the declared dtype, rank and fixed
/// dimensions (`-1` in the spec accepts any size), with as many elements as its shape says.
pub fn validate(inputs: &[Tensor], spec: &[IoSpec]) -> Result<(), RuntimeError> {
    let mut seen = HashSet::with_capacity(inputs.len());
    for tensor in inputs {
        let name = tensor.name.as_str();
        let Some(io) = spec.iter().find(|io| io.name == name) else {
            return Err(invalid(format!("unknown input '{name}' (the model takes {})", names(spec))));
        };
        if !seen.insert(name) {
            return Err(invalid(format!("input '{name}' is given more than once")));
        }
        if tensor.dtype() != io.dtype {
            return Err(invalid(format!("input '{name}': expected {}, got {}", io.dtype, tensor.dtype())));
        }
        let fits = tensor.shape.len() == io.shape.len()
            && tensor.shape.iter().zip(&io.shape).all(|(&got, &want)| got >= 0 && (want < 0 || got == want));
        if !fits {
            return Err(invalid(format!(
                "input '{name}': expected shape {}, got {}",
                shape_str(&io.shape),
                shape_str(&tensor.shape)
            )));
        }
        match element_count(&tensor.shape) {
            Some(n) if n == tensor.data.len() => {}
            Some(n) => {
                return Err(invalid(format!(
                    "input '{name}': shape {} needs {n} elements, got {}",
                    shape_str(&tensor.shape),
                    tensor.data.len()
                )));
            }
            None => return Err(invalid(format!("input '{name}': shape {} is too large", shape_str(&tensor.shape)))),
        }
    }
    if let Some(missing) = spec.iter().find(|io| !seen.contains(io.name.as_str())) {
        return Err(invalid(format!("missing input '{}'", missing.name)));
    }
    Ok(())
}

/// Checks that every requested output exists in the model's output `spec` and is asked for
/// once. An empty list means "all outputs" and is always valid.
pub fn validate_outputs(requested: &[String], spec: &[IoSpec]) -> Result<(), RuntimeError> {
    let mut seen = HashSet::with_capacity(requested.len());
    for name in requested {
        if !spec.iter().any(|io| &io.name == name) {
            return Err(invalid(format!("unknown output '{name}' (the model has {})", names(spec))));
        }
        if !seen.insert(name.as_str()) {
            return Err(invalid(format!("output '{name}' is requested more than once")));
        }
    }
    Ok(())
}

/// `[-1,16]`: the compact form the error messages use.
pub fn shape_str(shape: &[i64]) -> String {
    let dims: Vec<String> = shape.iter().map(i64::to_string).collect();
    format!("[{}]", dims.join(","))
}

fn names(spec: &[IoSpec]) -> String {
    if spec.is_empty() {
        return "none".to_owned();
    }
    spec.iter().map(|io| format!("'{}'", io.name)).collect::<Vec<_>>().join(", ")
}

fn invalid(message: String) -> RuntimeError {
    RuntimeError::InvalidInput(message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DataType, TensorData};

    fn spec() -> Vec<IoSpec> {
        ["INPUT0", "INPUT1"]
            .into_iter()
            .map(|name| IoSpec { name: name.to_owned(), dtype: DataType::Int32, shape: vec![-1, 16] })
            .collect()
    }

    fn int32(name: &str, rows: i64) -> Tensor {
        Tensor::new(name, vec![rows, 16], TensorData::Int32(vec![0; rows as usize * 16])).unwrap()
    }

    fn message(inputs: &[Tensor]) -> String {
        match validate(inputs, &spec()) {
            Err(RuntimeError::InvalidInput(m)) => m,
            other => panic!("expected InvalidInput, got {other:?}"),
        }
    }

    #[test]
    fn accepts_any_batch_size() {
        validate(&[int32("INPUT0", 1), int32("INPUT1", 1)], &spec()).unwrap();
        validate(&[int32("INPUT1", 5), int32("INPUT0", 5)], &spec()).unwrap();
    }

    #[test]
    fn names_each_problem_precisely() {
        assert_eq!(
            message(&[int32("INPUT0", 1), int32("INPUT9", 1)]),
            "unknown input 'INPUT9' (the model takes 'INPUT0', 'INPUT1')"
        );
        assert_eq!(message(&[int32("INPUT0", 1)]), "missing input 'INPUT1'");
        assert_eq!(message(&[int32("INPUT0", 1), int32("INPUT0", 1)]), "input 'INPUT0' is given more than once");
        let fp32 = Tensor::new("INPUT0", vec![1, 16], TensorData::Fp32(vec![0.0; 16])).unwrap();
        assert_eq!(message(&[fp32, int32("INPUT1", 1)]), "input 'INPUT0': expected INT32, got FP32");
        let short = Tensor::new("INPUT0", vec![1, 15], TensorData::Int32(vec![0; 15])).unwrap();
        assert_eq!(message(&[short, int32("INPUT1", 1)]), "input 'INPUT0': expected shape [-1,16], got [1,15]");
        let rank1 = Tensor::new("INPUT0", vec![16], TensorData::Int32(vec![0; 16])).unwrap();
        assert_eq!(message(&[rank1, int32("INPUT1", 1)]), "input 'INPUT0': expected shape [-1,16], got [16]");
        // Fields are public: a tensor built without `Tensor::new` is checked too.
        let lying = Tensor { name: "INPUT0".into(), shape: vec![2, 16], data: TensorData::Int32(vec![0; 16]) };
        assert_eq!(message(&[lying, int32("INPUT1", 2)]), "input 'INPUT0': shape [2,16] needs 32 elements, got 16");
        let negative = Tensor { name: "INPUT0".into(), shape: vec![-1, 16], data: TensorData::Int32(vec![]) };
        assert_eq!(message(&[negative, int32("INPUT1", 1)]), "input 'INPUT0': expected shape [-1,16], got [-1,16]");
    }

    #[test]
    fn outputs_must_exist_once() {
        let outputs = vec![IoSpec { name: "OUTPUT0".into(), dtype: DataType::Int32, shape: vec![-1, 16] }];
        validate_outputs(&[], &outputs).unwrap();
        validate_outputs(&["OUTPUT0".into()], &outputs).unwrap();
        assert!(matches!(
            validate_outputs(&["OUTPUT7".into()], &outputs),
            Err(RuntimeError::InvalidInput(m)) if m == "unknown output 'OUTPUT7' (the model has 'OUTPUT0')"
        ));
        assert!(validate_outputs(&["OUTPUT0".into(), "OUTPUT0".into()], &outputs).is_err());
    }
}
