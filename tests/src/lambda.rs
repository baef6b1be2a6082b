//! A stand-in for AWS Lambda, to run the natively built stage binaries as
//! Lambda runs them: an HTTP server speaking the Lambda Runtime API
//! (`/2018-06-01/runtime/invocation/next`, `.../response`, `.../error`) that
//! hands each binary SQS-shaped events, and a poller that plays the SQS
//! event source mapping (receive a batch, invoke, delete the records that
//! did not fail).

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use stratus_core::Queue;
use stratus_core::ports::QueueName;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

#[derive(Debug, Default)]
struct State {
    next_id: u64,
    pending: VecDeque<(String, Value)>,
    done: HashMap<String, Result<Value, Value>>,
}

/// One function's Runtime API endpoint.
#[derive(Debug, Clone)]
pub struct RuntimeApi {
    pub addr: String,
    state: Arc<Mutex<State>>,
    wake: Arc<Notify>,
}

impl RuntimeApi {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind runtime api");
        let api = RuntimeApi {
            addr: listener.local_addr().expect("address").to_string(),
            state: Arc::default(),
            wake: Arc::new(Notify::new()),
        };
        let server = api.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let server = server.clone();
                tokio::spawn(async move {
                    let _ = server.serve(stream).await;
                });
            }
        });
        api
    }

    /// Invokes the function with `event` and waits for its answer.
    pub async fn invoke(&self, event: Value) -> Result<Value, Value> {
        let id = {
            let mut s = self.state.lock().expect("state");
            s.next_id += 1;
            let id = format!("req-{}", s.next_id);
            s.pending.push_back((id.clone(), event));
            id
        };
        self.wake.notify_waiters();
        crate::eventually(Duration::from_secs(60), "the function's response", || {
            let done = self.state.lock().expect("state").done.remove(&id);
            async move { done }
        })
        .await
    }

    async fn serve(&self, stream: TcpStream) -> std::io::Result<()> {
        let (read, mut write) = stream.into_split();
        let mut read = BufReader::new(read);
        loop {
            let mut line = String::new();
            if read.read_line(&mut line).await? == 0 {
                return Ok(());
            }
            let mut parts = line.split_whitespace();
            let (method, path) = (
                parts.next().unwrap_or_default().to_string(),
                parts.next().unwrap_or_default().to_string(),
            );
            let mut length = 0usize;
            loop {
                let mut header = String::new();
                read.read_line(&mut header).await?;
                let header = header.trim_end();
                if header.is_empty() {
                    break;
                }
                if let Some((name, value)) = header.split_once(':')
                    && name.eq_ignore_ascii_case("content-length")
                {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0u8; length];
            read.read_exact(&mut body).await?;
            let reply = self.route(&method, &path, &body).await;
            write.write_all(reply.as_bytes()).await?;
        }
    }

    async fn route(&self, method: &str, path: &str, body: &[u8]) -> String {
        let reply = |status: &str, headers: &str, body: &str| {
            format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\n{headers}Content-Length: {}\r\n\r\n{body}",
                body.len()
            )
        };
        let rest = path.strip_prefix("/2018-06-01/runtime/").unwrap_or(path);
        match (method, rest) {
            ("GET", "invocation/next") => loop {
                let wake = self.wake.notified();
                if let Some((id, event)) = self.state.lock().expect("state").pending.pop_front() {
                    let deadline = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_millis() + 60_000)
                        .unwrap_or(0);
                    let headers = format!(
                        "Lambda-Runtime-Aws-Request-Id: {id}\r\nLambda-Runtime-Deadline-Ms: {deadline}\r\n\
                         Lambda-Runtime-Invoked-Function-Arn: arn:aws:lambda:us-east-1:123456789012:function:test\r\n\
                         Lambda-Runtime-Trace-Id: Root=1-00000000-000000000000000000000000\r\n"
                    );
                    return reply("200 OK", &headers, &event.to_string());
                }
                wake.await;
            },
            ("POST", rest) => {
                let value: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
                let mut s = self.state.lock().expect("state");
                if let Some(id) = rest
                    .strip_prefix("invocation/")
                    .and_then(|r| r.strip_suffix("/response"))
                {
                    s.done.insert(id.to_string(), Ok(value));
                } else if let Some(id) = rest
                    .strip_prefix("invocation/")
                    .and_then(|r| r.strip_suffix("/error"))
                {
                    s.done.insert(id.to_string(), Err(value));
                } else {
                    // init/error: the function could not start.
                    eprintln!("function failed to initialise: {value}");
                }
                reply("202 Accepted", "", "{}")
            }
            _ => reply("404 Not Found", "", "{}"),
        }
    }
}

