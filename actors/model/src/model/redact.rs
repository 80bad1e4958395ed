//! Secret redaction for text the guest runner prints, logs or sends to the daemon.
//!
//! [`Redactor`] replaces every occurrence of a known secret value with [`REDACTED`].
//! [`StreamRedactor`] does the same for output that arrives in arbitrary chunks (an agent's
//! stdout read from a pipe): it holds back the few trailing bytes that could be the start
//! of a secret split across two reads, so the concatenated output is exactly what
//! [`Redactor::redact_bytes`] gives for the whole stream.
//!
//! Both work on bytes: agent output need not be UTF-8.

/// What a secret is replaced with.
pub const REDACTED: &str = "[REDACTED]";

/// Values shorter than this are not redacted: they would hide ordinary words.
pub const MIN_SECRET_LEN: usize = 6;

/// A set of secret values to hide, matched longest first.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    /// Deduplicated, longest first, so that a secret which is a prefix of another does not
    /// leave the other's tail visible.
    secrets: Vec<Vec<u8>>,
    /// `starts[b]`: some secret begins with byte `b`. Skips most positions cheaply.
    starts: Vec<bool>,
}

impl Redactor {
    /// Builds a redactor from secret values. A value shorter than [`MIN_SECRET_LEN`] bytes is
    /// ignored. A multi-line value (a private key) is kept whole and also line by line, so
    /// that it is still caught when printed one line at a time.
    pub fn new<S, I>(values: I) -> Redactor
    where
        S: AsRef<str>,
        I: IntoIterator<Item = S>,
    {
        let mut secrets: Vec<Vec<u8>> = Vec::new();
        let mut keep = |candidate: &str| {
            if candidate.len() >= MIN_SECRET_LEN {
                secrets.push(candidate.as_bytes().to_vec());
            }
        };
        for value in values {
            let value = value.as_ref();
            keep(value);
            // Printed values often lose surrounding whitespace or a trailing newline.
            keep(value.trim());
            if value.contains('\n') {
                for line in value.lines() {
                    keep(line.trim());
                }
            }
        }
        secrets.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        secrets.dedup();
        let mut starts = vec![false; 256];
        for secret in &secrets {
            if let Some(&first) = secret.first() {
                starts[usize::from(first)] = true;
            }
        }
        Redactor { secrets, starts }
    }

    /// No secret to hide: text passes through unchanged.
    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// Length in bytes of the longest secret (0 when empty).
    pub fn max_len(&self) -> usize {
        self.secrets.first().map_or(0, Vec::len)
    }

    /// `text` with every secret replaced by [`REDACTED`].
    pub fn redact(&self, text: &str) -> String {
        let bytes = self.redact_bytes(text.as_bytes());
        // Secrets are whole UTF-8 strings, so a match in UTF-8 text always lies on character
        // boundaries and the result is UTF-8; lossy conversion only guards the impossible.
        match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        }
    }

    /// `bytes` with every secret replaced by [`REDACTED`].
    pub fn redact_bytes(&self, bytes: &[u8]) -> Vec<u8> {
        let mut scan = Scan::default();
        let mut out = Vec::with_capacity(bytes.len());
        let done = scan.run(self, bytes, true, &mut out);
        debug_assert_eq!(done, bytes.len());
        out
    }

    /// The longest secret that starts at `bytes[at..]`, as its length.
    fn longest_match_at(&self, bytes: &[u8], at: usize) -> Option<usize> {
        let rest = &bytes[at..];
        self.secrets.iter().find(|s| rest.starts_with(s)).map(Vec::len)
    }

    /// Whether `bytes[at..]` (shorter than some secret) could be the start of a secret: then
    /// what happens at `at` depends on bytes not read yet.
    fn could_start_at(&self, bytes: &[u8], at: usize) -> bool {
        let rest = &bytes[at..];
        self.secrets.iter().any(|s| s.len() > rest.len() && s.starts_with(rest))
    }
}

/// The scanning state shared by whole-text and streamed redaction.
///
/// Overlapping or touching-inside matches form one covered run and print one [`REDACTED`]:
/// each byte of any secret occurrence is hidden, even where two secrets overlap.
#[derive(Debug, Default, Clone)]
struct Scan {
    /// Bytes before this index (relative to the unprocessed input) are already covered by a
    /// secret whose [`REDACTED`] was emitted.
    covered_until: usize,
}

