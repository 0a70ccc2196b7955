//! `maas chat DEPLOYMENT`: an interactive chat over `POST /v1/chat/completions`, the answer
//! streamed to the terminal as it is generated. Each line read is one user turn; the history
//! is sent with every turn. `--message` asks one question and exits.

use std::io::{BufRead as _, IsTerminal as _, Write as _};

use clap::Args;
use futures::StreamExt as _;
use reqwest::Method;
use serde_json::{Value, json};

use crate::CliError;
use crate::client::{self, Client};

#[derive(Debug, Clone, Args)]
#[command(after_long_help = "\
Type a message and press Enter; the answer streams back. An empty line or /exit ends the chat
(so does end of input). Lines read from a pipe are sent one per turn.

Examples:
  maas chat bob/smollm --system 'You are a helpful assistant.'
  maas chat bob/smollm --message 'What is the capital of France?' --temperature 0")]
pub struct ChatArgs {
    /// TENANT/NAME of a text-generation deployment, or NAME in your own tenant.
    pub deployment: String,
    /// A system message sent first.
    #[arg(long)]
    pub system: Option<String>,
    /// Ask this one message, print the answer, and exit.
    #[arg(long, short)]
    pub message: Option<String>,
    /// Sampling temperature (0 = greedy).
    #[arg(long)]
    pub temperature: Option<f32>,
    /// Most tokens per answer.
    #[arg(long)]
    pub max_tokens: Option<usize>,
    /// Seed for reproducible sampling.
    #[arg(long)]
    pub seed: Option<i64>,
}

pub async fn run(server: Option<&str>, args: ChatArgs) -> Result<(), CliError> {
    let c = client::authenticated(server).await?;
    let mut messages = Vec::new();
    if let Some(system) = &args.system {
        messages.push(json!({ "role": "system", "content": system }));
    }
    if let Some(message) = &args.message {
        messages.push(json!({ "role": "user", "content": message }));
        ask(&c, &args, &messages).await?;
        return Ok(());
    }
    let interactive = std::io::stdin().is_terminal();
    let mut lines = std::io::stdin().lock().lines();
    loop {
        if interactive {
            print!("> ");
            std::io::stdout().flush().ok();
        }
        let Some(line) = lines.next() else { break };
        let line = line.map_err(|error| CliError::File { path: "stdin".into(), error })?;
        let line = line.trim();
        if line.is_empty() || line == "/exit" {
            break;
        }
        messages.push(json!({ "role": "user", "content": line }));
        let answer = ask(&c, &args, &messages).await?;
        messages.push(json!({ "role": "assistant", "content": answer }));
    }
    Ok(())
}

/// Sends the conversation, prints the streamed answer and returns it.
async fn ask(c: &Client, args: &ChatArgs, messages: &[Value]) -> Result<String, CliError> {
    let mut body = json!({ "model": args.deployment, "messages": messages, "stream": true });
    if let Some(t) = args.temperature {
        body["temperature"] = json!(t);
    }
    if let Some(n) = args.max_tokens {
        body["max_tokens"] = json!(n);
    }
    if let Some(s) = args.seed {
        body["seed"] = json!(s);
    }
    let response = c.send(c.request(Method::POST, "/v1/chat/completions").json(&body)).await?;
    let mut bytes = response.bytes_stream();
    let (mut buffer, mut answer) = (Vec::<u8>::new(), String::new());
    let mut stdout = std::io::stdout();
    while let Some(chunk) = bytes.next().await {
        buffer.extend(chunk?.iter().filter(|&&b| b != b'\r'));
        while let Some(end) = buffer.windows(2).position(|w| w == b"\n\n") {
            let event: Vec<u8> = buffer.drain(..end + 2).collect();
            for data in String::from_utf8_lossy(&event).lines().filter_map(|l| l.strip_prefix("data: ")) {
                if data == "[DONE]" {
                    continue;
                }
                let chunk: Value = serde_json::from_str(data).map_err(CliError::Response)?;
                if let Some(error) = chunk.get("error") {
                    return Err(client::api_error(reqwest::StatusCode::BAD_GATEWAY, error.to_string().as_bytes()));
                }
                if let Some(text) = chunk.pointer("/choices/0/delta/content").and_then(Value::as_str) {
                    answer.push_str(text);
                    print!("{text}");
                    stdout.flush().ok();
                }
            }
        }
    }
    println!();
    Ok(answer)
}
