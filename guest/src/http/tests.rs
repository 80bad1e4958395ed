//! Tests of the HTTP client against one-shot servers on 127.0.0.1.

use super::*;
use std::io::{BufRead, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::thread;

/// Serves one connection: reads the request (head + `Content-Length` body), answers with
/// `answer`, and sends the raw request back through the channel.
fn serve_once(answer: Vec<u8>) -> (Url, mpsc::Receiver<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let Ok((mut stream, _)) = listener.accept() else { return };
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut request = Vec::new();
        let mut len = 0usize;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
            request.extend_from_slice(line.as_bytes());
            if line == "\r\n" {
                break;
            }
        }
        let mut body = vec![0; len];
        let _ = reader.read_exact(&mut body);
        request.extend(body);
        let _ = stream.write_all(&answer);
        let _ = tx.send(request);
    });
    (Url::parse(&format!("http://127.0.0.1:{port}/v1/x?y=1")).unwrap(), rx)
}

fn post_json(url: &Url, body: &[u8]) -> Result<Response, HttpError> {
    Client::default().post(Request {
        url,
        bearer: Some("tok-123"),
        content_type: "application/json",
        body: Body::Bytes(body),
    })
}

fn request_text(rx: &mpsc::Receiver<Vec<u8>>) -> String {
    String::from_utf8_lossy(&rx.recv().unwrap_or_default()).into_owned()
}

#[test]
fn a_json_post_sends_the_headers_and_reads_a_content_length_body() {
    let (url, rx) = serve_once(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"ok\":true}".to_vec(),
    );
    let response = post_json(&url, br#"{"a":1}"#).unwrap();
    assert_eq!((response.status, response.body.as_slice()), (200, &br#"{"ok":true}"#[..]));
    assert_eq!(response.header("Content-Type"), Some("application/json"));
    let request = request_text(&rx);
    assert!(request.starts_with("POST /v1/x?y=1 HTTP/1.1\r\n"), "{request}");
    for header in
        ["Authorization: Bearer tok-123\r\n", "Connection: close\r\n", "Content-Length: 7\r\n", "Host: 127.0.0.1:"]
    {
        assert!(request.contains(header), "{header} missing in {request}");
    }
    assert!(request.ends_with("\r\n\r\n{\"a\":1}"), "{request}");
}

#[test]
fn chunked_bodies_are_decoded_and_informational_answers_skipped() {
    let answer = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 404 Not Found\r\ntransfer-encoding: chunked\r\n\r\n5;ext=1\r\n{\"err\r\nE\r\nor\":\"job not f\r\n7\r\nound\"}\n\r\n0\r\nx-trailer: 1\r\n\r\n";
    let (url, _rx) = serve_once(answer.to_vec());
    let response = post_json(&url, b"{}").unwrap();
    assert_eq!(response.status, 404);
    assert_eq!(response.error_field().as_deref(), Some("job not found"));
    assert_eq!(response.error_message(), "HTTP 404: job not found");
}

#[test]
fn a_body_without_length_is_read_to_eof_and_capped() {
    let (url, _rx) = serve_once(b"HTTP/1.0 503 Service Unavailable\r\n\r\ndaemon restarting".to_vec());
    let response = post_json(&url, b"{}").unwrap();
    assert_eq!((response.status, response.error_message().as_str()), (503, "HTTP 503: daemon restarting"));

    let (url, _rx) = serve_once(format!("HTTP/1.1 200 OK\r\n\r\n{}", "x".repeat(100)).into_bytes());
    let small = Client { max_body: 10, ..Client::default() };
    let err = small.post(Request { url: &url, bearer: None, content_type: "a/b", body: Body::Bytes(b"") }).err();
    assert!(matches!(err, Some(HttpError::TooLarge { limit: 10, .. })), "{err:?}");

    let (url, _rx) = serve_once(b"HTTP/1.1 200 OK\r\nContent-Length: 99999999\r\n\r\n".to_vec());
    assert!(matches!(post_json(&url, b"{}"), Err(HttpError::TooLarge { .. })));
}

#[test]
fn a_streamed_body_is_sent_with_its_length() {
    let (url, rx) = serve_once(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n{}".to_vec());
    let data = vec![7u8; 100_000];
    let mut reader = data.as_slice();
    let response = Client::default()
        .post(Request {
            url: &url,
            bearer: None,
            content_type: "application/gzip",
            body: Body::Reader { reader: &mut reader, len: data.len() as u64 },
        })
        .unwrap();
    assert_eq!(response.status, 201);
    let request = rx.recv().unwrap_or_default();
    assert!(request.ends_with(&data));
    assert!(String::from_utf8_lossy(&request).contains("Content-Length: 100000\r\n"));
}

#[test]
fn garbage_answers_and_refused_connections_are_transient_errors() {
    let (url, _rx) = serve_once(b"SSH-2.0-OpenSSH\r\n".to_vec());
    let err = post_json(&url, b"{}").err();
    assert!(err.as_ref().is_some_and(HttpError::is_transient), "{err:?}");
    assert!(matches!(err, Some(HttpError::BadResponse { .. })));

    // A port nobody listens on: bind, learn the port, close.
    let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(1);
    let url = Url::parse(&format!("http://127.0.0.1:{port}/")).unwrap();
    let err = post_json(&url, b"{}").err();
    assert!(matches!(err, Some(HttpError::Connect { .. })), "{err:?}");
    assert!(err.is_some_and(|e| e.is_transient()));
}

#[test]
fn header_injection_is_refused() {
    let url = Url::parse("http://127.0.0.1:9/").unwrap();
    let err = Client::default()
        .post(Request { url: &url, bearer: Some("a\r\nX-Evil: 1"), content_type: "a/b", body: Body::Bytes(b"") })
        .err();
    assert!(matches!(err, Some(HttpError::BadHeader)));
    assert!(!HttpError::BadHeader.is_transient());
}