/// A stage binary running against a [`RuntimeApi`].
#[derive(Debug)]
pub struct Function {
    pub api: RuntimeApi,
    child: Child,
}

impl Drop for Function {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Function {
    /// Starts `target/debug/<binary>` with the Lambda environment and `env`.
    pub async fn start(binary: &str, env: &[(String, String)]) -> Self {
        let api = RuntimeApi::start().await;
        let exe = crate::cli::stratus_bin().with_file_name(binary);
        assert!(
            Path::new(&exe).exists(),
            "{} missing: run `cargo build --workspace --bins`",
            exe.display()
        );
        let mut cmd = Command::new(exe);
        for (k, _) in std::env::vars() {
            if k.starts_with("STRATUS_") || k.starts_with("AWS_") {
                cmd.env_remove(k);
            }
        }
        let child = cmd
            .env("AWS_LAMBDA_RUNTIME_API", &api.addr)
            .env("AWS_LAMBDA_FUNCTION_NAME", binary)
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{binary}"))
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "test")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .spawn()
            .expect("start the function");
        Function { api, child }
    }

    /// Plays the SQS event source mapping once: receives a batch from
    /// `stage`, invokes the function with it, deletes the records that did
    /// not fail and makes the failed ones visible again. Returns the message
    /// ids of the batch and of the failures.
    pub async fn poll_once(
        &self,
        queue: &dyn Queue,
        stage: QueueName,
        queue_arn: &str,
    ) -> (Vec<String>, Vec<String>) {
        let batch = queue
            .receive(stage, 10, Duration::from_secs(60), Duration::from_secs(1))
            .await
            .expect("receive");
        if batch.is_empty() {
            return (Vec::new(), Vec::new());
        }
        let records: Vec<Value> = batch
            .iter()
            .map(|d| {
                json!({
                    "messageId": d.id,
                    "receiptHandle": d.receipt,
                    "body": String::from_utf8_lossy(&d.body),
                    "attributes": {
                        "ApproximateReceiveCount": d.receive_count.to_string(),
                        "SentTimestamp": "1751356800000",
                        "SenderId": "AIDAEXAMPLE",
                        "ApproximateFirstReceiveTimestamp": "1751356800000"
                    },
                    "messageAttributes": {},
                    "md5OfBody": "",
                    "eventSource": "aws:sqs",
                    "eventSourceARN": queue_arn,
                    "awsRegion": "us-east-1"
                })
            })
            .collect();
        let response = self
            .api
            .invoke(json!({ "Records": records }))
            .await
            .expect("the function answered without an error");
        let failed: Vec<String> = response["batchItemFailures"]
            .as_array()
            .expect("a batch response")
            .iter()
            .map(|f| f["itemIdentifier"].as_str().unwrap_or_default().to_string())
            .collect();
        for d in &batch {
            if failed.contains(&d.id) {
                queue
                    .retry_later(stage, &d.receipt, Duration::ZERO)
                    .await
                    .expect("release failed record");
            } else {
                queue.ack(stage, &d.receipt).await.expect("delete record");
            }
        }
        (batch.into_iter().map(|d| d.id).collect(), failed)
    }
}
