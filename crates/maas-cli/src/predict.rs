//! `maas predict DEPLOYMENT --input NAME=VALUE …`: one v2 inference call
//! (`POST /v2/models/{tenant}/{name}/infer`) with JSON tensors built from `.npy` files or JSON,
//! and the outputs printed per tensor (with `--output json`, the raw v2 response).

use std::path::Path;

use clap::Args;
use reqwest::Method;
use serde_json::{Value, json};

use crate::CliError;
use crate::client::{self, Client, segment};
use crate::commands;
use crate::npy;
use crate::output::{self, Output, field};

/// Values shown per output before the rest is summarised.
const PREVIEW_VALUES: usize = 20;

#[derive(Debug, Clone, Args)]
#[command(after_long_help = "\
VALUE is one of:
  @FILE.npy   a NumPy array: dtype and shape from its header (C order; bool, int, uint, float,
              and fixed-width strings, sent as BYTES)
  @FILE.json  or inline JSON, either a tensor {\"shape\": [1, 3], \"datatype\": \"FP32\", \"data\": [...]}
              or a nested array such as [[1, 2, 3]]: the shape comes from the nesting and the
              datatype from the model's metadata

Tensors travel as v2 JSON, not with the binary tensor extension: fine for small and medium
inputs; for large ones use a v2 client such as tritonclient with binary data.

Examples:
  maas predict bob/simple --input INPUT0=@a.npy --input 'INPUT1=[[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16]]'
  maas predict bob/words --input 'INPUT0={\"shape\":[2],\"datatype\":\"BYTES\",\"data\":[\"a\",\"b\"]}' --output json")]
pub struct PredictArgs {
    /// TENANT/NAME of the deployment, or NAME in your own tenant.
    pub deployment: String,
    /// An input tensor: NAME=@FILE.npy, NAME=@FILE.json or NAME=JSON; repeat for each input.
    #[arg(long = "input", value_name = "NAME=VALUE", required = true)]
    pub inputs: Vec<String>,
    /// Return only this output; repeat for several (default: every output).
    #[arg(long = "output-name", value_name = "NAME")]
    pub outputs: Vec<String>,
}

/// An input as given, before the model's metadata fills in what it leaves open.
#[derive(Debug, Clone, PartialEq)]
struct Input {
    name: String,
    datatype: Option<String>,
    shape: Vec<i64>,
    data: Value,
}

pub async fn run(server: Option<&str>, out: Output, args: PredictArgs) -> Result<(), CliError> {
    let model = model_path(&args.deployment)?;
    let inputs = args.inputs.iter().map(|arg| parse_input(arg)).collect::<Result<Vec<_>, _>>()?;
    let c = client::authenticated(server).await?;
    let datatypes = if inputs.iter().any(|i| i.datatype.is_none()) { model_inputs(&c, &model).await? } else { vec![] };
    let mut tensors = Vec::with_capacity(inputs.len());
    for input in inputs {
        let datatype = match input.datatype {
            Some(d) => d,
            None => {
                datatypes.iter().find(|(name, _)| *name == input.name).map(|(_, d)| d.clone()).ok_or_else(|| {
                    let names: Vec<&str> = datatypes.iter().map(|(n, _)| n.as_str()).collect();
                    CliError::Input {
                        name: input.name.clone(),
                        message: format!("the model has no such input (its inputs: {})", names.join(", ")),
                    }
                })?
            }
        };
        tensors.push(json!({ "name": input.name, "shape": input.shape, "datatype": datatype, "data": input.data }));
    }
    let mut body = json!({ "inputs": tensors });
    if !args.outputs.is_empty() {
        body["outputs"] = args.outputs.iter().map(|name| json!({ "name": name })).collect();
    }
    let response = c.json(c.request(Method::POST, &format!("{model}/infer")).json(&body)).await?;
    commands::show(out, &response, || print_outputs(&response));
    Ok(())
}

/// `/v2/models/{tenant}/{name}` (two segments), or `/v2/models/{name}` in the caller's tenant.
fn model_path(deployment: &str) -> Result<String, CliError> {
    let parts: Vec<&str> = deployment.split('/').collect();
    if parts.is_empty() || parts.len() > 2 || parts.iter().any(|p| p.is_empty()) {
        return Err(CliError::Usage(format!("'{deployment}' is not a deployment: expected TENANT/NAME or NAME")));
    }
    Ok(format!("/v2/models/{}", parts.iter().map(|p| segment(p)).collect::<Vec<_>>().join("/")))
}

/// The model's inputs and their datatypes (`GET /v2/models/{name}`).
async fn model_inputs(c: &Client, model: &str) -> Result<Vec<(String, String)>, CliError> {
    let meta = c.json(c.request(Method::GET, model)).await?;
    Ok(meta["inputs"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|i| Some((i["name"].as_str()?.to_owned(), i["datatype"].as_str()?.to_owned())))
        .collect())
}

/// `NAME=@file.npy`, `NAME=@file.json` or `NAME=<inline JSON>`.
fn parse_input(arg: &str) -> Result<Input, CliError> {
    let (name, value) = arg
        .split_once('=')
        .filter(|(name, _)| !name.is_empty())
        .ok_or_else(|| CliError::Usage(format!("--input '{arg}': expected NAME=VALUE, e.g. INPUT0=@x.npy")))?;
    let bad = |message: String| CliError::Input { name: name.to_owned(), message };
    let Some(file) = value.strip_prefix('@') else {
        let json = serde_json::from_str(value)
            .map_err(|e| bad(format!("not valid JSON ({e}); to read a file, write @PATH")))?;
        return from_json(name, json).map_err(bad);
    };
    let path = Path::new(file);
    let bytes = std::fs::read(path).map_err(CliError::file(path))?;
    let is_npy = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("npy"));
    if is_npy || npy::is_npy(&bytes) {
        let t = npy::parse(&bytes).map_err(|e| bad(format!("{file}: {e}")))?;
        return Ok(Input {
            name: name.to_owned(),
            datatype: Some(t.datatype.to_owned()),
            shape: t.shape,
            data: Value::from(t.data),
        });
    }
    let json =
        serde_json::from_slice(&bytes).map_err(|e| bad(format!("{file}: not a .npy file nor valid JSON ({e})")))?;
    from_json(name, json).map_err(|e| bad(format!("{file}: {e}")))
}

