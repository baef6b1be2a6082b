//! Bad input over every API operation: for each one the OpenAPI document
//! describes, many requests made from a seeded generator (hostile path
//! segments, odd queries, bodies of the wrong shape, wrong types, huge
//! numbers and strings, deep nesting, unknown fields, broken JSON, wrong
//! content types), as an admin and as a domain admin. Every answer must be
//! below 500, and every refusal a problem document. The seed is printed on
//! failure; `STRATUS_FUZZ_SEED` and `STRATUS_FUZZ_CASES` replay or widen a
//! run.

use serde_json::{Map, Value, json};

use super::api_tests::{Api, api};
use crate::service::Role;

/// A small deterministic generator (xorshift64*): the same seed, the same
/// requests.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub(crate) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    pub(crate) fn chance(&mut self, in_ten: usize) -> bool {
        self.below(10) < in_ten
    }
}

/// Path segments: some that name what exists, many that cannot.
const SEGMENTS: &[&str] = &[
    "a.example",
    "b.example",
    "ann@a.example",
    "bob@b.example",
    "news@a.example",
    "stratus-rsa",
    "0123456789abcdef",
    "..",
    "%2e%2e",
    "..%2f..%2fetc%2fpasswd",
    "%00",
    "a%0d%0aX-Injected:%20yes",
    "%ff%fe",
    "%F0%9F%92%A9@a.example",
    "xn--bcher-kva.example",
    "@",
    "a@b@c",
    "*",
    "%25",
    "CON",
    "-",
    "stratus_0000_0000",
];

/// Strings a field may get.
fn string(rng: &mut Rng) -> String {
    match rng.below(12) {
        0 => String::new(),
        1 => "x".repeat(100_000),
        2 => "ann@a.example".into(),
        3 => "a.example".into(),
        4 => "\u{0}\u{1}\u{7f}".into(),
        5 => "../../etc/passwd".into(),
        6 => "<script>alert(1)</script>".into(),
        7 => "1G".into(),
        8 => "99999999999999999999999T".into(),
        9 => "💩@ß.example".into(),
        10 => "admin".into(),
        _ => format!("s{}", rng.next()),
    }
}

/// A value of any JSON type, nested at most `depth` more.
pub(crate) fn value(rng: &mut Rng, depth: usize) -> Value {
    match rng.below(if depth == 0 { 7 } else { 9 }) {
        0 => Value::Null,
        1 => json!(rng.chance(5)),
        2 => json!(rng.next() as i64),
        3 => json!(*rng.pick(&[0.5, -1.0, 1e308, -1e308, 4.5, 12.0])),
        4 => json!(u64::MAX),
        5 | 6 => Value::String(string(rng)),
        7 => Value::Array((0..rng.below(4)).map(|_| value(rng, depth - 1)).collect()),
        _ => {
            let mut m = Map::new();
            for _ in 0..rng.below(4) {
                m.insert(
                    string(rng).chars().take(20).collect(),
                    value(rng, depth - 1),
                );
            }
            Value::Object(m)
        }
    }
}

/// The property names of an operation's request body, `$ref` resolved.
fn body_fields(doc: &Value, op: &Value) -> Vec<String> {
    let schema = &op["requestBody"]["content"]["application/json"]["schema"];
    let schema = match schema["$ref"].as_str() {
        Some(r) => {
            let name = r.rsplit('/').next().unwrap_or_default();
            &doc["components"]["schemas"][name]
        }
        None => schema,
    };
    schema["properties"]
        .as_object()
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default()
}

/// A body for an operation with these fields.
fn body(rng: &mut Rng, fields: &[String]) -> (Vec<u8>, &'static str) {
    let json = "application/json";
    match rng.below(12) {
        0 => (Vec::new(), json),
        1 => (b"{\"name\": ".to_vec(), json),
        2 => (b"\xff\xfe{}".to_vec(), json),
        3 => ("[".repeat(5000).into_bytes(), json),
        4 => (b"{\"a\":1,\"a\":2}".to_vec(), json),
        5 => (b"{}".to_vec(), "text/plain"),
        6 => (
            b"name=a.example".to_vec(),
            "application/x-www-form-urlencoded",
        ),
        7 => (value(rng, 3).to_string().into_bytes(), json),
        _ => {
            let mut m = Map::new();
            for f in fields {
                if rng.chance(7) {
                    m.insert(f.clone(), value(rng, 2));
                }
            }
            if rng.chance(2) {
                m.insert("unknown_field".into(), value(rng, 1));
            }
            (Value::Object(m).to_string().into_bytes(), json)
        }
    }
}