impl Scan {
    /// Processes `bytes` from the start, appending the redacted form to `out`. Stops at the
    /// first position whose outcome depends on bytes not seen yet (unless `at_end`), and
    /// returns how many input bytes were consumed.
    fn run(&mut self, redactor: &Redactor, bytes: &[u8], at_end: bool, out: &mut Vec<u8>) -> usize {
        if redactor.is_empty() {
            out.extend_from_slice(bytes);
            return bytes.len();
        }
        let mut at = 0;
        while at < bytes.len() {
            let byte = bytes[at];
            if redactor.starts[usize::from(byte)] {
                if !at_end && redactor.could_start_at(bytes, at) {
                    break;
                }
                if let Some(len) = redactor.longest_match_at(bytes, at) {
                    if at >= self.covered_until {
                        out.extend_from_slice(REDACTED.as_bytes());
                    }
                    self.covered_until = self.covered_until.max(at + len);
                }
            }
            if at >= self.covered_until {
                out.push(byte);
            }
            at += 1;
        }
        self.covered_until = self.covered_until.saturating_sub(at);
        at
    }
}

/// Redacts a stream that arrives in chunks; see the module documentation.
#[derive(Debug, Clone)]
pub struct StreamRedactor {
    redactor: Redactor,
    scan: Scan,
    /// Trailing input not yet decided: a proper prefix of some secret, so shorter than
    /// [`Redactor::max_len`].
    pending: Vec<u8>,
}

impl StreamRedactor {
    pub fn new(redactor: Redactor) -> StreamRedactor {
        StreamRedactor { redactor, scan: Scan::default(), pending: Vec::new() }
    }