/// A v2 tensor object (`shape`, `datatype`, `data`; the first two optional) or a nested array.
fn from_json(name: &str, value: Value) -> Result<Input, String> {
    match value {
        Value::Array(_) => {
            Ok(Input { name: name.to_owned(), datatype: None, shape: nested_shape(&value)?, data: value })
        }
        Value::Object(mut tensor) => {
            if let Some(key) = tensor.keys().find(|k| !["shape", "datatype", "data"].contains(&k.as_str())) {
                return Err(format!("unexpected key '{key}' (a tensor has shape, datatype and data)"));
            }
            let data = tensor.remove("data").ok_or("the tensor has no 'data'")?;
            let datatype = match tensor.remove("datatype") {
                None => None,
                Some(Value::String(d)) => Some(d.to_ascii_uppercase()),
                Some(other) => return Err(format!("'datatype' must be a string such as \"FP32\", not {other}")),
            };
            let shape = match tensor.remove("shape") {
                None => nested_shape(&data)?,
                Some(shape) => {
                    serde_json::from_value(shape).map_err(|_| "'shape' must be an array of integers".to_owned())?
                }
            };
            Ok(Input { name: name.to_owned(), datatype, shape, data })
        }
        _ => Err("expected a JSON array, or an object with shape, datatype and data".to_owned()),
    }
}

/// The shape of a rectangular nested array: `[[1, 2, 3], [4, 5, 6]]` → `[2, 3]`.
fn nested_shape(value: &Value) -> Result<Vec<i64>, String> {
    let mut dims = Vec::new();
    let mut first = value;
    while let Value::Array(items) = first {
        dims.push(items.len());
        match items.first() {
            Some(item) => first = item,
            None => break,
        }
    }
    fn check(value: &Value, dims: &[usize]) -> bool {
        match (value, dims.split_first()) {
            (Value::Array(items), Some((&n, rest))) => items.len() == n && items.iter().all(|v| check(v, rest)),
            (Value::Array(_), None) => false,
            (_, Some(_)) => false,
            (_, None) => true,
        }
    }
    if !check(value, &dims) {
        return Err("the nested array is not rectangular (every row needs the same length and depth)".to_owned());
    }
    dims.into_iter().map(|d| i64::try_from(d).map_err(|_| "the array is too large".to_owned())).collect()
}

/// `[1, 2, 3, …] (N values)` with at most [`PREVIEW_VALUES`] values.
fn preview(data: &Value) -> String {
    fn flatten<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
        match v {
            Value::Array(items) => items.iter().for_each(|i| flatten(i, out)),
            other => out.push(other),
        }
    }
    let mut values = Vec::new();
    flatten(data, &mut values);
    let shown: Vec<String> = values.iter().take(PREVIEW_VALUES).map(|v| v.to_string()).collect();
    if values.len() > PREVIEW_VALUES {
        format!("[{}, … ({} values)]", shown.join(", "), values.len())
    } else {
        format!("[{}]", shown.join(", "))
    }
}

