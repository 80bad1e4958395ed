//! The exchange over in-memory streams: framing, caps, and what is refused before sending.

use super::*;
use std::io::Cursor;

fn head<'a>(target: &'a str, bearer: Option<&'a str>) -> RequestHead<'a> {
    RequestHead {
        method: "POST",
        target,
        host: "localhost",
        user_agent: "t/1",
        content_type: Some("application/json"),
        bearer,
    }
}

#[test]
fn a_request_carries_its_length_and_closes_the_connection() {
    let mut out = Vec::new();
    write_request(&mut out, &head("/v1/x?y=1", Some("tok")), Body::Bytes(b"{}")).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.starts_with("POST /v1/x?y=1 HTTP/1.1\r\nHost: localhost\r\n"), "{text}");
    for line in [
        "Content-Length: 2\r\n",
        "Connection: close\r\n",
        "Authorization: Bearer tok\r\n",
        "Content-Type: application/json\r\n",
    ] {
        assert!(text.contains(line), "{line} missing in {text}");
    }
    assert!(text.ends_with("\r\n\r\n{}"));
}

#[test]
fn line_breaks_in_headers_and_targets_that_are_not_paths_are_refused_unsent() {
    for bad in [head("/x", Some("a\r\nX-Evil: 1")), head("http://h/x", None), head("/a b", None)] {
        assert!(!bad.is_valid());
        let mut out = Vec::new();
        let err = write_request(&mut out, &bad, Body::Bytes(b"")).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
        assert!(out.is_empty());
    }
}

#[test]
fn a_reader_body_shorter_than_declared_is_an_error() {
    let data = [1u8; 10];
    let mut reader = &data[..];
    let err =
        write_request(&mut Vec::new(), &head("/", None), Body::Reader { reader: &mut reader, len: 11 }).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
}

#[test]
fn content_length_chunked_and_eof_bodies_are_read() {
    let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
    let response = read_response(&mut Cursor::new(&answer[..]), 100).unwrap();
    assert_eq!((response.status, response.body.as_slice()), (200, &b"hello"[..]));

    let chunked = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n5;x=1\r\n{\"err\r\nE\r\nor\":\"job not f\r\n7\r\nound\"}\n\r\n0\r\nx-trailer: 1\r\n\r\n";
    let response = read_response(&mut Cursor::new(&chunked[..]), 100).unwrap();
    assert_eq!(response.status, 404);
    assert_eq!(response.error_field().as_deref(), Some("job not found"));
    assert_eq!(response.error_message(), "HTTP 404: job not found");

    let eof = b"HTTP/1.0 503 Service Unavailable\r\n\r\ndaemon restarting";
    let response = read_response(&mut Cursor::new(&eof[..]), 100).unwrap();
    assert_eq!(response.error_message(), "HTTP 503: daemon restarting");
}

#[test]
fn bodies_over_the_limit_are_refused_in_every_framing() {
    let framings: [&[u8]; 3] = [
        b"HTTP/1.1 200 OK\r\nContent-Length: 99999999\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n20\r\n0123456789abcdef0123456789abcdef\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n\r\n0123456789abcdef0123456789abcdef",
    ];
    for answer in framings {
        let err = read_response(&mut Cursor::new(answer), 10).unwrap_err();
        assert!(matches!(err, ReadError::TooLarge { limit: 10 }), "{err:?}");
    }
}

#[test]
fn a_streamed_body_goes_to_the_sink_and_a_cut_one_is_an_error() {
    let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nX-Artifact-Sha256: ab\r\n\r\ndata";
    let mut reader = Cursor::new(&answer[..]);
    let head = read_head(&mut reader).unwrap();
    assert_eq!(head.header("x-artifact-sha256"), Some("ab"));
    let mut sink = Vec::new();
    assert_eq!(stream_body(&mut reader, &head, &mut sink, u64::MAX).unwrap(), 4);
    assert_eq!(sink, b"data");

    let cut = b"HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\ndata";
    let mut reader = Cursor::new(&cut[..]);
    let head = read_head(&mut reader).unwrap();
    assert!(matches!(stream_body(&mut reader, &head, &mut Vec::new(), u64::MAX), Err(ReadError::Io(_))));
}

#[test]
fn garbage_is_not_an_answer() {
    for answer in [&b"SSH-2.0-OpenSSH\r\n"[..], b"", b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n"] {
        assert!(matches!(read_response(&mut Cursor::new(answer), 10), Err(ReadError::Bad(_))), "{answer:?}");
    }
}
