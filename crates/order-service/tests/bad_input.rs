//! A catalogue of bad requests against the real binary (embedded profile):
//! for every operation of the OpenAPI document, malformed JSON, wrong types, huge
//! numbers and strings, negative and zero quantities, awkward unicode,
//! bodies over the limit, unknown members, odd path ids, wrong methods and
//! content types, empty bodies, arrays instead of objects and bad query
//! parameters.
//!
//! Every answer must be the exact status the catalogue names: a 4xx
//! `application/problem+json` with `type`/`title`/`status`/`detail`, or, where
//! the input is in fact valid (unknown members are ignored, a body on an
//! endpoint that takes none is ignored, an emoji is a fine customer id…), the
//! documented 2xx. Never a 5xx, and no internals (driver names, panics, file
//! paths) in an error body.
//!
//! Requests go over a raw socket, so the catalogue can send what an HTTP
//! library would refuse to build (invalid UTF-8, bad percent escapes, lying
//! content types). A few requests are refused by the HTTP/1 codec (hyper)
//! before the application sees them (header block or request target too
//! large, a request line that is not HTTP); those answer a bare 4xx without
//! a problem body, which no application code can change, and are listed
//! separately.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::{json, Value};
use support::{order_body, Service};

// --- A raw HTTP/1.1 client -----------------------------------------------------------

struct Raw {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = find(data, b"\r\n") {
        let size_text = String::from_utf8_lossy(&data[..eol]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .unwrap_or(0);
        data = &data[eol + 2..];
        if size == 0 || data.len() < size {
            break;
        }
        out.extend_from_slice(&data[..size]);
        data = data.get(size + 2..).unwrap_or(&[]);
    }
    out
}

/// Sends `request` (the whole HTTP/1.1 message) on a fresh connection and
/// reads the answer until the server closes it. The request is written from
/// another thread while the answer is read, so an early answer (413 before
/// the body is read) is seen even if the server then resets the connection.
fn exchange(addr: SocketAddr, request: Vec<u8>) -> Result<Raw, String> {
    let stream = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    let mut writer = stream.try_clone().map_err(|e| e.to_string())?;
    let sending = std::thread::spawn(move || {
        // A server that answers early may close before reading everything.
        let _ = writer.write_all(&request);
        let _ = writer.flush();
    });
    let mut reader = stream;
    let mut data = Vec::new();
    let mut buf = [0u8; 65536];
    let read_error = loop {
        match reader.read(&mut buf) {
            Ok(0) => break None,
            Ok(n) => data.extend_from_slice(&buf[..n]),
            Err(e) => break Some(e),
        }
    };
    let _ = sending.join();
    let Some(head_end) = find(&data, b"\r\n\r\n") else {
        return Err(format!(
            "no HTTP answer ({} bytes read; {})",
            data.len(),
            read_error.map_or("connection closed".to_owned(), |e| e.to_string())
        ));
    };
    let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line in {head:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let rest = &data[head_end + 4..];
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let length = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok());
    let body = if chunked {
        dechunk(rest)
    } else if let Some(n) = length {
        if rest.len() < n {
            return Err(format!(
                "answer cut short: {} of {n} body bytes ({head:?})",
                rest.len()
            ));
        }
        rest[..n].to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Raw {
        status,
        headers,
        body,
    })
}

// --- The catalogue -------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// This 4xx, as `application/problem+json`.
    Problem(u16),
    /// This 2xx/3xx: the input is valid (or the part that is bad is ignored,
    /// as documented).
    Answer(u16),
    /// This 4xx from the HTTP/1 codec itself, before the application: no
    /// problem body is possible.
    Codec(u16),
}

struct Case {
    /// The OpenAPI operation this case exercises, `METHOD /template`
    /// (`-` for a request the router never matches to one).
    op: String,
    name: String,
    method: String,
    /// Request target as sent; `{order}` is the fixture order (PENDING, it
    /// must stay so), `{fresh}` a new PENDING order made for this case,
    /// `{missing}` a UUID no order has.
    target: Vec<u8>,
    headers: Vec<(String, Vec<u8>)>,
    body: Option<Vec<u8>>,
    chunked: bool,
    expect: Expect,
    /// JSON pointer → value the answer must hold.
    json: Vec<(&'static str, Value)>,
}

fn case(op: &str, name: impl Into<String>, method: &str, target: impl AsRef<[u8]>) -> Case {
    Case {
        op: op.to_owned(),
        name: name.into(),
        method: method.to_owned(),
        target: target.as_ref().to_vec(),
        headers: Vec::new(),
        body: None,
        chunked: false,
        expect: Expect::Problem(400),
        json: Vec::new(),
    }
}

impl Case {
    /// A body with `Content-Type: application/json`.
    fn json(self, body: impl AsRef<[u8]>) -> Case {
        self.header("content-type", "application/json").body(body)
    }
    fn body(mut self, body: impl AsRef<[u8]>) -> Case {
        self.body = Some(body.as_ref().to_vec());
        self
    }
    fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Case {
        self.headers
            .push((name.to_owned(), value.as_ref().to_vec()));
        self
    }
    fn chunked(mut self) -> Case {
        self.chunked = true;
        self
    }
    fn problem(mut self, status: u16) -> Case {
        self.expect = Expect::Problem(status);
        self
    }
    fn answer(mut self, status: u16) -> Case {
        self.expect = Expect::Answer(status);
        self
    }
    fn codec(mut self, status: u16) -> Case {
        self.expect = Expect::Codec(status);
        self
    }
    fn holds(mut self, pointer: &'static str, value: Value) -> Case {
        self.json.push((pointer, value));
        self
    }

