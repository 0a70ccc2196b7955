//! `maas embed DEPLOYMENT TEXT…`: sentence embeddings through `POST /v1/embeddings`, one line
//! per text (or the raw response with `--output json`).

use clap::Args;
use reqwest::Method;
use serde_json::{Value, json};

use crate::CliError;
use crate::client;
use crate::commands;
use crate::output::Output;

/// Values shown per vector in text output.
const PREVIEW: usize = 6;

#[derive(Debug, Clone, Args)]
#[command(after_long_help = "\
Examples:
  maas embed bob/minilm 'A man is eating food.' 'A man is riding a horse.'
  maas embed bob/minilm 'hello' --output json")]
pub struct EmbedArgs {
    /// TENANT/NAME of an embeddings deployment, or NAME in your own tenant.
    pub deployment: String,
    /// The texts to embed.
    #[arg(required = true)]
    pub texts: Vec<String>,
    /// Keep only the first N dimensions (re-normalised).
    #[arg(long)]
    pub dimensions: Option<usize>,
}

pub async fn run(server: Option<&str>, out: Output, args: EmbedArgs) -> Result<(), CliError> {
    let c = client::authenticated(server).await?;
    let mut body = json!({ "model": args.deployment, "input": args.texts });
    if let Some(d) = args.dimensions {
        body["dimensions"] = json!(d);
    }
    let response = c.json(c.request(Method::POST, "/v1/embeddings").json(&body)).await?;
    commands::show(out, &response, || {
        for item in response["data"].as_array().map(Vec::as_slice).unwrap_or_default() {
            let vector: Vec<f64> =
                item["embedding"].as_array().map(|v| v.iter().filter_map(Value::as_f64).collect()).unwrap_or_default();
            let preview: Vec<String> = vector.iter().take(PREVIEW).map(|v| format!("{v:.4}")).collect();
            let index = item["index"].as_u64().unwrap_or_default() as usize;
            let text = args.texts.get(index).map(String::as_str).unwrap_or("");
            println!("{index}\t{} dims\t[{}, …]\t{text}", vector.len(), preview.join(", "));
        }
        println!("tokens: {}", response["usage"]["prompt_tokens"]);
    });
    Ok(())
}