fn print_outputs(response: &Value) {
    println!("{} (version {})", field(response, "model_name"), field(response, "model_version"));
    let outputs = response["outputs"].as_array().map(Vec::as_slice).unwrap_or_default();
    let rows: Vec<_> = outputs
        .iter()
        .map(|o| {
            let shape: Vec<String> =
                o["shape"].as_array().map(Vec::as_slice).unwrap_or_default().iter().map(Value::to_string).collect();
            let values = match (&o["data"], o["parameters"]["binary_data_size"].as_u64()) {
                (Value::Null, Some(n)) => format!("({n} bytes of binary data)"),
                (data, _) => preview(data),
            };
            vec![field(o, "name"), field(o, "datatype"), format!("[{}]", shape.join(", ")), values]
        })
        .collect();
    output::table(&["output", "datatype", "shape", "values"], &rows);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_and_file_inputs() {
        let i = parse_input("x=[[1, 2, 3], [4, 5, 6]]").unwrap();
        assert_eq!((i.datatype, i.shape), (None, vec![2, 3]));
        let i = parse_input(r#"x={"shape":[3],"datatype":"fp32","data":[1,2,3]}"#).unwrap();
        assert_eq!((i.datatype.as_deref(), i.shape, i.data), (Some("FP32"), vec![3], json!([1, 2, 3])));
        let i = parse_input(r#"x={"datatype":"BYTES","data":[["a"],["b"]]}"#).unwrap();
        assert_eq!(i.shape, vec![2, 1]);
        assert_eq!(parse_input("x=[]").unwrap().shape, vec![0]);

        let dir = tempfile::tempdir().unwrap();
        let json_file = dir.path().join("t.json");
        std::fs::write(&json_file, "[[true, false]]").unwrap();
        let i = parse_input(&format!("flags=@{}", json_file.display())).unwrap();
        assert_eq!((i.name.as_str(), i.shape), ("flags", vec![1, 2]));
        let npy_file = dir.path().join("a.bin");
        let header = "{'descr': '<i4', 'fortran_order': False, 'shape': (2,), }";
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend_from_slice(&u16::try_from(header.len()).unwrap().to_le_bytes());
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(&[7, 0, 0, 0, 8, 0, 0, 0]);
        std::fs::write(&npy_file, bytes).unwrap();
        let i = parse_input(&format!("a=@{}", npy_file.display())).unwrap();
        assert_eq!((i.datatype.as_deref(), i.shape, i.data), (Some("INT32"), vec![2], json!([7, 8])));
    }

    #[test]
    fn bad_inputs() {
        let message = |arg: &str| parse_input(arg).unwrap_err().to_string();
        assert!(message("INPUT0").contains("NAME=VALUE"));
        assert!(message("=[1]").contains("NAME=VALUE"));
        assert!(message("x=[1, 2").contains("not valid JSON"));
        assert!(message("x=[[1, 2], [3]]").contains("rectangular"));
        assert!(message("x=[[1], 2]").contains("rectangular"));
        assert!(message("x=3").contains("expected a JSON array"));
        assert!(message(r#"x={"dtype":"FP32","data":[1]}"#).contains("unexpected key 'dtype'"));
        assert!(message(r#"x={"shape":[1]}"#).contains("no 'data'"));
        assert!(message(r#"x={"shape":"1","data":[1]}"#).contains("array of integers"));
        assert!(message("x=@/nonexistent/a.npy").contains("/nonexistent/a.npy"));
    }

    #[test]
    fn paths_and_previews() {
        assert_eq!(model_path("bob/simple").unwrap(), "/v2/models/bob/simple");
        assert_eq!(model_path("simple").unwrap(), "/v2/models/simple");
        assert_eq!(model_path("a b/c").unwrap(), "/v2/models/a%20b/c");
        for bad in ["", "a/b/c", "/simple", "bob/"] {
            assert!(model_path(bad).is_err(), "{bad}");
        }
        assert_eq!(preview(&json!([[1, 2], [3, 4]])), "[1, 2, 3, 4]");
        assert_eq!(preview(&json!(["a"])), "[\"a\"]");
        let long: Vec<i32> = (0..25).collect();
        let shown = preview(&json!(long));
        assert!(shown.starts_with("[0, 1, 2,") && shown.ends_with("19, … (25 values)]"), "{shown}");
    }
}