/// A query string: the operation's own parameters and others.
fn query(rng: &mut Rng, names: &[String]) -> String {
    if rng.chance(4) {
        return String::new();
    }
    let mut parts = Vec::new();
    for name in names
        .iter()
        .map(String::as_str)
        .chain(["limit", "cursor", "bogus"])
    {
        if rng.chance(5) {
            let v = *rng.pick(&[
                "0",
                "-1",
                "1",
                "1000",
                "1001",
                "99999999999999999999",
                "zz",
                "%ff",
                "true",
                "",
                "a.example",
                "6e",
            ]);
            parts.push(format!("{name}={v}"));
        }
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

#[tokio::test]
async fn no_request_to_the_api_makes_it_fail_or_answer_without_a_problem_document() {
    let seed: u64 = std::env::var("STRATUS_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_2026_1207);
    let cases: usize = std::env::var("STRATUS_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(12);
    let api: Api = api("api-fuzz").await;
    let admin = api.two_domains().await;
    for user in ["ann@a.example", "bob@b.example"] {
        let new = json!({"address": user, "password": "a fine password"}).to_string();
        assert_eq!(
            api.call("POST", "/api/v1/users", Some(&admin), Some(&new))
                .await
                .status,
            201
        );
    }
    let list = r#"{"address": "news@a.example", "owners": ["ann@a.example"]}"#;
    assert_eq!(
        api.call("POST", "/api/v1/lists", Some(&admin), Some(list))
            .await
            .status,
        201
    );
    let mine = api.key(Role::DomainAdmin, &["a.example"]).await;

    let doc: Value = serde_json::from_str(super::openapi::document()).unwrap();
    let mut rng = Rng(seed | 1);
    let (mut sent, mut served) = (0, 0);
    let paths = doc["paths"].as_object().unwrap();
    for (template, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            let names: Vec<String> = op["parameters"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .filter(|p| p["in"] == "query")
                        .filter_map(|p| p["name"].as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            let fields = body_fields(&doc, op);
            for _ in 0..cases {
                let mut path = String::new();
                for part in template.split('/').skip(1) {
                    path.push('/');
                    if part.starts_with('{') {
                        if rng.chance(1) {
                            // Long, but within the head limit (heads
                            // over it are the HTTP layer's: tests.rs).
                            path.push_str(&"%41".repeat(1000));
                        } else {
                            let segment: &&str = rng.pick(SEGMENTS);
                            path.push_str(segment);
                        }
                    } else {
                        path.push_str(part);
                    }
                }
                path.push_str(&query(&mut rng, &names));
                let key = if rng.chance(5) { &admin } else { &mine };
                let (payload, content_type) = body(&mut rng, &fields);
                let mut request = format!(
                    "{} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {key}\r\n",
                    method.to_ascii_uppercase()
                )
                .into_bytes();
                if !payload.is_empty() || rng.chance(5) {
                    request.extend_from_slice(
                        format!(
                            "Content-Type: {content_type}\r\nContent-Length: {}\r\n",
                            payload.len()
                        )
                        .as_bytes(),
                    );
                }
                request.extend_from_slice(b"\r\n");
                request.extend_from_slice(&payload);
                let a = api.raw(&request).await;
                sent += 1;
                if a.status < 300 {
                    served += 1;
                }
                let shown =
                    String::from_utf8_lossy(&request[..request.len().min(300)]).into_owned();
                assert!(
                    a.status < 500,
                    "seed {seed}: {shown}\n-> {} {}",
                    a.status,
                    a.body
                );
                if a.status >= 400 {
                    assert!(
                        a.head
                            .contains("\r\ncontent-type: application/problem+json")
                            && a.body["status"] == a.status,
                        "seed {seed}: not a problem document: {shown}\n-> {a:?}"
                    );
                }
            }
        }
    }
    let operations: usize = paths.values().map(|i| i.as_object().unwrap().len()).sum();
    assert!(
        operations > 60,
        "the document describes {operations} operations"
    );
    assert_eq!(sent, operations * cases);
    // Not all turned away at the door: enough reach the handlers and work.
    assert!(
        served * 20 > sent,
        "only {served} of {sent} requests succeeded"
    );
}