    fn request(&self, target: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(self.method.as_bytes());
        out.push(b' ');
        out.extend_from_slice(target);
        out.extend_from_slice(b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
        for (k, v) in &self.headers {
            out.extend_from_slice(k.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(v);
            out.extend_from_slice(b"\r\n");
        }
        match (&self.body, self.chunked) {
            (Some(body), true) => {
                out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
                for chunk in body.chunks(64 * 1024) {
                    out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                    out.extend_from_slice(chunk);
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(b"0\r\n\r\n");
            }
            (Some(body), false) => {
                out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
                out.extend_from_slice(body);
            }
            (None, _) => out.extend_from_slice(b"\r\n"),
        }
        out
    }
}

/// A create body with the given members (raw JSON text) in place of the
/// defaults.
fn create_body(customer: &str, item: &str, extra: &str) -> String {
    format!(r#"{{"customerId":{customer},"restaurantId":"r-1","items":[{item}]{extra}}}"#)
}

fn item(menu: &str, name: &str, price: &str, quantity: &str) -> String {
    format!(r#"{{"menuItemId":{menu},"name":{name},"price":{price},"quantity":{quantity}}}"#)
}

fn good_item() -> String {
    item(r#""m-1""#, r#""Margherita""#, r#""12.50""#, "2")
}

fn with_item(price: &str, quantity: &str) -> String {
    create_body(r#""c-1""#, &item(r#""m-1""#, r#""n""#, price, quantity), "")
}

fn with_customer(customer: &str) -> String {
    create_body(customer, &good_item(), "")
}

fn with_name(name: &str) -> String {
    create_body(r#""c-1""#, &item(r#""m-1""#, name, r#""1.00""#, "1"), "")
}

const ONE_AND_A_HALF_MB: usize = 1536 * 1024;
const TEN_THOUSAND: usize = 10_000;

/// Odd path ids, percent-encoded as a client would send them.
fn odd_ids() -> Vec<(&'static str, String)> {
    vec![
        (
            "a traversal (../../etc/passwd)",
            "..%2F..%2Fetc%2Fpasswd".to_owned(),
        ),
        ("a NUL (%00)", "%00".to_owned()),
        ("10,000 characters", "a".repeat(TEN_THOUSAND)),
        (
            "SQL metacharacters (' OR 1=1 --)",
            "%27%20OR%201%3D1%20--".to_owned(),
        ),
        (
            "a DROP TABLE",
            "x%27%3B%20DROP%20TABLE%20orders%3B--".to_owned(),
        ),
        ("an emoji", "%F0%9F%98%80".to_owned()),
        ("RTL override text", "%E2%80%AEabc".to_owned()),
        ("invalid UTF-8 (%FF)", "%FF".to_owned()),
        (
            "an encoded lone surrogate (%ED%A0%80)",
            "%ED%A0%80".to_owned(),
        ),
        ("a bad percent escape (%)", "%".to_owned()),
    ]
}

fn catalogue() -> Vec<Case> {
    let mut c = Vec::new();
    const CREATE: &str = "POST /api/orders";
    let big = "x".repeat(100 * 1024);

    // --- POST /api/orders: malformed, not an object, empty ---------------------------
    for (name, body) in [
        ("malformed JSON: an open brace", "{".to_owned()),
        (
            "malformed JSON: cut mid-member",
            r#"{"customerId":"c-1","#.to_owned(),
        ),
        (
            "malformed JSON: single quotes",
            "{'customerId':'c-1'}".to_owned(),
        ),
        (
            "malformed JSON: trailing comma",
            r#"{"customerId":"c-1",}"#.to_owned(),
        ),
        (
            "malformed JSON: trailing garbage",
            format!("{} x", with_customer(r#""c-1""#)),
        ),
        ("malformed JSON: NaN", with_item("NaN", "1")),
        (
            "malformed JSON: a comment",
            format!("/* hi */{}", with_customer(r#""c-1""#)),
        ),
        (
            "malformed JSON: a UTF-8 BOM first",
            format!("\u{feff}{}", with_customer(r#""c-1""#)),
        ),
        ("an empty body", String::new()),
        ("a body of blanks", "  \n\t ".to_owned()),
        (
            "an array instead of an object",
            format!("[{}]", with_customer(r#""c-1""#)),
        ),
        ("an empty array", "[]".to_owned()),
        ("null", "null".to_owned()),
        ("a string", r#""an order""#.to_owned()),
        ("a number", "42".to_owned()),
        ("true", "true".to_owned()),
        (
            "10,000 nested arrays",
            format!("{}{}", "[".repeat(TEN_THOUSAND), "]".repeat(TEN_THOUSAND)),
        ),
        (
            "a duplicate member",
            create_body(r#""c-1""#, &good_item(), r#","customerId":"c-2""#),
        ),
    ] {
        c.push(
            case(CREATE, format!("create: {name}"), "POST", "/api/orders")
                .json(body)
                .problem(400),
        );
    }
    let mut raw_ff = with_customer(r#""c-1 ""#).into_bytes();
    let at = raw_ff.iter().position(|b| *b == b' ').unwrap_or(0);
    raw_ff[at] = 0xFF;
    c.push(
        case(
            CREATE,
            "create: invalid UTF-8 inside a string",
            "POST",
            "/api/orders",
        )
        .json(raw_ff)
        .problem(400),
    );

    // --- wrong types (422, one error per field) --------------------------------------
    for (name, body) in [
        ("customerId a number", with_customer("1")),
        ("customerId an object", with_customer("{}")),
        ("customerId an array", with_customer(r#"["c-1"]"#)),
        ("customerId true", with_customer("true")),
        (
            "restaurantId a number",
            create_body(r#""c-1""#, &good_item(), "").replace(r#""r-1""#, "7"),
        ),
        (
            "items a string",
            r#"{"customerId":"c-1","restaurantId":"r-1","items":"pizza"}"#.to_owned(),
        ),
        (
            "items an object",
            format!(
                r#"{{"customerId":"c-1","restaurantId":"r-1","items":{}}}"#,
                good_item()
            ),
        ),
        (
            "items of scalars",
            r#"{"customerId":"c-1","restaurantId":"r-1","items":[1,"x",null]}"#.to_owned(),
        ),
        (
            "an item that is an empty array",
            r#"{"customerId":"c-1","restaurantId":"r-1","items":[[]]}"#.to_owned(),
        ),
        (
            "an item that is an array of its members' values",
            r#"{"customerId":"c-1","restaurantId":"r-1","items":[["m-1","Margherita","12.50",2]]}"#
                .to_owned(),
        ),
        ("price true", with_item("true", "1")),
        ("price an object", with_item("{}", "1")),
        ("price a word", with_item(r#""twelve""#, "1")),
        (
            "price with an exponent in a string",
            with_item(r#""1e3""#, "1"),
        ),
        ("quantity a string", with_item(r#""1.00""#, r#""2""#)),
        ("quantity a fraction", with_item(r#""1.00""#, "1.5")),
        ("quantity null", with_item(r#""1.00""#, "null")),
        ("name a number", with_name("5")),
        (
            "totalAmount a word",
            create_body(r#""c-1""#, &good_item(), r#","totalAmount":"abc""#),
        ),
        (
            "totalAmount an array",
            create_body(r#""c-1""#, &good_item(), r#","totalAmount":[25]"#),
        ),
        (
            "every member null",
            r#"{"customerId":null,"restaurantId":null,"items":null}"#.to_owned(),
        ),
        ("an empty object", "{}".to_owned()),
    ] {
        c.push(
            case(CREATE, format!("create: {name}"), "POST", "/api/orders")
                .json(body)
                .problem(422),
        );
    }

    // --- huge and odd numbers --------------------------------------------------------
    for (name, body) in [
        ("price 1e400", with_item("1e400", "1")),
        ("price -1e400", with_item("-1e400", "1")),
        ("price 1e-400", with_item("1e-400", "1")),
        ("price 2^64", with_item("18446744073709551616", "1")),
        (
            "price 2^96 (past a decimal's range)",
            with_item("79228162514264337593543950336", "1"),
        ),
        ("price of 400 digits", with_item(&"9".repeat(400), "1")),
        ("price 1000000.0001", with_item(r#""1000000.0001""#, "1")),
        ("price with 5 decimals", with_item(r#""1.00001""#, "1")),
        ("price -0.01", with_item("-0.01", "1")),
        ("price \"-5\"", with_item(r#""-5""#, "1")),
        ("quantity 1e400", with_item(r#""1.00""#, "1e400")),
        (
            "quantity 2^64",
            with_item(r#""1.00""#, "18446744073709551616"),
        ),
        (
            "quantity 2^64-1",
            with_item(r#""1.00""#, "18446744073709551615"),
        ),
        (
            "quantity 2^63",
            with_item(r#""1.00""#, "9223372036854775808"),
        ),
        ("quantity 10001", with_item(r#""1.00""#, "10001")),
        ("quantity -1", with_item(r#""1.00""#, "-1")),
        ("quantity 0", with_item(r#""1.00""#, "0")),
        ("quantity -0", with_item(r#""1.00""#, "-0")),
        (
            "quantity -2^63",
            with_item(r#""1.00""#, "-9223372036854775808"),
        ),
        (
            "totalAmount 1e400",
            create_body(r#""c-1""#, &good_item(), r#","totalAmount":1e400"#),
        ),
        (
            "totalAmount 2^64",
            create_body(
                r#""c-1""#,
                &good_item(),
                r#","totalAmount":18446744073709551616"#,
            ),
        ),
        (
            "totalAmount -1",
            create_body(r#""c-1""#, &good_item(), r#","totalAmount":-1"#),
        ),
        (
            "totalAmount 0",
            create_body(r#""c-1""#, &good_item(), r#","totalAmount":0"#),
        ),
        (
            "totalAmount of 40 digits",
            create_body(
                r#""c-1""#,
                &good_item(),
                &format!(r#","totalAmount":"{}""#, "9".repeat(40)),
            ),
        ),
    ] {
        c.push(
            case(CREATE, format!("create: {name}"), "POST", "/api/orders")
                .json(body)
                .problem(422),
        );
    }

    // --- huge strings and collections ------------------------------------------------
    let many_items = vec![good_item(); 101].join(",");
    for (name, body) in [
        ("a 100 KB item name", with_name(&format!("\"{big}\""))),
        ("a 100 KB customerId", with_customer(&format!("\"{big}\""))),
        (
            "a 100 KB menuItemId",
            create_body(
                r#""c-1""#,
                &item(&format!("\"{big}\""), r#""n""#, "1", "1"),
                "",
            ),
        ),
        (
            "a 100 KB price string",
            with_item(&format!("\"{}\"", "1".repeat(100 * 1024)), "1"),
        ),
        (
            "101 items",
            format!(r#"{{"customerId":"c-1","restaurantId":"r-1","items":[{many_items}]}}"#),
        ),
        (
            "no items",
            r#"{"customerId":"c-1","restaurantId":"r-1","items":[]}"#.to_owned(),
        ),
    ] {
        c.push(
            case(CREATE, format!("create: {name}"), "POST", "/api/orders")
                .json(body)
                .problem(422),
        );
    }

    // --- unicode ---------------------------------------------------------------------
    for (name, body) in [
        (
            "a NUL in customerId (\\u0000)",
            with_customer(r#""c\u0000""#),
        ),
        ("a raw-escaped NUL-only name", with_name(r#""\u0000""#)),
        (
            "a lone high surrogate (\\ud800)",
            with_customer(r#""\ud800""#),
        ),
        (
            "a lone low surrogate (\\udc00)",
            with_customer(r#""\udc00""#),
        ),
        (
            "a high surrogate then a letter",
            with_customer(r#""\ud800x""#),
        ),
        ("a C1 control (\\u0085) only", with_customer(r#""\u0085""#)),
        ("a no-break space only", with_customer(r#""\u00a0""#)),
        ("a bell in a name", with_name(r#""pizza\u0007""#)),
        (
            "an escape sequence (ESC[31m) in a name",
            with_name(r#""\u001b[31mred""#),
        ),
        ("DEL in a name", with_name(r#""a\u007f""#)),
    ] {
        c.push(
            case(CREATE, format!("create: {name}"), "POST", "/api/orders")
                .json(body)
                .problem(422),
        );
    }
    for (name, body, customer) in [
        ("an emoji customerId", with_customer(r#""😀""#), "😀"),
        (
            "an escaped surrogate pair",
            with_customer(r#""\ud83d\ude00""#),
            "😀",
        ),
        (
            "RTL override text (\\u202e)",
            with_customer(r#""\u202eevil""#),
            "\u{202e}evil",
        ),
        ("Arabic text", with_customer(r#""زبون""#), "زبون"),
        (
            "a zero-width space (not a blank)",
            with_customer(r#""\u200b""#),
            "\u{200b}",
        ),
        (
            "surrounding blanks are trimmed",
            with_customer(r#""  c-1  ""#),
            "c-1",
        ),
    ] {
        c.push(
            case(CREATE, format!("create: {name}"), "POST", "/api/orders")
                .json(body)
                .answer(201)
                .holds("/customerId", json!(customer)),
        );
    }

    // --- bodies over the limit (ORDER_MAX_BODY_BYTES, 256 KiB by default) ------------
    let over = format!(
        r#"{{"customerId":"c-1","restaurantId":"r-1","items":[{}],"pad":"{}"}}"#,
        good_item(),
        "x".repeat(ONE_AND_A_HALF_MB)
    );
    c.push(
        case(CREATE, "create: a 1.5 MB body", "POST", "/api/orders")
            .json(&over)
            .problem(413),
    );
    c.push(
        case(
            CREATE,
            "create: a 1.5 MB chunked body",
            "POST",
            "/api/orders",
        )
        .json(&over)
        .chunked()
        .problem(413),
    );
    c.push(
        case(
            CREATE,
            "create: a 1.5 MB body that is not JSON",
            "POST",
            "/api/orders",
        )
        .json("x".repeat(ONE_AND_A_HALF_MB))
        .problem(413),
    );
    let at_limit = |n: usize| {
        let skeleton = create_body(r#""c-1""#, &good_item(), r#","pad":"""#);
        create_body(
            r#""c-1""#,
            &good_item(),
            &format!(r#","pad":"{}""#, "x".repeat(n - skeleton.len())),
        )
    };
    c.push(
        case(
            CREATE,
            "create: a body of exactly the limit (valid)",
            "POST",
            "/api/orders",
        )
        .json(at_limit(262_144))
        .answer(201),
    );
    c.push(
        case(
            CREATE,
            "create: a body one byte over the limit",
            "POST",
            "/api/orders",
        )
        .json(at_limit(262_145))
        .problem(413),
    );

    // --- unknown members: accepted and ignored (documented) --------------------------
    c.push(
        case(CREATE, "create: an unknown member", "POST", "/api/orders")
            .json(create_body(r#""c-1""#, &good_item(), r#","coupon":"FREE""#))
            .answer(201),
    );
    c.push(
        case(
            CREATE,
            "create: an unknown member in an item",
            "POST",
            "/api/orders",
        )
        .json(create_body(
            r#""c-1""#,
            &item(r#""m""#, r#""n""#, "1", "1").replace('}', r#","spicy":true}"#),
            "",
        ))
        .answer(201),
    );
    let server_owned = concat!(
        r#","id":"00000000-0000-0000-0000-000000000001","status":"DELIVERED","#,
        r#""version":99,"paymentId":"stolen","createdAt":"2000-01-01T00:00:00Z""#
    );
    c.push(
        case(
            CREATE,
            "create: server-owned members are ignored (no mass assignment)",
            "POST",
            "/api/orders",
        )
        .json(create_body(r#""c-1""#, &good_item(), server_owned))
        .answer(201)
        .holds("/status", json!("PENDING"))
        .holds("/version", json!(1))
        .holds("/paymentId", Value::Null),
    );
    c.push(
        case(
            CREATE,
            "create: 10,000 nested arrays in an unknown member",
            "POST",
            "/api/orders",
        )
        .json(create_body(
            r#""c-1""#,
            &good_item(),
            &format!(
                r#","x":{}{}"#,
                "[".repeat(TEN_THOUSAND),
                "]".repeat(TEN_THOUSAND)
            ),
        ))
        .answer(201),
    );
    c.push(
        case(
            CREATE,
            "create: totalAmount null counts as absent",
            "POST",
            "/api/orders",
        )
        .json(create_body(
            r#""c-1""#,
            &good_item(),
            r#","totalAmount":null"#,
        ))
        .answer(201),
    );

    // --- content types ---------------------------------------------------------------
    let valid = order_body("c-1", "r-1").to_string();
    c.push(
        case(CREATE, "create: no Content-Type", "POST", "/api/orders")
            .body(&valid)
            .problem(415),
    );
    c.push(
        case(
            CREATE,
            "create: no Content-Type and no body",
            "POST",
            "/api/orders",
        )
        .problem(415),
    );
    for ct in [
        "text/plain",
        "text/json",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/xml",
        "application/jsonx",
        "application/json, text/plain",
        "",
    ] {
        c.push(
            case(
                CREATE,
                format!("create: Content-Type {ct:?}"),
                "POST",
                "/api/orders",
            )
            .header("content-type", ct)
            .body(&valid)
            .problem(415),
        );
    }
    c.push(
        case(
            CREATE,
            "create: a Content-Type that is not UTF-8",
            "POST",
            "/api/orders",
        )
        .header("content-type", b"application/\xffjson")
        .body(&valid)
        .problem(415),
    );
    for ct in [
        "application/json; charset=utf-8",
        "APPLICATION/JSON",
        "application/merge-patch+json",
    ] {
        c.push(
            case(
                CREATE,
                format!("create: Content-Type {ct:?} is JSON"),
                "POST",
                "/api/orders",
            )
            .header("content-type", ct)
            .body(&valid)
            .answer(201),
        );
    }
    c.push(
        case(CREATE, "create: a form body", "POST", "/api/orders")
            .header("content-type", "application/x-www-form-urlencoded")
            .body("customerId=c-1&restaurantId=r-1")
            .problem(415),
    );

    // --- headers ---------------------------------------------------------------------
    for (name, key) in [
        ("an empty Idempotency-Key", b"".to_vec()),
        ("a 256-character Idempotency-Key", vec![b'k'; 256]),
        ("an Idempotency-Key with a space", b"a b".to_vec()),
        ("a non-ASCII Idempotency-Key", "clé".as_bytes().to_vec()),
        ("an Idempotency-Key with a raw 0xFF", b"k\xff".to_vec()),
    ] {
        c.push(
            case(CREATE, format!("create: {name}"), "POST", "/api/orders")
                .json(&valid)
                .header("idempotency-key", key)
                .problem(400),
        );
    }
    c.push(
        case(
            CREATE,
            "create: an invalid X-Correlation-Id is replaced, not refused",
            "POST",
            "/api/orders",
        )
        .json(&valid)
        .header("x-correlation-id", "not valid ".repeat(20))
        .answer(201),
    );
    c.push(
        case(
            CREATE,
            "create: query parameters are ignored",
            "POST",
            "/api/orders?status=BOGUS&page=-1",
        )
        .json(&valid)
        .answer(201),
    );

    // --- GET /api/orders: bad query parameters ---------------------------------------
    const SEARCH: &str = "GET /api/orders";
    for q in [
        "page=-1",
        "page=1e9",
        "page=1000001",
        "page=abc",
        "page=",
        "page=1.5",
        "page=%2B1",
        "page=18446744073709551616",
        "size=0",
        "size=101",
        "size=1e9",
        "size=-5",
        "size=18446744073709551616",
        "size=%00",
        "status=BOGUS",
        "status=",
        "status=PENDING%00",
        "status=%20PENDING",
        "status=%27%20OR%201%3D1%20--",
        "page=%ZZ",
    ] {
        c.push(
            case(
                DLQ_SEARCH,
                format!("search: {q}"),
                "GET",
                format!("/api/orders?{q}"),
            )
            .problem(400),
        );
    }
    c.push(
        case(
            SEARCH,
            "search: a 201-character customerId",
            "GET",
            format!("/api/orders?customerId={}", "c".repeat(201)),
        )
        .problem(400),
    );
    c.push(
        case(
            SEARCH,
            "search: a 201-character restaurantId",
            "GET",
            format!("/api/orders?restaurantId={}", "r".repeat(201)),
        )
        .problem(400),
    );
    for q in [
        "status=pending",
        "customerId=%27%20OR%201%3D1%20--",
        "customerId=%00",
        "customerId=%F0%9F%98%80",
        "customerId=%E2%80%AE",
        "restaurantId=%FF",
        "customerId=",
        "unknown=1",
        "page=1000000&size=100",
    ] {
        c.push(
            case(
                DLQ_SEARCH,
                format!("search: {q} (valid)"),
                "GET",
                format!("/api/orders?{q}"),
            )
            .answer(200),
        );
    }
    c.push(
        case(
            SEARCH,
            "search: a junk body is ignored",
            "GET",
            "/api/orders",
        )
        .header("content-type", "text/plain")
        .body("junk")
        .answer(200),
    );

    // --- path ids --------------------------------------------------------------------
    const ORDER_ID_OPS: [(&str, &str, &str); 7] = [
        ("GET /api/orders/{id}", "GET", ""),
        ("GET /api/orders/{id}/events", "GET", "/events"),
        (
            "PUT /api/orders/{id}/confirm",
            "PUT",
            "/confirm?paymentId=p-1",
        ),
        ("PUT /api/orders/{id}/cancel", "PUT", "/cancel"),
        ("PUT /api/orders/{id}/prepare", "PUT", "/prepare"),
        ("PUT /api/orders/{id}/ready", "PUT", "/ready"),
        ("PUT /api/orders/{id}/deliver", "PUT", "/deliver"),
    ];
    let mut extra_ids = odd_ids();
    extra_ids.extend([
        (
            "a UUID without hyphens",
            "0123456789abcdef0123456789abcdef".to_owned(),
        ),
        (
            "a braced UUID",
            "%7B01234567-89ab-cdef-0123-456789abcdef%7D".to_owned(),
        ),
        (
            "a urn:uuid",
            "urn:uuid:01234567-89ab-cdef-0123-456789abcdef".to_owned(),
        ),
        (
            "a UUID with a trailing blank",
            "01234567-89ab-cdef-0123-456789abcdef%20".to_owned(),
        ),
        ("a number", "42".to_owned()),
    ]);
    for (op, method, suffix) in ORDER_ID_OPS {
        for (what, id) in &extra_ids {
            c.push(
                case(
                    op,
                    format!("{op}: id {what}"),
                    method,
                    format!("/api/orders/{id}{suffix}"),
                )
                .problem(400),
            );
        }
        c.push(
            case(
                op,
                format!("{op}: an unknown order"),
                method,
                format!("/api/orders/{{missing}}{suffix}"),
            )
            .problem(404),
        );
        c.push(
            case(
                op,
                format!("{op}: a raw ../ in the path"),
                method,
                format!("/api/orders/../../etc/passwd{suffix}"),
            )
            .problem(404),
        );
    }
    for (what, id) in odd_ids() {
        let expect = match what {
            "10,000 characters"
            | "invalid UTF-8 (%FF)"
            | "an encoded lone surrogate (%ED%A0%80)" => Expect::Problem(400),
            _ => Expect::Answer(200),
        };
        let mut k = case(
            "GET /api/orders/customer/{customerId}",
            format!("customer orders: id {what}"),
            "GET",
            format!("/api/orders/customer/{id}"),
        );
        k.expect = expect;
        c.push(k);
    }
    const CUSTOMER: &str = "GET /api/orders/customer/{customerId}";
    c.push(
        case(
            CUSTOMER,
            "customer orders: an empty id (no such route)",
            "GET",
            "/api/orders/customer/",
        )
        .problem(404),
    );
    for q in ["status=BOGUS", "page=-1", "size=1e9", "size=0", "page=abc"] {
        c.push(
            case(
                CUSTOMER,
                format!("customer orders: {q}"),
                "GET",
                format!("/api/orders/customer/c-1?{q}"),
            )
            .problem(400),
        );
    }

    // --- GET /api/orders/{id}: time travel -------------------------------------------
    const GET: &str = "GET /api/orders/{id}";
    for q in [
        "version=0",
        "version=-1",
        "version=abc",
        "version=",
        "version=1e3",
        "version=%2B1",
        "version=18446744073709551616",
        "version=9223372036854775808",
        "version=1&asOf=2024-01-01T00:00:00Z",
        "asOf=yesterday",
        "asOf=",
        "asOf=2024-02-30T00:00:00Z",
        "asOf=2024-01-01T24:00:00Z",
        "asOf=2024-01-01",
        "asOf=1e400",
        "asOf=%00",
        "asOf=-262144-01-01T00:00:00Z",
    ] {
        c.push(
            case(
                GET,
                format!("get: {q}"),
                "GET",
                format!("/api/orders/{{order}}?{q}"),
            )
            .problem(400),
        );
    }
    for q in [
        "version=2",
        "version=9223372036854775807",
        "asOf=0000-01-01T00:00:00Z",
        "asOf=1900-01-01T00:00:00%2B23:59",
        "asOf=0000-01-01T00:00:00%2B23:59",
        "asOf=0999-12-31T00:00:00Z",
    ] {
        c.push(
            case(
                GET,
                format!("get: {q} (no such state)"),
                "GET",
                format!("/api/orders/{{order}}?{q}"),
            )
            .problem(404),
        );
    }
    c.push(
        case(
            GET,
            "get: asOf past year 9999 in UTC (the current state)",
            "GET",
            "/api/orders/{order}?asOf=9999-12-31T23:59:59-23:59",
        )
        .answer(200)
        .holds("/version", json!(1)),
    );
    c.push(case(GET, "get: an upper-case UUID", "GET", "/api/orders/{ORDER}").answer(200));

    // --- PUT /api/orders/{id}/confirm ------------------------------------------------
    const CONFIRM: &str = "PUT /api/orders/{id}/confirm";
    let confirm = "/api/orders/{order}/confirm";
    for (name, body) in [
        ("malformed JSON", "{"),
        ("an array", r#"[{"paymentId":"p-1"}]"#),
        ("a string", r#""p-1""#),
        ("null", "null"),
        ("trailing garbage", r#"{"paymentId":"p-1"}}"#),
    ] {
        c.push(
            case(CONFIRM, format!("confirm: body {name}"), "PUT", confirm)
                .json(body)
                .problem(400),
        );
    }
    let big_payment = format!(r#"{{"paymentId":"{big}"}}"#);
    for (name, body) in [
        ("paymentId a number", r#"{"paymentId":5}"#),
        ("paymentId an object", r#"{"paymentId":{}}"#),
        ("paymentId null", r#"{"paymentId":null}"#),
        ("paymentId blank", r#"{"paymentId":"   "}"#),
        ("paymentId with a NUL", r#"{"paymentId":"p\u0000"}"#),
        ("paymentId a lone surrogate", r#"{"paymentId":"\ud800"}"#),
        ("paymentId 100 KB", big_payment.as_str()),
        ("an empty object", "{}"),
    ] {
        c.push(
            case(CONFIRM, format!("confirm: {name}"), "PUT", confirm)
                .json(body)
                .problem(422),
        );
    }
    c.push(case(CONFIRM, "confirm: no body, no paymentId", "PUT", confirm).problem(422));
    c.push(
        case(CONFIRM, "confirm: an empty JSON body", "PUT", confirm)
            .json("")
            .problem(422),
    );
    c.push(
        case(
            CONFIRM,
            "confirm: an empty paymentId= beside a valid body",
            "PUT",
            "/api/orders/{order}/confirm?paymentId=",
        )
        .json(r#"{"paymentId":"p-1"}"#)
        .problem(422),
    );
    c.push(
        case(
            CONFIRM,
            "confirm: paymentId=%00",
            "PUT",
            "/api/orders/{order}/confirm?paymentId=%00",
        )
        .problem(422),
    );
    c.push(
        case(
            CONFIRM,
            "confirm: a 65-character paymentId",
            "PUT",
            format!("/api/orders/{{order}}/confirm?paymentId={}", "p".repeat(65)),
        )
        .problem(422),
    );
    c.push(
        case(CONFIRM, "confirm: a text/plain body", "PUT", confirm)
            .header("content-type", "text/plain")
            .body(r#"{"paymentId":"p-1"}"#)
            .problem(415),
    );
    c.push(
        case(
            CONFIRM,
            "confirm: a body without Content-Type",
            "PUT",
            confirm,
        )
        .body(r#"{"paymentId":"p-1"}"#)
        .problem(415),
    );
    c.push(
        case(CONFIRM, "confirm: a 1.5 MB body", "PUT", confirm)
            .json(&over)
            .problem(413),
    );
    for im in [
        r#""abc""#,
        r#""99999999999999999999""#,
        r#""-1""#,
        r#""1", "2""#,
        r#""""#,
        "W/",
        r#""1"#,
    ] {
        c.push(
            case(
                CONFIRM,
                format!("confirm: If-Match {im}"),
                "PUT",
                "/api/orders/{order}/confirm?paymentId=p-1",
            )
            .header("if-match", im)
            .problem(400),
        );
    }
    c.push(
        case(
            CONFIRM,
            "confirm: If-Match not UTF-8",
            "PUT",
            "/api/orders/{order}/confirm?paymentId=p-1",
        )
        .header("if-match", b"\"\xff\"")
        .problem(400),
    );
    c.push(
        case(
            CONFIRM,
            "confirm: a stale If-Match (nothing written)",
            "PUT",
            "/api/orders/{order}/confirm?paymentId=p-1",
        )
        .header("if-match", "\"999999999999999999\"")
        .problem(412),
    );
    c.push(
        case(
            CONFIRM,
            "confirm: an unknown member is ignored",
            "PUT",
            "/api/orders/{fresh}/confirm",
        )
        .json(r#"{"paymentId":"p-1","tip":5}"#)
        .answer(200)
        .holds("/paymentId", json!("p-1")),
    );
    c.push(
        case(
            CONFIRM,
            "confirm: SQL metacharacters are just a payment id",
            "PUT",
            "/api/orders/{fresh}/confirm?paymentId=%27%20OR%201%3D1%20--",
        )
        .answer(200)
        .holds("/paymentId", json!("' OR 1=1 --")),
    );
    c.push(
        case(
            CONFIRM,
            "confirm: an emoji payment id",
            "PUT",
            "/api/orders/{fresh}/confirm",
        )
        .json(r#"{"paymentId":"💳"}"#)
        .answer(200)
        .holds("/status", json!("CONFIRMED")),
    );
    // As for create, a repeated member of a transition body is ambiguous
    // and refused (the body is read into its typed struct).
    c.push(
        case(
            CONFIRM,
            "confirm: a duplicate member",
            "PUT",
            "/api/orders/{fresh}/confirm",
        )
        .json(r#"{"paymentId":"p-1","paymentId":"p-2"}"#)
        .problem(400),
    );

    // --- PUT /api/orders/{id}/cancel -------------------------------------------------
    const CANCEL: &str = "PUT /api/orders/{id}/cancel";
    let cancel = "/api/orders/{order}/cancel";
    for (name, body) in [
        ("malformed JSON", r#"{"reason":"#),
        ("an array", "[]"),
        ("a number", "1"),
    ] {
        c.push(
            case(CANCEL, format!("cancel: body {name}"), "PUT", cancel)
                .json(body)
                .problem(400),
        );
    }
    let big_reason = format!(r#"{{"reason":"{big}"}}"#);
    for (name, body) in [
        ("reason a number", r#"{"reason":5}"#),
        ("reason an array", r#"{"reason":["a"]}"#),
        ("reason with a NUL", r#"{"reason":"a\u0000"}"#),
        ("reason a lone surrogate", r#"{"reason":"\udfff"}"#),
        ("reason 100 KB", big_reason.as_str()),
    ] {
        c.push(
            case(CANCEL, format!("cancel: {name}"), "PUT", cancel)
                .json(body)
                .problem(422),
        );
    }
    c.push(
        case(
            CANCEL,
            "cancel: a 501-character reason",
            "PUT",
            format!("/api/orders/{{order}}/cancel?reason={}", "r".repeat(501)),
        )
        .problem(422),
    );
    c.push(
        case(
            CANCEL,
            "cancel: reason=%07 (a control character)",
            "PUT",
            "/api/orders/{order}/cancel?reason=%07",
        )
        .problem(422),
    );
    c.push(
        case(
            CANCEL,
            "cancel: a valid reason in the query, a control character in the body's",
            "PUT",
            "/api/orders/{order}/cancel?reason=ok",
        )
        .json(r#"{"reason":"\u0007"}"#)
        .problem(422),
    );
    c.push(
        case(
            CONFIRM,
            "confirm: a valid paymentId in the query, a blank one in the body",
            "PUT",
            "/api/orders/{order}/confirm?paymentId=p-1",
        )
        .json(r#"{"paymentId":"  "}"#)
        .problem(422),
    );
    c.push(
        case(CANCEL, "cancel: a text/plain body", "PUT", cancel)
            .header("content-type", "text/plain")
            .body("changed my mind")
            .problem(415),
    );
    c.push(
        case(CANCEL, "cancel: a 1.5 MB chunked body", "PUT", cancel)
            .json(&over)
            .chunked()
            .problem(413),
    );
    c.push(
        case(CANCEL, "cancel: If-Match garbage", "PUT", cancel)
            .header("if-match", "yesterday")
            .problem(400),
    );
    c.push(
        case(
            CANCEL,
            "cancel: no body (a reason is optional)",
            "PUT",
            "/api/orders/{fresh}/cancel",
        )
        .answer(200)
        .holds("/status", json!("CANCELLED")),
    );
    c.push(
        case(
            CANCEL,
            "cancel: an empty object",
            "PUT",
            "/api/orders/{fresh}/cancel",
        )
        .json("{}")
        .answer(200)
        .holds("/cancellationReason", Value::Null),
    );
    c.push(
        case(
            CANCEL,
            "cancel: an RTL and emoji reason",
            "PUT",
            "/api/orders/{fresh}/cancel",
        )
        .json(r#"{"reason":"\u202etoo late 😡"}"#)
        .answer(200)
        .holds("/cancellationReason", json!("\u{202e}too late 😡")),
    );

    // --- prepare / ready / deliver take no body --------------------------------------
    for (op, verb) in [
        ("PUT /api/orders/{id}/prepare", "prepare"),
        ("PUT /api/orders/{id}/ready", "ready"),
        ("PUT /api/orders/{id}/deliver", "deliver"),
    ] {
        let path = format!("/api/orders/{{order}}/{verb}");
        c.push(
            case(
                op,
                format!("{verb}: a PENDING order (illegal, nothing written)"),
                "PUT",
                &path,
            )
            .problem(409),
        );
        c.push(
            case(op, format!("{verb}: a junk body is ignored"), "PUT", &path)
                .header("content-type", "text/plain")
                .body("junk")
                .problem(409),
        );
        c.push(
            case(
                op,
                format!("{verb}: a 1.5 MB body is never read"),
                "PUT",
                &path,
            )
            .json(&over)
            .problem(409),
        );
        c.push(
            case(op, format!("{verb}: If-Match garbage"), "PUT", &path)
                .header("if-match", "\"v1\"")
                .problem(400),
        );
        c.push(
            case(op, format!("{verb}: a stale If-Match"), "PUT", &path)
                .header("if-match", "\"7\"")
                .problem(412),
        );
    }

    // --- DLQ -------------------------------------------------------------------------
    for (op, method, prefix) in [
        ("GET /api/dlq/event/{eventId}", "GET", "/api/dlq/event/"),
        ("POST /api/dlq/replay/{eventId}", "POST", "/api/dlq/replay/"),
        ("PUT /api/dlq/reset/{eventId}", "PUT", "/api/dlq/reset/"),
    ] {
        for (what, id) in odd_ids() {
            let status = match what {
                "invalid UTF-8 (%FF)" | "an encoded lone surrogate (%ED%A0%80)" => 400,
                _ => 404,
            };
            c.push(
                case(
                    op,
                    format!("{op}: id {what}"),
                    method,
                    format!("{prefix}{id}"),
                )
                .problem(status),
            );
        }
        c.push(
            case(
                op,
                format!("{op}: an unknown UUID"),
                method,
                format!("{prefix}{{missing}}"),
            )
            .problem(404),
        );
        c.push(
            case(
                op,
                format!("{op}: a junk body is ignored"),
                method,
                format!("{prefix}{{missing}}"),
            )
            .header("content-type", "text/plain")
            .body("junk")
            .problem(404),
        );
    }
    const BY_STATUS: &str = "GET /api/dlq/status/{status}";
    for (what, id) in odd_ids() {
        c.push(
            case(
                BY_STATUS,
                format!("dlq by status: {what}"),
                "GET",
                format!("/api/dlq/status/{id}"),
            )
            .problem(400),
        );
    }
    for s in ["BOGUS", "PENDING%00", "%20PENDING", "PENDING%20", "0"] {
        c.push(
            case(
                BY_STATUS,
                format!("dlq by status: {s}"),
                "GET",
                format!("/api/dlq/status/{s}"),
            )
            .problem(400),
        );
    }
    for q in ["page=-1", "size=1e9", "size=0", "page=1000001"] {
        c.push(
            case(
                BY_STATUS,
                format!("dlq by status: {q}"),
                "GET",
                format!("/api/dlq/status/PENDING?{q}"),
            )
            .problem(400),
        );
    }
    c.push(
        case(
            BY_STATUS,
            "dlq by status: lower case (valid)",
            "GET",
            "/api/dlq/status/failed",
        )
        .answer(200),
    );
    const PENDING: &str = "GET /api/dlq/pending";
    for q in [
        "page=-1",
        "page=1e9",
        "size=1e9",
        "size=0",
        "size=101",
        "page=%ZZ",
        "size=%F0%9F%98%80",
    ] {
        c.push(
            case(
                PENDING,
                format!("dlq pending: {q}"),
                "GET",
                format!("/api/dlq/pending?{q}"),
            )
            .problem(400),
        );
    }
    c.push(
        case(
            PENDING,
            "dlq pending: an unknown parameter is ignored",
            "GET",
            "/api/dlq/pending?status=BOGUS",
        )
        .answer(200),
    );
    const BULK: &str = "POST /api/dlq/replay";
    for (name, body) in [
        ("malformed JSON", "{"),
        ("an empty array", "[]"),
        (
            "an array of its members' values",
            r#"[1,true,"o-1","OrderCreated"]"#,
        ),
        ("null", "null"),
        ("a number", "5"),
        ("limit 0", r#"{"limit":0}"#),
        ("limit 1001 on a dry run", r#"{"limit":1001,"dryRun":true}"#),
        ("limit past a job's", r#"{"limit":100000001}"#),
        ("limit -1", r#"{"limit":-1}"#),
        ("limit 1e400", r#"{"limit":1e400}"#),
        ("limit 2^64", r#"{"limit":18446744073709551616}"#),
        ("limit a string", r#"{"limit":"5"}"#),
        ("limit a fraction", r#"{"limit":1.5}"#),
        ("dryRun a string", r#"{"dryRun":"yes"}"#),
        ("aggregateId a number", r#"{"aggregateId":5}"#),
        ("eventType an object", r#"{"eventType":{}}"#),
        (
            "a lone surrogate",
            r#"{"dryRun":true,"aggregateId":"\ud800"}"#,
        ),
        ("a duplicate member", r#"{"limit":1,"limit":2}"#),
        // additionalProperties: false in the schema.
        ("an unknown member", r#"{"dryRun":true,"everything":true}"#),
        ("status REPLAYED", r#"{"dryRun":true,"status":"REPLAYED"}"#),
        ("status a number", r#"{"dryRun":true,"status":5}"#),
        ("from not a time", r#"{"dryRun":true,"from":"yesterday"}"#),
        ("to a number", r#"{"dryRun":true,"to":1714557600}"#),
        (
            "from after to",
            r#"{"dryRun":true,"from":"2024-05-02T00:00:00Z","to":"2024-05-01T00:00:00Z"}"#,
        ),
    ] {
        c.push(
            case(
                BULK,
                format!("bulk replay: {name}"),
                "POST",
                "/api/dlq/replay",
            )
            .json(body)
            .problem(400),
        );
    }
    c.push(
        case(
            BULK,
            "bulk replay: a text/plain body",
            "POST",
            "/api/dlq/replay",
        )
        .header("content-type", "text/plain")
        .body(r#"{"dryRun":true}"#)
        .problem(415),
    );
    c.push(
        case(
            BULK,
            "bulk replay: a 1.5 MB body",
            "POST",
            "/api/dlq/replay",
        )
        .json(&over)
        .problem(413),
    );
    let big_aggregate = format!(r#"{{"dryRun":true,"aggregateId":"{big}"}}"#);
    for (name, body) in [
        (
            "a NUL aggregateId matches nothing",
            r#"{"dryRun":true,"aggregateId":"\u0000"}"#,
        ),
        (
            "an emoji eventType matches nothing",
            r#"{"dryRun":true,"eventType":"😀"}"#,
        ),
        (
            "SQL metacharacters match nothing",
            r#"{"dryRun":true,"aggregateId":"' OR 1=1 --"}"#,
        ),
        (
            "a 100 KB aggregateId matches nothing",
            big_aggregate.as_str(),
        ),
        (
            "a time window in the year 1 matches nothing",
            r#"{"dryRun":true,"status":"FAILED","from":"0001-01-01T00:00:00Z","to":"0001-01-02T00:00:00+01:00"}"#,
        ),
    ] {
        c.push(
            case(
                BULK,
                format!("bulk replay: {name}"),
                "POST",
                "/api/dlq/replay",
            )
            .json(body)
            .answer(200)
            .holds("/matched", json!(0)),
        );
    }
    const JOBS: &str = "GET /api/dlq/jobs";
    for q in ["page=-1", "page=1e9", "size=0", "size=101", "page=%ZZ"] {
        c.push(
            case(
                JOBS,
                format!("replay jobs: {q}"),
                "GET",
                format!("/api/dlq/jobs?{q}"),
            )
            .problem(400),
        );
    }
    c.push(case(JOBS, "replay jobs: the first page", "GET", "/api/dlq/jobs").answer(200));
    for (op, method) in [
        ("GET /api/dlq/jobs/{jobId}", "GET"),
        ("DELETE /api/dlq/jobs/{jobId}", "DELETE"),
    ] {
        let mut ids = odd_ids();
        ids.push(("an unknown UUID", "{missing}".to_owned()));
        ids.push(("an event id, not a job id", "e-1".to_owned()));
        for (what, id) in ids {
            let status = match what {
                "invalid UTF-8 (%FF)" | "an encoded lone surrogate (%ED%A0%80)" => 400,
                _ => 404,
            };
            c.push(
                case(
                    op,
                    format!("replay job ({method}): id {what}"),
                    method,
                    format!("/api/dlq/jobs/{id}"),
                )
                .problem(status),
            );
        }
    }
    const SKIP: &str = "POST /api/dlq/skip/{eventId}";
    let reason = r#"{"reason":"poison"}"#;
    for (what, id) in odd_ids() {
        let status = match what {
            "invalid UTF-8 (%FF)" | "an encoded lone surrogate (%ED%A0%80)" => 400,
            _ => 404,
        };
        c.push(
            case(
                SKIP,
                format!("skip: id {what}"),
                "POST",
                format!("/api/dlq/skip/{id}"),
            )
            .json(reason)
            .problem(status),
        );
    }
    c.push(
        case(
            SKIP,
            "skip: an unknown UUID",
            "POST",
            "/api/dlq/skip/{missing}",
        )
        .json(reason)
        .problem(404),
    );
    let long_reason = format!(r#"{{"reason":"{}"}}"#, "r".repeat(501));
    for (name, body) in [
        ("no body", ""),
        ("malformed JSON", "{"),
        ("an empty object", "{}"),
        ("an array", r#"["poison"]"#),
        ("null", "null"),
        ("reason null", r#"{"reason":null}"#),
        ("reason empty", r#"{"reason":""}"#),
        ("reason blank", r#"{"reason":"  "}"#),
        ("reason a number", r#"{"reason":5}"#),
        ("reason 501 characters", long_reason.as_str()),
        ("a lone surrogate", r#"{"reason":"\ud800"}"#),
        ("an unknown member", r#"{"reason":"x","force":true}"#),
    ] {
        c.push(
            case(
                SKIP,
                format!("skip: {name}"),
                "POST",
                "/api/dlq/skip/{missing}",
            )
            .json(body)
            .problem(400),
        );
    }
    c.push(
        case(
            SKIP,
            "skip: a text/plain body",
            "POST",
            "/api/dlq/skip/{missing}",
        )
        .header("content-type", "text/plain")
        .body(reason)
        .problem(415),
    );
    c.push(
        case(
            SKIP,
            "skip: a 1.5 MB body",
            "POST",
            "/api/dlq/skip/{missing}",
        )
        .json(&over)
        .problem(413),
    );
    // --- DLQ revisions (edit before replay) and their review ---------------------
    const REVISIONS: &str = "GET /api/dlq/{eventId}/revisions";
    const REVISE: &str = "POST /api/dlq/{eventId}/revisions";
    const APPROVE: &str = "POST /api/dlq/{eventId}/revisions/{revision}/approve";
    const REJECT: &str = "POST /api/dlq/{eventId}/revisions/{revision}/reject";
    let fix = r#"{"reason":"fix","patch":[{"op":"add","path":"/data/totalAmount","value":"1"}]}"#;
    for (what, id) in odd_ids() {
        let status = match what {
            "invalid UTF-8 (%FF)" | "an encoded lone surrogate (%ED%A0%80)" => 400,
            _ => 404,
        };
        c.push(
            case(
                REVISIONS,
                format!("revisions: id {what}"),
                "GET",
                format!("/api/dlq/{id}/revisions"),
            )
            .problem(status),
        );
        c.push(
            case(
                REVISE,
                format!("revise: id {what}"),
                "POST",
                format!("/api/dlq/{id}/revisions"),
            )
            .json(fix)
            .problem(status),
        );
        for (op, verb) in [(APPROVE, "approve"), (REJECT, "reject")] {
            c.push(
                case(
                    op,
                    format!("{verb}: id {what}"),
                    "POST",
                    format!("/api/dlq/{id}/revisions/1/{verb}"),
                )
                .problem(status),
            );
        }
    }
    c.push(
        case(
            REVISIONS,
            "revisions: an unknown UUID",
            "GET",
            "/api/dlq/{missing}/revisions",
        )
        .problem(404),
    );
    c.push(
        case(
            REVISE,
            "revise: an unknown UUID",
            "POST",
            "/api/dlq/{missing}/revisions",
        )
        .json(fix)
        .problem(404),
    );
    let long_reason = format!(r#"{{"reason":"{}","message":{{}}}}"#, "r".repeat(501));
    for (name, body) in [
        ("no body", ""),
        ("malformed JSON", "{"),
        ("an empty object", "{}"),
        ("an array", r#"[{"op":"add"}]"#),
        ("null", "null"),
        ("no reason", r#"{"message":{}}"#),
        ("reason blank", r#"{"reason":"  ","message":{}}"#),
        ("reason a number", r#"{"reason":5,"message":{}}"#),
        ("reason 501 characters", long_reason.as_str()),
        (
            "reason with a control character",
            r#"{"reason":"a\u0007","message":{}}"#,
        ),
        ("neither patch nor message", r#"{"reason":"fix"}"#),
        (
            "both patch and message",
            r#"{"reason":"fix","patch":[],"message":{}}"#,
        ),
        (
            "patch an object",
            r#"{"reason":"fix","patch":{"op":"add"}}"#,
        ),
        (
            "basedOn negative",
            r#"{"reason":"fix","message":{},"basedOn":-1}"#,
        ),
        (
            "basedOn a string",
            r#"{"reason":"fix","message":{},"basedOn":"1"}"#,
        ),
        (
            "an unknown member",
            r#"{"reason":"fix","message":{},"force":true}"#,
        ),
        ("a lone surrogate", r#"{"reason":"\ud800","message":{}}"#),
    ] {
        c.push(
            case(
                REVISE,
                format!("revise: {name}"),
                "POST",
                "/api/dlq/{missing}/revisions",
            )
            .json(body)
            .problem(400),
        );
    }
    c.push(
        case(
            REVISE,
            "revise: a text/plain body",
            "POST",
            "/api/dlq/{missing}/revisions",
        )
        .header("content-type", "text/plain")
        .body(fix)
        .problem(415),
    );
    c.push(
        case(
            REVISE,
            "revise: a 1.5 MB body",
            "POST",
            "/api/dlq/{missing}/revisions",
        )
        .json(&over)
        .problem(413),
    );
    for (op, verb) in [(APPROVE, "approve"), (REJECT, "reject")] {
        for revision in ["0", "-1", "abc", "99999999999", "1.5"] {
            c.push(
                case(
                    op,
                    format!("{verb}: revision {revision}"),
                    "POST",
                    format!("/api/dlq/{{missing}}/revisions/{revision}/{verb}"),
                )
                .problem(404),
            );
        }
        c.push(
            case(
                op,
                format!("{verb}: an unknown UUID"),
                "POST",
                format!("/api/dlq/{{missing}}/revisions/1/{verb}"),
            )
            .problem(404),
        );
        for (name, body) in [
            ("malformed JSON", "{"),
            ("an array", "[]"),
            ("null", "null"),
            ("note empty", r#"{"note":""}"#),
            ("note a number", r#"{"note":5}"#),
            ("an unknown member", r#"{"note":"ok","force":true}"#),
        ] {
            c.push(
                case(
                    op,
                    format!("{verb}: {name}"),
                    "POST",
                    format!("/api/dlq/{{missing}}/revisions/1/{verb}"),
                )
                .json(body)
                .problem(400),
            );
        }
        c.push(
            case(
                op,
                format!("{verb}: a text/plain body"),
                "POST",
                format!("/api/dlq/{{missing}}/revisions/1/{verb}"),
            )
            .header("content-type", "text/plain")
            .body("{}")
            .problem(415),
        );
    }
    const AUDIT: &str = "GET /api/dlq/audit";
    for q in [
        "action=BOGUS",
        "action=%00",
        "from=yesterday",
        "from=2024-05-01",
        "to=2024-13-01T00:00:00Z",
        "from=2024-05-02T00:00:00Z&to=2024-05-01T00:00:00Z",
        "page=-1",
        "page=x",
        "size=0",
        "size=101",
        "from=%ZZ",
        // Empty is not an instant (found by schemathesis).
        "from=",
        "to=",
    ] {
        c.push(
            case(
                AUDIT,
                format!("audit: {q}"),
                "GET",
                format!("/api/dlq/audit?{q}"),
            )
            .problem(400),
        );
    }
    c.push(
        case(
            AUDIT,
            "audit: a 256-character principal",
            "GET",
            format!("/api/dlq/audit?principal={}", "p".repeat(256)),
        )
        .problem(400),
    );
    for (name, q) in [
        (
            "SQL metacharacters match nothing",
            "principal=%27%20OR%201%3D1%20--",
        ),
        ("an unknown target matches nothing", "target=never-acted-on"),
        (
            "an unknown parameter is ignored",
            "bogus=1&principal=nobody",
        ),
    ] {
        c.push(
            case(
                AUDIT,
                format!("audit: {name}"),
                "GET",
                format!("/api/dlq/audit?{q}"),
            )
            .answer(200)
            .holds("/totalElements", json!(0)),
        );
    }
    // --- DLQ search, export and import ------------------------------------------------
    const DLQ_SEARCH: &str = "GET /api/dlq/search";
    const EXPORT: &str = "GET /api/dlq/export";
    const IMPORT: &str = "POST /api/dlq/import";
    let long_text = format!("q={}", "x".repeat(256));
    let long_id = format!("customerId={}", "c".repeat(256));
    for q in [
        "status=BOGUS",
        "status=%00",
        "source=ELSEWHERE",
        "from=yesterday",
        "from=",
        "to=2024-13-01T00:00:00Z",
        "from=2024-05-02T00:00:00Z&to=2024-05-01T00:00:00Z",
        long_text.as_str(),
        long_id.as_str(),
    ] {
        for (op, path) in [(DLQ_SEARCH, "/api/dlq/search"), (EXPORT, "/api/dlq/export")] {
            c.push(case(op, format!("{path}: {q}"), "GET", format!("{path}?{q}")).problem(400));
        }
    }
    for q in ["after=garbage", "size=0", "page=-1"] {
        c.push(
            case(
                DLQ_SEARCH,
                format!("search: {q}"),
                "GET",
                format!("/api/dlq/search?{q}"),
            )
            .problem(400),
        );
    }
    for q in ["limit=0", "limit=100001", "limit=x"] {
        c.push(
            case(
                EXPORT,
                format!("export: {q}"),
                "GET",
                format!("/api/dlq/export?{q}"),
            )
            .problem(400),
        );
    }
    for (name, q) in [
        (
            "SQL metacharacters match nothing",
            "q=%27%20OR%201%3D1%20--",
        ),
        ("a NUL matches nothing", "q=%00"),
        ("wildcards are literal", "q=%25_%25"),
    ] {
        c.push(
            case(
                DLQ_SEARCH,
                format!("search: {name}"),
                "GET",
                format!("/api/dlq/search?{q}"),
            )
            .answer(200)
            .holds("/totalElements", Value::Null),
        );
        c.push(
            case(
                EXPORT,
                format!("export: {name}"),
                "GET",
                format!("/api/dlq/export?{q}"),
            )
            .answer(200),
        );
    }
    c.push(
        case(
            DLQ_SEARCH,
            "search: an unknown customer",
            "GET",
            "/api/dlq/search?customerId=nobody",
        )
        .answer(200)
        .holds("/totalElements", json!(0)),
    );
    for (name, content_type, body) in [
        ("import: JSON is not NDJSON", Some("application/json"), "{}"),
        ("import: no content type", None, "{}"),
        ("import: text", Some("text/plain"), "{}"),
    ] {
        let mut k = case(IMPORT, name, "POST", "/api/dlq/import").body(body);
        if let Some(ct) = content_type {
            k = k.header("content-type", ct);
        }
        c.push(k.problem(415));
    }
    for (name, body) in [
        ("import: not JSON", "not json\n".to_owned()),
        ("import: an array line", "[]\n".to_owned()),
        (
            "import: an event id only",
            r#"{"eventId":"e-1"}"#.to_owned(),
        ),
        (
            "import: a 10,000-character event id",
            format!(r#"{{"eventId":"{}"}}"#, "e".repeat(TEN_THOUSAND)),
        ),
    ] {
        c.push(
            case(IMPORT, name, "POST", "/api/dlq/import")
                .header("content-type", "application/x-ndjson")
                .body(body)
                .problem(400),
        );
    }
    c.push(
        case(IMPORT, "import: invalid UTF-8", "POST", "/api/dlq/import")
            .header("content-type", "application/x-ndjson")
            .body(b"\xff\xfe\n")
            .problem(400),
    );
    c.push(
        case(
            IMPORT,
            "import: an empty file imports nothing",
            "POST",
            "/api/dlq/import",
        )
        .header("content-type", "application/x-ndjson")
        .body("\n\n")
        .answer(200)
        .holds("/imported", json!(0)),
    );
    c.push(
        case(
            "GET /api/dlq/stats",
            "dlq stats: junk query and body are ignored",
            "GET",
            "/api/dlq/stats?x=%ZZ",
        )
        .header("content-type", "text/plain")
        .body("junk")
        .answer(200),
    );

    // --- test, admin and ops endpoints: they take no input, junk is ignored ----------
    for (op, method, path, status) in [
        (
            "POST /api/test/publish-event",
            "POST",
            "/api/test/publish-event",
            200,
        ),
        ("POST /api/test/bus/up", "POST", "/api/test/bus/up", 200),
        (
            "POST /api/admin/read-model/rebuild",
            "POST",
            "/api/admin/read-model/rebuild",
            200,
        ),
        (
            "GET /api/test/kafka-status",
            "GET",
            "/api/test/kafka-status",
            200,
        ),
        ("GET /actuator/health", "GET", "/actuator/health", 200),
        ("GET /health/live", "GET", "/health/live", 200),
        ("GET /health/ready", "GET", "/health/ready", 200),
        (
            "GET /actuator/health/liveness",
            "GET",
            "/actuator/health/liveness",
            200,
        ),
        (
            "GET /actuator/health/readiness",
            "GET",
            "/actuator/health/readiness",
            200,
        ),
        ("GET /metrics", "GET", "/metrics", 200),
        ("GET /v3/api-docs", "GET", "/v3/api-docs", 200),
        ("GET /swagger-ui", "GET", "/swagger-ui", 200),
        ("GET /swagger-ui.html", "GET", "/swagger-ui.html", 308),
        ("GET /swagger-ui/", "GET", "/swagger-ui/", 200),
        (
            "GET /swagger-ui/assets/{file}",
            "GET",
            "/swagger-ui/assets/LICENSE",
            200,
        ),
        ("GET /dashboard", "GET", "/dashboard", 200),
        ("GET /dashboard/", "GET", "/dashboard/", 200),
        ("GET /dashboard/app.js", "GET", "/dashboard/app.js", 200),
        ("GET /dashboard/app.css", "GET", "/dashboard/app.css", 200),
    ] {
        c.push(
            case(
                op,
                format!("{op}: a junk body and query are ignored"),
                method,
                format!("{path}?x=%ZZ&page=-1"),
            )
            .header("content-type", "application/json")
            .body("{not json")
            .answer(status),
        );
    }
    // The switch itself is left alone: turning the bus off is not bad input.
    c.push(
        case(
            "POST /api/test/bus/down",
            "bus down: GET",
            "GET",
            "/api/test/bus/down",
        )
        .problem(405),
    );
    for file in [
        "..%2F..%2FCargo.toml",
        "%00",
        "swagger-ui.css%00.js",
        "%FF",
        &"a".repeat(TEN_THOUSAND),
    ] {
        let status = if file == "%FF" { 400 } else { 404 };
        c.push(
            case(
                "GET /swagger-ui/assets/{file}",
                format!("swagger asset {:.40}", file),
                "GET",
                format!("/swagger-ui/assets/{file}"),
            )
            .problem(status),
        );
    }

    // --- wrong methods: every operation, every method it lacks (405 with Allow) ------
    let paths: BTreeMap<&str, (&str, Vec<&str>)> = [
        ("/api/orders", ("/api/orders", vec!["GET", "POST"])),
        ("/api/orders/{id}", ("/api/orders/{order}", vec!["GET"])),
        (
            "/api/orders/{id}/events",
            ("/api/orders/{order}/events", vec!["GET"]),
        ),
        (
            "/api/orders/customer/{customerId}",
            ("/api/orders/customer/c-1", vec!["GET"]),
        ),
        (
            "/api/orders/{id}/confirm",
            ("/api/orders/{order}/confirm", vec!["PUT"]),
        ),
        (
            "/api/orders/{id}/cancel",
            ("/api/orders/{order}/cancel", vec!["PUT"]),
        ),
        (
            "/api/orders/{id}/prepare",
            ("/api/orders/{order}/prepare", vec!["PUT"]),
        ),
        (
            "/api/orders/{id}/ready",
            ("/api/orders/{order}/ready", vec!["PUT"]),
        ),
        (
            "/api/orders/{id}/deliver",
            ("/api/orders/{order}/deliver", vec!["PUT"]),
        ),
        ("/api/dlq/stats", ("/api/dlq/stats", vec!["GET"])),
        ("/api/dlq/pending", ("/api/dlq/pending", vec!["GET"])),
        (
            "/api/dlq/event/{eventId}",
            ("/api/dlq/event/e-1", vec!["GET"]),
        ),
        ("/api/dlq/replay", ("/api/dlq/replay", vec!["POST"])),
        (
            "/api/dlq/replay/{eventId}",
            ("/api/dlq/replay/e-1", vec!["POST"]),
        ),
        (
            "/api/dlq/reset/{eventId}",
            ("/api/dlq/reset/e-1", vec!["PUT"]),
        ),
        (
            "/api/dlq/status/{status}",
            ("/api/dlq/status/PENDING", vec!["GET"]),
        ),
        (
            "/api/dlq/skip/{eventId}",
            ("/api/dlq/skip/e-1", vec!["POST"]),
        ),
        (
            "/api/dlq/{eventId}/revisions",
            ("/api/dlq/e-1/revisions", vec!["GET", "POST"]),
        ),
        (
            "/api/dlq/{eventId}/revisions/{revision}/approve",
            ("/api/dlq/e-1/revisions/1/approve", vec!["POST"]),
        ),
        (
            "/api/dlq/{eventId}/revisions/{revision}/reject",
            ("/api/dlq/e-1/revisions/1/reject", vec!["POST"]),
        ),
        ("/api/dlq/audit", ("/api/dlq/audit", vec!["GET"])),
        ("/api/dlq/search", ("/api/dlq/search", vec!["GET"])),
        ("/api/dlq/export", ("/api/dlq/export", vec!["GET"])),
        ("/api/dlq/import", ("/api/dlq/import", vec!["POST"])),
        ("/api/dlq/jobs", ("/api/dlq/jobs", vec!["GET"])),
        (
            "/api/dlq/jobs/{jobId}",
            ("/api/dlq/jobs/{missing}", vec!["GET", "DELETE"]),
        ),
        (
            "/api/test/publish-event",
            ("/api/test/publish-event", vec!["POST"]),
        ),
        (
            "/api/test/kafka-status",
            ("/api/test/kafka-status", vec!["GET"]),
        ),
        ("/api/test/bus/down", ("/api/test/bus/down", vec!["POST"])),
        ("/api/test/bus/up", ("/api/test/bus/up", vec!["POST"])),
        (
            "/api/admin/read-model/rebuild",
            ("/api/admin/read-model/rebuild", vec!["POST"]),
        ),
        ("/actuator/health", ("/actuator/health", vec!["GET"])),
        ("/health/live", ("/health/live", vec!["GET"])),
        ("/health/ready", ("/health/ready", vec!["GET"])),
        (
            "/actuator/health/liveness",
            ("/actuator/health/liveness", vec!["GET"]),
        ),
        (
            "/actuator/health/readiness",
            ("/actuator/health/readiness", vec!["GET"]),
        ),
        ("/metrics", ("/metrics", vec!["GET"])),
        ("/v3/api-docs", ("/v3/api-docs", vec!["GET"])),
        ("/swagger-ui", ("/swagger-ui", vec!["GET"])),
        ("/swagger-ui.html", ("/swagger-ui.html", vec!["GET"])),
        ("/swagger-ui/", ("/swagger-ui/", vec!["GET"])),
        (
            "/swagger-ui/assets/{file}",
            ("/swagger-ui/assets/LICENSE", vec!["GET"]),
        ),
        ("/dashboard", ("/dashboard", vec!["GET"])),
        ("/dashboard/", ("/dashboard/", vec!["GET"])),
        ("/dashboard/app.js", ("/dashboard/app.js", vec!["GET"])),
        ("/dashboard/app.css", ("/dashboard/app.css", vec!["GET"])),
    ]
    .into_iter()
    .collect();
    for (template, (concrete, allowed)) in &paths {
        for method in [
            "GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "BREW",
        ] {
            if allowed.contains(&method) {
                continue;
            }
            let op = format!("{} {template}", allowed[0]);
            c.push(case(&op, format!("{method} {template}"), method, concrete).problem(405));
        }
    }

    // --- paths no route serves -------------------------------------------------------
    for path in [
        "/api/orderz",
        "/API/ORDERS",
        "/api/orders/",
        "//api/orders",
        "/api/orders/{order}/explode",
        "/api/dlq",
        "/%00",
        "/..%2F..%2Fetc%2Fpasswd",
    ] {
        c.push(case("-", format!("no such route {path}"), "GET", path).problem(404));
    }

    // --- what the HTTP/1 codec refuses before the application ------------------------
    c.push(
        case("-", "codec: a 500 KB header", "GET", "/api/orders")
            .header("x-big", "a".repeat(500 * 1024))
            .codec(431),
    );
    let mut many = case("-", "codec: 150 headers", "GET", "/api/orders").codec(431);
    for i in 0..150 {
        many = many.header(&format!("x-h{i}"), "v");
    }
    c.push(many);
    c.push(
        case(
            "-",
            "codec: a 100 KB request target",
            "GET",
            format!("/api/orders/{}", "a".repeat(100 * 1024)),
        )
        .codec(414),
    );
    c.push(
        case(
            "-",
            "codec: raw invalid UTF-8 in the path",
            "GET",
            b"/api/dlq/event/\xff",
        )
        .codec(400),
    );
    c.push(case("-", "codec: a space in the path", "GET", "/api/orders/a b").codec(400));

    c
}

// --- Running it ----------------------------------------------------------------------

const LEAKS: [&str; 12] = [
    "sqlx",
    "rusqlite",
    "sqlite",
    "panicked",
    "backtrace",
    "/work/",
    "/root/",
    "/home/",
    "/tmp/",
    ".rs:",
    "src/",
    "thread '",
];

/// What is wrong with `r` as an answer to `case` (empty: nothing).
fn judge(case: &Case, r: &Raw) -> Vec<String> {
    let mut wrong = Vec::new();
    let (status, is_codec) = match case.expect {
        Expect::Problem(s) | Expect::Answer(s) => (s, false),
        Expect::Codec(s) => (s, true),
    };
    if r.status != status {
        wrong.push(format!("status {} (expected {status})", r.status));
    }
    let ct = r.header("content-type").unwrap_or("");
    if r.status >= 400 && !is_codec {
        if !ct.starts_with("application/problem+json") {
            wrong.push(format!("content-type {ct:?}, not application/problem+json"));
        }
        let p: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
        let type_ok = p["type"]
            .as_str()
            .is_some_and(|t| t.starts_with("https://order-service.dev/problems/"));
        let title_ok = p["title"].as_str().is_some_and(|t| !t.is_empty());
        if !type_ok || !title_ok || p["status"] != json!(r.status) || !p["detail"].is_string() {
            wrong.push("not a problem body with type/title/status/detail".to_owned());
        }
        let lower = r.text().to_ascii_lowercase();
        for leak in LEAKS {
            if lower.contains(leak) {
                wrong.push(format!("error body mentions {leak:?}"));
            }
        }
    } else if !is_codec && ct.starts_with("application/problem+json") {
        wrong.push("a problem body on a success".to_owned());
    }
    if !is_codec && r.header("x-correlation-id").is_none() {
        wrong.push("no X-Correlation-Id".to_owned());
    }
    if r.status == 405 && r.header("allow").is_none() {
        wrong.push("405 without Allow".to_owned());
    }
    if !case.json.is_empty() {
        let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
        for (pointer, want) in &case.json {
            let got = v.pointer(pointer).unwrap_or(&Value::Null);
            if got != want {
                wrong.push(format!("{pointer} is {got}, expected {want}"));
            }
        }
    }
    wrong
}

fn replace(target: &[u8], from: &str, to: &str) -> Vec<u8> {
    match std::str::from_utf8(target) {
        Ok(t) if t.contains(from) => t.replace(from, to).into_bytes(),
        _ => target.to_vec(),
    }
}

async fn create_order(svc: &Service) -> String {
    let r = svc
        .call("POST", "/api/orders", Some(&order_body("c-1", "r-1")))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.json()["id"].as_str().expect("an id").to_owned()
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        format!("{}…", s.chars().take(n).collect::<String>())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_request_is_a_4xx_problem_never_a_server_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let svc = Service::start(dir.path(), &[("ORDER_TEST_ENDPOINTS", "true")]).await;
    let started = std::time::Instant::now();
    let order = create_order(&svc).await;
    let missing = uuid::Uuid::new_v4().to_string();

    let cases = catalogue();

    // Every operation of the OpenAPI document has cases.
    let doc: Value = serde_json::from_slice(&order_service::http::openapi::json(true))
        .expect("the OpenAPI document parses");
    let covered: BTreeSet<&str> = cases.iter().map(|c| c.op.as_str()).collect();
    let mut operations = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("a path item").keys() {
            operations.push(format!("{} {path}", method.to_ascii_uppercase()));
        }
    }
    let uncovered: Vec<&String> = operations
        .iter()
        .filter(|op| !covered.contains(op.as_str()))
        .collect();
    assert!(
        uncovered.is_empty(),
        "operations without cases: {uncovered:?}"
    );
    let unknown: Vec<&&str> = covered
        .iter()
        .filter(|op| **op != "-" && !operations.iter().any(|o| o == *op))
        .collect();
    assert!(
        unknown.is_empty(),
        "cases name operations not in the OpenAPI document: {unknown:?}"
    );

    let mut failures = Vec::new();
    let mut server_errors = 0usize;
    let (mut problems, mut answers, mut codec) = (0usize, 0usize, 0usize);
    for case in &cases {
        let mut target = replace(&case.target, "{order}", &order);
        target = replace(&target, "{ORDER}", &order.to_ascii_uppercase());
        target = replace(&target, "{missing}", &missing);
        if case.target.windows(7).any(|w| w == b"{fresh}") {
            let fresh = create_order(&svc).await;
            target = replace(&target, "{fresh}", &fresh);
        }
        let request = case.request(&target);
        let addr = svc.addr;
        let answer = tokio::task::spawn_blocking(move || exchange(addr, request))
            .await
            .expect("the exchange thread");
        let r = match answer {
            Ok(r) => r,
            Err(e) => {
                failures.push(format!("{}: {e}", case.name));
                continue;
            }
        };
        if r.status >= 500 {
            server_errors += 1;
        }
        match case.expect {
            Expect::Problem(_) => problems += 1,
            Expect::Answer(_) => answers += 1,
            Expect::Codec(_) => codec += 1,
        }
        let wrong = judge(case, &r);
        if !wrong.is_empty() {
            failures.push(format!(
                "{} ({} {}): {} — answer {} {:?} {}",
                case.name,
                case.method,
                truncate(&String::from_utf8_lossy(&target), 80),
                wrong.join("; "),
                r.status,
                r.header("content-type").unwrap_or(""),
                truncate(&r.text(), 300)
            ));
        }
    }

    // Nothing bad was written, and the service is still well.
    let fixture = svc.call("GET", &format!("/api/orders/{order}"), None).await;
    assert_eq!(fixture.status, 200, "{}", fixture.text);
    assert_eq!(fixture.json()["status"], "PENDING", "{}", fixture.text);
    assert_eq!(fixture.json()["version"], 1, "{}", fixture.text);
    let ready = svc.call("GET", "/health/ready", None).await;
    assert_eq!(ready.status, 200, "{}", ready.text);
    let log = svc.log();
    assert!(!log.contains("panicked"), "the service panicked:\n{log}");

    println!(
        "bad input: {} cases, {server_errors} server errors ({problems} problem answers, \
         {answers} documented 2xx/3xx, {codec} refused by the HTTP codec without a problem body; \
         {} operations covered; {:.1} s)",
        cases.len(),
        operations.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "{} of {} cases answered wrongly:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