    /// Takes the next chunk; returns the redacted bytes that are safe to emit now.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        self.pending.extend_from_slice(chunk);
        let mut out = Vec::with_capacity(self.pending.len());
        let consumed = self.scan.run(&self.redactor, &self.pending, false, &mut out);
        self.pending.drain(..consumed);
        out
    }

    /// The end of the stream: the held-back bytes, redacted.
    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.pending.len());
        self.scan.run(&self.redactor, &self.pending, true, &mut out);
        self.pending.clear();
        self.scan = Scan::default();
        out
    }

    /// Bytes currently held back.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "hunter2-very-secret";

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    fn stream(redactor: &Redactor, chunks: &[&[u8]]) -> Vec<u8> {
        let mut s = StreamRedactor::new(redactor.clone());
        let mut out = Vec::new();
        for chunk in chunks {
            out.extend(s.push(chunk));
            assert!(s.pending_len() < redactor.max_len().max(1), "holds back less than the longest secret");
        }
        out.extend(s.finish());
        out
    }

    #[test]
    fn whole_text_is_redacted_and_short_values_are_ignored() {
        let r = Redactor::new([SECRET, "abc", ""]);
        assert_eq!(r.redact(&format!("token={SECRET}; again {SECRET}.")), "token=[REDACTED]; again [REDACTED].");
        assert_eq!(r.redact("abc stays"), "abc stays");
        assert_eq!(r.max_len(), SECRET.len());
        assert!(!r.is_empty());
        assert!(Redactor::new(["short"]).is_empty());
    }

    #[test]
    fn an_empty_redactor_passes_bytes_through_unchanged() {
        let r = Redactor::new(Vec::<String>::new());
        let bytes: Vec<u8> = (0..=255u8).collect();
        assert_eq!(r.redact_bytes(&bytes), bytes);
        assert_eq!(stream(&r, &[&bytes[..10], &bytes[10..]]), bytes);
        assert_eq!(r.max_len(), 0);
    }

    #[test]
    fn non_utf8_bytes_around_a_secret_are_kept() {
        let r = Redactor::new([SECRET]);
        let mut input = vec![0xff, 0xfe];
        input.extend_from_slice(SECRET.as_bytes());
        input.push(0x80);
        let mut want = vec![0xff, 0xfe];
        want.extend_from_slice(REDACTED.as_bytes());
        want.push(0x80);
        assert_eq!(r.redact_bytes(&input), want);
    }

    #[test]
    fn a_secret_split_at_every_position_across_two_pushes_never_appears() {
        let r = Redactor::new([SECRET, "other-secret-value"]);
        let text = format!("start {SECRET} middle {SECRET}end");
        let whole = r.redact_bytes(text.as_bytes());
        for cut in 0..=text.len() {
            let (a, b) = text.as_bytes().split_at(cut);
            let out = stream(&r, &[a, b]);
            assert!(!contains(&out, SECRET.as_bytes()), "cut {cut}");
            assert_eq!(out, whole, "cut {cut}: streaming must match whole-text redaction");
        }
    }

    #[test]
    fn a_secret_split_over_three_pushes_never_appears() {
        let r = Redactor::new([SECRET]);
        let text = format!("x{SECRET}y");
        let bytes = text.as_bytes();
        for i in 0..=bytes.len() {
            for j in i..=bytes.len() {
                let out = stream(&r, &[&bytes[..i], &bytes[i..j], &bytes[j..]]);
                assert_eq!(out, b"x[REDACTED]y", "cuts {i},{j}");
            }
        }
        // One byte at a time.
        let singles: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(stream(&r, &singles), b"x[REDACTED]y");
    }

    #[test]
    fn overlapping_and_adjacent_secrets_are_fully_hidden() {
        let r = Redactor::new(["AAAABBBB", "BBBBCCCC"]);
        // Overlapping: no tail of the second secret survives.
        assert_eq!(r.redact("xAAAABBBBCCCCy"), "x[REDACTED]y");
        // Adjacent: each is hidden.
        assert_eq!(r.redact("AAAABBBBBBBBCCCC"), "[REDACTED][REDACTED]");
        let text = b"xAAAABBBBCCCCy AAAABBBBBBBBCCCC";
        let whole = r.redact_bytes(text);
        for cut in 0..=text.len() {
            let (a, b) = text.split_at(cut);
            assert_eq!(stream(&r, &[a, b]), whole, "cut {cut}");
        }
    }

    #[test]
    fn a_secret_that_is_a_prefix_of_another_does_not_leave_the_longer_ones_tail() {
        let r = Redactor::new(["secret1", "secret123456"]);
        assert_eq!(r.redact("a secret123456 b secret1 c"), "a [REDACTED] b [REDACTED] c");
        let text = b"a secret123456 b secret1";
        for cut in 0..=text.len() {
            let (a, b) = text.split_at(cut);
            let out = stream(&r, &[a, b]);
            assert_eq!(out, b"a [REDACTED] b [REDACTED]", "cut {cut}");
        }
    }

    #[test]
    fn a_multi_line_value_is_caught_whole_and_line_by_line() {
        let key = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n  QyNTUxOQAAACD  \nab\n-----END OPENSSH PRIVATE KEY-----\n";
        let r = Redactor::new([key]);
        assert_eq!(r.redact(&format!("<{key}>")), "<[REDACTED]>");
        let printed = "line: b3BlbnNzaC1rZXktdjEAAAAA\nline: QyNTUxOQAAACD\nab\n";
        assert_eq!(r.redact(printed), "line: [REDACTED]\nline: [REDACTED]\nab\n");
        // The short line `ab` is not a secret on its own.
        assert!(!r.redact("ab").contains(REDACTED));
    }

    #[test]
    fn a_held_back_prefix_that_is_not_a_secret_is_released() {
        let r = Redactor::new([SECRET]);
        let mut s = StreamRedactor::new(r);
        assert_eq!(s.push(b"abc hunt"), b"abc ");
        assert_eq!(s.pending_len(), 4);
        assert_eq!(s.push(b"ing season"), b"hunting season");
        assert_eq!(s.push(b" hunter2"), b" ");
        assert_eq!(s.finish(), b"hunter2");
        // The redactor can be used again after finish.
        assert_eq!(s.push(SECRET.as_bytes()), b"[REDACTED]");
    }

    #[test]
    fn random_splits_match_whole_text_redaction() {
        let r = Redactor::new(["abcabcab", "cabcab", "bcabca-1"]);
        let text = b"abcabcabcabcabca-1xxabcabcab cabcabc bcabca-1abcabcab";
        let whole = r.redact_bytes(text);
        for secret in [&b"abcabcab"[..], b"cabcab", b"bcabca-1"] {
            assert!(!contains(&whole, secret));
        }
        // A small deterministic generator: no extra dependency for randomness.
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..500 {
            let mut cuts = Vec::new();
            let mut at = 0;
            while at < text.len() {
                seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                let step = usize::try_from(seed >> 61).unwrap_or(1) + 1;
                let end = (at + step).min(text.len());
                cuts.push(&text[at..end]);
                at = end;
            }
            assert_eq!(stream(&r, &cuts), whole);
        }
    }
}
